"""`mailsvc purge` and `mailsvc forget`: retention by hand, and erasing one person's data on request.

Both print what they removed (or, with --dry-run, would remove); each run is one logged event and
one row in the store's erasure record, which names no address.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime

from mailsvc.config import load_config
from mailsvc.log import configure, get_logger
from mailsvc.retention import purge
from mailsvc.store import open_store
from mailsvc.store.retention import Erased


def _line(what: str, e: Erased) -> str:
    kept = f"; {e.queued_kept} mail(s) still queued keep their bytes until sent" if e.queued_kept else ""
    return (
        f"{what}: {e.cases} case(s), {e.messages} message(s), {e.attachments} attachment(s), "
        f"{e.outgoing} outgoing mail(s){kept}"
    )


def cmd_purge(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure(config.log.format, config.log.level)
    store = open_store(config.store)
    try:
        done = purge(config, store, datetime.now(UTC), dry_run=args.dry_run)
    finally:
        store.close()
    if not done:
        print("no queue has retention.closed_after: nothing to purge")
        return 0
    verb = "would purge" if args.dry_run else "purged"
    for queue, erased in done.items():
        print(_line(f"queue {queue}: {verb}", erased))
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure(config.log.format, config.log.level)
    address = args.address.strip()
    if "@" not in address:
        print(f"mailsvc forget: {address!r} is not a mail address", flush=True)
        return 2
    store = open_store(config.store)
    try:
        with store.transaction():
            erased = store.forget_address(address, datetime.now(UTC), dry_run=args.dry_run)
    finally:
        store.close()
    # The event names no address: the log must not keep what was just erased.
    get_logger(component="retention").info(
        "person_forget_planned" if args.dry_run else "person_forgotten", cases=erased.cases,
        messages=erased.messages, outgoing=erased.outgoing, case_ids=list(erased.case_ids[:50]),
    )  # fmt: skip
    print(_line("would erase" if args.dry_run else "erased", erased))
    if erased.case_ids:
        print("cases: " + " ".join(f"#{i}" for i in erased.case_ids))
    return 0


def add_retention_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    purge_help = "closed cases past retention.closed_after lose their mail (a tombstone stays)"
    purge_cmd = with_config(commands.add_parser("purge", help=purge_help))
    purge_cmd.add_argument("--dry-run", action="store_true", help="show what would be purged, change nothing")
    purge_cmd.set_defaults(func=cmd_purge)
    forget = with_config(commands.add_parser("forget", help="erase one person's data (an erasure request)"))
    forget.add_argument("address", help="the person's mail address")
    forget.add_argument("--dry-run", action="store_true", help="show what would be erased, change nothing")
    forget.set_defaults(func=cmd_forget)
