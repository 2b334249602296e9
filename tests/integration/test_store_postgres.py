"""What only the PostgreSQL store does, on the session's private cluster: claims shared by several
instances, NOTIFY at commit, its own migrations, a lost connection as a transient fault, the mailbox lease."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailsvc.config import parse_config
from mailsvc.config_servers import StoreConfig
from mailsvc.doctor import CheckFailed, check_pg_store
from mailsvc.errors import StoreError, StoreUnavailable
from mailsvc.instances import PgMailboxLease
from mailsvc.model import (
    Decision,
    EndTimer,
    FileMessage,
    MailRef,
    MessageKind,
    OpenCase,
    QueueMail,
    SetTimer,
    TimerKind,
    TimerState,
)
from mailsvc.store.postgres import (
    OUTBOX_CHANNEL,
    TIMERS_CHANNEL,
    PostgresStore,
    latest_pg_version,
    migrate_pg,
    pg_schema_version,
)
from mailsvc.testing.postgres import PrivatePostgres
from tests.integration.stores import new_store_url
from tests.integration.test_store_contract import ALICE, REF, compose, open_case
from tests.unit.factories import T0, message

LEASE = 30.0


@pytest.fixture
def url(request: pytest.FixtureRequest) -> str:
    return new_store_url(request)


@pytest.fixture
def two(url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two instances' stores on one database."""
    a = PostgresStore.connect(url, lease=LEASE)
    b = PostgresStore.connect(url, lease=LEASE)
    yield a, b
    a.close()
    b.close()


def built_mail(store: PostgresStore, n: int) -> list[int]:
    ids = []
    for i in range(n):
        msg = message(message_id=f"<m{i}@example.net>", content_hash=f"h{i}")
        open_case(store, msg, MailRef("INBOX", 7, i + 1), QueueMail("ack", "ack", (ALICE,)))
    with store.transaction():
        for draft in store.pending_drafts():
            store.store_built(draft.outbox_id, b"built")
            ids.append(draft.outbox_id)
    return ids


def test_due_mail_is_claimed_by_one_instance_until_its_lease_ends(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    ids = built_mail(a, 4)
    now = T0.timestamp()
    first = [m.id for m in a.due_mail(now, limit=2)]
    second = [m.id for m in b.due_mail(now, limit=10)]
    assert first == ids[:2] and second == ids[2:], "each row to one instance"
    assert a.due_mail(now) == [] and b.due_mail(now) == []
    assert a.next_due_at() == now + LEASE
    with a.transaction():
        a.mark_sent(first[0], now)
    # The instance holding the rest died: after the lease another takes them over; sent mail never comes back.
    later = now + LEASE + 1
    assert sorted(m.id for m in b.due_mail(later)) == [first[1], *second]


def test_a_retried_mail_is_free_for_any_instance_when_due_again(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    (mail_id,) = built_mail(a, 1)
    now = T0.timestamp()
    (mail,) = a.due_mail(now)
    with a.transaction():
        a.mark_retry(mail.id, "451 later", now + 5)
    assert b.due_mail(now + 4) == []
    assert [m.id for m in b.due_mail(now + 5)] == [mail_id]


def test_due_timers_are_claimed_by_case(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    due = T0 + timedelta(hours=1)
    cases = [
        open_case(a, message(message_id=f"<t{i}@x>", content_hash=f"t{i}"), MailRef("INBOX", 7, i + 1),
                  SetTimer(TimerKind.REMINDER, due), SetTimer(TimerKind.SLA_1, due))
        for i in range(2)
    ]  # fmt: skip
    now = due + timedelta(minutes=1)
    mine = a.due_timers(now, limit=1)
    theirs = b.due_timers(now)
    assert len(mine) == 1 and len(theirs) == 1 and set(mine) | set(theirs) == set(cases)
    assert all(len(timers) == 2 for timers in [*mine.values(), *theirs.values()]), "a case's timers go together"
    assert a.due_timers(now) == {} and b.due_timers(now) == {}
    ((case_id, timers),) = mine.items()
    with a.transaction():
        a.apply_timers(Decision(case_id, "help", tuple(EndTimer(t, TimerState.FIRED) for t in timers)), message(),
                       compose, now)  # fmt: skip
    assert list(b.due_timers(now + timedelta(seconds=LEASE + 1))) == list(theirs), "taken over, not the fired ones"


def test_new_mail_and_timers_are_announced_at_commit_only(url: str) -> None:
    store = PostgresStore.connect(url, lease=LEASE)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
        listener.execute(f"LISTEN {TIMERS_CHANNEL}")
        actions = (OpenCase("help", "s", ALICE), FileMessage(MessageKind.REQUEST), QueueMail("ack", "ack", (ALICE,)),
                   SetTimer(TimerKind.SLA_1, T0))  # fmt: skip
        with store.transaction():
            store.apply(Decision(None, "help", actions), message(), REF, compose, T0)
            assert list(listener.notifies(timeout=0.2, stop_after=1)) == [], "nothing before the commit"
        channels = {n.channel for n in listener.notifies(timeout=5, stop_after=2)}
        assert channels == {OUTBOX_CHANNEL, TIMERS_CHANNEL}
    store.close()


def test_migrations_run_once_and_a_newer_schema_is_refused(url: str) -> None:
    assert pg_schema_version(url) == 0
    PostgresStore.connect(url).close()
    assert pg_schema_version(url) == latest_pg_version()
    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate_pg(conn) == []
        conn.execute("INSERT INTO mailsvc_schema (version) VALUES (%s)", (latest_pg_version() + 1,))
        with pytest.raises(StoreError, match="newer than this mailsvc knows"):
            migrate_pg(conn)


def test_a_lost_connection_is_a_transient_fault_and_the_next_call_reconnects(
    url: str, postgres: PrivatePostgres
) -> None:
    store = PostgresStore.connect(url)
    open_case(store, message())
    pid = store.db.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreUnavailable):
        store.counts()
    assert store.counts()["cases"] == 1, "a fresh connection from the pool"
    store.close()


def test_an_unreachable_database_is_unavailable_not_a_crash(postgres: PrivatePostgres) -> None:
    with pytest.raises(StoreUnavailable):
        PostgresStore.connect(f"postgresql://postgres@127.0.0.1:{postgres.port}/no_such_database")


def test_one_holder_of_a_mailbox_lease_and_a_standby_takes_over(url: str) -> None:
    config = StoreConfig(url=url, failover=4)
    stop = threading.Event()
    first = PgMailboxLease(config, "INBOX", stop)
    second = PgMailboxLease(config, "INBOX", stop)
    other = PgMailboxLease(config, "Other", stop)
    assert first.acquire(stop) and other.acquire(stop)
    got: list[bool] = []
    standby = threading.Thread(target=lambda: got.append(second.acquire(stop)))
    standby.start()
    standby.join(timeout=2.5)
    assert standby.is_alive() and got == [], "the standby waits while the holder lives"
    first.release()  # the holder's session ends (as when its process dies)
    standby.join(timeout=10)
    assert got == [True]
    assert not second.lost.is_set()
    stop.set()
    for lease in (second, other):
        lease.release()
        assert lease.lost.is_set()


@pytest.mark.parametrize("failover", [2.0, 2.9, 3.0, 4.0, 30.0, 120.0])
def test_the_server_drops_a_silent_lock_holder_within_failover(url: str, failover: float) -> None:
    """A holder cut off in silence (no FIN, no RST) keeps its session, and so the lock, until the server's TCP
    gives up on it: by default after two hours. The lock connection tells the server, and its own end, to give
    up within store.failover: keepalives while the connection is idle, tcp_user_timeout while a probe waits."""
    stop = threading.Event()
    lease = PgMailboxLease(StoreConfig(url=url, failover=failover), "INBOX", stop)
    assert lease.acquire(stop)
    try:
        conn = lease._conn  # the settings live on the lock's own session
        assert conn is not None
        names = ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout")
        rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(names)])
        server = {name: int(setting) for name, setting in rows}
        client = dict(part.split("=", 1) for part in conn.info.dsn.split())
    finally:
        stop.set()
        lease.release()
    ends = {
        "server": [server[name] for name in names],
        "client": [int(client.get(name, 0)) for name in ("keepalives_idle", "keepalives_interval", "keepalives_count",
                                                  "tcp_user_timeout")],
    }  # fmt: skip
    for end, (idle, interval, count, user_timeout_ms) in ends.items():
        assert idle > 0 and interval > 0 and count > 0 and user_timeout_ms > 0, (end, ends)
        assert idle + interval * count <= failover, (end, ends)
        assert user_timeout_ms <= failover * 1000, (end, ends)


def test_a_requeued_mail_is_due_at_once_whoever_claimed_it(two: tuple[PostgresStore, PostgresStore]) -> None:
    a, b = two
    (mail_id,) = built_mail(a, 1)
    now = T0.timestamp()
    a.due_mail(now)
    with a.transaction():
        a.mark_failed(mail_id, "550 no such user")
    with b.transaction():
        assert b.requeue([mail_id], now + 1) == [mail_id]
    assert [m.id for m in b.due_mail(now + 1)] == [mail_id]


def test_doctor_reads_the_schema_version_and_changes_nothing(url: str, tmp_path: Path) -> None:
    raw = {
        "imap": {"host": "127.0.0.1", "tls": "none", "user": "help", "password": "secret"},
        "smtp": {"host": "127.0.0.1", "tls": "none", "port": 2525},
        "queues": {"help": {"address": "help@example.org"}},
        "store": {"url": url},
    }
    config = parse_config(raw, tmp_path)
    assert (
        check_pg_store(config) == f"{url} answers; schema version 0, brought to {latest_pg_version()} at the next start"
    )
    assert pg_schema_version(url) == 0
    PostgresStore.connect(url).close()
    assert check_pg_store(config) == f"{url} answers; schema version {latest_pg_version()} is current"
    raw["store"] = {"url": url.rsplit("/", 1)[0] + "/no_such_database"}
    with pytest.raises(CheckFailed, match="no_such_database"):
        check_pg_store(parse_config(raw, tmp_path))


class _Recording:
    """The store's connection, noting each query it is given."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.queries: list[tuple[str, Any]] = []

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        self.queries.append((sql, parameters))
        return self.db.execute(sql, parameters)


def test_the_junk_mover_reads_its_pending_rows_by_index_not_every_message(url: str) -> None:
    store = PostgresStore.connect(url, lease=LEASE)
    try:
        store.db.execute(
            "INSERT INTO messages (state, mailbox, uidvalidity, uid, content_hash, dedupe_key, received_at, raw) "
            "SELECT 'filed', 'INBOX', 1, n, 'h' || n, 'k' || n, n, convert_to(repeat('x', 1500), 'UTF8') "
            "FROM generate_series(1, 20000) AS n"
        )
        store.db.execute("UPDATE messages SET junk_move = 'pending' WHERE uid % 5000 = 0")
        store.db.execute("ANALYZE messages")
        recording = _Recording(store.db)
        store.db = recording  # type: ignore[assignment]
        assert [row for row, _ in store.pending_junk_moves("INBOX")] == [5000, 10000, 15000, 20000]
        [(sql, parameters)] = recording.queries
        plan = "\n".join(row[0] for row in recording.db.execute("EXPLAIN " + sql, parameters))
    finally:
        store.close()
    assert "messages_junk_pending" in plan and "Seq Scan" not in plan, plan
