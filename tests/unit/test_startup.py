"""What the command line imports before it knows the configuration: the PostgreSQL driver and the
Microsoft sign-in library only where a configuration uses them (each costs start-up a sixth of a second
or more, on every `mailsvc once` from cron)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ONLY_WHERE_USED = ("psycopg", "psycopg_pool", "msal", "requests")


@pytest.mark.parametrize("module", ["mailsvc.cli", "mailsvc.daemon"])
def test_start_up_leaves_postgresql_and_msal_unimported(module: str) -> None:
    probe = f"import sys, {module}; print(' '.join(m for m in {ONLY_WHERE_USED!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.split() == []
