"""An event a thread can wait on beside a socket: the IMAP watcher's IDLE ends the moment it is set."""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class Alarm(threading.Event):
    """A threading.Event whose `set` also makes a socket readable, so `select` wakes for it at once."""

    def __init__(self) -> None:
        super().__init__()
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    def set(self) -> None:
        super().set()
        with contextlib.suppress(OSError):  # full (already readable) or closed: nothing more to say
            self._write.send(b"\0")

    def clear(self) -> None:
        super().clear()
        with contextlib.suppress(OSError):
            while self._read.recv(4096):
                pass

    def fileno(self) -> int:
        return self._read.fileno()

    def wait_beside(self, sock: socket.socket | int, timeout: float) -> bool:
        """Wait until `sock` is readable, the alarm is set, or `timeout` passes; True when `sock` is readable."""
        if self.is_set():
            return False
        readable, _, _ = select.select([sock, self._read], [], [], timeout)
        return any(r is sock for r in readable)

    def close(self) -> None:
        self._read.close()
        self._write.close()
