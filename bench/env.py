"""The bench's world on 127.0.0.1: a private Dovecot, an SMTP capture, fresh stores, and mailsvc as a process.

Peak RSS of a child is its own high-water mark (VmHWM), not a sample of its
current size.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import sandbox_config, write_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Ack:
    """One mail that reached the SMTP capture, with what matches it to its request."""

    in_reply_to: str
    case: str
    message_id: str
    received_at: float
    raw: bytes = field(repr=False)


class AckRecorder:
    """The capture's on_message hook: keeps what arrived, thread-safe; off while the drain is timed.

    The hook only keeps the mail: its headers are read when `acks` is asked, after the clock stopped,
    so the measuring costs the SMTP server (and mailsvc waiting on its answers) nothing per mail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._captured: list[Captured] = []
        self._acks: list[Ack] = []
        self.enabled = True

    def __call__(self, captured: Captured) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._captured.append(captured)

    def reset(self) -> None:
        with self._lock:
            self._captured.clear()
            self._acks.clear()

    @staticmethod
    def _read(captured: Captured) -> Ack:
        head = email.message_from_bytes(captured.data.partition(b"\r\n\r\n")[0], policy=email.policy.compat32)
        return Ack(
            in_reply_to=str(head.get("In-Reply-To", "")).strip(),
            case=str(head.get("X-Mailsvc-Case", "")).strip(),
            message_id=str(head.get("Message-ID", "")).strip(),
            received_at=captured.received_at,
            raw=captured.data,
        )

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._captured)

    @property
    def acks(self) -> list[Ack]:
        with self._lock:
            self._acks.extend(self._read(c) for c in self._captured[len(self._acks) :])
            return list(self._acks)

    def wait_for(self, count: int, timeout: float) -> list[Ack]:
        deadline = time.monotonic() + timeout
        while self.count < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.acks


@dataclass(frozen=True, slots=True)
class Finished:
    returncode: int
    wall_s: float
    peak_rss_mb: float


class PeakRss(threading.Thread):
    """A child's peak resident set: VmHWM from /proc, read every 10 ms until it exits.

    Not wait4's ru_maxrss: that also holds the parent's RSS at fork time (the
    high-water mark of the mm that exec replaced), so it would report the bench.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._path = Path(f"/proc/{pid}/status")
        self._done = threading.Event()
        self.peak_kb = 0

    def read(self) -> None:
        try:
            for line in self._path.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                    return
        except (OSError, ValueError):
            return

    def run(self) -> None:
        while not self._done.is_set():
            self.read()
            self._done.wait(0.01)

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_kb / 1024


def _reap(proc: subprocess.Popen[bytes], peak: PeakRss, timeout: float | None) -> tuple[int, float]:
    """Wait for the child; its exit code and peak RSS in MB."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return code, peak.stop()


def child_env() -> dict[str, str]:
    """The environment of the bench's children: this checkout's mailsvc and bench first on the path, so the
    code measured is the code beside the bench, whatever mailsvc is installed and wherever it runs from."""
    path = [str(HERE.parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _spawn(cmd: Sequence[str], out: IO[bytes]) -> tuple[subprocess.Popen[bytes], PeakRss]:
    proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env())
    peak = PeakRss(proc.pid)
    peak.start()
    return proc, peak


def run_measured(cmd: Sequence[str], log: Path, timeout: float = 3600) -> Finished:
    """Run a command to its end with output to `log`; wall time from spawn to exit."""
    with log.open("ab") as out:
        start = time.perf_counter()
        proc, peak = _spawn(cmd, out)
        code, rss = _reap(proc, peak, timeout)
        wall = time.perf_counter() - start
    return Finished(code, wall, rss)


def mailsvc_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailsvc", *args]


def run_once(config: Path, log: Path, what: str = "mailsvc once") -> Finished:
    """`mailsvc once -c config` to its end, output to `log`; any exit but 0 raises with the log's tail."""
    once = run_measured(mailsvc_cmd("once", "-c", str(config)), log)
    if once.returncode != 0:
        raise RuntimeError(f"{what} failed ({once.returncode}):\n{log.read_text()[-3000:]}")
    return once


class Service:
    """A long-running child (mailsvc run, or the bare responder) with its output in a file."""

    def __init__(self, cmd: Sequence[str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc, self._peak = _spawn(cmd, self._log)

    def events(self) -> list[dict[str, Any]]:
        return log_events(self.log_path)

    def wait_for_line(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{needle!r} not seen in {self.log_path} (exit {self.proc.poll()}):\n{tail}")

    def rss_mb(self) -> float:
        """Current resident set, from /proc (for the soak's samples)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, timeout: float = 60) -> Finished:
        start = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code, rss = _reap(self.proc, self._peak, timeout)
        finally:
            self._log.close()
        return Finished(code, time.perf_counter() - start, rss)


class Bench:
    """Servers shared by all phases; each phase gets its own mailbox, store and folder."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.dovecot = PrivateDovecot(work / "dovecot")
        self.recorder = AckRecorder()
        self.smtp = SmtpCapture(on_message=self.recorder)

    def __enter__(self) -> Bench:
        self.dovecot.start()
        self.smtp.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.smtp.stop()
        self.dovecot.stop()

    def phase_dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mailbox(self, name: str) -> Mailbox:
        return self.dovecot.new_mailbox(name)

    def config(self, folder: Path, mailbox: Mailbox, store: Path, smtp_port: int | None = None, **imap: Any) -> Path:
        """`smtp_port`: another SMTP port than the capture's (one nothing listens on: the server is down)."""
        cfg = sandbox_config(
            imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
            smtp_port=smtp_port or self.smtp.port, store=store, log={"format": "json", "level": "info"}, imap=imap,
            # The seeded traffic has each person write many requests within minutes; every one must be
            # acknowledged to be scored. The limit is still checked per ack (its cost is measured).
            auto_mail={"max_per_hour": 1_000_000},
            # The capture stands for a local relay, which takes several sessions at once (see the README).
            smtp={"connections": 4},
        )  # fmt: skip
        return write_config(folder / "mailsvc.yaml", cfg)

    def clear_mail(self) -> None:
        self.smtp.clear()
        self.recorder.reset()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def append_all(mailbox: Mailbox, raws: Sequence[bytes], chunk: int = 500, folder: str = "INBOX") -> None:
    """Deliver messages in order over one connection (MULTIAPPEND in chunks)."""
    with mailbox.client() as client:
        multi = client.has_capability("MULTIAPPEND")
        for start in range(0, len(raws), chunk):
            part = list(raws[start : start + chunk])
            if multi:
                client.multiappend(folder, part)
            else:
                for raw in part:
                    client.append(folder, raw)


def folder_count(mailbox: Mailbox, folder: str) -> int:
    with mailbox.client() as client:
        if not client.folder_exists(folder):
            return 0
        return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])


@dataclass(frozen=True, slots=True)
class StoredMessage:
    message_id: str
    state: str
    case_id: int | None
    kind: str | None
    subject: str


def stored_messages(store: Path) -> list[StoredMessage]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT message_id, state, case_id, kind, subject FROM messages ORDER BY id").fetchall()
    finally:
        db.close()
    return [StoredMessage(r[0] or "", r[1], r[2], r[3], r[4]) for r in rows]


def store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in (store, Path(f"{store}-wal")) if p.exists())


def event_time(event: dict[str, Any]) -> float:
    """A log event's timestamp (structlog's ISO UTC) as UNIX seconds, comparable with time.time()."""
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def log_events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
