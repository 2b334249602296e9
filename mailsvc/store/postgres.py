"""The PostgreSQL backend of the store contract, for several instances on one database.

The queries are the SQLite store's (mailsvc/store/sql.py says how they are written for both); what
differs is here: connections from a psycopg pool, the schema's own migrations, and claims. Due mail
and due timers are claimed with `FOR UPDATE SKIP LOCKED` and a lease (`store.failover` seconds), so two
instances never take the same row and a dead instance's claims are taken over when the lease ends.
New mail and timers are announced with NOTIFY in the transaction that writes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from mailsvc.errors import StoreError, StoreUnavailable
from mailsvc.model import OutgoingMail, Timer, TimerKind
from mailsvc.store import Store
from mailsvc.store.contract import OutboxMail
from mailsvc.store.sql import Row, SqlCursor, pg_sql

# The channels NOTIFY wakes the other instances on.
OUTBOX_CHANNEL = "mailsvc_outbox"
TIMERS_CHANNEL = "mailsvc_timers"
# The key of the transaction-scoped advisory lock migrations hold, so instances starting together
# migrate one after the other.
_MIGRATION_LOCK = 0x6D61696C737663

_pools: dict[tuple[str, str, int], ConnectionPool] = {}
_pools_lock = threading.Lock()


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.row_factory = _row_factory


def shared_pool(url: str, password: str, size: int) -> ConnectionPool:
    """One pool per database and process, shared by its components (each holds one connection at a time)."""
    key = (url, password, size)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 10}
            if password:
                kwargs["password"] = password
            pool = ConnectionPool(
                url, min_size=1, max_size=size, kwargs=kwargs, configure=_configure, open=True, timeout=10,
                check=ConnectionPool.check_connection, name="mailsvc",
            )  # fmt: skip
            _pools[key] = pool
        return pool


def close_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the PostgreSQL store cannot be used now: {type(exc).__name__}: {exc}".strip())


class PgConnection:
    """One pooled connection, taken when first needed and given back when it breaks or the store closes.

    A broken connection (server restarted, network gone) raises StoreUnavailable, which every component
    backs off on; the next statement takes a fresh connection from the pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            try:
                self._conn = self.pool.getconn()
            except (PoolTimeout, psycopg.OperationalError) as exc:
                raise _unavailable(exc) from exc
        return self._conn

    @property
    def in_transaction(self) -> bool:
        return self._conn is not None and self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> SqlCursor:
        conn = self.connection
        try:
            return conn.execute(pg_sql(sql), parameters)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if conn.broken or isinstance(exc, psycopg.InterfaceError):
                self.release()
            raise _unavailable(exc) from exc

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object:
        rows = list(parameters)
        if not rows:
            return None
        conn = self.connection
        try:
            with conn.cursor() as cur:
                cur.executemany(pg_sql(sql), rows)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if conn.broken or isinstance(exc, psycopg.InterfaceError):
                self.release()
            raise _unavailable(exc) from exc
        return None

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with suppress(Exception):
                if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
            with suppress(Exception):
                self.pool.putconn(conn)


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("mailsvc.store") / "migrations_pg"
    found = [
        (int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


def latest_pg_version() -> int:
    return max(version for version, _ in _migrations())


def migrate_pg(conn: psycopg.Connection[Any]) -> list[int]:
    """Bring the PostgreSQL schema to the latest version, each migration in one transaction; returns the
    versions applied. Instances starting together wait for each other on an advisory lock."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS mailsvc_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM mailsvc_schema").fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > latest_pg_version():
            raise StoreError(
                f"the store's schema is version {current}, newer than this mailsvc knows "
                f"({latest_pg_version()}): upgrade mailsvc"
            )
        for version, sql in _migrations():
            if version <= current:
                continue
            with conn.transaction():
                conn.execute(sql.encode())
                conn.execute("INSERT INTO mailsvc_schema (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


def pg_schema_version(url: str, password: str = "") -> int:
    """The schema version of the database at `url` (0 when mailsvc never ran on it); reads only."""
    try:
        with psycopg.connect(url, password=password or None, connect_timeout=10, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass('mailsvc_schema') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return 0
            row = conn.execute("SELECT max(version) FROM mailsvc_schema").fetchone()
    except psycopg.Error as exc:
        raise _unavailable(exc) from exc
    return int(row[0]) if row and row[0] is not None else 0


class PostgresStore(Store):
    """The store on PostgreSQL: one pooled connection per Store; use one Store per thread, as with SQLite."""

    def __init__(self, db: PgConnection, lease: float) -> None:
        self.db = db
        self.pg = db
        self.lease = lease

    @classmethod
    def connect(cls, url: str, password: str = "", *, lease: float = 30.0, pool_size: int = 8) -> PostgresStore:
        """Open (and migrate) the store at `url`; StoreUnavailable when the database cannot be reached."""
        try:
            pool = shared_pool(url, password, pool_size)
        except (psycopg.Error, PoolTimeout) as exc:
            raise _unavailable(exc) from exc
        db = PgConnection(pool)
        try:
            migrate_pg(db.connection)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            db.release()
            raise _unavailable(exc) from exc
        except BaseException:
            db.release()
            raise
        return cls(db, lease)

    def close(self) -> None:
        self.pg.release()

    def relax_durability(self) -> None:
        # As the SQLite sender's synchronous = NORMAL: a commit may lag a crash of the server, not lose mail.
        self.db.execute("SET synchronous_commit = off")

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, pg_errors.UniqueViolation)

    def _write_raw(self, message_row: int, raw: bytes) -> None:
        # bytea has no incremental blob writes; the bytes go in one parameter.
        self.db.execute("UPDATE messages SET raw = ? WHERE id = ?", (raw, message_row))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.pg.in_transaction:
                with suppress(psycopg.Error):
                    self.pg.connection.execute("ROLLBACK")
            raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.db.execute("SAVEPOINT step")
        try:
            yield
        except BaseException:
            if self.pg.in_transaction:
                with suppress(psycopg.Error):
                    self.pg.connection.execute("ROLLBACK TO SAVEPOINT step")
                    self.pg.connection.execute("RELEASE SAVEPOINT step")
            raise
        self.db.execute("RELEASE SAVEPOINT step")

    # --- claims: what several instances must not do twice

    def due_mail(self, now: float, limit: int = 100) -> list[OutboxMail]:
        """Claim due mail for `lease` seconds: rows another instance holds are skipped, not waited for."""
        rows = self.db.execute(
            "UPDATE outbox SET claimed_until = ? WHERE id IN (SELECT id FROM outbox WHERE state = 'queued' "
            "AND draft IS NULL AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
            "ORDER BY next_attempt_at, id LIMIT ? FOR UPDATE SKIP LOCKED) "
            "RETURNING id, case_id, purpose, message_id, mail_from, rcpt_to, raw, attempts, "
            "CASE WHEN retried_at > created_at THEN retried_at ELSE created_at END, next_attempt_at",
            (now + self.lease, now, now, limit),
        ).fetchall()
        rows.sort(key=lambda r: (r[9], r[0]))
        return [
            OutboxMail(r[0], r[1], r[2], r[3], r[4], tuple(r[5].split("\n")), bytes(r[6]), r[7], r[8]) for r in rows
        ]

    def next_due_at(self) -> float | None:
        row = self.db.execute(
            "SELECT min(CASE WHEN claimed_until > next_attempt_at THEN claimed_until ELSE next_attempt_at END) "
            "FROM outbox WHERE state = 'queued' AND draft IS NULL"
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def mark_sent(self, outbox_id: int, now: float) -> None:
        super().mark_sent(outbox_id, now)
        self.db.execute("UPDATE outbox SET claimed_until = NULL WHERE id = ?", (outbox_id,))

    def mark_retry(self, outbox_id: int, error: str, next_attempt_at: float) -> None:
        super().mark_retry(outbox_id, error, next_attempt_at)
        self.db.execute("UPDATE outbox SET claimed_until = NULL WHERE id = ?", (outbox_id,))

    def due_timers(self, now: datetime, limit: int = 200) -> dict[int, list[Timer]]:
        """Claim the due timers of up to `limit` cases for `lease` seconds (every due timer of a case together)."""
        at = now.timestamp()
        rows = self.db.execute(
            "UPDATE timers SET claimed_until = ? WHERE state = 'pending' AND due_at <= ? AND case_id IN "
            "(SELECT DISTINCT case_id FROM (SELECT case_id FROM timers WHERE state = 'pending' AND due_at <= ? "
            "AND (claimed_until IS NULL OR claimed_until <= ?) ORDER BY due_at LIMIT ? FOR UPDATE SKIP LOCKED) t) "
            "AND (claimed_until IS NULL OR claimed_until <= ?) RETURNING id, case_id, kind, due_at",
            (at + self.lease, at, at, at, limit, at),
        ).fetchall()
        found: dict[int, list[Timer]] = {}
        for r in sorted(rows, key=lambda r: (r[1], r[3], r[0])):
            found.setdefault(r[1], []).append(Timer(r[0], r[1], TimerKind(r[2]), datetime.fromtimestamp(r[3], UTC)))
        return found

    def notify_new_work(self, *, outbox: bool, timers: bool) -> None:
        """Wake the other instances (delivered when this transaction commits, never before)."""
        if outbox:
            self.db.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        if timers:
            self.db.execute(f"NOTIFY {TIMERS_CHANNEL}")

    def store_built(self, outbox_id: int, raw: bytes) -> bool:
        built = super().store_built(outbox_id, raw)
        if built:
            self.notify_new_work(outbox=True, timers=False)
        return built

    def requeue(self, outbox_ids: Sequence[int], now: float) -> list[int]:
        done = super().requeue(outbox_ids, now)
        if done:
            # A claim left by a sender that gave up on the mail must not hold it back.
            self.db.execute("UPDATE outbox SET claimed_until = NULL WHERE id = ANY(CAST(? AS BIGINT[]))", (done,))
            self.notify_new_work(outbox=True, timers=False)
        return done

    def enqueue(self, mail: OutgoingMail, case_id: int | None, cause: int | None, now: datetime) -> int:
        row = super().enqueue(mail, case_id, cause, now)
        self.notify_new_work(outbox=True, timers=False)
        return row
