"""The store backends the contract tests and the integration tests run on, each fresh and empty per test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailsvc.store import Store, StoreContract

STORE_BACKENDS = ["sqlite"]


@contextmanager
def open_contract_store(request: pytest.FixtureRequest) -> Iterator[StoreContract]:
    """A new store of the backend `request.param` names, closed after the test."""
    tmp_path: Path = request.getfixturevalue("tmp_path")
    store = Store.open(tmp_path / "contract.db")
    try:
        yield store
    finally:
        store.close()
