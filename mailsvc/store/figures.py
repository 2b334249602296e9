"""Read-only figures of the store for metrics, the acknowledgement's expectations and the digest.

Plain queries over a Store's connection, returning frozen values; the digest's bookkeeping
(`claim_digest`) is the one write, done inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mailsvc.store import Store


@dataclass(frozen=True, slots=True)
class StoreGauges:
    queued: int
    oldest_queued_at: float | None
    timers_due: int
    timers_pending: int
    cases: Mapping[tuple[str, str], int]  # (queue, status) -> cases


def store_gauges(store: Store, now: float) -> StoreGauges:
    db = store.db
    queued, oldest = db.execute("SELECT count(*), min(created_at) FROM outbox WHERE state = 'queued'").fetchone()
    due, pending = db.execute(
        "SELECT count(CASE WHEN due_at <= ? THEN 1 END), count(*) FROM timers WHERE state = 'pending'", (now,)
    ).fetchone()
    # Junk is a status of its own here, as in `cases list` (the workflow status it keeps is not shown).
    cases = {
        (str(q), str(s)): int(n)
        for q, s, n in db.execute(
            "SELECT queue, CASE WHEN junk_at IS NOT NULL THEN 'junk' ELSE status END AS shown, count(*) FROM cases "
            "GROUP BY queue, shown"
        )
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


# --- the digest


def waiting_cases(store: Store, limit: int = 50) -> list[tuple[int, str, str, float]]:
    """Open cases (the team owes the next answer), least recently active first: (id, queue, subject, since)."""
    rows = store.db.execute(
        "SELECT id, queue, subject, updated_at FROM cases WHERE status = 'open' AND merged_into IS NULL "
        "ORDER BY updated_at, id LIMIT ?",
        (limit,),
    )
    return [(int(i), str(q), str(s), float(u)) for i, q, s, u in rows]


def rated_messages(store: Store, since: float, until: float) -> list[tuple[int, str, str]]:
    """Messages that carried a satisfaction answer, received in [since, until): (case, subject, text)."""
    rows = store.db.execute(
        "SELECT case_id, subject, body_text FROM messages WHERE state = 'filed' AND reason LIKE 'satisfaction %' "
        "AND received_at >= ? AND received_at < ? AND case_id IS NOT NULL ORDER BY id",
        (since, until),
    )
    return [(int(c), str(s), str(t)) for c, s, t in rows]


def digest_sent(store: Store, every: str, period_end: float) -> bool:
    row = store.db.execute("SELECT 1 FROM digests WHERE every = ? AND period_end = ?", (every, period_end))
    return row.fetchone() is not None


def claim_digest(store: Store, every: str, period_start: float, period_end: float, now: float) -> bool:
    """Record that this period's digest is being sent; False when it was already. Inside the caller's transaction."""
    cur = store.db.execute(
        "INSERT OR IGNORE INTO digests (every, period_start, period_end, created_at) VALUES (?,?,?,?)",
        (every, period_start, period_end, now),
    )
    return cur.rowcount == 1


def record_digest_mail(store: Store, every: str, period_end: float, outbox_id: int) -> None:
    store.db.execute(
        "UPDATE digests SET outbox_id = ? WHERE every = ? AND period_end = ?", (outbox_id, every, period_end)
    )
