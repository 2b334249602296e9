"""The scheduler's error paths on a real store file: a store locked by another writer while a timer fires,
and a failed mail that belongs to no case."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailsvc.config import parse_config
from mailsvc.ingest import Pipeline
from mailsvc.model import Decision, OutgoingMail, SetTimer, TimerKind
from mailsvc.scheduler import Scheduler
from mailsvc.store import STORE_ERRORS, Store
from mailsvc.testing.sandbox import sandbox_config
from tests.unit.factories import T0, message
from tests.unit.test_store import open_case, outgoing


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "mailsvc.db"


@pytest.fixture
def scheduler(tmp_path: Path, db_path: Path) -> Iterator[Scheduler]:
    config = parse_config(sandbox_config(imap_port=1143, imap_user="desk", smtp_port=1025, store=db_path), tmp_path)
    store = Store.open(db_path, busy_timeout=0.05)
    yield Scheduler(Pipeline(config, store, clock=lambda: T0))
    store.close()


def timer_states(db_path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(db_path)
    try:
        return list(db.execute("SELECT kind, state FROM timers ORDER BY id"))
    finally:
        db.close()


def test_a_timer_due_while_another_writer_holds_the_store_waits_for_the_next_tick(
    scheduler: Scheduler, db_path: Path
) -> None:
    store = scheduler.store
    case_id = open_case(store, message())
    with store.transaction():
        store.apply_timers(Decision(case_id, "help", (SetTimer(TimerKind.CLOSE, T0),)), message(), outgoing, T0)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(STORE_ERRORS, match="locked"):
            scheduler.tick()  # the store's state: the caller backs off; the timer is not given up
        assert timer_states(db_path) == [("close", "pending")]
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert scheduler.tick().timers == 1
    assert timer_states(db_path) == [("close", "skipped")]  # an open case is not closed


def test_a_failed_mail_of_no_case_is_noticed_once_and_notifies_nobody(scheduler: Scheduler) -> None:
    store = scheduler.store
    with store.transaction():
        outbox_id = store.enqueue(
            OutgoingMail("<digest@example.org>", "help@example.org", ("lead@example.org",), b"raw", "digest"),
            None, None, T0,
        )  # fmt: skip
    store.mark_failed(outbox_id, "550 5.1.1 no such user")
    with capture_logs() as logs:
        result = scheduler.tick()
    assert (result.notices, result.mails) == (0, 0)
    assert [(e["event"], e["outbox_id"], e["purpose"]) for e in logs if e["event"].startswith("send_")] == [
        ("send_failure_without_case", outbox_id, "digest")
    ]
    assert store.unnoticed_failures() == []
    with capture_logs() as logs:
        scheduler.tick()
    assert not [e for e in logs if e["event"] == "send_failure_without_case"]
