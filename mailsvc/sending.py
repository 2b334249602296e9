"""The sender of `mailsvc once`: after the filing, or for a backlog in a process of its own while it files.

Filing is bound by one core (parsing). In one process, a backlog's acknowledgements wait for its last
batch, or share that core with it; in a process of their own, each batch's go out on another core as soon
as it is committed. That process costs a second interpreter's start (about 0.6 s of CPU), which a run
that files a batch or less would not win back: it sends in this process once the filing is done.

The child is `python -m mailsvc.sending` with a pipe on its standard input: first the configuration
(length, then pickle: the child is this same program, started by it), then one byte per commit to wake
it, then end of file once everything is committed. It drains on each wake and once more at end of
file, then exits: 0, 1 after a fault (the SMTP server unavailable, the store failing: it tries no more in
this run and the mail waits for the next), or CRASHED after an error it logged. A fresh interpreter, not
a fork: a forked child would share the parent's SQLite lock state and pooled PostgreSQL sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import subprocess
import sys
from dataclasses import dataclass

from mailsvc.config import Config
from mailsvc.credentials import provider_for
from mailsvc.log import configure, get_logger
from mailsvc.scrub import protect, protected, scrub
from mailsvc.smtp import Sender
from mailsvc.store import open_store

log = get_logger(component="sender")

CRASHED = 70  # EX_SOFTWARE: an error the sender does not handle; it logged it
_LENGTH = struct.Struct("!Q")


@dataclass(frozen=True)
class _Start:
    """What the child needs that it cannot read itself: the configuration as loaded, the secrets to
    keep out of its logs, and the log format the parent was given."""

    config: Config
    secrets: tuple[str, ...]
    log_format: str
    log_level: str


class Sending:
    """The parent's side: `to_file` as each pass starts, `wake` after each commit, `finish` at the end."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self._tried = False

    def to_file(self, count: int, batch: int) -> None:
        """A pass is about to file `count` messages in batches of `batch`: more than one batch is a backlog,
        worth a process of its own. If none can be started, the mail is sent here after the filing."""
        if self._tried or count <= batch:
            return
        self._tried = True
        try:
            self.process = _start(self.config)
        except OSError as exc:  # no process or memory to spare: slower, not stuck
            log.warning("sender_process_unavailable", waiting=count, error=scrub(f"{type(exc).__name__}: {exc}"))
            return
        log.info("sender_process_started", waiting=count, pid=self.process.pid)

    def wake(self) -> None:
        """New mail may be due. A full pipe already holds a wake; a dead child is reported by `finish`."""
        if self.process is not None:
            assert self.process.stdin is not None
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(self.process.stdin.fileno(), b"!")

    def finish(self, *, here: bool = True) -> bool:
        """Everything is committed: send what is due (`here`: in this process, if no child was started).
        False after a fault, or when the child crashed or was killed."""
        if self.process is None:
            if not here:
                return True
            return not asyncio.run(_drain_until_finished(self.config, None))
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        code = self.process.wait()
        if code not in (0, 1, CRASHED):  # killed, or it failed before it could say why
            log.error("component_failed", component="sender", exit_code=code)
        return code == 0


def _start(config: Config) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "mailsvc.sending"], stdin=subprocess.PIPE)
    assert process.stdin is not None
    start = _Start(config, protected(), config.log.format, config.log.level)
    payload = pickle.dumps(start, protocol=pickle.HIGHEST_PROTOCOL)
    with contextlib.suppress(BrokenPipeError):  # died at once: `finish` reports it
        process.stdin.write(_LENGTH.pack(len(payload)) + payload)
        process.stdin.flush()
    os.set_blocking(process.stdin.fileno(), False)
    return process


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = os.read(fd, size - len(data))
        if not piece:
            raise EOFError(f"the parent closed the pipe after {len(data)} of {size} bytes")
        data += piece
    return data


def main() -> int:
    """The child: its start from standard input, then drain until end of file."""
    stdin = sys.stdin.fileno()
    (length,) = _LENGTH.unpack(_read_exactly(stdin, _LENGTH.size))
    start: _Start = pickle.loads(_read_exactly(stdin, length))  # noqa: S301 (from the parent, over its own pipe)
    for secret in start.secrets:
        protect(secret)
    configure(start.log_format, start.log_level)
    try:
        faults = asyncio.run(_drain_until_finished(start.config, stdin))
    except Exception as exc:  # the mail stays queued, for the next run
        log.error("component_failed", component="sender", error=scrub(f"{type(exc).__name__}: {exc}"))
        return CRASHED
    return 1 if faults else 0


async def _drain_until_finished(config: Config, wakes: int | None) -> bool:
    """Drain on each wake on `wakes`, and once more at its end of file (None: once); True after a fault."""
    # Its own connection, as the daemon's sender has: each mail's record is a commit of its own, and
    # may lag a power loss without losing mail (a resend at worst), so it is not synced to disk.
    store = open_store(config.store)
    store.relax_durability()
    sender = Sender(config.smtp, provider_for(config, "smtp"), store)
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    finished = wakes is None

    def readable() -> None:
        nonlocal finished
        assert wakes is not None
        if not os.read(wakes, 4096):  # end of file: the parent has committed everything
            finished = True
            loop.remove_reader(wakes)
        woken.set()

    if wakes is not None:
        loop.add_reader(wakes, readable)
    try:
        while True:
            last = finished  # a wake from here on is seen by the next round
            woken.clear()
            if not sender.status.faults:  # one attempt per run: after a fault the mail waits for the next
                await sender.drain()
            if last:
                return bool(sender.status.faults)
            await woken.wait()
    finally:
        await sender.stop()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
