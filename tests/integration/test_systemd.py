"""The systemd files in systemd/: the unit passes `systemd-analyze verify` and keeps its security exposure,
sysusers and tmpfiles apply, and `mailsvc run` keeps the unit's contract (sd_notify, system call filter,
address families) when started the way systemd starts it.

No systemd runs as PID 1 here: every check works offline, on files and on a traced daemon process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsvc.cli import build_parser, cmd_run
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "mailsvc.service"
SYSUSERS = SYSTEMD / "mailsvc.sysusers.conf"
TMPFILES = SYSTEMD / "mailsvc.tmpfiles.conf"

# Measured with systemd 252: 1.1. What is left is what a network client needs (or, for the RTC, what
# ProtectClock= brings along); the unit's comments say why each stays. Anything else failing is a regression.
MAX_EXPOSURE = 1.1
ACCEPTED_EXPOSURES = {
    "PrivateNetwork=",
    "RestrictAddressFamilies=~AF_(INET|INET6)",
    "RestrictAddressFamilies=~AF_UNIX",
    "IPAddressDeny=",
    "RootDirectory=/RootImage=",
    "DeviceAllow=",
}


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package systemd; scripts/setup.sh installs it)")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def service_settings(unit: Path = UNIT) -> dict[str, list[str]]:
    """The [Service] section's assignments, in order, with the `~`-lists kept as written."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_for_verify(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart binary exists here: verify insists on it, the rest is untouched."""
    argv = shlex.split(service_settings()["ExecStart"][0])
    installed = Path(sys.executable).with_name("mailsvc")  # the console script pip puts beside the interpreter
    assert installed.is_file(), f"{installed} is missing: install the project (pip install -e .)"
    text = UNIT.read_text()
    assert text.count(argv[0]) == 1, f"{argv[0]} should appear once in the unit, in ExecStart="
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(argv[0], str(installed)))
    return copy


@pytest.fixture
def analyze() -> str:
    return _tool("systemd-analyze")


def test_unit_passes_systemd_analyze_verify(analyze: str, tmp_path: Path) -> None:
    result = _run(analyze, "verify", str(unit_for_verify(tmp_path)))
    output = (result.stdout + result.stderr).strip()
    # verify exits 0 on unknown or misspelled keys: only an empty output means no warnings.
    assert result.returncode == 0 and output == "", output


def test_verify_reports_a_misspelled_setting(analyze: str, tmp_path: Path) -> None:
    """The check above can fail: the same verify run names a broken line of the same unit."""
    unit = unit_for_verify(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = _run(analyze, "verify", str(unit))
    assert "Unknown key 'ProtectSytem'" in result.stdout + result.stderr


def test_exec_start_is_a_mailsvc_run_command_line() -> None:
    argv = shlex.split(service_settings()["ExecStart"][0])
    assert Path(argv[0]).name == "mailsvc"
    args = build_parser().parse_args(argv[1:])
    assert args.func is cmd_run
    assert str(args.config).startswith("/etc/mailsvc/")


def test_security_exposure_stays_at_the_measured_level(analyze: str) -> None:
    result = _run(analyze, "security", "--offline=true", str(UNIT))
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    match = re.search(r"Overall exposure level for mailsvc\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    exposure = float(match.group(1))
    print(f"systemd-analyze security --offline=true systemd/mailsvc.service: overall exposure {exposure}")
    failing = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("✗")}
    assert failing <= ACCEPTED_EXPOSURES, f"newly exposed: {sorted(failing - ACCEPTED_EXPOSURES)}"
    assert exposure <= MAX_EXPOSURE, result.stdout


def _sysusers_into(root: Path) -> subprocess.CompletedProcess[str]:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    return _run(_tool("systemd-sysusers"), f"--root={root}", str(SYSUSERS))


def _entries(path: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in path.read_text().splitlines() if line}


def test_sysusers_creates_the_user_the_unit_runs_as(tmp_path: Path) -> None:
    result = _sysusers_into(tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(line.startswith("Creating ") for line in result.stderr.splitlines()), result.stderr
    settings = service_settings()
    user, group = settings["User"][0], settings["Group"][0]
    passwd, groups = _entries(tmp_path / "etc/passwd"), _entries(tmp_path / "etc/group")
    assert user in passwd and group in groups
    _, _, uid, gid, _, home, shell = passwd[user]
    assert int(uid) < 1000 and gid == groups[group][2], "a system user whose primary group is the unit's Group="
    assert home == "/var/lib/" + settings["StateDirectory"][0]
    assert shell.endswith("nologin")


def test_tmpfiles_gives_the_configuration_to_the_service_group_only(tmp_path: Path) -> None:
    tmpfiles = _tool("systemd-tmpfiles")
    assert _sysusers_into(tmp_path).returncode == 0
    etc = tmp_path / "etc/mailsvc"
    etc.mkdir(mode=0o755)
    for name in ("mailsvc.yaml", "imap-password"):
        (etc / name).write_text("x\n")
        (etc / name).chmod(0o644)
    result = _run(tmpfiles, f"--root={tmp_path}", "--create", str(TMPFILES))
    if os.geteuid() != 0:
        # Only root may give files to another owner; everything else (the parse above all) is still checked.
        problems = [line for line in result.stderr.splitlines() if "Operation not permitted" not in line]
        assert problems == [], result.stderr
        pytest.skip("owners are set by root only: run as root to check them")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    gid = int(_entries(tmp_path / "etc/group")[service_settings()["Group"][0]][2])

    def owner_and_mode(path: Path) -> tuple[int, int, int]:
        st = path.stat()
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    assert owner_and_mode(etc) == (0, gid, 0o750)
    assert owner_and_mode(etc / "mailsvc.yaml") == (0, gid, 0o640)
    assert owner_and_mode(etc / "imap-password") == (0, 0, 0o600)
    assert service_settings()["ConfigurationDirectoryMode"] == ["0750"], "the unit must agree with tmpfiles"


# -- the daemon as the unit starts it ---------------------------------------------------------------------------


@functools.cache
def syscall_group(analyze: str, name: str) -> set[str]:
    """The system calls of a filter group, nested groups expanded, as this systemd defines them."""
    result = _run(analyze, "syscall-filter", name)
    assert result.returncode == 0, result.stderr
    calls: set[str] = set()
    for line in result.stdout.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= syscall_group(analyze, item) if item.startswith("@") else {item}
    return calls


def allowed_syscalls(analyze: str) -> set[str]:
    """What the unit's SystemCallFilter= lines leave allowed: the allow-list minus every `~` deny-list."""
    allowed: set[str] = set()
    for value in service_settings()["SystemCallFilter"]:
        deny = value.startswith("~")
        names: set[str] = set()
        for item in value.removeprefix("~").split():
            names |= syscall_group(analyze, item) if item.startswith("@") else {item}
        allowed = allowed - names if deny else allowed | names
    return allowed


class NotifySocket:
    """The service manager's end of sd_notify: an abstract datagram socket keeping every line the daemon sends."""

    def __init__(self) -> None:
        self.name = f"@mailsvc-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.1)
        self.lines: list[str] = []

    def wait_for(self, line: str, *, after: int = 0, timeout: float = 15.0) -> int:
        """The position of the first `line` received at or after position `after`."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ValueError):
                return self.lines.index(line, after)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {line!r} from the daemon in {timeout}s; it sent {self.lines}")
            with contextlib.suppress(TimeoutError):
                self.lines += self.sock.recv(4096).decode().splitlines()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


SYSCALL_LINE = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z_][a-z0-9_]*)(?:\(| resumed>)")
SOCKET_CALL = re.compile(r"\bsocket\((AF_[A-Z0-9]+)")
MEMORY_CALL = re.compile(r"\b(mmap|mprotect|pkey_mprotect)\([^,]*, [^,]*, ([A-Z_|]+)")
# SQLite fchown()s its journal to the database's owner when, and only when, it runs as root. The unit never
# runs it as root (User=), so that call is not the unit's concern when this suite runs as root.
ROOT_ONLY_SYSCALLS = {"fchown"}
# The daemon sees a stop request within a second; this leaves room for strace and a slow machine, and stays
# well inside the unit's TimeoutStopSec=, after which systemd would kill it.
STOP_WITHIN = 10.0


def service_environment(files: Path, notify: NotifySocket) -> dict[str, str]:
    """What systemd gives the unit's process: a bare environment, its directories, and the unit's Environment=."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(files / "state"),
        "NOTIFY_SOCKET": notify.name,
        "CREDENTIALS_DIRECTORY": str(files / "credentials"),
        "STATE_DIRECTORY": str(files / "state"),
        "WATCHDOG_USEC": "1000000",  # from WatchdogSec=; one second here, so that pings come quickly
    }
    for value in service_settings().get("Environment", []):
        for item in shlex.split(value):
            key, _, setting = item.partition("=")
            env[key] = setting
    return env


def logged(log: Path) -> dict[str, dict[str, Any]]:
    """The first log event of each name."""
    events: dict[str, dict[str, Any]] = {}
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            events.setdefault(event["event"], event)
    return events


def write_service_files(files: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Path:
    """The configuration, with the IMAP password read from the credentials folder as the README sets it up."""
    (files / "state").mkdir(mode=0o700)
    (files / "credentials").mkdir(mode=0o700)
    (files / "credentials/imap-password").write_text(mailbox.password + "\n")
    return write_config(
        files / "mailsvc.yaml",
        sandbox_config(
            imap_port=mailbox.port, imap_user=mailbox.user, smtp_port=smtp.port, store=files / "state/mailsvc.db",
            imap={"password": None, "password_file": "${CREDENTIALS_DIRECTORY}/imap-password"},
            metrics={"listen": "127.0.0.1:0"},  # the unit's sandbox must allow the loopback listener too
        ),
    )  # fmt: skip


def working_strace() -> str | None:
    strace = shutil.which("strace")
    if strace and _run(strace, "-f", "-qq", "-o", os.devnull, "true").returncode != 0:
        return None  # installed, but ptrace is not permitted here (some container sandboxes)
    return strace


def assert_inside_the_sandbox(trace: Path, analyze: str) -> None:
    """Nothing in the trace that the unit's SystemCallFilter=, RestrictAddressFamilies= or
    MemoryDenyWriteExecute= would refuse."""
    settings = service_settings()
    lines = trace.read_text().splitlines()
    used = {m.group(1) for line in lines if (m := SYSCALL_LINE.match(line))}
    assert {"execve", "connect", "sendto"} <= used, "the trace must hold the daemon's calls"
    if os.geteuid() == 0:
        used -= ROOT_ONLY_SYSCALLS
    outside = used - allowed_syscalls(analyze)
    assert not outside, f"calls the unit's SystemCallFilter= refuses (EPERM): {sorted(outside)}"

    families = {m.group(1) for line in lines if (m := SOCKET_CALL.search(line))}
    assert families, "the trace must hold the daemon's sockets"
    assert families <= set(" ".join(settings["RestrictAddressFamilies"]).split()), families

    if settings["MemoryDenyWriteExecute"] == ["yes"]:
        # Refused: memory writable and executable at once, or made executable after mapping.
        memory = [(m.group(1), set(m.group(2).split("|"))) for line in lines if (m := MEMORY_CALL.search(line))]
        assert memory, "the trace must hold the daemon's mappings"
        refused = [(c, p) for c, p in memory if "PROT_EXEC" in p and (c != "mmap" or "PROT_WRITE" in p)]
        assert not refused, refused


def test_daemon_keeps_the_unit_contract(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, notify: NotifySocket
) -> None:
    """`mailsvc run` as the unit runs it (bare environment, cwd /, NOTIFY_SOCKET, WATCHDOG_USEC, credentials,
    the unit's Environment=): READY=1 once the mailbox is watched, watchdog pings, a reload on SIGHUP
    (ExecReload=), STOPPING=1 and exit 0 soon after SIGTERM; traced, it stays inside the unit's sandbox."""
    config = write_service_files(tmp_path, mailbox, smtp)
    strace, trace = working_strace(), tmp_path / "strace.txt"
    command = [str(Path(sys.executable).with_name("mailsvc")), "run", "-c", str(config)]  # ExecStart's binary
    if strace:
        command = [strace, "-f", "-qq", "-o", str(trace), *command]
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd="/", env=service_environment(tmp_path, notify),
            start_new_session=True,
        )  # fmt: skip
        try:
            ready = notify.wait_for("READY=1")
            assert "imap_connected" in logged(log), "READY=1 only once the mailbox is connected"
            assert any(line.startswith("STATUS=") for line in notify.lines)
            pid = logged(log)["daemon_started"]["pid"]  # the daemon's own, not strace's
            notify.wait_for("WATCHDOG=1", after=ready)
            mailbox.append(mail(subject="Under the unit's rules"))
            (ack,) = smtp.wait_for(1, timeout=20)
            assert "[Help #1]" in ack.message["Subject"]
            metrics_url = f"http://127.0.0.1:{logged(log)['metrics_listening']['port']}/metrics"
            with urllib.request.urlopen(metrics_url, timeout=10) as response:
                assert 'mailsvc_cases_opened_total{queue="help"} 1.0' in response.read().decode()

            os.kill(pid, signal.SIGHUP)
            reloading = notify.wait_for("RELOADING=1", after=ready)
            notify.wait_for("READY=1", after=reloading)
            assert "config_reloaded" in logged(log)

            os.kill(pid, signal.SIGTERM)
            notify.wait_for("STOPPING=1", after=reloading)
            try:
                code = proc.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running {STOP_WITHIN}s after SIGTERM:\n{log.read_text()[-3000:]}")
            assert code == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    analyze = shutil.which("systemd-analyze")
    if not (strace and analyze):
        pytest.skip("no strace (or no ptrace) or no systemd-analyze; scripts/setup.sh installs both: calls unchecked")
    assert_inside_the_sandbox(trace, analyze)
