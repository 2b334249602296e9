"""What the command line imports before it knows the configuration: the PostgreSQL driver and the
Microsoft sign-in library only where a configuration uses them (each costs start-up a sixth of a second
or more, on every `mailsvc once` from cron)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailsvc import cli

ONLY_WHERE_USED = ("psycopg", "psycopg_pool", "msal", "requests")


@pytest.mark.parametrize("module", ["mailsvc.cli", "mailsvc.daemon"])
def test_start_up_leaves_postgresql_and_msal_unimported(module: str) -> None:
    probe = f"import sys, {module}; print(' '.join(m for m in {ONLY_WHERE_USED!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == []


def test_the_command_exits_without_collecting_all_it_made(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frozen: list[bool] = []
    monkeypatch.setattr(cli.gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(sys, "argv", ["mailsvc", "check-config", "/nonexistent/mailsvc.yaml"])
    with pytest.raises(SystemExit) as done:
        cli.entry()
    # The exit code is main()'s, and the last collection is skipped after it returned.
    assert (done.value.code, frozen) == (2, [True])
    assert "/nonexistent/mailsvc.yaml" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_entry() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mailsvc", "check-config", "/nonexistent/mailsvc.yaml"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "/nonexistent/mailsvc.yaml" in done.stderr
