"""The log stream: what reaches stdout, and how."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
import structlog

from mailsvc.log import configure, get_logger


class _Writes(io.StringIO):
    """A stdout that keeps each write call apart."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, s: str) -> int:
        self.calls.append(s)
        return super().write(s)


@pytest.fixture(autouse=True)
def _saved_configuration() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def stdout(monkeypatch: pytest.MonkeyPatch) -> _Writes:
    """In the test's body: pytest puts its own capture back between a fixture's setup and the test."""
    out = _Writes()
    monkeypatch.setattr(sys, "stdout", out)
    return out


def test_each_event_is_one_line_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # `mailsvc once` logs from two processes into one stream: a line written in two pieces could be
    # split by the other process's line.
    out = stdout(monkeypatch)
    configure("json")
    get_logger(component="sender").info("mail_sent", case_id=7)
    get_logger().warning("store_unavailable")

    assert [json.loads(call)["event"] for call in out.calls] == ["mail_sent", "store_unavailable"]
    assert all(call.endswith("\n") and call.count("\n") == 1 for call in out.calls)


def test_fields_named_like_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    out = stdout(monkeypatch)
    configure("json")
    get_logger().info("login_tried", password="hunter22", user="help@example.org")

    (line,) = out.getvalue().splitlines()
    assert json.loads(line) == {
        "event": "login_tried", "password": "[redacted]", "user": "help@example.org", "level": "info",
        "timestamp": json.loads(line)["timestamp"],
    }  # fmt: skip
