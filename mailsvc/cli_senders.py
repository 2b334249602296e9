"""`mailsvc senders list|remove`: the senders each queue refuses, from the configuration and from
`#spam block` (kept in the store), and taking a stored denial back."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime

from mailsvc.config import load_config
from mailsvc.store import open_store


def cmd_senders_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.store)
    try:
        stored = store.sender_rules()
    finally:
        store.close()
    rows: list[dict[str, object]] = []
    for name, q in config.queues.items():
        for rule, patterns in (("allow", q.senders.allow), ("deny", q.senders.deny), ("no_ack", q.senders.no_ack)):
            rows += [{"queue": name, "rule": rule, "pattern": p, "source": "config"} for p in patterns]
    for r in stored:
        when = datetime.fromtimestamp(r.added_at, UTC).strftime("%Y-%m-%d %H:%M")
        rows.append({"queue": r.queue, "rule": r.rule, "pattern": r.pattern, "source": "#spam block",
                     "added_by": r.added_by, "added_at": when, "case_id": r.case_id})  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'QUEUE':<12} {'RULE':<7} {'PATTERN':<36} SOURCE")
    for row in rows:
        source = str(row["source"])
        if "added_by" in row:
            source += f" by {row['added_by']} on case {row['case_id']}, {row['added_at']}"
        print(f"{row['queue']!s:<12} {row['rule']!s:<7} {row['pattern']!s:<36} {source}")
    return 0


def cmd_senders_remove(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.store)
    try:
        with store.transaction():
            removed = store.remove_sender_rule(args.queue, args.pattern)
    finally:
        store.close()
    if not removed:
        print(f"mailsvc senders remove: no stored rule for {args.pattern} in queue {args.queue}")
        return 1
    print(f"removed: {args.pattern} in queue {args.queue}")
    return 0


def add_senders_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    senders = commands.add_parser("senders", help="sender rules: the configuration's and those #spam block added")
    sub = senders.add_subparsers(dest="senders_command", required=True)
    listing = with_config(sub.add_parser("list", help="every queue's allow, deny and no_ack rules"))
    listing.add_argument("--json", action="store_true", help="JSON for scripts")
    listing.set_defaults(func=cmd_senders_list)
    remove = with_config(sub.add_parser("remove", help="take back a denial #spam block stored"))
    remove.add_argument("queue")
    remove.add_argument("pattern")
    remove.set_defaults(func=cmd_senders_remove)
