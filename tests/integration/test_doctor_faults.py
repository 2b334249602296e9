"""`mailsvc doctor`'s failure branches against real servers on 127.0.0.1: each failing check with its hint."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from mailsvc.doctor import run_doctor
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.test_doctor import states

# glibc refuses a label that starts with a hyphen before asking any resolver: no packet leaves the machine.
UNRESOLVABLE = "-bad-.invalid"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_for(mailbox: Mailbox, capture: SmtpCapture, tmp_path: Path, /, **overrides: Any) -> dict[str, Any]:
    return sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=capture.port, store=tmp_path / "mailsvc.db", **overrides,
    )  # fmt: skip


def run(tmp_path: Path, raw: dict[str, Any], *, fix: bool = False) -> tuple[int, str]:
    lines: list[str] = []
    code = run_doctor(write_config(tmp_path / "mailsvc.yaml", raw), fix, lines.append)
    return code, "\n".join(lines)


def test_plain_loopback_servers_pass_without_tls_or_smtp_login(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.create_folder("Processed")
    mailbox.create_folder("Quarantine")
    with SmtpCapture(smtputf8=True) as smtp:
        code, output = run(tmp_path, raw_for(mailbox, smtp, tmp_path))
    assert code == 0, output
    assert set(states(output).values()) == {"ok"}, output
    assert "[ ok ] imap: TLS: none (tls: none, loopback only)" in output
    assert "[ ok ] smtp: authentication: no user: a relay that needs no login" in output
    assert "[ ok ] smtp: SMTPUTF8: offered" in output
    assert "does not exist yet: created at the first start" in output
    assert "no server told its time" in output
    assert output.endswith("all checks passed.")
