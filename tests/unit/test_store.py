"""The store on a real SQLite file: migrations, apply in one transaction, lookups, outbox states."""

from pathlib import Path

import pytest

from mailsvc.model import (
    Case,
    CaseStatus,
    Decision,
    FileMessage,
    InboundMessage,
    MailDraft,
    MailRef,
    MessageKind,
    MessageState,
    OpenCase,
    QueueMail,
    SetStatus,
)
from mailsvc.store import Store
from mailsvc.store.migrate import latest_version
from tests.unit.factories import T0, message

REF = MailRef("INBOX", 7, 1)


def outgoing(action: QueueMail, case: Case, msg: InboundMessage) -> tuple[MailDraft, ...]:
    draft = MailDraft(
        f"<{action.purpose}-{case.id}@example.org>",
        "help@example.org",
        ("a@x",),
        action.purpose,
        action.template,
        (),
        "",
        False,
        case.status,
    )
    return (draft,)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "state" / "mailsvc.db")


def open_case(store: Store, msg: InboundMessage, ref: MailRef = REF) -> int:
    decision = Decision(
        None,
        "help",
        (OpenCase("help", msg.subject, msg.from_), FileMessage(MessageKind.REQUEST), QueueMail("ack", "ack", ())),
    )
    with store.transaction():
        applied = store.apply(decision, msg, ref, outgoing, T0)
    assert applied.case_id is not None
    return applied.case_id


def test_migrations_run_once_and_record_the_version(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    Store.open(path).close()
    again = Store.open(path)
    assert again.db.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_apply_opens_case_files_message_and_queues_mail(store: Store) -> None:
    msg = message()
    case_id = open_case(store, msg)
    case = store.case_by_id(case_id)
    assert case is not None and case.status is CaseStatus.OPEN and case.requester == msg.from_
    assert [m.kind for m in store.case_messages(case_id)] == ["request"]
    outbox = store.case_outbox(case_id)
    assert [(o.purpose, o.state) for o in outbox] == [("ack", "queued")]
    # Both the received and the sent Message-ID thread to the case.
    assert store.case_by_message_ids(["<m1@example.net>"]).id == case_id  # type: ignore[union-attr]
    assert store.case_by_message_ids([f"<ack-{case_id}@example.org>"]).id == case_id  # type: ignore[union-attr]
    assert store.known_uids("INBOX", 7, [1, 2]) == {1: MessageState.FILED}
    assert store.mailbox_position("INBOX") == (7, 1)
    assert store.is_duplicate(msg)
    assert not store.is_duplicate(message(content_hash="other"))


def test_a_failing_action_leaves_nothing_behind(store: Store) -> None:
    def broken(action: QueueMail, case: Case, msg: InboundMessage) -> tuple[MailDraft, ...]:
        raise RuntimeError("the action could not be recorded")

    decision = Decision(
        None,
        "help",
        (OpenCase("help", "s", message().from_), FileMessage(MessageKind.REQUEST), QueueMail("ack", "ack", ())),
    )
    with pytest.raises(RuntimeError), store.transaction():
        store.apply(decision, message(), REF, broken, T0)
    assert store.counts() == {"cases": 0}
    assert store.known_uids("INBOX", 7, [1]) == {}


def test_savepoint_rolls_back_one_message_of_a_batch(store: Store) -> None:
    with store.transaction():
        with store.savepoint():
            store.quarantine(message(content_hash="a"), MailRef("INBOX", 7, 1), "no_sender", T0)
        with pytest.raises(RuntimeError), store.savepoint():
            store.quarantine(message(content_hash="b"), MailRef("INBOX", 7, 2), "no_sender", T0)
            raise RuntimeError
    assert store.known_uids("INBOX", 7, [1, 2]) == {1: MessageState.QUARANTINED}


def test_status_change_and_case_listing(store: Store) -> None:
    case_id = open_case(store, message())
    with store.transaction():
        store.apply(
            Decision(case_id, "help", (FileMessage(MessageKind.REQUESTER_REPLY), SetStatus(CaseStatus.WAITING))),
            message(message_id="<m2@example.net>", content_hash="h2"),
            MailRef("INBOX", 7, 2),
            outgoing,
            T0,
        )
    assert [c.id for c in store.list_cases(CaseStatus.WAITING)] == [case_id]
    assert store.list_cases(CaseStatus.OPEN) == []
    assert [e.event for e in store.case_events(case_id)][-1] == "status_changed"


def test_a_draft_is_not_sent_until_built_and_a_build_failure_is_a_failed_mail(store: Store) -> None:
    first = open_case(store, message())
    second = open_case(store, message(message_id="<m2@example.net>", content_hash="h2"), MailRef("INBOX", 7, 2))
    assert store.due_mail(now=T0.timestamp()) == [] and store.next_due_at() is None
    one, two = store.pending_drafts()
    assert (one.case_id, one.draft.purpose, one.draft.status) == (first, "ack", CaseStatus.OPEN)
    assert store.store_built(one.outbox_id, b"built")
    assert not store.store_built(one.outbox_id, b"again"), "built once, by whoever comes first"
    assert store.mark_build_failed(two.outbox_id, "cannot build: TemplateError: boom")
    assert store.pending_drafts() == []
    (due,) = store.due_mail(now=T0.timestamp())
    assert (due.case_id, due.raw) == (first, b"built")
    (failed,) = store.unnoticed_failures()
    assert (failed.case_id, failed.last_error) == (second, "cannot build: TemplateError: boom")


def test_outbox_lifecycle(store: Store) -> None:
    case_id = open_case(store, message())
    (draft,) = store.pending_drafts()
    store.store_built(draft.outbox_id, b"raw")
    (mail,) = store.due_mail(now=T0.timestamp())
    store.mark_retry(mail.id, "451 later", next_attempt_at=T0.timestamp() + 60)
    assert store.due_mail(now=T0.timestamp()) == []
    assert store.next_due_at() == T0.timestamp() + 60
    (again,) = store.due_mail(now=T0.timestamp() + 61)
    assert again.message_id == mail.message_id and again.attempts == 1
    store.mark_sent(again.id, T0.timestamp() + 61)
    assert store.next_due_at() is None
    (row,) = store.case_outbox(case_id)
    assert (row.state, row.attempts) == ("sent", 2)


def test_uidvalidity_change_resets_the_position(store: Store) -> None:
    open_case(store, message(), MailRef("INBOX", 7, 50))
    open_case(store, message(message_id="<x@y>", content_hash="h3"), MailRef("INBOX", 8, 3))
    assert store.mailbox_position("INBOX") == (8, 3)


def test_requester_thread_names_what_the_requester_sent_or_received_only(store: Store) -> None:
    case_id = open_case(store, message())
    staff_mail = QueueMail("notify", "notify", ())
    reply = Decision(
        case_id, "help", (FileMessage(MessageKind.STAFF_REPLY), staff_mail, QueueMail("relay", "relay", ()))
    )
    with store.transaction():
        store.apply(reply, message(message_id="<staff@example.org>", content_hash="h2"), MailRef("INBOX", 7, 2),
                    outgoing, T0)  # fmt: skip
    ack, _notify, relay = (r.id for r in store.case_outbox(case_id))
    entries = store.requester_thread(case_id, before_outbox_id=relay + 1)
    assert [(e.message_id, e.from_requester) for e in entries] == [
        ("<m1@example.net>", True), (f"<ack-{case_id}@example.org>", False), (f"<relay-{case_id}@example.org>", False),
    ]  # fmt: skip
    assert [e.message_id for e in store.requester_thread(case_id, before_outbox_id=ack)] == ["<m1@example.net>"]


def test_requester_thread_stops_at_the_message_that_caused_the_mail(store: Store) -> None:
    case_id = open_case(store, message())
    later = Decision(case_id, "help", (FileMessage(MessageKind.REQUESTER_REPLY),))
    with store.transaction():  # the requester wrote again before the acknowledgement was built
        store.apply(later, message(message_id="<m2@example.net>", content_hash="h2"), MailRef("INBOX", 7, 2),
                    outgoing, T0)  # fmt: skip
    (draft,) = store.pending_drafts()
    assert draft.cause is not None
    entries = store.requester_thread(case_id, draft.outbox_id, up_to_message=draft.cause)
    assert [e.message_id for e in entries] == ["<m1@example.net>"]
    assert len(store.requester_thread(case_id, draft.outbox_id)) == 2


def test_the_junk_mover_reads_its_pending_rows_by_index_not_every_message(tmp_path: Path) -> None:
    """The mover runs after every pass: with a store of 100,000 messages it must not read each row."""
    store = Store.open(tmp_path / "store.db")
    store.db.executemany(
        "INSERT INTO messages (state, mailbox, uidvalidity, uid, content_hash, dedupe_key, received_at, raw) "
        "VALUES ('filed', 'INBOX', 1, ?, ?, ?, ?, ?)",
        [(n, f"h{n}", f"k{n}", n, b"x" * 1500) for n in range(1, 5001)],
    )
    store.db.execute("UPDATE messages SET junk_move = 'pending' WHERE uid % 1000 = 0")
    store.db.commit()
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)  # the statement as run, its parameters bound
    assert [row for row, _ in store.pending_junk_moves("INBOX")] == [1000, 2000, 3000, 4000, 5000]
    store.db.set_trace_callback(None)
    (sql,) = [s for s in statements if "junk_move" in s]
    plan = " ".join(row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + sql))
    assert "USING INDEX messages_junk_pending" in plan and "TEMP B-TREE" not in plan, plan
