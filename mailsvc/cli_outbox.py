"""`mailsvc outbox list|retry`: the operator's view of outgoing mail, and resending what failed.

A retried mail goes back in the queue as it was (same Message-ID, same bytes); the running daemon's
sender picks it up within SENDER_MAX_SLEEP, or at once after `systemctl reload mailsvc`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from mailsvc.config import load_config
from mailsvc.model import OutboxState
from mailsvc.report import parse_since
from mailsvc.store import OutboxEntry, open_store
from mailsvc.trust import redact_tokens


def _when(value: float | None) -> str:
    return "-" if value is None else datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _as_json(e: OutboxEntry) -> dict[str, object]:
    return {
        "id": e.id, "case_id": e.case_id, "purpose": e.purpose, "message_id": e.message_id, "rcpt_to": list(e.rcpt_to),
        "state": e.state.value, "attempts": e.attempts, "queued_at": _when(e.created_at),
        "next_attempt_at": _when(e.next_attempt_at) if e.state is OutboxState.QUEUED else None,
        "sent_at": _when(e.sent_at) if e.sent_at else None, "last_error": e.last_error,
    }  # fmt: skip


def cmd_outbox_list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.store)
    try:
        state = OutboxState(args.state) if args.state else None
        entries = store.list_outbox(state, args.case, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(redact_tokens(json.dumps([_as_json(e) for e in entries], indent=2)))
        return 0
    print(f"{'ID':>6}  {'STATE':<7} {'TRIES':>5}  {'CASE':>6}  {'PURPOSE':<13} {'QUEUED':<19}  TO / LAST ERROR")
    for e in entries:
        case = str(e.case_id) if e.case_id is not None else "-"
        line = f"{e.id:>6}  {e.state.value:<7} {e.attempts:>5}  {case:>6}  {e.purpose:<13} {_when(e.created_at)}  "
        print(redact_tokens(line + ", ".join(e.rcpt_to)))
        if e.last_error:
            print(redact_tokens(f"{'':>50}{e.last_error}"))
    return 0


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.failed):
        print("mailsvc outbox retry: give mail IDs or --failed", file=sys.stderr)
        return 2
    if args.since is not None and not args.failed:
        print("mailsvc outbox retry: --since goes with --failed", file=sys.stderr)
        return 2
    try:
        since = parse_since(args.since).timestamp() if args.since is not None else 0.0
    except ValueError as exc:
        print(f"mailsvc outbox retry: --since: {exc}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    store = open_store(config.store)
    try:
        with store.transaction():
            ids = store.failed_mail_ids(since) if args.failed else list(args.ids)
            requeued = store.requeue(ids, time.time())
    finally:
        store.close()
    print(f"requeued {len(requeued)} mail(s)" + (": " + " ".join(f"#{i}" for i in requeued) if requeued else ""))
    skipped = [i for i in ids if i not in requeued]
    for outbox_id in skipped:
        print(f"mailsvc outbox retry: #{outbox_id} is not failed or queued (unknown, or sent): left as it is",
              file=sys.stderr)  # fmt: skip
    return 1 if skipped else 0


def add_outbox_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    outbox = commands.add_parser("outbox", help="outgoing mail: list it, resend what failed")
    sub = outbox.add_subparsers(dest="outbox_command", required=True)
    listing = with_config(sub.add_parser("list", help="outgoing mail, newest first, with state and last error"))
    listing.add_argument("--state", choices=[s.value for s in OutboxState])
    listing.add_argument("--case", type=int, metavar="ID")
    listing.add_argument("--limit", type=int, default=200)
    listing.add_argument("--json", action="store_true", help="JSON for scripts")
    listing.set_defaults(func=cmd_outbox_list)
    retry = with_config(sub.add_parser("retry", help="put failed mail back in the queue (never mail already sent)"))
    retry.add_argument("ids", nargs="*", type=int, metavar="ID")
    retry.add_argument("--failed", action="store_true", help="every mail that failed for good")
    retry.add_argument("--since", metavar="YYYY-MM-DD", help="with --failed: only mail queued from this day on, UTC")
    retry.set_defaults(func=cmd_outbox_retry)
