"""Ingest: every message waiting in a watched IMAP folder, batch by batch, through the pipeline.

Each message is filed by `pipeline.Pipeline.handle`, which never raises for a bad message.
`ingest_pass` moves server copies only after the store has committed them; a message that crashed
the process before, or is too large to download, is stored raw and quarantined without parsing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from mailsvc import crashpoint, folders, metrics
from mailsvc.imap import ImapSource
from mailsvc.model import InboundMessage, MailRef, MessageState
from mailsvc.parse import content_hash, parse_message
from mailsvc.pipeline import Outcome, Pipeline

# Pipeline and Outcome live in pipeline.py; the daemon and the tests import them from here as well.
__all__ = [
    "FETCH_BATCH_BYTES",
    "POISON_ATTEMPTS",
    "POISON_HOOK",
    "Outcome",
    "PassResult",
    "Pipeline",
    "ingest_pass",
    "plan_batches",
    "quarantine_unprocessed",
]


@dataclass
class PassResult:
    filed: int = 0
    quarantined: int = 0
    duplicates: int = 0
    moved: int = 0
    cases: set[int] = field(default_factory=set)
    junk: int = 0
    history: int = 0  # old mail filed silently at the first start (imap.backlog: file)
    skipped: int = 0  # old mail left alone at the first start (imap.backlog: skip)


# A message whose processing was begun this often and never finished (it crashed or hung the
# process) is stored raw and quarantined as `poison` instead of being processed again.
POISON_ATTEMPTS = 3
# Bytes fetched in one batch (besides imap.fetch_batch messages): memory is bounded per message.
FETCH_BATCH_BYTES = 32 * 1024 * 1024
# Tests only: a process that meets a message containing this text dies, as on a poison message.
POISON_HOOK = "MAILSVC_TEST_POISON"


def plan_batches(
    uids: Sequence[int], sizes: Mapping[int, int], suspects: Collection[int], *, count: int, size: int, alone: int
) -> list[list[int]]:
    """UIDs in batches of at most `count` messages and `size` bytes. A suspect (an unfinished
    attempt before) or a message over `alone` bytes goes in a batch of its own, so a crash is
    counted against that message only."""
    batches: list[list[int]] = []
    batch: list[int] = []
    total = 0
    for uid in uids:
        n = sizes.get(uid, 0)
        if uid in suspects or n > alone:
            batches += [batch, [uid]] if batch else [[uid]]
            batch, total = [], 0
            continue
        if batch and (len(batch) >= count or total + n > size):
            batches.append(batch)
            batch, total = [], 0
        batch.append(uid)
        total += n
    if batch:
        batches.append(batch)
    return batches


def ingest_pass(
    source: ImapSource,
    pipeline: Pipeline,
    committed: Callable[[], None] = lambda: None,
    to_file: Callable[[int], None] = lambda count: None,
) -> PassResult:
    """File every message waiting in the watched folder, batch by batch.

    Sizes are fetched first: batches are bounded by bytes as well as count, and a message over
    limits.max_message_bytes is never downloaded whole (its header block is stored, quarantined).
    Each batch counts an attempt per message (committed first), then is one transaction (a savepoint
    per message); `committed` is called after each commit (to wake the sender) and only then are the
    server copies moved. `to_file` is told how many messages the pass is about to file, before the first.
    """
    cfg = source.cfg
    store = pipeline.store
    result = PassResult()
    uids = source.pending_uids()
    folders.first_position(source, store, uids, pipeline.clock())
    if not uids:
        folders.move_junk_cases(source, store)
        return result
    known = store.known_uids(source.mailbox, source.uidvalidity, uids)
    # Committed before a crash but never moved: finish the move, do not process again.
    filed = [u for u, s in known.items() if s is MessageState.FILED]
    junk = store.junk_uids(source.mailbox, source.uidvalidity, filed)
    folders.put_away(source, [u for u in filed if u not in junk], result)
    _move(source, sorted(junk), cfg.junk_folder, result)
    _move(source, [u for u, s in known.items() if s is MessageState.QUARANTINED], cfg.quarantine_folder, result)
    todo = [u for u in uids if u not in known]
    old = folders.old_mail(source, store, todo)
    if old.skip:
        todo = [u for u in todo if u not in old.skip]
        result.skipped = len(old.skip)
    pipeline.build_pending()  # drafts a crash left between commit and build
    if todo:
        to_file(len(todo))
        _ingest_all(source, pipeline, todo, old.history, committed, result=result)
    folders.move_junk_cases(source, store)
    return result


def _ingest_all(
    source: ImapSource,
    pipeline: Pipeline,
    todo: list[int],
    history: frozenset[int],
    committed: Callable[[], None],
    *,
    result: PassResult,
) -> None:
    cfg = source.cfg
    store = pipeline.store
    sizes = source.sizes(todo)
    suspects = store.unfinished_attempts(source.mailbox, source.uidvalidity, todo)
    limit = pipeline.limits.max_bytes
    for batch in plan_batches(todo, sizes, suspects, count=cfg.fetch_batch, size=FETCH_BATCH_BYTES, alone=limit):
        done, junk, bad = _ingest_batch(source, pipeline, batch, sizes, result, history=history)
        crashpoint.reached("ingest_committed")
        pipeline.build_pending()
        committed()
        metrics.observe_arrivals(source.arrival_times, done)
        folders.put_away(source, done, result)
        _move(source, junk, cfg.junk_folder, result)
        _move(source, bad, cfg.quarantine_folder, result)


def _ingest_batch(
    source: ImapSource,
    pipeline: Pipeline,
    batch: list[int],
    sizes: Mapping[int, int],
    result: PassResult,
    *,
    history: frozenset[int] = frozenset(),
) -> tuple[list[int], list[int], list[int]]:
    """One batch in one transaction; returns the UIDs filed (or duplicates), filed as junk, and quarantined.

    Its messages are parsed before the transaction opens: the store's write lock is held for filing only,
    so the sender can record what it sent meanwhile (attempts are counted before, so a message that
    crashes the parser is still found out)."""
    store = pipeline.store
    box, validity = source.mailbox, source.uidvalidity
    before = store.begin_attempts(box, validity, batch, pipeline.clock().timestamp())
    oversize = {uid for uid in batch if sizes.get(uid, 0) > pipeline.limits.max_bytes}
    poison = {uid for uid in batch if before.get(uid, 0) >= POISON_ATTEMPTS}
    raws = source.fetch([uid for uid in batch if uid not in oversize])
    for uid in oversize:
        header = source.fetch_header(uid)
        if header is not None:
            raws[uid] = header
    parsed: dict[int, InboundMessage] = {}
    for uid, data in raws.items():
        if uid not in oversize and uid not in poison:
            _poison_hook(data)
            parsed[uid] = pipeline.parse(data)
    done: list[int] = []
    junk: list[int] = []
    bad: list[int] = []
    with store.transaction():
        for uid in batch:
            raw = raws.pop(uid, None)
            if raw is None:  # expunged by someone else meanwhile
                continue
            ref = MailRef(box, validity, uid)
            if uid in oversize:
                outcome = quarantine_unprocessed(pipeline, ref, raw, "too_large", size=sizes[uid])
            elif uid in poison:
                outcome = quarantine_unprocessed(pipeline, ref, raw, "poison", attempts=before[uid])
            else:
                old = "old mail at the first start" if uid in history else None
                outcome, case_id = pipeline.handle(ref, raw, source.queue, history=old, parsed=parsed.pop(uid))
                result.history += old is not None and outcome is not Outcome.QUARANTINED
                if case_id is not None:
                    result.cases.add(case_id)
            metrics.message_handled(box, outcome.value)
            if outcome is Outcome.QUARANTINED:
                bad.append(uid)
                result.quarantined += 1
            elif outcome is Outcome.JUNK:
                junk.append(uid)
                result.junk += 1
            else:
                done.append(uid)
                result.filed += outcome is Outcome.FILED
                result.duplicates += outcome is Outcome.DUPLICATE
            crashpoint.reached("ingest_between_messages")
        store.end_attempts(box, validity, batch)
    return done, junk, bad


def quarantine_unprocessed(pipeline: Pipeline, ref: MailRef, raw: bytes, reason: str, **fields: int) -> Outcome:
    """Store `raw` as it is (a header block only, for a message too large to download) and quarantine it,
    without parsing it further: parsing may be what crashed."""
    data = bytes(raw)
    header = parse_message(data, pipeline.limits) if reason == "too_large" else None
    detail = ", ".join(f"{k} {v}" for k, v in fields.items())
    msg = InboundMessage(
        raw=data, content_hash=content_hash(data), message_id=header.message_id if header else None,
        in_reply_to=(), references=(), from_=header.from_ if header else None, reply_to=(), to=(), cc=(),
        subject=header.subject if header else "", date=header.date if header else None, text="", html=None,
        attachments=(), headers={}, return_path=None, defects=(f"{reason}: {detail}",), quarantine_reason=reason,
    )  # fmt: skip
    pipeline.store.quarantine(msg, ref, f"{reason} ({detail})", pipeline.clock())
    pipeline.log.warning("message_quarantined", uid=ref.uid, message_id=msg.message_id, reason=reason, **fields)
    return Outcome.QUARANTINED


def _poison_hook(raw: bytes) -> None:
    marker = os.environ.get(POISON_HOOK)
    if marker and marker.encode() in raw:
        os._exit(70)


def _move(source: ImapSource, uids: list[int], folder: str, result: PassResult) -> None:
    if uids:
        source.move(uids, folder)
        result.moved += len(uids)
