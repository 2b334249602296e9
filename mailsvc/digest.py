"""The digest (pure): when it is due, and the report of one period beside the one before, for the team.

`DigestSchedule` says which period is the latest complete one at a moment; the scheduler sends that one
once (the store remembers it), so a restart sends nothing twice and downtime ends with one catch-up.
`build_digest` turns store rows into a Digest, `digest_context` into what the digest templates see.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailsvc.hours import DAY_NAMES
from mailsvc.model import CaseStatus, OutgoingMail
from mailsvc.render import Templates
from mailsvc.report import CaseFacts, FailedMail, Figures, Report, build_report, format_duration
from mailsvc.satisfaction import parse_rating
from mailsvc.strip import strip_reply

TEXT_TEMPLATE = "digest.txt.j2"
HTML_TEMPLATE = "digest.html.j2"
_AT = re.compile(r"(?:([A-Za-z]+)\s+)?([0-9]{1,2}):([0-9]{2})")
_STEP = {"daily": 1, "weekly": 7}
_LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAYS = {name: i for names in (DAY_NAMES, _LONG_DAYS) for i, name in enumerate(names)}
_TITLES = {"weekly": "Weekly help desk digest", "daily": "Daily help desk digest"}
_BEFORE = {"weekly": "the week before", "daily": "the day before"}
MAX_WAITING = 10
MAX_COMMENTS = 20
MAX_COMMENT_CHARS = 500


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """Every day, or every week on `weekday` (0 = Monday), at the local time `at` of `timezone`."""

    every: str
    weekday: int | None
    at: time
    timezone: str

    @classmethod
    def parse(cls, every: str, at: str | None, timezone: str) -> DigestSchedule:
        """From configuration text; ValueError with a one-line reason."""
        if every not in _STEP:
            raise ValueError(f"every: {every!r} is not weekly or daily")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r} (an IANA name, e.g. 'Europe/Berlin')") from None
        text = (at or ("Mon 08:00" if every == "weekly" else "08:00")).strip()
        found = _AT.fullmatch(text)
        hour, minute = (int(found[2]), int(found[3])) if found else (-1, -1)
        if found is None or not (0 <= hour <= 23 and 0 <= minute <= 59):
            example = "Mon 08:00" if every == "weekly" else "08:00"
            raise ValueError(f"at: {text!r} is not a time like {example!r}")
        day = found[1]
        if every == "daily" and day:
            raise ValueError(f"at: a daily digest takes a time only, like '08:00', not {text!r}")
        if every == "weekly" and not day:
            raise ValueError(f"at: a weekly digest needs a day, like 'Mon 08:00', not {text!r}")
        weekday = _WEEKDAYS.get(day.lower()) if day else None
        if day and weekday is None:
            raise ValueError(f"at: unknown day {day!r} (use {', '.join(DAY_NAMES)})")
        return cls(every, weekday, time(hour, minute), timezone)

    def latest_period(self, now: datetime) -> Period:
        """The last complete period at `now`: it ends at the latest scheduled moment at or before `now`."""
        zone = ZoneInfo(self.timezone)
        day = now.astimezone(zone).date()
        for back in range(8):
            candidate = day - timedelta(days=back)
            if self.weekday is not None and candidate.weekday() != self.weekday:
                continue
            end = datetime.combine(candidate, self.at, zone)
            if end <= now:
                start = datetime.combine(candidate - timedelta(days=_STEP[self.every]), self.at, zone)
                return Period(start.astimezone(UTC), end.astimezone(UTC))
        raise AssertionError("a week always holds a scheduled moment")  # pragma: no cover

    def next_after(self, now: datetime) -> datetime:
        """The next scheduled moment after `now`, in UTC."""
        zone = ZoneInfo(self.timezone)
        latest = self.latest_period(now).end.astimezone(zone)
        return datetime.combine(latest.date() + timedelta(days=_STEP[self.every]), self.at, zone).astimezone(UTC)


# --- the content


@dataclass(frozen=True, slots=True)
class WaitingCase:
    """An open case: the team owes the next answer, since `since` (its last activity)."""

    id: int
    queue: str
    subject: str
    since: float


@dataclass(frozen=True, slots=True)
class RatingComment:
    case_id: int
    score: int
    text: str


@dataclass(frozen=True, slots=True)
class RatedMessage:
    """A filed message that carried a satisfaction answer, as the store keeps it."""

    case_id: int
    subject: str
    body_text: str


@dataclass(frozen=True, slots=True)
class Digest:
    every: str
    timezone: str
    period: Period
    current: Report
    previous: Report
    waiting: tuple[WaitingCase, ...]
    comments: tuple[RatingComment, ...]
    now: datetime


def rating_comments(messages: Sequence[RatedMessage]) -> tuple[RatingComment, ...]:
    """The text requesters wrote below their rating (the remark the team was sent), newest last."""
    found = []
    for m in messages:
        rating = parse_rating(m.subject, strip_reply(m.body_text))
        if rating is not None and rating.remark:
            text = " ".join(rating.remark.split())
            if len(text) > MAX_COMMENT_CHARS:
                text = text[: MAX_COMMENT_CHARS - 1] + "…"
            found.append(RatingComment(m.case_id, rating.score, text))
    return tuple(found[-MAX_COMMENTS:])


def build_digest(
    cases: Sequence[CaseFacts],
    failed: Sequence[FailedMail],
    *,
    period: Period,
    waiting: Sequence[WaitingCase],
    rated: Sequence[RatedMessage],
    now: datetime,
    every: str,
    timezone: str = "UTC",
    queue: str | None = None,
    queues: Sequence[str] = (),
) -> Digest:
    """The period's report beside the previous period of the same length; `cases` and `failed` may reach further
    back and beyond: each report takes the cases created within its own period."""
    previous = Period(period.start - (period.end - period.start), period.start)

    def within(p: Period) -> Report:
        lo, hi = p.start.timestamp(), p.end.timestamp()
        return build_report(
            [c for c in cases if lo <= c.created_at < hi], [m for m in failed if lo <= m.created_at < hi],
            now=p.end, since=p.start, queue=queue, queues=queues,
        )  # fmt: skip

    longest = sorted((w for w in waiting if queue is None or w.queue == queue), key=lambda w: (w.since, w.id))
    return Digest(
        every, timezone, period, within(period), within(previous), tuple(longest[:MAX_WAITING]),
        rating_comments(rated), now,
    )  # fmt: skip


# --- what the templates see: text already formatted, bar widths in percent


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _trend(
    label: str,
    now: float | None,
    before: float | None,
    show: Callable[[float | None], str],
    lower_is_better: bool | None,
) -> dict[str, Any]:
    """One line of the comparison with the previous period; `better` is None when nothing changed or is unknown."""
    if now is None or before is None or now == before:
        direction, better = ("same" if now == before else "none"), None
    else:
        direction = "up" if now > before else "down"
        better = None if lower_is_better is None else (now < before) == lower_is_better
    return {"label": label, "now": show(now), "before": show(before), "direction": direction, "better": better}


def _count(value: float | None) -> str:
    return "-" if value is None else str(int(value))


def _average(value: float | None) -> str:
    return _number(value, 1)


def _figures_context(f: Figures) -> dict[str, Any]:
    s = f.satisfaction
    top = max(s.distribution) or 1
    return {
        "cases": f.cases,
        "open": f.by_status.open, "waiting": f.by_status.waiting,
        "resolved": f.by_status.resolved, "closed": f.by_status.closed,
        "first_response": {
            "answered": f.first_response.count, "median": format_duration(f.first_response.median),
            "p90": format_duration(f.first_response.p90), "pending": f.first_response.pending,
        },
        "resolution": {
            "resolved": f.resolution.count, "median": format_duration(f.resolution.median),
            "p90": format_duration(f.resolution.p90), "pending": f.resolution.pending,
        },
        "sla": {
            "level_1": f.sla_1_breached, "level_2": f.sla_2_breached,
            "rate": "-" if f.breach_rate is None else f"{f.breach_rate * 100:.0f}%",
        },
        "satisfaction": {
            "answers": s.answers, "average": _number(s.average, 1),
            "good": "-" if s.share_good is None else f"{s.share_good * 100:.0f}%",
            "distribution": [
                {"score": n, "count": k, "bar": round(100 * k / top)}
                for n, k in reversed(list(enumerate(s.distribution, start=1)))
            ],
        },
        "reminders": f.reminders_sent, "auto_resolved": f.auto_resolved, "mail_failed": f.mail_failed,
    }  # fmt: skip


def digest_context(d: Digest) -> dict[str, Any]:
    zone = ZoneInfo(d.timezone)
    cur, prev = d.current.total, d.previous.total
    widest = max([f.cases for _, f in d.current.by_queue] + [1])
    return {
        "title": _TITLES.get(d.every, "Help desk report"),
        "period": {
            "start": f"{d.period.start.astimezone(zone):%a %d %b %Y %H:%M}",
            "end": f"{d.period.end.astimezone(zone):%a %d %b %Y %H:%M}",
            "timezone": d.timezone,
            "label": _label(d.period, zone),
            "previous": _BEFORE.get(d.every, "the period before"),
        },
        "total": _figures_context(cur),
        "trend": [
            _trend("Cases opened", cur.cases, prev.cases, _count, lower_is_better=None),
            _trend(
                "Median first response", cur.first_response.median, prev.first_response.median, format_duration, True
            ),
            _trend("Median resolution", cur.resolution.median, prev.resolution.median, format_duration, True),
            _trend("SLA breaches", cur.sla_1_breached, prev.sla_1_breached, _count, lower_is_better=True),
            _trend("Satisfaction (1-5)", cur.satisfaction.average, prev.satisfaction.average, _average, False),
        ],
        "queues": [
            {"name": name, "bar": round(100 * f.cases / widest), **_figures_context(f)}
            for name, f in d.current.by_queue
        ],
        "waiting": [
            {
                "id": w.id,
                "queue": w.queue,
                "subject": w.subject,
                "waiting": format_duration(d.now.timestamp() - w.since),
            }
            for w in d.waiting
        ],
        "comments": [{"case_id": c.case_id, "score": c.score, "text": c.text} for c in d.comments],
        "generated": f"{d.now.astimezone(zone):%a %d %b %Y %H:%M} ({d.timezone})",
    }


def _label(period: Period, zone: ZoneInfo) -> str:
    """ "30 Nov - 7 Dec 2026": the days the period covers (it ends at the start of its last day's moment)."""
    start, end = period.start.astimezone(zone), period.end.astimezone(zone)
    if end - start <= timedelta(days=1):
        return f"{start:%a} {start.day} {start:%b} {start:%H:%M} - {end:%a} {end.day} {end:%b %Y %H:%M}"
    return f"{start.day} {start:%b} - {end.day} {end:%b %Y}"


def render_digest(d: Digest, templates: Templates) -> tuple[str, str, str]:
    """Subject, text and HTML of the digest, from the `digest` templates."""
    context = digest_context(d)
    return digest_subject(context), templates.render(TEXT_TEMPLATE, context), templates.render(HTML_TEMPLATE, context)


def digest_subject(context: dict[str, Any]) -> str:
    total = context["total"]
    return (
        f"{context['title']}, {context['period']['label']}: {total['cases']} cases, "
        f"median first response {total['first_response']['median']}"
    )


def compose_digest(
    text: str, html: str, subject: str, *, sender: tuple[str, str], to: Sequence[str], message_id: str, now: datetime
) -> OutgoingMail:
    """The digest mail: text, and the same page as an HTML alternative."""
    mail = EmailMessage()
    mail["From"] = formataddr(sender)
    mail["To"] = ", ".join(to)
    mail["Subject"] = subject
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = message_id
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Auto-Response-Suppress"] = "All"
    mail["X-Loop"] = sender[1]
    mail.set_content(text)
    mail.add_alternative(html, subtype="html")
    return OutgoingMail(
        message_id=message_id, mail_from=sender[1], rcpt_to=tuple(to), raw=mail.as_bytes(policy=SMTP), purpose="digest"
    )


def sample_digest() -> Digest:
    """A digest with a value in every field, for `templates check`."""
    end = datetime(2026, 1, 5, 7, tzinfo=UTC)
    period = Period(end - timedelta(days=7), end)
    t, hour = period.start.timestamp(), 3600.0
    cases = [
        CaseFacts(1, "help", CaseStatus.CLOSED, t, t + hour, t + 30 * hour, satisfaction=5),
        CaseFacts(2, "help", CaseStatus.OPEN, t + hour, sla_1_fired=1),
        CaseFacts(3, "it", CaseStatus.RESOLVED, t + 2 * hour, t + 4 * hour, t + 50 * hour, satisfaction=2),
        CaseFacts(4, "help", CaseStatus.CLOSED, t - 3 * 86400, t - 2 * 86400, t - 86400),
    ]
    rated = [RatedMessage(3, "Re: VPN drops [Help #3]", "2\nIt took two days.")]
    waiting = [WaitingCase(2, "help", "The printer on floor 3 is jammed", t + hour)]
    return build_digest(
        cases, [FailedMail(t + hour, "help")], period=period, waiting=waiting, rated=rated, now=end,
        every="weekly", timezone="Europe/Berlin", queues=["help", "it"],
    )  # fmt: skip
