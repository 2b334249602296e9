"""The daemon's parts in this process: systemd notification, reload refusals, the status line, and the
scheduler and sender waiting out a store that cannot be opened (real files and sockets, no servers)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mailsvc import metrics
from mailsvc.config import Config, parse_config
from mailsvc.daemon import (
    _can_run,
    _reloaded,
    normal_status,
    run_sender,
    sd_notify,
    watch_timers,
    watchdog_interval,
)
from mailsvc.errors import CredentialError
from mailsvc.status import ServiceStatus
from mailsvc.testing.sandbox import sandbox_config


def config_with_store(tmp_path: Path, store: Path) -> Config:
    return parse_config(sandbox_config(imap_port=1143, imap_user="desk", smtp_port=1025, store=store), tmp_path)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)


@pytest.fixture
def abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket in the abstract namespace, named as systemd names it in NOTIFY_SOCKET (`@...`)."""
    name = f"mailsvc-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield sock


def test_sd_notify_reaches_a_socket_in_the_abstract_namespace(abstract_notify_socket: socket.socket) -> None:
    sd_notify("READY=1\nSTATUS=watching INBOX")
    assert abstract_notify_socket.recv(4096) == b"READY=1\nSTATUS=watching INBOX"


def test_sd_notify_to_a_socket_that_is_gone_is_logged_and_the_daemon_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    with capture_logs() as logs:
        sd_notify("WATCHDOG=1")
    assert [e["event"] for e in logs] == ["sd_notify_failed"]
    assert "No such file" in logs[0]["error"]


def test_a_watchdog_usec_that_is_not_a_number_turns_the_pings_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "20s")
    assert watchdog_interval() is None


def test_a_reload_without_a_configuration_file_is_refused() -> None:
    with capture_logs() as logs:
        assert _reloaded(None) is None
    assert logs == [{"event": "config_reload_refused", "reason": "no configuration file to reload",
                     "log_level": "warning", "component": "daemon"}]  # fmt: skip


def test_a_reload_failing_on_a_secret_it_cannot_read_is_refused_with_the_reason() -> None:
    def reload() -> Config:
        raise CredentialError("cannot read imap.password_file: permission denied")

    with capture_logs() as logs:
        assert _reloaded(reload) is None
    assert logs[0]["event"] == "config_reload_refused"
    assert logs[0]["problems"] == ["cannot read imap.password_file: permission denied"]


def test_an_unexpected_error_in_a_reload_keeps_the_running_configuration(tmp_path: Path) -> None:
    def reload() -> Config:
        (tmp_path / "mailsvc.yaml").read_text()  # not there
        raise AssertionError("unreachable")

    with capture_logs() as logs:
        assert _reloaded(reload) is None
    assert logs[0]["event"] == "config_reload_refused"
    assert logs[0]["problems"][0].startswith("FileNotFoundError: ")


def test_a_reload_to_a_store_that_cannot_open_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mailsvc.db").mkdir()
    with capture_logs() as logs:
        assert _can_run(config_with_store(tmp_path, tmp_path / "mailsvc.db")) is False
    assert logs[-1]["event"] == "config_reload_refused"
    assert logs[-1]["problems"][0].startswith("store.path: cannot open the store")
    assert _can_run(config_with_store(tmp_path, tmp_path / "new" / "mailsvc.db")) is True


def test_the_normal_status_line_waits_until_every_mailbox_is_connected(tmp_path: Path) -> None:
    config = config_with_store(tmp_path, tmp_path / "mailsvc.db")
    (key,) = [m.key for m in config.mailboxes()]
    assert normal_status(config) is None  # its fault line, if any, stays
    metrics.imap_connected(key, idle=True)
    try:
        assert normal_status(config) == "watching 1 mailbox; outbox 0; no mail yet"
    finally:
        metrics.imap_disconnected(key)
    assert normal_status(config) is None


def test_the_scheduler_waits_out_a_store_that_cannot_open_and_goes_on_when_it_can(tmp_path: Path) -> None:
    blocked = tmp_path / "mailsvc.db"
    blocked.mkdir()  # a directory where the file should be: the open fails until it is removed
    status = ServiceStatus()
    stop, wake = threading.Event(), threading.Event()
    with capture_logs() as logs:
        thread = threading.Thread(target=watch_timers, args=(config_with_store(tmp_path, blocked), stop, wake,
                                                             lambda: None, status))  # fmt: skip
        thread.start()
        try:
            wait_until(lambda: "store scheduler" in status.faults, "the scheduler's store fault on the status line")
            assert status.line().startswith("store unavailable (StoreUnavailable: cannot open the store")
            blocked.rmdir()
            wait_until(lambda: not status.faults, "the scheduler recovered")
        finally:
            stop.set()
            wake.set()
            thread.join(10)
    assert not thread.is_alive()
    events = [e["event"] for e in logs]
    assert events.index("store_unavailable") < events.index("store_available")
    assert blocked.is_file()


def test_the_sender_stopped_while_its_store_cannot_open_ends_cleanly(tmp_path: Path) -> None:
    blocked = tmp_path / "mailsvc.db"
    blocked.mkdir()
    status = ServiceStatus()

    async def scenario() -> None:
        stop, wake = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_sender(config_with_store(tmp_path, blocked), status, wake, stop, lambda: None))
        deadline = time.monotonic() + 10
        while "store sender" not in status.faults:
            assert time.monotonic() < deadline, "no store fault for the sender"
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert [e["event"] for e in logs if e["event"].startswith("store_")] == ["store_unavailable"]
    assert status.faults["store sender"].startswith("store unavailable")  # until the generation clears it
