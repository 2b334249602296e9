"""A large batch of mail over several SMTP sessions at once (smtp.connections), against the real capture:
each mail sent and recorded once, the count exact, a declined session costing nothing, a hold stopping all."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailsvc.config import parse_config
from mailsvc.smtp import MAILS_PER_SESSION, Sender
from mailsvc.store import Store
from mailsvc.testing.sandbox import sandbox_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture
from tests.integration.test_sender_paths import drain, enqueue, outbox

LARGE = 4 * MAILS_PER_SESSION


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "mailsvc.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    store = Store.open(db_path)
    yield store
    store.close()


def sender_with(capture: SmtpCapture, store: Store, tmp_path: Path, **smtp: object) -> Sender:
    raw = sandbox_config(imap_port=1143, imap_user="desk", smtp_port=capture.port, store=tmp_path / "x.db")
    raw["smtp"].update(smtp)
    return Sender(parse_config(raw, tmp_path).smtp, "", store, clock=time.time)


def message_ids(capture: SmtpCapture) -> list[str]:
    """The outbox Message-ID of each mail the capture got (enqueue() numbers them by subject)."""
    return sorted(f"<m{str(c.message['Subject']).removeprefix('mail ')}@example.org>" for c in capture.messages)


def test_a_large_batch_goes_over_the_configured_sessions_each_mail_once(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        enqueue(store, LARGE)
        assert drain(sender_with(capture, store, tmp_path, connections=4)) == LARGE
        assert capture.connections == 4
        assert message_ids(capture) == sorted(f"<m{i}@example.org>" for i in range(LARGE))
    assert outbox(db_path) == [(f"<m{i}@example.org>", "sent", 1) for i in range(LARGE)]


def test_one_session_by_default_or_when_the_batch_is_small(store: Store, db_path: Path, tmp_path: Path) -> None:
    with SmtpCapture() as capture:
        enqueue(store, LARGE)
        assert drain(sender_with(capture, store, tmp_path)) == LARGE
        assert capture.connections == 1
    with SmtpCapture() as capture:
        store.db.execute("DELETE FROM outbox")
        enqueue(store, MAILS_PER_SESSION)
        assert drain(sender_with(capture, store, tmp_path, connections=4)) == MAILS_PER_SESSION
        assert capture.connections == 1


def test_sessions_the_server_declines_narrow_the_batch_and_hold_nothing(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        capture.session_limit = 2
        enqueue(store, LARGE)
        sender = sender_with(capture, store, tmp_path, connections=4)
        with capture_logs() as logs:
            assert drain(sender) == LARGE
        assert capture.declined_sessions == 2
        declined = [e for e in logs if e["event"] == "smtp_session_declined"]
        assert len(declined) == 2 and "421 4.7.0" in declined[0]["error"]
        assert (sender.held_until, sender.status.faults) == (None, {})
        assert message_ids(capture) == sorted(f"<m{i}@example.org>" for i in range(LARGE))
    assert outbox(db_path) == [(f"<m{i}@example.org>", "sent", 1) for i in range(LARGE)]


def test_mail_refused_for_the_session_limit_narrows_the_batch_and_counts_no_attempt(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    with SmtpCapture() as capture:
        capture.session_limit, capture.decline_at = 2, "mail"  # as Microsoft 365 answers a fourth session
        enqueue(store, LARGE)
        sender = sender_with(capture, store, tmp_path, connections=4)
        with capture_logs() as logs:
            assert drain(sender) == LARGE
        declined = [e for e in logs if e["event"] == "smtp_session_declined"]
        assert len(declined) == 2 and declined[0]["error"].startswith("432 4.3.2")
        assert [e for e in logs if e["event"] in ("mail_deferred", "mail_failed", "smtp_unavailable")] == []
        assert message_ids(capture) == sorted(f"<m{i}@example.org>" for i in range(LARGE))
    # The refused mail went over another session: one attempt each, none deferred.
    assert outbox(db_path) == [(f"<m{i}@example.org>", "sent", 1) for i in range(LARGE)]


def test_a_session_closing_mid_batch_holds_every_session_and_loses_nothing(
    store: Store, db_path: Path, tmp_path: Path
) -> None:
    def closing_after_a_few(captured: Captured) -> None:
        if len(capture.messages) == 5:
            capture.fail_next(1, 421, "4.3.2 shutting down")

    with SmtpCapture(on_message=closing_after_a_few) as capture:
        enqueue(store, LARGE)
        sender = sender_with(capture, store, tmp_path, connections=4)
        with capture_logs() as logs:
            sent = drain(sender)
        assert sender.held_until is not None
        got = message_ids(capture)
        assert len(got) == sent < LARGE and len(set(got)) == sent
        # After the 421, each of the other three sessions finishes at most the mail it had in hand.
        events = [e["event"] for e in logs]
        assert events.count("smtp_unavailable") == 1
        assert events[events.index("smtp_unavailable") :].count("mail_sent") <= 3
    rows = outbox(db_path)
    assert sorted(mid for mid, state, _ in rows if state == "sent") == got
    # The rest wait for the server, untried: a hold costs no attempt.
    assert {(state, attempts) for mid, state, attempts in rows if mid not in got} == {("queued", 0)}
