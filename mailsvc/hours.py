"""Business hours (pure): working-time arithmetic for SLA clocks that count only a queue's opening hours.

decide sets an SLA timer at `add_business_time(received, first_response, hours)`; reports measure with
`business_time_between`. Each working day is its local opening and closing converted to UTC, so a day of 23 or 25
hours across a daylight-saving change keeps its local 09:00-17:00. No I/O beyond reading the zone database.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LONG_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS = {name: i for names in (DAY_NAMES, _LONG_DAY_NAMES) for i, name in enumerate(names)}
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A calendar this long without an hour of work is a mistake (a holiday list covering years), not a queue.
MAX_IDLE_DAYS = 2 * 366
# However sparse the calendar, an SLA clock that runs longer than this was configured by mistake.
MAX_SPAN_YEARS = 100
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When a queue works: these weekdays (0 = Monday), from `start` to `end` local time, except on `holidays`."""

    timezone: str
    days: frozenset[int]
    start: time
    end: time
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        _zone(self.timezone)
        if not self.days:
            raise ValueError("no working days")
        if not self.days <= frozenset(range(7)):
            raise ValueError(f"working days must be 0 (Monday) to 6 (Sunday), got {sorted(self.days)}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end are local times of the calendar's zone, without a time zone of their own")
        if self.end <= self.start:
            raise ValueError(f"end {self.end:%H:%M} is not after start {self.start:%H:%M}")

    @classmethod
    def parse(
        cls,
        timezone: str,
        days: Sequence[str],
        start: str,
        end: str,
        holidays: Sequence[str] = (),
    ) -> BusinessHours:
        """From configuration text: `days` like ["mon-fri", "sat"], times "09:00", holidays "2026-12-25".

        Raises ValueError with a one-line reason.
        """
        return cls(
            timezone=timezone,
            days=_parse_days(days),
            start=_parse_time("start", start),
            end=_parse_time("end", end),
            holidays=frozenset(_parse_date(text) for text in _items(holidays)),
        )


def add_business_time(start: datetime, delta: timedelta, hours: BusinessHours | None) -> datetime:
    """The moment `delta` of working time after `start`, in UTC; wall-clock time when `hours` is None.

    Outside working time the count starts at the next opening, so a zero delta gives that opening. A result that
    uses up a day's remaining time exactly is that day's closing moment, not the next opening.
    """
    start = _utc(start, "start")
    if delta < timedelta(0):
        raise ValueError(f"delta must not be negative, got {delta}")
    if hours is None:
        return start + delta
    clock = _Clock(hours)
    remaining = delta
    first = clock.local_date(start)
    for opening, closing in clock.periods_from(first):
        if closing <= start:
            continue
        begin = max(start, opening)
        if remaining <= closing - begin:
            return begin + remaining
        remaining -= closing - begin
        if (opening.date() - first).days > MAX_SPAN_YEARS * 366:
            break
    raise ValueError(f"{delta} of working time from {start:%Y-%m-%d} does not fit in {MAX_SPAN_YEARS} years")


def business_time_between(a: datetime, b: datetime, hours: BusinessHours | None) -> timedelta:
    """Working time in [a, b); zero when b <= a; wall-clock time when `hours` is None."""
    a, b = _utc(a, "a"), _utc(b, "b")
    if b <= a:
        return timedelta(0)
    if hours is None:
        return b - a
    clock = _Clock(hours)
    total = timedelta(0)
    day, last = clock.local_date(a), min(clock.local_date(b) + _DAY, date.max)
    while day <= last:
        period = clock.period_on(day)
        if period and period[0] < b and period[1] > a:
            total += min(period[1], b) - max(period[0], a)
        day += _DAY
    return total


def is_working_time(moment: datetime, hours: BusinessHours) -> bool:
    """Whether `moment` lies in a working period: opening included, closing excluded."""
    moment = _utc(moment, "moment")
    clock = _Clock(hours)
    # A day's period holds instants of an earlier local date only after the clock went back over midnight.
    day = clock.local_date(moment)
    periods = (clock.period_on(day), clock.period_on(min(day + _DAY, date.max)))
    return any(period[0] <= moment < period[1] for period in periods if period)


class _Clock:
    """A calendar made ready for day-by-day work: its zone loaded, its times also as the second pass of a fold."""

    __slots__ = ("days", "end", "end_later", "holidays", "start", "start_later", "zone")

    def __init__(self, hours: BusinessHours) -> None:
        self.zone = _zone(hours.timezone)
        self.days, self.holidays = hours.days, hours.holidays
        self.start, self.start_later = hours.start, hours.start.replace(fold=1)
        self.end, self.end_later = hours.end, hours.end.replace(fold=1)

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def periods_from(self, first: date) -> Iterator[tuple[datetime, datetime]]:
        """Each working day's [opening, closing) in UTC, in order, from the local date `first` on."""
        day, idle = first, 0
        while day < date.max:
            period = self.period_on(day)
            if period:
                yield period
                idle = 0
            else:
                idle += 1
                if idle > MAX_IDLE_DAYS:
                    raise ValueError(
                        f"no working time in the {MAX_IDLE_DAYS} days before {day}: check days and holidays"
                    )
            day += _DAY

    def period_on(self, day: date) -> tuple[datetime, datetime] | None:
        """The local date's working period in UTC; None on a day off, or when a clock change swallows its hours."""
        if day.weekday() not in self.days or day in self.holidays:
            return None
        try:
            opening = self.earliest_at(day, self.start, self.start_later)
            closing = self.earliest_at(day, self.end, self.end_later)
        except OverflowError:  # within a day of the end of datetime's range
            return None
        return (opening, closing) if opening < closing else None

    def earliest_at(self, day: date, at: time, at_later: time) -> datetime:
        """The first instant (UTC) at which the local clock shows `at` on `day`, or a later time.

        In a repeated hour that is the first pass; in a skipped hour, the moment the clock jumps: an office that opens
        at 02:30 on the night the clock goes from 02:00 to 03:00 opens at 03:00.
        """
        # Offsets of the wall time read as the first and as the second pass of a fold (PEP 495); they differ only in
        # a repeated hour (first > second) or a skipped one (first < second).
        first = self.zone.utcoffset(datetime.combine(day, at))
        second = self.zone.utcoffset(datetime.combine(day, at_later))
        assert first is not None and second is not None  # a ZoneInfo always knows its offset
        if first >= second:
            return datetime.combine(day, at, UTC) - first
        # Skipped: read with the offset after the jump the wall time comes too early, with the one before too late.
        wall = datetime.combine(day, at)
        early, late = datetime.combine(day, at, UTC) - second, datetime.combine(day, at, UTC) - first
        while late - early > _TICK:
            middle = early + (late - early) / 2
            if middle.astimezone(self.zone).replace(tzinfo=None) >= wall:
                late = middle
            else:
                early = middle
        return late


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    if name == "localtime":
        raise ValueError("time zone 'localtime' follows the host; name the zone, e.g. 'Europe/Berlin'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. 'Europe/Berlin')") from None


def _items(values: Sequence[str]) -> list[str]:
    """Entries of a list, each of which may itself be comma- or space-separated; a plain string is one entry."""
    entries = [values] if isinstance(values, str) else list(values)
    entries = [re.sub(r"\s*-\s*", "-", entry) for entry in entries]
    return [item for entry in entries for item in re.split(r"[\s,]+", entry.strip()) if item]


def _parse_days(values: Sequence[str]) -> frozenset[int]:
    days: set[int] = set()
    for item in _items(values):
        first, dash, last = item.lower().partition("-")
        i = _parse_day(first, item)
        j = _parse_day(last, item) if dash else i
        # A range may wrap around the week end: "sun-thu".
        days.update((i + k) % 7 for k in range((j - i) % 7 + 1))
    if not days:
        raise ValueError("no working days")
    return frozenset(days)


def _parse_day(name: str, item: str) -> int:
    if name not in _DAYS:
        raise ValueError(f"unknown day {item!r} (use {', '.join(DAY_NAMES)}, or a range like mon-fri)")
    return _DAYS[name]


def _parse_time(name: str, text: str) -> time:
    match = _TIME.fullmatch(text.strip())
    hour, minute = (int(match[1]), int(match[2])) if match else (-1, -1)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise ValueError(f"{name} {text!r} is not a time of day (HH:MM, 00:00 to 23:59)")
    return time(hour, minute)


def _parse_date(text: str) -> date:
    # date.fromisoformat also takes "20261225" and "2026-W52-5"; a holiday list reads better in one spelling.
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"holiday {text!r} is not a date (YYYY-MM-DD)")
