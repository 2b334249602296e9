"""`mailsvc store copy --to postgresql://...`: move the configured SQLite store into an empty PostgreSQL
database, verified by counts and content checksums. Stop the daemon first; point `store:` at the URL after.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mailsvc.config import load_config
from mailsvc.store import Store


def _bar(table: str, done: int, total: int) -> None:
    width = 30
    filled = width if total == 0 else width * done // total
    sys.stderr.write(f"\r{table:<17} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        return Path(os.path.expandvars(args.password_file)).read_text().strip()
    return ""  # libpq's own sources then: PGPASSWORD, ~/.pgpass


def cmd_store_copy(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.store.path is None:
        print("mailsvc store copy: the configured store is not SQLite (store.path)", file=sys.stderr)
        return 2
    if not args.to.startswith(("postgresql://", "postgres://")):
        print("mailsvc store copy: --to must be a postgresql:// URL", file=sys.stderr)
        return 2
    if not config.store.path.exists():
        print(f"mailsvc store copy: there is no store at {config.store.path}", file=sys.stderr)
        return 1
    # psycopg is imported here, not with the CLI: every other command starts without it.
    from mailsvc.store.copy import CopyMismatch, TargetNotEmpty, copy_store  # noqa: PLC0415
    from mailsvc.store.postgres import PostgresStore  # noqa: PLC0415

    source = Store.open(config.store.path, config.store.busy_timeout)
    try:
        target = PostgresStore.connect(args.to, _password(args))
        try:
            progress = _bar if sys.stderr.isatty() else None
            copied = copy_store(source, target, progress)
        except (TargetNotEmpty, CopyMismatch) as exc:
            print(f"mailsvc store copy: {exc}", file=sys.stderr)
            return 1
        finally:
            target.close()
    finally:
        source.close()
    for table in copied:
        print(f"{table.table:<17} {table.rows:>9} rows  sha256 {table.checksum[:16]}  same in both")
    print(f"copied {sum(t.rows for t in copied)} rows to {args.to}; now set store.url to it and start mailsvc")
    return 0


def add_store_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    store = commands.add_parser("store", help="the store: move an SQLite store to PostgreSQL")
    sub = store.add_subparsers(dest="store_command", required=True)
    copy = with_config(sub.add_parser("copy", help="copy the SQLite store into an empty PostgreSQL database"))
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host:port/dbname")
    copy.add_argument("--password-file", metavar="FILE", help="the database password (else PGPASSWORD, ~/.pgpass)")
    copy.set_defaults(func=cmd_store_copy)
