"""The token file: one account's OAuth2 tokens, private (mode 0600), replaced atomically, locked while used.

Several threads (IMAP watchers, the sender) and processes (the daemon, `mailsvc oauth`, `mailsvc doctor`)
may share a file, since one login covers IMAP and SMTP of the same user. A refresh happens under the lock
and reads the file again first, so a refresh token rotated by one of them is never used again by another.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mailsvc.errors import CredentialError


@dataclass(frozen=True)
class TokenSet:
    """What the identity provider gave, and what became of the last refresh."""

    user: str
    access_token: str = field(default="", repr=False)
    expires_at: float = 0.0
    issued_at: float = 0.0
    refresh_token: str | None = field(default=None, repr=False)
    refresh_obtained_at: float | None = None
    scopes: tuple[str, ...] = ()
    # The provider's error code of the last refresh that failed for good; cleared by the next success.
    last_error: str | None = None
    last_error_at: float | None = None
    # Staff were told of last_error (once per failure).
    notified: bool = False

    def fresh(self, now: float) -> bool:
        """Usable now and not due for renewal: renewal comes a quarter of the lifetime (at most 5 min) early."""
        if not self.access_token:
            return False
        ahead = min(300.0, max(0.0, self.expires_at - self.issued_at) / 4)
        return now < self.expires_at - ahead

    def failed(self, code: str, now: float) -> TokenSet:
        if self.last_error == code:
            return self
        return replace(self, last_error=code, last_error_at=now, notified=False)


_thread_locks: dict[Path, threading.Lock] = {}
_registry_lock = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _registry_lock:
        return _thread_locks.setdefault(path, threading.Lock())


def _owned_like(path: Path, model: Path) -> None:
    """Run as root (`sudo mailsvc doctor`), leave files to whoever owns the token folder (the service's
    user), or the service could no longer read its own tokens."""
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        st = model.stat()
        if (st.st_uid, st.st_gid) != (0, 0):
            os.chown(path, st.st_uid, st.st_gid)


class TokenFile:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()

    def _make_folder(self) -> None:
        folder = self.path.parent
        if folder.is_dir():
            return
        folder.mkdir(parents=True, mode=0o700)
        _owned_like(folder, folder.parent)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use across threads and processes."""
        self._make_folder()
        with _thread_lock(self.path):
            lock = Path(f"{self.path}.lock")
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            _owned_like(lock, self.path.parent)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def load(self) -> TokenSet | None:
        try:
            raw: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
            raise CredentialError(f"cannot read the token file {self.path}: {reason}") from None
        raw["scopes"] = tuple(raw.get("scopes") or ())
        known = {k: v for k, v in raw.items() if k in TokenSet.__dataclass_fields__}
        try:
            return TokenSet(**known)
        except TypeError:
            raise CredentialError(f"the token file {self.path} is damaged: run `mailsvc oauth login`") from None

    def save(self, tokens: TokenSet) -> None:
        """Write a new file beside the old one, then rename it over: a crash leaves one or the other."""
        self._make_folder()
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(asdict(tokens), out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            _owned_like(Path(tmp), self.path if self.path.exists() else folder)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
