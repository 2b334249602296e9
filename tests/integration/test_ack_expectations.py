"""The acknowledgement a requester gets, on a moved clock against the real servers: no figure until enough cases
were answered, then the team's usual first-answer time; on a Saturday and over Christmas, when the team is back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailsvc.config import Config
from mailsvc.testing.desk import Clock, Desk, desk_config
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.test_staff import body, staff_reply

BERLIN = ZoneInfo("Europe/Berlin")
SLA = {
    "first_response": "8h",
    "business_hours": {
        "timezone": "Europe/Berlin", "days": "mon-fri", "start": "09:00", "end": "17:00",
        "holidays": ["2026-12-24", "2026-12-25"],
    },
}  # fmt: skip


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(berlin(2026, 11, 30, 10, 0))  # a Monday morning


@pytest.fixture
def desk_settings(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Config:
    return desk_config(tmp_path, mailbox, smtp, sla=SLA)


def ack_text(desk: Desk, subject: str, sender: str = "Alice Example <alice@example.net>") -> str:
    desk.deliver(mail(subject=subject, sender=sender))
    (ack,) = [m for m in desk.take() if "bob@example.org" not in m.rcpt_tos]
    return " ".join(body(ack).split())


def test_the_ack_says_when_to_expect_an_answer_on_weekdays_weekends_and_holidays(desk: Desk, clock: Clock) -> None:
    assert "Someone from our team will answer you soon. To add anything" in ack_text(desk, "First ever"), (
        "no figure before enough cases were answered"
    )
    # Five cases, each answered after 2 working hours: four came at 16:00 and were answered at 10:00 the next
    # morning (18 hours by the wall clock), one at 10:00 answered at 12:00.
    for (month, day), hour, wait in [((11, 30), 16, 18), ((12, 1), 16, 18), ((12, 2), 16, 18), ((12, 3), 16, 18),
                                     ((12, 4), 10, 2)]:  # fmt: skip
        clock.now = berlin(2026, month, day, hour, 0)
        desk.deliver(mail(subject=f"Request {day}", sender=f"user{day}@example.net"))
        notify = next(m for m in desk.take() if "bob@example.org" in m.rcpt_tos)
        clock.advance(timedelta(hours=wait))
        desk.deliver(staff_reply(notify, "On it."))
        desk.take()

    clock.now = berlin(2026, 12, 5, 11, 0)  # Saturday
    saturday = ack_text(desk, "Printer jammed")
    assert (
        "Our team is away right now and back on Monday at 09:00 (Europe/Berlin); we will answer you as soon as we "
        "can after that. Lately, our first answer has typically taken about 2 hours of working time."
    ) in saturday

    clock.now = berlin(2026, 12, 8, 10, 0)  # Tuesday, at work
    assert (
        "Someone from our team will answer you soon. Lately, our first answer has typically taken about 2 hours of "
        "working time."
    ) in ack_text(desk, "Keyboard", sender="kim@example.net")

    clock.now = berlin(2026, 12, 23, 17, 30)  # after hours; the 24th and 25th are holidays, then a weekend
    assert "back on Monday at 09:00 (Europe/Berlin)" in ack_text(desk, "Before Christmas", sender="lee@example.net")
    clock.now = berlin(2026, 12, 28, 7, 45)
    assert "back today at 09:00 (Europe/Berlin)" in ack_text(desk, "Early bird", sender="max@example.net")
