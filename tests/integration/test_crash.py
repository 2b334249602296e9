"""Crash safety: the daemon is killed with SIGKILL at random moments while mail keeps arriving, and started
again each time. In the end every message is stored once, has one case and one ack, and every ack went out;
an ack sent twice is possible only where a kill fell between the SMTP server's 250 and the store's update."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mailsvc import crashpoint
from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import mail, read_rows, write_sandbox_config
from mailsvc.testing.smtp_capture import SmtpCapture

Start = Callable[..., subprocess.Popen[bytes]]
MESSAGES = 40
KILLS = 5
# Another seed explores other kill points: MAILSVC_CRASH_SEED=7 pytest -s tests/integration/test_crash.py
SEED = int(os.environ.get("MAILSVC_CRASH_SEED", "1729"))


@pytest.fixture(scope="module")
def dovecot() -> Iterator[PrivateDovecot]:
    with PrivateDovecot.in_temp_dir() as server:
        yield server


def events(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a daemon's log; a kill may cut the last one short."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def logged(log: Path, name: str) -> bool:
    return any(e["event"] == name for e in events(log))


@pytest.fixture
def start() -> Iterator[Start]:
    """Start `mailsvc run -c config` logging to a file; whatever a failed test leaves running is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def run(config: Path, log: Path, crash_at: str | None = None) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k != crashpoint.ENV}
        if crash_at is not None:
            env[crashpoint.ENV] = crash_at
        with log.open("wb") as out:
            command = [sys.executable, "-m", "mailsvc", "run", "-c", str(config)]
            started.append(subprocess.Popen(command, stdout=out, stderr=out, env=env))
        return started[-1]

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"daemon exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} in {timeout}s:\n{log.read_text()[-4000:]}"
        time.sleep(0.05)


SENTINEL = "<sentinel@example.net>"
SENTINEL_FROM = "last@example.net"


def send_sentinel(mailbox: Mailbox, smtp: SmtpCapture, db: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Mail one more request and wait for its ack: the daemon files and sends in order, so once it is in,
    every ack owed for earlier mail has gone out, and a wrong second one would have too."""
    mailbox.append(mail(subject="Last one", sender=f"Last <{SENTINEL_FROM}>", message_id=SENTINEL))

    def answered() -> bool:
        return any(c.rcpt_tos == (SENTINEL_FROM,) for c in smtp.messages)

    wait_for("the sentinel's ack", answered, 30, proc, log)


def test_kill_9_at_random_points_loses_nothing_and_answers_once(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, start: Start
) -> None:
    rng = random.Random(SEED)
    db = tmp_path / "mailsvc.db"
    config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, db, imap={"fetch_batch": 3})
    requests = {
        f"<crash-{n}@example.net>": mail(
            subject=f"Request {n}: the badge reader at door {n} stays red",
            sender=f"Person {n} <person{n}@site{n % 7}.example.net>",
            message_id=f"<crash-{n}@example.net>",
        )
        for n in range(MESSAGES)
    }
    gaps = [rng.uniform(0.05, 0.25) for _ in requests]
    appended: list[str] = []
    failures: list[BaseException] = []

    def deliver() -> None:
        try:
            for (message_id, raw), gap in zip(requests.items(), gaps, strict=True):
                mailbox.append(raw)
                appended.append(message_id)
                time.sleep(gap)
        except BaseException as exc:
            failures.append(exc)

    started = time.monotonic()
    sender = threading.Thread(target=deliver, name="deliver", daemon=True)
    sender.start()

    kill_points = []
    for k in range(KILLS):
        log = tmp_path / f"daemon-{k}.log"
        proc = start(config, log)
        wait_for("imap_connected", partial(logged, log, "imap_connected"), 15, proc, log)
        time.sleep(rng.uniform(0.0, 0.8))
        assert proc.poll() is None, f"daemon {k} exited on its own:\n{log.read_text()}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        seen = events(log)
        kill_points.append(f"{seen[-1]['event']} ({len(appended)} appended)" if seen else "start-up")

    sender.join(30)
    assert not sender.is_alive() and not failures, failures
    log = tmp_path / "daemon-final.log"
    proc = start(config, log)

    def done() -> bool:
        sent = read_rows(db, "SELECT count(*) FROM outbox WHERE state = 'sent'")[0][0] if db.exists() else 0
        return bool(sent >= MESSAGES and mailbox.uids("INBOX") == [])

    # Up first: a SIGTERM before the daemon sets its handlers would end it the default way.
    wait_for("imap_connected", partial(logged, log, "imap_connected"), 15, proc, log)
    wait_for("every ack sent and INBOX empty", done, 30, proc, log)
    send_sentinel(mailbox, smtp, db, proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    elapsed = time.monotonic() - started

    stored = read_rows(db, f"SELECT message_id, state, case_id FROM messages WHERE message_id != '{SENTINEL}'")
    per_message = Counter(m for m, _, _ in stored)
    assert sorted(per_message) == sorted(requests) and set(per_message.values()) == {1}, per_message
    assert {state for _, state, _ in stored} == {"filed"}
    cases = read_rows(
        db,
        "SELECT c.id, c.requester, m.message_id FROM cases c JOIN messages m ON m.case_id = c.id"
        f" WHERE m.message_id != '{SENTINEL}'",
    )
    assert len(cases) == len({case_id for case_id, _, _ in cases}) == MESSAGES
    assert read_rows(db, "SELECT count(*) FROM cases") == [(MESSAGES + 1,)]
    for _, requester, message_id in cases:
        n = message_id.removeprefix("<crash-").removesuffix("@example.net>")
        assert requester == f"person{n}@site{int(n) % 7}.example.net"

    outbox = read_rows(
        db,
        f"SELECT case_id, purpose, state, message_id FROM outbox WHERE rcpt_to != '{SENTINEL_FROM}' ORDER BY case_id",
    )
    assert [case_id for case_id, *_ in outbox] == sorted(case_id for case_id, _, _ in cases), "one ack per case"
    assert {(purpose, state) for _, purpose, state, _ in outbox} == {("ack", "sent")}

    received = Counter(c.message["Message-ID"] for c in smtp.messages if c.rcpt_tos != (SENTINEL_FROM,))
    acks = {message_id for *_, message_id in outbox}
    assert acks <= set(received), f"never received: {acks - set(received)}"
    assert set(received) <= acks, f"received but not in the outbox: {set(received) - acks}"
    duplicates = sum(n - 1 for n in received.values())
    print(f"\nseed {SEED}: {MESSAGES} messages, {KILLS} kills in {elapsed:.1f}s")
    print(f"killed after: {'; '.join(kill_points)}")
    print(f"acks received twice or more: {duplicates} {[m for m, n in received.items() if n > 1]}")
    assert duplicates <= KILLS

    assert mailbox.uids("INBOX") == [] and mailbox.uids("Quarantine") == []
    assert len(mailbox.uids("Processed")) == MESSAGES + 1


# --- kills at named points (mailsvc.crashpoint), each with the outcome it must leave ---------------------

POINT_MAIL = 3


def crash_at(point: str, start: Start, config: Path, log: Path) -> None:
    """Run the daemon until it kills itself at `point`; the log says it got there."""
    proc = start(config, log, crash_at=point)
    assert proc.wait(30) == -signal.SIGKILL, f"daemon did not die at {point}:\n{log.read_text()[-4000:]}"
    assert [e["point"] for e in events(log) if e["event"] == "crash_point_reached"] == [point]


def restart_until_done(start: Start, config: Path, log: Path, mailbox: Mailbox, smtp: SmtpCapture, db: Path) -> None:
    """Start again without a crash point; once the sentinel is answered, everything before it is done."""
    proc = start(config, log)
    wait_for("imap_connected", partial(logged, log, "imap_connected"), 15, proc, log)
    send_sentinel(mailbox, smtp, db, proc, log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def point_requests(mailbox: Mailbox) -> list[str]:
    ids = [f"<point-{n}@example.net>" for n in range(POINT_MAIL)]
    for n, message_id in enumerate(ids):
        mailbox.append(mail(subject=f"Request {n}", sender=f"Person {n} <p{n}@example.net>", message_id=message_id))
    return ids


def assert_each_filed_and_acked_once(
    db: Path, smtp: SmtpCapture, ids: list[str], mailbox: Mailbox, quarantined: int = 0
) -> None:
    query = f"SELECT message_id, state FROM messages WHERE message_id != '{SENTINEL}' AND state = 'filed' ORDER BY id"
    assert read_rows(db, query) == [(message_id, "filed") for message_id in ids]
    assert read_rows(db, "SELECT count(*) FROM messages WHERE state = 'quarantined'") == [(quarantined,)]
    acks = read_rows(db, f"SELECT message_id, state FROM outbox WHERE purpose = 'ack' AND rcpt_to != '{SENTINEL_FROM}'")
    assert [state for _, state in acks] == ["sent"] * len(ids)
    received = Counter(c.message["Message-ID"] for c in smtp.messages)
    assert {message_id: received[message_id] for message_id, _ in acks} == {m: 1 for m, _ in acks}
    assert mailbox.uids("INBOX") == [] and len(mailbox.uids("Processed")) == len(ids) + 1


def test_kill_after_the_ingest_commit_before_the_move(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, start: Start
) -> None:
    db = tmp_path / "mailsvc.db"
    config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, db, imap={"fetch_batch": POINT_MAIL + 1})
    ids = point_requests(mailbox)
    mailbox.append(b"Subject: no sender at all\nMessage-ID: <nobody@example.net>\n\nWho wrote this?\n")

    crash_at("ingest_committed", start, config, tmp_path / "crashed.log")
    # Committed and never moved: the store has them, the server copies are still in INBOX, nothing was sent.
    stored = read_rows(db, "SELECT message_id, state FROM messages ORDER BY id")
    assert stored == [(m, "filed") for m in ids] + [("<nobody@example.net>", "quarantined")]
    assert len(mailbox.uids("INBOX")) == POINT_MAIL + 1 and mailbox.uids("Processed") == []
    assert smtp.messages == []

    restart_until_done(start, config, tmp_path / "again.log", mailbox, smtp, db)
    # The move is finished from the store's record: filed to Processed, the quarantined one to Quarantine, once.
    query = "SELECT message_id FROM messages WHERE state = 'quarantined'"
    assert read_rows(db, query) == [("<nobody@example.net>",)]
    assert len(mailbox.uids("Quarantine")) == 1
    assert_each_filed_and_acked_once(db, smtp, ids, mailbox, quarantined=1)


def test_kill_between_two_messages_of_one_batch(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, start: Start
) -> None:
    db = tmp_path / "mailsvc.db"
    config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, db, imap={"fetch_batch": POINT_MAIL})
    ids = point_requests(mailbox)

    crash_at("ingest_between_messages", start, config, tmp_path / "crashed.log")
    # The first message was filed inside the batch's transaction, which never committed: none is stored.
    assert read_rows(db, "SELECT count(*) FROM messages") == [(0,)]
    assert len(mailbox.uids("INBOX")) == POINT_MAIL

    restart_until_done(start, config, tmp_path / "again.log", mailbox, smtp, db)
    assert_each_filed_and_acked_once(db, smtp, ids, mailbox)


def test_kill_after_the_smtp_servers_250_before_the_sent_mark(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, start: Start
) -> None:
    db = tmp_path / "mailsvc.db"
    config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, db)
    mailbox.append(mail(message_id="<accepted@example.net>"))

    crash_at("smtp_accepted", start, config, tmp_path / "crashed.log")
    (first,) = smtp.messages
    ((message_id, state),) = read_rows(db, "SELECT message_id, state FROM outbox")
    assert (first.message["Message-ID"], state) == (message_id, "queued")

    restart_until_done(start, config, tmp_path / "again.log", mailbox, smtp, db)
    # The one duplicate the design allows: sent again, with the same Message-ID, so clients show it once.
    assert [c.message["Message-ID"] for c in smtp.messages if c.rcpt_tos != (SENTINEL_FROM,)] == [message_id] * 2
    assert read_rows(db, f"SELECT state FROM outbox WHERE message_id = '{message_id}'") == [("sent",)]


def test_kill_between_firing_a_timer_and_its_commit(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, start: Start
) -> None:
    db = tmp_path / "mailsvc.db"
    help_queue = {
        "address": "help@example.org",
        "display_name": "Example Help Desk",
        "sla": {"first_response": 1, "escalate_to": ["lead@example.org"]},
    }
    config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, db, queues={"help": help_queue})
    mailbox.append(mail(message_id="<late@example.net>"))

    crash_at("timer_fired", start, config, tmp_path / "crashed.log")
    # The escalation was decided inside the timer's transaction, never committed: the timer is still pending.
    assert read_rows(db, "SELECT kind, state FROM timers") == [("sla_1", "pending")]
    assert read_rows(db, "SELECT purpose FROM outbox") == [("ack",)]

    restart_until_done(start, config, tmp_path / "again.log", mailbox, smtp, db)
    assert read_rows(db, "SELECT kind, state FROM timers WHERE case_id = 1") == [("sla_1", "fired")]
    escalations = read_rows(db, "SELECT message_id, state FROM outbox WHERE purpose = 'escalation' AND case_id = 1")
    assert [state for _, state in escalations] == ["sent"]
    assert [c.rcpt_tos for c in smtp.messages if c.message["Message-ID"] == escalations[0][0]] == [
        ("lead@example.org",)
    ]
