"""Private servers on 127.0.0.1 for tests/demo/bench: the pytest fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.smtp_capture import SmtpCapture

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, not only this folder's.
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[PrivateDovecot]:
    """One private Dovecot for the session; tests stay apart by each getting their own user."""
    # In the system's temp dir, not pytest's: see PrivateDovecot.in_temp_dir.
    with PrivateDovecot.in_temp_dir() as server:
        yield server


@pytest.fixture
def mailbox(dovecot: PrivateDovecot, request: pytest.FixtureRequest) -> Mailbox:
    """A fresh user with an empty mailbox, named after the test (easy to find in dovecot.log)."""
    if not dovecot.running:  # a test that stopped the shared server must not break the ones after it
        dovecot.start()
    return dovecot.new_mailbox(request.node.name)


@pytest.fixture
def smtp() -> Iterator[SmtpCapture]:
    with SmtpCapture() as capture:
        yield capture
