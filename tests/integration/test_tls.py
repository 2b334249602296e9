"""TLS for real: Dovecot and an SMTP server with certificates from a CA the suite makes, verified by mailsvc."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailsvc.config import Config
from mailsvc.config_servers import SmtpConfig, TlsMode
from mailsvc.errors import TlsError
from mailsvc.imap import ImapSource
from mailsvc.model import OutgoingMail
from mailsvc.smtp import MAILS_PER_SESSION, Sender
from mailsvc.store import Store
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, write_config
from mailsvc.testing.securedovecot import SecureDovecot
from mailsvc.testing.smtp_capture import SmtpCapture
from mailsvc.testing.tls import ServerCert, ThrowawayCA
from tests.integration import secure
from tests.integration.test_daemon import Daemon


def _imap_raw(
    dovecot: SecureDovecot, mailbox: Mailbox, ca: Path, tmp_path: Path, tls: str, **imap: Any
) -> dict[str, Any]:
    section = secure.imap(dovecot, mailbox.user, ca, tls=tls, password=mailbox.password, **imap)
    return secure.config_dict(mailbox, SmtpCapture(), tmp_path / "s.db", imap_section=section,
                              smtp_section={"host": "127.0.0.1", "port": 25, "tls": "none"})  # fmt: skip


def _imap_config(dovecot: SecureDovecot, mailbox: Mailbox, ca: Path, tmp_path: Path, tls: str) -> Config:
    return secure.load(_imap_raw(dovecot, mailbox, ca, tmp_path, tls), tmp_path)


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_imap_tls_verified_by_ca_file(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, tls_ca: ThrowawayCA, tmp_path: Path, tls: str
) -> None:
    config = _imap_config(secure_dovecot, secure_mailbox, tls_ca.cert_file, tmp_path, tls)
    source = ImapSource(config.imap, config.imap.secret())
    source.connect()
    try:
        assert source.client is not None
        sock = source.client.socket()
        assert sock.version() in ("TLSv1.3", "TLSv1.2")
        assert sock.getpeercert()["subject"] == ((("commonName", "127.0.0.1"),),)
    finally:
        source.close()


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_imap_unknown_ca_is_one_clear_error(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, tmp_path: Path, tls: str
) -> None:
    stranger = ThrowawayCA(tmp_path / "other-ca", name="someone else's CA")
    config = _imap_config(secure_dovecot, secure_mailbox, stranger.cert_file, tmp_path, tls)
    source = ImapSource(config.imap, config.imap.secret())
    with pytest.raises(TlsError) as caught:
        source.connect()
    port = config.imap.effective_port
    assert str(caught.value) == (
        f"TLS with 127.0.0.1:{port} failed: certificate not trusted: unable to get local issuer certificate"
    )


def _send_all(sender: Sender) -> None:
    async def go() -> None:
        try:
            await sender.drain()
        finally:
            await sender.close()

    asyncio.run(go())


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "starttls"])
def test_smtp_tls_verified_by_ca_file(
    server_cert: ServerCert, tls_ca: ThrowawayCA, tmp_path: Path, implicit: bool
) -> None:
    with SmtpCapture(tls=server_cert, implicit_tls=implicit) as capture:
        mode = TlsMode.IMPLICIT if implicit else TlsMode.STARTTLS
        cfg = SmtpConfig(host="127.0.0.1", port=capture.port, tls=mode, ca_file=tls_ca.cert_file)
        store = Store.open(tmp_path / "s.db")
        with store.transaction():
            outgoing = OutgoingMail("<t1@example.org>", "help@example.org", ("a@example.net",), mail(), "ack")
            store.enqueue(outgoing, None, None, datetime.now(UTC))
        _send_all(Sender(cfg, "", store))
        (got,) = capture.wait_for(1)
        assert got.rcpt_tos == ("a@example.net",)
        store.close()


def test_every_session_of_a_batch_speaks_tls_with_one_context(
    server_cert: ServerCert, tls_ca: ThrowawayCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[ssl.SSLContext] = []

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = create(*args, **kwargs)
        if kwargs.get("cafile") == str(tls_ca.cert_file):  # the sender's, not the capture's server context
            made.append(context)
        return context

    create = ssl.create_default_context
    monkeypatch.setattr("mailsvc.smtp.ssl.create_default_context", counted)
    with SmtpCapture(tls=server_cert) as capture:
        cfg = SmtpConfig(
            host="127.0.0.1", port=capture.port, tls=TlsMode.STARTTLS, ca_file=tls_ca.cert_file, connections=4
        )
        store = Store.open(tmp_path / "s.db")
        with store.transaction():
            for i in range(4 * MAILS_PER_SESSION):
                outgoing = OutgoingMail(f"<t{i}@example.org>", "help@example.org", ("a@example.net",), mail(), "ack")
                store.enqueue(outgoing, None, None, datetime.now(UTC))
        _send_all(Sender(cfg, "", store))
        assert (len(capture.wait_for(4 * MAILS_PER_SESSION)), capture.connections) == (4 * MAILS_PER_SESSION, 4)
        store.close()
    # Loading the CA store is tens of milliseconds: once per sender, not per session.
    assert len(made) == 1


def test_smtp_wrong_host_name_is_one_clear_error(tls_ca: ThrowawayCA, tmp_path: Path) -> None:
    elsewhere = tls_ca.issue("elsewhere", hosts=("mail.elsewhere.test",))
    with SmtpCapture(tls=elsewhere, implicit_tls=True) as capture:
        cfg = SmtpConfig(host="localhost", port=capture.port, tls=TlsMode.IMPLICIT, ca_file=tls_ca.cert_file)
        sender = Sender(cfg, "", Store.open(tmp_path / "s.db"))
        with pytest.raises(TlsError) as caught:
            asyncio.run(sender._connection())
    assert str(caught.value) == (
        f"TLS with localhost:{capture.port} failed: the certificate is not for this host: "
        "Hostname mismatch, certificate is not valid for 'localhost'."
    )


def test_daemon_retries_an_untrusted_server_with_one_line_per_attempt(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, tmp_path: Path
) -> None:
    stranger = ThrowawayCA(tmp_path / "other-ca", name="someone else's CA")
    raw = _imap_raw(secure_dovecot, secure_mailbox, stranger.cert_file, tmp_path, "implicit",
                    retry_base=0.1, retry_cap=0.2)  # fmt: skip
    daemon = Daemon(write_config(tmp_path / "mailsvc.yaml", raw), tmp_path / "daemon.log")
    try:
        first = daemon.wait_for_event("imap_disconnected")
        # A second attempt: the daemon goes on retrying.
        secure.wait_until(daemon, lambda events: secure.count(events, "imap_disconnected") >= 2, "a retry")
    finally:
        assert daemon.stop() == 0
    assert first["error"].startswith(f"TlsError: TLS with 127.0.0.1:{secure_dovecot.imaps_port} failed: certificate")
    assert "Traceback" not in daemon.log_path.read_text()
