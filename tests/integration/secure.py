"""Configuration sections for the TLS and OAuth2 tests: accounts on the SecureDovecot and the identity provider."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mailsvc.config import Config, parse_config
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.idp import IdentityProvider
from mailsvc.testing.sandbox import sandbox_config
from mailsvc.testing.securedovecot import SecureDovecot
from mailsvc.testing.smtp_capture import SmtpCapture


def oauth2(idp: IdentityProvider, ca_file: Path, **keys: Any) -> dict[str, Any]:
    """A generic provider on the test's identity provider, device code flow, a public client."""
    section: dict[str, Any] = {"provider": "generic", "client_id": "mailsvc-test", "ca_file": str(ca_file)}
    section.update(idp.endpoints())
    section.update(keys)
    return section


def imap(server: SecureDovecot, user: str, ca_file: Path, *, tls: str = "implicit", **keys: Any) -> dict[str, Any]:
    port = server.imaps_port if tls == "implicit" else server.port
    section: dict[str, Any] = {"host": "127.0.0.1", "port": port, "tls": tls, "ca_file": str(ca_file),
                               "user": user, "poll_interval": 1}  # fmt: skip
    section.update(keys)
    return section


def submission(server: SecureDovecot, user: str, ca_file: Path, **keys: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"host": "127.0.0.1", "port": server.submission_port, "tls": "starttls",
                               "ca_file": str(ca_file), "user": user, "retry_base": 0.5, "retry_cap": 2}  # fmt: skip
    section.update(keys)
    return section


def config_dict(
    mailbox: Mailbox, sink: SmtpCapture, store: Path, *, imap_section: dict[str, Any], smtp_section: dict[str, Any]
) -> dict[str, Any]:
    raw = sandbox_config(imap_port=mailbox.port, imap_user=mailbox.user, smtp_port=sink.port, store=store)
    raw["imap"] = imap_section
    raw["smtp"] = smtp_section
    return raw


def load(raw: dict[str, Any], base: Path) -> Config:
    return parse_config(raw, base)


def wait_until(daemon: Any, predicate: Any, what: str, timeout: float = 20) -> list[dict[str, Any]]:
    """Wait until `predicate(events)` holds for the daemon's log events; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = daemon.events()
        if predicate(events):
            return list(events)
        assert daemon.proc.poll() is None, f"daemon exited early:\n{daemon.log_path.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout}s: {what}\n{daemon.log_path.read_text()}")


def count(events: list[dict[str, Any]], name: str) -> int:
    return sum(e.get("event") == name for e in events)
