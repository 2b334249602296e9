"""The store's contract: what ingest, the scheduler, the sender, the CLI, the report, metrics and the digest
may ask of a store, split by job, and the frozen values it answers with (never a driver's rows).

Every backend (SQLite, PostgreSQL) implements `StoreContract`; tests/integration/test_store_contract.py holds
each to it. Policy is not part of it: which mail is automatic and what counts as a first response come
from the pure core with the actions (`QueueMail.automatic`, `QueueMail.first_response`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mailsvc.model import (
    Case,
    CaseStatus,
    Decision,
    InboundMessage,
    MailDraft,
    MailRef,
    MessageState,
    OutboxState,
    OutgoingMail,
    QueueMail,
    Timer,
    TimerKind,
    TimerState,
)
from mailsvc.report import CaseFacts, FailedMail
from mailsvc.store.retention import Erased
from mailsvc.store.senders import Backlog, SenderRule

# The draft of the mail a QueueMail action asks for, once the case exists (built after the commit).
Compose = Callable[[QueueMail, Case, InboundMessage], Sequence[MailDraft]]


# --- the values a store answers with


@dataclass(frozen=True, slots=True)
class Applied:
    """What `apply` did: the row ids it wrote and the events to log."""

    case_id: int | None
    message_row: int | None
    outbox_ids: tuple[int, ...]
    events: tuple[tuple[str, dict[str, object]], ...]


@dataclass(frozen=True, slots=True)
class OutboxMail:
    """A built mail due for sending."""

    id: int
    case_id: int | None
    purpose: str
    message_id: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    raw: bytes
    attempts: int
    created_at: float


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outgoing mail as `mailsvc outbox list` and `cases show` show it (times in UNIX seconds)."""

    id: int
    case_id: int | None
    purpose: str
    message_id: str
    rcpt_to: tuple[str, ...]
    state: OutboxState
    attempts: int
    created_at: float
    next_attempt_at: float
    sent_at: float | None
    last_error: str


@dataclass(frozen=True, slots=True)
class PendingDraft:
    """A draft waiting to be built: its outbox row, case, the message that caused it (if any)."""

    outbox_id: int
    case_id: int | None
    cause: int | None
    draft: MailDraft


@dataclass(frozen=True, slots=True)
class ThreadEntry:
    """A Message-ID the requester received or sent on a case, oldest first."""

    message_id: str
    from_requester: bool


@dataclass(frozen=True, slots=True)
class FailedOutgoing:
    """A mail that failed for good and the team has not been told of."""

    id: int
    case_id: int | None
    purpose: str
    rcpt_to: tuple[str, ...]
    last_error: str
    attempts: int


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A stored message as `cases show` lists it (without its raw bytes; `size` is theirs)."""

    id: int
    kind: str | None
    message_id: str | None
    from_addr: str
    from_name: str
    subject: str
    received_at: float
    body_text: str
    size: int


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class TimerEntry:
    """A case's timer with its history (times in UNIX seconds)."""

    id: int
    kind: TimerKind
    due_at: float
    state: TimerState
    created_at: float
    done_at: float | None


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One line of a case's history."""

    at: float
    event: str
    detail: str


@dataclass(frozen=True, slots=True)
class StoreGauges:
    queued: int
    oldest_queued_at: float | None
    timers_due: int
    timers_pending: int
    cases: Mapping[tuple[str, str], int]  # (queue, status) -> cases


# --- the contract, by job


class Transactions(Protocol):
    """The connection and its transactions: every multi-step change is one transaction."""

    def transaction(self) -> AbstractContextManager[None]: ...
    def savepoint(self) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...


class CaseLookups(Protocol):
    """The read-only view thread.py is given."""

    def case_by_id(self, case_id: int) -> Case | None: ...
    def cases_by_message_ids(self, message_ids: Sequence[str]) -> dict[str, Case]: ...
    def case_by_message_ids(self, message_ids: Sequence[str]) -> Case | None: ...


class IngestLedger(Protocol):
    """Where each mailbox stands, what was stored, and unfinished processing attempts (poison messages)."""

    def known_uids(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, MessageState]: ...
    def is_duplicate(self, msg: InboundMessage) -> bool: ...
    def mailbox_position(self, name: str) -> tuple[int, int] | None: ...
    def unfinished_attempts(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, int]: ...
    def begin_attempts(self, mailbox: str, uidvalidity: int, uids: Sequence[int], now: float) -> dict[int, int]: ...
    def end_attempts(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> None: ...


class Applying(Protocol):
    """A decision's actions performed inside the caller's transaction."""

    def apply(
        self, decision: Decision, msg: InboundMessage, ref: MailRef | None, compose: Compose, now: datetime
    ) -> Applied: ...
    def apply_timers(self, decision: Decision, request: InboundMessage, compose: Compose, now: datetime) -> Applied: ...
    def quarantine(self, msg: InboundMessage, ref: MailRef | None, reason: str, now: datetime) -> int: ...


class Outbox(Protocol):
    """The durable queue between decide and the sender: drafts, built mail, delivery outcomes."""

    def enqueue(self, mail: OutgoingMail, case_id: int | None, cause: int | None, now: datetime) -> int: ...
    def enqueue_draft(self, draft: MailDraft, case_id: int | None, cause: int | None, now: datetime) -> int: ...
    def pending_drafts(self, limit: int = 100) -> list[PendingDraft]: ...
    def store_built(self, outbox_id: int, raw: bytes) -> bool: ...
    def mark_build_failed(self, outbox_id: int, error: str) -> bool: ...
    def message_raw(self, message_row: int) -> bytes | None: ...
    def message_hash(self, message_row: int | None = None, *, request_of: int | None = None) -> str | None: ...
    def requester_thread(
        self, case_id: int, before_outbox_id: int, up_to_message: int | None = None
    ) -> list[ThreadEntry]: ...
    def due_mail(self, now: float, limit: int = 100) -> list[OutboxMail]: ...
    def next_due_at(self) -> float | None: ...
    def mark_sent(self, outbox_id: int, now: float) -> None: ...
    def mark_retry(self, outbox_id: int, error: str, next_attempt_at: float) -> None: ...
    def mark_failed(self, outbox_id: int, error: str) -> None: ...
    def unnoticed_failures(self, limit: int = 100) -> list[FailedOutgoing]: ...
    def mark_failure_noticed(self, outbox_id: int) -> None: ...
    def list_outbox(
        self, state: OutboxState | None = None, case_id: int | None = None, limit: int = 200
    ) -> list[OutboxEntry]: ...
    def requeue(self, outbox_ids: Sequence[int], now: float) -> list[int]: ...
    def failed_mail_ids(self, since: float) -> list[int]: ...


class TimerBook(Protocol):
    """The scheduler's view: due timers by case, and the mail a case's timers answer."""

    def due_timers(self, now: datetime, limit: int = 200) -> dict[int, list[Timer]]: ...
    def next_timer_at(self) -> datetime | None: ...
    def case_timers(self, case_id: int) -> list[TimerEntry]: ...
    def case_request(self, case_id: int) -> bytes | None: ...
    def case_latest_raw(self, case_id: int) -> bytes | None: ...


class GuardReads(Protocol):
    """What the automatic-mail guard needs."""

    def bouncing(self, addresses: Sequence[str]) -> frozenset[str]: ...
    def automatic_mail_counts(self, addresses: Sequence[str], since: datetime) -> dict[str, int]: ...
    def unverified_senders(self, case_id: int, addresses: Sequence[str]) -> frozenset[str]: ...


class CaseReads(Protocol):
    """Read queries for the CLI and the report."""

    def list_cases(self, status: CaseStatus | None = None, limit: int = 200, *, junk: bool = False) -> list[Case]: ...
    def case_messages(self, case_id: int) -> list[MessageSummary]: ...
    def case_outbox(self, case_id: int) -> list[OutboxEntry]: ...
    def case_events(self, case_id: int) -> list[CaseEvent]: ...
    def message_attachments(self, message_row: int) -> list[AttachmentInfo]: ...
    def counts(self) -> dict[str, int]: ...
    def report_cases(self, since: float) -> list[CaseFacts]: ...
    def report_failed_mail(self, since: float) -> list[FailedMail]: ...


class FigureReads(Protocol):
    """Figures for metrics, the acknowledgement's expectations and the digest; the digest's bookkeeping."""

    def store_gauges(self, now: float) -> StoreGauges: ...
    def last_mail_at(self) -> float | None: ...
    def first_responses(self, queue: str, since: float) -> list[tuple[float, float]]: ...
    def waiting_cases(self, limit: int = 50) -> list[tuple[int, str, str, float]]: ...
    def rated_messages(self, since: float, until: float) -> list[tuple[int, str, str]]: ...
    def digest_sent(self, every: str, period_end: float) -> bool: ...
    def claim_digest(self, every: str, period_start: float, period_end: float, now: float) -> bool: ...
    def record_digest_mail(self, every: str, period_end: float, outbox_id: int) -> None: ...


class JunkAndRetention(Protocol):
    """Junk cases and their server copies, sender rules, a folder's first start, retention and erasure."""

    def junk_uids(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> frozenset[int]: ...
    def pending_junk_moves(self, mailbox: str, limit: int = 200) -> list[tuple[int, str]]: ...
    def junk_moved(self, rows: Sequence[int]) -> None: ...
    def denied_senders(self, queue: str) -> tuple[str, ...]: ...
    def sender_rules(self) -> list[SenderRule]: ...
    def remove_sender_rule(self, queue: str, pattern: str) -> bool: ...
    def backlog(self, mailbox: str) -> Backlog | None: ...
    def start_position(self, mailbox: str, uidvalidity: int, backlog_uid: int, before: float) -> None: ...
    def purge_candidates(self, queue: str, closed_before: float) -> list[int]: ...
    def purge_cases(self, case_ids: Sequence[int], now: datetime, *, dry_run: bool = False) -> Erased: ...
    def forget_address(self, address: str, now: datetime, *, dry_run: bool = False) -> Erased: ...


class StoreContract(
    Transactions, CaseLookups, IngestLedger, Applying, Outbox, TimerBook, GuardReads, CaseReads, FigureReads,
    JunkAndRetention, Protocol,
):  # fmt: skip
    """Everything a store does for mailsvc."""
