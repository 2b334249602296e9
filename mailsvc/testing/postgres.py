"""Private servers on 127.0.0.1 for tests/bench: a throwaway PostgreSQL cluster under one folder.

initdb runs once; each test gets its own database (`new_database`). The postmaster is a direct child
(run as the postgres user when we are root), stopped with SIGINT, a fast shutdown that does not wait
for a connection a test left open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import psycopg

HOST = "127.0.0.1"
SUPERUSER = "postgres"


class PostgresError(RuntimeError):
    """The private PostgreSQL could not be found or started."""


def _bin_dir() -> Path:
    root = Path("/usr/lib/postgresql")
    found = sorted(root.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name), reverse=True)
    if not found:
        raise PostgresError("initdb not found under /usr/lib/postgresql: install postgresql (apt install postgresql)")
    return found[0].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _as_postgres() -> dict[str, Any]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() != 0:
        return {}
    return {"user": SUPERUSER, "group": SUPERUSER, "extra_groups": []}


class PrivatePostgres:
    """A PostgreSQL cluster listening on 127.0.0.1 only, trusting local connections (tests only)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.sock = base / "sock"
        self.log_path = base / "postgres.log"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def in_temp_dir(cls) -> Iterator[Self]:
        # Under the system's temp dir with o+x on the way: pytest's tmp_path is 0700 and the postgres user
        # could not reach its data folder there.
        base = Path(tempfile.mkdtemp(prefix="mailsvc-postgres-"))
        base.chmod(0o755)
        server = cls(base)
        try:
            server.start()
            yield server
        finally:
            server.stop()
            shutil.rmtree(base, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={HOST} port={self.port} user={SUPERUSER} dbname={dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        binaries = _bin_dir()
        as_pg = _as_postgres()
        if as_pg:
            shutil.chown(self.base, SUPERUSER, SUPERUSER)
        if not self.data.exists():
            subprocess.run(
                [binaries / "initdb", "-D", self.data, "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                 "--locale=C.UTF-8", "-N"],
                check=True, capture_output=True, **as_pg,
            )  # fmt: skip
            self.sock.mkdir(exist_ok=True)
            if as_pg:
                shutil.chown(self.sock, SUPERUSER, SUPERUSER)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [binaries / "postgres", "-D", self.data, "-k", self.sock, "-p", str(self.port),
                 "-c", f"listen_addresses={HOST}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **as_pg,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise PostgresError(f"PostgreSQL did not start: {exc}; see {self.log_path}") from exc
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: open connections are ended
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def new_database(self, hint: str = "db") -> str:
        """A new empty database; returns its name."""
        name = "t_" + "".join(c if c.isalnum() else "_" for c in hint.lower())[:40] + "_" + uuid.uuid4().hex[:8]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def sessions(self, dbname: str) -> int:
        """How many client connections the database has now."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchone()
        return int(row[0]) if row else 0
