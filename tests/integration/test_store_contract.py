"""The store contract (mailsvc/store/contract.py), held against every backend through the contract alone.

Each test gets a fresh, empty store of each backend from the `contract_store` fixture; nothing here reaches
past the contract into a backend's connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from datetime import timedelta

import pytest

from mailsvc.errors import StoreConflict, StoreError
from mailsvc.model import (
    Address,
    Case,
    CaseStatus,
    ClearBouncing,
    ClearUnverified,
    Decision,
    EndTimer,
    FileMessage,
    InboundMessage,
    MailDraft,
    MailRef,
    MarkBouncing,
    MarkUnverified,
    MergeInto,
    MessageKind,
    MessageState,
    OpenCase,
    OutboxState,
    QueueMail,
    RecordSatisfaction,
    SetStatus,
    SetTimer,
    TimerKind,
    TimerState,
)
from mailsvc.store import StoreContract
from tests.integration.stores import STORE_BACKENDS, open_contract_store
from tests.unit.factories import T0, message

REF = MailRef("INBOX", 7, 1)
ALICE = Address("alice@example.net", "Alice Example")


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[StoreContract]:
    with open_contract_store(request) as store:
        yield store


def compose(action: QueueMail, case: Case, msg: InboundMessage) -> tuple[MailDraft, ...]:
    return (
        MailDraft(
            f"<{action.purpose}-{case.id}-{msg.content_hash}@example.org>", "help@example.org",
            tuple(a.addr for a in action.to) or ("alice@example.net",), action.purpose, action.template,
            action.to, action.text, False, case.status,
        ),
    )  # fmt: skip


def open_case(store: StoreContract, msg: InboundMessage, ref: MailRef | None = REF, *extra: object) -> int:
    actions = (OpenCase("help", msg.subject, msg.from_ or ALICE), FileMessage(MessageKind.REQUEST), *extra)
    with store.transaction():
        applied = store.apply(Decision(None, "help", actions), msg, ref, compose, T0)  # type: ignore[arg-type]
    assert applied.case_id is not None
    return applied.case_id


def reply(store: StoreContract, case_id: int, msg: InboundMessage, ref: MailRef, *actions: object) -> None:
    """The requester writes again a minute later."""
    decision = Decision(case_id, "help", (FileMessage(MessageKind.REQUESTER_REPLY), *actions))  # type: ignore[arg-type]
    with store.transaction():
        store.apply(decision, msg, ref, compose, T0 + timedelta(minutes=1))


# --- apply


def test_apply_opens_a_case_files_the_message_and_queues_a_draft_in_one_transaction(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, QueueMail("ack", "ack", (ALICE,)))
    case = store.case_by_id(case_id)
    assert case is not None and (case.status, case.requester, case.queue) == (CaseStatus.OPEN, ALICE, "help")
    (filed,) = store.case_messages(case_id)
    assert (filed.kind, filed.message_id, filed.size) == ("request", "<m1@example.net>", len(b"raw"))
    (out,) = store.case_outbox(case_id)
    assert (out.purpose, out.state, out.rcpt_to) == ("ack", OutboxState.QUEUED, ("alice@example.net",))
    assert [e.event for e in store.case_events(case_id)] == ["case_opened", "message_filed", "ack_queued"]
    assert store.mailbox_position("INBOX") == (7, 1)
    assert store.counts() == {"cases": 1, "messages_filed": 1, "outbox_queued": 1}


def test_a_failure_inside_the_transaction_leaves_nothing(store: StoreContract) -> None:
    decision = Decision(None, "help", (OpenCase("help", "s", ALICE), FileMessage(MessageKind.REQUEST)))
    with pytest.raises(RuntimeError), store.transaction():
        store.apply(decision, message(), REF, compose, T0)
        raise RuntimeError("crash after apply, before commit")
    assert store.counts() == {"cases": 0}
    assert store.mailbox_position("INBOX") is None
    assert store.known_uids("INBOX", 7, [1]) == {}


def test_values_are_frozen(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, QueueMail("ack", "ack", (ALICE,)))
    (out,) = store.case_outbox(case_id)
    with pytest.raises(FrozenInstanceError):
        out.state = OutboxState.SENT  # type: ignore[misc]


# --- dedupe


def test_dedupe_by_position_and_by_message_id_plus_hash(store: StoreContract) -> None:
    open_case(store, message())
    assert store.known_uids("INBOX", 7, [1, 2]) == {1: MessageState.FILED}
    assert store.known_uids("INBOX", 8, [1]) == {}, "another UIDVALIDITY is another message"
    assert store.is_duplicate(message(raw=b"the same mail fetched again"))
    assert not store.is_duplicate(message(content_hash="other"))


@pytest.mark.parametrize(
    ("again", "ref"),
    [(message(content_hash="other"), REF), (message(), MailRef("INBOX", 8, 1))],
    ids=["same-uid", "same-dedupe-key"],
)
def test_a_message_stored_twice_is_a_conflict_and_rolls_back(
    store: StoreContract, again: InboundMessage, ref: MailRef
) -> None:
    open_case(store, message())
    with pytest.raises(StoreConflict):
        open_case(store, again, ref)
    assert store.counts() == {"cases": 1, "messages_filed": 1}


def test_quarantine_stores_the_message_without_a_case(store: StoreContract) -> None:
    with store.transaction():
        row = store.quarantine(message(), REF, "malformed", T0)
    assert store.known_uids("INBOX", 7, [1]) == {1: MessageState.QUARANTINED}
    assert store.message_raw(row) == b"raw"


def test_poison_attempts_are_counted_until_ended(store: StoreContract) -> None:
    assert store.begin_attempts("INBOX", 7, [1, 2], 1.0) == {1: 0, 2: 0}
    assert store.begin_attempts("INBOX", 7, [1], 2.0) == {1: 1}
    assert store.unfinished_attempts("INBOX", 7, [1, 2, 3]) == {1: 2, 2: 1}
    with store.transaction():
        store.end_attempts("INBOX", 7, [1])
    assert store.unfinished_attempts("INBOX", 7, [1, 2]) == {2: 1}


# --- threading lookups


def test_threading_lookups_follow_the_order_given_and_merges(store: StoreContract) -> None:
    first = open_case(store, message(), REF)
    second = open_case(store, message(message_id="<m2@example.net>", content_hash="h2"), MailRef("INBOX", 7, 2))
    lookup = ["<unknown@x>", "<m2@example.net>", "<m1@example.net>"]
    assert store.case_by_message_ids(lookup).id == second  # type: ignore[union-attr]
    assert store.case_by_message_ids(list(reversed(lookup))).id == first  # type: ignore[union-attr]
    assert {k: c.id for k, c in store.cases_by_message_ids(lookup).items()} == {
        "<m2@example.net>": second,
        "<m1@example.net>": first,
    }
    assert store.case_by_message_ids(["<unknown@x>"]) is None
    with store.transaction():
        store.apply_timers(Decision(second, "help", (MergeInto(first),)), message(), compose, T0)
    assert store.case_by_id(second).id == first  # type: ignore[union-attr]
    assert store.case_by_message_ids(["<m2@example.net>"]).id == first  # type: ignore[union-attr]


def test_sent_message_ids_thread_to_their_case(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, QueueMail("ack", "ack", (ALICE,)))
    (out,) = store.case_outbox(case_id)
    assert store.case_by_message_ids([out.message_id]).id == case_id  # type: ignore[union-attr]


# --- outbox


def test_drafts_are_built_once_then_due_then_sent(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, QueueMail("ack", "ack", (ALICE,)))
    assert store.due_mail(T0.timestamp()) == [] and store.next_due_at() is None, "a draft is not sent"
    (draft,) = store.pending_drafts()
    assert (draft.case_id, draft.draft.purpose, draft.draft.to) == (case_id, "ack", (ALICE,))
    assert draft.cause is not None and store.message_raw(draft.cause) == b"raw"
    with store.transaction():
        assert store.store_built(draft.outbox_id, b"built")
        assert not store.store_built(draft.outbox_id, b"again"), "built once, by whoever comes first"
    (due,) = store.due_mail(T0.timestamp())
    assert (due.id, due.raw, due.attempts, due.rcpt_to) == (draft.outbox_id, b"built", 0, ("alice@example.net",))
    with store.transaction():
        store.mark_retry(due.id, "451 later", T0.timestamp() + 60)
    assert store.due_mail(T0.timestamp()) == [] and store.next_due_at() == T0.timestamp() + 60
    with store.transaction():
        store.mark_sent(due.id, T0.timestamp() + 61)
    (entry,) = store.list_outbox()
    assert (entry.state, entry.attempts, entry.sent_at, entry.last_error) == (
        OutboxState.SENT, 2, T0.timestamp() + 61, ""
    )  # fmt: skip
    assert store.requeue([due.id], T0.timestamp() + 99) == [], "sent mail is never sent again"


def test_failed_mail_is_noticed_once_and_can_be_requeued(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, QueueMail("ack", "ack", (ALICE,)))
    (draft,) = store.pending_drafts()
    with store.transaction():
        assert store.mark_build_failed(draft.outbox_id, "cannot build: TemplateError: boom")
    (failed,) = store.unnoticed_failures()
    assert (failed.id, failed.case_id, failed.purpose, failed.last_error) == (
        draft.outbox_id, case_id, "ack", "cannot build: TemplateError: boom"
    )  # fmt: skip
    with store.transaction():
        store.mark_failure_noticed(failed.id)
    assert store.unnoticed_failures() == []
    assert store.failed_mail_ids(0) == [failed.id]
    assert [f.queue for f in store.report_failed_mail(0)] == ["help"]
    with store.transaction():
        assert store.requeue([failed.id], T0.timestamp()) == [failed.id]
    assert [d.outbox_id for d in store.pending_drafts()] == [failed.id], "built anew after a retry"
    assert store.list_outbox(OutboxState.FAILED) == []


def test_requester_thread_lists_what_the_requester_sent_and_received_in_order(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, QueueMail("ack", "ack", (ALICE,)))
    reply(store, case_id, message(message_id="<m2@example.net>", content_hash="h2"), MailRef("INBOX", 7, 2),
          QueueMail("notify", "notify", (Address("bob@example.org"),)))  # fmt: skip
    ack, notify = store.case_outbox(case_id)
    entries = store.requester_thread(case_id, before_outbox_id=notify.id + 1)
    assert [(e.message_id, e.from_requester) for e in entries] == [
        ("<m1@example.net>", True), (ack.message_id, False), ("<m2@example.net>", True),
    ]  # fmt: skip


# --- timers


def test_timers_fall_due_by_case_and_end_once(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, SetTimer(TimerKind.REMINDER, T0 + timedelta(hours=1)))
    assert store.next_timer_at() == T0 + timedelta(hours=1)
    assert store.due_timers(T0) == {}
    due = store.due_timers(T0 + timedelta(hours=2))
    assert list(due) == [case_id]
    (timer,) = due[case_id]
    assert (timer.kind, timer.due_at) == (TimerKind.REMINDER, T0 + timedelta(hours=1))
    end = Decision(case_id, "help", (EndTimer(timer, TimerState.FIRED, "sent"),))
    with store.transaction():
        store.apply_timers(end, message(), compose, T0)
    assert store.due_timers(T0 + timedelta(hours=2)) == {} and store.next_timer_at() is None
    (entry,) = store.case_timers(case_id)
    assert (entry.kind, entry.state, entry.done_at) == (TimerKind.REMINDER, TimerState.FIRED, T0.timestamp())
    with pytest.raises(StoreError), store.transaction():
        store.apply_timers(end, message(), compose, T0)


def test_a_timer_set_again_replaces_the_pending_one(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, SetTimer(TimerKind.SLA_1, T0 + timedelta(hours=1)))
    later = Decision(case_id, "help", (SetTimer(TimerKind.SLA_1, T0 + timedelta(hours=3)),))
    with store.transaction():
        store.apply_timers(later, message(), compose, T0)
    assert [(t.state, t.due_at) for t in store.case_timers(case_id)] == [
        (TimerState.CANCELLED, (T0 + timedelta(hours=1)).timestamp()),
        (TimerState.PENDING, (T0 + timedelta(hours=3)).timestamp()),
    ]
    assert store.case_request(case_id) == b"raw" and store.case_latest_raw(case_id) == b"raw"


# --- policy comes with the actions; the report's queries


def test_automatic_mail_is_counted_and_a_relay_sets_the_first_response(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, QueueMail("ack", "ack", (ALICE,)))
    assert store.automatic_mail_counts(["Alice@Example.net"], T0) == {"alice@example.net": 1}
    staff = message(message_id="<s1@example.org>", content_hash="s1")
    later = T0 + timedelta(minutes=5)
    decision = Decision(
        case_id, "help", (FileMessage(MessageKind.STAFF_REPLY), QueueMail("relay", "relay", (ALICE,)),
                          SetStatus(CaseStatus.RESOLVED), RecordSatisfaction(5, "great")),
    )  # fmt: skip
    with store.transaction():
        store.apply(decision, staff, MailRef("INBOX", 7, 2), compose, later)
    assert store.automatic_mail_counts(["alice@example.net"], T0) == {"alice@example.net": 1}, "a relay is not"
    (facts,) = store.report_cases(0)
    assert (facts.id, facts.status, facts.first_response_at, facts.resolved_at, facts.satisfaction) == (
        case_id, CaseStatus.RESOLVED, later.timestamp(), later.timestamp(), 5
    )  # fmt: skip
    assert store.first_responses("help", 0) == [(T0.timestamp(), later.timestamp())]
    assert store.report_cases(later.timestamp() + 1) == []


def test_figures_and_the_digest_bookkeeping(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, QueueMail("ack", "ack", (ALICE,)),
                        SetTimer(TimerKind.SLA_1, T0 + timedelta(hours=1)))  # fmt: skip
    gauges = store.store_gauges((T0 + timedelta(hours=2)).timestamp())
    assert (gauges.queued, gauges.oldest_queued_at, gauges.timers_due, gauges.timers_pending) == (
        1, T0.timestamp(), 1, 1
    )  # fmt: skip
    assert dict(gauges.cases) == {("help", "open"): 1}
    assert store.last_mail_at() == T0.timestamp()
    assert store.waiting_cases() == [(case_id, "help", message().subject, T0.timestamp())]
    with store.transaction():
        assert store.claim_digest("day", 0.0, 86400.0, 1.0)
        assert not store.claim_digest("day", 0.0, 86400.0, 2.0), "one digest per period"
        (out,) = store.case_outbox(case_id)
        store.record_digest_mail("day", 86400.0, out.id)
    assert store.digest_sent("day", 86400.0) and not store.digest_sent("week", 86400.0)


def test_bouncing_addresses_and_lists(store: StoreContract) -> None:
    case_id = open_case(store, message())
    with store.transaction():
        store.apply_timers(Decision(case_id, "help", (MarkBouncing(("Zoe@Example.net",), "550"),)), message(),
                           compose, T0)  # fmt: skip
    assert store.bouncing(["zoe@example.net", "alice@example.net"]) == frozenset({"zoe@example.net"})
    with store.transaction():
        store.apply_timers(Decision(case_id, "help", (ClearBouncing("zoe@example.net"),)), message(), compose, T0)
    assert store.bouncing(["zoe@example.net"]) == frozenset()
    assert [c.id for c in store.list_cases(CaseStatus.OPEN)] == [case_id]
    assert store.list_cases(CaseStatus.CLOSED) == []


def test_a_requester_marked_unverified_is_held_until_cleared_or_forgotten(store: StoreContract) -> None:
    case_id = open_case(store, message(), REF, MarkUnverified("Alice@Example.net", "dmarc=fail"))
    assert store.unverified_senders(case_id, ["alice@example.net", "bob@example.org"]) == {"alice@example.net"}
    assert store.unverified_senders(case_id + 1, ["alice@example.net"]) == frozenset(), "per case"
    assert store.unverified_senders(case_id, []) == frozenset()
    with store.transaction():
        store.apply_timers(Decision(case_id, "help", (ClearUnverified("alice@example.net"),)), message(), compose, T0)
    assert store.unverified_senders(case_id, ["alice@example.net"]) == frozenset()
    assert [e.event for e in store.case_events(case_id)][-1] == "unverified_cleared"
    other = open_case(store, message(message_id="<m2@example.net>"), MailRef("INBOX", 7, 2),
                      MarkUnverified("alice@example.net", "dmarc=fail"))  # fmt: skip
    with store.transaction():
        store.forget_address("alice@example.net", T0)
    assert store.unverified_senders(other, ["alice@example.net"]) == frozenset()


def test_a_merge_carries_the_unverified_marks_into_the_case_merged_into(store: StoreContract) -> None:
    target = open_case(store, message(), REF, MarkUnverified("zoe@example.net", "dmarc=fail"))
    source = open_case(store, message(message_id="<m2@example.net>", content_hash="h2"), MailRef("INBOX", 7, 2),
                       MarkUnverified("alice@example.net", "dmarc=fail"),
                       MarkUnverified("zoe@example.net", "not authenticated"))  # fmt: skip
    addresses = ["alice@example.net", "zoe@example.net", "bob@example.org"]
    assert store.unverified_senders(target, addresses) == {"zoe@example.net"}
    with store.transaction():
        store.apply_timers(Decision(source, "help", (MergeInto(target),)), message(), compose, T0)
    assert store.unverified_senders(target, addresses) == {"alice@example.net", "zoe@example.net"}
    carried = [e.detail for e in store.case_events(target) if e.event == "marked_unverified"]
    assert carried == [
        "zoe@example.net: no automatic mail (dmarc=fail)",
        f"alice@example.net: no automatic mail (from case {source}: dmarc=fail)",
    ], "a mark the case had already stays as it was"


def test_a_large_message_is_stored_whole_and_its_hash_read_without_its_bytes(store: StoreContract) -> None:
    raw = bytes(range(256)) * (5 * 1024 * 1024 // 256 + 3)  # over the piece the SQLite store writes at a time
    msg = message(raw=raw, content_hash="big")
    with store.transaction():
        applied = store.apply(Decision(None, "help", (OpenCase("help", msg.subject, ALICE),
                              FileMessage(MessageKind.REQUEST))), msg, REF, compose, T0)  # fmt: skip
    assert applied.case_id is not None and applied.message_row is not None
    assert store.message_raw(applied.message_row) == raw
    assert store.message_hash(applied.message_row) == "big"
    assert store.message_hash(request_of=applied.case_id) == "big"
    assert store.message_hash(applied.message_row + 1) is None
