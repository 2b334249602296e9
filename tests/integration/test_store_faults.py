"""The running daemon against store faults on the real filesystem: another process holding the write lock
longer than the busy timeout, and a disk that fills up and is then enlarged. The daemon stays up, shows the
fault in its STATUS= line, loses nothing and sends nothing twice; a mail the SMTP server accepted while the
store could not record it is recorded once the store is back, and not sent again after a restart."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, read_rows, sandbox_config, write_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture
from tests.integration.test_service import NotifyListener, Service

BUSY_TIMEOUT = 0.5


def config_for(mailbox: Mailbox, smtp: SmtpCapture, store: Path) -> dict[str, Any]:
    config = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password, smtp_port=smtp.port,
        store=store,
    )  # fmt: skip
    config["store"]["busy_timeout"] = BUSY_TIMEOUT
    return config


def answers(smtp: SmtpCapture, message_id: str) -> list[Captured]:
    return [c for c in smtp.messages if c.message["In-Reply-To"] == message_id]


def test_a_write_lock_held_by_another_process_is_waited_out_and_nothing_is_sent_twice(
    tmp_path: Path, mailbox: Mailbox, notify: NotifyListener, services: list[Service]
) -> None:
    store = tmp_path / "mailsvc.db"
    holder = sqlite3.connect(store, isolation_level=None, check_same_thread=False)
    hold_on_delivery = threading.Event()

    def lock_when_delivered(captured: Captured) -> None:
        # Before the capture answers 250: the sender finds the store locked when it records the mail as sent.
        if hold_on_delivery.is_set():
            hold_on_delivery.clear()
            holder.execute("BEGIN IMMEDIATE")

    with SmtpCapture(on_message=lock_when_delivered) as smtp:
        path = write_config(tmp_path / "mailsvc.yaml", config_for(mailbox, smtp, store))
        service = Service(path, tmp_path / "daemon.log", {"NOTIFY_SOCKET": str(notify.path)})
        services.append(service)
        service.wait_for("imap_connected")

        # 1. The watcher: mail arrives while another process holds the write lock.
        holder.execute("BEGIN IMMEDIATE")
        mailbox.append(mail(subject="Locked out", message_id="<locked@example.net>"))
        (fault,) = service.wait_for("store_unavailable")
        assert fault["component"] == "imap INBOX" and "locked" in fault["error"]
        status = notify.wait_for("STATUS=store unavailable (OperationalError: database is locked), retrying")
        assert status
        assert len(mailbox.uids()) == 1  # not moved: nothing was stored
        holder.execute("COMMIT")
        service.wait_for("store_available")
        smtp.wait_for(1)
        notify.wait_for("STATUS=watching INBOX", count=2)

        # 2. The sender: the server accepted the mail, the store refuses to record it.
        hold_on_delivery.set()
        mailbox.append(mail(subject="Accepted while locked", message_id="<accepted@example.net>"))
        fault = next(e for e in service.wait_for("store_unavailable", 2) if e["component"] == "sender")
        assert "locked" in fault["error"]
        assert len(answers(smtp, "<accepted@example.net>")) == 1
        holder.execute("COMMIT")
        (recorded,) = service.wait_for("mail_sent_recorded")
        rows = read_rows(store, "SELECT message_id, state, attempts FROM outbox ORDER BY id")
        assert [r[1:] for r in rows] == [("sent", 1), ("sent", 1)]
        assert rows[1][0] == recorded["message_id"]
        assert service.stop() == 0

        # A restart sends nothing again; a new request is answered as usual.
        again = Service(path, tmp_path / "daemon-2.log")
        services.append(again)
        again.wait_for("imap_connected")
        mailbox.append(mail(subject="After the restart", message_id="<after@example.net>"))
        smtp.wait_for(3)
        assert again.stop() == 0
        for message_id in ("<locked@example.net>", "<accepted@example.net>", "<after@example.net>"):
            assert len(answers(smtp, message_id)) == 1, message_id
        assert len(smtp.messages) == 3
        assert service.proc.returncode == 0
    holder.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs of its own (root only), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(folder)]
    done = subprocess.run(mount, capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of the file system `folder` is on."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    stat = os.statvfs(folder)
    assert stat.f_bavail * stat.f_frsize < 65536, "the disk did not fill up"
    return filler


def test_a_full_disk_is_waited_out_until_it_is_enlarged(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, small_disk: Path, services: list[Service]
) -> None:
    store = small_disk / "mailsvc.db"
    path = write_config(tmp_path / "mailsvc.yaml", config_for(mailbox, smtp, store))
    service = Service(path, tmp_path / "daemon.log")
    services.append(service)
    service.wait_for("imap_connected")
    fill(small_disk)

    body = "The log of the failing backup job follows.\n" + ("0123456789 abcdefghij " * 40 + "\n") * 1200  # ~1 MB
    requests = [f"<full{n}@example.net>" for n in range(2)]
    for message_id in requests:
        mailbox.append(mail(subject="Backup fails", message_id=message_id, body=body))
    fault = service.wait_for("store_unavailable")[0]
    assert "full" in fault["error"], fault
    assert len(mailbox.uids()) == 2  # nothing moved: nothing was stored
    assert service.proc.poll() is None

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    service.wait_for("store_available")
    smtp.wait_for(2, timeout=30)
    service.wait_for("mail_sent", 2)
    assert service.stop() == 0
    for message_id in requests:
        assert len(answers(smtp, message_id)) == 1
    rows = read_rows(store, "SELECT state FROM messages")
    assert rows == [("filed",), ("filed",)]
    assert read_rows(store, "SELECT state, attempts FROM outbox") == [("sent", 1), ("sent", 1)]


def test_once_on_a_locked_store_exits_1_with_one_line(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    store = tmp_path / "mailsvc.db"
    path = write_config(tmp_path / "mailsvc.yaml", config_for(mailbox, smtp, store))
    command = [sys.executable, "-m", "mailsvc", "once", "-c", str(path)]
    assert subprocess.run(command, capture_output=True, check=False).returncode == 0  # creates the store
    mailbox.append(mail(message_id="<once-locked@example.net>"))
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 1
    assert done.stderr == "mailsvc: the store is unavailable: database is locked\n"
    assert len(mailbox.uids()) == 1 and not smtp.messages
