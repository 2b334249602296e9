"""The digest job (shell): reads the figures from the store and queues the digest once per period.

The scheduler asks it at every tick. The latest complete period is sent if the store has no record of
it; the record and the outbox row are written in one transaction, so a restart never sends a period
twice, and after downtime only the latest period is sent (one catch-up, not one per missed period).
The page is rendered before that transaction opens: no template I/O under the write lock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.utils import make_msgid
from pathlib import Path

from mailsvc import metrics
from mailsvc.config import Config, ReportConfig
from mailsvc.digest import (
    Digest,
    Period,
    RatedMessage,
    WaitingCase,
    build_digest,
    compose_digest,
    render_digest,
)
from mailsvc.errors import TemplateError
from mailsvc.log import get_logger
from mailsvc.render import Templates
from mailsvc.store import StoreContract, open_store
from mailsvc.store.figures import claim_digest, digest_sent, rated_messages, record_digest_mail, waiting_cases
from mailsvc.templatefiles import load_templates


def digest_templates(config: Config) -> Templates:
    """The shared templates folder, then the defaults: the digest belongs to no one queue."""
    return load_templates([config.templates_dir] if config.templates_dir else [])


def load_digest(
    store: StoreContract, config: Config, period: Period, now: datetime, *, every: str, queue: str | None = None
) -> Digest:
    """The digest of `period` (and the one before it) from what the store holds now."""
    before = period.start - (period.end - period.start)
    cases = store.report_cases(before.timestamp())
    failed = store.report_failed_mail(before.timestamp())
    waiting = [WaitingCase(*row) for row in waiting_cases(store)]
    rated = [RatedMessage(*row) for row in rated_messages(store, period.start.timestamp(), period.end.timestamp())]
    timezone = config.report.timezone if config.report else "UTC"
    return build_digest(
        cases, failed, period=period, waiting=waiting, rated=rated, now=now, every=every, timezone=timezone,
        queue=queue, queues=list(config.queues),
    )  # fmt: skip


class DigestJob:
    """Runs in the scheduler's thread, on its store."""

    def __init__(self, config: Config, store: StoreContract, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.report: ReportConfig | None = config.report
        self.store = store
        self.clock = clock
        self.templates = digest_templates(config)
        self.log = get_logger(component="digest")
        self._failed: float | None = None

    def send_due(self) -> int:
        """Queue the latest period's digest unless it was sent; returns the mails queued (0 or 1)."""
        cfg = self.report
        if cfg is None:
            return 0
        now = self.clock()
        period = cfg.schedule().latest_period(now)
        start, end = period.start.timestamp(), period.end.timestamp()
        if digest_sent(self.store, cfg.every, end):
            return 0
        digest = load_digest(self.store, self.config, period, now, every=cfg.every)
        try:
            subject, text, html = render_digest(digest, self.templates)
        except TemplateError as exc:
            if self._failed != end:  # once per period, not at every tick
                self.log.error("digest_failed", period_end=period.end.isoformat(), error=str(exc))
                self._failed = end
            return 0
        queue = self.config.queues[self.config.default_queue]
        mail = compose_digest(
            text, html, subject, sender=(queue.display_name, queue.address), to=cfg.mail_to,
            message_id=make_msgid(idstring="digest", domain=queue.address.rpartition("@")[2]), now=now,
        )  # fmt: skip
        with self.store.transaction():
            if not claim_digest(self.store, cfg.every, start, end, now.timestamp()):
                return 0  # another instance sent it meanwhile
            outbox_id = self.store.enqueue(mail, None, None, now)
            record_digest_mail(self.store, cfg.every, end, outbox_id)
        metrics.MAIL_QUEUED.labels("digest").inc()
        self.log.info(
            "digest_queued", every=cfg.every, period_start=period.start.isoformat(), period_end=period.end.isoformat(),
            cases=digest.current.total.cases, out_message_id=mail.message_id, rcpt=list(cfg.mail_to),
        )  # fmt: skip
        return 1


def write_html_report(config: Config, path: Path, period: Period, now: datetime, queue: str | None) -> Digest:
    """`mailsvc report --html FILE`: the digest's page for `period`, written to `path`."""
    store = open_store(config.store)
    try:
        digest = load_digest(store, config, period, now, every="report", queue=queue)
    finally:
        store.close()
    _, _, html = render_digest(digest, digest_templates(config))
    path.write_text(html, encoding="utf-8")
    return digest
