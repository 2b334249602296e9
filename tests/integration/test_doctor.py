"""`mailsvc doctor` against the real servers: a working configuration passes; a broken one says what and why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.idp import IdentityProvider
from mailsvc.testing.sandbox import write_config
from mailsvc.testing.securedovecot import SecureDovecot
from mailsvc.testing.smtp_capture import SmtpCapture
from mailsvc.testing.tls import ThrowawayCA
from tests.integration import secure
from tests.integration.test_oauth_daemon import secrets_of, seed


def doctor(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailsvc", "doctor", "-c", str(config), *extra],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def states(output: str) -> dict[str, str]:
    """check name -> ok / FAIL / skip / warn"""
    return {m[2]: m[1] for m in re.finditer(r"^\[\s*(\w+)\s*\] ((?:[\w.]+: )?[A-Za-z][A-Za-z0-9 ]*?): ", output, re.M)}


def oauth_raw(
    dovecot: SecureDovecot, box: Mailbox, idp: IdentityProvider, ca: ThrowawayCA, sink: SmtpCapture, tmp_path: Path
) -> dict[str, Any]:
    oauth = secure.oauth2(idp, ca.cert_file)
    return secure.config_dict(
        box, sink, tmp_path / "mailsvc.db",
        imap_section=secure.imap(dovecot, box.user, ca.cert_file, auth="oauth2", oauth2=oauth),
        smtp_section=secure.submission(dovecot, box.user, ca.cert_file, auth="oauth2", oauth2=oauth),
    )  # fmt: skip


def test_doctor_passes_a_working_configuration(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA,
    relay_sink: SmtpCapture, tmp_path: Path,
) -> None:  # fmt: skip
    raw = oauth_raw(secure_dovecot, secure_mailbox, idp, tls_ca, relay_sink, tmp_path)
    path = write_config(tmp_path / "mailsvc.yaml", raw)
    config = secure.load(raw, tmp_path)
    seed(idp, config, "imap")
    secure_mailbox.create_folder("Processed")
    secure_mailbox.create_folder("Quarantine")
    secure_mailbox.create_folder("Junk")
    result = doctor(path)
    print(result.stdout)
    assert result.returncode == 0, result.stdout
    seen = states(result.stdout)
    # Dovecot's submission service offers no SMTPUTF8: a warning, not a failure.
    assert {k: v for k, v in seen.items() if v != "ok"} == {"smtp: SMTPUTF8": "warn"}
    assert list(seen) == [
        "configuration", "imap: DNS", "imap: TCP", "imap: TLS", "imap: login", "imap: folders",
        "imap: IDLE and MOVE", "smtp: DNS", "smtp: TCP", "smtp: greeting", "smtp: STARTTLS",
        "smtp: authentication", "smtp: SMTPUTF8", "store", "templates", "clock",
    ]  # fmt: skip
    assert "certificate 127.0.0.1, expires in 19 days" in result.stdout
    assert relay_sink.messages == []  # it never sends mail
    for secret in secrets_of(config):
        assert secret not in result.stdout + result.stderr


def test_doctor_on_a_broken_configuration_names_each_problem(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA,
    relay_sink: SmtpCapture, tmp_path: Path,
) -> None:  # fmt: skip
    stranger = ThrowawayCA(tmp_path / "other-ca", name="someone else's CA")
    raw = oauth_raw(secure_dovecot, secure_mailbox, idp, tls_ca, relay_sink, tmp_path)
    queue_box = secure_dovecot.new_mailbox("doctor-queue")
    raw["queues"]["second"] = {
        "address": "second@example.org",
        "imap": secure.imap(secure_dovecot, queue_box.user, stranger.cert_file, password=queue_box.password),
    }
    path = write_config(tmp_path / "mailsvc.yaml", raw)
    config = secure.load(raw, tmp_path)
    seed(idp, config, "imap")
    idp.revoke(secure_mailbox.user)
    result = doctor(path)
    print(result.stdout)
    assert result.returncode == 1
    seen = states(result.stdout)
    assert seen["imap: login"] == "FAIL"
    assert seen["imap: folders"] == "skip"
    assert seen["queues.second.imap: TLS"] == "FAIL"
    assert seen["smtp: authentication"] == "FAIL"
    assert "hint: the refresh token was revoked or expired" in result.stdout
    assert "certificate not trusted: unable to get local issuer certificate" in result.stdout
    assert "hint: set queues.second.imap.ca_file to the CA" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_doctor_fix_creates_missing_folders(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, tls_ca: ThrowawayCA, relay_sink: SmtpCapture,
    tmp_path: Path,
) -> None:  # fmt: skip
    raw = secure.config_dict(
        secure_mailbox, relay_sink, tmp_path / "mailsvc.db",
        imap_section=secure.imap(secure_dovecot, secure_mailbox.user, tls_ca.cert_file, tls="starttls",
                                 password=secure_mailbox.password),
        smtp_section=secure.submission(secure_dovecot, secure_mailbox.user, tls_ca.cert_file,
                                       password=secure_mailbox.password),
    )  # fmt: skip
    path = write_config(tmp_path / "mailsvc.yaml", raw)
    before = doctor(path)
    assert before.returncode == 1
    assert "[FAIL] imap: folders: missing: Processed, Quarantine, Junk" in before.stdout
    assert "hint: run `mailsvc doctor --fix` to create them" in before.stdout
    fixed = doctor(path, "--fix")
    assert fixed.returncode == 0, fixed.stdout
    assert "(created Processed, Quarantine, Junk)" in fixed.stdout
    assert secure_mailbox.password not in before.stdout + fixed.stdout
