"""Timers (pure): which timers a case's changes start or stop, and what a due timer does.

A case waiting on its requester gets a reminder and later resolves itself; a
case nobody answered escalates (in business hours when the queue has them); a
resolved case closes. Timers live in the store, so they survive restarts; each
fires once, and after downtime a case catches up with one mail, not a burst:
the most advanced of its due timers acts and the ones it supersedes are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailsvc.hours import BusinessHours, add_business_time
from mailsvc.model import (
    Action,
    Address,
    CancelTimers,
    Case,
    CaseStatus,
    ClearAutomatic,
    EndTimer,
    MergeInto,
    OpenCase,
    QueueMail,
    SetStatus,
    SetTimer,
    Timer,
    TimerKind,
    TimerState,
)

WAITING_TIMERS = (TimerKind.REMINDER, TimerKind.AUTO_RESOLVE)
SLA_TIMERS = (TimerKind.SLA_1, TimerKind.SLA_2)
ALL_TIMERS = tuple(TimerKind)


@dataclass(frozen=True, slots=True)
class TimerPolicy:
    """A queue's timers; None turns one off."""

    remind_after: timedelta | None = timedelta(days=3)
    auto_resolve_after: timedelta | None = timedelta(days=7)
    close_after: timedelta | None = timedelta(days=7)
    first_response: timedelta | None = None
    second_level: timedelta | None = None
    escalate_to: tuple[Address, ...] = ()
    second_escalate_to: tuple[Address, ...] = ()
    hours: BusinessHours | None = None


def plan_timers(
    actions: Iterable[Action], status: CaseStatus | None, policy: TimerPolicy, now: datetime
) -> tuple[Action, ...]:
    """The actions with the timer changes they call for, each right after its cause.

    `status` is the case's status before the actions (None: no case yet).
    """
    out: list[Action] = []
    for action in actions:
        if isinstance(action, MergeInto):
            # Before the merge: after it, the actions apply to the target case.
            out.append(CancelTimers(ALL_TIMERS, f"merged into case {action.target}"))
        out.append(action)
        match action:
            case OpenCase(automatic=automatic):
                status = CaseStatus.OPEN
                if not automatic:  # a case automatic mail opened gets its SLA when a person writes
                    out.extend(_sla_timers(policy, now))
            case ClearAutomatic():
                out.extend(_sla_timers(policy, now))
            case QueueMail(purpose="relay"):
                out.append(CancelTimers(SLA_TIMERS, "staff answered"))
                if status is CaseStatus.WAITING:
                    # A new answer while waiting: the requester's time starts again.
                    out.extend(_status_timers(None, CaseStatus.WAITING, policy, now))
            case SetStatus(status=new) if new is not status:
                out.extend(_status_timers(status, new, policy, now))
                status = new
    return tuple(out)


def _sla_timers(policy: TimerPolicy, now: datetime) -> list[Action]:
    if policy.first_response is None:
        return []
    timers: list[Action] = [SetTimer(TimerKind.SLA_1, add_business_time(now, policy.first_response, policy.hours))]
    if policy.second_level is not None:
        due = add_business_time(now, policy.first_response + policy.second_level, policy.hours)
        timers.append(SetTimer(TimerKind.SLA_2, due))
    return timers


def _status_timers(old: CaseStatus | None, new: CaseStatus, policy: TimerPolicy, now: datetime) -> list[Action]:
    timers: list[Action] = []
    if old is CaseStatus.WAITING:
        timers.append(CancelTimers(WAITING_TIMERS, f"case {new.value}"))
    if old is CaseStatus.RESOLVED:
        timers.append(CancelTimers((TimerKind.CLOSE,), f"case {new.value}"))
    if new is CaseStatus.WAITING:
        if policy.remind_after is not None:
            timers.append(SetTimer(TimerKind.REMINDER, now + policy.remind_after))
        if policy.auto_resolve_after is not None:
            timers.append(SetTimer(TimerKind.AUTO_RESOLVE, now + policy.auto_resolve_after))
    elif new is CaseStatus.RESOLVED:
        timers.append(CancelTimers(SLA_TIMERS, "case resolved"))
        if policy.close_after is not None:
            timers.append(SetTimer(TimerKind.CLOSE, now + policy.close_after))
    elif new is CaseStatus.CLOSED:
        timers.append(CancelTimers(ALL_TIMERS, "case closed"))
    return timers


def fire_timers(
    case: Case, due: Sequence[Timer], policy: TimerPolicy, staff: tuple[Address, ...], now: datetime
) -> tuple[Action, ...]:
    """What a case's due timers do, together: each ends (fired or skipped) exactly once.

    After downtime several may be due at once: auto-resolve supersedes the reminder,
    the second escalation the first, so the requester and the team get one mail each.
    """
    kinds = {t.kind for t in due}
    everyone = (case.requester, *case.ccs)
    actions: list[Action] = []
    for timer in sorted(due, key=lambda t: (t.due_at, t.id)):
        skip = _skip_reason(case, timer.kind, kinds)
        if skip:
            actions.append(EndTimer(timer, TimerState.SKIPPED, skip))
            continue
        actions.append(EndTimer(timer, TimerState.FIRED))
        match timer.kind:
            case TimerKind.REMINDER:
                actions.append(QueueMail("reminder", "reminder", everyone))
            case TimerKind.AUTO_RESOLVE:
                actions.append(SetStatus(CaseStatus.RESOLVED))
                actions.append(QueueMail("auto_resolved", "auto_resolved", everyone))
            case TimerKind.SLA_1 | TimerKind.SLA_2:
                level = 1 if timer.kind is TimerKind.SLA_1 else 2
                to = policy.escalate_to or staff
                if level == 2:
                    to = policy.second_escalate_to or to
                late = now - case.created_at
                text = f"Level {level}: no reply to the requester {_span(late)} after the case opened."
                actions.append(QueueMail("escalation", "escalation", to, text=text))
            case TimerKind.CLOSE:
                actions.append(SetStatus(CaseStatus.CLOSED))
    return plan_timers(actions, case.status, policy, now)


def _skip_reason(case: Case, kind: TimerKind, due: set[TimerKind]) -> str:
    if case.merged_into is not None or case.status is CaseStatus.CLOSED:
        return "case closed"
    if kind in WAITING_TIMERS and case.status is not CaseStatus.WAITING:
        return f"case {case.status.value}"
    if kind is TimerKind.REMINDER and TimerKind.AUTO_RESOLVE in due:
        return "superseded by auto_resolve"
    if kind in SLA_TIMERS and case.status is CaseStatus.RESOLVED:
        return "case resolved"
    if kind is TimerKind.SLA_1 and TimerKind.SLA_2 in due:
        return "superseded by sla_2"
    if kind is TimerKind.CLOSE and case.status is not CaseStatus.RESOLVED:
        return f"case {case.status.value}"
    return ""


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"
