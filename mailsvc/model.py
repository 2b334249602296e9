"""Frozen values that cross the stages of the data path (DESIGN.md).

parse makes an InboundMessage, classify a Classification, thread a ThreadMatch,
decide a Decision (a case reference plus a closed set of Actions) that the
store applies in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

_V = TypeVar("_V")


class QueueMap(dict[str, _V]):
    """Per-queue settings. A case of a queue no longer in the configuration is served by the default
    queue's settings (staff, templates, timers), so its mail is still filed and answered."""

    def __init__(self, items: Mapping[str, _V], default: str) -> None:
        super().__init__(items)
        self.default = default

    def __missing__(self, queue: str) -> _V:
        return self[self.default]


class CaseStatus(StrEnum):
    OPEN = "open"
    WAITING = "waiting"
    RESOLVED = "resolved"
    CLOSED = "closed"


class MessageKind(StrEnum):
    REQUEST = "request"
    REQUESTER_REPLY = "requester_reply"
    STAFF_REPLY = "staff_reply"
    COMMENT = "comment"
    COMMAND = "command"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    LOOP = "loop"
    JUNK = "junk"


class MessageState(StrEnum):
    FILED = "filed"
    QUARANTINED = "quarantined"


class OutboxState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: `addr` as written, compare through `key` (lower case)."""

    addr: str
    name: str = ""

    @property
    def key(self) -> str:
        return self.addr.lower()

    @property
    def domain(self) -> str:
        return self.addr.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    data: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """What parse makes of raw bytes. Never partial: what failed is in `defects`.

    `quarantine_reason` is set when the message cannot be filed safely (no
    usable sender, over a limit, unparseable); it is then stored raw only.
    `return_path` is None when absent and "" for the null path `<>`.
    """

    raw: bytes = field(repr=False)
    content_hash: str
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    date: datetime | None
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: Mapping[str, tuple[str, ...]] = field(repr=False)
    return_path: str | None
    defects: tuple[str, ...] = ()
    quarantine_reason: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> tuple[str, ...]:
        return self.headers.get(name.lower(), ())

    @property
    def recipients(self) -> tuple[Address, ...]:
        return self.to + self.cc


@dataclass(frozen=True, slots=True)
class MailRef:
    """Where a message was fetched from: (mailbox, UIDVALIDITY, UID) names it once."""

    mailbox: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True, slots=True)
class Case:
    id: int
    queue: str
    subject: str
    requester: Address
    status: CaseStatus
    created_at: datetime
    updated_at: datetime
    priority: str = "normal"
    owner: str | None = None
    ccs: tuple[Address, ...] = ()
    merged_into: int | None = None
    automatic: bool = False  # opened by automatic mail; no SLA until a person writes
    junk: str | None = None  # why the case is junk (a status beside `status`, which #notspam gives back)


@dataclass(frozen=True, slots=True)
class Classification:
    kind: MessageKind
    reason: str
    # A hard bounce: the recipients whose mail will not be delivered.
    bounced: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ThreadMatch:
    """Which case a message joins; `case` is None for a new case."""

    case: Case | None
    method: str  # "bounce", "token", "in_reply_to", "references", "tag", "new" (thread.find_case)
    detail: str = ""


# --- Actions: the closed set `apply` performs, in order, in one transaction.


@dataclass(frozen=True, slots=True)
class OpenCase:
    queue: str
    subject: str
    requester: Address
    parent: int | None = None  # the closed case a reply to it reopened as this one
    ccs: tuple[Address, ...] = ()
    automatic: bool = False  # opened by automatic mail that threads nowhere (see ClearAutomatic)


@dataclass(frozen=True, slots=True)
class FileMessage:
    kind: MessageKind
    note: str = ""  # why, when it matters: "unverified: ...", "rejected command"


@dataclass(frozen=True, slots=True)
class SetStatus:
    status: CaseStatus


@dataclass(frozen=True, slots=True)
class SetOwner:
    owner: str | None


@dataclass(frozen=True, slots=True)
class SetPriority:
    priority: str


@dataclass(frozen=True, slots=True)
class AddCc:
    address: Address


@dataclass(frozen=True, slots=True)
class RemoveCc:
    address: str


@dataclass(frozen=True, slots=True)
class MergeInto:
    """Move this case's messages into `target` and close this one."""

    target: int


@dataclass(frozen=True, slots=True)
class QueueMail:
    """Render `template` for the case and put it in the outbox.

    `purpose` names the mail in logs and in the outbox ("ack", "relay", ...);
    `text` is what the template shows as the message (a relayed reply, the
    requester's new text, a list of errors); `attach` adds the message's attachments.
    """

    purpose: str
    template: str
    to: tuple[Address, ...]
    text: str = ""
    attach: bool = False

    @property
    def automatic(self) -> bool:
        """Mail no person wrote: rate-limited per recipient and never sent to a bouncing address."""
        return self.purpose in AUTOMATIC_PURPOSES

    @property
    def first_response(self) -> bool:
        """A staff answer relayed to the requester: the case's first one sets its first-response time."""
        return self.purpose == "relay"


# Mail no person wrote (the guard holds it back; the store counts it per recipient).
AUTOMATIC_PURPOSES = frozenset({"ack", "reminder", "auto_resolved", "refused"})

# Mail to the team: it carries the token Reply-To and the marker; mail to the requester does not.
STAFF_PURPOSES = frozenset(
    {"notify", "comment", "unverified", "command_error", "bounce_notice", "escalation", "send_failed"}
)


@dataclass(frozen=True, slots=True)
class Suppress:
    """A mail policy chose not to send, kept so every decision is logged."""

    purpose: str
    reason: str


class TimerKind(StrEnum):
    REMINDER = "reminder"  # waiting on the requester: remind them
    AUTO_RESOLVE = "auto_resolve"  # waiting on the requester too long: resolve the case
    SLA_1 = "sla_1"  # no first response from staff: escalate
    SLA_2 = "sla_2"  # still none: escalate again
    CLOSE = "close"  # resolved long enough: close


class TimerState(StrEnum):
    PENDING = "pending"
    FIRED = "fired"  # it did what it is for (a mail sent, a status changed)
    CANCELLED = "cancelled"  # the case moved on before it was due
    SKIPPED = "skipped"  # due, but superseded or no longer meaningful


@dataclass(frozen=True, slots=True)
class Timer:
    id: int
    case_id: int
    kind: TimerKind
    due_at: datetime


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Start a timer (replacing a pending one of the same kind)."""

    kind: TimerKind
    due_at: datetime


@dataclass(frozen=True, slots=True)
class CancelTimers:
    kinds: tuple[TimerKind, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class EndTimer:
    """A due timer was handled: fired or skipped, never again."""

    timer: Timer
    state: TimerState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RecordSatisfaction:
    score: int  # 1 (bad) .. 5 (good)
    answer: str  # what the requester wrote


@dataclass(frozen=True, slots=True)
class MarkBouncing:
    """No automatic mail to these addresses until a human mail from them arrives."""

    addresses: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class ClearBouncing:
    address: str


@dataclass(frozen=True, slots=True)
class MarkUnverified:
    """The request that opened the case failed sender authentication: no automatic mail to `address`
    on this case (it would be backscatter to whoever the From names) until it writes authenticated."""

    address: str
    reason: str


@dataclass(frozen=True, slots=True)
class ClearUnverified:
    """An authenticated mail from `address` on the case: automatic mail may go to it again."""

    address: str


@dataclass(frozen=True, slots=True)
class ClearAutomatic:
    """A person wrote on a case automatic mail opened: from now on it is a case like any other."""


@dataclass(frozen=True, slots=True)
class MarkJunk:
    """The case is junk: out of every list but `--status junk`, no SLA. `move`: its server copies go to
    the junk folder (a #spam on a case filed as mail); a message filed as junk goes there anyway."""

    reason: str
    move: bool = False


@dataclass(frozen=True, slots=True)
class ClearJunk:
    """#notspam: the case is back in the status it had."""


@dataclass(frozen=True, slots=True)
class DenySender:
    """`#spam block`: the queue refuses this sender from now on (kept in the store)."""

    queue: str
    pattern: str
    by: str


Action = (
    OpenCase
    | FileMessage
    | SetStatus
    | SetOwner
    | SetPriority
    | AddCc
    | RemoveCc
    | MergeInto
    | QueueMail
    | Suppress
    | SetTimer
    | CancelTimers
    | EndTimer
    | RecordSatisfaction
    | MarkBouncing
    | ClearBouncing
    | MarkUnverified
    | ClearUnverified
    | ClearAutomatic
    | MarkJunk
    | ClearJunk
    | DenySender
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The case a message belongs to (None: the OpenCase action makes it) and what to do."""

    case_id: int | None
    queue: str
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A rendered mail, its Message-ID fixed before it enters the outbox."""

    message_id: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    raw: bytes = field(repr=False)
    purpose: str


@dataclass(frozen=True, slots=True)
class MailDraft:
    """An outgoing mail as decided: Message-ID and envelope fixed in the transaction, its bytes
    built after the commit from these values (so a template fault never costs the inbound mail)."""

    message_id: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    purpose: str
    template: str
    to: tuple[Address, ...]
    text: str
    attach: bool
    status: CaseStatus  # the case's status when the mail was decided: staff mail shows it
