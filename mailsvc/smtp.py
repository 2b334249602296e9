"""The SMTP shell (sender): drains the outbox over a kept connection, and a few more for a large batch.

What an error means is decided by the pure `delivery.next_step`: a failed session (connection, TLS,
greeting, login, 421) holds the whole queue, with one connection attempt per retry; a refusal of a
mail or its recipients fails that mail (5xx) or retries it with backoff (4xx) until it is too old.
A mail keeps its Message-ID across attempts and is never dropped: its row stays in the outbox as
sent or failed. A mail the server accepted is kept in memory until the store has recorded it as
sent, so a store fault never makes it go out twice.

A batch of more than MAILS_PER_SESSION mails is sent over up to `smtp.connections` sessions at once, as
MTAs deliver to one destination: each session records its accepted mail before it sends the next, so a kill
sends at most one mail per session again. The extra sessions open only once the kept one works, and one
the server declines (a connection limit) only narrows the batch: it holds nothing.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import SMTPResponse

from mailsvc import crashpoint, metrics
from mailsvc.backoff import Backoff, backoff_delay
from mailsvc.config_servers import SmtpConfig, TlsMode
from mailsvc.credentials import Credential, CredentialProvider, as_provider
from mailsvc.delivery import Failure, Stage, Step, next_step, over_session_limit
from mailsvc.envelope import NOT_EXPRESSIBLE_CODE, CannotExpress, envelope
from mailsvc.errors import TlsError
from mailsvc.log import get_logger
from mailsvc.model import OutboxState
from mailsvc.scrub import scrub
from mailsvc.status import ServiceStatus, StoreFaults
from mailsvc.store import STORE_ERRORS, OutboxMail, StoreContract

Clock = Callable[[], float]
# The sender looks for mail put back by `mailsvc outbox retry` at least this often (seconds).
SENDER_MAX_SLEEP = 30.0
SMTP_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)
# One more session for every this many mails due at once, up to smtp.connections.
MAILS_PER_SESSION = 10


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
    return f"{type(exc).__name__}: {exc}"


async def greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO to a server that refuses it, unless the session has greeted already."""
    if smtp.is_ehlo_or_helo_needed:
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            await smtp.helo()


async def send_with_envelope(smtp: aiosmtplib.SMTP, mail: OutboxMail) -> tuple[dict[str, SMTPResponse], str]:
    """sendmail with the envelope this server can carry: SMTPUTF8 when it offers it, else IDNA domains.

    An address it cannot carry fails the mail as the server would (553 5.6.7, RFC 6531)."""
    await greet(smtp)
    try:
        env = envelope(mail.mail_from, mail.rcpt_to, mail.raw, smtputf8=smtp.supports_extension("smtputf8"))
    except CannotExpress as exc:
        raise aiosmtplib.SMTPResponseException(NOT_EXPRESSIBLE_CODE, f"5.6.7 {exc}") from exc
    return await smtp.sendmail(env.mail_from, list(env.rcpt_to), mail.raw, mail_options=env.mail_options)


async def _authenticate(smtp: aiosmtplib.SMTP, credential: Credential) -> None:
    if credential.kind == "oauth2":
        await smtp.auth_xoauth2(credential.user, credential.secret)
    elif credential.secret.isascii() and credential.user.isascii():
        await smtp.login(credential.user, credential.secret)
    else:
        await smtp.auth_plain(credential.user, credential.secret)  # UTF-8, RFC 4616


async def smtp_login(smtp: aiosmtplib.SMTP, credentials: CredentialProvider) -> None:
    """Log in with what the provider gives; a refused OAuth2 token is renewed once and tried again.

    A refresh may wait on the identity provider or the token file's lock: it runs in a thread.
    """
    credential = await asyncio.to_thread(credentials.credential)
    try:
        await _authenticate(smtp, credential)
    except aiosmtplib.SMTPAuthenticationError:
        if credential.kind != "oauth2":
            raise
        renewed = await asyncio.to_thread(functools.partial(credentials.credential, renew=True))
        await _authenticate(smtp, renewed)


def session_failure(exc: BaseException) -> Failure:
    """A failure to open a session: connect, TLS, greeting, EHLO or login."""
    stage = Stage.LOGIN if isinstance(exc, aiosmtplib.SMTPAuthenticationError) else Stage.CONNECT
    code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
    return Failure(stage, code, _describe(exc))


def mail_failure(exc: BaseException, reused: bool) -> Failure:
    """A failure inside one mail's transaction (MAIL FROM, RCPT TO, DATA)."""
    code: int | None = None
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
    elif isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        code = min(r.code for r in exc.recipients)  # permanent only when every recipient is refused for good
    return Failure(Stage.MAIL, code, _describe(exc), reused)


class _Session:
    """One SMTP connection of the sender: opened when first needed, kept while it works."""

    def __init__(self) -> None:
        self.smtp: aiosmtplib.SMTP | None = None

    @property
    def open(self) -> bool:
        return self.smtp is not None and self.smtp.is_connected

    def drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
        self.smtp = None

    async def quit(self) -> None:
        if self.open:
            assert self.smtp is not None
            try:
                await self.smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.smtp.close()
        self.smtp = None


class _Extra:
    """The sessions of one drain beside the kept one, and how many the server lets it have at once."""

    def __init__(self, most: int) -> None:
        self.sessions: list[_Session] = []
        self.most = most  # the kept one included; one fewer for each the server declines

    def decline(self, session: _Session) -> None:
        self.sessions.remove(session)
        self.most = max(1, self.most - 1)

    async def quit(self) -> None:
        for session in self.sessions:
            await session.quit()


class _Declined(Exception):
    """An extra session's mail was refused because the server takes no more sessions: the mail is untried."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What became of one mail, until the store records it: SENT (`at` sent), FAILED (`at` failed), or
    QUEUED again (`at` is its next attempt)."""

    mail: OutboxMail
    state: OutboxState
    at: float
    error: str = ""


class Sender:
    def __init__(
        self,
        cfg: SmtpConfig,
        credentials: CredentialProvider | str,
        store: StoreContract,
        clock: Clock = time.time,
        status: ServiceStatus | None = None,
    ) -> None:
        self.cfg = cfg
        self.credentials = as_provider(cfg.user, credentials)
        self.store = store
        self.clock = clock
        self.status = status or ServiceStatus()
        self.log = get_logger(component="sender")
        self._kept = _Session()  # kept between drains; extra sessions live for one drain
        self._tls: ssl.SSLContext | None = None
        self._session = Backoff(cfg.retry_base, cfg.retry_cap)
        self._store = StoreFaults("sender", self.status)
        self.held_until: float | None = None  # the server is unavailable: no attempt before this
        self.store_retry_at: float | None = None  # the store failed: no work before this
        self._unrecorded: dict[int, _Outcome] = {}  # tried, not yet recorded (accepted mail among them)

    async def _connection(self, session: _Session | None = None) -> aiosmtplib.SMTP:
        session = session or self._kept
        if session.open:
            assert session.smtp is not None
            return session.smtp
        cfg = self.cfg
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.effective_port,
            use_tls=cfg.tls is TlsMode.IMPLICIT,
            start_tls=cfg.tls is TlsMode.STARTTLS,
            tls_context=self._tls_context(),
            timeout=cfg.timeout,
        )
        try:
            await smtp.connect()
        except (ssl.SSLError, aiosmtplib.SMTPConnectError) as exc:
            cause = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
            if not isinstance(cause, ssl.SSLError):
                raise
            raise TlsError.handshake(cfg.host, cfg.effective_port, cause) from None
        if cfg.user:
            try:
                await smtp_login(smtp, self.credentials)
            except BaseException:
                smtp.close()
                raise
        session.smtp = smtp
        return smtp

    def _tls_context(self) -> ssl.SSLContext | None:
        """One context for every session of this sender: loading the CA store costs tens of milliseconds."""
        if self.cfg.tls is TlsMode.NONE:
            return None
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=str(self.cfg.ca_file) if self.cfg.ca_file else None)
        return self._tls

    async def close(self) -> None:
        await self._kept.quit()

    async def send_one(self, mail: OutboxMail, session: _Session | None = None) -> bool:
        """One mail over `session` (the kept one by default), with one fresh try when a kept connection was
        closed. True when the server took it.

        Raises nothing for SMTP faults but _Declined, on an extra session the server refuses mail on for its
        session limit; a store fault while recording the outcome is logged and retried."""
        session = session or self._kept
        for _ in range(2):
            reused = session.open
            metrics.SEND_ATTEMPTS.inc()
            try:
                smtp = await self._connection(session)
            except SMTP_ERRORS as exc:
                metrics.send_failed(exc)
                session.drop()
                self._hold(session_failure(exc))
                return False
            self._server_back()
            try:
                refused, _ = await send_with_envelope(smtp, mail)
            except SMTP_ERRORS as exc:
                failure = mail_failure(exc, reused)
                if session is not self._kept and over_session_limit(failure):
                    session.drop()
                    raise _Declined(failure.reason) from exc
                if failure.code is None or failure.code == 421:
                    session.drop()  # gone or going: open a new one next time
                decision = next_step(
                    failure, attempts=mail.attempts, age=self.clock() - mail.created_at,
                    max_age=self.cfg.max_attempts_age,
                )  # fmt: skip
                if decision.step is Step.SEND and reused:
                    continue
                metrics.send_failed(exc, gave_up=decision.why if decision.step is Step.FAIL else None)
                if decision.step is Step.HOLD:
                    self._hold(failure)
                    return False
                self._failed(mail, failure, decision.step, decision.why)
                return False
            crashpoint.reached("smtp_accepted")
            self._accepted(mail, refused)
            return True
        return False

    def _hold(self, failure: Failure) -> None:
        """The server cannot take mail now: every mail waits until the next connection attempt."""
        delay = self._session.next()
        self.held_until = self.clock() + delay
        self.log.warning(
            "smtp_unavailable", stage=failure.stage.value, error=scrub(failure.reason), host=self.cfg.host,
            retry_in_s=round(delay, 1), failures=self._session.failures,
        )  # fmt: skip
        self.status.fault("smtp", f"SMTP unavailable ({failure.stage.value}: {scrub(failure.reason)[:120]}), "
                                  f"mail held, retrying in {delay:.0f}s")  # fmt: skip

    def _server_back(self) -> None:
        if self._session.failing:
            self.log.info("smtp_available", host=self.cfg.host, failures=self._session.failures)
            self._session.reset()
            self.status.clear("smtp")
        self.held_until = None

    def _accepted(self, mail: OutboxMail, refused: dict[str, aiosmtplib.SMTPResponse]) -> None:
        log = self.log.bind(case_id=mail.case_id, message_id=mail.message_id, purpose=mail.purpose)
        for address, response in refused.items():
            log.warning("mail_recipient_refused", recipient=address, error=f"{response.code} {response.message}")
        log.info("mail_sent", rcpt=list(mail.rcpt_to), attempts=mail.attempts + 1)
        metrics.mail_sent(mail.purpose, mail.created_at, self.clock())
        self._unrecorded[mail.id] = _Outcome(mail, OutboxState.SENT, self.clock())
        # At once, before the next mail goes: a kill sends at most this one again.
        self._record()

    def _record(self) -> bool:
        """Record the outcome of every mail tried since the last record (a deferral or failure rides with
        the next accepted mail's record, or the batch's end), in one transaction; False (logged) while
        the store fails: they are kept, and mail the server accepted is never sent again."""
        if not self._unrecorded:
            return True
        outcomes = list(self._unrecorded.values())
        try:
            with self.store.transaction():
                for o in outcomes:
                    if o.state is OutboxState.SENT:
                        self.store.mark_sent(o.mail.id, o.at)
                    elif o.state is OutboxState.FAILED:
                        self.store.mark_failed(o.mail.id, o.error)
                    else:
                        self.store.mark_retry(o.mail.id, o.error, o.at)
        except STORE_ERRORS as exc:
            sent = sum(o.state is OutboxState.SENT for o in outcomes)
            self._store_failed(exc, unrecorded=sent, outcomes=len(outcomes))
            return False
        self._unrecorded.clear()
        if self._store.backoff.failing:
            for o in outcomes:
                if o.state is OutboxState.SENT:
                    self.log.info("mail_sent_recorded", case_id=o.mail.case_id, message_id=o.mail.message_id)
        self._store_back()
        return True

    def _store_failed(self, exc: BaseException, **fields: object) -> None:
        self.store_retry_at = self.clock() + self._store.failed(exc, **fields)

    def _store_back(self) -> None:
        self._store.recovered()
        self.store_retry_at = None

    def _failed(self, mail: OutboxMail, failure: Failure, step: Step, why: str) -> None:
        """A mail's own failure: for good (FAIL) or to retry later (RETRY); recorded with the batch."""
        log = self.log.bind(case_id=mail.case_id, message_id=mail.message_id)
        if step is Step.FAIL:
            self._unrecorded[mail.id] = _Outcome(mail, OutboxState.FAILED, self.clock(), failure.reason)
            log.error("mail_failed", error=failure.reason, attempts=mail.attempts + 1, reason=why)
            return
        delay = backoff_delay(mail.attempts, self.cfg.retry_base, self.cfg.retry_cap)
        self._unrecorded[mail.id] = _Outcome(mail, OutboxState.QUEUED, self.clock() + delay, failure.reason)
        log.warning("mail_deferred", error=failure.reason, attempts=mail.attempts + 1, retry_in_s=round(delay, 1))

    def _waiting(self) -> bool:
        now = self.clock()
        return (self.held_until is not None and now < self.held_until) or (
            self.store_retry_at is not None and now < self.store_retry_at
        )

    async def drain(self) -> int:
        """Send everything due now; returns how many were accepted. Stops early while the server is
        unavailable (held: one failed connection defers the rest) or the store fails (nothing is sent
        that could not be recorded)."""
        sent = 0
        attempted: set[int] = set()
        extra = _Extra(self.cfg.connections)
        try:
            while not self._waiting():
                if not self._record():
                    return sent
                try:
                    due = [m for m in self.store.due_mail(self.clock()) if m.id not in attempted]
                except STORE_ERRORS as exc:
                    self._store_failed(exc)
                    return sent
                self._store_back()
                if not due:
                    return sent
                sent += await self._send_batch(collections.deque(due), attempted, extra)
        finally:
            await extra.quit()
        self._record()
        return sent

    async def _send_batch(self, due: collections.deque[OutboxMail], attempted: set[int], extra: _Extra) -> int:
        """Send `due` over the kept session, joined by up to smtp.connections - 1 more once it works."""
        sent = 0

        async def lane(session: _Session) -> None:
            nonlocal sent
            while due and not self._waiting():
                mail = due.popleft()
                attempted.add(mail.id)
                try:
                    accepted = await self.send_one(mail, session)
                except _Declined as exc:
                    due.appendleft(mail)  # untried: another session, or the next batch, sends it
                    attempted.discard(mail.id)
                    self._declined(session, extra, exc)
                    return
                sent += accepted  # not `sent += await ...`: that reads `sent` before the other lanes add to it

        if not self._kept.open:  # the first mail on its own: extra sessions only to a server that works
            mail = due.popleft()
            attempted.add(mail.id)
            sent = await self.send_one(mail)
        # Sessions already open are used whatever the batch's size.
        width = min(extra.most, max(len(extra.sessions) + 1, -(-len(due) // MAILS_PER_SESSION)))
        if width <= 1 or not due or not self._kept.open or self._waiting():
            await lane(self._kept)
            return sent
        while len(extra.sessions) < width - 1:
            extra.sessions.append(_Session())
        async with asyncio.TaskGroup() as group:
            group.create_task(lane(self._kept))
            for session in extra.sessions[: width - 1]:
                group.create_task(lane(session) if session.open else self._extra_lane(session, extra, lane))
        return sent

    async def _extra_lane(self, session: _Session, extra: _Extra, lane: Callable[[_Session], Awaitable[None]]) -> None:
        """An extra session, opened before it takes a mail: a server that declines it (a connection limit,
        a busy greeting, or its mail refused for the session limit) narrows this drain to the sessions it
        took, and holds nothing."""
        try:
            await greet(await self._connection(session))
        except SMTP_ERRORS as exc:
            session.drop()
            self._declined(session, extra, exc)
            return
        await lane(session)

    def _declined(self, session: _Session, extra: _Extra, exc: BaseException) -> None:
        """The server declined an extra session: this drain goes on with one session fewer."""
        extra.decline(session)
        error = str(exc) if isinstance(exc, _Declined) else _describe(exc)
        self.log.info("smtp_session_declined", error=scrub(error), host=self.cfg.host, sessions=extra.most)

    def next_wake(self) -> float | None:
        """When the sender has something to do next (clock time), or None until woken."""
        if self.store_retry_at is not None:
            return self.store_retry_at
        try:
            next_due = self.store.next_due_at()
        except STORE_ERRORS as exc:
            self._store_failed(exc)
            return self.store_retry_at
        if next_due is not None and self.held_until is not None:
            return max(next_due, self.held_until)
        return next_due

    async def run(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """Drain whenever woken (new mail committed) or a retry falls due, until `stop`."""
        while not stop.is_set():
            wake.clear()
            await self.drain()
            next_at = self.next_wake()
            # Looks again at least every SENDER_MAX_SLEEP: `mailsvc outbox retry` writes to the store only.
            timeout = SENDER_MAX_SLEEP if next_at is None else min(SENDER_MAX_SLEEP, max(0.0, next_at - self.clock()))
            waiters = {asyncio.create_task(wake.wait()), asyncio.create_task(stop.wait())}
            _, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        await self.stop()

    async def stop(self) -> None:
        """The end of this sender: the session closed, every outcome recorded that the store takes, and the
        accepted mail it does not take logged (it will be sent again: its Message-ID lets clients show it once)."""
        await self.close()
        self._record()
        unrecorded = [o.mail.message_id for o in self._unrecorded.values() if o.state is OutboxState.SENT]
        if unrecorded:
            self.log.error("mail_sent_unrecorded", message_ids=unrecorded)
