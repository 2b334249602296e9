"""Retention: closed cases older than their queue's `retention.closed_after` lose their mail's content.

`purge` runs in one transaction per queue and logs one event per queue; the scheduler calls
`RetentionJob.run_due` on every tick and it purges once a day; `mailsvc purge` runs it by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from mailsvc.config import Config
from mailsvc.log import get_logger
from mailsvc.store import StoreContract
from mailsvc.store.retention import Erased

RUN_EVERY = timedelta(days=1)


def purge(config: Config, store: StoreContract, now: datetime, *, dry_run: bool = False) -> dict[str, Erased]:
    """Each queue with a retention period: what was purged (or, dry, would be)."""
    log = get_logger(component="retention")
    done: dict[str, Erased] = {}
    for name, queue in config.queues.items():
        keep = queue.retention.closed_after
        if keep is None:
            continue
        with store.transaction():
            ids = store.purge_candidates(name, (now - timedelta(seconds=keep)).timestamp())
            erased = store.purge_cases(ids, now, dry_run=dry_run)
        done[name] = erased
        if erased.cases:
            log.info(
                "cases_purged" if not dry_run else "cases_purge_planned", queue=name, cases=erased.cases,
                messages=erased.messages, outgoing=erased.outgoing, attachments=erased.attachments,
                case_ids=list(erased.case_ids[:50]),
            )  # fmt: skip
    return done


class RetentionJob:
    """Purges at the first tick, then once every RUN_EVERY (the time of the scheduler's clock)."""

    def __init__(self, config: Config, store: StoreContract, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.next_at: datetime | None = None
        self.enabled = any(q.retention.closed_after for q in config.queues.values())

    def run_due(self) -> int:
        """Cases purged now (0 when not due)."""
        now = self.clock()
        if not self.enabled or (self.next_at is not None and now < self.next_at):
            return 0
        self.next_at = now + RUN_EVERY
        return sum(e.cases for e in purge(self.config, self.store, now).values())
