"""What a requester may expect (pure): how long the first answer usually takes, and whether the team works now.

The acknowledgement's `team` variables. The store gives the queue's recent first responses; the
median is taken in business hours when the queue has them, and worded roughly ("about 2 hours"),
because a figure to the minute would promise more than a median can.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mailsvc.hours import BusinessHours, add_business_time, business_time_between, is_working_time
from mailsvc.report import percentile

WINDOW = timedelta(days=30)
# Fewer answered cases than this in the window: no figure, rather than one that misleads.
MIN_CASES = 5
# The median is read from the store at most this often per queue (clock time of the caller).
REFRESH = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class TeamView:
    """The queue's team as an acknowledgement describes it."""

    as_of: datetime  # when it was seen so (the mail's date)
    working_now: bool
    back_at: datetime | None  # the next opening when not working now (UTC)
    timezone: str | None
    typical_response: float | None  # median seconds to the first answer, working time when hours are set


def median_first_response(pairs: Sequence[tuple[float, float]], hours: BusinessHours | None) -> float | None:
    """The median of (created, answered) spans, in working time when `hours` is given; None below MIN_CASES."""
    if len(pairs) < MIN_CASES:
        return None
    spans = [
        business_time_between(_utc(a), _utc(b), hours).total_seconds() if hours else max(0.0, b - a) for a, b in pairs
    ]
    return percentile(spans, 50)


def team_view(now: datetime, hours: BusinessHours | None, typical: float | None) -> TeamView:
    if hours is None or is_working_time(now, hours):
        return TeamView(now, True, None, hours.timezone if hours else None, typical)
    return TeamView(now, False, add_business_time(now, timedelta(0), hours), hours.timezone, typical)


def roughly(seconds: float) -> str:
    """A duration as people say it: "a few minutes", "about 20 minutes", "about 2 hours", "about 3 days"."""
    minutes = seconds / 60
    if minutes < 5:
        return "a few minutes"
    if minutes < 50:
        return f"about {max(5, round(minutes / 5) * 5)} minutes"
    hours = minutes / 60
    if hours < 1.5:
        return "about an hour"
    if hours < 20:
        return f"about {round(hours)} hours"
    days = hours / 24
    if days < 1.5:
        return "about a day"
    return f"about {round(days)} days"


def when_back(back: datetime, now: datetime, timezone: str) -> str:
    """ "today at 09:00 (Europe/Berlin)", "tomorrow at ...", "on Monday at ...", "on Monday 4 January at ..." """
    zone = ZoneInfo(timezone)
    local, today = back.astimezone(zone), now.astimezone(zone).date()
    days = (local.date() - today).days
    if days == 0:
        day = "today"
    elif days == 1:
        day = "tomorrow"
    elif days < 7:
        day = f"on {local:%A}"
    else:
        day = f"on {local:%A} {local.day} {local:%B}"
    return f"{day} at {local:%H:%M} ({timezone})"


def team_context(view: TeamView | None) -> dict[str, Any]:
    """The template variables: `team.working_now`, `team.back_at`, `team.typical_response`, `team.timezone`.

    Without a view (previews, checks) the team counts as working and nothing is promised."""
    if view is None:
        return {"working_now": True, "back_at": "", "typical_response": "", "timezone": ""}
    return {
        "working_now": view.working_now,
        "back_at": when_back(view.back_at, view.as_of, view.timezone) if view.back_at and view.timezone else "",
        "typical_response": roughly(view.typical_response) if view.typical_response is not None else "",
        "timezone": view.timezone or "",
    }


class TeamFigures:
    """Each queue's median, read through `read(queue, since)` at most every REFRESH of the clock."""

    def __init__(
        self, read: Callable[[str, float], Sequence[tuple[float, float]]], hours: dict[str, BusinessHours | None]
    ) -> None:
        self._read = read
        self._hours = hours
        self._cache: dict[str, tuple[datetime, float | None]] = {}

    def view(self, queue: str, now: datetime) -> TeamView:
        hours = self._hours.get(queue)
        cached = self._cache.get(queue)
        if cached is None or not timedelta(0) <= now - cached[0] < REFRESH:
            median = median_first_response(self._read(queue, (now - WINDOW).timestamp()), hours)
            cached = self._cache[queue] = (now, median)
        return team_view(now, hours, cached[1])


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
