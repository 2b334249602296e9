from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mailsvc.hours import BusinessHours
from mailsvc.model import (
    Action,
    Address,
    CancelTimers,
    CaseStatus,
    ClearAutomatic,
    EndTimer,
    FileMessage,
    MergeInto,
    MessageKind,
    OpenCase,
    QueueMail,
    SetStatus,
    SetTimer,
    Timer,
    TimerKind,
    TimerState,
)
from mailsvc.timers import ALL_TIMERS, SLA_TIMERS, WAITING_TIMERS, TimerPolicy, fire_timers, plan_timers
from tests.unit.factories import T0, case

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessHours.parse("Europe/Berlin", ["mon-fri"], "09:00", "17:00")
FRIDAY_4PM = datetime(2026, 11, 27, 16, 0, tzinfo=BERLIN)
ALICE = Address("alice@example.net", "Alice Example")
DAVE = Address("dave@example.net")
BOB = Address("bob@example.org", "Bob Staff")
LEAD = Address("lead@example.org")
HEAD = Address("head@example.org")
DEFAULT = TimerPolicy()
SLA = TimerPolicy(first_response=timedelta(hours=4), second_level=timedelta(hours=4), escalate_to=(LEAD,))
OPENED = OpenCase("help", "Printer on floor 3 is jammed", ALICE)
RELAY = QueueMail("relay", "relay", (ALICE,), text="Try turning it off and on.")


def timer(kind: TimerKind, due_at: datetime, timer_id: int = 1) -> Timer:
    return Timer(timer_id, 42, kind, due_at)


# --- plan_timers: which timers the actions' status changes start and stop


def test_new_case_with_sla_is_due_in_business_time() -> None:
    policy = TimerPolicy(first_response=timedelta(hours=2), hours=OFFICE)
    filed = FileMessage(MessageKind.REQUEST)
    planned = plan_timers([OPENED, filed], None, policy, FRIDAY_4PM)
    # One hour left on Friday, the second from Monday's opening.
    assert planned == (OPENED, SetTimer(TimerKind.SLA_1, datetime(2026, 11, 30, 10, 0, tzinfo=BERLIN)), filed)


def test_second_level_counts_on_from_the_first_in_business_time() -> None:
    policy = TimerPolicy(first_response=timedelta(hours=2), second_level=timedelta(hours=4), hours=OFFICE)
    assert plan_timers([OPENED], None, policy, FRIDAY_4PM) == (
        OPENED,
        SetTimer(TimerKind.SLA_1, datetime(2026, 11, 30, 10, 0, tzinfo=BERLIN)),
        SetTimer(TimerKind.SLA_2, datetime(2026, 11, 30, 14, 0, tzinfo=BERLIN)),
    )


def test_sla_without_business_hours_counts_wall_clock_time() -> None:
    policy = TimerPolicy(first_response=timedelta(hours=2))
    assert plan_timers([OPENED], None, policy, FRIDAY_4PM) == (
        OPENED,
        SetTimer(TimerKind.SLA_1, datetime(2026, 11, 27, 18, 0, tzinfo=BERLIN)),
    )


def test_a_case_automatic_mail_opened_runs_no_sla_until_a_person_writes() -> None:
    policy = TimerPolicy(first_response=timedelta(hours=2))
    opened = OpenCase("help", "Out of office", ALICE, automatic=True)
    actions = (opened, FileMessage(MessageKind.AUTO_REPLY))
    assert plan_timers(actions, None, policy, FRIDAY_4PM) == actions
    wrote = (FileMessage(MessageKind.REQUESTER_REPLY), ClearAutomatic())
    assert plan_timers(wrote, CaseStatus.OPEN, policy, FRIDAY_4PM) == (
        *wrote,
        SetTimer(TimerKind.SLA_1, datetime(2026, 11, 27, 18, 0, tzinfo=BERLIN)),
    )


def test_new_case_without_sla_policy_gets_no_timer() -> None:
    actions = (OPENED, FileMessage(MessageKind.REQUEST), QueueMail("ack", "ack", (ALICE,)))
    assert plan_timers(actions, None, DEFAULT, T0) == actions


def test_staff_reply_cancels_sla_and_waits_on_the_requester() -> None:
    actions: list[Action] = [FileMessage(MessageKind.STAFF_REPLY), RELAY, SetStatus(CaseStatus.WAITING)]
    assert plan_timers(actions, CaseStatus.OPEN, SLA, T0) == (
        FileMessage(MessageKind.STAFF_REPLY),
        RELAY,
        CancelTimers(SLA_TIMERS, "staff answered"),
        SetStatus(CaseStatus.WAITING),
        SetTimer(TimerKind.REMINDER, T0 + timedelta(days=3)),
        SetTimer(TimerKind.AUTO_RESOLVE, T0 + timedelta(days=7)),
    )


def test_a_timer_turned_off_is_not_set() -> None:
    policy = TimerPolicy(remind_after=None)
    assert plan_timers([SetStatus(CaseStatus.WAITING)], CaseStatus.OPEN, policy, T0) == (
        SetStatus(CaseStatus.WAITING),
        SetTimer(TimerKind.AUTO_RESOLVE, T0 + timedelta(days=7)),
    )


def test_requester_reply_on_waiting_case_cancels_reminder_and_auto_resolve() -> None:
    notify = QueueMail("notify", "notify", (BOB,), text="More detail.")
    actions: list[Action] = [FileMessage(MessageKind.REQUESTER_REPLY), SetStatus(CaseStatus.OPEN), notify]
    assert plan_timers(actions, CaseStatus.WAITING, DEFAULT, T0) == (
        FileMessage(MessageKind.REQUESTER_REPLY),
        SetStatus(CaseStatus.OPEN),
        CancelTimers(WAITING_TIMERS, "case open"),
        notify,
    )


def test_resolving_cancels_sla_and_sets_close() -> None:
    assert plan_timers([SetStatus(CaseStatus.RESOLVED)], CaseStatus.OPEN, DEFAULT, T0) == (
        SetStatus(CaseStatus.RESOLVED),
        CancelTimers(SLA_TIMERS, "case resolved"),
        SetTimer(TimerKind.CLOSE, T0 + timedelta(days=7)),
    )


def test_resolving_a_waiting_case_also_cancels_its_waiting_timers() -> None:
    assert plan_timers([SetStatus(CaseStatus.RESOLVED)], CaseStatus.WAITING, DEFAULT, T0) == (
        SetStatus(CaseStatus.RESOLVED),
        CancelTimers(WAITING_TIMERS, "case resolved"),
        CancelTimers(SLA_TIMERS, "case resolved"),
        SetTimer(TimerKind.CLOSE, T0 + timedelta(days=7)),
    )


def test_reopening_a_resolved_case_cancels_close() -> None:
    assert plan_timers([SetStatus(CaseStatus.OPEN)], CaseStatus.RESOLVED, DEFAULT, T0) == (
        SetStatus(CaseStatus.OPEN),
        CancelTimers((TimerKind.CLOSE,), "case open"),
    )


def test_closing_cancels_every_timer() -> None:
    assert plan_timers([SetStatus(CaseStatus.CLOSED)], CaseStatus.OPEN, SLA, T0) == (
        SetStatus(CaseStatus.CLOSED),
        CancelTimers(ALL_TIMERS, "case closed"),
    )
    planned = plan_timers([SetStatus(CaseStatus.CLOSED)], CaseStatus.WAITING, SLA, T0)
    assert planned[-1] == CancelTimers(ALL_TIMERS, "case closed")
    assert not [a for a in planned if isinstance(a, SetTimer)]


def test_merge_is_preceded_by_cancelling_all_timers() -> None:
    actions: list[Action] = [FileMessage(MessageKind.COMMAND), MergeInto(7)]
    assert plan_timers(actions, CaseStatus.WAITING, DEFAULT, T0) == (
        FileMessage(MessageKind.COMMAND),
        CancelTimers(ALL_TIMERS, "merged into case 7"),
        MergeInto(7),
    )


def test_setting_the_same_status_changes_no_timer() -> None:
    for status in CaseStatus:
        assert plan_timers([SetStatus(status)], status, SLA, T0) == (SetStatus(status),)


def test_each_status_change_is_planned_from_the_status_before_it() -> None:
    actions = [SetStatus(CaseStatus.WAITING), SetStatus(CaseStatus.RESOLVED)]
    assert plan_timers(actions, CaseStatus.OPEN, DEFAULT, T0) == (
        SetStatus(CaseStatus.WAITING),
        SetTimer(TimerKind.REMINDER, T0 + timedelta(days=3)),
        SetTimer(TimerKind.AUTO_RESOLVE, T0 + timedelta(days=7)),
        SetStatus(CaseStatus.RESOLVED),
        CancelTimers(WAITING_TIMERS, "case resolved"),
        CancelTimers(SLA_TIMERS, "case resolved"),
        SetTimer(TimerKind.CLOSE, T0 + timedelta(days=7)),
    )


# --- fire_timers: what due timers do


def test_reminder_on_waiting_case_mails_requester_and_ccs() -> None:
    waiting = case(status=CaseStatus.WAITING, ccs=(DAVE,))
    reminder = timer(TimerKind.REMINDER, T0 + timedelta(days=3))
    assert fire_timers(waiting, [reminder], DEFAULT, (BOB,), T0 + timedelta(days=3, minutes=1)) == (
        EndTimer(reminder, TimerState.FIRED),
        QueueMail("reminder", "reminder", (ALICE, DAVE)),
    )


def test_after_a_week_down_auto_resolve_supersedes_the_reminder() -> None:
    waiting = case(status=CaseStatus.WAITING, ccs=(DAVE,))
    reminder = timer(TimerKind.REMINDER, T0 + timedelta(days=3), 1)
    auto_resolve = timer(TimerKind.AUTO_RESOLVE, T0 + timedelta(days=7), 2)
    now = T0 + timedelta(days=8)
    # Given in any order, they are handled by due date.
    assert fire_timers(waiting, [auto_resolve, reminder], DEFAULT, (BOB,), now) == (
        EndTimer(reminder, TimerState.SKIPPED, "superseded by auto_resolve"),
        EndTimer(auto_resolve, TimerState.FIRED),
        SetStatus(CaseStatus.RESOLVED),
        CancelTimers(WAITING_TIMERS, "case resolved"),
        CancelTimers(SLA_TIMERS, "case resolved"),
        SetTimer(TimerKind.CLOSE, now + timedelta(days=7)),
        QueueMail("auto_resolved", "auto_resolved", (ALICE, DAVE)),
    )


def test_both_sla_levels_due_escalate_once_at_level_two() -> None:
    policy = TimerPolicy(first_response=timedelta(hours=4), escalate_to=(LEAD,), second_escalate_to=(HEAD,))
    first = timer(TimerKind.SLA_1, T0 + timedelta(hours=4), 1)
    second = timer(TimerKind.SLA_2, T0 + timedelta(hours=8), 2)
    now = T0 + timedelta(days=1, hours=2)
    assert fire_timers(case(), [first, second], policy, (BOB,), now) == (
        EndTimer(first, TimerState.SKIPPED, "superseded by sla_2"),
        EndTimer(second, TimerState.FIRED),
        QueueMail(
            "escalation", "escalation", (HEAD,), text="Level 2: no reply to the requester 1d 2h after the case opened."
        ),
    )


def test_second_escalation_falls_back_to_escalate_to_then_staff() -> None:
    second = timer(TimerKind.SLA_2, T0 + timedelta(hours=8))
    now = T0 + timedelta(hours=8, minutes=30)
    text = "Level 2: no reply to the requester 8h 30m after the case opened."
    assert fire_timers(case(), [second], SLA, (BOB,), now)[1] == QueueMail("escalation", "escalation", (LEAD,), text)
    assert fire_timers(case(), [second], DEFAULT, (BOB,), now)[1] == QueueMail("escalation", "escalation", (BOB,), text)


def test_first_escalation_goes_to_escalate_to() -> None:
    first = timer(TimerKind.SLA_1, T0 + timedelta(minutes=45))
    assert fire_timers(case(), [first], SLA, (BOB,), T0 + timedelta(minutes=45)) == (
        EndTimer(first, TimerState.FIRED),
        QueueMail(
            "escalation", "escalation", (LEAD,), text="Level 1: no reply to the requester 45m after the case opened."
        ),
    )


def test_timers_of_a_closed_or_merged_case_are_skipped() -> None:
    due = [
        timer(TimerKind.REMINDER, T0, 1),
        timer(TimerKind.SLA_1, T0 + timedelta(hours=1), 2),
        timer(TimerKind.CLOSE, T0 + timedelta(hours=2), 3),
    ]
    now = T0 + timedelta(hours=3)
    for gone in (case(status=CaseStatus.CLOSED), case(merged_into=7)):
        assert fire_timers(gone, due, SLA, (BOB,), now) == tuple(
            EndTimer(t, TimerState.SKIPPED, "case closed") for t in due
        )


def test_close_on_a_resolved_case_closes_it() -> None:
    close = timer(TimerKind.CLOSE, T0 + timedelta(days=7))
    fired = fire_timers(case(status=CaseStatus.RESOLVED), [close], DEFAULT, (BOB,), T0 + timedelta(days=7))
    assert fired[:2] == (EndTimer(close, TimerState.FIRED), SetStatus(CaseStatus.CLOSED))
    assert CancelTimers(ALL_TIMERS, "case closed") in fired[2:]
    assert all(isinstance(a, CancelTimers) for a in fired[2:])


def test_reminder_on_a_case_no_longer_waiting_is_skipped() -> None:
    reminder = timer(TimerKind.REMINDER, T0)
    assert fire_timers(case(status=CaseStatus.OPEN), [reminder], DEFAULT, (BOB,), T0) == (
        EndTimer(reminder, TimerState.SKIPPED, "case open"),
    )


def test_close_on_a_reopened_case_and_sla_on_a_resolved_one_are_skipped() -> None:
    close = timer(TimerKind.CLOSE, T0)
    assert fire_timers(case(status=CaseStatus.OPEN), [close], DEFAULT, (BOB,), T0) == (
        EndTimer(close, TimerState.SKIPPED, "case open"),
    )
    sla = timer(TimerKind.SLA_1, T0)
    assert fire_timers(case(status=CaseStatus.RESOLVED), [sla], SLA, (BOB,), T0) == (
        EndTimer(sla, TimerState.SKIPPED, "case resolved"),
    )


def test_another_answer_while_waiting_restarts_the_requesters_time() -> None:
    now = datetime(2026, 11, 25, 9, 0, tzinfo=BERLIN)
    assert plan_timers([RELAY], CaseStatus.WAITING, DEFAULT, now) == (
        RELAY,
        CancelTimers(SLA_TIMERS, "staff answered"),
        SetTimer(TimerKind.REMINDER, now + timedelta(days=3)),
        SetTimer(TimerKind.AUTO_RESOLVE, now + timedelta(days=7)),
    )
