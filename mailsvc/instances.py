"""Several instances on one PostgreSQL store: who watches which mailbox, and waking each other.

Each mailbox is watched by one instance at a time: the holder of a PostgreSQL advisory lock, held on a
connection of its own (never a pooled one) for as long as the watcher runs. The server frees the lock
when the holder's session ends (process killed, connection lost: keepalives find that out within
`store.failover` seconds); a standby instance tries again each second and takes over. A holder waits on
its lock connection's socket, so a session the server ends (pg_terminate_backend, a restart) is seen the
moment the server says so, and probes it as often as the server does, for a connection lost in silence;
either way its IDLE ends at once (the lease's `lost` is an Alarm the watcher's IDLE waits on), and it lets the
standbys try first before it asks for the lock again. An instance that holds k locks waits k tries more
before it asks for another, so the folders of several queues are shared out among the instances.

New outgoing mail and timers are announced with NOTIFY by the transaction that writes them; `listen`
turns those into the same wake-ups the instance's own components give each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg

from mailsvc.alarm import Alarm
from mailsvc.config_servers import StoreConfig
from mailsvc.log import get_logger
from mailsvc.store.postgres import OUTBOX_CHANNEL, TIMERS_CHANNEL

log = get_logger(component="instances")


class MailboxLease(Protocol):
    """The right to watch one mailbox."""

    def acquire(self, stop: threading.Event) -> bool:
        """Block until held (True) or `stop` is set (False)."""
        ...

    @property
    def lost(self) -> threading.Event:
        """Set when the lease is gone (or `stop` was set): the watcher must stop at once."""
        ...

    def release(self) -> None: ...


class SoleLease:
    """SQLite: one process serves the store, so it holds every mailbox."""

    def __init__(self, stop: threading.Event) -> None:
        self._lost = stop

    def acquire(self, stop: threading.Event) -> bool:
        return not stop.is_set()

    @property
    def lost(self) -> threading.Event:
        return self._lost

    def release(self) -> None:
        return None


def silent_peer_limits(failover: float) -> tuple[int, int, int, int]:
    """TCP keepalive idle, interval and count (seconds) and the user timeout (ms) that give up a peer cut off
    in silence within `failover`: keepalives while the connection is idle, tcp_user_timeout while data sent
    to it waits for an answer (a probe in flight). Keepalives count whole seconds, hence failover >= 2."""
    every = max(1, int(failover / 4))
    count = 2 if every * 3 <= failover else 1
    return every, every, count, min(every * 3000, int(failover * 1000))


def _connect(config: StoreConfig) -> psycopg.Connection[Any]:
    """A connection of its own; both ends are told to give up a silent peer in time, so a dead holder's lock
    is freed and the holder itself sees it lost within store.failover."""
    assert config.url is not None
    idle, interval, count, user_timeout = silent_peer_limits(config.failover)
    every = idle  # failover / 4 in whole seconds: the probe period also bounds connecting and each statement
    conn = psycopg.connect(
        config.url, password=config.secret() or None, autocommit=True, connect_timeout=max(2, every),
        keepalives=1, keepalives_idle=idle, keepalives_interval=interval, keepalives_count=count,
        tcp_user_timeout=user_timeout, application_name="mailsvc",
    )  # fmt: skip
    conn.execute(f"SET tcp_keepalives_idle = {idle}")
    conn.execute(f"SET tcp_keepalives_interval = {interval}")
    conn.execute(f"SET tcp_keepalives_count = {count}")
    conn.execute(f"SET tcp_user_timeout = {user_timeout}")
    conn.execute(f"SET statement_timeout = {every * 1000}")
    return conn


class _Holdings:
    """How many mailbox locks this process holds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0


HOLDINGS = _Holdings()


class PgMailboxLease:
    """A session advisory lock named after the mailbox key, on a dedicated connection."""

    RETRY = 1.0  # seconds between a standby's tries

    def __init__(self, config: StoreConfig, key: str, stop: threading.Event) -> None:
        self.config = config
        self.key = key
        self.stop = stop
        self._lost = Alarm()
        self._conn: psycopg.Connection[Any] | None = None
        self._keeper: threading.Thread | None = None
        self._counted = False  # in HOLDINGS

    @property
    def lost(self) -> threading.Event:
        return self._lost

    def acquire(self, stop: threading.Event) -> bool:
        if self._keeper is not None and self._keeper.is_alive() and not self._lost.is_set():
            return True  # held already (the watcher reconnects to IMAP, not to the lock)
        lost = self._keeper is not None
        self.release()
        if lost:
            # The server ended this instance's session (or the connection failed): the standbys, which try
            # each second, get the first chance; this instance tries again after them.
            stop.wait(2 * self.RETRY)
        waiting_logged = False
        while not stop.is_set():
            held = HOLDINGS.count
            # An instance that watches k mailboxes already waits k tries more, so that a free mailbox goes
            # to an instance that watches fewer: instances started together share the folders out.
            if held and stop.wait(min(self.RETRY * held, self.config.failover / 4)):
                break
            with HOLDINGS.lock:
                if HOLDINGS.count > held:
                    continue  # one of this instance's watchers took a mailbox meanwhile: wait the longer turn
                if self._try_lock():
                    HOLDINGS.count += 1
                    self._counted = True
                    log.info("mailbox_lock_acquired", folder=self.key, held=HOLDINGS.count)
                    self._lost.clear()
                    self._keeper = threading.Thread(target=self._keep, name=f"lease {self.key}", daemon=True)
                    self._keeper.start()
                    return True
            if not waiting_logged:
                log.info("mailbox_watched_elsewhere", folder=self.key)
                waiting_logged = True
            stop.wait(self.RETRY)
        return False

    def _try_lock(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = _connect(self.config)
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", ("mailsvc mailbox " + self.key,)
            ).fetchone()
            return bool(row and row[0])
        except psycopg.Error as exc:
            log.warning("mailbox_lock_unavailable", folder=self.key, error=f"{type(exc).__name__}: {exc}")
            self._close()
            return False

    def _keep(self) -> None:
        """Watch the lock's connection until it fails or the watcher stops; then the lease is lost.

        Anything the server sends on this idle connection (the error that ends a terminated session, the end
        of the stream) wakes the keeper at once; between those it probes the connection every `failover / 4`
        seconds, and looks at `stop` every second."""
        every = max(1.0, self.config.failover / 4)
        conn = self._conn
        probe_at = 0.0
        while not self.stop.is_set() and not self._lost.is_set():
            try:
                assert conn is not None
                now = time.monotonic()
                if now >= probe_at:
                    conn.execute("SELECT 1")
                    probe_at = now + every
                if self._lost.wait_beside(conn.fileno(), min(1.0, every)):
                    conn.execute("SELECT 1")  # reads what the server sent: an error if it ended the session
            except (psycopg.Error, AssertionError) as exc:
                log.warning("mailbox_lock_lost", folder=self.key, error=f"{type(exc).__name__}: {exc}")
                break
        self._lost.set()

    def release(self) -> None:
        self._lost.set()
        if self._counted:
            with HOLDINGS.lock:
                HOLDINGS.count -= 1
            self._counted = False
        if self._keeper is not None:
            self._keeper.join(timeout=5)
            self._keeper = None
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()  # ends the session: the server frees the lock
            except psycopg.Error as exc:
                log.debug("mailbox_lock_close_failed", folder=self.key, error=str(exc))


def lease_for(config: StoreConfig, key: str, stop: threading.Event) -> MailboxLease:
    if config.url is None:
        return SoleLease(stop)
    return PgMailboxLease(config, key, stop)


def listen(
    config: StoreConfig, stop: threading.Event, on_outbox: Callable[[], None], on_timers: Callable[[], None]
) -> None:
    """Until `stop`: LISTEN for other instances' new mail and timers, on a connection of its own.

    After a lost connection it reconnects and wakes both (what was announced meanwhile is not lost, only
    the announcement)."""
    while not stop.is_set():
        try:
            with _connect(config) as conn:
                conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                conn.execute(f"LISTEN {TIMERS_CHANNEL}")
                log.info("store_listening", channels=[OUTBOX_CHANNEL, TIMERS_CHANNEL])
                on_outbox()
                on_timers()
                while not stop.is_set():
                    for note in conn.notifies(timeout=1.0, stop_after=1):
                        (on_outbox if note.channel == OUTBOX_CHANNEL else on_timers)()
        except psycopg.Error as exc:
            log.warning("store_listen_failed", error=f"{type(exc).__name__}: {exc}")
            stop.wait(PgMailboxLease.RETRY)
