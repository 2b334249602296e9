"""The digest: when each period ends, what it holds beside the period before, and the page it makes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailsvc.digest import (
    DigestSchedule,
    Period,
    RatedMessage,
    WaitingCase,
    build_digest,
    compose_digest,
    digest_context,
    rating_comments,
    render_digest,
    sample_digest,
)
from mailsvc.model import CaseStatus
from mailsvc.report import CaseFacts
from mailsvc.templatecheck import check_templates, template_names
from mailsvc.templatefiles import load_templates

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def test_weekly_period_ends_at_the_latest_monday_morning() -> None:
    schedule = DigestSchedule.parse("weekly", "Mon 08:00", "Europe/Berlin")
    wednesday = berlin(2026, 12, 9, 14, 0)
    assert schedule.latest_period(wednesday) == Period(berlin(2026, 11, 30, 8, 0), berlin(2026, 12, 7, 8, 0))
    monday_at_eight = berlin(2026, 12, 14, 8, 0)
    assert schedule.latest_period(monday_at_eight).end == monday_at_eight
    assert schedule.latest_period(monday_at_eight - timedelta(seconds=1)).end == berlin(2026, 12, 7, 8, 0)
    assert schedule.next_after(wednesday) == berlin(2026, 12, 14, 8, 0)


def test_a_week_across_the_clock_change_keeps_local_time() -> None:
    schedule = DigestSchedule.parse("weekly", "monday 08:00", "Europe/Berlin")
    period = schedule.latest_period(berlin(2026, 11, 2, 9, 0))  # the clocks went back on 25 October
    assert period == Period(berlin(2026, 10, 26, 8, 0), berlin(2026, 11, 2, 8, 0))
    assert period.end - period.start == timedelta(days=7)
    period = schedule.latest_period(berlin(2026, 10, 26, 9, 0))
    assert period.end - period.start == timedelta(days=7, hours=1), "the week of the change has 169 hours"


def test_daily_period_is_the_day_before_the_hour() -> None:
    schedule = DigestSchedule.parse("daily", None, "UTC")
    now = datetime(2026, 12, 9, 7, 59, tzinfo=UTC)
    assert schedule.latest_period(now) == Period(
        datetime(2026, 12, 7, 8, tzinfo=UTC), datetime(2026, 12, 8, 8, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("every", "at", "timezone", "reason"),
    [
        ("weekly", "08:00", "UTC", "needs a day"),
        ("daily", "Mon 08:00", "UTC", "a time only"),
        ("weekly", "Mon 25:00", "UTC", "is not a time"),
        ("weekly", "Someday 08:00", "UTC", "unknown day"),
        ("weekly", "Mon 08:00", "Mars/Olympus", "unknown time zone"),
        ("monthly", None, "UTC", "not weekly or daily"),
    ],
)
def test_bad_schedules_say_why(every: str, at: str | None, timezone: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        DigestSchedule.parse(every, at, timezone)


def facts(id: int, created: float, **kw: object) -> CaseFacts:
    return CaseFacts(id=id, queue=str(kw.pop("queue", "help")), status=CaseStatus.CLOSED, created_at=created, **kw)  # type: ignore[arg-type]


def test_each_period_counts_the_cases_opened_within_it() -> None:
    period = Period(datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 14, tzinfo=UTC))
    t = period.start.timestamp()
    cases = [
        facts(1, t - 3 * 86400, first_response_at=t - 3 * 86400 + 4 * HOUR, satisfaction=2),  # the week before
        facts(2, t + HOUR, first_response_at=t + 2 * HOUR, satisfaction=5),
        facts(3, t + 2 * HOUR, first_response_at=t + 4 * HOUR, satisfaction=4, sla_1_fired=1),
        facts(4, period.end.timestamp() + 1),  # after the period: in neither
    ]
    digest = build_digest(cases, [], period=period, waiting=[], rated=[], now=period.end, every="weekly")
    assert digest.current.total.cases == 2 and digest.previous.total.cases == 1
    context = digest_context(digest)
    trend = {t["label"]: t for t in context["trend"]}
    assert trend["Median first response"] == {
        "label": "Median first response", "now": "1h 30m", "before": "4h", "direction": "down", "better": True,
    }  # fmt: skip
    assert trend["SLA breaches"]["better"] is False and trend["Satisfaction (1-5)"]["better"] is True
    assert trend["Cases opened"]["better"] is None, "more cases is neither better nor worse"
    bars = {d["score"]: d["bar"] for d in context["total"]["satisfaction"]["distribution"]}
    assert bars == {5: 100, 4: 100, 3: 0, 2: 0, 1: 0}


def test_waiting_cases_oldest_first_and_rating_comments_with_their_text() -> None:
    period = sample_digest().period
    waiting = [WaitingCase(7, "help", "B", 200.0), WaitingCase(3, "help", "A", 100.0), WaitingCase(9, "it", "C", 50.0)]
    digest = build_digest([], [], period=period, waiting=waiting, rated=[], now=period.end, every="daily", queue="help")
    assert [w.id for w in digest.waiting] == [3, 7]
    rated = [
        RatedMessage(1, "Re: x [Help #1]", "5\nQuick and kind, thanks!\n\n> old quote"),
        RatedMessage(2, "Rating: good [Help #2]", ""),
        RatedMessage(3, "Re: x", "2 printers are down"),
    ]
    assert [(c.case_id, c.score, c.text) for c in rating_comments(rated)] == [(1, 5, "Quick and kind, thanks!")]


def test_the_page_shows_the_figures_escapes_requester_text_and_loads_nothing() -> None:
    sample = sample_digest()
    hostile = WaitingCase(8, "help", '<script>alert(1)</script><img src="https://evil.example/x.png">', 0.0)
    digest = build_digest([], [], period=sample.period, waiting=[hostile], rated=[], now=sample.now, every="weekly")
    subject, text, html = render_digest(digest, load_templates([]))
    assert "<script" not in html.lower() and 'evil.example/x.png"' not in html
    assert "&lt;script&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no remote images or links"
    assert "<style" not in html, "styles inline, as mail clients keep them"
    subject, text, html = render_digest(sample, load_templates([]))
    assert subject == "Weekly help desk digest, 29 Dec - 5 Jan 2026: 3 cases, median first response 1h 30m"
    for figure in ("1h 30m", "1d 15h", "33%", "It took two days.", "The printer on floor 3 is jammed"):
        assert figure in text and figure in html


def test_the_digest_mail_has_a_text_and_an_html_part() -> None:
    _, text, html = render_digest(sample_digest(), load_templates([]))
    out = compose_digest(
        text, html, "Digest", sender=("Help Desk", "help@example.org"), to=["team@example.org"],
        message_id="<d@example.org>", now=datetime(2026, 12, 7, 7, tzinfo=UTC),
    )  # fmt: skip
    mail = message_from_bytes(out.raw, policy=default)
    assert isinstance(mail, EmailMessage)
    assert mail.get_content_type() == "multipart/alternative" and mail["Auto-Submitted"] == "auto-generated"
    plain, rich = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and rich is not None
    assert "It took two days." in plain.get_content() and "It took two days." in rich.get_content()
    assert out.purpose == "digest" and out.rcpt_to == ("team@example.org",)


def test_templates_check_knows_the_digest_variables(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("{{ title }}: {{ total.cases }} cases, {{ totl.cases }}\n")
    (tmp_path / "digest.html.j2").write_text("<p>{{ total.first_response.mean }}</p>\n")
    problems = sorted(str(p) for p in check_templates(load_templates([tmp_path])))
    assert problems == [
        f'{tmp_path}/digest.html.j2:1: unknown variable "total.first_response.mean" '
        "(total.first_response has: answered, median, p90, pending)",
        f'{tmp_path}/digest.txt.j2:1: unknown variable "totl" (known: comments, generated, period, queues, '
        "title, total, trend, waiting)",
    ]
    assert "digest" not in template_names(load_templates([tmp_path])), "no case to preview a digest for"
