"""Delivery policy (pure): after an SMTP attempt failed, what becomes of the mail and of the queue.

The sender (smtp.py) describes what failed as a Failure; `next_step` decides. A failure of the
session (connection, TLS, greeting, login, 421) is the server's state and holds the whole queue;
only a refusal of this mail or its recipients fails the mail.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """Where in the SMTP conversation the failure happened."""

    CONNECT = "connect"  # TCP, TLS, greeting, EHLO, STARTTLS
    LOGIN = "login"
    MAIL = "mail"  # MAIL FROM, RCPT TO, DATA: this mail's transaction


class Step(StrEnum):
    SEND = "send"  # try this mail again now, on a new connection
    RETRY = "retry"  # this mail later, with backoff
    HOLD = "hold"  # the server is unavailable: every mail waits, one connection attempt per retry
    FAIL = "fail"  # this mail, for good


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong: `code` is the SMTP reply code when the server answered, None when it did not
    (refused, timed out, dropped). `reused`: the connection had been kept from an earlier mail."""

    stage: Stage
    code: int | None
    reason: str
    reused: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    why: str


def next_step(failure: Failure, *, attempts: int, age: float, max_age: float) -> Decision:
    """`attempts`: this mail's failed attempts before this one; `age`: seconds since it was queued."""
    if failure.stage is not Stage.MAIL:
        return Decision(Step.HOLD, f"{failure.stage.value} failed")
    if failure.code == 421:
        return Decision(Step.HOLD, "the server is closing the session")
    if failure.code is None and failure.reused:
        # A server may close a connection we kept idle; that says nothing about this mail.
        return Decision(Step.SEND, "the kept connection was closed")
    if failure.code is not None and failure.code >= 500:
        return Decision(Step.FAIL, "permanent")
    if age > max_age:
        return Decision(Step.FAIL, "too_old")
    return Decision(Step.RETRY, "transient" if failure.code is not None else "no answer")


def over_session_limit(failure: Failure) -> bool:
    """The reply says the server takes no more sessions at once, not that this mail is wrong: Microsoft 365
    documents `432 4.3.2 Concurrent connections limit exceeded` for mail beyond three sessions per mailbox
    (4.3.2, RFC 3463: system not accepting network messages). On an extra session of a batch it narrows
    the batch; on the kept session it is a transient refusal like any other. A 421 is the server closing:
    it holds the queue, whatever its text."""
    code = failure.code
    if failure.stage is not Stage.MAIL or code is None or code == 421 or not 400 <= code < 500:
        return False
    return code == 432 or failure.reason.split()[1:2] == ["4.3.2"]
