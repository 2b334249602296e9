"""Private servers on 127.0.0.1 for tests/demo/bench: a throwaway Dovecot IMAP server under one folder."""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import imapclient
from imapclient.exceptions import LoginError

HOST = "127.0.0.1"
# Dovecot lower-cases logins (auth_username_format = %Lu) and %u becomes a file name, so keep names tame.
_USER_RE = re.compile(r"[a-z0-9][a-z0-9._@+-]{0,63}")
_APPENDUID_RE = re.compile(rb"APPENDUID \d+ ([\d:,]+)")
_COMMAND_RE = re.compile(r"imap\((?P<user>[^)]+)\)<\d+><[^>]*>: Debug: Command finished: (?P<name>\S+)")


class DovecotError(RuntimeError):
    """The private Dovecot could not be found, configured or started."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DovecotError(f"{name} not found on PATH or in /usr/sbin: install dovecot-imapd (apt install dovecot-imapd)")


def _group_alive(pgid: int) -> bool:
    """Whether a live process remains in the group (Linux). Zombies count as gone: init may reap late."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                return True
    return False


def _uid_set(spec: bytes) -> list[int]:
    uids: list[int] = []
    for part in spec.split(b","):
        lo, _, hi = part.partition(b":")
        uids.extend(range(int(lo), int(hi or lo) + 1))
    return uids


class PrivateDovecot:
    """A Dovecot listening on 127.0.0.1 only, with config, sockets, state, logs and mail all under `base`."""

    host = HOST

    def __init__(
        self, base: Path, port: int | None = None, *, disable_move: bool = False, trace: bool = False,
        disable_idle: bool = False,
    ) -> None:  # fmt: skip
        self.base = Path(base).resolve()
        self.port = port or _free_port()
        self._auto_port = port is None
        self.disable_move = disable_move
        self.disable_idle = disable_idle
        # Log each IMAP command a session finishes and show the running one in its process title, so tests
        # can see what a client did and is doing (`commands`, `idling`).
        self.trace = trace
        self.conf_path = self.base / "dovecot.conf"
        self.log_path = self.base / "dovecot.log"
        self.run_dir = self.base / "run"
        self.users_dir = self.base / "users"
        self._proc: subprocess.Popen[bytes] | None = None
        self._passwords: dict[str, str] = {}
        self._capabilities: list[str] | None = None
        # Our greeting, so a foreign server that grabbed the port is never mistaken for ours.
        self._greeting = f"mailsvc-private-dovecot-{uuid.uuid4().hex[:12]} ready."
        self._root = os.geteuid() == 0
        if self._root:
            # Dovecot refuses uid 0 for mail access, so mail belongs to nobody.
            nobody = pwd.getpwnam("nobody")
            self._mail_ids = (nobody.pw_uid, nobody.pw_gid)
        else:
            self._mail_ids = (os.getuid(), os.getgid())
        # Unix socket paths are limited to 107 bytes; the longest Dovecot puts under base_dir is 25 more.
        if len(str(self.run_dir)) > 80:
            raise DovecotError(f"base folder path too long for Dovecot's unix sockets: {self.base}")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The master process while started."""
        return None if self._proc is None else self._proc.pid

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self._shutdown()  # reap a master that died on its own
        self._make_dirs()
        self._stop_stale()
        hidden = {"MOVE"} if self.disable_move else set()
        hidden |= {"IDLE"} if self.disable_idle else set()
        if hidden and self._capabilities is None:
            # imap_capability in 2.3 can only replace the list or add to it ("+X"), never remove, so learn
            # this build's post-login list once and hand it back without MOVE.
            self._launch()
            try:
                caps = self._probe_capabilities()
            finally:
                self._shutdown()
            self._capabilities = [c for c in caps if c not in hidden]
        self._launch()
        atexit.register(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        atexit.unregister(self.stop)
        self._shutdown(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_temp_dir(
        cls, *, trace: bool = False, disable_move: bool = False, disable_idle: bool = False
    ) -> Iterator[PrivateDovecot]:
        """A started server in a new folder of the system's temp dir, removed when done.

        Not under pytest's base temp: any other pytest run of the same user makes that 0700 again, and
        Dovecot's unprivileged processes then lose their way to the passwd-files and the mail.
        """
        base = Path(tempfile.mkdtemp(prefix="mailsvc-dovecot-"))
        try:
            with cls(base, trace=trace, disable_move=disable_move, disable_idle=disable_idle) as server:
                yield server
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in (self.log_path, self.base / "dovecot.stderr"):
            with contextlib.suppress(OSError):
                chunks.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(chunks)

    # -- users and mail ------------------------------------------------------------------------------------
    def add_user(self, name: str, password: str = "secret") -> None:
        if not _USER_RE.fullmatch(name):
            raise ValueError(f"user name {name!r} must match {_USER_RE.pattern}")
        if ":" in password or "\n" in password:
            raise ValueError("password must not contain ':' or newlines (passwd-file format)")
        self._make_dirs()
        home = self.base / "mail" / name
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        # One passwd-file per user: Dovecot re-reads a shared file at most once a second, so a user added
        # in the same second as another login would be refused; a file it has never seen is read at once.
        tmp = self.users_dir / f".tmp-{name}"
        tmp.write_text(f"{name}:{{PLAIN}}{password}::::::\n")
        if self._root:
            os.chown(home, *self._mail_ids)
            os.chown(tmp, 0, grp.getgrnam("dovecot").gr_gid)
        tmp.chmod(0o640)
        tmp.replace(self.users_dir / name)
        self._passwords[name] = password

    def new_mailbox(self, prefix: str = "user", password: str = "secret") -> Mailbox:
        stem = re.sub(r"[^a-z0-9.-]+", "-", prefix.lower()).strip("-.")[:40] or "user"
        name = f"{stem}-{uuid.uuid4().hex[:8]}"
        self.add_user(name, password)
        return Mailbox(self, name, password)

    def mail_dir(self, user: str) -> Path:
        return self.base / "mail" / user / "Maildir"

    def client(self, user: str, password: str | None = None, timeout: float = 10.0) -> imapclient.IMAPClient:
        pw = self._passwords.get(user, "secret") if password is None else password
        client = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            client.login(user, pw)
        except BaseException:
            client.shutdown()
            raise
        return client

    def append(self, user: str, raw: bytes | list[bytes], folder: str = "INBOX") -> list[int]:
        """Store message(s) and return their UIDs (from APPENDUID)."""
        msgs = [raw] if isinstance(raw, bytes) else list(raw)
        with self.client(user) as c:
            if len(msgs) > 1 and c.has_capability("MULTIAPPEND"):
                responses = [c.multiappend(folder, msgs)]
            else:
                responses = [c.append(folder, m) for m in msgs]
        uids: list[int] = []
        for resp in responses:
            text = resp if isinstance(resp, bytes) else str(resp).encode()
            if match := _APPENDUID_RE.search(text):
                uids.extend(_uid_set(match.group(1)))
        return uids

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            return sorted(int(u) for u in c.search("ALL"))

    def fetch_all(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Every message's raw bytes in UID order, without setting \\Seen."""
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return []
            data = c.fetch(uids, ["BODY.PEEK[]"])
            return [bytes(data[u][b"BODY[]"]) for u in sorted(data)]

    def create_folder(self, user: str, folder: str) -> None:
        with self.client(user) as c:
            if not c.folder_exists(folder):
                c.create_folder(folder)

    def delete_folder(self, user: str, folder: str) -> None:
        with self.client(user) as c:
            if c.folder_exists(folder):
                c.delete_folder(folder)

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as c:
            return int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    # -- faults ------------------------------------------------------------------------------------------------
    def set_password(self, user: str, password: str, timeout: float = 5.0) -> None:
        """Change a user's password; returns once the server accepts the new one (and so refuses the old).

        Sessions already logged in stay open: `kick` them to make their clients log in again.
        """
        path = self.users_dir / user
        if not path.is_file():
            raise ValueError(f"no user {user!r} on this server")
        before = path.stat().st_mtime
        self.add_user(user, password)
        # Dovecot re-reads a passwd-file only when its mtime (whole seconds) or size changed.
        if int(path.stat().st_mtime) <= int(before):
            os.utime(path, (int(before) + 1, int(before) + 1))
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client(user, password).logout()
                return
            except LoginError:
                # It looks at a file at most once a second.
                if time.monotonic() > deadline:
                    raise DovecotError(f"the new password of {user} not accepted after {timeout}s") from None
                time.sleep(0.1)

    def sessions(self, user: str) -> list[int]:
        """The pids of the user's IMAP sessions (`doveadm who`)."""
        out = self._doveadm("-f", "tab", "who", "-1", user)
        rows = [line.split("\t") for line in out.splitlines()[1:] if line.strip()]
        return [int(row[2]) for row in rows if len(row) >= 3 and row[0] == user]

    def kick(self, user: str, timeout: float = 5.0) -> int:
        """End the user's sessions the polite way (the server says BYE); returns how many there were."""
        pids = self.sessions(user)
        if pids:
            self._doveadm("kick", user)
            self._wait_gone(pids, timeout)
        return len(pids)

    def kill_sessions(self, user: str, timeout: float = 5.0) -> int:
        """SIGKILL the user's session processes: their connections drop without a BYE. Returns how many."""
        pids = self.sessions(user)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._wait_gone(pids, timeout)
        return len(pids)

    def idling(self, user: str) -> bool:
        """Whether one of the user's sessions is in IDLE now (needs trace=True)."""
        self._need_trace()
        for pid in self.sessions(user):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").endswith(b" IDLE]"):
                    return True
        return False

    def wait_idling(self, user: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.idling(user):
            if time.monotonic() > deadline:
                raise DovecotError(f"no session of {user} in IDLE after {timeout}s")
            time.sleep(0.02)

    def commands(self, user: str) -> list[str]:
        """The IMAP commands the user's sessions finished, in order (needs trace=True)."""
        self._need_trace()
        with contextlib.suppress(FileNotFoundError):
            text = self.log_path.read_text(errors="replace")
            return [m["name"].upper() for m in _COMMAND_RE.finditer(text) if m["user"] == user]
        return []

    # -- internals -----------------------------------------------------------------------------------------
    def _need_trace(self) -> None:
        if not self.trace:
            raise DovecotError("start the server with trace=True to see what sessions do")

    def _doveadm(self, *args: str) -> str:
        command = [_binary("doveadm"), "-c", str(self.conf_path), *args]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        if proc.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    @staticmethod
    def _wait_gone(pids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(Path(f"/proc/{pid}").exists() for pid in pids):
            if time.monotonic() > deadline:
                raise DovecotError(f"sessions {pids} still running after {timeout}s")
            time.sleep(0.02)

    def _make_dirs(self) -> None:
        for d in (self.base, self.run_dir, self.base / "state", self.users_dir, self.base / "mail"):
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o755)
        if self._root:
            self._make_reachable()
            # auth runs as the dovecot account and reads the passwd-files; nobody else may.
            os.chown(self.users_dir, 0, grp.getgrnam("dovecot").gr_gid)
            self.users_dir.chmod(0o750)
            os.chown(self.base / "mail", *self._mail_ids)

    def _make_reachable(self) -> None:
        # auth (dovecot) and imap (nobody) drop root, so they need search (x) rights on every folder above
        # base. pytest's tmp folders are 0700: open only those inside the temp dir, only with o+x.
        tmp = Path(tempfile.gettempdir()).resolve()
        for d in (self.base, *self.base.parents):
            mode = d.stat().st_mode
            if mode & 0o001:
                continue
            if d not in (self.base, tmp) and tmp not in d.parents:
                raise DovecotError(
                    f"{d} is not searchable by other users (chmod o+x) so Dovecot's "
                    f"unprivileged processes cannot reach {self.base}; use a base under {tmp}"
                )
            d.chmod(mode | 0o001)

    def _config(self) -> str:
        b = self.base
        uid, gid = self._mail_ids
        extra = []
        if not self._root:
            me, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
            extra += [
                f"default_login_user = {me}",
                f"default_internal_user = {me}",
                f"default_internal_group = {group}",
            ]
        if self._capabilities is not None:
            extra.append(f"imap_capability = {' '.join(self._capabilities)}")
        if self.trace:
            extra += ["log_debug = event=imap_command_finished", "verbose_proctitle = yes"]
        chroot = "" if self._root else "  chroot =\n"  # chroot needs root
        return f"""# Written by mailsvc.testing.dovecot; everything stays under {b}
base_dir = {self.run_dir}
state_dir = {b}/state
log_path = {self.log_path}
protocols = imap
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# Tests log in with wrong passwords on purpose; do not make the next test wait for it.
auth_failure_delay = 0
login_greeting = {self._greeting}
mail_location = maildir:{b}/mail/%u/Maildir
first_valid_uid = 1
mail_max_userip_connections = 100
{chr(10).join(extra)}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.users_dir}/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={b}/mail/%u
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

    def _launch(self) -> None:
        dovecot = _binary("dovecot")
        for attempt in range(3):
            self.conf_path.write_text(self._config())
            # -F keeps the master our child: we reap it, and no zombie is left where init does not reap.
            with open(self.base / "dovecot.stderr", "ab") as err:
                self._proc = subprocess.Popen(
                    [dovecot, "-F", "-c", str(self.conf_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,
                )
            try:
                self._wait_ready()
                return
            except DovecotError as exc:
                self._shutdown()
                if self._auto_port and "in use" in str(exc) and attempt < 2:
                    self.port = _free_port()
                    continue
                raise

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if (rc := self._proc.poll()) is not None:
                raise DovecotError(f"dovecot exited with status {rc}; log tail:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1.0) as s:
                if self._greeting.encode() in s.recv(1024):
                    return
            time.sleep(0.05)
        raise DovecotError(
            f"dovecot not answering on {HOST}:{self.port} after {timeout}s; log tail:\n{self.log_tail()}"
        )

    def _probe_capabilities(self) -> list[str]:
        probe = f"capprobe-{uuid.uuid4().hex[:8]}"
        self.add_user(probe, "probe")
        try:
            with self.client(probe, "probe") as c:
                return [bytes(cap).decode() for cap in c.capabilities()]
        finally:
            (self.users_dir / probe).unlink()
            shutil.rmtree(self.base / "mail" / probe, ignore_errors=True)
            self._passwords.pop(probe, None)

    def _shutdown(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # the master stops its services and reaps them before exiting
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # The master exits before its log process does, and leaves a session in IDLE running for another
        # 10s: after a moment, end what is left as systemd would (SIGTERM to all: sessions say BYE).
        # Nothing of the group may outlive stop().
        for sig, wait in ((signal.SIGTERM, min(1.0, timeout)), (signal.SIGKILL, timeout)):
            deadline = time.monotonic() + wait
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _group_alive(proc.pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def _stop_stale(self) -> None:
        # A previous run on this base that was killed hard leaves its master behind holding the pid file.
        try:
            pid = int((self.run_dir / "master.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return
        if str(self.conf_path).encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _group_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)


@dataclass(frozen=True)
class Mailbox:
    """One user on a PrivateDovecot, with the same conveniences bound to that user."""

    server: PrivateDovecot
    user: str
    password: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def client(self) -> imapclient.IMAPClient:
        return self.server.client(self.user, self.password)

    def append(self, raw: bytes | list[bytes], folder: str = "INBOX") -> list[int]:
        return self.server.append(self.user, raw, folder)

    def uids(self, folder: str = "INBOX") -> list[int]:
        return self.server.uids(self.user, folder)

    def fetch_all(self, folder: str = "INBOX") -> list[bytes]:
        return self.server.fetch_all(self.user, folder)

    def create_folder(self, folder: str) -> None:
        self.server.create_folder(self.user, folder)
