"""Read-only figures of the store for metrics, the status line and the acknowledgement's expectations.

Plain queries over a Store's connection, returning frozen or plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsvc.store import Store


@dataclass(frozen=True, slots=True)
class StoreGauges:
    queued: int
    oldest_queued_at: float | None
    timers_due: int
    timers_pending: int
    cases: dict[tuple[str, str], int]


def store_gauges(store: Store, now: float) -> StoreGauges:
    db = store.db
    queued, oldest = db.execute("SELECT count(*), min(created_at) FROM outbox WHERE state = 'queued'").fetchone()
    due, pending = db.execute(
        "SELECT count(CASE WHEN due_at <= ? THEN 1 END), count(*) FROM timers WHERE state = 'pending'", (now,)
    ).fetchone()
    cases = {
        (str(q), str(s)): int(n)
        for q, s, n in db.execute("SELECT queue, status, count(*) FROM cases GROUP BY queue, status")
    }
    return StoreGauges(int(queued), None if oldest is None else float(oldest), int(due), int(pending), cases)


def last_mail_at(store: Store) -> float | None:
    """When the last message was stored (filed or quarantined)."""
    row = store.db.execute("SELECT max(received_at) FROM messages").fetchone()
    return None if row[0] is None else float(row[0])


def first_responses(store: Store, queue: str, since: float) -> list[tuple[float, float]]:
    """(created, first answered) of the queue's cases created since `since` and staff answered (not merged ones)."""
    rows = store.db.execute(
        "SELECT created_at, first_response_at FROM cases WHERE queue = ? AND created_at >= ? "
        "AND first_response_at IS NOT NULL AND merged_into IS NULL",
        (queue, since),
    )
    return [(float(a), float(b)) for a, b in rows]
