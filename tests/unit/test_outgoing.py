"""Outgoing mail follows the message its stage parsed: the bytes fetched are parsed once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailsvc import outgoing
from mailsvc.config import parse_config
from mailsvc.ingest import Outcome, Pipeline
from mailsvc.model import InboundMessage, MailRef
from mailsvc.parse import ParseLimits, parse_message
from mailsvc.scheduler import Scheduler
from mailsvc.store import Store
from mailsvc.testing.sandbox import mail, sandbox_config


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    raw = sandbox_config(imap_port=1, imap_user="help", smtp_port=2, store=tmp_path / "mailsvc.db")
    store = Store.open(tmp_path / "mailsvc.db")
    yield Pipeline(parse_config(raw, tmp_path), store)
    store.close()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The raw bytes the builder parses (again)."""
    seen: list[bytes] = []

    def counted(raw: bytes, limits: ParseLimits) -> InboundMessage:
        seen.append(raw)
        return parse_message(raw, limits)

    monkeypatch.setattr(outgoing, "parse_message", counted)
    return seen


def test_the_acknowledgement_is_built_from_the_message_ingest_parsed(pipeline: Pipeline, parses: list[bytes]) -> None:
    with pipeline.store.transaction():
        outcome, case_id = pipeline.handle(MailRef("INBOX", 1, 1), mail(subject="Scanner offline"))
    assert outcome is Outcome.FILED
    assert pipeline.build_pending().built == 1
    assert parses == []
    (row,) = pipeline.store.case_outbox(case_id or 0)
    raw = pipeline.store.db.execute("SELECT raw FROM outbox WHERE id = ?", (row.id,)).fetchone()[0]
    assert f"Subject: Re: Scanner offline [Help #{case_id}]".encode() in raw


def test_a_parse_handed_over_for_other_bytes_is_not_used(pipeline: Pipeline, parses: list[bytes]) -> None:
    """A rolled-back transaction gives its row ids to the next: the builder checks the bytes are the same."""
    with pipeline.store.transaction():
        _, case_id = pipeline.handle(MailRef("INBOX", 1, 1), mail(subject="Scanner offline"))
    row = pipeline.store.db.execute("SELECT id FROM messages WHERE case_id = ?", (case_id,)).fetchone()[0]
    other = parse_message(mail(subject="Something else entirely"))
    pipeline.builder.known(other, message_row=row)
    assert pipeline.build_pending().built == 1
    (stored,) = parses
    assert b"Scanner offline" in stored


def test_a_timer_mail_is_built_from_the_request_the_scheduler_parsed(tmp_path: Path, parses: list[bytes]) -> None:
    raw = sandbox_config(imap_port=1, imap_user="help", smtp_port=2, store=tmp_path / "mailsvc.db")
    raw["queues"]["help"]["sla"] = {"first_response": "1h", "escalate_to": ["lead@example.org"]}
    now = [datetime(2026, 11, 18, 9, 0, tzinfo=UTC)]
    store = Store.open(tmp_path / "mailsvc.db")
    pipeline = Pipeline(parse_config(raw, tmp_path), store, clock=lambda: now[0])
    with store.transaction():
        _, case_id = pipeline.handle(MailRef("INBOX", 1, 1), mail(subject="Scanner offline"))
    pipeline.build_pending()
    now[0] += timedelta(hours=2)
    tick = Scheduler(pipeline).tick()
    assert (tick.timers, tick.mails) == (1, 1)
    escalation = store.case_outbox(case_id or 0)[-1]
    assert (escalation.purpose, escalation.rcpt_to) == ("escalation", ("lead@example.org",))
    assert parses == []
    store.close()
