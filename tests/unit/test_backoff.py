"""The one backoff helper: capped exponential waits with jitter."""

from mailsvc.backoff import Backoff, backoff_delay


def test_delays_double_up_to_the_cap() -> None:
    top = [backoff_delay(n, 1.0, 60.0, rand=lambda: 1.0) for n in range(9)]
    assert top == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_jitter_stays_between_half_and_the_whole() -> None:
    assert backoff_delay(3, 1.0, 60.0, rand=lambda: 0.0) == 4.0
    assert backoff_delay(10_000, 1.0, 60.0, rand=lambda: 0.0) == 30.0  # no overflow for a long outage


def test_a_run_of_failures_and_a_reset() -> None:
    backoff = Backoff(0.5, 2.0, rand=lambda: 1.0)
    assert not backoff.failing
    assert [backoff.next() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    assert backoff.failing and backoff.failures == 4
    backoff.reset()
    assert backoff.next() == 0.5
