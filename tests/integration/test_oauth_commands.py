"""`mailsvc oauth login` and `oauth status` as a user runs them: on a terminal and not, cancelled, refused;
the status of a token file that is missing, damaged, expired or failed. The identity provider is the suite's."""

from __future__ import annotations

import argparse
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mailsvc.config import Config, parse_config
from mailsvc.credentials import token_path
from mailsvc.oauth.commands import cmd_oauth_login, cmd_oauth_status
from mailsvc.oauth.tokens import TokenFile, TokenSet
from mailsvc.testing.idp import IdentityProvider
from mailsvc.testing.sandbox import sandbox_config, write_config
from mailsvc.testing.tls import ThrowawayCA
from tests.integration import secure

USER = "alice@example.org"


def oauth_raw(tmp_path: Path, idp: IdentityProvider, ca: ThrowawayCA) -> dict[str, Any]:
    raw = sandbox_config(imap_port=993, imap_user=USER, smtp_port=25, store=tmp_path / "mailsvc.db")
    raw["imap"] = {"host": "127.0.0.1", "port": 993, "tls": "implicit", "ca_file": str(ca.cert_file), "user": USER,
                   "auth": "oauth2", "oauth2": secure.oauth2(idp, ca.cert_file)}  # fmt: skip
    return raw


def token_file_of(raw: dict[str, Any], tmp_path: Path) -> Path:
    config: Config = parse_config(raw, tmp_path)
    return token_path(config, config.imap)


def read_until(fd: int, pattern: bytes, timeout: float = 30) -> bytes:
    """What the process wrote to `fd` up to and including `pattern`; fails after `timeout`."""
    seen = b""
    deadline = time.monotonic() + timeout
    while pattern not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{pattern!r} not written in {timeout}s: {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closed: the process ended
                chunk = b""
            assert chunk, f"ended before {pattern!r}: {seen!r}"
            seen += chunk
    return seen


def wait_for_user_code(idp: IdentityProvider, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not idp.pending_user_codes():
        assert time.monotonic() < deadline, "no device code asked for"
        time.sleep(0.02)
    (code,) = idp.pending_user_codes()
    return code


class OnTerminal:
    """`mailsvc oauth login` with its output on a pseudo-terminal, as when run by hand."""

    def __init__(self, config: Path) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailsvc", "oauth", "login", "-c", str(config)],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
        )  # fmt: skip
        os.close(slave)

    def finish(self) -> tuple[int, bytes]:
        rest = b""
        while True:
            ready, _, _ = select.select([self.master], [], [], 30)
            assert ready, "the command did not end"
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            rest += chunk
        os.close(self.master)
        return self.proc.wait(30), rest


def test_device_login_on_a_terminal_counts_down_on_one_line(
    idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    raw = oauth_raw(tmp_path, idp, tls_ca)
    run = OnTerminal(write_config(tmp_path / "mailsvc.yaml", raw))
    shown = read_until(run.master, b"(Ctrl-C cancels)")
    idp.approve(wait_for_user_code(idp), USER)
    code, rest = run.finish()
    output = shown + rest
    assert code == 0, output
    # The countdown rewrites its line (carriage return, erase to its end); the result starts a new one.
    # (The terminal shows each "\n" as "\r\n".)
    assert re.search(
        rb"code \w+\r\n(\rwaiting for the sign-in to be approved: \d+:\d\d left \(Ctrl-C cancels\)\x1b\[K)+"
        rb"\r\nimap \(alice@example\.org\): signed in; ",
        output,
    ), output
    tokens = TokenFile(token_file_of(raw, tmp_path)).load()
    assert tokens is not None and tokens.refresh_token
    assert tokens.refresh_token.encode() not in output


def test_ctrl_c_on_a_terminal_ends_the_countdown_line_and_stores_nothing(
    idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    raw = oauth_raw(tmp_path, idp, tls_ca)
    run = OnTerminal(write_config(tmp_path / "mailsvc.yaml", raw))
    read_until(run.master, b"(Ctrl-C cancels)")
    run.proc.send_signal(signal.SIGINT)
    code, rest = run.finish()
    assert code == 1
    assert re.search(rb"\r?\ncancelled: nothing stored", rest), rest
    assert not token_file_of(raw, tmp_path).exists()


def test_ctrl_c_without_a_terminal_stores_nothing(idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path) -> None:
    raw = oauth_raw(tmp_path, idp, tls_ca)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsvc", "oauth", "login", "-c", str(write_config(tmp_path / "mailsvc.yaml", raw))],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    read_until(proc.stdout.fileno(), b"(Ctrl-C cancels)\n")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 1
    assert proc.stderr.read() == b"cancelled: nothing stored\n"
    proc.stdout.close()
    proc.stderr.close()
    assert not token_file_of(raw, tmp_path).exists()


def test_a_refused_sign_in_says_why_and_what_to_do(idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path) -> None:
    raw = oauth_raw(tmp_path, idp, tls_ca)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsvc", "oauth", "login", "-c", str(write_config(tmp_path / "mailsvc.yaml", raw))],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    idp.deny(wait_for_user_code(idp))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err
    assert err == (
        "sign-in failed: access_denied\n  what to do: the sign-in was refused: run `mailsvc oauth login` again\n"
    )
    assert "\r" not in out  # not a terminal: one line per countdown step
    assert not token_file_of(raw, tmp_path).exists()


def args(config: Path, account: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(config=config, account=account)


def test_without_oauth2_accounts_login_fails_and_status_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "mailsvc.yaml", sandbox_config(imap_port=993, imap_user=USER, smtp_port=25,
                                                                  store=tmp_path / "mailsvc.db"))  # fmt: skip
    assert cmd_oauth_login(args(path)) == 1
    assert capsys.readouterr().err == f"{path}: no account uses auth: oauth2\n"
    assert cmd_oauth_status(args(path)) == 0
    assert capsys.readouterr().out == f"{path}: no account uses auth: oauth2\n"


def status(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = cmd_oauth_status(args(path))
    return code, capsys.readouterr().out.splitlines()[2:]


def test_status_of_a_missing_token_file(
    idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "mailsvc.yaml", oauth_raw(tmp_path, idp, tls_ca))
    assert status(path, capsys) == (1, ["  no tokens: run `mailsvc oauth login`"])


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("{not json", "cannot read the token file {path}: not valid JSON"),
        ('{"access_token": "x"}', "the token file {path} is damaged: run `mailsvc oauth login`"),
    ],
)
def test_status_of_a_damaged_token_file(
    idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    content: str, line: str,
) -> None:  # fmt: skip
    raw = oauth_raw(tmp_path, idp, tls_ca)
    path = write_config(tmp_path / "mailsvc.yaml", raw)
    token_file = token_file_of(raw, tmp_path)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(content)
    assert status(path, capsys) == (1, ["  " + line.format(path=token_file.resolve())])


def test_status_of_an_expired_token_whose_refresh_failed_for_good(
    idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = oauth_raw(tmp_path, idp, tls_ca)
    path = write_config(tmp_path / "mailsvc.yaml", raw)
    now = time.time()
    TokenFile(token_file_of(raw, tmp_path)).save(TokenSet(
        USER, access_token="eyJ-secret-access", expires_at=now - 60, issued_at=now - 3660,
        refresh_token="secret-refresh-0Rt", refresh_obtained_at=now - 3 * 86400 - 7200, scopes=("mail",),
        last_error="invalid_grant", last_error_at=now - 2 * 3600 - 300,
    ))  # fmt: skip
    code, lines = status(path, capsys)
    assert code == 1
    assert lines == [
        "  access token: expired",
        "  refresh token: 3 d 2 h old",
        "  scopes: mail",
        "  last refresh error: invalid_grant (2 h 5 min ago): the refresh token was revoked or expired "
        "(password change, admin revocation, or unused too long): run `mailsvc oauth login` for this account",
    ]


def test_status_of_a_token_file_with_no_access_token_and_a_refresh_token_of_unknown_age(
    idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = oauth_raw(tmp_path, idp, tls_ca)
    path = write_config(tmp_path / "mailsvc.yaml", raw)
    TokenFile(token_file_of(raw, tmp_path)).save(TokenSet(USER, refresh_token="secret-refresh-9Qz"))
    code, lines = status(path, capsys)
    assert code == 0  # a refresh token is there: the daemon gets an access token with it
    assert lines == ["  scopes: -", "  last refresh error: none"]
