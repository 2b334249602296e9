"""Read-only figures of the store for metrics, the acknowledgement's expectations and the digest.

Queries mixed into the store (`FigureQueries`), returning frozen values; the digest's bookkeeping
(`claim_digest`) is the one write, done inside the caller's transaction. The module-level functions
take any store of the contract (`FigureReads`).
"""

from __future__ import annotations

from mailsvc.store.contract import FigureReads, StoreGauges
from mailsvc.store.sql import SqlConnection

__all__ = [
    "FigureQueries",
    "StoreGauges",
    "claim_digest",
    "digest_sent",
    "first_responses",
    "last_mail_at",
    "rated_messages",
    "record_digest_mail",
    "store_gauges",
    "waiting_cases",
]


class FigureQueries:
    """Mixed into the SQLite store, which holds the connection."""

    db: SqlConnection

    def store_gauges(self, now: float) -> StoreGauges:
        db = self.db
        queued, oldest = db.execute("SELECT count(*), min(created_at) FROM outbox WHERE state = 'queued'").fetchone()
        due, pending = db.execute(
            "SELECT count(CASE WHEN due_at <= ? THEN 1 END), count(*) FROM timers WHERE state = 'pending'", (now,)
        ).fetchone()
        # Junk is a status of its own here, as in `cases list` (the workflow status it keeps is not shown).
        cases = {
            (str(q), str(s)): int(n)
            for q, s, n in db.execute(
                "SELECT queue, CASE WHEN junk_at IS NOT NULL THEN 'junk' ELSE status END AS shown, count(*) "
                "FROM cases GROUP BY queue, shown"
            )
        }
        return StoreGauges(int(queued), None if oldest is None else float(oldest), int(due), int(pending), cases)

    def last_mail_at(self) -> float | None:
        """When the last message was stored (filed or quarantined)."""
        row = self.db.execute("SELECT max(received_at) FROM messages").fetchone()
        return None if row[0] is None else float(row[0])

    def first_responses(self, queue: str, since: float) -> list[tuple[float, float]]:
        """(created, first answered) of the queue's cases created since `since` and staff answered (not merged)."""
        rows = self.db.execute(
            "SELECT created_at, first_response_at FROM cases WHERE queue = ? AND created_at >= ? "
            "AND first_response_at IS NOT NULL AND merged_into IS NULL",
            (queue, since),
        )
        return [(float(a), float(b)) for a, b in rows]

    # --- the digest

    def waiting_cases(self, limit: int = 50) -> list[tuple[int, str, str, float]]:
        """Open cases (the team owes the next answer), least recently active first: (id, queue, subject, since)."""
        rows = self.db.execute(
            "SELECT id, queue, subject, updated_at FROM cases WHERE status = 'open' AND merged_into IS NULL "
            "ORDER BY updated_at, id LIMIT ?",
            (limit,),
        )
        return [(int(i), str(q), str(s), float(u)) for i, q, s, u in rows]

    def rated_messages(self, since: float, until: float) -> list[tuple[int, str, str]]:
        """Messages that carried a satisfaction answer, received in [since, until): (case, subject, text)."""
        rows = self.db.execute(
            "SELECT case_id, subject, body_text FROM messages WHERE state = 'filed' "
            "AND reason LIKE 'satisfaction %' AND received_at >= ? AND received_at < ? AND case_id IS NOT NULL "
            "ORDER BY id",
            (since, until),
        )
        return [(int(c), str(s), str(t)) for c, s, t in rows]

    def digest_sent(self, every: str, period_end: float) -> bool:
        row = self.db.execute("SELECT 1 FROM digests WHERE every = ? AND period_end = ?", (every, period_end))
        return row.fetchone() is not None

    def claim_digest(self, every: str, period_start: float, period_end: float, now: float) -> bool:
        """Record that this period's digest is being sent; False when it was already. In the caller's transaction."""
        cur = self.db.execute(
            "INSERT INTO digests (every, period_start, period_end, created_at) VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
            (every, period_start, period_end, now),
        )
        return cur.rowcount == 1

    def record_digest_mail(self, every: str, period_end: float, outbox_id: int) -> None:
        self.db.execute(
            "UPDATE digests SET outbox_id = ? WHERE every = ? AND period_end = ?", (outbox_id, every, period_end)
        )


def store_gauges(store: FigureReads, now: float) -> StoreGauges:
    return store.store_gauges(now)


def last_mail_at(store: FigureReads) -> float | None:
    return store.last_mail_at()


def first_responses(store: FigureReads, queue: str, since: float) -> list[tuple[float, float]]:
    return store.first_responses(queue, since)


def waiting_cases(store: FigureReads, limit: int = 50) -> list[tuple[int, str, str, float]]:
    return store.waiting_cases(limit)


def rated_messages(store: FigureReads, since: float, until: float) -> list[tuple[int, str, str]]:
    return store.rated_messages(since, until)


def digest_sent(store: FigureReads, every: str, period_end: float) -> bool:
    return store.digest_sent(every, period_end)


def claim_digest(store: FigureReads, every: str, period_start: float, period_end: float, now: float) -> bool:
    return store.claim_digest(every, period_start, period_end, now)


def record_digest_mail(store: FigureReads, every: str, period_end: float, outbox_id: int) -> None:
    store.record_digest_mail(every, period_end, outbox_id)
