"""Private servers on 127.0.0.1 for tests/demo/bench: the pytest fixtures of the integration tests."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsvc.config import Config
from mailsvc.testing.desk import START, Clock, Desk, desk_config
from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.idp import IdentityProvider
from mailsvc.testing.postgres import PrivatePostgres
from mailsvc.testing.securedovecot import SecureDovecot
from mailsvc.testing.smtp_capture import SmtpCapture
from mailsvc.testing.spamd import PrivateSpamd
from mailsvc.testing.tls import ServerCert, ThrowawayCA
from tests.integration.test_service import NotifyListener, Service

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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    """One private PostgreSQL cluster for the session; tests stay apart by each getting their own database."""
    with PrivatePostgres.in_temp_dir() as server:
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


# -- TLS and OAuth2: a throwaway CA, Dovecot with TLS, OAuth2 and submission, an identity provider ----------


@pytest.fixture(scope="session")
def tls_ca() -> Iterator[ThrowawayCA]:
    folder = Path(tempfile.mkdtemp(prefix="mailsvc-ca-"))
    try:
        yield ThrowawayCA(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def server_cert(tls_ca: ThrowawayCA) -> ServerCert:
    """For 127.0.0.1 and localhost."""
    return tls_ca.issue("server")


@pytest.fixture(scope="session")
def oauth_key() -> bytes:
    """The key the identity provider signs access tokens with, and Dovecot checks them with."""
    return secrets.token_bytes(32)


@pytest.fixture(scope="session")
def relay_sink() -> Iterator[SmtpCapture]:
    """Where Dovecot's submission service relays what mailsvc sends through it."""
    with SmtpCapture() as capture:
        yield capture


@pytest.fixture(scope="session")
def secure_dovecot(server_cert: ServerCert, oauth_key: bytes, relay_sink: SmtpCapture) -> Iterator[SecureDovecot]:
    base = Path(tempfile.mkdtemp(prefix="mailsvc-securedovecot-"))
    try:
        with SecureDovecot(base, server_cert, oauth_key=oauth_key, relay_port=relay_sink.port, trace=True) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def secure_mailbox(secure_dovecot: SecureDovecot, relay_sink: SmtpCapture, request: pytest.FixtureRequest) -> Mailbox:
    relay_sink.clear()
    return secure_dovecot.new_mailbox(request.node.name)


@pytest.fixture
def idp(server_cert: ServerCert, oauth_key: bytes) -> Iterator[IdentityProvider]:
    with IdentityProvider(server_cert, key=oauth_key, client_secrets={"mailsvc-app": "app-secret-Zq7"}) as provider:
        yield provider


# -- Spam verdicts: a private SpamAssassin that marks mail before it is appended, as the MTA would ------


@pytest.fixture(scope="session")
def spamd() -> Iterator[PrivateSpamd]:
    with PrivateSpamd.in_temp_dir() as server:
        yield server


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    """The service manager's end of sd_notify, for a daemon started with NOTIFY_SOCKET."""
    listener = NotifyListener(tmp_path)
    yield listener
    listener.close()


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Every daemon a test starts is stopped at the end, whatever happened."""
    started: list[Service] = []
    yield started
    for service in started:
        if service.proc.poll() is None:
            service.stop()


# -- A desk on a moved clock: the daemon's parts driven step by step (mailsvc.testing.desk) ------------------
# A module overrides `clock` for another start, `desk_settings` for another configuration.


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def desk_settings(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Config:
    return desk_config(tmp_path, mailbox, smtp)


@pytest.fixture
def desk(desk_settings: Config, mailbox: Mailbox, smtp: SmtpCapture, clock: Clock) -> Iterator[Desk]:
    with Desk(desk_settings, mailbox, smtp, clock) as d:
        yield d
