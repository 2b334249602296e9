"""The daemon: wires the IMAP source, the ingest pipeline and the sender, and keeps them running.

The mailbox is watched in a worker thread (imapclient blocks); the sender runs
on the event loop and is woken the moment a batch commits. SIGTERM and SIGINT
finish the work in hand and exit 0.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import threading
from collections.abc import Callable

from mailsvc.config import Config
from mailsvc.imap import IMAP_ERRORS, ImapSource
from mailsvc.ingest import Pipeline, ingest_pass
from mailsvc.log import get_logger
from mailsvc.smtp import Sender
from mailsvc.store import Store

log = get_logger(component="daemon")


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


class Backoff:
    """Capped exponential delays with jitter for reconnecting."""

    def __init__(self, first: float = 1.0, cap: float = 60.0) -> None:
        self.first, self.cap, self.failures = first, cap, 0

    def next(self) -> float:
        delay: float = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return delay * (0.5 + random.random() / 2)

    def reset(self) -> None:
        self.failures = 0


def open_source(config: Config) -> ImapSource:
    return ImapSource(config.imap, config.imap.secret())


def run_once(config: Config) -> int:
    """One pass over the mailbox, then send what is due; for cron and tests."""
    store = Store.open(config.store.path)
    source = open_source(config)
    try:
        source.connect()
        result = ingest_pass(source, Pipeline(config, store))
    except IMAP_ERRORS as exc:
        log.error("imap_failed", error=f"{type(exc).__name__}: {exc}", host=config.imap.host)
        return 1
    finally:
        source.close()
    log.info(
        "pass_finished", filed=result.filed, quarantined=result.quarantined,
        duplicates=result.duplicates, moved=result.moved,
    )  # fmt: skip
    sender = Sender(config.smtp, config.smtp.secret(), store)

    async def drain() -> int:
        try:
            return await sender.drain()
        finally:
            await sender.close()

    asyncio.run(drain())
    store.close()
    return 0


def watch_mailbox(config: Config, stop: threading.Event, committed: Callable[[], None]) -> None:
    """Ingest until `stop`: connect, pass, wait (IDLE or poll), pass... reconnecting on failure."""
    store = Store.open(config.store.path)
    pipeline = Pipeline(config, store)
    backoff = Backoff()
    ready = False
    while not stop.is_set():
        source = open_source(config)
        try:
            source.connect()
            log.info("imap_connected", host=config.imap.host, folder=source.mailbox, uidvalidity=source.uidvalidity,
                     idle="IDLE" in source.capabilities and config.imap.idle)  # fmt: skip
            if not ready:
                sd_notify("READY=1\nSTATUS=watching " + source.mailbox)
                ready = True
            backoff.reset()
            while not stop.is_set():
                result = ingest_pass(source, pipeline, committed)
                if result.filed or result.quarantined or result.duplicates or result.moved:
                    log.info("pass_finished", filed=result.filed, quarantined=result.quarantined,
                             duplicates=result.duplicates, moved=result.moved)  # fmt: skip
                    # Mail that arrived during this pass may have been announced in a
                    # SEARCH or MOVE response, which IDLE will not repeat: look again first.
                    continue
                source.wait_for_mail(stop)
        except IMAP_ERRORS as exc:
            delay = backoff.next()
            log.warning("imap_disconnected", error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 1))
            sd_notify(f"STATUS=IMAP unavailable, retrying in {delay:.0f}s")
            stop.wait(delay)
        finally:
            source.close()
    store.close()


async def serve(config: Config) -> int:
    loop = asyncio.get_running_loop()
    stop_thread = threading.Event()
    stop_loop = asyncio.Event()
    wake = asyncio.Event()

    def request_stop(signame: str) -> None:
        log.info("shutdown_requested", signal=signame)
        sd_notify("STOPPING=1")
        stop_thread.set()
        stop_loop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig.name)

    def committed() -> None:
        loop.call_soon_threadsafe(wake.set)

    sender_store = Store.open(config.store.path)
    # The sender's updates may lag a power loss without losing mail (a resend at worst).
    sender_store.db.execute("PRAGMA synchronous = NORMAL")
    sender = Sender(config.smtp, config.smtp.secret(), sender_store)
    sender_task = asyncio.create_task(sender.run(wake, stop_loop))
    watcher = asyncio.create_task(asyncio.to_thread(watch_mailbox, config, stop_thread, committed))
    log.info("daemon_started", pid=os.getpid(), queues=list(config.queues))
    done, _ = await asyncio.wait({watcher, sender_task}, return_when=asyncio.FIRST_COMPLETED)
    # Whichever ended first (a stop, or a crash in one of them), end the other cleanly.
    stop_thread.set()
    stop_loop.set()
    await asyncio.gather(watcher, sender_task, return_exceptions=True)
    sender_store.close()
    failed = [t.exception() for t in done if t.exception() is not None]
    for exc in failed:
        log.error("daemon_failed", error=f"{type(exc).__name__}: {exc}")
    log.info("daemon_stopped")
    return 1 if failed else 0


def run_forever(config: Config) -> int:
    return asyncio.run(serve(config))
