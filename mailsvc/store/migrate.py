"""Schema migrations: numbered SQL files applied in order, each in one transaction.

The schema version is SQLite's `user_version`; nothing alters tables at start-up
outside these files.
"""

from __future__ import annotations

import sqlite3
from importlib import resources

from mailsvc.errors import StoreError


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("mailsvc.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest_version() -> int:
    return max(version for version, _ in _migrations())


def migrate(db: sqlite3.Connection) -> list[int]:
    """Bring the schema to the latest version; returns the versions applied."""
    current = db.execute("PRAGMA user_version").fetchone()[0]
    if current > latest_version():
        raise StoreError(
            f"the store's schema is version {current}, newer than this mailsvc knows "
            f"({latest_version()}): upgrade mailsvc"
        )
    applied = []
    for version, sql in _migrations():
        if version <= current:
            continue
        # executescript commits first, so BEGIN/COMMIT are spelled out to keep
        # each migration all-or-nothing.
        try:
            db.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if db.execute("PRAGMA user_version").fetchone()[0] >= version:
                continue  # another connection (a component starting at the same time) applied it first
            raise StoreError(f"migration {version} failed: {exc}") from exc
        applied.append(version)
    return applied
