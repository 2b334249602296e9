"""Passwords that LOGIN cannot carry: AUTHENTICATE PLAIN in UTF-8 (RFC 4616), for IMAP and SMTP, on the real Dovecot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imapclient.exceptions import LoginError

from mailsvc.config_servers import SmtpConfig, TlsMode
from mailsvc.imap import ImapSource
from mailsvc.model import OutgoingMail
from mailsvc.smtp import Sender
from mailsvc.store import Store
from mailsvc.testing.sandbox import mail
from mailsvc.testing.securedovecot import SecureDovecot
from mailsvc.testing.smtp_capture import SmtpCapture
from mailsvc.testing.tls import ThrowawayCA
from tests.integration import secure

PASSWORD = "Grüße-aus-Köln-✓"


def _imap(dovecot: SecureDovecot, user: str, password: str, ca: ThrowawayCA, tmp_path: Path) -> ImapSource:
    raw = secure.config_dict(
        dovecot.new_mailbox("probe"), SmtpCapture(), tmp_path / "s.db",
        imap_section=secure.imap(dovecot, user, ca.cert_file, tls="starttls", password=password),
        smtp_section={"host": "127.0.0.1", "port": 25, "tls": "none"},
    )  # fmt: skip
    config = secure.load(raw, tmp_path)
    return ImapSource(config.imap, config.imap.secret())


def test_imap_non_ascii_password(secure_dovecot: SecureDovecot, tls_ca: ThrowawayCA, tmp_path: Path) -> None:
    box = secure_dovecot.new_mailbox("umlaut", password=PASSWORD)
    source = _imap(secure_dovecot, box.user, PASSWORD, tls_ca, tmp_path)
    source.connect()
    try:
        assert source.pending_uids() == []
    finally:
        source.close()
    assert f"user=<{box.user}>, method=PLAIN" in secure_dovecot.log_tail(400)


def test_imap_wrong_non_ascii_password_error_carries_none_of_it(
    secure_dovecot: SecureDovecot, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    box = secure_dovecot.new_mailbox("umlaut-wrong", password=PASSWORD)
    wrong = "Falsch-Größe-€"
    source = _imap(secure_dovecot, box.user, wrong, tls_ca, tmp_path)
    with pytest.raises(LoginError) as caught:
        source.connect()
    text = f"{caught.value!r} {caught.value}"
    assert not any(c in text for c in "öß€"), text
    assert "Falsch" not in text


def test_smtp_non_ascii_password(
    secure_dovecot: SecureDovecot, relay_sink: SmtpCapture, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    relay_sink.clear()
    box = secure_dovecot.new_mailbox("umlaut-smtp", password=PASSWORD)
    cfg = SmtpConfig(host="127.0.0.1", port=secure_dovecot.submission_port, tls=TlsMode.STARTTLS,
                     ca_file=tls_ca.cert_file, user=box.user, password=PASSWORD)  # fmt: skip
    store = Store.open(tmp_path / "s.db")
    with store.transaction():
        outgoing = OutgoingMail("<u1@example.org>", "help@example.org", ("bob@example.net",), mail(), "ack")
        store.enqueue(outgoing, None, None, datetime.now(UTC))
    sender = Sender(cfg, cfg.secret(), store)

    async def drain() -> int:
        try:
            return await sender.drain()
        finally:
            await sender.close()

    assert asyncio.run(drain()) == 1
    assert relay_sink.wait_for(1)[0].rcpt_tos == ("bob@example.net",)
    store.close()
