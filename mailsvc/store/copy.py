"""Moving an SQLite store to PostgreSQL (`mailsvc store copy --to postgresql://...`).

Every table is copied row for row, ids kept, in one transaction on the target; then the target's
counts and a checksum of each table's content (rows in id order) are compared with the source's.
A target that holds any mailsvc data is refused: the copy never merges two stores.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from mailsvc.errors import StoreError
from mailsvc.store import Store
from mailsvc.store.postgres import PostgresStore

# In an order that satisfies the foreign keys (cases' links to each other are set after all cases).
TABLES = (
    "cases", "messages", "attachments", "case_message_ids", "outbox", "mailboxes", "case_events", "case_ccs",
    "timers", "bouncing", "automatic_mail", "ingest_attempts", "digests", "sender_rules", "erasures",
    "unverified_senders",
)  # fmt: skip
_CASE_LINKS = ("merged_into", "parent_case")
# The order rows are compared in (tables without an id column: their keys).
_ORDER = {
    "case_message_ids": "message_id, case_id",
    "mailboxes": "name",
    "case_ccs": "case_id, address",
    "bouncing": "address",
    "automatic_mail": "outbox_id, address, at",
    "ingest_attempts": "mailbox, uidvalidity, uid",
    "digests": "every, period_end",
    "sender_rules": "queue, pattern",
    "unverified_senders": "case_id, address",
}

Progress = Callable[[str, int, int], None]


class TargetNotEmpty(StoreError):
    """The PostgreSQL database holds mailsvc data already."""


class CopyMismatch(StoreError):
    """After the copy, a table's count or content differs between source and target."""


@dataclass(frozen=True, slots=True)
class TableCopied:
    table: str
    rows: int
    checksum: str


def _columns(source: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in source.execute(f"PRAGMA table_info({table})")]


def _order(table: str) -> str:
    return _ORDER.get(table, "id")


def table_checksum(rows: Iterable[Sequence[Any]]) -> tuple[int, str]:
    """How many rows, and a SHA-256 over their values in order (bytes as bytes, numbers by value)."""
    digest = hashlib.sha256()
    count = 0
    for row in rows:
        count += 1
        for value in row:
            if isinstance(value, bytes | memoryview):
                digest.update(b"b" + len(value).to_bytes(8, "big") + bytes(value))
            elif isinstance(value, float) and value.is_integer():
                digest.update(f"n{int(value)};".encode())
            elif isinstance(value, int | float):
                digest.update(f"n{value!r};".encode())
            elif value is None:
                digest.update(b"z;")
            else:
                text = str(value).encode()
                digest.update(b"s" + len(text).to_bytes(8, "big") + text)
    return count, digest.hexdigest()


def _target_rows(target: PostgresStore, table: str) -> int:
    return int(target.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


def copy_store(source: Store, target: PostgresStore, progress: Progress | None = None) -> list[TableCopied]:
    """Copy `source` (SQLite, brought to the latest schema) into the empty `target`; verify; return per table."""
    db: sqlite3.Connection = source._sqlite
    busy = [t for t in TABLES if _target_rows(target, t)]
    if busy:
        raise TargetNotEmpty(f"the target database is not empty ({', '.join(busy)} hold rows): copy into a new one")
    conn = target.pg.connection
    with conn.transaction():
        for table in TABLES:
            columns = _columns(db, table)
            total = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
            names = ", ".join(columns)
            read = db.execute(f"SELECT {names} FROM {table} ORDER BY {_order(table)}")  # noqa: S608
            links = [columns.index(c) for c in _CASE_LINKS] if table == "cases" else []
            done = 0
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in read:
                    values = list(row)
                    for i in links:
                        values[i] = None  # set below, once every case exists
                    copy.write_row(values)
                    done += 1
                    if progress is not None and (done % 500 == 0 or done == total):
                        progress(table, done, total)
            if progress is not None and total == 0:
                progress(table, 0, 0)
        for column in _CASE_LINKS:
            pairs = db.execute(f"SELECT id, {column} FROM cases WHERE {column} IS NOT NULL").fetchall()  # noqa: S608
            with conn.cursor() as cur:
                cur.executemany(f"UPDATE cases SET {column} = %s WHERE id = %s", [(v, i) for i, v in pairs])  # noqa: S608
        for table in TABLES:
            if "id" in _columns(db, table):
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                )
    return verify_copy(db, conn)


def verify_copy(db: sqlite3.Connection, conn: psycopg.Connection[Any]) -> list[TableCopied]:
    """Counts and content checksums of every table, source against target; CopyMismatch on a difference."""
    copied = []
    for table in TABLES:
        columns = ", ".join(_columns(db, table))
        query = f"SELECT {columns} FROM {table} ORDER BY {_order(table)}"  # noqa: S608
        want = table_checksum(db.execute(query))
        with conn.cursor() as cur:
            got = table_checksum(cur.execute(query))
        if got != want:
            raise CopyMismatch(f"{table}: the source has {want[0]} rows, the target {got[0]}, or their content differs")
        copied.append(TableCopied(table, want[0], want[1]))
    return copied
