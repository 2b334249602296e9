"""Configs and sample mail for a mailsvc wired to private servers on 127.0.0.1 (tests, demo, bench)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mailsvc.testing.dovecot import Mailbox
    from mailsvc.testing.smtp_capture import SmtpCapture

HELP_ADDRESS = "help@example.org"


def sandbox_config(
    *,
    imap_port: int,
    imap_user: str,
    smtp_port: int,
    store: Path,
    imap_password: str = "secret",
    **overrides: Mapping[str, Any],
) -> dict[str, Any]:
    """A valid configuration as a dict; `overrides` replace keys inside each top-level section."""
    config: dict[str, Any] = {
        "imap": {
            "host": "127.0.0.1",
            "port": imap_port,
            "tls": "none",
            "user": imap_user,
            "password": imap_password,
            "poll_interval": 1,
        },
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none", "retry_base": 0.5, "retry_cap": 2},
        "queues": {"help": {"address": HELP_ADDRESS, "display_name": "Example Help Desk"}},
        "store": {"path": str(store)},
        "log": {"format": "json", "level": "debug"},
    }
    for section, values in overrides.items():
        if isinstance(config.get(section), dict) and section != "queues":
            config[section].update(values)
        else:
            config[section] = values
    return config


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def write_sandbox_config(
    path: Path, mailbox: Mailbox, smtp: SmtpCapture, store: Path, **overrides: Mapping[str, Any]
) -> Path:
    """The config file of a mailsvc on this mailbox and SMTP capture; `overrides` as for sandbox_config."""
    config = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=store, **overrides,
    )  # fmt: skip
    return write_config(path, config)


def read_rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read a store another process is using, without taking part in its transactions."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [tuple(row) for row in db.execute(sql)]
    finally:
        db.close()


def mail(
    subject: str = "The printer on floor 3 is jammed",
    sender: str = "Alice Example <alice@example.net>",
    body: str = "Hello,\n\nthe printer on floor 3 jams on every page since this morning.\n\nAlice\n",
    *,
    to: str = HELP_ADDRESS,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
) -> bytes:
    """A plain text message as a mail client would send it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="example.net")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()
