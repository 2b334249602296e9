"""The store backends the contract tests and the integration tests run on, each fresh and empty per test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailsvc.store import Store, StoreContract
from mailsvc.store.postgres import PostgresStore, close_pools
from mailsvc.testing.postgres import PrivatePostgres

STORE_BACKENDS = ["sqlite", "postgresql"]


def new_store_url(request: pytest.FixtureRequest) -> str:
    """A new, empty PostgreSQL database on the session's private cluster, named after the test."""
    server: PrivatePostgres = request.getfixturevalue("postgres")
    if not server.running:
        server.start()
    request.addfinalizer(close_pools)  # the connections the test's stores pooled, to that database
    return server.url(server.new_database(request.node.name))


@contextmanager
def open_contract_store(request: pytest.FixtureRequest) -> Iterator[StoreContract]:
    """A new store of the backend `request.param` names, closed after the test."""
    store: Store
    if request.param == "postgresql":
        store = PostgresStore.connect(new_store_url(request), lease=30.0)
    else:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        store = Store.open(tmp_path / "contract.db")
    try:
        yield store
    finally:
        store.close()


def store_section(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The configuration's `store` section for the backend `request.param` names, a fresh store."""
    if request.param == "postgresql":
        return {"url": new_store_url(request)}
    return {"path": str(tmp_path / "mailsvc.db")}
