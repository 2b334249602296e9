"""`mailsvc report` as a real process over a real store file: JSON figures, the table, bad arguments."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mailsvc.store import Store
from mailsvc.testing.sandbox import sandbox_config, write_config

HOUR = 3600.0
DAY = 86400.0


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailsvc", "report", "-c", str(config), *args],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def add_case(store: Store, queue: str, status: str, created_at: float, **columns: Any) -> int:
    names = ["queue", "subject", "requester", "status", "created_at", "updated_at", *columns]
    values = [queue, "Printer jammed", "alice@example.net", status, created_at, created_at, *columns.values()]
    cur = store.db.execute(f"INSERT INTO cases ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)
    assert cur.lastrowid is not None
    return cur.lastrowid


def add_timer(store: Store, case_id: int, kind: str, state: str, at: float) -> None:
    store.db.execute(
        "INSERT INTO timers (case_id, kind, due_at, state, created_at, done_at) VALUES (?,?,?,?,?,?)",
        (case_id, kind, at, state, at - HOUR, at if state != "pending" else None),
    )


def add_mail(store: Store, case_id: int | None, state: str, created_at: float) -> None:
    store.db.execute(
        "INSERT INTO outbox (case_id, purpose, message_id, mail_from, rcpt_to, raw, state, created_at, "
        "next_attempt_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (case_id, "relay", f"<{time.monotonic_ns()}@example.org>", "help@example.org", "alice@example.net", b"x",
         state, created_at, created_at),
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A store with two queues' cases in the last 30 days, and older and merged ones that must not count."""
    now = time.time()
    t0 = now - 10 * DAY
    store = Store.open(tmp_path / "mailsvc.db")
    with store.transaction():
        # help: answered in 1h and 3h, one resolved after 1 day, one still open and unanswered.
        a = add_case(store, "help", "closed", t0, first_response_at=t0 + HOUR, resolved_at=t0 + DAY, satisfaction=5)
        b = add_case(store, "help", "waiting", t0 + HOUR, first_response_at=t0 + 4 * HOUR)
        c = add_case(store, "help", "open", t0 + 2 * HOUR)
        add_timer(store, c, "sla_1", "fired", t0 + 6 * HOUR)
        add_timer(store, c, "sla_2", "fired", t0 + 10 * HOUR)
        add_timer(store, b, "reminder", "fired", t0 + 3 * DAY)
        add_timer(store, b, "reminder", "fired", t0 + 5 * DAY)
        add_timer(store, b, "auto_resolve", "pending", t0 + 12 * DAY)
        add_timer(store, a, "sla_1", "cancelled", t0 + 4 * HOUR)
        add_mail(store, b, "failed", t0 + 2 * HOUR)
        add_mail(store, a, "sent", t0 + 2 * HOUR)
        # sales: auto-resolved after reminders, rated 2.
        d = add_case(store, "sales", "resolved", t0, first_response_at=t0 + 2 * HOUR, resolved_at=t0 + 8 * DAY,
                     satisfaction=2)  # fmt: skip
        add_timer(store, d, "sla_1", "fired", t0 + 1 * HOUR)
        add_timer(store, d, "reminder", "fired", t0 + 5 * DAY)
        add_timer(store, d, "auto_resolve", "fired", t0 + 8 * DAY)
        add_mail(store, None, "failed", t0 + 3 * HOUR)
        # Not counted by default: merged into a, and older than 30 days.
        add_case(store, "help", "closed", t0 + HOUR, merged_into=a, satisfaction=1)
        old = add_case(store, "sales", "open", now - 40 * DAY)
        add_timer(store, old, "sla_1", "fired", now - 39 * DAY)
        add_mail(store, old, "failed", now - 39 * DAY)
    store.close()
    raw = sandbox_config(imap_port=1, imap_user="help", smtp_port=1, store=tmp_path / "mailsvc.db")
    # The report reads the store only: the servers in the config are never contacted.
    raw["queues"]["sales"] = {"address": "sales@example.org"}
    raw["queues"]["hr"] = {"address": "hr@example.org"}
    return write_config(tmp_path / "mailsvc.yaml", raw)


def test_json_report_has_the_figures_per_queue_and_in_total(config: Path) -> None:
    proc = run(config, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    total, help_, sales, hr = data["total"], data["queues"]["help"], data["queues"]["sales"], data["queues"]["hr"]
    assert list(data["queues"]) == ["help", "sales", "hr"]
    assert total["cases"] == 4
    assert total["by_status"] == {"open": 1, "waiting": 1, "resolved": 1, "closed": 1}
    assert total["first_response"] == {"count": 3, "median_seconds": 2 * HOUR, "p90_seconds": pytest.approx(2.8 * HOUR),
                                       "pending": 1}  # fmt: skip
    assert help_["resolution"] == {"count": 1, "median_seconds": DAY, "p90_seconds": DAY, "pending": 2}
    assert total["resolution"]["median_seconds"] == pytest.approx(4.5 * DAY)
    assert total["sla"] == {"breached_level_1": 2, "breached_level_2": 1, "breach_rate": 0.5}
    assert (total["reminders_sent"], total["auto_resolved"]) == (3, 1)
    assert total["satisfaction"] == {"answers": 2, "average": 3.5, "share_good": 0.5,
                                     "distribution": {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}}  # fmt: skip
    assert (total["mail_failed"], help_["mail_failed"], sales["mail_failed"]) == (2, 1, 0)
    assert sales["cases"] == 1 and sales["auto_resolved"] == 1
    assert hr["cases"] == 0 and hr["first_response"]["median_seconds"] is None


def test_since_reaches_back_and_queue_limits(config: Path) -> None:
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 60 * DAY))
    proc = run(config, "--json", "--since", since, "--queue", "sales")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["since"] == f"{since}T00:00:00+00:00"
    assert data["queue"] == "sales" and data["queues"] == {}
    assert data["total"]["cases"] == 2
    assert data["total"]["sla"]["breached_level_1"] == 2
    assert data["total"]["mail_failed"] == 1


def test_table_report_shows_the_same_figures(config: Path) -> None:
    proc = run(config)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("UTC, all queues")
    assert lines[2].split() == ["help", "sales", "hr", "total"]
    rows = {label: values for label, *values in (re.split(r"\s{2,}", line.strip()) for line in lines[3:])}
    assert rows["Cases"] == ["3", "1", "0", "4"]
    assert rows["breach rate"] == ["33.3%", "100.0%", "-", "50.0%"]
    assert rows["Reminders sent"] == ["2", "1", "0", "3"]
    assert rows["Mail failed to send"] == ["1", "0", "0", "2"]
    medians = [values for label, *values in (re.split(r"\s{2,}", line.strip()) for line in lines) if label == "median"]
    assert medians == [["2h", "2h", "-", "2h"], ["1d", "8d", "-", "4d 12h"]]


def test_a_bad_since_date_exits_2(config: Path) -> None:
    proc = run(config, "--since", "2026-02-30")
    assert proc.returncode == 2
    assert "--since" in proc.stderr and "YYYY-MM-DD" in proc.stderr
    assert proc.stdout == ""


def test_an_unknown_queue_exits_2(config: Path) -> None:
    proc = run(config, "--queue", "nosuch")
    assert proc.returncode == 2
    assert "'nosuch'" in proc.stderr and "help, sales, hr" in proc.stderr
    assert proc.stdout == ""
