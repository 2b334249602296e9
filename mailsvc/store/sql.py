"""What the store's queries need of a database connection, met by sqlite3 as it is and by PostgreSQL
through `PgConnection`.

The queries are written once, in SQL both engines read (`?` placeholders, `ON CONFLICT`, `RETURNING`,
`CAST(? AS ...) IS NULL` for optional filters); `PgConnection` turns the placeholders into psycopg's.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol


def ts(when: datetime) -> float:
    """A time as the store keeps it: seconds since the epoch."""
    return when.timestamp()


def dt(value: float) -> datetime:
    """A time the store kept, back as an aware datetime (UTC)."""
    return datetime.fromtimestamp(value, UTC)


class SqlCursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class SqlConnection(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> SqlCursor: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object: ...


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """The query with psycopg's placeholders: `%` doubled, each `?` a `%s` (no query holds a literal `?`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Row:
    """A result row read by column name or by position, as sqlite3.Row is."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = tuple(values)
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)
