"""What an acknowledgement tells a requester to expect: rough wording, the team's hours, the recent median."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailsvc.expect import (
    MIN_CASES,
    TeamFigures,
    TeamView,
    median_first_response,
    roughly,
    team_context,
    team_view,
    when_back,
)
from mailsvc.hours import BusinessHours
from mailsvc.templatecheck import check_templates
from mailsvc.templatefiles import load_templates

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = BusinessHours(
    "Europe/Berlin", frozenset(range(5)), time(9), time(17),
    holidays=frozenset({date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 31), date(2027, 1, 1)}),
)  # fmt: skip


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (30, "a few minutes"),
        (4 * 60, "a few minutes"),
        (12 * 60, "about 10 minutes"),
        (23 * 60, "about 25 minutes"),
        (55 * 60, "about an hour"),
        (100 * 60, "about 2 hours"),
        (7.4 * 3600, "about 7 hours"),
        (21 * 3600, "about a day"),
        (66 * 3600, "about 3 days"),
    ],
)
def test_durations_are_worded_roughly(seconds: float, words: str) -> None:
    assert roughly(seconds) == words


def test_on_a_saturday_the_team_is_back_on_monday_morning() -> None:
    now = berlin(2026, 12, 5, 11, 0)  # Saturday
    view = team_view(now, HOURS, 7200.0)
    assert not view.working_now
    assert view.back_at == berlin(2026, 12, 7, 9, 0)
    assert team_context(view) == {
        "working_now": False,
        "back_at": "on Monday at 09:00 (Europe/Berlin)",
        "typical_response": "about 2 hours",
        "timezone": "Europe/Berlin",
    }


def test_over_christmas_the_team_is_back_after_the_holidays() -> None:
    # Wednesday 23 December after hours; the 24th and 25th are holidays, then a weekend.
    view = team_view(berlin(2026, 12, 23, 18, 30), HOURS, None)
    assert view.back_at == berlin(2026, 12, 28, 9, 0)
    assert team_context(view)["back_at"] == "on Monday at 09:00 (Europe/Berlin)"
    # On the evening before New Year's Eve: two holidays, then a weekend.
    assert team_context(team_view(berlin(2026, 12, 30, 20, 0), HOURS, None))["back_at"] == (
        "on Monday at 09:00 (Europe/Berlin)"
    )


def test_before_opening_and_after_closing_say_today_and_tomorrow() -> None:
    assert team_context(team_view(berlin(2026, 12, 8, 7, 15), HOURS, None))["back_at"] == (
        "today at 09:00 (Europe/Berlin)"
    )
    assert team_context(team_view(berlin(2026, 12, 8, 17, 0), HOURS, None))["back_at"] == (
        "tomorrow at 09:00 (Europe/Berlin)"
    )


def test_a_long_closure_names_the_date() -> None:
    closed = frozenset(date(2026, 8, 1) + timedelta(days=n) for n in range(21))
    hours = BusinessHours("Europe/Berlin", frozenset(range(5)), time(9), time(17), holidays=closed)
    view = team_view(berlin(2026, 7, 31, 18, 0), hours, None)
    assert team_context(view)["back_at"] == "on Monday 24 August at 09:00 (Europe/Berlin)"


def test_during_working_hours_or_without_hours_the_team_is_working() -> None:
    assert team_view(berlin(2026, 12, 8, 10, 0), HOURS, None).working_now
    view = team_view(berlin(2026, 12, 5, 3, 0), None, 600.0)
    assert view.working_now and view.back_at is None
    assert team_context(view) == {
        "working_now": True, "back_at": "", "typical_response": "about 10 minutes", "timezone": "",
    }  # fmt: skip


def test_without_a_view_nothing_is_promised() -> None:
    assert team_context(None) == {"working_now": True, "back_at": "", "typical_response": "", "timezone": ""}


def test_the_median_counts_working_time_and_needs_enough_cases() -> None:
    friday_4pm, monday_10am = berlin(2026, 12, 4, 16, 0).timestamp(), berlin(2026, 12, 7, 10, 0).timestamp()
    weekend = [(friday_4pm, monday_10am)] * MIN_CASES
    assert median_first_response(weekend, HOURS) == 2 * 3600.0, "one hour on Friday, one on Monday"
    assert median_first_response(weekend, None) == monday_10am - friday_4pm
    assert median_first_response(weekend[:-1], HOURS) is None, "too few cases for a figure"
    spread = [(0.0, 60.0 * n) for n in (1, 2, 3, 50, 90)]
    assert median_first_response(spread, None) == 180.0


def test_team_figures_read_the_store_again_only_after_a_while() -> None:
    reads: list[tuple[str, float]] = []
    answers = [(0.0, 3600.0)] * MIN_CASES

    def read(queue: str, since: float) -> list[tuple[float, float]]:
        reads.append((queue, since))
        return answers

    figures = TeamFigures(read, {"help": None})
    now = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
    assert figures.view("help", now) == TeamView(now, True, None, None, 3600.0)
    figures.view("help", now + timedelta(minutes=9))
    assert reads == [("help", (now - timedelta(days=30)).timestamp())]
    figures.view("help", now + timedelta(minutes=11))
    assert len(reads) == 2
    figures.view("help", now - timedelta(days=1))  # a clock moved back reads again too
    assert len(reads) == 3


def test_when_back_is_worded_in_the_queues_zone() -> None:
    now = datetime(2026, 12, 5, 23, 30, tzinfo=UTC)  # already Sunday 00:30 in Berlin
    assert when_back(berlin(2026, 12, 7, 9, 0), now, "Europe/Berlin") == "tomorrow at 09:00 (Europe/Berlin)"


def test_templates_check_knows_the_team_variables(tmp_path: Path) -> None:
    (tmp_path / "ack.txt.j2").write_text(
        "{% if not team.working_now %}back {{ team.back_at }}{% endif %} {{ team.typical_response }}\n"
        "{{ team.bak_at }}\n"
    )
    problems = [str(p) for p in check_templates(load_templates([tmp_path]))]
    assert problems == [
        f'{tmp_path}/ack.txt.j2:2: unknown variable "team.bak_at" '
        "(team has: back_at, timezone, typical_response, working_now)"
    ]
