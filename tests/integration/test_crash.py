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

from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import mail, read_rows, write_sandbox_config
from mailsvc.testing.smtp_capture import SmtpCapture

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
def start() -> Iterator[Callable[[Path, Path], subprocess.Popen[bytes]]]:
    """Start `mailsvc run -c config` logging to a file; whatever a failed test leaves running is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def run(config: Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            command = [sys.executable, "-m", "mailsvc", "run", "-c", str(config)]
            started.append(subprocess.Popen(command, stdout=out, stderr=out))
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


def test_kill_9_at_random_points_loses_nothing_and_answers_once(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, start: Callable[[Path, Path], subprocess.Popen[bytes]]
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
    time.sleep(0.5)  # room for a wrong extra ack to show up
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    elapsed = time.monotonic() - started

    stored = read_rows(db, "SELECT message_id, state, case_id FROM messages ORDER BY id")
    per_message = Counter(m for m, _, _ in stored)
    assert sorted(per_message) == sorted(requests) and set(per_message.values()) == {1}, per_message
    assert {state for _, state, _ in stored} == {"filed"}
    cases = read_rows(db, "SELECT c.id, c.requester, m.message_id FROM cases c JOIN messages m ON m.case_id = c.id")
    assert len(cases) == len({case_id for case_id, _, _ in cases}) == MESSAGES
    assert read_rows(db, "SELECT count(*) FROM cases") == [(MESSAGES,)]
    for _, requester, message_id in cases:
        n = message_id.removeprefix("<crash-").removesuffix("@example.net>")
        assert requester == f"person{n}@site{int(n) % 7}.example.net"

    outbox = read_rows(db, "SELECT case_id, purpose, state, message_id FROM outbox ORDER BY case_id")
    assert [case_id for case_id, *_ in outbox] == sorted(case_id for case_id, _, _ in cases), "one ack per case"
    assert {(purpose, state) for _, purpose, state, _ in outbox} == {("ack", "sent")}

    received = Counter(c.message["Message-ID"] for c in smtp.messages)
    acks = {message_id for *_, message_id in outbox}
    assert acks <= set(received), f"never received: {acks - set(received)}"
    assert set(received) <= acks, f"received but not in the outbox: {set(received) - acks}"
    duplicates = sum(n - 1 for n in received.values())
    print(f"\nseed {SEED}: {MESSAGES} messages, {KILLS} kills in {elapsed:.1f}s")
    print(f"killed after: {'; '.join(kill_points)}")
    print(f"acks received twice or more: {duplicates} {[m for m, n in received.items() if n > 1]}")
    assert duplicates <= KILLS

    assert mailbox.uids("INBOX") == [] and mailbox.uids("Quarantine") == []
    assert len(mailbox.uids("Processed")) == MESSAGES
    assert elapsed < 45
