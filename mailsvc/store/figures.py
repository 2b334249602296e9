"""Read-only figures of the store for the acknowledgement's expectations.

Plain queries over a Store's connection, returning plain values.
"""

from __future__ import annotations

from mailsvc.store import Store


def first_responses(store: Store, queue: str, since: float) -> list[tuple[float, float]]:
    """(created, first answered) of the queue's cases created since `since` and staff answered (not merged ones)."""
    rows = store.db.execute(
        "SELECT created_at, first_response_at FROM cases WHERE queue = ? AND created_at >= ? "
        "AND first_response_at IS NOT NULL AND merged_into IS NULL",
        (queue, since),
    )
    return [(float(a), float(b)) for a, b in rows]
