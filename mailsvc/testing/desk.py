"""The daemon's parts on one store, driven step by step on a clock the test moves (tests of timers, digests,
expectations, unverified senders): deliver to the private Dovecot, ingest, fire timers, send to the capture."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from mailsvc.config import Config, load_config
from mailsvc.imap import ImapSource
from mailsvc.ingest import Pipeline, ingest_pass
from mailsvc.report import Figures, build_report
from mailsvc.scheduler import Scheduler
from mailsvc.smtp import Sender
from mailsvc.store import Store
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import sandbox_config, write_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture

# A Wednesday morning, so three days later is a working day too.
START = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


class Clock:
    """The time every part of the desk reads; only the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def desk_config(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, *, sections: Mapping[str, Any] | None = None, **queue: Any
) -> Config:
    """The sandbox configuration with Bob as staff of the help queue, a trusted mx.example.org and a reply-token
    key; `queue` adds keys to the help queue, `sections` adds top-level sections (report, ...)."""
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db",
        trust={"authserv_ids": ["mx.example.org"], "token_key": "test-token-key-0123456789"},
    )  # fmt: skip
    raw["queues"]["help"]["staff"] = [{"address": "bob@example.org", "name": "Bob Staff"}]
    raw["queues"]["help"].update(queue)
    raw.update(sections or {})
    return load_config(write_config(tmp_path / "mailsvc.yaml", raw))


class Desk:
    """The daemon's parts on one store, driven step by step: deliver, ingest, fire timers, send.

    As a context manager, it is stopped for good on the way out."""

    def __init__(self, config: Config, mailbox: Mailbox, smtp: SmtpCapture, clock: Clock) -> None:
        self.config, self.mailbox, self.smtp, self.clock = config, mailbox, smtp, clock
        self.loop = asyncio.new_event_loop()  # the sender's SMTP connection lives on one loop
        self.start()

    def __enter__(self) -> Desk:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop(final=True)

    def start(self) -> None:
        """(Re)start: fresh connections and objects over the same store file, as after a restart."""
        path = self.config.store.path
        if path is None:
            raise ValueError("a desk runs on a SQLite store: store.path is not set")
        self.store = Store.open(path)
        self.pipeline = Pipeline(self.config, self.store, clock=self.clock)
        self.scheduler = Scheduler(self.pipeline)
        self.sender = Sender(self.config.smtp, "", self.store, clock=lambda: self.clock().timestamp())

    def stop(self, *, final: bool = False) -> None:
        self.loop.run_until_complete(self.sender.close())
        self.store.close()
        if final:
            self.loop.close()

    def deliver(self, *raws: bytes) -> None:
        for raw in raws:
            self.mailbox.append(raw)
        source = ImapSource(self.config.imap, self.mailbox.password)
        source.connect()
        try:
            ingest_pass(source, self.pipeline)
        finally:
            source.close()
        self.send()

    def tick(self) -> None:
        self.scheduler.tick()
        self.send()

    def send(self) -> None:
        self.loop.run_until_complete(self.sender.drain())

    def take(self) -> list[Captured]:
        """The mail sent since the last take."""
        got = list(self.smtp.messages)
        self.smtp.clear()
        return got

    def case(self, case_id: int = 1) -> Any:
        return self.store.db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()

    def timers(self, case_id: int = 1) -> list[tuple[str, str]]:
        return [(r.kind, r.state) for r in self.store.case_timers(case_id)]

    def report(self) -> Figures:
        """What `mailsvc report` would show for everything in the store."""
        cases = self.store.report_cases(0)
        failed = self.store.report_failed_mail(0)
        return build_report(cases, failed, now=self.clock(), since=datetime(2000, 1, 1, tzinfo=UTC)).total

    def purposes(self, mails: list[Captured]) -> list[str]:
        """What each mail is, as the outbox recorded it (its purpose), found by Message-ID."""
        query = "SELECT purpose FROM outbox WHERE message_id = ?"
        return [self.store.db.execute(query, (m.message["Message-ID"],)).fetchone()["purpose"] for m in mails]
