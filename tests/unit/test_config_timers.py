"""Configuration of timers, SLA, business hours, per-queue mailboxes and the automatic-mail limits."""

from datetime import date, time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailsvc.config import Config, MailboxSpec, parse_config
from mailsvc.errors import ConfigError
from mailsvc.hours import BusinessHours

BASE = Path("/etc/mailsvc")
HOW = "(use e.g. 3d, 4h, 1d 12h, 90m, or seconds)"
KEY = "0123456789abcdef"


def minimal(**queue: Any) -> dict[str, Any]:
    return {
        "imap": {"host": "127.0.0.1", "tls": "none", "user": "help", "password": "secret"},
        "smtp": {"host": "127.0.0.1", "tls": "none", "port": 2525},
        "queues": {"help": {"address": "help@example.org", **queue}},
        "store": {"path": "mailsvc.db"},
    }


def account(user: str, folder: str = "INBOX") -> dict[str, Any]:
    return {"host": "127.0.0.1", "tls": "none", "user": user, "password": "secret", "folder": folder}


def parse(raw: dict[str, Any]) -> Config:
    return parse_config(raw, BASE)


def problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, BASE)
    return err.value.problems


def sla(**fields: Any) -> dict[str, Any]:
    return {"first_response": "4h", "escalate_to": ["lead@example.org"], **fields}


# --- durations


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("3d", 3 * 86400.0),
        ("4h", 4 * 3600.0),
        ("1d 12h", 36 * 3600.0),
        ("1d12h", 36 * 3600.0),
        ("90m", 5400.0),
        ("1.5h", 5400.0),
        ("1w", 7 * 86400.0),
        (" 2D ", 2 * 86400.0),
        ("45s", 45.0),
        ("3600", 3600.0),
        (3600, 3600.0),
        (0.5, 0.5),
    ],
)
def test_durations_are_written_with_units_or_as_seconds(written: object, seconds: float) -> None:
    assert (
        parse(minimal(timers={"remind_after": written, "auto_resolve_after": "30d"})).queues["help"].timers.remind_after
        == seconds
    )


def test_timers_default_to_three_and_seven_days_and_null_turns_one_off() -> None:
    timers = parse(minimal()).queues["help"].timers
    assert (timers.remind_after, timers.auto_resolve_after, timers.close_after) == (259200.0, 604800.0, 604800.0)
    timers = parse(minimal(timers={"remind_after": None, "close_after": None})).queues["help"].timers
    assert (timers.remind_after, timers.auto_resolve_after, timers.close_after) == (None, 604800.0, None)


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("3 days", f"not a duration: '3 days' {HOW}"),
        ("soon", f"not a duration: 'soon' {HOW}"),
        ("-3d", f"not a duration: '-3d' {HOW}"),
        ("3d later", f"not a duration: '3d later' {HOW}"),
        ("", f"not a duration: '' {HOW}"),
        (True, f"not a duration: True {HOW}"),
        (False, f"not a duration: False {HOW}"),
        (0, "Input should be greater than 0"),
        ("0s", "Input should be greater than 0"),
    ],
)
def test_a_bad_duration_is_named_by_its_key_path(written: object, reason: str) -> None:
    assert problems(minimal(timers={"remind_after": written})) == [("queues.help.timers.remind_after", reason)]


def test_a_bad_sla_duration_is_named_by_its_key_path() -> None:
    raw = minimal(sla=sla(first_response="4 hours", second_level="2x"))
    assert problems(raw) == [
        ("queues.help.sla.first_response", f"not a duration: '4 hours' {HOW}"),
        ("queues.help.sla.second_level", f"not a duration: '2x' {HOW}"),
    ]


@pytest.mark.parametrize(("remind", "resolve"), [("7d", "3d"), ("3d", "3d"), ("1w", "168h")])
def test_reminder_must_come_before_auto_resolve(remind: str, resolve: str) -> None:
    raw = minimal(timers={"remind_after": remind, "auto_resolve_after": resolve})
    assert problems(raw) == [("queues.help.timers", "remind_after must be shorter than auto_resolve_after")]


def test_without_auto_resolve_any_reminder_will_do() -> None:
    timers = parse(minimal(timers={"remind_after": "30d", "auto_resolve_after": None})).queues["help"].timers
    assert (timers.remind_after, timers.auto_resolve_after) == (30 * 86400.0, None)


# --- SLA and business hours


def test_sla_needs_someone_to_escalate_to() -> None:
    assert problems(minimal(sla={"first_response": "4h"})) == [
        ("queues.help", "sla: give escalate_to, or staff to escalate to")
    ]


def test_sla_escalates_to_staff_when_no_one_else_is_named() -> None:
    raw = minimal(sla={"first_response": "4h"}, staff=[{"address": "bob@example.org"}])
    raw["trust"] = {"token_key": KEY}
    config = parse(raw).queues["help"].sla
    assert config is not None and config.first_response == 14400.0 and config.escalate_to == ()


def test_sla_escalation_addresses_are_checked() -> None:
    raw = minimal(sla=sla(second_escalate_to=["not-an-address"]))
    (path, reason), *_ = problems(raw)
    assert path == "queues.help.sla.second_escalate_to" and "not a mail address: 'not-an-address'" in reason


def test_business_hours_become_a_calendar() -> None:
    hours = {"timezone": "Europe/Berlin", "days": ["mon-thu", "fri"], "start": "08:30", "holidays": ["2026-12-24"]}
    config = parse(minimal(sla=sla(second_level="1d", business_hours=hours))).queues["help"].sla
    assert config is not None and config.business_hours is not None
    assert config.second_level == 86400.0
    assert config.business_hours.calendar() == BusinessHours(
        "Europe/Berlin", frozenset(range(5)), time(8, 30), time(17, 0), frozenset({date(2026, 12, 24)})
    )


@pytest.mark.parametrize(
    ("hours", "reason"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus' (an IANA name, e.g. 'Europe/Berlin')"),
        (
            {"timezone": "localtime"},
            "time zone 'localtime' follows the host; name the zone, e.g. 'Europe/Berlin'",
        ),
        (
            {"timezone": "Europe/Berlin", "days": ["someday"]},
            "unknown day 'someday' (use mon, tue, wed, thu, fri, sat, sun, or a range like mon-fri)",
        ),
        ({"timezone": "Europe/Berlin", "start": "17:00", "end": "09:00"}, "end 09:00 is not after start 17:00"),
        ({"timezone": "Europe/Berlin", "end": "25:00"}, "end '25:00' is not a time of day (HH:MM, 00:00 to 23:59)"),
        ({"timezone": "Europe/Berlin", "holidays": ["24.12.2026"]}, "holiday '24.12.2026' is not a date (YYYY-MM-DD)"),
    ],
)
def test_bad_business_hours_are_named_by_their_key_path(hours: dict[str, Any], reason: str) -> None:
    assert problems(minimal(sla=sla(business_hours=hours))) == [("queues.help.sla.business_hours", reason)]


def test_business_hours_need_a_time_zone() -> None:
    assert problems(minimal(sla=sla(business_hours={"days": ["mon-fri"]}))) == [
        ("queues.help.sla.business_hours.timezone", "required key is missing")
    ]


# --- where a queue's mail arrives


def test_folder_and_own_account_together_are_refused() -> None:
    assert problems(minimal(folder="Help", imap=account("help-box@example.org"))) == [
        ("queues.help", "give folder (in the main account) or imap (an account of its own), not both")
    ]


def test_a_queue_folder_that_is_the_main_folder_is_refused() -> None:
    raw = minimal()
    raw["queues"]["sales"] = {"address": "sales@example.org", "folder": "INBOX"}
    assert problems(raw) == [("(top level)", "queues.sales: its folder is already watched for imap.folder")]


def test_the_same_folder_for_two_queues_is_refused() -> None:
    raw = minimal()
    raw["queues"]["sales"] = {"address": "sales@example.org", "folder": "Sales"}
    raw["queues"]["leads"] = {"address": "leads@example.org", "folder": "Sales"}
    assert problems(raw) == [("(top level)", "queues.leads: its folder is already watched for queues.sales")]


def test_an_own_account_that_is_the_main_account_is_refused() -> None:
    raw = minimal(imap=account("help"))
    assert problems(raw) == [("(top level)", "queues.help: its folder is already watched for imap.folder")]


def test_the_same_folder_name_in_another_account_is_fine() -> None:
    raw = minimal()
    raw["queues"]["sales"] = {"address": "sales@example.org", "imap": account("sales-box@example.org")}
    raw["queues"]["leads"] = {"address": "leads@example.org", "imap": account("leads-box@example.org")}
    assert [m.key for m in parse(raw).mailboxes()] == ["INBOX", "sales:INBOX", "leads:INBOX"]


def test_mailboxes_are_the_main_folder_then_each_queue_folder_and_account() -> None:
    raw = minimal()
    raw["queues"]["billing"] = {"address": "billing@example.org", "folder": "Billing"}
    raw["queues"]["sales"] = {"address": "sales@example.org", "imap": account("sales-box@example.org", "Orders")}
    config = parse(raw)
    assert [(m.key, m.queue, m.imap.user, m.imap.folder) for m in config.mailboxes()] == [
        ("INBOX", None, "help", "INBOX"),
        ("Billing", "billing", "help", "Billing"),
        ("sales:Orders", "sales", "sales-box@example.org", "Orders"),
    ]
    main, billing, sales = config.mailboxes()
    assert main == MailboxSpec(key="INBOX", imap=config.imap, queue=None)
    assert billing.imap == config.imap.model_copy(update={"folder": "Billing"})
    assert sales.imap is config.queues["sales"].imap


def test_own_addresses_include_a_queue_account_user() -> None:
    raw = minimal(comment_address="help-comment@example.org")
    raw["queues"]["sales"] = {"address": "Sales@Example.org", "imap": account("Sales-Box@Example.org")}
    raw["our_addresses"] = ["noreply@example.org"]
    assert parse(raw).own_addresses() == frozenset(
        {
            "help@example.org",
            "help-comment@example.org",
            "sales@example.org",
            "sales-box@example.org",
            "noreply@example.org",
        }
    )


# --- automatic mail and limits


def test_automatic_mail_limit_and_message_limits_have_defaults() -> None:
    config = parse(minimal())
    assert config.auto_mail.max_per_hour == 5
    limits = config.limits
    assert (limits.max_message_bytes, limits.max_mime_depth, limits.max_parts, limits.max_headers) == (
        25 * 1024 * 1024,
        20,
        500,
        1000,
    )


def test_bad_limits_are_named_by_their_key_path() -> None:
    raw = minimal()
    raw["auto_mail"] = {"max_per_hour": 0}
    raw["limits"] = {"max_mime_depth": 500, "max_parts": 0, "max_bytes": 1}
    assert problems(raw) == [
        ("auto_mail.max_per_hour", "Input should be greater than or equal to 1"),
        ("limits.max_mime_depth", "Input should be less than or equal to 200"),
        ("limits.max_parts", "Input should be greater than or equal to 1"),
        ("limits.max_bytes", "unknown key"),
    ]


def test_business_hours_from_yaml_as_people_write_them() -> None:
    """Unquoted 9:30 and 17:00 (YAML 1.1 base-60 numbers), an unquoted date, days as one string."""
    raw = yaml.safe_load("{timezone: Europe/Berlin, days: mon-fri, start: 9:30, end: 17:00, holidays: [2026-12-24]}")
    config = parse(minimal(sla=sla(business_hours=raw))).queues["help"].sla
    assert config is not None and config.business_hours is not None
    assert config.business_hours.calendar() == BusinessHours(
        "Europe/Berlin", frozenset(range(5)), time(9, 30), time(17, 0), frozenset({date(2026, 12, 24)})
    )
