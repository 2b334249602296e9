"""The SMTP shell (sender): drains the outbox over one reused connection.

Transient failures (4xx, timeouts, refused or dropped connections) are retried
with capped exponential backoff and jitter until the mail is too old; 5xx fails
at once. A mail keeps its Message-ID across attempts and is never dropped: its
row stays in the outbox as sent or failed.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Callable

import aiosmtplib

from mailsvc import metrics
from mailsvc.config import SmtpConfig, TlsMode
from mailsvc.log import get_logger
from mailsvc.store import OutboxMail, Store

Clock = Callable[[], float]


def retry_delay(attempts: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter: spread retries so a recovered server is not stormed."""
    ceiling: float = min(cap, base * 2 ** max(0, attempts))
    return ceiling * (0.5 + rand() / 2)


def is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(r.code >= 500 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code >= 500
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class Sender:
    def __init__(self, cfg: SmtpConfig, password: str, store: Store, clock: Clock = time.time) -> None:
        self.cfg = cfg
        self._password = password
        self.store = store
        self.clock = clock
        self.log = get_logger(component="sender")
        self._smtp: aiosmtplib.SMTP | None = None

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        cfg = self.cfg
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.effective_port,
            use_tls=cfg.tls is TlsMode.IMPLICIT,
            start_tls=cfg.tls is TlsMode.STARTTLS,
            tls_context=context if cfg.tls is not TlsMode.NONE else None,
            timeout=cfg.timeout,
        )
        await smtp.connect()
        if cfg.user:
            await smtp.login(cfg.user, self._password)
        self._smtp = smtp
        return smtp

    async def close(self) -> None:
        if self._smtp is not None and self._smtp.is_connected:
            try:
                await self._smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                self._smtp.close()
        self._smtp = None

    async def send_one(self, mail: OutboxMail) -> bool:
        """One attempt; records the outcome in the store. True when the server took it."""
        log = self.log.bind(case_id=mail.case_id, message_id=mail.message_id, purpose=mail.purpose)
        metrics.SEND_ATTEMPTS.inc()
        try:
            try:
                reused = self._smtp is not None and self._smtp.is_connected
                smtp = await self._connection()
                refused, _ = await smtp.sendmail(mail.mail_from, list(mail.rcpt_to), mail.raw)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                if not reused:
                    raise
                # The server closed an idle connection we kept: one fresh try before deferring.
                self._smtp = None
                smtp = await self._connection()
                refused, _ = await smtp.sendmail(mail.mail_from, list(mail.rcpt_to), mail.raw)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return self._failed(mail, exc)
        self.store.mark_sent(mail.id, self.clock())
        metrics.mail_sent(mail.purpose, mail.created_at, self.clock())
        for address, response in refused.items():
            log.warning("mail_recipient_refused", recipient=address, error=f"{response.code} {response.message}")
        log.info("mail_sent", rcpt=list(mail.rcpt_to), attempts=mail.attempts + 1)
        return True

    def _failed(self, mail: OutboxMail, exc: BaseException) -> bool:
        error = _describe(exc)
        if not isinstance(exc, aiosmtplib.SMTPResponseException) or exc.code in (421,):
            self._smtp = None  # the connection is gone or going: open a new one next time
        now = self.clock()
        too_old = now - mail.created_at > self.cfg.max_attempts_age
        if is_permanent(exc) or too_old:
            self.store.mark_failed(mail.id, error)
            metrics.send_failed(exc, gave_up="permanent" if is_permanent(exc) else "too_old")
            self.log.error(
                "mail_failed", case_id=mail.case_id, message_id=mail.message_id, error=error,
                attempts=mail.attempts + 1, reason="permanent" if is_permanent(exc) else "too_old",
            )  # fmt: skip
            return False
        delay = retry_delay(mail.attempts, self.cfg.retry_base, self.cfg.retry_cap)
        self.store.mark_retry(mail.id, error, now + delay)
        metrics.send_failed(exc)
        self.log.warning(
            "mail_deferred", case_id=mail.case_id, message_id=mail.message_id, error=error,
            attempts=mail.attempts + 1, retry_in_s=round(delay, 1),
        )  # fmt: skip
        return False

    async def drain(self) -> int:
        """Send everything due now; returns how many were accepted."""
        sent = 0
        attempted: set[int] = set()
        while True:
            due = [m for m in self.store.due_mail(self.clock()) if m.id not in attempted]
            if not due:
                return sent
            for mail in due:
                attempted.add(mail.id)
                sent += await self.send_one(mail)

    async def run(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """Drain whenever woken (new mail committed) or a retry falls due, until `stop`."""
        while not stop.is_set():
            wake.clear()
            await self.drain()
            next_due = self.store.next_due_at()
            timeout = None if next_due is None else max(0.0, next_due - self.clock())
            waiters = {asyncio.create_task(wake.wait()), asyncio.create_task(stop.wait())}
            _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        await self.close()
