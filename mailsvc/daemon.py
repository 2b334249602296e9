"""The daemon: wires the IMAP sources, the ingest pipeline, the scheduler and the sender, and keeps them running.

Each watched folder has a worker thread (imapclient blocks), the scheduler has
one, and the sender runs on the event loop, woken the moment a batch commits.
SIGTERM and SIGINT finish the work in hand and exit 0; SIGHUP reloads the
configuration and templates, and a bad new one is refused while the old one
keeps running. Under systemd: READY=1, STATUS= lines, and watchdog pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mailsvc import metrics
from mailsvc.backoff import Backoff
from mailsvc.config import Config, MailboxSpec, load_config
from mailsvc.credentials import mailbox_credentials, provider_for
from mailsvc.errors import ConfigError, MailsvcError, OAuthError
from mailsvc.imap import IMAP_ERRORS, ImapSource
from mailsvc.ingest import Pipeline, ingest_pass
from mailsvc.log import get_logger
from mailsvc.metrics import serve_metrics
from mailsvc.scheduler import Scheduler
from mailsvc.scrub import scrub
from mailsvc.sending import Sending
from mailsvc.smtp import Sender
from mailsvc.status import ServiceStatus, StoreFaults
from mailsvc.statusline import status_line
from mailsvc.store import STORE_ERRORS, Store, store_path_problem
from mailsvc.store import open_store as open_configured_store
from mailsvc.store.figures import last_mail_at, store_gauges
from mailsvc.templatecheck import check_config_templates

log = get_logger(component="daemon")

# The scheduler looks at least this often (seconds) for failed mail to report.
SCHEDULER_MAX_SLEEP = 30.0
# How often the STATUS= line is brought up to date (seconds).
STATUS_INTERVAL = 5.0


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) how we are; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc))


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec, when it is set for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.1, int(usec) / 2_000_000)
    except ValueError:
        return None


def load_service_config(path: Path) -> Config:
    """The configuration, every queue's templates and the store's path, checked: what start-up and reload accept."""
    config = load_config(path)
    problems = [(f"{p.file}:{p.line or '?'}", p.message) for p in check_config_templates(config)]
    store_problem = store_path_problem(config.store.path) if config.store.path is not None else None
    if store_problem is not None:
        problems.append(("store.path", store_problem))
    if problems:
        raise ConfigError(problems)
    return config


def open_store(config: Config) -> Store:
    return open_configured_store(config.store)


def open_source(spec: MailboxSpec, config: Config, notify: Callable[[], None] | None = None) -> ImapSource:
    return ImapSource(spec.imap, mailbox_credentials(config, spec, notify), key=spec.key, queue=spec.queue)


def run_once(config: Config) -> int:
    """One pass over every mailbox and the timers due, and the mail that is due sent; for cron and tests.

    The mail is sent once the folders are filed, or for a backlog while they are (mailsvc/sending.py).
    Returns 1 when a server was unavailable; a store fault propagates (the CLI prints one line, exit 1)."""
    sending = Sending(config)
    try:
        failed = _file_all(config, sending)
    except BaseException:
        sending.finish(here=False)  # a sender process sends what was committed; none is started now
        raise
    sent = sending.finish()
    return 1 if failed or not sent else 0


def _file_all(config: Config, sending: Sending) -> int:
    """Every mailbox's waiting mail filed, then the timers due fired; returns how many servers failed."""
    store = open_store(config)
    pipeline = Pipeline(config, store)
    failed = 0
    try:
        for spec in config.mailboxes():
            source = open_source(spec, config)
            try:
                source.connect()
                to_file = functools.partial(sending.to_file, batch=spec.imap.fetch_batch)
                result = ingest_pass(source, pipeline, sending.wake, to_file)
            except IMAP_ERRORS as exc:
                log.error("imap_failed", error=scrub(f"{type(exc).__name__}: {exc}"), host=spec.imap.host,
                          folder=spec.key)  # fmt: skip
                failed += 1
                continue
            finally:
                source.close()
            log.info(
                "pass_finished", folder=spec.key, filed=result.filed, quarantined=result.quarantined,
                duplicates=result.duplicates, moved=result.moved, junk=result.junk, history=result.history,
                skipped=result.skipped,
            )  # fmt: skip
        tick = Scheduler(pipeline).tick()
        log.info("timers_checked", timers=tick.timers, mails=tick.mails, notices=tick.notices)
    finally:
        store.close()
    return failed


class _Ready:
    """READY=1 once, when the first mailbox is connected."""

    def __init__(self, status: ServiceStatus) -> None:
        self._lock = threading.Lock()
        self.sent = False
        self.status = status

    def connected(self, folder: str) -> None:
        with self._lock:
            if not self.sent:
                sd_notify("READY=1\nSTATUS=watching " + folder)
                self.status.set_normal("watching " + folder)
                self.sent = True


def watch_mailbox(
    config: Config,
    spec: MailboxSpec,
    stop: threading.Event,
    committed: Callable[[], None],
    ready: _Ready,
) -> None:
    """Ingest one folder until `stop`: connect, pass, wait (IDLE or poll), pass... reconnecting on failure.

    A store fault is a state like a server fault: logged, shown, waited out with backoff, then tried again."""
    status = ready.status
    faults = StoreFaults(f"imap {spec.key}", status)
    backoff = Backoff(spec.imap.retry_base, spec.imap.retry_cap)
    store: Store | None = None
    pipeline: Pipeline | None = None
    from mailsvc.instances import lease_for  # noqa: PLC0415 (psycopg: not imported by `mailsvc once`)

    # With PostgreSQL, only the instance holding the mailbox's lease watches it; `lost` ends its IDLE at once.
    lease = lease_for(config.store, spec.key, stop)
    while lease.acquire(stop):
        source = open_source(spec, config, committed)
        try:
            if store is None or pipeline is None:
                store = open_store(config)
                pipeline = Pipeline(config, store)
            source.connect()
            log.info("imap_connected", host=spec.imap.host, folder=source.mailbox, uidvalidity=source.uidvalidity,
                     idle="IDLE" in source.capabilities and spec.imap.idle, queue=spec.queue)  # fmt: skip
            status.clear(f"imap {spec.key}")
            ready.connected(source.mailbox)
            metrics.imap_connected(source.mailbox, idle="IDLE" in source.capabilities and spec.imap.idle)
            while not lease.lost.is_set():
                result = ingest_pass(source, pipeline, committed)
                faults.recovered()
                # Only a whole pass proves the server works: one that takes logins and fails
                # every pass is retried with growing delays too.
                backoff.reset()
                if result.filed or result.quarantined or result.duplicates or result.moved:
                    log.info("pass_finished", folder=source.mailbox, filed=result.filed,
                             quarantined=result.quarantined, duplicates=result.duplicates,
                             moved=result.moved, junk=result.junk, history=result.history)  # fmt: skip
                    # Mail that arrived during this pass may have been announced in a
                    # SEARCH or MOVE response, which IDLE will not repeat: look again first.
                    continue
                source.wait_for_mail(lease.lost)
        except STORE_ERRORS as exc:
            stop.wait(faults.failed(exc))
        except IMAP_ERRORS as exc:
            delay = backoff.next()
            metrics.imap_disconnected(spec.key)
            log.warning("imap_disconnected", folder=spec.key, error=scrub(f"{type(exc).__name__}: {exc}"),
                        retry_in_s=round(delay, 1))  # fmt: skip
            if isinstance(exc, OAuthError) and exc.permanent:  # retrying will not help: someone must sign in
                status.fault(f"imap {spec.key}", f"cannot log in to {spec.key} ({exc.code}): run mailsvc oauth login")
            else:
                status.fault(f"imap {spec.key}", f"IMAP unavailable ({spec.key}), retrying in {delay:.0f}s")
            stop.wait(delay)
        finally:
            source.close()
        if lease.lost.is_set() and not stop.is_set():
            log.info("mailbox_watch_stopped", folder=spec.key, reason="lock lost")
    lease.release()
    metrics.imap_disconnected(spec.key)
    if store is not None:
        store.close()


def watch_timers(
    config: Config, stop: threading.Event, wake: threading.Event, sent: Callable[[], None], status: ServiceStatus
) -> None:
    """Fire timers when due (and look for failed mail to report) until `stop`; `wake` after new timers."""
    faults = StoreFaults("scheduler", status)
    store: Store | None = None
    while not stop.is_set():
        wake.clear()
        try:
            if store is None:
                store = open_store(config)
                scheduler = Scheduler(Pipeline(config, store))
            result = scheduler.tick()
            next_at = store.next_timer_at()
        except STORE_ERRORS as exc:  # e.g. busy beyond the timeout, disk full
            stop.wait(faults.failed(exc))
            continue
        faults.recovered()
        if result.mails:
            sent()
        sleep = SCHEDULER_MAX_SLEEP
        if next_at is not None:
            sleep = min(sleep, max(0.0, next_at.timestamp() - time.time()))
        wake.wait(sleep)
    if store is not None:
        store.close()


async def run_sender(
    config: Config, status: ServiceStatus, wake: asyncio.Event, stop: asyncio.Event, notify: Callable[[], None]
) -> None:
    """The sender on its own store, opened (and reopened) with the same patience as every component."""
    faults = StoreFaults("sender", status)
    while not stop.is_set():
        try:
            store = await asyncio.to_thread(open_store, config)
        except STORE_ERRORS as exc:
            delay = faults.failed(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        faults.recovered()
        break
    else:
        return
    try:
        store.relax_durability()
        sender = Sender(config.smtp, provider_for(config, "smtp", notify), store, status=status)
        await sender.run(wake, stop)
    finally:
        store.close()


class Generation:
    """The running parts for one configuration; a reload replaces the whole generation."""

    def __init__(self, config: Config, ready: _Ready) -> None:
        self.config = config
        self.ready = ready
        self.status = ready.status
        self.stop_threads = threading.Event()
        self.timer_wake = threading.Event()
        self.stop_sender = asyncio.Event()
        self.sender_wake = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config

        def wake_sender() -> None:
            loop.call_soon_threadsafe(self.sender_wake.set)

        def committed() -> None:
            wake_sender()
            self.timer_wake.set()  # the batch may have set timers earlier than the scheduler's sleep

        sender = run_sender(config, self.status, self.sender_wake, self.stop_sender, wake_sender)
        self.tasks.add(asyncio.create_task(sender, name="sender"))
        for spec in config.mailboxes():
            thread = asyncio.to_thread(watch_mailbox, config, spec, self.stop_threads, committed, self.ready)
            self.tasks.add(asyncio.create_task(thread, name=f"imap {spec.key}"))
        thread = asyncio.to_thread(watch_timers, config, self.stop_threads, self.timer_wake, wake_sender, self.status)
        self.tasks.add(asyncio.create_task(thread, name="scheduler"))
        if config.store.url is not None:
            # Other instances' new mail and timers wake this one's sender and scheduler.
            from mailsvc.instances import listen  # noqa: PLC0415 (psycopg only with a PostgreSQL store)

            thread = asyncio.to_thread(listen, config.store, self.stop_threads, wake_sender, self.timer_wake.set)
            self.tasks.add(asyncio.create_task(thread, name="listener"))

    @property
    def healthy(self) -> bool:
        return all(not t.done() for t in self.tasks)

    async def wait_failed(self) -> None:
        await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)

    async def stop(self) -> list[BaseException]:
        """Finish the work in hand and stop; returns what crashed."""
        self.stop_threads.set()
        self.timer_wake.set()
        self.stop_sender.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        crashed = []
        for task in self.tasks:
            exc = task.exception()
            if exc is not None:
                log.error("component_failed", component=task.get_name(), error=scrub(f"{type(exc).__name__}: {exc}"))
                crashed.append(exc)
        self.status.clear_all()
        return crashed


async def _watchdog(interval: float, generation: Callable[[], Generation]) -> None:
    """Ping systemd while the event loop runs and every part of the daemon is alive."""
    while True:
        if generation().healthy:
            sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def serve(config: Config, reload: Callable[[], Config] | None = None) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    reloading = asyncio.Event()

    def request_stop(signame: str) -> None:
        log.info("shutdown_requested", signal=signame)
        sd_notify("STOPPING=1")
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig.name)
    loop.add_signal_handler(signal.SIGHUP, reloading.set)

    ready = _Ready(ServiceStatus(lambda line: sd_notify("STATUS=" + line)))
    exporter = serve_metrics(config.metrics.listen if config.metrics else None, config.store)
    current = Generation(config, ready)
    current.start()
    log.info("daemon_started", pid=os.getpid(), queues=list(config.queues), folders=[m.key for m in config.mailboxes()])
    interval = watchdog_interval()
    watchdog = asyncio.create_task(_watchdog(interval, lambda: current)) if interval else None
    status = asyncio.create_task(_status_updates(lambda: current)) if os.environ.get("NOTIFY_SOCKET") else None
    while True:
        waiters = {
            asyncio.create_task(stopping.wait()),
            asyncio.create_task(reloading.wait()),
            asyncio.create_task(current.wait_failed()),
        }
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if stopping.is_set() or not current.healthy or not reloading.is_set():
            break
        reloading.clear()
        new = _reloaded(reload)
        if new is None or not _can_run(new):
            continue
        sd_notify("RELOADING=1")
        crashed = await current.stop()
        current = Generation(new, ready)
        current.start()
        log.info("config_reloaded", queues=list(new.queues), previous_failures=len(crashed))
        sd_notify("READY=1\nSTATUS=configuration reloaded")
    failed = not stopping.is_set()
    crashed = await current.stop()
    if watchdog is not None:
        watchdog.cancel()
    if status is not None:
        status.cancel()
    if exporter is not None:
        exporter.stop()
    log.info("daemon_stopped")
    return 1 if failed or crashed else 0


def normal_status(config: Config) -> str | None:
    """The normal STATUS= line, or None while a watched mailbox is not connected (its fault line stays)."""
    keys = [m.key for m in config.mailboxes()]
    if not set(keys) <= metrics.connected_mailboxes():
        return None
    store = open_store(config)
    try:
        queued = store_gauges(store, time.time()).queued
        last = last_mail_at(store)
    finally:
        store.close()
    return status_line(len(keys), queued, last, time.time())


async def _status_updates(generation: Callable[[], Generation]) -> None:
    """Keep systemd's status line current: mailboxes, outbox, the age of the last mail."""
    while True:
        await asyncio.sleep(STATUS_INTERVAL)
        try:
            line = await asyncio.to_thread(normal_status, generation().config)
        except (sqlite3.Error, MailsvcError) as exc:
            log.warning("status_update_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        if line is not None:
            generation().status.set_normal(line)  # shown unless a fault is


def _reloaded(reload: Callable[[], Config] | None) -> Config | None:
    """The new configuration, or None (logged) when there is none or it is bad: the old one stays."""
    if reload is None:
        log.warning("config_reload_refused", reason="no configuration file to reload")
        return None
    try:
        return reload()
    except ConfigError as exc:
        log.error("config_reload_refused", problems=[f"{path}: {reason}" for path, reason in exc.problems])
    except MailsvcError as exc:
        log.error("config_reload_refused", problems=[str(exc)])
    except Exception as exc:
        # Escaping serve() here would leave the running generation's threads behind, hanging the process.
        log.error("config_reload_refused", problems=[scrub(f"{type(exc).__name__}: {exc}")])
    return None


def _can_run(config: Config) -> bool:
    """Whether the new configuration's store opens (created and migrated if new), checked while the old
    generation still runs: a reload must not stop a working daemon for a setup that cannot start."""
    try:
        open_store(config).close()
    except STORE_ERRORS as exc:
        log.error("config_reload_refused", problems=[scrub(f"store.{'path' if config.store.path else 'url'}: {exc}")])
        return False
    return True


def run_forever(config: Config, path: Path | None = None) -> int:
    reload = (lambda: load_service_config(path)) if path is not None else None
    return asyncio.run(serve(config, reload))
