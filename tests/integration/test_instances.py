"""Several `mailsvc run` instances on one PostgreSQL store: killed at random while mail keeps arriving,
each restarted, they store every message once, open every case once, queue every acknowledgement once,
and send each at least once (twice only where a kill fell between the SMTP server's 250 and the store's
update); and never two of them watch one mailbox at the same moment."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.stores import new_store_url
from tests.integration.test_crash import events, logged

INSTANCES = 3
MESSAGES = int(os.environ.get("MAILSVC_INSTANCES_MESSAGES", "300"))
KILLS = int(os.environ.get("MAILSVC_INSTANCES_KILLS", "30"))
FAILOVER = 2  # seconds (store.failover): how long a dead instance's claims hold
SEED = int(os.environ.get("MAILSVC_CRASH_SEED", "1729"))


class Instances:
    """`mailsvc run` processes on one config, each logging to its own file; restarted by slot."""

    def __init__(self, config: Path, folder: Path, url: str) -> None:
        self.config = config
        self.url = url
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.starts = 0
        self.down: set[int] = set()  # slots killed and not started again yet

    def start(self, slot: int | None = None) -> int:
        log = self.folder / f"instance-{self.starts}.log"
        self.starts += 1
        with log.open("wb") as out:
            # Unbuffered: a killed instance's log still says what it did last.
            proc = subprocess.Popen([sys.executable, "-m", "mailsvc", "run", "-c", str(self.config)],
                                    stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        if slot is None:
            self.procs.append(proc)
            self.logs.append(log)
            return len(self.procs) - 1
        self.procs[slot], self.logs[slot] = proc, log
        self.down.discard(slot)
        return slot

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL, f"instance exited on its own:\n{self.logs[slot].read_text()[-3000:]}"
        self.down.add(slot)

    def stop_all(self) -> None:
        # A SIGTERM before the daemon sets its handlers would end it the default way.
        wait_for("every instance up", lambda: all(logged(log, "daemon_started") for log in self.logs), 30, self)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, log in zip(self.procs, self.logs, strict=True):
            assert proc.wait(20) == 0, log.read_text()[-3000:]

    def assert_alive(self) -> None:
        for slot, (proc, log) in enumerate(zip(self.procs, self.logs, strict=True)):
            assert slot in self.down or proc.poll() is None, (
                f"an instance exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            )

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def instances(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, request: pytest.FixtureRequest
) -> Iterator[Instances]:
    url = new_store_url(request)
    raw = sandbox_config(imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
                         smtp_port=smtp.port, store=tmp_path / "unused.db", imap={"fetch_batch": 5})  # fmt: skip
    raw["store"] = {"url": url, "failover": FAILOVER}
    raw["log"] = {"format": "json", "level": "info"}
    group = Instances(write_config(tmp_path / "mailsvc.yaml", raw), tmp_path, url)
    yield group
    group.cleanup()


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def wait_for(what: str, check: Callable[[], bool], timeout: float, group: Instances) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        group.assert_alive()
        assert time.monotonic() < deadline, f"no {what} in {timeout}s"
        time.sleep(0.1)


def test_three_instances_killed_at_random_lose_nothing_and_answer_once(
    instances: Instances, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    rng = random.Random(SEED)
    url = instances.url
    requests = {f"<multi-{n}@example.net>": n for n in range(MESSAGES)}
    appended: list[str] = []
    failures: list[BaseException] = []

    def deliver() -> None:
        try:
            for message_id, n in requests.items():
                mailbox.append(mail(subject=f"Request {n}", sender=f"Person {n} <person{n}@example.net>",
                                    message_id=message_id))  # fmt: skip
                appended.append(message_id)
                time.sleep(rng.uniform(0.02, 0.1))
        except BaseException as exc:
            failures.append(exc)

    started = time.monotonic()
    for _ in range(INSTANCES):
        instances.start()
    wait_for("a watcher", lambda: any(logged(log, "imap_connected") for log in instances.logs), 30, instances)
    feeder = threading.Thread(target=deliver, name="deliver", daemon=True)
    feeder.start()

    kill_points = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.2, 1.0))

        # An instance that is up (killing one still importing would test nothing); the holder among them.
        def up() -> list[int]:
            return [i for i, log in enumerate(instances.logs) if logged(log, "daemon_started")]

        wait_for("an instance up", lambda: bool(up()), 30, instances)
        slot = rng.choice(up())
        log = instances.logs[slot]
        instances.kill(slot)
        seen = events(log)
        kill_points.append(seen[-1]["event"] if seen else "start-up")
        instances.start(slot)

    feeder.join(120)
    assert not feeder.is_alive() and not failures, failures

    def done() -> bool:
        queued = rows(url, "SELECT count(*) FROM outbox WHERE state != 'sent'")[0][0]
        sent = rows(url, "SELECT count(*) FROM outbox WHERE state = 'sent'")[0][0]
        return bool(queued == 0 and sent >= MESSAGES and mailbox.uids("INBOX") == [])

    wait_for("every ack sent and INBOX empty", done, 120, instances)
    instances.stop_all()
    elapsed = time.monotonic() - started

    stored = Counter(m for (m,) in rows(url, "SELECT message_id FROM messages"))
    assert sorted(stored) == sorted(requests), "every message stored"
    assert set(stored.values()) == {1}, "... once"
    assert rows(url, "SELECT count(*), count(DISTINCT requester) FROM cases") == [(MESSAGES, MESSAGES)]
    assert rows(url, "SELECT count(*) FROM messages WHERE state != 'filed' OR case_id IS NULL") == [(0,)]
    acks = rows(url, "SELECT case_id, purpose, state, message_id FROM outbox")
    assert len(acks) == MESSAGES and len({case_id for case_id, *_ in acks}) == MESSAGES, "one ack queued per case"
    assert {(purpose, state) for _, purpose, state, _ in acks} == {("ack", "sent")}

    received = Counter(c.message["Message-ID"] for c in smtp.messages)
    queued = {message_id for *_, message_id in acks}
    assert queued == set(received), f"never received: {queued - set(received)}; unknown: {set(received) - queued}"
    duplicates = sum(n - 1 for n in received.values())
    runs = sorted(instances.folder.glob("instance-*.log"))
    takeovers = sum(1 for log in runs if logged(log, "mailbox_lock_acquired"))
    print(f"\nseed {SEED}: {INSTANCES} instances, {MESSAGES} messages, {KILLS} kills in {elapsed:.1f}s")
    print(
        f"stored {sum(stored.values())}, cases {MESSAGES}, acks queued {len(acks)}, received {sum(received.values())}"
    )
    print(f"acks received twice or more: {duplicates} (kills {KILLS})")
    print(f"runs that held the mailbox: {takeovers} of {len(runs)}")
    print(f"killed after: {Counter(kill_points).most_common(6)}")
    assert duplicates <= KILLS
    assert mailbox.uids("Quarantine") == [] and len(mailbox.uids("Processed")) == MESSAGES


def test_two_instances_never_watch_one_mailbox_at_the_same_moment(
    instances: Instances, mailbox: Mailbox, dovecot: PrivateDovecot
) -> None:
    rng = random.Random(SEED)
    for _ in range(INSTANCES):
        instances.start()
    samples: list[int] = []

    def watchers() -> int:
        samples.append(len(dovecot.sessions(mailbox.user)))
        return samples[-1]

    def watching() -> bool:
        return watchers() == 1 and any(logged(log, "imap_connected") for log in instances.logs)

    wait_for("a watcher", watching, 30, instances)
    takeovers: list[float] = []
    for _ in range(4):
        holder = next(i for i, log in enumerate(instances.logs) if logged(log, "imap_connected"))
        instances.kill(holder)

        def taken_over(holder: int = holder) -> bool:
            others = [log for i, log in enumerate(instances.logs) if i != holder]
            return watchers() == 1 and any(logged(log, "imap_connected") for log in others)

        # The server ends a killed holder's session, and with it the lock: a standby takes over.
        killed_at = time.monotonic()
        wait_for("another instance watching", taken_over, 60, instances)
        takeovers.append(time.monotonic() - killed_at)
        instances.start(holder)
        for _ in range(rng.randrange(5, 15)):
            watchers()
    assert max(samples) == 1, f"two watchers at once in {samples.count(2)} of {len(samples)} samples"
    print(f"\n{len(samples)} samples of the mailbox's IMAP sessions: {Counter(samples)}")
    print(f"seconds from the holder's death to another instance watching: {[round(t, 2) for t in takeovers]}")
    instances.stop_all()
