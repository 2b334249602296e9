"""The pipeline: one message through parse, classify, thread and decide, applied in the store.

`Pipeline.handle` never raises for a bad message: whatever cannot be filed is
stored raw and quarantined. Ingest (the pass over an IMAP folder), the scheduler and
`mailsvc import` file through it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial

from structlog.typing import FilteringBoundLogger

from mailsvc import metrics
from mailsvc.classify import ClassifyContext, classify_mail
from mailsvc.config import Config, QueueConfig
from mailsvc.decide import QueuePolicy, decide, silence
from mailsvc.errors import StoreConflict
from mailsvc.expect import TeamFigures
from mailsvc.guard import MailFacts, automatic_recipients, guard_automatic
from mailsvc.log import get_logger
from mailsvc.model import (
    Action,
    Address,
    Case,
    CaseStatus,
    ClearBouncing,
    ClearUnverified,
    Decision,
    FileMessage,
    InboundMessage,
    MailDraft,
    MailRef,
    MessageKind,
    QueueMail,
    QueueMap,
    ThreadMatch,
)
from mailsvc.outgoing import BuildResult, MailBuilder
from mailsvc.parse import ParseLimits, parse_message
from mailsvc.screening import Screening
from mailsvc.store import STORE_ERRORS, Applied, StoreContract
from mailsvc.store.figures import first_responses
from mailsvc.thread import compile_tag, find_case, route_queue
from mailsvc.timers import TimerPolicy, plan_timers
from mailsvc.trust import TrustPolicy, token_from_recipients, verify_sender

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _span(seconds: float | None) -> timedelta | None:
    return timedelta(seconds=seconds) if seconds else None


def timer_policy(q: QueueConfig) -> TimerPolicy:
    sla = q.sla
    return TimerPolicy(
        remind_after=_span(q.timers.remind_after),
        auto_resolve_after=_span(q.timers.auto_resolve_after),
        close_after=_span(q.timers.close_after),
        first_response=_span(sla.first_response) if sla else None,
        second_level=_span(sla.second_level) if sla else None,
        escalate_to=tuple(Address(a) for a in sla.escalate_to) if sla else (),
        second_escalate_to=tuple(Address(a) for a in sla.second_escalate_to) if sla else (),
        hours=sla.business_hours.calendar() if sla and sla.business_hours else None,
    )


class Outcome(StrEnum):
    FILED = "filed"
    JUNK = "junk"  # filed as junk: its server copy goes to the junk folder
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


class Pipeline:
    def __init__(self, config: Config, store: StoreContract, clock: Clock = utc_now) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        lim = config.limits
        self.limits = ParseLimits(lim.max_message_bytes, lim.max_mime_depth, lim.max_parts, lim.max_headers)
        # Per queue; a case of a queue since removed from the configuration falls back to the default queue.
        default = config.default_queue
        self.timer_policies = QueueMap({name: timer_policy(q) for name, q in config.queues.items()}, default)
        self.max_automatic = config.auto_mail.max_per_hour
        self.screening = Screening(config)
        self.context = ClassifyContext(own_addresses=config.own_addresses(), spam=self.screening.spam)
        self.staff_context = ClassifyContext(own_addresses=config.own_addresses())
        self.tags: dict[str, re.Pattern[str]] = {n: compile_tag(q.subject_tag) for n, q in config.queues.items()}
        self.queues = QueueMap(
            {
                name: QueuePolicy(
                    name, tuple(Address(s.address, s.name) for s in q.staff), q.comment_address, self.tags[name]
                )
                for name, q in config.queues.items()
            },
            default,
        )
        self.team = TeamFigures(partial(first_responses, store), {n: p.hours for n, p in self.timer_policies.items()})
        self.queue_addresses = {name: q.address for name, q in config.queues.items()}
        self.token_key = config.trust.key()
        self.trust = TrustPolicy(
            staff=frozenset().union(*(q.staff_addresses() for q in config.queues.values())),
            trusted_authserv_ids=frozenset(config.trust.authserv_ids),
            allow_spf=config.trust.allow_spf,
            trust_from_header=config.trust.trust_from_header,
        )
        self.builder = MailBuilder(config, store, clock, self.limits, self.team)
        self.log = get_logger(component="ingest")

    def compose(self, action: QueueMail, case: Case, msg: InboundMessage) -> tuple[MailDraft, ...]:
        """The drafts `Store.apply` records; `build_pending` makes their bytes after the commit."""
        return self.builder.draft(action, case, msg)

    def build_pending(self) -> BuildResult:
        """Build the outgoing mail of committed decisions: call after each commit, outside the transaction."""
        return self.builder.build_pending()

    def finish(
        self,
        actions: Iterable[Action],
        status: CaseStatus | None,
        queue: str,
        now: datetime,
        case_id: int | None = None,
    ) -> tuple[Action, ...]:
        """Add the timers the actions call for, then let the automatic-mail guard have the last word."""
        return self.guard(plan_timers(actions, status, self.timer_policies[queue], now), now, case_id)

    def guard(self, actions: tuple[Action, ...], now: datetime, case_id: int | None = None) -> tuple[Action, ...]:
        """`case_id`: the case the mail is about (None: a case this decision opens, which has no facts yet)."""
        rcpts = sorted(automatic_recipients(actions))
        if not rcpts:
            return actions
        # A human mail from a bouncing address clears it in this same decision.
        cleared = {a.address.lower() for a in actions if isinstance(a, ClearBouncing)}
        since = now - timedelta(hours=1)
        facts = MailFacts(
            bouncing=self.store.bouncing(rcpts) - cleared,
            recent=self.store.automatic_mail_counts(rcpts, since),
            unverified=self._unverified(case_id, rcpts, actions),
        )
        return guard_automatic(actions, facts, self.max_automatic)

    def _unverified(self, case_id: int | None, rcpts: list[str], actions: tuple[Action, ...]) -> frozenset[str]:
        if case_id is None:
            return frozenset()
        # An authenticated mail of the requester lifts the mark in this same decision.
        cleared = {a.address.lower() for a in actions if isinstance(a, ClearUnverified)}
        return self.store.unverified_senders(case_id, rcpts) - cleared

    def thread(self, msg: InboundMessage, bounced_id: str | None = None) -> tuple[ThreadMatch, int | None]:
        """The case the message joins (thread.find_case) and the case its valid reply token names."""
        token_case = None
        if self.token_key:
            token_case = token_from_recipients(msg, self.queue_addresses.values(), self.token_key)
        match = find_case(msg, self.store, self.tags, token_case=token_case, bounced_id=bounced_id)
        return match, token_case

    def parse(self, raw: bytes) -> InboundMessage:
        """What filing needs of `raw`: attachments by name and size (the stored message keeps their bytes)."""
        return parse_message(raw, self.limits, attachment_data=False)

    def handle(
        self,
        ref: MailRef | None,
        raw: bytes,
        queue: str | None = None,
        history: str | None = None,
        parsed: InboundMessage | None = None,
    ) -> tuple[Outcome, int | None]:
        """File one message; the caller holds the transaction. Returns the outcome and case id.

        `queue`: where a new case opens when its recipients name no queue (the folder's own queue).
        `history`: why the message is filed as history (old mail, an archive): no mail, no timers.
        `ref`: None for mail that comes from no IMAP folder (an imported archive).
        `parsed`: `self.parse(raw)`, when the caller parsed it before opening the transaction."""
        msg = parsed if parsed is not None else self.parse(raw)
        log = self.log.bind(uid=ref.uid if ref else None, message_id=msg.message_id)
        log.debug("message_fetched", size=len(raw), mailbox=ref.mailbox if ref else None)
        now = self.clock()
        if self.store.is_duplicate(msg):
            log.info("message_duplicate")
            return Outcome.DUPLICATE, None
        if msg.quarantine_reason is not None:
            return self._quarantine(msg, ref, msg.quarantine_reason, now)
        try:
            with self.store.savepoint():
                classified = classify_mail(msg, self.context)
                found = classified.found
                match, token_case = self.thread(msg, classified.bounced_id)
                sender = verify_sender(msg, self.trust, token_case)
                if sender.trusted and found.kind is MessageKind.JUNK:
                    # A verified staff mail is not spam, whatever a filter thought of it.
                    found = classify_mail(msg, self.staff_context).found
                queue = route_queue(msg, self.queue_addresses) or queue or self.config.default_queue
                screen = self.screening.screen(msg, queue, sender.staff, self.store.denied_senders)
                decision = decide(
                    msg, found, match, queues=self.queues, queue=queue, sender=sender, lookup=self.store, screen=screen
                )
                status = match.case.status if match.case else None
                actions = self.finish(decision.actions, status, decision.queue, now, decision.case_id)
                if history is not None:
                    actions = silence(actions, f"filed as history: {history}")
                decision = Decision(decision.case_id, decision.queue, actions)
                applied = self.store.apply(decision, msg, ref, self.compose, now)
        except StoreConflict:
            # Stored by another process between is_duplicate and apply (the same mail in two mailboxes).
            log.info("message_duplicate", stored_by="another process")
            return Outcome.DUPLICATE, None
        except STORE_ERRORS:
            raise  # the store's state, not the message's: the batch is rolled back and tried again
        except Exception as exc:
            log.exception("message_failed", error=f"{type(exc).__name__}: {exc}")
            return self._quarantine(msg, ref, f"error: {type(exc).__name__}", now)
        if applied.outbox_ids and applied.message_row is not None:
            self.builder.known(msg, message_row=applied.message_row)  # the cause of this decision's mail
        log = log.bind(case_id=applied.case_id)
        log.info(
            "message_threaded", kind=found.kind.value, reason=found.reason, method=match.method,
            queue=decision.queue, staff=sender.staff, verified=sender.verified if sender.staff else None,
        )  # fmt: skip
        log_applied(log, applied)
        metrics.count_applied(applied)
        junk = next((a for a in actions if isinstance(a, FileMessage) and a.kind is MessageKind.JUNK), None)
        if junk is not None:
            metrics.message_junk(junk.note or found.reason)
            return Outcome.JUNK, applied.case_id
        return Outcome.FILED, applied.case_id

    def _quarantine(self, msg: InboundMessage, ref: MailRef | None, reason: str, now: datetime) -> tuple[Outcome, None]:
        self.store.quarantine(msg, ref, reason, now)
        self.log.warning(
            "message_quarantined", uid=ref.uid if ref else None, message_id=msg.message_id, reason=reason,
            defects=list(msg.defects[:10]),
        )  # fmt: skip
        return Outcome.QUARANTINED, None


def log_applied(log: FilteringBoundLogger, applied: Applied) -> None:
    """One event per thing `apply` did; `log` carries the case_id already."""
    for event, fields in applied.events:
        log.info(event, **{k: v for k, v in fields.items() if k != "case_id"})
