"""A private SpamAssassin for tests: `spamd` on 127.0.0.1 with the shipped rules and no network tests,
and `filter`, which passes a message through it as the receiving server's MTA would before delivery.

GTUBE (`GTUBE` below) is the spam sample every SpamAssassin knows. `report_safe 0`: spam keeps its own
body and gets the X-Spam-* headers on top, exactly as spamd writes them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
_SITE_CF = "report_safe 0\nuse_bayes 0\nbayes_auto_learn 0\nskip_rbl_checks 1\n"
_USER = "debian-spamd"


class SpamdError(RuntimeError):
    """spamd could not be found or started."""


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SpamdError(f"{name} not found: install it (apt-get install spamassassin spamc spamd)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PrivateSpamd:
    def __init__(self, base: Path, port: int | None = None) -> None:
        self.base = base
        self.port = port or _free_port()
        self.spamd = _binary("spamd")
        self.spamc = _binary("spamc")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        site = self.base / "site"
        home = self.base / "home"
        site.mkdir(parents=True, exist_ok=True)
        home.mkdir(exist_ok=True)
        for pre in Path("/etc/spamassassin").glob("*.pre"):  # they load the plugins
            shutil.copy(pre, site / pre.name)
        (site / "local.cf").write_text(_SITE_CF)
        command = [
            self.spamd, "-x", "-L", "-H", str(home), "-i", f"{HOST}:{self.port}", "-A", HOST,
            "-r", str(self.base / "spamd.pid"), "-s", "stderr", "--max-children=1", "--min-children=1",
            f"--siteconfigpath={site}",
        ]  # fmt: skip
        if os.geteuid() == 0:
            # As root spamd's children run as a user of their own; it must own the helper home.
            user = pwd.getpwnam(_USER)
            os.chown(home, user.pw_uid, user.pw_gid)
            command[1:1] = ["-u", _USER]
        log = (self.base / "spamd.log").open("wb")
        self._proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SpamdError(f"spamd did not start: {self.log_tail()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        done = subprocess.run(
            [self.spamc, "-d", HOST, "-p", str(self.port), "-K"], capture_output=True, timeout=10, check=False
        )
        return done.stdout.startswith(b"SPAMD/")

    def filter(self, raw: bytes) -> bytes:
        """The message as spamd gives it back: the X-Spam-* headers added (what the MTA delivers)."""
        done = subprocess.run(
            [self.spamc, "-d", HOST, "-p", str(self.port), "-x"], input=raw, capture_output=True, timeout=60, check=True
        )
        return done.stdout

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.base / "spamd.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_temp_dir(cls) -> Iterator[PrivateSpamd]:
        base = Path(tempfile.mkdtemp(prefix="mailsvc-spamd-"))
        base.chmod(0o755)  # spamd's children (another user) read the site config and write the home
        try:
            with cls(base) as server:
                yield server
        finally:
            shutil.rmtree(base, ignore_errors=True)
