"""Business hours: weekends, holidays, clock changes, configuration errors, and properties of the arithmetic."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsvc.hours import BusinessHours, add_business_time, business_time_between, is_working_time

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")
H = timedelta(hours=1)


def office(
    zone: str = "Europe/Berlin", days: str = "mon-fri", start: str = "09:00", end: str = "17:00", *holidays: str
) -> BusinessHours:
    return BusinessHours.parse(zone, [days], start, end, holidays)


def at(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, fold: int = 0
) -> datetime:
    """A local wall time as the aware UTC datetime the functions take."""
    return datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold).astimezone(UTC)


def local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


# Weekends and holidays


def test_friday_afternoon_plus_two_hours_is_monday_ten() -> None:
    result = add_business_time(at(BERLIN, 2026, 1, 16, 16), 2 * H, office())
    assert result.tzinfo == UTC
    assert local(result, BERLIN) == datetime(2026, 1, 19, 10)


def test_within_one_day() -> None:
    assert local(add_business_time(at(BERLIN, 2026, 1, 14, 9, 30), 3 * H, office()), BERLIN) == datetime(
        2026, 1, 14, 12, 30
    )


def test_weekend_start_counts_from_monday_opening() -> None:
    hours = office()
    assert local(add_business_time(at(BERLIN, 2026, 1, 17, 12), H, hours), BERLIN) == datetime(2026, 1, 19, 10)
    assert local(add_business_time(at(BERLIN, 2026, 1, 18, 23), timedelta(0), hours), BERLIN) == datetime(
        2026, 1, 19, 9
    )


def test_before_opening_and_after_closing() -> None:
    hours = office()
    assert local(add_business_time(at(BERLIN, 2026, 1, 14, 7), H, hours), BERLIN) == datetime(2026, 1, 14, 10)
    assert local(add_business_time(at(BERLIN, 2026, 1, 14, 17), H, hours), BERLIN) == datetime(2026, 1, 15, 10)
    assert local(add_business_time(at(BERLIN, 2026, 1, 14, 17), timedelta(0), hours), BERLIN) == datetime(
        2026, 1, 15, 9
    )


def test_zero_delta_inside_working_time_is_the_start() -> None:
    start = at(BERLIN, 2026, 1, 14, 11, 17, 3)
    assert add_business_time(start, timedelta(0), office()) == start


def test_using_up_the_day_ends_at_closing_not_next_opening() -> None:
    result = add_business_time(at(BERLIN, 2026, 1, 14, 15), 2 * H, office())
    assert local(result, BERLIN) == datetime(2026, 1, 14, 17)


def test_holiday_on_monday_moves_to_tuesday() -> None:
    hours = office("Europe/Berlin", "mon-fri", "09:00", "17:00", "2026-01-19")
    assert local(add_business_time(at(BERLIN, 2026, 1, 16, 16), 2 * H, hours), BERLIN) == datetime(2026, 1, 20, 10)
    assert not is_working_time(at(BERLIN, 2026, 1, 19, 12), hours)


def test_christmas_week() -> None:
    hours = office("Europe/Berlin", "mon-fri", "09:00", "17:00", "2026-12-24", "2026-12-25", "2026-12-31", "2027-01-01")
    # Wednesday 23 Dec 16:00: one hour that day, then Monday 28 Dec.
    assert local(add_business_time(at(BERLIN, 2026, 12, 23, 16), 5 * H, hours), BERLIN) == datetime(2026, 12, 28, 13)
    week = business_time_between(at(BERLIN, 2026, 12, 21), at(BERLIN, 2027, 1, 4), hours)
    assert week == 6 * 8 * H


def test_middle_east_week_wraps_around_sunday() -> None:
    hours = BusinessHours.parse("Asia/Jerusalem", ["sun-thu"], "08:00", "16:00", [])
    assert hours.days == frozenset({6, 0, 1, 2, 3})
    thursday = datetime(2026, 1, 15, 15, tzinfo=ZoneInfo("Asia/Jerusalem"))
    assert local(add_business_time(thursday, 2 * H, hours), ZoneInfo("Asia/Jerusalem")) == datetime(2026, 1, 18, 9)


def test_is_working_time_includes_opening_excludes_closing() -> None:
    hours = office()
    assert is_working_time(at(BERLIN, 2026, 1, 14, 9), hours)
    assert is_working_time(at(BERLIN, 2026, 1, 14, 16, 59, 59), hours)
    assert not is_working_time(at(BERLIN, 2026, 1, 14, 17), hours)
    assert not is_working_time(at(BERLIN, 2026, 1, 14, 8, 59, 59), hours)
    assert not is_working_time(at(BERLIN, 2026, 1, 17, 12), hours)


def test_between() -> None:
    hours = office()
    assert business_time_between(at(BERLIN, 2026, 1, 16, 16), at(BERLIN, 2026, 1, 19, 10), hours) == 2 * H
    assert business_time_between(at(BERLIN, 2026, 1, 17), at(BERLIN, 2026, 1, 18), hours) == timedelta(0)
    assert business_time_between(at(BERLIN, 2026, 1, 12), at(BERLIN, 2026, 1, 19), hours) == 40 * H
    assert business_time_between(at(BERLIN, 2026, 1, 19, 10), at(BERLIN, 2026, 1, 16, 16), hours) == timedelta(0)


def test_times_in_other_zones_are_converted() -> None:
    tokyo = datetime(2026, 1, 16, 16, tzinfo=ZoneInfo("Asia/Tokyo"))  # 08:00 in Berlin
    assert local(add_business_time(tokyo, H, office()), BERLIN) == datetime(2026, 1, 16, 10)


# Clock changes


@pytest.mark.parametrize(
    ("zone", "friday", "monday", "elapsed"),
    [
        # Europe/Berlin: 29 March 2026 to summer time, 25 October back.
        (BERLIN, datetime(2026, 3, 27, 16), datetime(2026, 3, 30, 10), 65 * H),
        (BERLIN, datetime(2026, 10, 23, 16), datetime(2026, 10, 26, 10), 67 * H),
        # America/New_York: 8 March and 1 November 2026.
        (NEW_YORK, datetime(2026, 3, 6, 16), datetime(2026, 3, 9, 10), 65 * H),
        (NEW_YORK, datetime(2026, 10, 30, 16), datetime(2026, 11, 2, 10), 67 * H),
    ],
)
def test_over_a_clock_change_weekend(zone: ZoneInfo, friday: datetime, monday: datetime, elapsed: timedelta) -> None:
    hours = office(str(zone))
    start = friday.replace(tzinfo=zone).astimezone(UTC)
    result = add_business_time(start, 2 * H, hours)
    assert local(result, zone) == monday
    # Friday 16:00 to Monday 10:00 is 66 hours on the wall clock, 65 or 67 real ones; none of the weekend counts.
    assert result - start == elapsed
    assert business_time_between(start, result, hours) == 2 * H


def test_new_york_utc_moments() -> None:
    assert add_business_time(at(NEW_YORK, 2026, 3, 6, 16), 2 * H, office("America/New_York")) == datetime(
        2026, 3, 9, 14, tzinfo=UTC
    )
    assert add_business_time(at(NEW_YORK, 2026, 10, 30, 16), 2 * H, office("America/New_York")) == datetime(
        2026, 11, 2, 15, tzinfo=UTC
    )


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)])
def test_a_23_or_25_hour_day_keeps_its_local_hours(day: date) -> None:
    hours = office("Europe/Berlin", "mon-sun")
    opening, closing = at(BERLIN, day.year, day.month, day.day, 9), at(BERLIN, day.year, day.month, day.day, 17)
    assert business_time_between(at(BERLIN, day.year, day.month, day.day), opening + 24 * H, hours) == 8 * H
    assert add_business_time(at(BERLIN, day.year, day.month, day.day, 1), timedelta(0), hours) == opening
    assert add_business_time(opening, 8 * H, hours) == closing
    assert is_working_time(opening, hours)
    assert not is_working_time(closing, hours)


def test_hours_across_the_night_of_a_clock_change_count_real_time() -> None:
    night = office("Europe/Berlin", "sun", "01:00", "04:00")
    spring = business_time_between(at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30), night)
    autumn = business_time_between(at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26), night)
    assert (spring, autumn) == (2 * H, 4 * H)


def test_opening_in_the_skipped_hour_is_when_the_clock_jumps() -> None:
    hours = office("Europe/Berlin", "sun", "02:30", "05:00")
    assert add_business_time(at(BERLIN, 2026, 3, 29), timedelta(0), hours) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert business_time_between(at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30), hours) == 2 * H


def test_opening_in_the_repeated_hour_is_its_first_pass() -> None:
    hours = office("Europe/Berlin", "sun", "02:30", "05:00")
    first_pass = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert add_business_time(at(BERLIN, 2026, 10, 25), timedelta(0), hours) == first_pass
    assert is_working_time(at(BERLIN, 2026, 10, 25, 2, 15, fold=1), hours)
    assert business_time_between(at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26), hours) == 3.5 * H


def test_hours_wholly_in_the_skipped_hour_are_no_working_time() -> None:
    hours = office("Europe/Berlin", "sun", "02:00", "02:45")
    saturday = at(BERLIN, 2026, 3, 28, 12)
    assert local(add_business_time(saturday, timedelta(0), hours), BERLIN) == datetime(2026, 4, 5, 2)
    assert business_time_between(saturday, at(BERLIN, 2026, 3, 30), hours) == timedelta(0)


def test_midnight_that_does_not_exist() -> None:
    # America/Santiago, 6 September 2026: the clock goes from 00:00 straight to 01:00.
    hours = office("America/Santiago", "sun", "00:00", "08:00")
    assert add_business_time(at(SANTIAGO, 2026, 9, 5, 22), timedelta(0), hours) == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert business_time_between(at(SANTIAGO, 2026, 9, 5), at(SANTIAGO, 2026, 9, 7), hours) == 7 * H


def test_clock_going_back_over_midnight() -> None:
    # America/Santiago, 5 April 2026: at 00:00 the clock goes back to 23:00 on Saturday.
    hours = office("America/Santiago", "sat-sun", "20:00", "23:59")
    # Saturday closes the first time the clock shows 23:59; its second pass of 23:00 to 24:00 does not count.
    saturday = business_time_between(at(SANTIAGO, 2026, 4, 4), at(SANTIAGO, 2026, 4, 5, 12), hours)
    assert saturday == timedelta(hours=3, minutes=59)
    second_pass = at(SANTIAGO, 2026, 4, 4, 23, 30, fold=1)
    assert not is_working_time(second_pass, hours)
    assert local(add_business_time(second_pass, H, hours), SANTIAGO) == datetime(2026, 4, 5, 21)


# Wall-clock time when no hours are configured


def test_no_hours_is_wall_clock_time() -> None:
    start = datetime(2026, 1, 17, 23, 30, tzinfo=UTC)
    assert add_business_time(start, 2 * H, None) == datetime(2026, 1, 18, 1, 30, tzinfo=UTC)
    assert add_business_time(start, timedelta(0), None) == start
    assert business_time_between(start, start + 50 * H, None) == 50 * H
    assert business_time_between(start + H, start, None) == timedelta(0)


# Limits


def test_large_delta_terminates_and_agrees() -> None:
    hours = office("Europe/Berlin", "mon-fri", "09:00", "17:00", "2026-12-25", "2027-01-01")
    start = at(BERLIN, 2026, 9, 1, 12)
    result = add_business_time(start, 1000 * H, hours)
    # 5 hours on Tuesday 1 September, 124 full days, 3 hours of the 126th working day: counted by hand, past both
    # holidays and the end of summer time.
    assert local(result, BERLIN) == datetime(2027, 2, 25, 12)
    assert business_time_between(start, result, hours) == 1000 * H


def test_many_holidays() -> None:
    mondays = [(date(2000, 1, 3) + timedelta(weeks=k)).isoformat() for k in range(52 * 60)]
    hours = office("Europe/Berlin", "mon-tue", "09:00", "17:00", *mondays)
    start = at(BERLIN, 2026, 1, 5, 9)  # a Monday, and a holiday
    # 100 Tuesdays: 6 January 2026 and 99 weeks on, to its closing.
    assert local(add_business_time(start, 8 * 100 * H, hours), BERLIN) == datetime(2027, 11, 30, 17)


def test_a_calendar_with_no_working_time_is_refused() -> None:
    every_day = [(date(2026, 1, 1) + timedelta(days=k)).isoformat() for k in range(3 * 366)]
    hours = office("Europe/Berlin", "mon-fri", "09:00", "17:00", *every_day)
    with pytest.raises(ValueError, match="no working time"):
        add_business_time(at(BERLIN, 2026, 1, 1), H, hours)
    # Working time after the holidays is still found when the gap is shorter than two years.
    short = office("Europe/Berlin", "mon-fri", "09:00", "17:00", *every_day[:600])
    assert add_business_time(at(BERLIN, 2026, 1, 1), H, short) > at(BERLIN, 2027, 8, 1)


def test_an_endless_delta_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit in 100 years"):
        add_business_time(at(BERLIN, 2026, 1, 1), timedelta(days=10**6), office())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="aware"):
        add_business_time(datetime(2026, 1, 1), H, office())
    with pytest.raises(ValueError, match="negative"):
        add_business_time(datetime(2026, 1, 1, tzinfo=UTC), -H, office())
    with pytest.raises(ValueError, match="aware"):
        business_time_between(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2), None)


# Parsing configuration


def test_parse() -> None:
    hours = BusinessHours.parse("America/New_York", ["Mon", "wed-fri"], "08:30", "17:45", ["2026-07-03"])
    assert hours == BusinessHours(
        "America/New_York", frozenset({0, 2, 3, 4}), time(8, 30), time(17, 45), frozenset({date(2026, 7, 3)})
    )


@pytest.mark.parametrize(
    "days",
    [["mon-fri"], "mon-fri", ["mon, tue, wed", "thu", "fri"], ["Monday - Friday"], ["mon-wed", "wed-fri"]],
)
def test_parse_day_spellings(days: list[str] | str) -> None:
    assert BusinessHours.parse("UTC", days, "09:00", "17:00", []).days == frozenset(range(5))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Europe/Berln", ["mon-fri"], "09:00", "17:00", []), r"unknown time zone 'Europe/Berln'"),
        (("", ["mon-fri"], "09:00", "17:00", []), r"unknown time zone ''"),
        (("Europe", ["mon-fri"], "09:00", "17:00", []), r"unknown time zone 'Europe'"),
        (("../etc/passwd", ["mon-fri"], "09:00", "17:00", []), r"unknown time zone"),
        (("localtime", ["mon-fri"], "09:00", "17:00", []), r"follows the host"),
        (("UTC", [], "09:00", "17:00", []), r"^no working days$"),
        (("UTC", ["mon-fry"], "09:00", "17:00", []), r"unknown day 'mon-fry' \(use mon, tue"),
        (("UTC", ["weekdays"], "09:00", "17:00", []), r"unknown day 'weekdays'"),
        (("UTC", ["mon-fri"], "17:00", "09:00", []), r"^end 09:00 is not after start 17:00$"),
        (("UTC", ["mon-fri"], "09:00", "09:00", []), r"^end 09:00 is not after start 09:00$"),
        (("UTC", ["mon-fri"], "9am", "17:00", []), r"^start '9am' is not a time of day \(HH:MM"),
        (("UTC", ["mon-fri"], "09:00", "24:00", []), r"^end '24:00' is not a time of day"),
        (("UTC", ["mon-fri"], "09:00", "17:60", []), r"^end '17:60' is not a time of day"),
        (
            ("UTC", ["mon-fri"], "09:00", "17:00", ["2026-02-30"]),
            r"^holiday '2026-02-30' is not a date \(YYYY-MM-DD\)$",
        ),
        (("UTC", ["mon-fri"], "09:00", "17:00", ["25.12.2026"]), r"^holiday '25.12.2026' is not a date"),
        (("UTC", ["mon-fri"], "09:00", "17:00", ["20261225"]), r"^holiday '20261225' is not a date"),
    ],
)
def test_parse_errors(args: tuple[str, list[str], str, str, list[str]], message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        BusinessHours.parse(*args)
    assert "\n" not in str(raised.value)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(ValueError, match="0 \\(Monday\\) to 6"):
        BusinessHours("UTC", frozenset({7}), time(9), time(17))
    with pytest.raises(ValueError, match="not after start"):
        BusinessHours("UTC", frozenset({0}), time(17), time(9))


# Properties

ZONES = ["Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
# Openings and closings on a quarter-hour grid across the whole day, so that some fall in skipped or repeated hours.
QUARTERS = [time(h, m) for h in range(24) for m in (0, 15, 30, 45)]


@st.composite
def calendars(draw: st.DrawFn, quarters: list[time] = QUARTERS) -> BusinessHours:
    opening = draw(st.integers(0, len(quarters) - 2))
    closing = draw(st.integers(opening + 1, len(quarters) - 1))
    # Runs of holidays near the moments drawn below, so that they meet the arithmetic often.
    holidays = {
        first + timedelta(days=k)
        for first, length in draw(
            st.lists(st.tuples(st.dates(date(2025, 12, 1), date(2027, 2, 1)), st.integers(1, 20)))
        )
        for k in range(length)
    }
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    return BusinessHours(draw(st.sampled_from(ZONES)), days, quarters[opening], quarters[closing], frozenset(holidays))


moments = st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC))
deltas = st.timedeltas(timedelta(0), timedelta(hours=300))


@settings(deadline=None)
@given(calendars(), moments, deltas)
def test_between_undoes_add(hours: BusinessHours, start: datetime, delta: timedelta) -> None:
    assert business_time_between(start, add_business_time(start, delta, hours), hours) == delta


@settings(deadline=None)
@given(calendars(), moments, deltas.filter(bool))
def test_add_ends_in_working_time_or_at_a_closing(hours: BusinessHours, start: datetime, delta: timedelta) -> None:
    result = add_business_time(start, delta, hours)
    assert result > start
    assert is_working_time(result, hours) or is_working_time(result - timedelta(microseconds=1), hours)


@settings(deadline=None)
@given(calendars(), moments)
def test_zero_delta_stays_only_inside_working_time(hours: BusinessHours, start: datetime) -> None:
    result = add_business_time(start, timedelta(0), hours)
    assert is_working_time(result, hours)
    assert (result == start) == is_working_time(start, hours)
    assert business_time_between(start, result, hours) == timedelta(0)


@settings(deadline=None)
@given(calendars(), moments, deltas, deltas)
def test_add_is_monotonic(hours: BusinessHours, start: datetime, d1: timedelta, d2: timedelta) -> None:
    short, long = sorted((d1, d2))
    first, second = add_business_time(start, short, hours), add_business_time(start, long, hours)
    assert first <= second
    assert (first == second) == (short == long)


@settings(deadline=None)
@given(
    calendars(),
    moments,
    st.timedeltas(timedelta(0), timedelta(days=20)),
    st.timedeltas(timedelta(0), timedelta(days=20)),
)
def test_between_adds_up(hours: BusinessHours, a: datetime, ab: timedelta, bc: timedelta) -> None:
    b, c = a + ab, a + ab + bc
    total = business_time_between(a, c, hours)
    assert business_time_between(a, b, hours) + business_time_between(b, c, hours) == total
    assert total <= bc + ab


@settings(deadline=None)
@given(calendars(QUARTERS[6 * 4 : 22 * 4]), moments)
def test_working_time_is_the_local_calendar(hours: BusinessHours, moment: datetime) -> None:
    # With hours clear of every clock change of these zones, the local wall clock says it all.
    wall = moment.astimezone(ZoneInfo(hours.timezone))
    expected = (
        wall.weekday() in hours.days and wall.date() not in hours.holidays and hours.start <= wall.time() < hours.end
    )
    assert is_working_time(moment, hours) == expected
