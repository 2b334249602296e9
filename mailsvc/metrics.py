"""Metrics (shell): the daemon's figures in Prometheus text format, served on `metrics.listen` (loopback only).

Counters, gauges and histograms are updated where things happen, by one call in each shell (imap, ingest,
smtp, scheduler, daemon); they are kept whether or not a listener serves them, and cost next to nothing.
What the store knows (outbox depth, the oldest queued mail, due timers, cases by status) is read when
scraped, so it is true after a restart too. Names follow Prometheus conventions: `_total` counters,
`_seconds`, and timestamps rather than ages.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from wsgiref.simple_server import WSGIServer

import aiosmtplib
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mailsvc.config_servers import StoreConfig
from mailsvc.errors import StoreError
from mailsvc.log import get_logger
from mailsvc.store import Applied, StoreContract, open_store
from mailsvc.store.figures import store_gauges

log = get_logger(component="metrics")

# A `_created` series beside every counter doubles the text for nothing an alert uses.
disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped in prometheus-client)
REGISTRY = CollectorRegistry()

FETCHED = Counter("mailsvc_messages_fetched", "Messages fetched from IMAP.", ["mailbox"], registry=REGISTRY)
FILED = Counter("mailsvc_messages_filed", "Messages filed into a case.", ["mailbox"], registry=REGISTRY)
QUARANTINED = Counter("mailsvc_messages_quarantined", "Messages quarantined.", ["mailbox"], registry=REGISTRY)
DUPLICATES = Counter(
    "mailsvc_messages_duplicate", "Messages recognised as already processed.", ["mailbox"], registry=REGISTRY
)
LAST_FETCH = Gauge(
    "mailsvc_last_fetch_timestamp_seconds", "When the mailbox was last searched successfully.", ["mailbox"],
    registry=REGISTRY,
)  # fmt: skip
IMAP_CONNECTED = Gauge("mailsvc_imap_connected", "1 while the mailbox is connected.", ["mailbox"], registry=REGISTRY)
IMAP_IDLE = Gauge(
    "mailsvc_imap_idle_connected", "1 while the mailbox is connected and waits with IDLE.", ["mailbox"],
    registry=REGISTRY,
)  # fmt: skip
JUNK = Counter("mailsvc_messages_junk", "Messages filed as junk (their copy goes to the junk folder).", ["mailbox"],
               registry=REGISTRY)  # fmt: skip
JUNK_REASONS = Counter("mailsvc_junk", "Messages filed as junk, by reason.", ["reason"], registry=REGISTRY)
CASES_OPENED = Counter("mailsvc_cases_opened", "Cases opened.", ["queue"], registry=REGISTRY)
MAIL_QUEUED = Counter("mailsvc_mail_queued", "Outgoing mails queued, by purpose.", ["purpose"], registry=REGISTRY)
ACKS_SENT = Counter("mailsvc_acks_sent", "Acknowledgements accepted by the SMTP server.", registry=REGISTRY)
ACKS_SUPPRESSED = Counter(
    "mailsvc_acks_suppressed", "Acknowledgements not sent, by reason.", ["reason"], registry=REGISTRY
)
MAIL_SENT = Counter(
    "mailsvc_mail_sent", "Mails accepted by the SMTP server, by purpose.", ["purpose"], registry=REGISTRY
)
SEND_ATTEMPTS = Counter("mailsvc_send_attempts", "SMTP delivery attempts.", registry=REGISTRY)
SEND_FAILURES = Counter(
    "mailsvc_send_failures", "SMTP delivery attempts that failed, by reason.", ["reason"], registry=REGISTRY
)
MAIL_FAILED = Counter(
    "mailsvc_mail_failed", "Mails given up on (permanent error, or too old to retry).", ["reason"], registry=REGISTRY
)
TIMERS_FIRED = Counter("mailsvc_timers_fired", "Timers that acted, by kind.", ["kind"], registry=REGISTRY)
STORE_ERRORS = Counter(
    "mailsvc_store_errors", "Store operations that failed and were retried, by component.", ["component"],
    registry=REGISTRY,
)  # fmt: skip
OAUTH_REFRESHES = Counter("mailsvc_oauth_refreshes", "OAuth2 token refreshes.", ["account"], registry=REGISTRY)
OAUTH_REFRESH_FAILURES = Counter(
    "mailsvc_oauth_refresh_failures", "OAuth2 token refreshes that failed.", ["account"], registry=REGISTRY
)
ARRIVAL_TO_FILED = Histogram(
    "mailsvc_arrival_to_filed_seconds",
    "From the server's arrival time (INTERNALDATE, whole seconds) to the message being filed.",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
    registry=REGISTRY,
)
FILED_TO_ACK = Histogram(
    "mailsvc_filed_to_ack_sent_seconds",
    "From filing a new request to its acknowledgement being accepted by the SMTP server.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)

# Why an acknowledgement was held back, as a small set of label values: the kind of mail that was not
# answered (auto_reply, bounce, loop, junk), or the automatic-mail guard's reason.
_GUARD_REASONS = (
    ("is bouncing", "bouncing"), ("rate limit", "rate_limit"), ("sender not verified", "unverified"),
    ("no_ack list", "no_ack"), ("allow list", "not_allowed"), ("sender denied", "denied"),
    ("filed as history", "history"), ("case is junk", "junk"),
)  # fmt: skip
# Why a message is junk, as label values: the filter or rule that said so.
_JUNK_REASONS = (
    ("SpamAssassin", "spamassassin"), ("rspamd", "rspamd"), ("sender denied", "denied"),
    ("allow list", "not_allowed"), ("case is junk", "junk_case"),
)  # fmt: skip
_enabled = threading.Event()
_connected: set[str] = set()


# --- the hooks the shells call


def message_handled(mailbox: str, outcome: str) -> None:
    """One message through ingest: `outcome` is filed, junk (filed as junk), quarantined or duplicate."""
    {"filed": FILED, "junk": JUNK, "quarantined": QUARANTINED, "duplicate": DUPLICATES}[outcome].labels(mailbox).inc()


def message_junk(reason: str) -> None:
    """A message filed as junk: which filter or rule said so (a configured header rule counts as `header_rule`)."""
    JUNK_REASONS.labels(next((label for needle, label in _JUNK_REASONS if needle in reason), "header_rule")).inc()


def imap_connected(mailbox: str, *, idle: bool) -> None:
    IMAP_CONNECTED.labels(mailbox).set(1)
    IMAP_IDLE.labels(mailbox).set(1 if idle else 0)
    _connected.add(mailbox)


def imap_disconnected(mailbox: str) -> None:
    IMAP_CONNECTED.labels(mailbox).set(0)
    IMAP_IDLE.labels(mailbox).set(0)
    _connected.discard(mailbox)


def connected_mailboxes() -> frozenset[str]:
    return frozenset(_connected)


def count_applied(applied: Applied) -> None:
    """What one decision did, from the events the store returns: cases opened, mail queued or held, timers."""
    kind = ""
    for event, fields in applied.events:
        if event == "case_opened":
            CASES_OPENED.labels(str(fields.get("queue", ""))).inc()
        elif event == "message_filed":
            kind = str(fields.get("kind", ""))
        elif event == "timer_fired":
            TIMERS_FIRED.labels(str(fields.get("timer", ""))).inc()
        elif event == "ack_suppressed":
            ACKS_SUPPRESSED.labels(suppress_reason(str(fields.get("reason", "")), kind)).inc()
        elif event.endswith("_queued"):
            MAIL_QUEUED.labels(event.removesuffix("_queued")).inc()


def suppress_reason(reason: str, kind: str) -> str:
    for needle, label in _GUARD_REASONS:
        if needle in reason:
            return label
    return kind or "other"


def mail_sent(purpose: str, created_at: float, now: float) -> None:
    """A mail the SMTP server accepted; `created_at` is when it was queued, in the decision that filed its cause."""
    MAIL_SENT.labels(purpose).inc()
    if purpose == "ack":
        ACKS_SENT.inc()
        FILED_TO_ACK.observe(max(0.0, now - created_at))


def send_failed(exc: BaseException, gave_up: str | None = None) -> None:
    """A failed attempt; `gave_up` ("permanent", "too_old") when the mail will not be tried again."""
    SEND_FAILURES.labels(failure_reason(exc)).inc()
    if gave_up:
        MAIL_FAILED.labels(gave_up).inc()


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return f"smtp_{min(r.code for r in exc.recipients) // 100}xx"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"smtp_{exc.code // 100}xx"
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError):
        return "connection"
    return "other"


def observe_arrivals(arrivals: Callable[[Sequence[int]], Mapping[int, datetime]], uids: Sequence[int]) -> None:
    """After a batch is committed: the time from each message's arrival on the server to now.

    Asks the server for INTERNALDATE (one command per batch), so only while metrics are served."""
    if not _enabled.is_set() or not uids:
        return
    filed_at = time.time()
    for arrived in arrivals(uids).values():
        ARRIVAL_TO_FILED.observe(max(0.0, filed_at - arrived.timestamp()))


# --- what the store knows, read at each scrape


class StoreCollector(Collector):
    """Gauges read from the store when scraped; a failed read leaves them out and is logged."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._store: StoreContract | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            try:
                if self._store is None:
                    self._store = open_store(self.config)
                gauges = store_gauges(self._store, time.time())
            except (sqlite3.Error, StoreError) as exc:
                STORE_ERRORS.labels("metrics").inc()
                log.warning("metrics_store_read_failed", error=f"{type(exc).__name__}: {exc}")
                return
        yield GaugeMetricFamily("mailsvc_outbox_queued", "Outgoing mails waiting to be sent.", value=gauges.queued)
        oldest = GaugeMetricFamily(
            "mailsvc_outbox_oldest_queued_timestamp_seconds", "When the oldest mail still waiting was queued."
        )
        if gauges.oldest_queued_at is not None:
            oldest.add_metric([], gauges.oldest_queued_at)
        yield oldest
        yield GaugeMetricFamily("mailsvc_timers_due", "Pending timers whose time has come.", value=gauges.timers_due)
        yield GaugeMetricFamily("mailsvc_timers_pending", "Timers set and not yet ended.", value=gauges.timers_pending)
        cases = GaugeMetricFamily("mailsvc_cases", "Cases by queue and status.", labels=["queue", "status"])
        for (queue, status), n in sorted(gauges.cases.items()):
            cases.add_metric([queue, status], n)
        yield cases

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


# --- the listener


@dataclass(frozen=True)
class MetricsServer:
    """The running listener: where it listens, and what `stop` closes."""

    host: str
    port: int
    httpd: WSGIServer
    collector: StoreCollector

    def stop(self) -> None:
        _enabled.clear()
        self.httpd.shutdown()
        self.httpd.server_close()
        REGISTRY.unregister(self.collector)
        self.collector.close()


def split_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9464' or '[::1]:9464' -> host and port (validated by the configuration)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def serve_metrics(listen: str | None, store: StoreConfig) -> MetricsServer | None:
    """Start the listener when `listen` is set; a listener that cannot start is logged and the daemon goes on."""
    if not listen:
        return None
    host, port = split_listen(listen)
    collector = StoreCollector(store)
    try:
        httpd, _ = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        log.error("metrics_unavailable", listen=listen, error=f"{type(exc).__name__}: {exc}")
        return None
    REGISTRY.register(collector)
    _enabled.set()
    bound = int(httpd.server_address[1])
    log.info("metrics_listening", host=host, port=bound)
    return MetricsServer(host, bound, httpd, collector)
