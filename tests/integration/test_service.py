"""`mailsvc run` as a service: SIGHUP reloads the configuration (a bad one is refused and the old one keeps
answering), sd_notify READY/STATUS/RELOADING/STOPPING and watchdog pings, and several mailboxes at once (the
main INBOX, a folder of the same account, an account of its own)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from mailsvc.daemon import watchdog_interval
from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture

# The shell sets WATCHDOG_PID to its own pid, then exec keeps that pid for the daemon: what systemd does.
WITH_OWN_WATCHDOG_PID = ("/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"')


class Service:
    """A `mailsvc run` subprocess with its JSON log (stack dumps too, when it hangs on stop)."""

    def __init__(self, config: Path, log: Path, env: Mapping[str, str] | None = None, wrap: Sequence[str] = ()) -> None:
        self.config = config
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-X", "faulthandler", "-m", "mailsvc", "run", "-c", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in found if name is None or e["event"] == name]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_for(self, name: str, count: int = 1, timeout: float = 15) -> list[dict[str, Any]]:
        """The first `count` events called `name`, once there are that many."""
        deadline = time.monotonic() + timeout
        while len(found := self.events(name)) < count:
            assert self.proc.poll() is None, f"daemon exited ({self.proc.returncode}) early:\n{self.log_text()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} {name} events in {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)
        return found[:count]

    def reload(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # faulthandler writes every thread's stack to the log on SIGABRT: where it hangs.
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            raise AssertionError(f"no exit {timeout}s after SIGTERM:\n{self.log_text()}") from None
        finally:
            self._log.close()


class NotifyListener:
    """The service manager's end of sd_notify: a datagram socket in `folder`, read by a thread."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "notify.sock"
        assert len(str(self.path)) < 100, f"unix socket path too long: {self.path}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self._lock = threading.Lock()
        self._received: list[tuple[float, str]] = []  # (time.monotonic(), line)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                self._received.extend((now, line) for line in data.decode().splitlines() if line)

    @property
    def received(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self._received)

    def lines(self) -> list[str]:
        return [line for _, line in self.received]

    def wait_for(self, line: str, count: int = 1, timeout: float = 15) -> float:
        """When the `count`-th `line` arrived (monotonic clock)."""
        deadline = time.monotonic() + timeout
        while True:
            times = [at for at, got in self.received if got == line]
            if len(times) >= count:
                return times[count - 1]
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(times)} of {count} {line!r} in {timeout}s; got {self.lines()[-20:]}")
            time.sleep(0.02)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self.sock.close()


def base_config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, **overrides: Any) -> dict[str, Any]:
    return sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db", **overrides,
    )  # fmt: skip


def ack_for(smtp: SmtpCapture, message_id: str, timeout: float = 15) -> Captured:
    """The acknowledgement answering `message_id`, once it has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        found = [c for c in smtp.messages if c.message["In-Reply-To"] == message_id]
        if found:
            assert len(found) == 1, f"{len(found)} answers to {message_id}"
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer to {message_id} in {timeout}s; got {len(smtp.messages)} mail(s)")
        time.sleep(0.05)


def plain_body(captured: Captured) -> str:
    part = captured.message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


# -- SIGHUP ----------------------------------------------------------------------------------------------------


def test_sighup_refuses_bad_configurations_and_applies_a_good_one(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, services: list[Service]
) -> None:
    config = base_config(tmp_path, mailbox, smtp)
    path = write_config(tmp_path / "mailsvc.yaml", config)
    service = Service(path, tmp_path / "daemon.log")
    services.append(service)
    service.wait_for("imap_connected")

    mailbox.append(mail(subject="Before any reload", message_id="<r1@example.net>"))
    first = ack_for(smtp, "<r1@example.net>")
    assert first.message["From"] == "Example Help Desk <help@example.org>"

    templates = tmp_path / "help-templates"
    templates.mkdir()
    (templates / "ack.txt.j2").write_text("Hello,\n\nyour case is {{ case.tag }.\n\n-- \n{{ queue.display_name }}\n")
    bad: list[tuple[str, str, str]] = [
        ("invalid YAML", "imap: [unclosed\nsmtp: {}\n", "(file): not valid YAML at line 2"),
        ("unknown key", path.read_text() + "colour: blue\n", "colour: unknown key"),
        ("non-UTF-8 file", path.read_text() + "# caf\xe9\n", "utf-8"),
        (
            "template syntax error",
            path.read_text().replace("display_name: Example Help Desk", f"templates_dir: {templates}"),
            f"{templates / 'ack.txt.j2'}:3: ",
        ),
    ]
    for n, (what, text, expected) in enumerate(bad, start=1):
        encoding = "latin-1" if what == "non-UTF-8 file" else "utf-8"
        path.write_text(text, encoding=encoding)
        service.reload()
        (*_, refused) = service.wait_for("config_reload_refused", count=n)
        assert any(expected.lower() in problem.lower() for problem in refused["problems"]), (what, refused["problems"])
        assert service.proc.poll() is None, f"the daemon died on a reload with {what}"
    assert service.events("config_reloaded") == []
    assert len(service.events("imap_connected")) == 1, "a refused reload leaves the running mailbox alone"

    mailbox.append(mail(subject="After refused reloads", message_id="<r2@example.net>"))
    second = ack_for(smtp, "<r2@example.net>")
    assert second.message["From"] == "Example Help Desk <help@example.org>"

    # A good one: a new display name, and templates of the queue's own that work.
    (templates / "ack.txt.j2").write_text("Hello,\n\nyour case is {{ case.tag }}.\n\n-- \n{{ queue.display_name }}\n")
    config["queues"]["help"].update(display_name="Reloaded Desk", templates_dir=str(templates))
    write_config(path, config)
    service.reload()
    (reloaded,) = service.wait_for("config_reloaded")
    assert reloaded["queues"] == ["help"] and reloaded["previous_failures"] == 0
    service.wait_for("imap_connected", count=2)

    mailbox.append(mail(subject="After the reload", message_id="<r3@example.net>"))
    third = ack_for(smtp, "<r3@example.net>")
    assert third.message["From"] == "Reloaded Desk <help@example.org>"
    assert plain_body(third).startswith("Hello,\n\nyour case is [Help #3].\n")
    assert "Reloaded Desk" in plain_body(third)

    assert service.stop() == 0, service.log_text()
    assert len(smtp.messages) == 3, "each request answered once, across reloads"
    assert service.events("daemon_stopped")


# -- systemd notify ------------------------------------------------------------------------------------------


WATCHDOG_USEC = 400_000  # pings every 0.2 s


def watchdog_pings(notify: NotifyListener) -> list[float]:
    return [at for at, line in notify.received if line == "WATCHDOG=1"]


def test_notify_ready_watchdog_reload_and_stop(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, notify: NotifyListener, services: list[Service]
) -> None:
    config = base_config(tmp_path, mailbox, smtp)
    path = write_config(tmp_path / "mailsvc.yaml", config)
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    service = Service(path, tmp_path / "daemon.log", env, wrap=WITH_OWN_WATCHDOG_PID)
    services.append(service)

    ready_at = notify.wait_for("READY=1")
    (started,) = service.wait_for("daemon_started")
    assert started["pid"] == service.proc.pid, "WATCHDOG_PID names the daemon itself"
    assert service.events("imap_connected"), "READY=1 only once a mailbox is connected"
    assert "STATUS=watching INBOX" in notify.lines()

    # Pings after READY=1, none of them further apart than systemd's WatchdogSec (it would kill the service).
    notify.wait_for("WATCHDOG=1", count=len(watchdog_pings(notify)) + 6)
    pings = [at for at in watchdog_pings(notify) if at >= ready_at]
    gaps = [b - a for a, b in pairwise(pings)]
    assert max(gaps) < WATCHDOG_USEC / 1e6, f"a gap of {max(gaps):.2f}s would let systemd kill the service"

    # A good reload: RELOADING=1, then READY=1 again, and pings go on.
    config["queues"]["help"]["display_name"] = "Reloaded Desk"
    write_config(path, config)
    service.reload()
    reloading_at = notify.wait_for("RELOADING=1")
    ready_again_at = notify.wait_for("READY=1", count=2)
    assert ready_again_at > reloading_at
    assert "STATUS=configuration reloaded" in notify.lines()
    service.wait_for("config_reloaded")
    notify.wait_for("WATCHDOG=1", count=len(watchdog_pings(notify)) + 3)
    all_pings = watchdog_pings(notify)
    # No pings while the old generation stops (its parts are not all alive); the gap must stay far
    # below the unit's WatchdogSec (60 s), so stopping it must not wait on a blocked server call.
    last_before = max(at for at in all_pings if at < reloading_at)
    first_after = min(at for at in all_pings if at > ready_again_at)
    assert first_after - last_before < 5, f"no watchdog ping for {first_after - last_before:.1f}s around a reload"

    mailbox.append(mail(subject="Under watch", message_id="<w1@example.net>"))
    assert ack_for(smtp, "<w1@example.net>").message["From"] == "Reloaded Desk <help@example.org>"

    service.proc.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1", timeout=10)
    assert service.stop(timeout=10) == 0, service.log_text()
    assert notify.lines().count("READY=1") == 2


def test_watchdog_is_silent_for_another_pid(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, notify: NotifyListener, services: list[Service]
) -> None:
    """WATCHDOG_PID naming another process (a wrapper's) means the watchdog is not ours to ping."""
    path = write_config(tmp_path / "mailsvc.yaml", base_config(tmp_path, mailbox, smtp))
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": "1"}
    service = Service(path, tmp_path / "daemon.log", env)
    services.append(service)
    notify.wait_for("READY=1")
    # A request answered is the daemon's loop at work; pings would be due all along (every 0.2 s).
    mailbox.append(mail(subject="Not watched", message_id="<nw@example.net>"))
    ack_for(smtp, "<nw@example.net>")
    assert service.stop() == 0
    assert "STOPPING=1" in notify.lines()
    assert "WATCHDOG=1" not in notify.lines()


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mechanism behind the test above: another process's WATCHDOG_PID turns the pings off."""
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == WATCHDOG_USEC / 2e6
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None


# -- several mailboxes -----------------------------------------------------------------------------------------


def test_three_mailboxes_open_cases_in_their_own_queues(
    tmp_path: Path,
    dovecot: PrivateDovecot,
    mailbox: Mailbox,
    smtp: SmtpCapture,
    services: list[Service],
) -> None:
    sales_box = dovecot.new_mailbox("sales")
    mailbox.create_folder("Billing")
    queues = {
        "help": {"address": "help@example.org", "display_name": "Help Desk"},
        "billing": {"address": "billing@example.org", "display_name": "Billing Desk", "folder": "Billing"},
        "sales": {
            "address": "sales@example.org", "display_name": "Sales Desk",
            "imap": {"host": sales_box.host, "port": sales_box.port, "tls": "none", "user": sales_box.user,
                     "password": sales_box.password, "poll_interval": 1},
        },
    }  # fmt: skip
    path = write_config(tmp_path / "mailsvc.yaml", base_config(tmp_path, mailbox, smtp, queues=queues))
    service = Service(path, tmp_path / "daemon.log")
    services.append(service)
    connected = service.wait_for("imap_connected", count=3)
    assert {(e["folder"], e["queue"]) for e in connected} == {
        ("INBOX", None),
        ("Billing", "billing"),
        ("sales:INBOX", "sales"),
    }

    # To addresses that name no queue (aliases delivered into a folder): the folder decides the queue.
    # In the shared INBOX, the queue's address decides.
    deliveries: list[tuple[Mailbox, str, str, str]] = [
        (mailbox, "INBOX", "<help@example.net>", "help@example.org"),
        (mailbox, "Billing", "<billing@example.net>", "invoices@example.org"),
        (sales_box, "INBOX", "<sales@example.net>", "orders@example.org"),
        (mailbox, "INBOX", "<routed@example.net>", "billing@example.org"),
    ]
    appenders = [
        threading.Thread(
            target=box.append, args=(mail(subject=f"Request {mid}", message_id=mid, to=to), folder)
        )
        for box, folder, mid, to in deliveries
    ]  # fmt: skip
    for thread in appenders:
        thread.start()
    for thread in appenders:
        thread.join()

    expected = {
        "<help@example.net>": ("help", "Help Desk <help@example.org>"),
        "<billing@example.net>": ("billing", "Billing Desk <billing@example.org>"),
        "<sales@example.net>": ("sales", "Sales Desk <sales@example.org>"),
        "<routed@example.net>": ("billing", "Billing Desk <billing@example.org>"),
    }
    for message_id, (_, sender) in expected.items():
        ack = ack_for(smtp, message_id)
        assert ack.message["From"] == sender, message_id
        assert parseaddr(ack.message["To"])[1] == "alice@example.net"

    listing = subprocess.run(
        [sys.executable, "-m", "mailsvc", "cases", "list", "--json", "-c", str(path)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    cases = {c["subject"]: c["queue"] for c in json.loads(listing.stdout)}
    assert cases == {f"Request {mid}": queue for mid, (queue, _) in expected.items()}

    assert service.stop() == 0, service.log_text()
    assert len(smtp.messages) == 4
    assert mailbox.uids("INBOX") == [] and mailbox.uids("Billing") == [] and sales_box.uids("INBOX") == []
    assert len(mailbox.uids("Processed")) == 3 and len(sales_box.uids("Processed")) == 1
    # Two watchers of one account both create Processed at start-up: neither may fail for it.
    assert not service.events("imap_disconnected"), "three watchers share one store and one account"
