"""Where mail lies on the server: processed mail put away (moved, or marked done in place), the copies
of cases marked #spam moved to the junk folder, and the first start on a folder that already holds
mail (imap.backlog): which UIDs are old mail.

At the first pass over a folder with no position in the store, the highest UID there and the
cut-off time (now - imap.backlog_age) are recorded; from then on, a UID up to that one whose
INTERNALDATE lies before the cut-off is old mail: filed as history (`file`) or left alone (`skip`).
Recorded once, so a restart in the middle of a long backlog goes on the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from mailsvc.imap import ImapSource
from mailsvc.log import get_logger
from mailsvc.store import StoreContract


class Moved(Protocol):
    moved: int


@dataclass(frozen=True, slots=True)
class OldMail:
    """Of the UIDs asked about: those to file as history, and those to leave alone."""

    history: frozenset[int] = frozenset()
    skip: frozenset[int] = frozenset()


def first_position(source: ImapSource, store: StoreContract, uids: Sequence[int], now: datetime) -> None:
    """Record where the backlog ends, once, before anything in the folder is processed."""
    if store.backlog(source.mailbox) is not None:
        return
    cfg = source.cfg
    before = 0.0 if cfg.backlog == "answer" else (now - timedelta(seconds=cfg.backlog_age)).timestamp()
    last = max(uids, default=0)
    with store.transaction():
        store.start_position(source.mailbox, source.uidvalidity, last, before)
    get_logger(component="ingest").info(
        "backlog_position_recorded", mailbox=source.mailbox, backlog=cfg.backlog, last_uid=last,
        messages=len(uids), before=datetime.fromtimestamp(before, now.tzinfo).isoformat() if before else None,
    )  # fmt: skip


def old_mail(source: ImapSource, store: StoreContract, uids: Sequence[int]) -> OldMail:
    """Which of `uids` (not yet processed) are the folder's backlog, by imap.backlog."""
    mark = store.backlog(source.mailbox)
    if mark is None or mark.uidvalidity != source.uidvalidity or not mark.before or source.cfg.backlog == "answer":
        return OldMail()
    candidates = [u for u in uids if u <= mark.uid]
    if not candidates:
        return OldMail()
    dates = source.internal_dates(candidates)
    old = frozenset(u for u, when in dates.items() if when.timestamp() < mark.before)
    return OldMail(skip=old) if source.cfg.backlog == "skip" else OldMail(history=old)


def put_away(source: ImapSource, uids: list[int], result: Moved) -> None:
    """Processed mail: to imap.processed_folder, or (null) left in place, marked done."""
    folder = source.cfg.processed_folder
    if folder is not None:
        source.move(uids, folder)
        result.moved += len(uids)
    else:
        source.mark_done(uids)


def move_junk_cases(source: ImapSource, store: StoreContract) -> int:
    """Server copies of cases staff marked #spam go to the junk folder, from wherever processed mail
    stays (imap.processed_folder, or the watched folder when that is null). Returns how many moved."""
    pending = store.pending_junk_moves(source.mailbox)
    if not pending:
        return 0
    cfg = source.cfg
    folder = cfg.processed_folder or cfg.folder
    moved = source.move_by_message_id(folder, [m for _, m in pending], cfg.junk_folder)
    with store.transaction():
        store.junk_moved([row for row, _ in pending])
    get_logger(component="ingest").info(
        "junk_moved", mailbox=source.mailbox, folder=cfg.junk_folder, messages=len(pending), found=moved
    )
    return moved
