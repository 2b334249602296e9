"""The report's pure core: percentiles, figures from hand-made rows, the table and the JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailsvc.model import CaseStatus
from mailsvc.report import (
    CaseFacts,
    FailedMail,
    Report,
    build_report,
    case_facts,
    format_duration,
    format_table,
    parse_since,
    percentile,
    period_start,
    to_json,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
T = SINCE.timestamp()
HOUR = 3600.0


def case(
    id: int, status: CaseStatus = CaseStatus.OPEN, *, queue: str = "help", at: float = T + HOUR, **fields: Any
) -> CaseFacts:
    return CaseFacts(id=id, queue=queue, status=status, created_at=at, **fields)


def report(cases: Sequence[CaseFacts], failed: Sequence[FailedMail] = (), **kwargs: Any) -> Report:
    return build_report(cases, failed, now=NOW, since=SINCE, **kwargs)


# --- percentile


def test_percentile_of_an_odd_count_is_the_middle_value() -> None:
    assert percentile([7, 1, 3], 50) == 3
    assert percentile([5], 90) == 5


def test_percentile_of_an_even_count_interpolates_between_ranks() -> None:
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile(range(1, 11), 90) == pytest.approx(9.1)
    assert percentile([10, 20], 0) == 10
    assert percentile([10, 20], 100) == 20


def test_percentile_of_nothing_is_none_and_p_is_checked() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match=r"0\.\.100"):
        percentile([1], 101)


# --- build_report


def test_cases_by_status_show_all_four_with_zeros() -> None:
    r = report([case(1), case(2), case(3, CaseStatus.CLOSED)])
    assert dict(r.total.by_status.items()) == {
        CaseStatus.OPEN: 2, CaseStatus.WAITING: 0, CaseStatus.RESOLVED: 0, CaseStatus.CLOSED: 1,
    }  # fmt: skip
    assert r.total.cases == 3


def test_first_response_median_p90_and_cases_still_waiting() -> None:
    answered = [case(i, CaseStatus.WAITING, first_response_at=T + HOUR + i * HOUR) for i in range(1, 11)]
    waiting = [case(20), case(21, CaseStatus.WAITING)]
    dropped = case(22, CaseStatus.CLOSED)  # closed unanswered: waits for nothing
    fr = report([*answered, *waiting, dropped]).total.first_response
    assert fr.count == 10
    assert fr.median == pytest.approx(5.5 * HOUR)
    assert fr.p90 == pytest.approx(9.1 * HOUR)
    assert fr.pending == 2


def test_resolution_counts_resolved_and_closed_and_not_reopened_cases() -> None:
    r = report(
        [
            case(1, CaseStatus.RESOLVED, resolved_at=T + 3 * HOUR),  # 2h
            case(2, CaseStatus.CLOSED, resolved_at=T + 5 * HOUR),  # 4h
            case(3, CaseStatus.OPEN, resolved_at=T + 2 * HOUR),  # reopened since
            case(4, CaseStatus.WAITING),
        ]
    )
    res = r.total.resolution
    assert (res.count, res.median, res.pending) == (2, 3 * HOUR, 2)
    assert res.p90 == pytest.approx(3.8 * HOUR)


def test_sla_breaches_reminders_and_auto_resolves() -> None:
    r = report(
        [
            case(1, sla_1_fired=1),
            case(2, sla_1_fired=1, sla_2_fired=1, reminders_fired=2),
            case(3, CaseStatus.RESOLVED, reminders_fired=1, auto_resolves_fired=1),
            case(4, CaseStatus.RESOLVED, auto_resolves_fired=2),  # twice, one case
            case(5),
        ]
    )
    t = r.total
    assert (t.sla_1_breached, t.sla_2_breached) == (2, 1)
    assert t.breach_rate == pytest.approx(2 / 5)
    assert t.reminders_sent == 3
    assert t.auto_resolved == 2


def test_a_second_level_sent_alone_after_downtime_counts_as_both_levels() -> None:
    t = report([case(1, sla_2_fired=1), case(2)]).total
    assert (t.sla_1_breached, t.sla_2_breached, t.breach_rate) == (1, 1, 0.5)


def test_satisfaction_average_distribution_and_share_good() -> None:
    answers = [5, 5, 4, 1, 3]
    r = report([case(i, CaseStatus.CLOSED, satisfaction=a) for i, a in enumerate(answers)] + [case(9)])
    s = r.total.satisfaction
    assert s.answers == 5
    assert s.average == pytest.approx(18 / 5)
    assert s.distribution == (1, 0, 1, 1, 2)
    assert s.share_good == pytest.approx(3 / 5)


def test_no_cases_gives_zeros_and_no_rates() -> None:
    t = report([]).total
    assert t.cases == 0
    assert t.first_response.median is None and t.resolution.p90 is None
    assert t.breach_rate is None
    assert t.satisfaction.average is None and t.satisfaction.share_good is None


def test_merged_cases_and_cases_before_the_period_are_left_out() -> None:
    r = report(
        [
            case(1, sla_1_fired=1),
            case(2, CaseStatus.CLOSED, merged_into=1, sla_1_fired=1, satisfaction=1),
            case(3, at=T - 1, satisfaction=1),
        ]
    )
    assert r.total.cases == 1
    assert r.total.by_status.closed == 0
    assert r.total.sla_1_breached == 1
    assert r.total.satisfaction.answers == 0


def test_per_queue_breakdown_lists_configured_queues_and_sums_to_the_total() -> None:
    cases = [case(1, queue="help"), case(2, queue="help", sla_1_fired=1), case(3, queue="sales"), case(4, queue="old")]
    failed = [FailedMail(T + 1, "sales"), FailedMail(T + 2, None), FailedMail(T - 1, "help")]
    r = report(cases, failed, queues=["sales", "help", "hr"])
    by_queue = dict(r.by_queue)
    assert list(by_queue) == ["sales", "help", "hr", "old"]
    assert [f.cases for f in by_queue.values()] == [1, 2, 0, 1]
    assert by_queue["help"].breach_rate == pytest.approx(0.5)
    assert by_queue["hr"].breach_rate is None
    assert by_queue["sales"].mail_failed == 1
    assert r.total.cases == 4
    assert r.total.mail_failed == 2  # the mail of no case counts in the total only


def test_queue_filter_keeps_one_queue_and_no_breakdown() -> None:
    cases = [case(1, queue="help"), case(2, queue="sales", sla_1_fired=1)]
    failed = [FailedMail(T + 1, "sales"), FailedMail(T + 2, "help"), FailedMail(T + 3, None)]
    r = report(cases, failed, queue="sales", queues=["help", "sales"])
    assert r.queue == "sales"
    assert r.by_queue == ()
    assert (r.total.cases, r.total.sla_1_breached, r.total.mail_failed) == (1, 1, 1)


def test_case_facts_reads_a_store_row() -> None:
    row = {
        "id": 4, "queue": "help", "status": "resolved", "created_at": 10, "first_response_at": None,
        "resolved_at": 70.5, "satisfaction": 4, "merged_into": None, "sla_1_fired": 1, "sla_2_fired": 0,
        "reminders_fired": 2, "auto_resolves_fired": 0,
    }  # fmt: skip
    facts = case_facts(row)
    assert facts == CaseFacts(4, "help", CaseStatus.RESOLVED, 10.0, None, 70.5, 4, None, 1, 0, 2, 0)


# --- dates


def test_since_is_a_utc_midnight_and_defaults_to_thirty_days() -> None:
    assert parse_since("2026-11-01") == SINCE
    assert period_start(NOW, None) == NOW - timedelta(days=30)
    assert period_start(NOW, SINCE) == SINCE


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "2026-11-01T00:00", ""])
def test_a_bad_since_date_says_what_is_expected(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_since(bad)


# --- output


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (45.4, "45s"),
        (59.6, "1m"),
        (12 * 60 + 5, "12m 5s"),
        (3 * HOUR + 12 * 60 + 20, "3h 12m"),
        (3 * HOUR, "3h"),
        (24 * HOUR - 20, "1d"),
        (2 * 86400 + 4 * HOUR + 10 * 60, "2d 4h"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def sample() -> Report:
    return report(
        [
            case(1, CaseStatus.RESOLVED, queue="help", first_response_at=T + 2 * HOUR, resolved_at=T + 26 * HOUR,
                 sla_1_fired=1, satisfaction=5),
            case(2, CaseStatus.WAITING, queue="help", first_response_at=T + 4 * HOUR, reminders_fired=1),
            case(3, CaseStatus.OPEN, queue="sales"),
        ],
        [FailedMail(T + 5, "sales")],
        queues=["help", "sales"],
    )  # fmt: skip


def test_table_has_a_column_per_queue_and_the_total() -> None:
    lines = format_table(sample()).splitlines()
    assert lines[0] == "Cases created 2026-11-01 00:00 .. 2026-11-23 09:00 UTC, all queues"
    assert lines[2].split() == ["help", "sales", "total"]
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[3:]]  # columns are 2+ spaces apart
    rows = {label: values for label, *values in cells}
    assert rows["Cases"] == ["2", "1", "3"]
    assert rows["waiting"] == ["1", "0", "1"]
    assert rows["breach rate"] == ["50.0%", "0.0%", "33.3%"]
    assert rows["Mail failed to send"] == ["0", "1", "1"]
    assert rows["rated 5 (good)"] == ["1", "0", "1"]
    medians = [values for label, *values in cells if label == "median"]
    assert medians == [["2h", "-", "2h"], ["1d 1h", "-", "1d 1h"]]
    widths = {len(line) for line in lines[2:] if len(line.split("  ")) > 1}
    assert len(widths) == 1, "value columns line up"


def test_table_of_one_queue_has_one_column() -> None:
    r = report([case(1, queue="sales")], queue="sales")
    lines = format_table(r).splitlines()
    assert lines[0].endswith("UTC, queue sales")
    assert lines[2].split() == ["sales"]
    assert any(line.split() == ["Cases", "1"] for line in lines)


def test_json_has_seconds_iso_dates_and_every_queue() -> None:
    data = to_json(sample())
    assert json.loads(json.dumps(data)) == data
    assert data["since"] == "2026-11-01T00:00:00+00:00"
    assert data["until"] == "2026-11-23T09:00:00+00:00"
    assert data["queue"] is None
    total = data["total"]
    assert total["by_status"] == {"open": 1, "waiting": 1, "resolved": 1, "closed": 0}
    first = {"count": 2, "median_seconds": 2 * HOUR, "p90_seconds": pytest.approx(2.8 * HOUR), "pending": 1}
    assert total["first_response"] == first
    assert total["resolution"]["median_seconds"] == 25 * HOUR
    assert total["sla"] == {"breached_level_1": 1, "breached_level_2": 0, "breach_rate": pytest.approx(1 / 3)}
    assert total["satisfaction"]["distribution"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1}
    assert total["reminders_sent"] == 1
    assert list(data["queues"]) == ["help", "sales"]
    assert data["queues"]["sales"]["mail_failed"] == 1
