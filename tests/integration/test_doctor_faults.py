"""`mailsvc doctor`'s failure branches against real servers on 127.0.0.1: each failing check with its hint."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from mailsvc import doctor
from mailsvc.doctor import run_doctor
from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.idp import IdentityProvider
from mailsvc.testing.sandbox import sandbox_config, write_config
from mailsvc.testing.securedovecot import SecureDovecot
from mailsvc.testing.smtp_capture import SmtpCapture
from mailsvc.testing.tls import ThrowawayCA
from tests.integration import secure
from tests.integration.test_doctor import states

# glibc refuses a label that starts with a hyphen before asking any resolver: no packet leaves the machine.
UNRESOLVABLE = "-bad-.invalid"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_for(mailbox: Mailbox, capture: SmtpCapture, tmp_path: Path, /, **overrides: Any) -> dict[str, Any]:
    return sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=capture.port, store=tmp_path / "mailsvc.db", **overrides,
    )  # fmt: skip


def make_filing_folders(box: Mailbox) -> None:
    for folder in ("Processed", "Quarantine", "Junk"):
        box.create_folder(folder)


OAuth2Login = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture
def oauth2_login(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, relay_sink: SmtpCapture, tls_ca: ThrowawayCA,
    tmp_path: Path,
) -> OAuth2Login:  # fmt: skip
    """The configuration of an OAuth2 IMAP login to the secure Dovecot with the given imap.oauth2 section
    (SMTP through its submission service, with the password)."""

    def config(oauth: dict[str, Any]) -> dict[str, Any]:
        return secure.config_dict(
            secure_mailbox, relay_sink, tmp_path / "mailsvc.db",
            imap_section=secure.imap(secure_dovecot, secure_mailbox.user, tls_ca.cert_file, auth="oauth2",
                                     oauth2=oauth),
            smtp_section=secure.submission(secure_dovecot, secure_mailbox.user, tls_ca.cert_file,
                                           password=secure_mailbox.password),
        )  # fmt: skip

    return config


def run(tmp_path: Path, raw: dict[str, Any], *, fix: bool = False) -> tuple[int, str]:
    lines: list[str] = []
    code = run_doctor(write_config(tmp_path / "mailsvc.yaml", raw), fix, lines.append)
    return code, "\n".join(lines)


def test_plain_loopback_servers_pass_without_tls_or_smtp_login(mailbox: Mailbox, tmp_path: Path) -> None:
    make_filing_folders(mailbox)
    with SmtpCapture(smtputf8=True) as smtp:
        code, output = run(tmp_path, raw_for(mailbox, smtp, tmp_path))
    assert code == 0, output
    assert set(states(output).values()) == {"ok"}, output
    assert "[ ok ] imap: TLS: none (tls: none, loopback only)" in output
    assert "[ ok ] smtp: authentication: no user: a relay that needs no login" in output
    assert "[ ok ] smtp: SMTPUTF8: offered" in output
    assert "does not exist yet: created at the first start" in output
    assert "no server told its time" in output
    assert output.endswith("all checks passed.")


def test_the_doctors_imap_client_builds_no_imaplib_debug_copies(
    mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the daemon's IMAP shell (imap.quiet_imaplib): imapclient sets imaplib's debug level to 5, which
    formats a copy of everything the server sends whether or not anyone logs it."""
    levels: list[int] = []

    class RecordingClient(IMAPClient):
        def login(self, username: str, password: str) -> Any:
            levels.append(self._imap.debug)
            return super().login(username, password)

    monkeypatch.setattr(doctor, "IMAPClient", RecordingClient)
    make_filing_folders(mailbox)
    code, output = run(tmp_path, raw_for(mailbox, smtp, tmp_path))
    assert code == 0, output
    assert levels == [0]


def test_a_refused_port_fails_tcp_and_skips_what_needs_the_connection(mailbox: Mailbox, tmp_path: Path) -> None:
    raw = sandbox_config(imap_port=closed_port(), imap_user=mailbox.user, smtp_port=closed_port(),
                         store=tmp_path / "mailsvc.db")  # fmt: skip
    code, output = run(tmp_path, raw)
    assert code == 1
    seen = states(output)
    assert seen["imap: DNS"] == "ok"
    assert seen["imap: TCP"] == "FAIL"
    assert seen["smtp: TCP"] == "FAIL"
    assert "hint: check imap.port, and that a firewall lets mailsvc out" in output
    assert "hint: check smtp.port, and that a firewall lets mailsvc out" in output
    for name in ("imap: TLS", "imap: login", "imap: folders", "imap: IDLE and MOVE"):
        assert seen[name] == "skip"
    for name in ("smtp: greeting", "smtp: STARTTLS", "smtp: authentication", "smtp: SMTPUTF8"):
        assert seen[name] == "skip"
    assert output.endswith("2 problem(s) found.")


def test_a_host_that_does_not_resolve_fails_dns(mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path) -> None:
    raw = raw_for(mailbox, smtp, tmp_path, imap={"host": UNRESOLVABLE, "tls": "implicit"},
                  smtp={"host": UNRESOLVABLE, "tls": "implicit"})  # fmt: skip
    code, output = run(tmp_path, raw)
    assert code == 1
    seen = states(output)
    assert seen["imap: DNS"] == "FAIL"
    assert seen["smtp: DNS"] == "FAIL"
    assert "imap: TCP" not in seen  # no address to connect to
    assert seen["imap: login"] == "skip"
    assert f"{UNRESOLVABLE} does not resolve" in output
    assert "hint: check imap.host" in output
    assert "hint: check smtp.host" in output


def test_wrong_passwords_fail_login_and_authentication(mailbox: Mailbox, tmp_path: Path) -> None:
    imap_wrong, smtp_wrong = "not-the-imap-pw-8Hq", "not-the-smtp-pw-3Kd"
    with SmtpCapture(logins={"desk": "the-right-one"}) as smtp:
        raw = raw_for(mailbox, smtp, tmp_path, imap={"password": imap_wrong},
                      smtp={"user": "desk", "password": smtp_wrong})  # fmt: skip
        code, output = run(tmp_path, raw)
        assert set(smtp.login_attempts) == {("desk", False)}
    assert code == 1
    seen = states(output)
    assert seen["imap: login"] == "FAIL"
    assert seen["imap: folders"] == "skip"
    assert seen["imap: IDLE and MOVE"] == "skip"
    assert seen["smtp: authentication"] == "FAIL"
    assert "hint: check imap.user and the password" in output
    assert "hint: check smtp.user and the password" in output
    assert imap_wrong not in output
    assert smtp_wrong not in output


def test_a_missing_watched_folder_fails_even_with_fix(mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path) -> None:
    raw = raw_for(mailbox, smtp, tmp_path, imap={"folder": "Support"})
    code, output = run(tmp_path, raw)
    assert code == 1
    assert "[FAIL] imap: folders: missing: Support, Processed, Quarantine, Junk\n" in output
    assert "hint: the watched folder must exist: check imap.folder" in output
    code, output = run(tmp_path, raw, fix=True)
    assert code == 1
    # --fix creates the folders mailsvc files into, never the one it watches (a typo would hide all mail).
    assert "[FAIL] imap: folders: missing: Support\n" in output
    with mailbox.client() as client:
        assert client.folder_exists("Processed")
        assert client.folder_exists("Quarantine")
        assert client.folder_exists("Junk")
        assert not client.folder_exists("Support")


def test_a_server_without_idle_fails_with_the_polling_it_falls_back_to(smtp: SmtpCapture, tmp_path: Path) -> None:
    with PrivateDovecot.in_temp_dir(disable_idle=True) as server:
        box = server.new_mailbox("doctor-noidle")
        make_filing_folders(box)
        code, output = run(tmp_path, raw_for(box, smtp, tmp_path, imap={"poll_interval": 90}))
    assert code == 1
    assert "[FAIL] imap: IDLE and MOVE: no IDLE" in output
    assert "hint: new mail is seen by polling every 90s" in output


def test_a_server_without_move_is_reported_as_slower_but_working(smtp: SmtpCapture, tmp_path: Path) -> None:
    with PrivateDovecot.in_temp_dir(disable_move=True) as server:
        box = server.new_mailbox("doctor-nomove")
        make_filing_folders(box)
        code, output = run(tmp_path, raw_for(box, smtp, tmp_path))
    assert code == 0, output
    assert "[ ok ] imap: IDLE and MOVE: IDLE; no MOVE (COPY, then delete: slower, works)" in output


@pytest.mark.parametrize(
    ("tls", "failing"),
    [("starttls", "smtp: STARTTLS"), ("implicit", "smtp: greeting")],
)
def test_smtp_tls_that_the_server_does_not_speak(
    mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path, tls: str, failing: str
) -> None:
    raw = raw_for(mailbox, smtp, tmp_path, smtp={"tls": tls})
    code, output = run(tmp_path, raw)
    assert code == 1
    seen = states(output)
    assert seen[failing] == "FAIL"
    assert "hint: check smtp.tls and smtp.port" in output
    assert "smtp: authentication" not in seen  # nothing after a failed TLS step
    assert "Traceback" not in output


def test_smtp_certificates_untrusted_or_for_another_name(mailbox: Mailbox, tls_ca: ThrowawayCA, tmp_path: Path) -> None:
    other = tls_ca.issue("mail.example.com", hosts=("mail.example.com",))
    with SmtpCapture(tls=other) as smtp:
        code, output = run(tmp_path, raw_for(mailbox, smtp, tmp_path, smtp={"tls": "starttls"}))
        assert code == 1
        assert "[FAIL] smtp: STARTTLS" in output
        assert "certificate not trusted" in output
        assert "hint: set smtp.ca_file to the CA that signed the server's certificate" in output
        raw = raw_for(mailbox, smtp, tmp_path, smtp={"tls": "starttls", "ca_file": str(tls_ca.cert_file)})
        code, output = run(tmp_path, raw)
    assert code == 1
    assert "hint: the certificate does not name 127.0.0.1: set smtp.host to a name it carries" in output
    with SmtpCapture(tls=other, implicit_tls=True) as smtp:
        raw = raw_for(mailbox, smtp, tmp_path, smtp={"tls": "implicit", "ca_file": str(tls_ca.cert_file)})
        code, output = run(tmp_path, raw)
    assert states(output)["smtp: greeting"] == "FAIL"
    assert "hint: the certificate does not name 127.0.0.1" in output


def test_an_oauth2_account_without_a_login_is_told_to_sign_in(
    oauth2_login: OAuth2Login, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    raw = oauth2_login(secure.oauth2(idp, tls_ca.cert_file))
    code, output = run(tmp_path, raw)
    assert code == 1
    seen = states(output)
    assert seen["imap: login"] == "FAIL"
    assert seen["smtp: authentication"] == "ok"
    assert "hint: there are no tokens for this account yet: run `mailsvc oauth login`" in output
    assert idp.grants["refresh_token"] == 0


def test_a_clock_far_from_the_identity_providers_fails(
    oauth2_login: OAuth2Login, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    raw = oauth2_login(secure.oauth2(idp, tls_ca.cert_file))
    idp.clock_offset = 3600.0
    code, output = run(tmp_path, raw)
    assert code == 1
    # The Date header counts whole seconds: a second either way.
    assert re.search(rf"\[FAIL\] clock: -(3599|3600|3601)s against 127\.0\.0\.1:{idp.port}$", output, re.M), output
    assert "hint: synchronise the clock" in output


def test_an_unreachable_identity_provider_tells_no_time(
    oauth2_login: OAuth2Login, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    root = f"https://127.0.0.1:{closed_port()}/tenant/oauth2/v2.0"
    oauth = {"provider": "generic", "client_id": "mailsvc-test", "ca_file": str(tls_ca.cert_file),
             "token_endpoint": f"{root}/token", "device_authorization_endpoint": f"{root}/devicecode"}  # fmt: skip
    raw = oauth2_login(oauth)
    code, output = run(tmp_path, raw)
    assert code == 1  # no login yet
    assert "[ ok ] clock: no server told its time" in output


def test_a_server_refusing_ehlo_is_a_warning_as_the_sender_falls_back_to_helo(mailbox: Mailbox, tmp_path: Path) -> None:
    make_filing_folders(mailbox)
    with SmtpCapture(smtputf8=True) as smtp:
        smtp.ehlo = "refuse"
        code, output = run(tmp_path, raw_for(mailbox, smtp, tmp_path))
    assert code == 0, output
    assert "[warn] smtp: SMTPUTF8: not offered" in output


def test_a_server_hanging_up_on_ehlo_fails_the_check(mailbox: Mailbox, tmp_path: Path) -> None:
    with SmtpCapture() as smtp:
        smtp.ehlo = "drop"
        code, output = run(tmp_path, raw_for(mailbox, smtp, tmp_path))
    assert code == 1
    assert "[FAIL] smtp: SMTPUTF8: EHLO failed: " in output
    assert "hint: check smtp.host and smtp.port" in output
    assert "Traceback" not in output
