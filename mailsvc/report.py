"""Service figures for `mailsvc report`: pure functions from store rows to a Report, a table and JSON.

The store reads the rows (`Store.report_cases`, `Store.report_failed_mail`); nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mailsvc.model import CaseStatus

DEFAULT_PERIOD = timedelta(days=30)
GOOD_SATISFACTION = 4  # answers of 4 and 5 count as good


# --- the rows the store gives


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """One case as the report sees it: its times (UNIX seconds, UTC) and what its timers did."""

    id: int
    queue: str
    status: CaseStatus
    created_at: float
    first_response_at: float | None = None
    resolved_at: float | None = None
    satisfaction: int | None = None
    merged_into: int | None = None
    sla_1_fired: int = 0
    sla_2_fired: int = 0
    reminders_fired: int = 0
    auto_resolves_fired: int = 0


@dataclass(frozen=True, slots=True)
class FailedMail:
    """An outgoing mail given up on; `queue` is None when it belongs to no case."""

    created_at: float
    queue: str | None


def case_facts(row: Mapping[str, Any]) -> CaseFacts:
    """A `Store.report_cases` row, column by column."""
    return CaseFacts(
        id=int(row["id"]),
        queue=str(row["queue"]),
        status=CaseStatus(row["status"]),
        created_at=float(row["created_at"]),
        first_response_at=_float_or_none(row["first_response_at"]),
        resolved_at=_float_or_none(row["resolved_at"]),
        satisfaction=None if row["satisfaction"] is None else int(row["satisfaction"]),
        merged_into=row["merged_into"],
        sla_1_fired=int(row["sla_1_fired"]),
        sla_2_fired=int(row["sla_2_fired"]),
        reminders_fired=int(row["reminders_fired"]),
        auto_resolves_fired=int(row["auto_resolves_fired"]),
    )


def failed_mail(row: Mapping[str, Any]) -> FailedMail:
    """A `Store.report_failed_mail` row."""
    return FailedMail(created_at=float(row["created_at"]), queue=row["queue"])


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


# --- the report


@dataclass(frozen=True, slots=True)
class StatusCounts:
    open: int = 0
    waiting: int = 0
    resolved: int = 0
    closed: int = 0

    def items(self) -> tuple[tuple[CaseStatus, int], ...]:
        return tuple((status, getattr(self, status.value)) for status in CaseStatus)


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds from case creation to an event, over the cases that reached it.

    `pending` counts the cases that have not reached it yet and still might.
    """

    count: int
    median: float | None
    p90: float | None
    pending: int


@dataclass(frozen=True, slots=True)
class Satisfaction:
    answers: int
    average: float | None
    distribution: tuple[int, int, int, int, int]  # how many answered 1, 2, 3, 4, 5
    share_good: float | None  # answers of GOOD_SATISFACTION or more, over all answers


@dataclass(frozen=True, slots=True)
class Figures:
    cases: int
    by_status: StatusCounts
    first_response: Durations
    resolution: Durations
    sla_1_breached: int  # cases whose first-response SLA fired its level 1 escalation
    sla_2_breached: int
    breach_rate: float | None  # cases breached at either level, over all cases
    reminders_sent: int
    auto_resolved: int  # cases resolved at least once by the auto_resolve timer
    satisfaction: Satisfaction
    mail_failed: int


@dataclass(frozen=True, slots=True)
class Report:
    """Figures over the cases created in [since, until]; `queue` set when limited to one queue.

    `by_queue` is empty for a one-queue report. Failed mail of no case counts in `total` only.
    """

    since: datetime
    until: datetime
    queue: str | None
    total: Figures
    by_queue: tuple[tuple[str, Figures], ...]


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile (0..100) by linear interpolation between closest ranks; None when empty.

    This is the "linear" method of numpy and spreadsheets' PERCENTILE: the median of
    an even count is the mean of the two middle values.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, not {p}")
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def parse_since(text: str) -> datetime:
    """A YYYY-MM-DD date as UTC midnight; ValueError with a readable reason otherwise."""
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"{text!r} is not a date in the form YYYY-MM-DD") from None
    return day.replace(tzinfo=UTC)


def period_start(now: datetime, since: datetime | None) -> datetime:
    """Where the report starts: `since`, or DEFAULT_PERIOD before `now`."""
    return now - DEFAULT_PERIOD if since is None else since


def _durations(values: list[float], pending: int) -> Durations:
    return Durations(len(values), percentile(values, 50), percentile(values, 90), pending)


def _satisfaction(answers: list[int]) -> Satisfaction:
    counts = [0, 0, 0, 0, 0]
    for answer in answers:
        counts[answer - 1] += 1
    if not answers:
        return Satisfaction(0, None, (0, 0, 0, 0, 0), None)
    good = sum(1 for answer in answers if answer >= GOOD_SATISFACTION)
    distribution = (counts[0], counts[1], counts[2], counts[3], counts[4])
    return Satisfaction(len(answers), sum(answers) / len(answers), distribution, good / len(answers))


def figures(cases: Sequence[CaseFacts], mail_failed: int) -> Figures:
    """The figures over these cases (already limited to the period and queue, merged ones left out)."""
    still_open = {CaseStatus.OPEN, CaseStatus.WAITING}
    status = {s: sum(1 for c in cases if c.status is s) for s in CaseStatus}
    # A case closed without a staff answer (spam, "never mind") waits for nothing.
    first_response = _durations(
        [max(0.0, c.first_response_at - c.created_at) for c in cases if c.first_response_at is not None],
        sum(1 for c in cases if c.first_response_at is None and c.status in still_open),
    )
    # A reopened case keeps its old resolved_at; it counts as unresolved until resolved again.
    resolution = _durations(
        [
            max(0.0, c.resolved_at - c.created_at)
            for c in cases
            if c.resolved_at is not None and c.status not in still_open
        ],
        sum(1 for c in cases if c.status in still_open),
    )
    breached = sum(1 for c in cases if c.sla_1_fired or c.sla_2_fired)
    return Figures(
        cases=len(cases),
        by_status=StatusCounts(*(status[s] for s in CaseStatus)),
        first_response=first_response,
        resolution=resolution,
        # A second-level escalation means the first level was breached too (after downtime only it is sent).
        sla_1_breached=sum(1 for c in cases if c.sla_1_fired or c.sla_2_fired),
        sla_2_breached=sum(1 for c in cases if c.sla_2_fired),
        breach_rate=breached / len(cases) if cases else None,
        reminders_sent=sum(c.reminders_fired for c in cases),
        auto_resolved=sum(1 for c in cases if c.auto_resolves_fired),
        satisfaction=_satisfaction([c.satisfaction for c in cases if c.satisfaction is not None]),
        mail_failed=mail_failed,
    )


def build_report(
    cases: Iterable[CaseFacts],
    failed: Iterable[FailedMail],
    *,
    now: datetime,
    since: datetime,
    queue: str | None = None,
    queues: Sequence[str] = (),
) -> Report:
    """The report over cases created at or after `since` (see `period_start`), up to `now`.

    Merged cases are left out: their messages and mail live on in the case they were merged into.
    `queues` are listed in the breakdown even without cases (the configured ones, in order).
    """
    lower = since.timestamp()

    def wanted(q: str | None) -> bool:
        return queue is None or q == queue

    kept = [c for c in cases if c.created_at >= lower and c.merged_into is None and wanted(c.queue)]
    lost = [m for m in failed if m.created_at >= lower and wanted(m.queue)]
    total = figures(kept, len(lost))
    if queue is not None:
        return Report(since, now, queue, total, ())
    names = list(dict.fromkeys(queues))
    names += sorted({c.queue for c in kept}.difference(names))
    by_queue = tuple(
        (name, figures([c for c in kept if c.queue == name], sum(1 for m in lost if m.queue == name))) for name in names
    )
    return Report(since, now, None, total, by_queue)


# --- output


_UNITS = ((86400, 3600, "d", "h"), (3600, 60, "h", "m"), (60, 1, "m", "s"))


def format_duration(seconds: float | None) -> str:
    """Two units at most, rounded to the smaller one: "45s", "12m 5s", "3h 12m", "2d 4h"; "-" for None."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for big, small, big_name, small_name in _UNITS:
        n = round(seconds / small)
        if n * small >= big:
            major, minor = divmod(n, big // small)
            return f"{major}{big_name} {minor}{small_name}" if minor else f"{major}{big_name}"
    return f"{round(seconds)}s"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _rows(f: Figures) -> list[tuple[str, str]]:
    """Label and value of each line of one column; an empty value with a label is a heading."""
    s = f.satisfaction
    return [
        ("Cases", str(f.cases)),
        *((f"  {status.value}", str(n)) for status, n in f.by_status.items()),
        ("First response", ""),
        ("  answered", str(f.first_response.count)),
        ("  median", format_duration(f.first_response.median)),
        ("  p90", format_duration(f.first_response.p90)),
        ("  still waiting", str(f.first_response.pending)),
        ("Resolution", ""),
        ("  resolved", str(f.resolution.count)),
        ("  median", format_duration(f.resolution.median)),
        ("  p90", format_duration(f.resolution.p90)),
        ("  not yet resolved", str(f.resolution.pending)),
        ("SLA (first response)", ""),
        ("  breached, level 1", str(f.sla_1_breached)),
        ("  breached, level 2", str(f.sla_2_breached)),
        ("  breach rate", _share(f.breach_rate)),
        ("Reminders sent", str(f.reminders_sent)),
        ("Auto-resolved", str(f.auto_resolved)),
        ("Satisfaction", ""),
        ("  answers", str(s.answers)),
        ("  average (1-5)", "-" if s.average is None else f"{s.average:.2f}"),
        *(
            (f"  rated {n}{' (bad)' if n == 1 else ' (good)' if n == 5 else ''}", str(k))
            for n, k in enumerate(s.distribution, start=1)
        ),
        (f"  good ({GOOD_SATISFACTION}-5)", _share(s.share_good)),
        ("Mail failed to send", str(f.mail_failed)),
    ]


def format_table(report: Report) -> str:
    """A fixed-width table: one line per figure, one column per queue and the total."""
    columns = (
        [*report.by_queue, ("total", report.total)] if report.by_queue else [(report.queue or "total", report.total)]
    )
    rendered = [(name, _rows(f)) for name, f in columns]
    labels = [label for label, _ in rendered[0][1]]
    label_width = max(len(label) for label in labels) + 2
    widths = [max(len(name), *(len(value) for _, value in rows)) for name, rows in rendered]
    scope = f"queue {report.queue}" if report.queue else "all queues"
    lines = [
        f"Cases created {report.since:%Y-%m-%d %H:%M} .. {report.until:%Y-%m-%d %H:%M} UTC, {scope}",
        "",
        " " * label_width + "  ".join(f"{name:>{w}}" for (name, _), w in zip(rendered, widths, strict=True)),
    ]
    for i, label in enumerate(labels):
        values = [rows[i][1] for _, rows in rendered]
        if not any(values):
            lines.append(label)
            continue
        cells = "  ".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
        lines.append(f"{label:<{label_width}}{cells}")
    return "\n".join(lines)


def _durations_json(d: Durations) -> dict[str, Any]:
    return {"count": d.count, "median_seconds": d.median, "p90_seconds": d.p90, "pending": d.pending}


def _figures_json(f: Figures) -> dict[str, Any]:
    s = f.satisfaction
    return {
        "cases": f.cases,
        "by_status": {status.value: n for status, n in f.by_status.items()},
        "first_response": _durations_json(f.first_response),
        "resolution": _durations_json(f.resolution),
        "sla": {
            "breached_level_1": f.sla_1_breached,
            "breached_level_2": f.sla_2_breached,
            "breach_rate": f.breach_rate,
        },
        "reminders_sent": f.reminders_sent,
        "auto_resolved": f.auto_resolved,
        "satisfaction": {
            "answers": s.answers,
            "average": s.average,
            "distribution": {str(n): k for n, k in enumerate(s.distribution, start=1)},
            "share_good": s.share_good,
        },
        "mail_failed": f.mail_failed,
    }


def to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready values: durations in seconds, rates as fractions, times in ISO 8601."""
    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "queue": report.queue,
        "total": _figures_json(report.total),
        "queues": {name: _figures_json(f) for name, f in report.by_queue},
    }
