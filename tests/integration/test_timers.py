"""Cases move on their own, on a clock the test moves: reminders, auto-resolve, closing, SLA escalation in
business hours, catch-up after downtime, satisfaction, failure notices, bouncing recipients, and an
auto-responder that answers everything. Real Dovecot, real SMTP, the daemon's real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from mailsvc.cli import main
from mailsvc.errors import TemplateError
from mailsvc.model import CancelTimers, Case, Decision, InboundMessage, MailDraft, QueueMail, Timer
from mailsvc.parse import parse_message
from mailsvc.store import Store
from mailsvc.testing.desk import START, Clock, Desk, desk_config
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.test_staff import body, dsn_for, staff_reply

BERLIN = ZoneInfo("Europe/Berlin")


def waiting_case(desk: Desk) -> None:
    """A request, then Bob's answer: the case waits on the requester from now."""
    desk.deliver(mail(subject="VPN drops", message_id="<req@example.net>"))
    notify = next(m for m in desk.take() if "bob@example.org" in m.rcpt_tos)
    desk.deliver(staff_reply(notify, "Which client version do you run?"))
    assert desk.purposes(desk.take()) == ["relay"]
    assert desk.case()["status"] == "waiting"


def test_waiting_case_is_reminded_then_resolved_then_closed_each_once(
    desk: Desk, clock: Clock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting_case(desk)
    clock.advance(timedelta(days=3) - timedelta(minutes=1))
    desk.tick()
    assert desk.take() == [], "nothing before the reminder is due"

    clock.advance(timedelta(minutes=2))
    desk.tick()
    (reminder,) = desk.take()
    assert desk.purposes([reminder]) == ["reminder"] and reminder.rcpt_tos == ("alice@example.net",)
    assert "[Help #1]" in reminder.message["Subject"] and reminder.message["In-Reply-To"] == "<req@example.net>"
    desk.tick()
    assert desk.take() == [], "a timer fires once"

    clock.advance(timedelta(days=4))
    desk.tick()
    (resolved,) = desk.take()
    assert desk.purposes([resolved]) == ["auto_resolved"] and "mailto:help@example.org?subject=Rating" in body(resolved)
    assert desk.case()["status"] == "resolved"

    clock.advance(timedelta(days=7, minutes=1))
    desk.tick()
    assert desk.take() == [], "closing is silent"
    assert desk.case()["status"] == "closed"
    assert desk.timers() == [
        ("reminder", "fired"), ("auto_resolve", "fired"), ("close", "fired"),
    ]  # fmt: skip
    figures = desk.report()
    assert (figures.reminders_sent, figures.auto_resolved, figures.by_status.closed) == (1, 1, 1)
    assert main(["cases", "show", "1", "-c", str(tmp_path / "mailsvc.yaml")]) == 0
    shown = capsys.readouterr().out
    assert "reminder due 2026-11-21 09:00:00, fired 2026-11-21 09:01:00" in shown
    assert figures.first_response.median == 0.0, "Bob answered at once (the clock did not move)"


def test_a_timer_that_cannot_be_carried_out_is_skipped_and_the_others_go_on(
    desk: Desk, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk.deliver(mail(subject="First", message_id="<one@example.net>"), mail(subject="Second", sender="bo@example.net"))
    for notify in [m for m in desk.take() if "bob@example.org" in m.rcpt_tos]:
        desk.deliver(staff_reply(notify, "Which version?"))
    desk.take()
    compose = desk.pipeline.compose

    def broken_for_case_1(action: QueueMail, case: Case, msg: InboundMessage) -> tuple[MailDraft, ...]:
        if case.id == 1:
            raise TemplateError("template reminder: boom")
        return compose(action, case, msg)

    monkeypatch.setattr(desk.pipeline, "compose", broken_for_case_1)
    clock.advance(timedelta(days=3, minutes=1))
    desk.tick()
    (reminder,) = desk.take()
    assert reminder.rcpt_tos == ("bo@example.net",)
    (row,) = [r for r in desk.store.case_timers(1) if r.kind == "reminder"]
    assert row.state == "skipped"
    desk.tick()
    assert desk.take() == [], "not tried again and again"


def test_requester_answer_stops_the_reminders(desk: Desk, clock: Clock) -> None:
    waiting_case(desk)
    clock.advance(timedelta(days=2))
    desk.deliver(mail(subject="Re: VPN drops [Help #1]", body="Version 5.2.\n", in_reply_to="<req@example.net>"))
    assert desk.case()["status"] == "open"
    desk.take()
    clock.advance(timedelta(days=10))
    desk.tick()
    assert desk.take() == []
    assert desk.timers() == [("reminder", "cancelled"), ("auto_resolve", "cancelled")]


def test_a_week_of_downtime_catches_up_with_one_mail(desk: Desk, clock: Clock) -> None:
    waiting_case(desk)
    desk.stop()
    clock.advance(timedelta(days=8))  # the daemon was down over both due dates
    desk.start()
    desk.tick()
    desk.tick()
    assert desk.purposes(desk.take()) == ["auto_resolved"], "no reminder after the case already resolved itself"
    assert desk.timers() == [("reminder", "skipped"), ("auto_resolve", "fired"), ("close", "pending")]


def test_first_response_sla_counts_business_hours_over_a_weekend(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    sla = {
        "first_response": "4h", "second_level": "4h", "escalate_to": ["lead@example.org"],
        "second_escalate_to": ["head@example.org"],
        "business_hours": {"timezone": "Europe/Berlin", "days": ["mon-fri"], "start": "09:00", "end": "17:00"},
    }  # fmt: skip
    friday_3pm = datetime(2026, 11, 20, 15, 0, tzinfo=BERLIN).astimezone(UTC)
    clock = Clock(friday_3pm)
    with Desk(desk_config(tmp_path, mailbox, smtp, sla=sla), mailbox, smtp, clock) as desk:
        desk.deliver(mail(subject="Printer on fire", message_id="<fire@example.net>"))
        desk.take()

        def at(day: int, hour: int, minute: int = 0) -> None:
            clock.now = datetime(2026, 11, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)
            desk.tick()

        at(20, 17, 30)  # 2 working hours gone
        at(22, 23, 0)  # the weekend counts nothing
        at(23, 10, 59)  # Monday: 2h + 1h59m
        assert desk.take() == []
        at(23, 11, 1)
        (first,) = desk.take()
        assert first.rcpt_tos == ("lead@example.org",) and desk.purposes([first]) == ["escalation"]
        assert "Level 1" in body(first) and "[Help #1]" in first.message["Subject"]
        at(23, 15, 1)
        (second,) = desk.take()
        assert second.rcpt_tos == ("head@example.org",) and "Level 2" in body(second)
        figures = desk.report()
        assert (figures.sla_1_breached, figures.sla_2_breached, figures.breach_rate) == (1, 1, 1.0)


def test_a_staff_answer_in_time_means_no_escalation(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, clock: Clock
) -> None:
    with Desk(desk_config(tmp_path, mailbox, smtp, sla={"first_response": "4h"}), mailbox, smtp, clock) as desk:
        desk.deliver(mail(subject="Printer", message_id="<p@example.net>"))
        notify = next(m for m in desk.take() if "bob@example.org" in m.rcpt_tos)
        clock.advance(timedelta(hours=3))
        desk.deliver(staff_reply(notify, "On my way."))
        desk.take()
        clock.advance(timedelta(hours=5))
        desk.tick()
        assert desk.take() == []
        assert ("sla_1", "cancelled") in desk.timers()
        assert desk.case()["first_response_at"] == pytest.approx((START + timedelta(hours=3)).timestamp())


def test_satisfaction_answers_are_recorded_and_never_reopen(desk: Desk, clock: Clock) -> None:
    desk.deliver(mail(subject="Password reset", message_id="<pw@example.net>"))
    notify = next(m for m in desk.take() if "bob@example.org" in m.rcpt_tos)
    desk.deliver(staff_reply(notify, "#resolve\nDone, please try again."))
    mails = desk.take()
    assert sorted(desk.purposes(mails)) == ["relay", "resolved"]
    resolved = next(m for m in mails if desk.purposes([m]) == ["resolved"])
    assert "mailto:help@example.org?subject=Rating%3A%20good%20%5BHelp%20%231%5D" in body(resolved)

    clock.advance(timedelta(hours=1))
    desk.deliver(mail(subject=f"Re: {resolved.message['Subject']}", body="4\n\n> we consider...\n",
                      in_reply_to=resolved.message["Message-ID"]))  # fmt: skip
    assert (desk.case()["status"], desk.case()["satisfaction"]) == ("resolved", 4)
    assert desk.take() == [], "a bare rating bothers nobody"

    # The prepared mailto: link, answered after the case closed: recorded on it, no new case.
    clock.advance(timedelta(days=8))
    desk.tick()
    assert desk.case()["status"] == "closed"
    desk.deliver(mail(subject="Rating: bad [Help #1]", body=""))
    assert (desk.case()["status"], desk.case()["satisfaction"]) == ("closed", 1)
    assert desk.store.db.execute("SELECT count(*) FROM cases").fetchone()[0] == 1
    assert desk.report().satisfaction.answers == 1, "the case's latest answer counts"


def test_mail_that_fails_for_good_is_reported_to_staff(desk: Desk, smtp: SmtpCapture) -> None:
    smtp.fail_next(1, code=550, message="5.1.1 no such user")
    desk.deliver(mail(subject="Locked out", sender="ghost@example.net", message_id="<ghost@example.net>"))
    desk.take()
    desk.tick()
    (notice,) = desk.take()
    assert notice.rcpt_tos == ("bob@example.org",) and desk.purposes([notice]) == ["send_failed"]
    assert "ack to ghost@example.net: 550 5.1.1 no such user" in body(notice)
    desk.tick()
    assert desk.take() == [], "told once"


def test_mail_still_deferred_after_max_attempts_age_fails_and_staff_are_told(
    desk: Desk, smtp: SmtpCapture, clock: Clock
) -> None:
    smtp.fail_next(1, code=451, message="4.3.0 try later")
    desk.deliver(mail(subject="Slow server", sender="slow@example.net", message_id="<slow@example.net>"))
    assert [m.rcpt_tos for m in desk.take()] == [("bob@example.org",)], "the ack was deferred"
    (row,) = desk.store.db.execute("SELECT state, attempts FROM outbox WHERE purpose = 'ack'").fetchall()
    assert tuple(row) == ("queued", 1)

    smtp.fail_next(1, code=451, message="4.3.0 still later")
    clock.advance(timedelta(seconds=desk.config.smtp.max_attempts_age + 1))
    desk.send()
    desk.tick()
    (row,) = desk.store.db.execute("SELECT state, last_error FROM outbox WHERE purpose = 'ack'").fetchall()
    assert tuple(row) == ("failed", "451 4.3.0 still later")
    (notice,) = desk.take()
    assert notice.rcpt_tos == ("bob@example.org",) and "ack to slow@example.net: 451 4.3.0 still later" in body(notice)


def test_bouncing_requester_gets_no_automatic_mail_until_they_write(desk: Desk, clock: Clock) -> None:
    desk.deliver(mail(subject="VPN drops", message_id="<req@example.net>"))
    first = desk.take()
    ack = next(m for m in first if m.rcpt_tos == ("alice@example.net",))
    notify = next(m for m in first if m.rcpt_tos == ("bob@example.org",))
    desk.deliver(dsn_for(ack))
    assert [m.rcpt_tos for m in desk.take()] == [("bob@example.org",)], "staff are told of the bounce"
    assert desk.store.bouncing(["alice@example.net"]) == {"alice@example.net"}

    # Bob still answers (a person's mail is always relayed); the reminder is held back.
    desk.deliver(staff_reply(notify, "Please try the new client."))
    assert [m.rcpt_tos for m in desk.take()] == [("alice@example.net",)]
    clock.advance(timedelta(days=3, minutes=1))
    desk.tick()
    assert desk.take() == []
    events = [r.detail for r in desk.store.case_events(1) if r.event == "reminder_suppressed"]
    assert events == ["alice@example.net is bouncing"]

    # Alice writes again from the same address: it works, and she is acknowledged.
    desk.deliver(mail(subject="New laptop", message_id="<laptop@example.net>"))
    assert desk.purposes(desk.take()) == ["ack", "notify"]
    assert desk.store.bouncing(["alice@example.net"]) == frozenset()


def test_auto_responder_answering_everything_for_ten_minutes(desk: Desk, clock: Clock) -> None:
    """The worst auto-responder: no Auto-Submitted, no References, a fresh subject, answers in 30 s.
    Every answer opens a case (nothing ties it to one), but after auto_mail.max_per_hour (5)
    acknowledgements in an hour it hears nothing more: 1 + 20 mails in, at most 5 acks out."""
    responder = "bot@example.net"
    desk.deliver(mail(subject="Hello", sender=responder, message_id="<start@example.net>"))
    sent_to_bot = 0
    rounds = 0
    end = clock() + timedelta(minutes=10)
    while clock() < end:
        to_bot = [m for m in desk.take() if responder in m.rcpt_tos]
        sent_to_bot += len(to_bot)
        clock.advance(timedelta(seconds=30))
        rounds += 1
        # It answers each mail it got, and (being broken) also sends one unprompted "status" mail a round.
        answers = [mail(subject=f"Auto: received #{rounds}-{i}", sender=responder, body="I got your mail.\n")
                   for i in range(len(to_bot) + 1)]  # fmt: skip
        desk.deliver(*answers)
        desk.tick()
    sent_to_bot += sum(responder in m.rcpt_tos for m in desk.take())
    print(f"auto-responder: {rounds} rounds in 10 simulated minutes, {sent_to_bot} mails to it")
    assert rounds == 20
    assert sent_to_bot == 5, "the per-address limit holds the acknowledgements at 5 an hour"
    suppressed = desk.store.db.execute(
        "SELECT count(*) FROM case_events WHERE event = 'ack_suppressed' AND detail LIKE 'rate limit%'"
    ).fetchone()[0]
    assert suppressed >= 15


def test_auto_responder_that_keeps_the_subject_is_filed_and_answered_never(desk: Desk, clock: Clock) -> None:
    desk.deliver(mail(subject="Hello", sender="ooo@example.net", message_id="<hello@example.net>"))
    (ack,) = [m for m in desk.take() if "ooo@example.net" in m.rcpt_tos]
    for minute in range(10):
        clock.advance(timedelta(minutes=1))
        marked = {"Auto-Submitted": "auto-replied"} if minute % 2 else {}
        reply = mail(subject=f"Out of office: {ack.message['Subject']}", sender="ooo@example.net",
                     body="I am away until Monday.\n", headers=marked)  # fmt: skip
        desk.deliver(reply)
        desk.tick()
    assert [m for m in desk.take() if "ooo@example.net" in m.rcpt_tos] == []
    assert desk.store.db.execute("SELECT count(*) FROM cases").fetchone()[0] == 1
    assert desk.case()["status"] == "open"


def test_a_timer_ended_between_the_look_and_the_fire_is_left_alone(
    desk: Desk, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (new mail on the case, or another instance's scheduler) ends the timer after this
    scheduler saw it due: nothing is sent, the timer keeps the other's outcome, the scheduler goes on."""
    waiting_case(desk)
    clock.advance(timedelta(days=3, minutes=1))
    due_timers = desk.store.due_timers

    def ended_meanwhile(now: datetime, limit: int = 200) -> dict[int, list[Timer]]:
        due = due_timers(now, limit)
        other = Store.open(desk.config.store.path)  # type: ignore[arg-type]
        with other.transaction():
            for case_id, timers in due.items():
                cancel = CancelTimers(tuple(t.kind for t in timers), "the requester wrote")
                other.apply_timers(Decision(case_id, "help", (cancel,)), parse_message(b""), desk.pipeline.compose, now)
        other.close()
        return due

    monkeypatch.setattr(desk.store, "due_timers", ended_meanwhile)
    with capture_logs() as logs:
        desk.tick()
    assert desk.take() == [], "no reminder for a timer another process ended"
    assert ("reminder", "cancelled") in desk.timers()
    assert [e["case_id"] for e in logs if e["event"] == "timers_handled_elsewhere"] == [1]
