"""`mailsvc import mbox|maildir PATH`: file an archive into cases as history.

Every message goes through the same pipeline as IMAP mail, filed as history: threaded into cases,
no acknowledgement, no notification, no timer. One transaction per batch; importing the same archive
again files nothing twice (Message-ID and content hash). A progress line on a terminal, a summary at the end.
"""

from __future__ import annotations

import argparse
import mailbox
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailsvc.config import load_config
from mailsvc.log import configure, get_logger
from mailsvc.pipeline import Outcome, Pipeline
from mailsvc.store import open_store

BATCH = 200


@dataclass
class ImportSummary:
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    cases: set[int] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


def archive_messages(kind: str, path: Path) -> tuple[int, Iterator[bytes]]:
    """How many messages the archive holds, and their raw bytes in order."""
    box: mailbox.Mailbox[mailbox.Message]
    box = mailbox.mbox(path, create=False) if kind == "mbox" else mailbox.Maildir(path, factory=None, create=False)
    keys = sorted(box.keys(), key=maildir_order) if kind == "maildir" else list(box.keys())
    return len(keys), (box.get_bytes(k) for k in keys)


def maildir_order(name: str) -> tuple[tuple[str, int], ...]:
    """A Maildir file name's place in delivery order. Names start with the delivery time and carry the
    microseconds and a counter unpadded ("1733.M99999P7Q9.host" comes before "1733.M100000P7Q10.host"), so
    runs of digits compare as numbers: compared as text, a reply could be filed before what it answers."""
    runs = re.findall(r"(\D*)(\d*)", name)
    return tuple((text, int(digits) if digits else -1) for text, digits in runs if text or digits)


def import_archive(
    pipeline: Pipeline, messages: Iterator[bytes], queue: str, progress: Callable[[int], None]
) -> ImportSummary:
    summary = ImportSummary()
    store = pipeline.store
    batch: list[bytes] = []

    def flush() -> None:
        with store.transaction():
            for raw in batch:
                outcome, case_id = pipeline.handle(None, raw, queue, history="imported from an archive")
                summary.outcomes[outcome] += 1
                if case_id is not None:
                    summary.cases.add(case_id)
        batch.clear()
        progress(summary.total)

    for raw in messages:
        batch.append(raw)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return summary


def cmd_import(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure(config.log.format, config.log.level)
    queue = args.queue or config.default_queue
    if queue not in config.queues:
        print(f"mailsvc import: --queue: no queue {queue!r} (queues: {', '.join(config.queues)})", file=sys.stderr)
        return 2
    try:
        total, messages = archive_messages(args.kind, args.path)
    except (OSError, mailbox.Error) as exc:
        print(f"mailsvc import: cannot read {args.kind} {args.path}: {exc}", file=sys.stderr)
        return 1
    tty = sys.stderr.isatty()

    def progress(done: int) -> None:
        if tty:
            width = 30
            filled = width * done // total if total else width
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)

    store = open_store(config.store)
    try:
        summary = import_archive(Pipeline(config, store), messages, queue, progress)
    finally:
        store.close()
    if tty:
        print(file=sys.stderr)
    o = summary.outcomes
    get_logger(component="import").info(
        "archive_imported", kind=args.kind, messages=summary.total, filed=o[Outcome.FILED], junk=o[Outcome.JUNK],
        duplicates=o[Outcome.DUPLICATE], quarantined=o[Outcome.QUARANTINED], cases=len(summary.cases),
    )  # fmt: skip
    print(
        f"imported {summary.total} message(s) from {args.path} into queue {queue}: {o[Outcome.FILED]} filed in "
        f"{len(summary.cases)} case(s), {o[Outcome.JUNK]} junk, {o[Outcome.DUPLICATE]} already there, "
        f"{o[Outcome.QUARANTINED]} quarantined"
    )
    return 0


def add_import_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    imp = with_config(commands.add_parser("import", help="file an mbox or Maildir archive into cases, silently"))
    imp.add_argument("kind", choices=["mbox", "maildir"])
    imp.add_argument("path", type=Path)
    imp.add_argument("--queue", help="where new cases open when the recipients name no queue (default: the first)")
    imp.set_defaults(func=cmd_import)
