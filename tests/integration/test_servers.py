"""The private test servers themselves: Dovecot and the SMTP capture behave as the other tests assume."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import imapclient
import pytest

from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.smtp_capture import Captured, SmtpCapture


def raw_mail(subject: str) -> bytes:
    return (
        f"From: Alice <alice@example.net>\r\nTo: help@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\nHello,\r\nit is broken.\r\n"
    ).encode()


def outgoing(subject: str = "Re: help") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "help@example.org"
    msg["To"] = "alice@example.net"
    msg["Subject"] = subject
    msg.set_content("We are on it.\n")
    return msg


def send(smtp: SmtpCapture, *messages: EmailMessage) -> None:
    """Send over one SMTP connection, as the daemon does."""

    async def go() -> None:
        async with aiosmtplib.SMTP(hostname=smtp.host, port=smtp.port, timeout=5) as client:
            for msg in messages:
                await client.send_message(msg)

    asyncio.run(go())


# -- Dovecot -------------------------------------------------------------------------------------------------


def test_append_then_list_uids_per_folder(mailbox: Mailbox) -> None:
    assert mailbox.uids() == []
    assert mailbox.append(raw_mail("one")) == [1]
    assert mailbox.append([raw_mail("two"), raw_mail("three")]) == [2, 3]
    mailbox.create_folder("Processed")
    mailbox.create_folder("Processed")  # idempotent
    assert mailbox.append(raw_mail("filed"), folder="Processed") == [1]

    assert mailbox.uids() == [1, 2, 3]
    assert mailbox.uids("Processed") == [1]
    # Maildir stores LF; what comes back must still be the exact bytes that went in.
    assert mailbox.fetch_all() == [raw_mail("one"), raw_mail("two"), raw_mail("three")]


def test_users_are_isolated_and_added_while_running(dovecot: PrivateDovecot, mailbox: Mailbox) -> None:
    mailbox.append(raw_mail("mine"))
    other = dovecot.new_mailbox("other")
    assert other.user != mailbox.user
    assert other.uids() == []
    assert dovecot.mail_dir(mailbox.user).is_dir()
    assert dovecot.host == "127.0.0.1" and mailbox.port == dovecot.port


def test_wrong_password_is_refused_quickly(dovecot: PrivateDovecot, mailbox: Mailbox) -> None:
    # What makes it quick: no delay after a failed login (Dovecot's default is 2 s) in the server's config.
    assert "\nauth_failure_delay = 0\n" in dovecot.conf_path.read_text()
    with pytest.raises(imapclient.exceptions.LoginError):
        dovecot.client(mailbox.user, "not-the-password")
    with mailbox.client() as client:  # and no penalty for the next login from 127.0.0.1
        assert client.has_capability("MOVE")


def test_idle_reports_mail_appended_from_another_connection(mailbox: Mailbox) -> None:
    with mailbox.client() as watcher:
        watcher.select_folder("INBOX")
        watcher.idle()
        try:
            deadline = time.monotonic() + 5
            mailbox.append(raw_mail("pushed"))
            responses: list[tuple[object, ...]] = []
            while time.monotonic() < deadline and not any(r[1:2] == (b"EXISTS",) for r in responses):
                responses += watcher.idle_check(timeout=1)
        finally:
            watcher.idle_done()
    assert (1, b"EXISTS") in responses


def test_restart_keeps_mail_and_port(dovecot: PrivateDovecot, mailbox: Mailbox) -> None:
    mailbox.append([raw_mail("before"), raw_mail("restart")])
    port, old_pid = dovecot.port, dovecot.pid
    dovecot.restart()
    assert dovecot.running and dovecot.port == port and dovecot.pid != old_pid
    assert not Path(f"/proc/{old_pid}").exists(), "the old master was reaped"
    assert mailbox.uids() == [1, 2]
    assert mailbox.fetch_all() == [raw_mail("before"), raw_mail("restart")]
    assert mailbox.append(raw_mail("after")) == [3]


def test_disable_move_hides_move_and_stop_leaves_nothing(request: pytest.FixtureRequest) -> None:
    base = Path(tempfile.mkdtemp(prefix="mailsvc-dovecot-"))  # not tmp_path: see PrivateDovecot.in_temp_dir
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    server = PrivateDovecot(base, disable_move=True)
    server.add_user("early", "pw")  # before start() too
    with server:
        with server.client("early") as client:
            assert client.list_folders() != []
        box = server.new_mailbox("nomove")
        box.append(raw_mail("stuck"))
        box.create_folder("Processed")
        with box.client() as client:
            assert not client.has_capability("MOVE")
            assert client.has_capability("UIDPLUS") and client.has_capability("IDLE")
            client.select_folder("INBOX")
            with pytest.raises(imapclient.exceptions.CapabilityError):
                client.move([1], "Processed")
        pid, port = server.pid, server.port
    assert not server.running
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(OSError), socket.create_connection((server.host, port), timeout=1):
        pass


# -- SMTP capture --------------------------------------------------------------------------------------------


def test_capture_records_what_aiosmtplib_sends(smtp: SmtpCapture) -> None:
    before = time.time()
    msg = outgoing("Re: [#1] VPN")
    asyncio.run(
        aiosmtplib.send(msg, hostname=smtp.host, port=smtp.port, recipients=["alice@example.net", "bob@example.net"])
    )
    (got,) = smtp.wait_for(1)
    assert got.mail_from == "help@example.org"
    assert got.rcpt_tos == ("alice@example.net", "bob@example.net")
    assert got.message["Subject"] == "Re: [#1] VPN"
    assert got.message.get_content() == "We are on it.\n"
    assert got.data.endswith(b"We are on it.\r\n"), "data stays as it was on the wire"
    assert before <= got.received_at <= time.time()
    assert smtp.connections == 1
    with pytest.raises(AttributeError):
        got.data = b""  # type: ignore[misc]


def test_fail_next_answers_data_with_the_code_then_recovers(smtp: SmtpCapture) -> None:
    smtp.fail_next(1, 451)
    with pytest.raises(aiosmtplib.SMTPResponseException) as failure:
        send(smtp, outgoing("first try"))
    assert failure.value.code == 451
    assert "try again later" in failure.value.message
    assert smtp.messages == []

    send(smtp, outgoing("second try"))
    assert [m.message["Subject"] for m in smtp.wait_for(1)] == ["second try"]


def test_fail_next_permanent_and_bad_codes(smtp: SmtpCapture) -> None:
    smtp.fail_next(1, 550, "no such user")
    with pytest.raises(aiosmtplib.SMTPResponseException) as failure:
        send(smtp, outgoing())
    assert (failure.value.code, failure.value.message) == (550, "no such user")
    with pytest.raises(ValueError):
        smtp.fail_next(1, 250)


def test_drop_next_closes_without_answering(smtp: SmtpCapture) -> None:
    smtp.drop_next(1)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        send(smtp, outgoing("dropped"))
    assert smtp.messages == []

    smtp.drop_next(1, deliver=True)  # the reply is lost but the message got through
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        send(smtp, outgoing("delivered anyway"))
    send(smtp, outgoing("normal"))
    assert [m.message["Subject"] for m in smtp.wait_for(2)] == ["delivered anyway", "normal"]


def test_smtp_restart_keeps_the_port(smtp: SmtpCapture) -> None:
    port = smtp.port
    smtp.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        send(smtp, outgoing("nobody home"))
    smtp.start()
    assert smtp.port == port
    send(smtp, outgoing("back"))
    assert [m.message["Subject"] for m in smtp.wait_for(1)] == ["back"]


def test_wait_for_times_out_and_says_how_many_arrived(smtp: SmtpCapture) -> None:
    send(smtp, outgoing())
    with pytest.raises(TimeoutError, match=r"expected 2 message.*got 1"):
        smtp.wait_for(2, timeout=0.3)


def test_wait_for_wakes_when_mail_arrives_later(smtp: SmtpCapture) -> None:
    sender = threading.Timer(0.2, send, args=(smtp, outgoing("late")))
    sender.start()
    try:
        (got,) = smtp.wait_for(1, timeout=5)
        assert got.message["Subject"] == "late"
    finally:
        sender.join()


def test_connections_count_sessions_and_clear_resets(smtp: SmtpCapture) -> None:
    send(smtp, outgoing("a"), outgoing("b"), outgoing("c"))
    smtp.wait_for(3)
    assert smtp.connections == 1, "three messages over one connection"
    smtp.fail_next(5)
    smtp.clear()
    assert (smtp.messages, smtp.connections) == ([], 0)
    send(smtp, outgoing("d"))
    send(smtp, outgoing("e"))
    assert len(smtp.wait_for(2)) == 2, "clear() also dropped the pending faults"
    assert smtp.connections == 2


def test_on_message_runs_in_the_server_thread_and_may_fail() -> None:
    seen: list[tuple[Captured, str]] = []

    def hook(captured: Captured) -> None:
        seen.append((captured, threading.current_thread().name))
        raise RuntimeError("a broken hook must not turn into an SMTP error")

    with SmtpCapture(on_message=hook) as capture:
        send(capture, outgoing("timed"))
        (got,) = capture.wait_for(1)
    assert seen == [(got, seen[0][1])]
    assert seen[0][1] != threading.current_thread().name
