"""Backoff (pure): the one schedule of waits between retries, for IMAP reconnects, SMTP and a busy store.

Capped exponential delays with jitter, so many clients do not storm a server that has just recovered.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(failures: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """The wait after `failures` failures in a row (0: the first): base * 2**failures, capped, times 0.5..1."""
    ceiling: float = min(cap, base * 2 ** min(max(0, failures), 64))
    return ceiling * (0.5 + rand() / 2)


class Backoff:
    """A run of failures: `next()` after each one gives the wait, `reset()` after a success."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, rand: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.failures = base, cap, 0
        self._rand = rand

    def next(self) -> float:
        delay = backoff_delay(self.failures, self.base, self.cap, self._rand)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0

    @property
    def failing(self) -> bool:
        return self.failures > 0
