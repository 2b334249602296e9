"""`mailsvc run` as a real process: IDLE and polling, JSON logs, clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, write_sandbox_config
from mailsvc.testing.smtp_capture import SmtpCapture


class Daemon:
    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailsvc", "run", "-c", str(config)], stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )  # fmt: skip

    def events(self) -> list[dict[str, Any]]:
        text = self.log_path.read_text()
        # The last line may be half written: only whole lines count.
        lines = text.splitlines()[: text.count("\n")]
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for_event(self, name: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event["event"] == name:
                    return event
            assert self.proc.poll() is None, f"daemon exited early:\n{self.log_path.read_text()}"
            time.sleep(0.05)
        raise AssertionError(f"no {name} event in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self._log.close()


def start(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, **imap: Any) -> Iterator[Daemon]:
    config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, tmp_path / "mailsvc.db", imap=imap)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def daemon(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Iterator[Daemon]:
    yield from start(tmp_path, mailbox, smtp)


@pytest.fixture
def polling_daemon(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Iterator[Daemon]:
    yield from start(tmp_path, mailbox, smtp, idle=False, poll_interval=0.5)


def test_idle_daemon_acknowledges_new_mail_and_stops_cleanly(
    daemon: Daemon, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    connected = daemon.wait_for_event("imap_connected")
    assert connected["idle"] is True

    mailbox.append(mail(subject="First", message_id="<first@example.net>"))
    (ack,) = smtp.wait_for(1, timeout=15)
    assert ack.message["In-Reply-To"] == "<first@example.net>"
    mailbox.append(mail(subject="Second", message_id="<second@example.net>"))
    smtp.wait_for(2, timeout=15)
    daemon.wait_for_event("mail_sent")

    assert daemon.stop() == 0
    events = daemon.events()
    names = [e["event"] for e in events]
    assert names.count("case_opened") == 2 and names.count("ack_queued") == 2
    assert "daemon_stopped" in names
    assert mailbox.password not in daemon.log_path.read_text(), "no password in the logs"
    opened = next(e for e in events if e["event"] == "case_opened")
    assert {"case_id", "uid", "message_id", "timestamp", "level"} <= opened.keys()
    sent = [e for e in events if e["event"] == "mail_sent"]
    assert {e["case_id"] for e in sent} == {1, 2}
    assert mailbox.uids("INBOX") == [] and len(mailbox.uids("Processed")) == 2


def test_polling_daemon_acknowledges_new_mail(polling_daemon: Daemon, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    connected = polling_daemon.wait_for_event("imap_connected")
    assert connected["idle"] is False
    mailbox.append(mail(subject="Polled"))
    (ack,) = smtp.wait_for(1, timeout=15)
    assert "[Help #1]" in ack.message["Subject"]
    assert polling_daemon.stop() == 0


def test_bad_config_stops_start_up_with_exit_code_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("imap: {host: 127.0.0.1}\nsmtp: {host: 127.0.0.1}\nqueues: {}\nstore: {path: x.db}\nextra: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mailsvc", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert ": queues: " in proc.stderr
    assert "extra: unknown key" in proc.stderr
