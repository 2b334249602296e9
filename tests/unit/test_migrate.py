"""Schema migrations on a real SQLite file: a newer store is refused, a failing migration leaves nothing behind."""

import sqlite3
from pathlib import Path

import pytest

from mailsvc.errors import StoreError
from mailsvc.store import Store
from mailsvc.store.migrate import latest_version, migrate


def raw_db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_store_newer_than_this_mailsvc_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    db = raw_db(path)
    db.execute(f"PRAGMA user_version = {latest_version() + 1}")
    db.close()

    with pytest.raises(StoreError, match=r"newer than this mailsvc knows .*upgrade mailsvc"):
        Store.open(path)
    db = raw_db(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == latest_version() + 1
    assert tables(db) == set()


def test_a_failing_migration_is_rolled_back_whole(tmp_path: Path) -> None:
    db = raw_db(tmp_path / "clash.db")
    # The first migration creates `cases` before `outbox`: an existing outbox makes it fail half-way.
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY)")

    with pytest.raises(StoreError, match=r"migration 1 failed: .*outbox"):
        migrate(db)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert tables(db) == {"outbox"}
    assert db.in_transaction is False


def test_every_migration_is_applied_in_order_once(tmp_path: Path) -> None:
    db = raw_db(tmp_path / "fresh.db")
    assert migrate(db) == list(range(1, latest_version() + 1))
    assert migrate(db) == []


def test_a_store_another_writer_holds_locked_fails_the_migration_and_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = raw_db(path)
    holder.execute("BEGIN IMMEDIATE")
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        with pytest.raises(StoreError, match=r"migration 1 failed: database is locked"):
            migrate(db)
        holder.execute("ROLLBACK")
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        assert tables(db) == set()
    finally:
        db.close()
        holder.close()
