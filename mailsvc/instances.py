"""Several instances on one PostgreSQL store: who watches which mailbox, and waking each other.

Each mailbox is watched by one instance at a time: the holder of a PostgreSQL advisory lock, held on a
connection of its own (never a pooled one) for as long as the watcher runs. The server frees the lock
when the holder's session ends (process killed, connection lost: keepalives find that out within
`store.failover` seconds); a standby instance tries again each second and takes over. A holder checks
its connection as often, and stops watching (IDLE included) the moment it is gone.

New outgoing mail and timers are announced with NOTIFY by the transaction that writes them; `listen`
turns those into the same wake-ups the instance's own components give each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import psycopg

from mailsvc.config import StoreConfig
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


def _connect(config: StoreConfig) -> psycopg.Connection[Any]:
    """A connection of its own; the server is told to probe it often, so a dead holder is seen in time."""
    assert config.url is not None
    every = max(1, int(config.failover / 4))
    conn = psycopg.connect(
        config.url, password=config.secret() or None, autocommit=True, connect_timeout=max(2, every),
        keepalives=1, keepalives_idle=every, keepalives_interval=every, keepalives_count=2,
        application_name="mailsvc",
    )  # fmt: skip
    conn.execute(f"SET tcp_keepalives_idle = {every}")
    conn.execute(f"SET tcp_keepalives_interval = {every}")
    conn.execute("SET tcp_keepalives_count = 2")
    conn.execute(f"SET statement_timeout = {every * 1000}")
    return conn


class PgMailboxLease:
    """A session advisory lock named after the mailbox key, on a dedicated connection."""

    RETRY = 1.0  # seconds between a standby's tries

    def __init__(self, config: StoreConfig, key: str, stop: threading.Event) -> None:
        self.config = config
        self.key = key
        self.stop = stop
        self._lost = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._keeper: threading.Thread | None = None

    @property
    def lost(self) -> threading.Event:
        return self._lost

    def acquire(self, stop: threading.Event) -> bool:
        if self._keeper is not None and self._keeper.is_alive() and not self._lost.is_set():
            return True  # held already (the watcher reconnects to IMAP, not to the lock)
        self.release()
        waiting_logged = False
        while not stop.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = _connect(self.config)
                row = self._conn.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", ("mailsvc mailbox " + self.key,)
                ).fetchone()
                held = bool(row and row[0])
            except psycopg.Error as exc:
                log.warning("mailbox_lock_unavailable", folder=self.key, error=f"{type(exc).__name__}: {exc}")
                self._close()
                held = False
            if held:
                log.info("mailbox_lock_acquired", folder=self.key)
                self._lost.clear()
                self._keeper = threading.Thread(target=self._keep, name=f"lease {self.key}", daemon=True)
                self._keeper.start()
                return True
            if not waiting_logged:
                log.info("mailbox_watched_elsewhere", folder=self.key)
                waiting_logged = True
            stop.wait(self.RETRY)
        return False

    def _keep(self) -> None:
        """Check the lock's connection until it fails or the watcher stops; then the lease is lost."""
        every = max(1.0, self.config.failover / 4)
        conn = self._conn
        while not self.stop.is_set() and not self._lost.is_set():
            try:
                assert conn is not None
                conn.execute("SELECT 1")
            except (psycopg.Error, AssertionError) as exc:
                log.warning("mailbox_lock_lost", folder=self.key, error=f"{type(exc).__name__}: {exc}")
                break
            self.stop.wait(every)
        self._lost.set()

    def release(self) -> None:
        self._lost.set()
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
