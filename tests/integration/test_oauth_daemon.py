"""`mailsvc run` on OAuth2 accounts: a revoked account fails alone and once; a token expiring during IDLE is
renewed and nothing is lost; no token reaches the logs or the CLI's output."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mailsvc.config import Config
from mailsvc.credentials import token_path
from mailsvc.oauth.flows import Grant
from mailsvc.oauth.keeper import store_login
from mailsvc.oauth.tokens import TokenFile
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.idp import IdentityProvider
from mailsvc.testing.sandbox import mail, read_rows, write_config
from mailsvc.testing.securedovecot import SecureDovecot
from mailsvc.testing.smtp_capture import SmtpCapture
from mailsvc.testing.tls import ThrowawayCA
from tests.integration import secure
from tests.integration.test_daemon import Daemon
from tests.integration.test_service import NotifyListener

TOKEN_KEY = "0123456789abcdef0123456789abcdef"


def account(dovecot: SecureDovecot, box: Mailbox, idp: IdentityProvider, ca: ThrowawayCA) -> dict[str, Any]:
    return secure.imap(dovecot, box.user, ca.cert_file, auth="oauth2", oauth2=secure.oauth2(idp, ca.cert_file),
                       retry_base=0.2, retry_cap=0.5)  # fmt: skip


def seed(idp: IdentityProvider, config: Config, key: str) -> None:
    """The token file a login left: a refresh token, and an access token that has expired."""
    server = {"imap": config.imap, "smtp": config.smtp}.get(key) or config.queues[key.split(".")[1]].imap
    assert server is not None and server.oauth2 is not None and server.user
    grant = Grant("expired", 0, idp.refresh_token_for(server.user, "mail"), ("mail",))
    store_login(server.oauth2, server.user, token_path(config, server), grant)


def cli(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailsvc", *args, "-c", str(config_path)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def secrets_of(config: Config) -> list[str]:
    """Every token in the configuration's token files."""
    found = []
    for server in (config.imap, config.smtp, *(q.imap for q in config.queues.values() if q.imap)):
        if server is not None and server.oauth2 is not None:
            tokens = TokenFile(token_path(config, server)).load()
            if tokens is not None:
                found += [t for t in (tokens.access_token, tokens.refresh_token) if t and t != "expired"]
    return found


def test_three_accounts_one_revoked_the_others_go_on(
    secure_dovecot: SecureDovecot, idp: IdentityProvider, tls_ca: ThrowawayCA, relay_sink: SmtpCapture,
    tmp_path: Path,
) -> None:  # fmt: skip
    relay_sink.clear()
    main, second, third = (secure_dovecot.new_mailbox(n) for n in ("main", "second", "third"))
    raw = secure.config_dict(
        main, relay_sink, tmp_path / "mailsvc.db", imap_section=account(secure_dovecot, main, idp, tls_ca),
        smtp_section=secure.submission(secure_dovecot, main.user, tls_ca.cert_file, auth="oauth2",
                                       oauth2=secure.oauth2(idp, tls_ca.cert_file)),
    )  # fmt: skip
    raw["queues"] = {
        "help": {"address": "help@example.org", "staff": [{"address": "staff@example.org"}]},
        "second": {"address": "second@example.org", "staff": [{"address": "second-staff@example.org"}],
                   "imap": account(secure_dovecot, second, idp, tls_ca)},
        "third": {"address": "third@example.org", "imap": account(secure_dovecot, third, idp, tls_ca)},
    }  # fmt: skip
    raw["trust"] = {"token_key": TOKEN_KEY}
    config_path = write_config(tmp_path / "mailsvc.yaml", raw)
    config = secure.load(raw, tmp_path)
    for key in ("imap", "queues.second.imap", "queues.third.imap"):
        seed(idp, config, key)
    idp.revoke(second.user)

    listener = NotifyListener(Path(tempfile.mkdtemp(prefix="mailsvc-notify-")))
    daemon = Daemon(config_path, tmp_path / "daemon.log", env={"NOTIFY_SOCKET": str(listener.path)})
    try:
        secure.wait_until(daemon, lambda ev: secure.count(ev, "imap_connected") >= 2, "two accounts connected")
        main.append(mail(subject="Printer", to="help@example.org", message_id="<p1@example.net>"))
        third.append(mail(subject="VPN", to="third@example.org", message_id="<v1@example.net>"))
        # Two acknowledgements, the notification to the help queue's staff, the notice about the revoked account.
        sent = relay_sink.wait_for(4, timeout=20)
        # The revoked account is retried (a state, not an exit), and still reported once.
        events = secure.wait_until(
            daemon, lambda ev: sum(e.get("folder") == "second:INBOX" and e["event"] == "imap_disconnected"
                                   for e in ev) >= 3, "retries of the revoked account",
        )  # fmt: skip
    finally:
        assert daemon.stop() == 0
        listener.close()
    lines = [line for _, line in listener.received if line.startswith("STATUS=")]
    assert "STATUS=cannot log in to second:INBOX (invalid_grant): run mailsvc oauth login" in lines, lines
    failed = [e for e in events if e["event"] == "oauth_refresh_failed"]
    assert len(failed) == 1
    assert failed[0]["error"] == "invalid_grant"
    assert failed[0]["account"] == "queues.second.imap"
    assert "mailsvc oauth login" in failed[0]["action"]
    by_rcpt = {m.rcpt_tos: m for m in sent}
    notice = by_rcpt[("second-staff@example.org",)].message
    assert notice["Subject"] == f"mailsvc cannot log in to {second.user} (invalid_grant)"
    assert ("alice@example.net",) in by_rcpt  # the acknowledgements of the other two accounts
    assert len([m for m in sent if m.rcpt_tos == ("alice@example.net",)]) == 2
    assert main.uids("Processed") and third.uids("Processed")

    status = cli(config_path, "oauth", "status")
    assert status.returncode == 1
    assert "last refresh error: invalid_grant" in status.stdout
    show = cli(config_path, "cases", "show", "1")
    log = daemon.log_path.read_text()
    for secret in secrets_of(config):
        for where in (log, status.stdout, status.stderr, show.stdout):
            assert secret not in where
            assert secret[:12] not in where


def test_a_token_expiring_during_a_long_idle_is_renewed_and_nothing_is_lost(
    secure_dovecot: SecureDovecot, idp: IdentityProvider, tls_ca: ThrowawayCA, relay_sink: SmtpCapture,
    tmp_path: Path,
) -> None:  # fmt: skip
    relay_sink.clear()
    idp.access_lifetime = 3
    box = secure_dovecot.new_mailbox("idle-expiry")
    raw = secure.config_dict(
        box, relay_sink, tmp_path / "mailsvc.db", imap_section=account(secure_dovecot, box, idp, tls_ca),
        smtp_section=secure.submission(secure_dovecot, box.user, tls_ca.cert_file, auth="oauth2",
                                       oauth2=secure.oauth2(idp, tls_ca.cert_file)),
    )  # fmt: skip
    config_path = write_config(tmp_path / "mailsvc.yaml", raw)
    config = secure.load(raw, tmp_path)
    seed(idp, config, "imap")
    path = token_path(config, config.imap)

    daemon = Daemon(config_path, tmp_path / "daemon.log")
    try:
        daemon.wait_for_event("imap_connected")
        secure_dovecot.wait_idling(box.user)
        box.append(mail(subject="Before", message_id="<before@example.net>"))
        relay_sink.wait_for(1, timeout=20)
        secure_dovecot.wait_idling(box.user)
        # The session outlives its token, as IMAP sessions do, until the server ends it (Exchange Online does
        # at expiry): wait for the token to expire, then end the session.
        tokens = TokenFile(path).load()
        assert tokens is not None
        deadline = time.monotonic() + 20
        while time.time() < tokens.expires_at:
            assert time.monotonic() < deadline, "the access token did not expire"
            time.sleep(0.05)
        refreshed_before = idp.grants["refresh_token"]
        secure_dovecot.kick(box.user)
        box.append(mail(subject="While away", message_id="<away@example.net>"))
        secure.wait_until(daemon, lambda ev: secure.count(ev, "imap_connected") >= 2, "reconnected")
        relay_sink.wait_for(2, timeout=20)
    finally:
        assert daemon.stop() == 0
    assert idp.grants["refresh_token"] > refreshed_before
    assert sorted(m.message["In-Reply-To"] for m in relay_sink.messages) == [
        "<away@example.net>",
        "<before@example.net>",
    ]
    rows = read_rows(tmp_path / "mailsvc.db", "SELECT count(*) FROM messages")
    assert rows == [(2,)]
    assert len(box.uids("Processed")) == 2
