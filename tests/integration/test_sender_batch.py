"""The sender records each accepted mail before the next goes (a deferral rides with it), and an unreachable
server costs one connection attempt and no write: real SMTP capture on 127.0.0.1, real store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailsvc.config_servers import SmtpConfig
from mailsvc.model import OutgoingMail
from mailsvc.smtp import Sender
from mailsvc.store import Store
from mailsvc.testing.sandbox import mail
from mailsvc.testing.smtp_capture import SmtpCapture

MAILS = 6


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "mailsvc.db")
    now = datetime.now(UTC)
    with store.transaction():
        for n in range(MAILS):
            message_id = f"<batch-{n}@example.org>"
            raw = mail(subject=f"Mail {n}", sender="Help <help@example.org>", message_id=message_id)
            store.enqueue(
                OutgoingMail(message_id, "help@example.org", (f"p{n}@example.net",), raw, "ack"), None, None, now
            )
    yield store
    store.close()


def statements(store: Store) -> list[str]:
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)
    return seen


def sender_for(port: int, store: Store) -> Sender:
    cfg = SmtpConfig.model_validate({"host": "127.0.0.1", "port": port, "tls": "none", "retry_base": 60})
    return Sender(cfg, "", store)


def test_each_accepted_mail_is_recorded_before_the_next_goes_and_a_deferral_rides_with_it(
    store: Store, smtp: SmtpCapture
) -> None:
    smtp.fail_next(1, 451)  # the first mail is deferred, the others sent
    sender = sender_for(smtp.port, store)
    seen = statements(store)
    assert asyncio.run(sender.drain()) == MAILS - 1
    assert len(smtp.messages) == MAILS - 1
    writes = [s for s in seen if s.startswith(("BEGIN", "COMMIT", "UPDATE"))]
    # One transaction per accepted mail (a kill sends at most one again); the deferral in the first.
    assert writes.count("BEGIN IMMEDIATE") == writes.count("COMMIT") == MAILS - 1, writes
    assert writes[:4] == ["BEGIN IMMEDIATE", writes[1], writes[2], "COMMIT"] and "last_error = '451" in writes[1]
    rows = store.db.execute("SELECT state, attempts, next_attempt_at FROM outbox ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("queued", 1)] + [("sent", 1)] * (MAILS - 1)
    assert rows[0][2] > time.time() + 30


def test_an_unreachable_server_costs_one_connection_attempt_and_no_write(store: Store, smtp: SmtpCapture) -> None:
    port = smtp.port
    smtp.stop()  # nothing listens there now: connection refused
    sender = sender_for(port, store)
    seen = statements(store)
    asyncio.run(sender.drain())
    assert not [s for s in seen if s.startswith(("BEGIN", "UPDATE", "INSERT"))]
    assert sender.held_until is not None and sender.status.faults
    assert store.db.execute("SELECT state, attempts, count(*) FROM outbox").fetchone()[:] == ("queued", 0, MAILS)
    # Held: another drain before the retry time tries nothing at all.
    assert asyncio.run(sender.drain()) == 0
    assert not [s for s in seen if s.startswith(("BEGIN", "UPDATE", "INSERT"))]
