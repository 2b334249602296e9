"""Private servers on 127.0.0.1 for tests/demo/bench: an SMTP sink that records mail and injects faults."""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import logging
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailsvc.testing.tls import ServerCert

HOST = "127.0.0.1"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Captured:
    """One message the capture accepted (answered 250 to DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received_at: float  # time.time() when DATA completed
    mail_options: tuple[str, ...] = ()  # as given with MAIL FROM, e.g. SMTPUTF8

    @property
    def message(self) -> EmailMessage:
        """`data` parsed, CRLF turned into LF first so get_content() reads like ordinary Python text."""
        return email.message_from_bytes(self.data.replace(b"\r\n", b"\n"), policy=email.policy.default)


@dataclass(frozen=True)
class _Fault:
    kind: Literal["fail", "drop"]
    reply: str = ""
    deliver: bool = False


class SmtpCapture:
    """aiosmtpd on 127.0.0.1 in its own thread; thread-safe to inspect from tests."""

    host = HOST

    def __init__(
        self,
        on_message: Callable[[Captured], None] | None = None,
        *,
        ready_timeout: float = 10.0,
        smtputf8: bool = False,
        tls: ServerCert | None = None,
        implicit_tls: bool = False,
        logins: dict[str, str] | None = None,
    ) -> None:
        self.on_message = on_message
        self.ready_timeout = ready_timeout
        self.smtputf8 = smtputf8  # offer SMTPUTF8 (RFC 6531) in the EHLO answer
        # With `tls`: STARTTLS offered, or TLS from the first byte with implicit_tls.
        self.tls = tls
        self.implicit_tls = implicit_tls
        # With `logins` (user -> password, changeable while running), AUTH is required: 535 for a wrong one.
        self.logins = logins
        self.login_attempts: list[tuple[str, bool]] = []
        # Recipient -> the reply its RCPT TO gets instead of 250 (e.g. "550 5.1.1 no such user").
        self.refused_rcpts: dict[str, str] = {}
        # EHLO answered as usual, refused with 502 as an old or stripped-down server does (HELO still
        # works), or the connection closed instead of an answer.
        self.ehlo: Literal["answer", "refuse", "drop"] = "answer"
        # Sessions open at once beyond this are declined: greeted with 421 and closed, as a server at its connection
        # limit does, or ("mail") greeted and then each MAIL FROM refused with 432, as Microsoft 365 documents.
        self.session_limit: int | None = None
        self.decline_at: Literal["greeting", "mail"] = "greeting"
        self.declined_sessions = 0
        self.port = 0
        self._controller: Controller | None = None
        self._cond = threading.Condition()
        self._messages: list[Captured] = []
        self._faults: collections.deque[_Fault] = collections.deque()
        self._connections = 0
        self._open_sessions = 0

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._controller is not None:
            return
        # A restart keeps the port: the code under test was configured with it.
        fixed = self.port != 0
        for attempt in range(5):
            port = self.port if fixed else _free_port()
            controller = _Controller(self, port)
            try:
                controller.start()
            except OSError:
                controller.loop.close()
                if fixed or attempt == 4:
                    raise
                continue  # another process took the port between our probe and the bind
            self._controller, self.port = controller, port
            break
        with self._cond:
            self._connections = 0  # Controller.start() opened one itself to check the server is up

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[Captured]:
        with self._cond:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """SMTP sessions opened since start() or clear(): tells whether the sender reuses connections."""
        with self._cond:
            return self._connections

    def clear(self) -> None:
        """Forget messages, connection count and pending faults."""
        with self._cond:
            self._messages.clear()
            self._faults.clear()
            self._connections = 0

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Captured]:
        """Block until at least `count` messages arrived; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"expected {count} message(s) within {timeout}s, got {len(self._messages)}")
            return list(self._messages)

    # -- fault injection -------------------------------------------------------------------------------------
    def fail_next(self, n: int, code: int = 451, message: str = "try again later") -> None:
        """Answer the next n DATA commands with `code` (4xx: transient, 5xx: permanent) and keep nothing."""
        if not 400 <= code <= 599:
            raise ValueError(f"fault code must be 4xx or 5xx, not {code}")
        self._add_faults(n, _Fault("fail", reply=f"{code} {message}"))

    def drop_next(self, n: int, *, deliver: bool = False) -> None:
        """Close the connection instead of answering the next n DATA commands.

        With deliver=True the message is recorded first: the "sent but the 250 was lost" case that makes
        a retrying sender deliver twice.
        """
        self._add_faults(n, _Fault("drop", deliver=deliver))

    def _add_faults(self, n: int, fault: _Fault) -> None:
        with self._cond:
            self._faults.extend([fault] * n)

    # -- called in the server thread -------------------------------------------------------------------------
    def _session_opened(self) -> bool:
        """Count a new session; False when it is over `session_limit` (it is then declined)."""
        with self._cond:
            self._connections += 1
            self._open_sessions += 1
            if self.session_limit is not None and self._open_sessions > self.session_limit:
                self.declined_sessions += 1
                return False
            return True

    def _session_closed(self) -> None:
        with self._cond:
            self._open_sessions -= 1

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.logins is None:
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(errors="replace"), data.password.decode(errors="replace")
        ok = self.logins.get(user) == password
        with self._cond:
            self.login_attempts.append((user, ok))
        return AuthResult(success=ok, handled=False)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        if self.ehlo == "refuse":
            return ["502 5.5.1 EHLO not implemented"]
        if self.ehlo == "drop":
            assert server.transport is not None
            server.transport.close()
            return []
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if isinstance(server, _Session) and not server._admitted:
            return "432 4.3.2 Concurrent connections limit exceeded."
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        with self._cond:
            refusal = self.refused_rcpts.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._cond:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.kind == "fail":
            return fault.reply
        if fault is None or fault.deliver:
            self._record(envelope)
        if fault is not None:
            assert server.transport is not None
            server.transport.close()
            # connection_lost() cancels this session's task; waiting here means nothing gets answered.
            await asyncio.sleep(30)
        return "250 OK"

    def _record(self, envelope: Envelope) -> None:
        data = envelope.original_content or b""
        captured = Captured(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
            data=bytes(data),
            received_at=time.time(),
            mail_options=tuple(str(o) for o in envelope.mail_options),
        )
        if self.on_message is not None:
            # Before the waiters wake: whoever saw wait_for() return also sees what the hook recorded.
            try:
                self.on_message(captured)
            except Exception:
                # A broken measuring hook must not turn into an SMTP error the sender would react to.
                log.exception("SmtpCapture on_message callback failed")
        with self._cond:
            self._messages.append(captured)
            self._cond.notify_all()


class _Session(SMTP):
    def __init__(self, capture: SmtpCapture, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._capture = capture

    _admitted = True
    _counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS re-entry
            self._admitted = self._capture._session_opened()
            self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self._capture._session_closed()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if not self._admitted and self._capture.decline_at == "greeting":
            await self.push("421 4.7.0 smtp-capture.localhost Error: too many connections")
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


def _server_context(cert: ServerCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert_file, cert.key_file)
    return context


class _Controller(Controller):
    def __init__(self, capture: SmtpCapture, port: int) -> None:
        tls: dict[str, Any] = {}
        if capture.tls is not None:
            context = _server_context(capture.tls)
            tls = {"ssl_context": context} if capture.implicit_tls else {"tls_context": context}
        # server_hostname avoids socket.getfqdn(), which can stall on a resolver that is slow or absent.
        auth: dict[str, Any] = {}
        if capture.logins is not None:
            # Loopback only, so plain AUTH without TLS is allowed here.
            auth = {"auth_required": True, "auth_require_tls": False, "authenticator": capture._authenticate}
        super().__init__(
            capture,
            hostname=HOST,
            port=port,
            ready_timeout=capture.ready_timeout,
            server_hostname="smtp-capture.localhost",
            enable_SMTPUTF8=capture.smtputf8,
            **tls,
            **auth,
        )
        self._capture = capture

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")  # loopback only
            return _Session(self._capture, self.handler, **self.SMTP_kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])
