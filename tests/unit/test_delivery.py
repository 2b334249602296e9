"""The retry decision: what a failed SMTP attempt means for the mail and for the queue."""

import pytest

from mailsvc.delivery import Failure, Stage, Step, next_step, over_session_limit

DAY = 86400.0


def step(failure: Failure, attempts: int = 0, age: float = 60.0) -> Step:
    return next_step(failure, attempts=attempts, age=age, max_age=2 * DAY).step


@pytest.mark.parametrize(
    "failure",
    [
        Failure(Stage.LOGIN, 535, "535 5.7.8 authentication failed"),
        Failure(Stage.CONNECT, None, "ConnectionRefusedError"),
        Failure(Stage.CONNECT, None, "SSLCertVerificationError"),
        Failure(Stage.CONNECT, 554, "554 no service"),
        Failure(Stage.CONNECT, 421, "421 too busy"),
        Failure(Stage.CONNECT, None, "SMTPConnectTimeoutError"),
        Failure(Stage.MAIL, 421, "421 shutting down"),
    ],
)
def test_session_failures_hold_the_queue_whatever_the_code_or_age(failure: Failure) -> None:
    assert step(failure) is Step.HOLD
    assert step(failure, attempts=50, age=30 * DAY) is Step.HOLD


def test_a_refusal_of_the_mail_fails_it_at_once() -> None:
    assert step(Failure(Stage.MAIL, 550, "550 5.1.1 no such user")) is Step.FAIL
    assert step(Failure(Stage.MAIL, 554, "554 message rejected")) is Step.FAIL


def test_a_transient_refusal_is_retried_until_the_mail_is_too_old() -> None:
    greylisted = Failure(Stage.MAIL, 451, "451 greylisted")
    assert step(greylisted, attempts=3) is Step.RETRY
    decision = next_step(greylisted, attempts=3, age=3 * DAY, max_age=2 * DAY)
    assert (decision.step, decision.why) == (Step.FAIL, "too_old")


def test_a_dropped_kept_connection_is_tried_again_at_once_and_only_then() -> None:
    assert step(Failure(Stage.MAIL, None, "SMTPServerDisconnected", reused=True)) is Step.SEND
    assert step(Failure(Stage.MAIL, None, "SMTPServerDisconnected", reused=False)) is Step.RETRY
    assert step(Failure(Stage.MAIL, None, "SMTPReadTimeoutError", reused=False), age=3 * DAY) is Step.FAIL


@pytest.mark.parametrize(
    ("failure", "over"),
    [
        (Failure(Stage.MAIL, 432, "432 4.3.2 Concurrent connections limit exceeded."), True),
        (Failure(Stage.MAIL, 451, "451 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"), True),
        (Failure(Stage.MAIL, 451, "451 4.7.1 greylisted, try again later"), False),
        (Failure(Stage.MAIL, 421, "421 4.3.2 shutting down"), False),
        (Failure(Stage.MAIL, 550, "550 4.3.2 odd, but permanent"), False),
        (Failure(Stage.MAIL, None, "SMTPServerDisconnected: gone"), False),
        (Failure(Stage.CONNECT, 432, "432 4.3.2 Concurrent connections limit exceeded."), False),
    ],
)
def test_a_server_over_its_session_limit_is_told_from_a_refused_mail(failure: Failure, over: bool) -> None:
    assert over_session_limit(failure) is over
