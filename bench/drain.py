"""Outbox drain: mailsvc's Sender against bare aiosmtplib loops over as many connections, same mail.

Each side runs in its own process (bench/drain_client.py), as the daemon's
sender does, so neither shares an interpreter with the SMTP capture.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from bench.env import Bench, run_measured
from mailsvc.store import Store

MAIL_FROM = "help@example.org"
RCPT = "requester@example.net"
REPEATS = 2  # alternating, best of each: a noisy second must not decide the ratio


def ack_template() -> bytes:
    """An acknowledgement as mailsvc renders one (~1.5 KB): text and HTML, its headers."""
    mail = EmailMessage()
    mail["From"] = f"Example Help Desk <{MAIL_FROM}>"
    mail["To"] = f"Requester <{RCPT}>"
    mail["Subject"] = "Re: The printer on floor 3 is jammed [Help #4242]"
    mail["Date"] = format_datetime(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    mail["Message-ID"] = "<MSGID>"
    mail["In-Reply-To"] = "<CA+request@mail.gmail.com>"
    mail["References"] = "<CA+request@mail.gmail.com>"
    mail["Auto-Submitted"] = "auto-replied"
    mail["X-Auto-Response-Suppress"] = "All"
    mail["X-Loop"] = MAIL_FROM
    text = (
        "Hello Requester,\n\nthank you for writing to us. Your request is now case [Help #4242]:\n\n"
        "    The printer on floor 3 is jammed\n\nSomeone from our team will answer you soon. To add anything, "
        "reply to this\nmail and keep [Help #4242] in the subject.\n\n--\nExample Help Desk\n"
    )
    mail.set_content(text)
    mail.add_alternative(f"<html><body><pre>{text}</pre></body></html>\n", subtype="html")
    return mail.as_bytes(policy=SMTP)


def _fill_outbox(store: Store, count: int, template: bytes) -> None:
    rows = []
    for i in range(count):
        mid = f"<drain.{i}.bench@example.org>"
        rows.append((mid, MAIL_FROM, RCPT, template.replace(b"<MSGID>", mid.encode()), time.time()))
    with store.transaction():
        store.db.execute("DELETE FROM outbox")
        store.db.executemany(
            "INSERT INTO outbox (purpose, message_id, mail_from, rcpt_to, raw, state, created_at, next_attempt_at) "
            "VALUES ('ack', ?, ?, ?, ?, 'queued', ?, 0)",
            rows,
        )


def run_drain(bench: Bench, count: int) -> dict[str, Any]:
    folder = bench.phase_dir("drain")
    template = ack_template()
    config = bench.config(folder, bench.mailbox("drain"), folder / "mailsvc.db")
    store = Store.open(folder / "mailsvc.db")
    times: dict[str, list[float]] = {"bare": [], "mailsvc": []}
    problems: list[str] = []
    bench.recorder.enabled = False  # the drain keeps no acks: the capture counts its mail
    try:
        for rep in range(REPEATS):
            _fill_outbox(store, count, template)
            for mode in ("bare", "mailsvc"):  # bare only reads the queue; mailsvc then sends it
                bench.smtp.clear()
                result = folder / f"{mode}-{rep}.json"
                cmd = [sys.executable, "-m", "bench.drain_client", mode, str(config), str(result)]
                done = run_measured(cmd, folder / f"{mode}.log")
                if done.returncode != 0:
                    raise RuntimeError(f"drain client {mode} failed:\n{(folder / f'{mode}.log').read_text()[-3000:]}")
                figures = json.loads(result.read_text())
                times[mode].append(figures["elapsed_s"])
                got = len(bench.smtp.messages)
                if figures["sent"] != count or got != count:
                    problems.append(f"{mode}: reported {figures['sent']}, capture got {got} of {count}")
    finally:
        bench.recorder.enabled = True
        store.close()
    best_bare, best_mailsvc = min(times["bare"]), min(times["mailsvc"])
    return {
        "drain_messages": count,
        "drain_msgs_per_s": count / best_mailsvc,
        "drain_baseline_msgs_per_s": count / best_bare,
        "drain_ratio": best_bare / best_mailsvc,
        "drain_s": times["mailsvc"],
        "drain_baseline_s": times["bare"],
        "drain_message_bytes": len(template),
        "drain_store_synchronous": "NORMAL (as mailsvc run's sender)",
        "drain_problems": problems,
    }
