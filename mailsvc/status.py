"""What the daemon shows in systemd's STATUS= line: faults the components report, else the normal state.

Components (IMAP watchers, the sender, the scheduler, store access) call `fault` while something is
wrong and `clear` once it works again; the daemon hands every changed line to sd_notify.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mailsvc import metrics
from mailsvc.backoff import Backoff
from mailsvc.log import get_logger
from mailsvc.scrub import scrub

# How long a component waits before it tries the store again (growing to the cap), in seconds.
STORE_RETRY_BASE, STORE_RETRY_CAP = 1.0, 30.0
log = get_logger(component="status")


class ServiceStatus:
    """Thread-safe; `publish` is called with each new line (outside the lock's critical decisions)."""

    def __init__(self, publish: Callable[[str], None] = lambda line: None, normal: str = "starting") -> None:
        self._lock = threading.Lock()
        self._publish = publish
        self._normal = normal
        self._faults: dict[str, str] = {}
        self._shown = ""

    def fault(self, component: str, text: str) -> None:
        with self._lock:
            self._faults[component] = text
        self._show()

    def clear(self, component: str) -> None:
        with self._lock:
            if self._faults.pop(component, None) is None:
                return
        self._show()

    def clear_all(self) -> None:
        with self._lock:
            self._faults.clear()
        self._show()

    def set_normal(self, text: str) -> None:
        with self._lock:
            self._normal = text
        self._show()

    @property
    def faults(self) -> dict[str, str]:
        with self._lock:
            return dict(self._faults)

    def line(self) -> str:
        with self._lock:
            if self._faults:
                # Several components may report the same fault (the store): shown once.
                return "; ".join(dict.fromkeys(self._faults[k] for k in sorted(self._faults)))
            return self._normal

    def _show(self) -> None:
        line = self.line()
        with self._lock:
            if line == self._shown:
                return
            self._shown = line
        self._publish(line)


class StoreFaults:
    """One component's run of store failures: `store_unavailable` with the error, the STATUS= line, and
    the wait before the next try (the shared backoff); `recovered()` ends the run (`store_available`)."""

    def __init__(self, component: str, status: ServiceStatus) -> None:
        self.component = component
        self.status = status
        self.backoff = Backoff(STORE_RETRY_BASE, STORE_RETRY_CAP)

    def failed(self, exc: BaseException, **fields: object) -> float:
        """Log and show the failure; returns the seconds to wait before the next try."""
        delay = self.backoff.next()
        metrics.STORE_ERRORS.labels(self.component).inc()
        error = scrub(f"{type(exc).__name__}: {exc}")
        log.warning("store_unavailable", component=self.component, error=error, retry_in_s=round(delay, 1),
                    failures=self.backoff.failures, **fields)  # fmt: skip
        self.status.fault(f"store {self.component}", f"store unavailable ({error[:120]}), retrying")
        return delay

    def recovered(self) -> None:
        if self.backoff.failing:
            log.info("store_available", component=self.component, failures=self.backoff.failures)
            self.backoff.reset()
            self.status.clear(f"store {self.component}")
