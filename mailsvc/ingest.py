"""Ingest: one fetched message through parse, classify, thread and decide, applied in the store.

`Pipeline.handle` never raises for a bad message: whatever cannot be filed is
stored raw and quarantined. `ingest_pass` moves server copies only after the
store has committed them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import make_msgid
from enum import StrEnum
from functools import partial

from structlog.typing import FilteringBoundLogger

from mailsvc import metrics
from mailsvc.bounce import detect_bounce
from mailsvc.classify import ClassifyContext, classify, is_automatic
from mailsvc.config import Config, QueueConfig
from mailsvc.decide import QueuePolicy, decide
from mailsvc.expect import TeamFigures
from mailsvc.guard import MailFacts, automatic_recipients, guard_automatic
from mailsvc.imap import ImapSource
from mailsvc.log import get_logger
from mailsvc.model import (
    STAFF_PURPOSES,
    Action,
    Address,
    Case,
    CaseStatus,
    Classification,
    ClearBouncing,
    Decision,
    InboundMessage,
    MailRef,
    MessageKind,
    MessageState,
    OutgoingMail,
    QueueMail,
    ThreadMatch,
)
from mailsvc.parse import ParseLimits, parse_message
from mailsvc.render import compose
from mailsvc.store import Applied, Store
from mailsvc.store.figures import first_responses
from mailsvc.templatecheck import queue_templates, queue_view
from mailsvc.thread import compile_tag, find_case, route_queue
from mailsvc.timers import TimerPolicy, plan_timers
from mailsvc.trust import TrustPolicy, reply_address, token_from_recipients, verify_sender

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
    QUARANTINED = "quarantined"
    DUPLICATE = "duplicate"


@dataclass
class PassResult:
    filed: int = 0
    quarantined: int = 0
    duplicates: int = 0
    moved: int = 0
    cases: set[int] = field(default_factory=set)


class Pipeline:
    def __init__(self, config: Config, store: Store, clock: Clock = utc_now) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        lim = config.limits
        self.limits = ParseLimits(lim.max_message_bytes, lim.max_mime_depth, lim.max_parts, lim.max_headers)
        self.timer_policies = {name: timer_policy(q) for name, q in config.queues.items()}
        self.max_automatic = config.auto_mail.max_per_hour
        self.context = ClassifyContext(own_addresses=config.own_addresses())
        self.tags: dict[str, re.Pattern[str]] = {n: compile_tag(q.subject_tag) for n, q in config.queues.items()}
        self.queues = {
            name: QueuePolicy(name, tuple(Address(s.address, s.name) for s in q.staff), q.comment_address)
            for name, q in config.queues.items()
        }
        self.views = {name: queue_view(config, name) for name in config.queues}
        self.team = TeamFigures(partial(first_responses, store), {n: p.hours for n, p in self.timer_policies.items()})
        self.queue_addresses = {name: q.address for name, q in config.queues.items()}
        self.token_key = config.trust.key()
        self.trust = TrustPolicy(
            staff=frozenset().union(*(q.staff_addresses() for q in config.queues.values())),
            trusted_authserv_ids=frozenset(config.trust.authserv_ids),
            allow_spf=config.trust.allow_spf,
            trust_from_header=config.trust.trust_from_header,
        )
        self.templates = queue_templates(config)
        self.log = get_logger(component="ingest")

    def compose(self, action: QueueMail, case: Case, msg: InboundMessage) -> OutgoingMail:
        view = replace(self.views[case.queue], team=self.team.view(case.queue, self.clock()))
        reply_to = None
        if action.purpose in STAFF_PURPOSES and self.token_key:
            reply_to = reply_address(view.address, case.id, self.token_key)
        return compose(
            action,
            case,
            msg,
            templates=self.templates[case.queue],
            queue=view,
            message_id=make_msgid(idstring=f"case{case.id}", domain=view.address.rpartition("@")[2]),
            now=self.clock(),
            reply_to=reply_to,
        )

    def finish(
        self, actions: Iterable[Action], status: CaseStatus | None, queue: str, now: datetime
    ) -> tuple[Action, ...]:
        """Add the timers the actions call for, then let the automatic-mail guard have the last word."""
        return self.guard(plan_timers(actions, status, self.timer_policies[queue], now), now)

    def guard(self, actions: tuple[Action, ...], now: datetime) -> tuple[Action, ...]:
        rcpts = sorted(automatic_recipients(actions))
        if not rcpts:
            return actions
        # A human mail from a bouncing address clears it in this same decision.
        cleared = {a.address.lower() for a in actions if isinstance(a, ClearBouncing)}
        since = now - timedelta(hours=1)
        facts = MailFacts(
            bouncing=self.store.bouncing(rcpts) - cleared,
            recent=self.store.automatic_mail_counts(rcpts, since),
        )
        return guard_automatic(actions, facts, self.max_automatic)

    def thread(self, msg: InboundMessage, bounced_id: str | None = None) -> tuple[ThreadMatch, int | None]:
        """A valid reply token names the case outright; a bounce, the case of the mail that bounced;
        else tag and references decide."""
        if bounced_id:
            case = self.store.case_by_message_ids([bounced_id])
            if case is not None:
                return ThreadMatch(case, "bounce"), None
        if self.token_key:
            token_case = token_from_recipients(msg, self.queue_addresses.values(), self.token_key)
            case = self.store.case_by_id(token_case) if token_case is not None else None
            if case is not None:
                return ThreadMatch(case, "token"), token_case
        return find_case(msg, self.store, self.tags), None

    def handle(self, ref: MailRef, raw: bytes, queue: str | None = None) -> tuple[Outcome, int | None]:
        """File one message; the caller holds the transaction. Returns the outcome and case id.

        `queue`: where a new case opens when its recipients name no queue (the folder's own queue)."""
        msg = parse_message(raw, self.limits)
        log = self.log.bind(uid=ref.uid, message_id=msg.message_id)
        log.debug("message_fetched", size=len(raw), mailbox=ref.mailbox)
        now = self.clock()
        if self.store.is_duplicate(msg):
            log.info("message_duplicate")
            return Outcome.DUPLICATE, None
        if msg.quarantine_reason is not None:
            return self._quarantine(msg, ref, msg.quarantine_reason, now)
        try:
            with self.store.savepoint():
                found = classify(msg, self.context)
                bounce = detect_bounce(msg.raw) if is_automatic(found.kind) else None
                if bounce is not None and bounce.recipients:
                    found = Classification(
                        MessageKind.BOUNCE,
                        f"{'hard' if bounce.permanent else 'soft'} bounce {bounce.status or ''} "
                        f"for {', '.join(bounce.recipients)}: {bounce.diagnostic}".replace("  ", " ")[:300],
                        bounced=bounce.recipients if bounce.permanent else (),
                    )
                match, token_case = self.thread(msg, bounce.original_message_id if bounce else None)
                sender = verify_sender(msg, self.trust, token_case)
                queue = route_queue(msg, self.queue_addresses) or queue or self.config.default_queue
                decision = decide(msg, found, match, queues=self.queues, queue=queue, sender=sender, lookup=self.store)
                status = match.case.status if match.case else None
                actions = self.finish(decision.actions, status, decision.queue, now)
                decision = Decision(decision.case_id, decision.queue, actions)
                applied = self.store.apply(decision, msg, ref, self.compose, now)
        except Exception as exc:
            log.exception("message_failed", error=f"{type(exc).__name__}: {exc}")
            return self._quarantine(msg, ref, f"error: {type(exc).__name__}", now)
        log = log.bind(case_id=applied.case_id)
        log.info(
            "message_threaded", kind=found.kind.value, reason=found.reason, method=match.method,
            queue=decision.queue, staff=sender.staff, verified=sender.verified if sender.staff else None,
        )  # fmt: skip
        log_applied(log, applied)
        metrics.count_applied(applied)
        return Outcome.FILED, applied.case_id

    def _quarantine(self, msg: InboundMessage, ref: MailRef, reason: str, now: datetime) -> tuple[Outcome, None]:
        self.store.quarantine(msg, ref, reason, now)
        self.log.warning(
            "message_quarantined", uid=ref.uid, message_id=msg.message_id, reason=reason,
            defects=list(msg.defects[:10]),
        )  # fmt: skip
        return Outcome.QUARANTINED, None


def log_applied(log: FilteringBoundLogger, applied: Applied) -> None:
    """One event per thing `apply` did; `log` carries the case_id already."""
    for event, fields in applied.events:
        log.info(event, **{k: v for k, v in fields.items() if k != "case_id"})


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def ingest_pass(source: ImapSource, pipeline: Pipeline, committed: Callable[[], None] = lambda: None) -> PassResult:
    """File every message waiting in the watched folder, batch by batch.

    Each batch is one transaction (a savepoint per message); `committed` is called
    after each commit (to wake the sender) and only then are the server copies moved.
    """
    cfg = source.cfg
    store = pipeline.store
    result = PassResult()
    uids = source.pending_uids()
    if not uids:
        return result
    known = store.known_uids(source.mailbox, source.uidvalidity, uids)
    # Committed before a crash but never moved: finish the move, do not process again.
    _move(source, [u for u, s in known.items() if s is MessageState.FILED], cfg.processed_folder, result)
    _move(source, [u for u, s in known.items() if s is MessageState.QUARANTINED], cfg.quarantine_folder, result)
    todo = [u for u in uids if u not in known]
    for batch in _chunks(todo, cfg.fetch_batch):
        raws = source.fetch(batch)
        done: list[int] = []
        bad: list[int] = []
        with store.transaction():
            for uid in batch:
                raw = raws.get(uid)
                if raw is None:  # expunged by someone else meanwhile
                    continue
                outcome, case_id = pipeline.handle(MailRef(source.mailbox, source.uidvalidity, uid), raw, source.queue)
                metrics.message_handled(source.mailbox, outcome.value)
                if outcome is Outcome.QUARANTINED:
                    bad.append(uid)
                    result.quarantined += 1
                else:
                    done.append(uid)
                    result.filed += outcome is Outcome.FILED
                    result.duplicates += outcome is Outcome.DUPLICATE
                    if case_id is not None:
                        result.cases.add(case_id)
        committed()
        metrics.observe_arrivals(source.arrival_times, done)
        _move(source, done, cfg.processed_folder, result)
        _move(source, bad, cfg.quarantine_folder, result)
    return result


def _move(source: ImapSource, uids: list[int], folder: str, result: PassResult) -> None:
    if uids:
        source.move(uids, folder)
        result.moved += len(uids)
