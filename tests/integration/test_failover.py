"""Failover between `mailsvc run` instances on one PostgreSQL store, end to end: when the instance watching
the mailbox is killed, another takes over within `store.failover` seconds and files the mail that comes
after; when the server ends the holder's lock connection, the holder stops IDLE before anyone else watches,
another instance takes over, and nothing is filed twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.stores import new_store_url
from tests.integration.test_crash import events
from tests.integration.test_instances import Instances, rows, wait_for

FAILOVER = 5.0  # store.failover of these instances: the bound the takeover is held to
INSTANCES = 3


@pytest.fixture(scope="module")
def dovecot() -> Iterator[PrivateDovecot]:
    """This module's own server, showing which session is in IDLE."""
    with PrivateDovecot.in_temp_dir(trace=True) as server:
        yield server


@pytest.fixture
def group(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, request: pytest.FixtureRequest) -> Iterator[Instances]:
    url = new_store_url(request)
    raw = sandbox_config(imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
                         smtp_port=smtp.port, store=tmp_path / "unused.db")  # fmt: skip
    raw["store"] = {"url": url, "failover": FAILOVER}
    raw["log"] = {"format": "json", "level": "info"}
    instances = Instances(write_config(tmp_path / "mailsvc.yaml", raw), tmp_path, url)
    yield instances
    instances.cleanup()


def named(log: Path, name: str, **fields: Any) -> list[dict[str, Any]]:
    """The log's events of that name whose fields have those values."""
    return [e for e in events(log) if e["event"] == name and all(e.get(k) == v for k, v in fields.items())]


def at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def start_with_standbys(group: Instances) -> int:
    """Start the instances; return the slot of the one watching, once every other is waiting for the lock."""
    for _ in range(INSTANCES):
        group.start()

    def settled() -> bool:
        watching = [log for log in group.logs if named(log, "imap_connected")]
        waiting = [log for log in group.logs if named(log, "mailbox_watched_elsewhere")]
        return len(watching) == 1 and len(waiting) == INSTANCES - 1

    wait_for("one watcher and the others waiting", settled, 60, group)
    return next(i for i, log in enumerate(group.logs) if named(log, "imap_connected"))


def filed_by(group: Instances) -> Counter[str]:
    """How many times each message was filed, over every run of every instance."""
    return Counter(
        e["message_id"] for log in sorted(group.folder.glob("instance-*.log")) for e in named(log, "message_threaded")
    )


def deliver(mailbox: Mailbox, tag: str, count: int) -> list[str]:
    ids = [f"<{tag}-{n}@example.net>" for n in range(count)]
    mailbox.append([mail(subject=f"{tag} {n}", sender=f"P{n} <{tag}{n}@example.net>", message_id=m)
                    for n, m in enumerate(ids)])  # fmt: skip
    return ids


def all_filed(group: Instances, mailbox: Mailbox, ids: list[str]) -> bool:
    stored = {m for (m,) in rows(group.url, "SELECT message_id FROM messages WHERE state = 'filed'")}
    return set(ids) <= stored and mailbox.uids("INBOX") == []


def lock_backends(url: str) -> list[int]:
    """The server pids of the sessions holding an advisory lock outside any transaction: the mailbox locks."""
    found = rows(url, """
        SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() AND a.xact_start IS NULL
    """)  # fmt: skip
    return [pid for (pid,) in found]


def test_killed_watcher_is_replaced_within_failover_and_the_next_mail_is_filed_by_another(
    group: Instances, mailbox: Mailbox
) -> None:
    holder = start_with_standbys(group)
    before = deliver(mailbox, "before", 3)
    wait_for("the first mail filed", lambda: all_filed(group, mailbox, before), 60, group)

    killed_at = time.time()
    group.kill(holder)
    after = deliver(mailbox, "after", 5)
    others = [log for i, log in enumerate(group.logs) if i != holder]
    wait_for("another instance watching", lambda: any(named(log, "imap_connected") for log in others), 60, group)
    wait_for("the later mail filed", lambda: all_filed(group, mailbox, after), 60, group)

    heir = next(log for log in others if named(log, "imap_connected"))
    acquired = at(named(heir, "mailbox_lock_acquired")[0])
    watching = at(named(heir, "imap_connected")[0])
    taken, seen = acquired - killed_at, watching - killed_at
    print(f"\nfailover {FAILOVER}s: lock taken {taken:.2f}s, watching {seen:.2f}s after the kill")
    assert watching - killed_at <= FAILOVER, "takeover beyond store.failover"
    assert {e["message_id"] for e in named(heir, "message_threaded")} >= set(after), "filed by the heir"
    assert set(filed_by(group).values()) == {1}, "every message filed once"
    group.start(holder)
    group.stop_all()


def cut_lock(group: Instances, mailbox: Mailbox, dovecot: PrivateDovecot, holder: int) -> int:
    """End the holder's lock session on the server; return the slot of the instance that took over."""
    dovecot.wait_idling(mailbox.user)
    watchers = dovecot.sessions(mailbox.user)
    assert len(watchers) == 1
    [backend] = lock_backends(group.url)
    lost, connected = (Counter({i: len(named(log, name)) for i, log in enumerate(group.logs)})
                       for name in ("mailbox_lock_lost", "imap_connected"))  # fmt: skip
    # The mailbox's IMAP sessions, sampled while the lock changes hands; the test itself opens none meanwhile.
    samples: list[list[int]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):  # the pace of the samples: doveadm asks Dovecot's anvil each time
            samples.append(dovecot.sessions(mailbox.user))

    sampler = threading.Thread(target=sample, name="sessions", daemon=True)
    sampler.start()
    with psycopg.connect(group.url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (backend,))
    log = group.logs[holder]
    wait_for("the holder's lock lost", lambda: len(named(log, "mailbox_lock_lost")) > lost[holder], 60, group)

    def heirs() -> list[int]:
        return [
            i for i, log in enumerate(group.logs) if i != holder and len(named(log, "imap_connected")) > connected[i]
        ]

    wait_for("another instance watching", lambda: bool(heirs()), 60, group)
    dovecot.wait_idling(mailbox.user)
    sampling.set()
    sampler.join(10)
    assert watchers[0] not in dovecot.sessions(mailbox.user), "the holder's session ended"
    both = [s for s in samples if len(s) > 1]
    print(f"{len(samples)} samples of the mailbox's sessions while the lock changed hands, {len(both)} with two")
    assert not both, f"the holder still watched while another did: {both[:3]}"
    assert named(log, "mailbox_watch_stopped", reason="lock lost"), "the holder says it stopped watching"
    return heirs()[0]


def test_holder_whose_lock_connection_is_ended_stops_idle_before_another_watches(
    group: Instances, mailbox: Mailbox, dovecot: PrivateDovecot
) -> None:
    holder = start_with_standbys(group)
    delivered = deliver(mailbox, "first", 3)
    wait_for("the first mail filed", lambda: all_filed(group, mailbox, delivered), 60, group)
    print()
    for round_ in range(3):
        holder = cut_lock(group, mailbox, dovecot, holder)
        more = deliver(mailbox, f"round{round_}", 3)
        wait_for("the next mail filed", lambda ids=more: all_filed(group, mailbox, ids), 60, group)  # type: ignore[misc]
        delivered += more
    group.assert_alive()
    filed = filed_by(group)
    assert sorted(filed) == sorted(delivered) and set(filed.values()) == {1}, "every message filed once"
    group.stop_all()


def test_folders_freed_by_a_killed_instance_are_shared_out_among_the_others(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, request: pytest.FixtureRequest
) -> None:
    folders = ["Second", "Third", "Fourth"]
    for folder in folders:
        mailbox.create_folder(folder)
    url = new_store_url(request)
    raw = sandbox_config(imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
                         smtp_port=smtp.port, store=tmp_path / "unused.db")  # fmt: skip
    raw["queues"].update({f.lower(): {"address": f"{f.lower()}@example.org", "folder": f} for f in folders})
    raw["store"] = {"url": url, "failover": FAILOVER}
    raw["log"] = {"format": "json", "level": "info"}
    group = Instances(write_config(tmp_path / "mailsvc.yaml", raw), tmp_path, url)
    request.addfinalizer(group.cleanup)
    watched = len(folders) + 1

    def holding(slot: int) -> set[str]:
        return {e["folder"] for e in named(group.logs[slot], "mailbox_lock_acquired")}

    first = group.start()
    wait_for("one instance watching every folder", lambda: len(holding(first)) == watched, 60, group)
    standbys = [group.start(), group.start()]

    def standing_by() -> bool:
        return all(len({e["folder"] for e in named(group.logs[s], "mailbox_watched_elsewhere")}) == watched
                   for s in standbys)  # fmt: skip

    wait_for("the others waiting for every folder", standing_by, 60, group)
    group.kill(first)
    wait_for(
        "every folder watched again", lambda: len(holding(standbys[0]) | holding(standbys[1])) == watched, 60, group
    )
    shares = sorted(len(holding(s)) for s in standbys)
    print(f"\n{watched} folders freed: shared out as {shares}")
    assert shares == [watched // 2, watched // 2], "each instance took its share"
    group.start(first)
    group.stop_all()
