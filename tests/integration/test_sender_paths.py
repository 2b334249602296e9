"""The sender's decisions against the real SMTP capture and a real store: a kept connection the server
closed, a server closing the session (421), refused recipients, and a store that is locked while the
outcome is recorded (the mail stays queued; accepted mail is recorded later, never sent twice)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailsvc.config import parse_config
from mailsvc.model import OutgoingMail
from mailsvc.smtp import Sender
from mailsvc.store import Store
from mailsvc.testing.sandbox import mail, read_rows, sandbox_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture


class Clock:
    """Time for the sender, moved forward by the test; made after the mail is queued, so it is due."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "mailsvc.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    store = Store.open(db_path, busy_timeout=0.05)
    yield store
    store.close()


def sender_for(capture: SmtpCapture, store: Store, tmp_path: Path, clock: Callable[[], float] = time.time) -> Sender:
    """A sender to the capture, over the test's store, on the test's clock when it moves time."""
    raw = sandbox_config(imap_port=1143, imap_user="desk", smtp_port=capture.port, store=tmp_path / "x.db")
    return Sender(parse_config(raw, tmp_path).smtp, "", store, clock=clock)


def queued_on_a_clock(capture: SmtpCapture, store: Store, tmp_path: Path, n: int) -> tuple[Sender, Clock]:
    """`n` mails queued, then a sender on a clock the test moves (made after them, so they are due)."""
    enqueue(store, n)
    clock = Clock()
    return sender_for(capture, store, tmp_path, clock), clock


@contextmanager
def another_writer(db_path: Path) -> Iterator[None]:
    """Another process in a write transaction on the store for as long as the block runs."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def enqueue(store: Store, n: int, rcpt: tuple[str, ...] = ("bob@example.net",)) -> None:
    with store.transaction():
        for i in range(n):
            outgoing = OutgoingMail(f"<m{i}@example.org>", "help@example.org", rcpt, mail(subject=f"mail {i}"), "ack")
            store.enqueue(outgoing, None, None, datetime.now(UTC))


def outbox(db_path: Path) -> list[tuple[object, ...]]:
    return read_rows(db_path, "SELECT message_id, state, attempts FROM outbox ORDER BY id")


def drain(sender: Sender) -> int:
    async def run() -> int:
        try:
            return await sender.drain()
        finally:
            await sender.close()

    return asyncio.run(run())


def test_a_kept_connection_the_server_closed_is_retried_once_on_a_fresh_one(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    def close_after_the_first(captured: Captured) -> None:
        capture.drop_next(1)  # the next DATA: the server hangs up, as one closing an idle connection does

    with SmtpCapture(on_message=close_after_the_first) as capture:
        enqueue(store, 2)
        sender = sender_for(capture, store, tmp_path)
        assert drain(sender)  # one connection kept between the mails == 2
        subjects = [m.message["Subject"] for m in capture.messages]
        assert subjects == ["mail 0", "mail 1"]
        assert capture.connections == 2
    assert outbox(db_path) == [("<m0@example.org>", "sent", 1), ("<m1@example.org>", "sent", 1)]


def test_a_server_closing_the_session_holds_the_queue_without_counting_an_attempt(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        sender, clock = queued_on_a_clock(capture, store, tmp_path, 2)
        capture.fail_next(1, 421, "4.3.2 shutting down")
        assert drain(sender) == 0
        assert sender.held_until is not None and sender.held_until > clock.now
        assert sender.status.faults == {"smtp": sender.status.faults["smtp"]}
        assert outbox(db_path) == [("<m0@example.org>", "queued", 0), ("<m1@example.org>", "queued", 0)]
        assert drain(sender) == 0  # held: not even a connection
        assert capture.connections == 1
        clock.now = sender.held_until
        assert drain(sender) == 2
    assert sender.status.faults == {}


def test_a_recipient_refused_for_good_is_logged_and_the_others_get_the_mail(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        capture.refused_rcpts["gone@example.net"] = "550 5.1.1 no such user"
        enqueue(store, 1, rcpt=("bob@example.net", "gone@example.net"))
        with capture_logs() as logs:
            assert drain(sender_for(capture, store, tmp_path)) == 1
        assert capture.messages[0].rcpt_tos == ("bob@example.net",)
    refused = [e for e in logs if e["event"] == "mail_recipient_refused"]
    assert [(e["recipient"], e["error"]) for e in refused] == [("gone@example.net", "550 5.1.1 no such user")]
    assert outbox(db_path) == [("<m0@example.org>", "sent", 1)]


def test_a_mail_every_recipient_refuses_for_good_fails_with_their_answers(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        capture.refused_rcpts["gone@example.net"] = "550 5.1.1 no such user"
        capture.refused_rcpts["full@example.net"] = "552 5.2.2 mailbox full"
        enqueue(store, 1, rcpt=("gone@example.net", "full@example.net"))
        assert drain(sender_for(capture, store, tmp_path)) == 0
        assert capture.messages == []
    ((state, error),) = read_rows(db_path, "SELECT state, last_error FROM outbox")
    assert state == "failed"
    assert error == "gone@example.net: 550 5.1.1 no such user; full@example.net: 552 5.2.2 mailbox full"


def test_a_store_locked_while_a_refusal_is_recorded_keeps_the_mail_queued(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        sender, clock = queued_on_a_clock(capture, store, tmp_path, 1)
        capture.fail_next(1, 451, "4.7.1 greylisted")
        with another_writer(db_path), capture_logs() as logs:
            assert drain(sender) == 0
        assert [e["event"] for e in logs if e["event"].startswith("store_")] == ["store_unavailable"]
        assert sender.store_retry_at is not None
        assert outbox(db_path) == [("<m0@example.org>", "queued", 0)]  # the refusal was not recorded
        clock.now = sender.store_retry_at
        assert drain(sender) == 1  # tried again: greylisting passed
        assert len(capture.messages) == 1
    # Both tries count: the refusal is recorded with the acceptance once the store answers again.
    assert outbox(db_path) == [("<m0@example.org>", "sent", 2)]


def test_mail_accepted_while_the_store_is_locked_is_recorded_later_and_not_sent_again(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        sender, clock = queued_on_a_clock(capture, store, tmp_path, 2)
        with another_writer(db_path):
            assert drain(sender) == 1  # the first was accepted; nothing more is sent that could not be recorded
            assert sender.store_retry_at is not None
            clock.now = sender.store_retry_at
            assert drain(sender) == 0  # still locked: still unrecorded, nothing sent
        clock.now = sender.store_retry_at
        assert drain(sender) == 1
        assert [m.message["Subject"] for m in capture.messages] == ["mail 0", "mail 1"]
    assert outbox(db_path) == [("<m0@example.org>", "sent", 1), ("<m1@example.org>", "sent", 1)]


def test_a_sender_stopped_while_the_store_is_locked_logs_the_accepted_mail_it_could_not_record(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        sender, _ = queued_on_a_clock(capture, store, tmp_path, 2)
        with another_writer(db_path), capture_logs() as logs:
            assert drain(sender) == 1
            asyncio.run(sender.stop())
    assert [e["message_ids"] for e in logs if e["event"] == "mail_sent_unrecorded"] == [["<m0@example.org>"]]
    assert outbox(db_path) == [("<m0@example.org>", "queued", 0), ("<m1@example.org>", "queued", 0)]


def test_a_server_refusing_ehlo_gets_the_mail_after_helo(store: Store, db_path: Path, tmp_path: Path) -> None:
    with SmtpCapture() as capture:
        capture.ehlo = "refuse"
        enqueue(store, 1)
        assert drain(sender_for(capture, store, tmp_path)) == 1
        assert capture.messages[0].rcpt_tos == ("bob@example.net",)
    assert outbox(db_path) == [("<m0@example.org>", "sent", 1)]
