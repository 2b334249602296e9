"""The store's queries for operations: the operator's view of the outbox (`mailsvc outbox`) and the count
of unfinished processing attempts per IMAP message, by which a poison message is recognised."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

from mailsvc.model import OutboxState
from mailsvc.store.contract import OutboxEntry
from mailsvc.store.sql import SqlConnection


class OperationsQueries:
    """Mixed into Store: uses its connection and transactions."""

    db: SqlConnection

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    # --- the operator's view of the outbox (`mailsvc outbox`)

    def list_outbox(
        self, state: OutboxState | None = None, case_id: int | None = None, limit: int = 200
    ) -> list[OutboxEntry]:
        """Outgoing mail, newest first, without its bytes."""
        sql = (
            "SELECT id, case_id, purpose, message_id, rcpt_to, state, attempts, created_at, next_attempt_at, "
            "sent_at, last_error FROM outbox WHERE (CAST(? AS TEXT) IS NULL OR state = ?) "
            "AND (CAST(? AS INTEGER) IS NULL OR case_id = ?) ORDER BY id DESC LIMIT ?"
        )
        value = state.value if state is not None else None
        args = (value, value, case_id, case_id, limit)
        rows = self.db.execute(sql, args).fetchall()
        return [
            OutboxEntry(
                r["id"], r["case_id"], r["purpose"], r["message_id"], tuple(r["rcpt_to"].split("\n")),
                OutboxState(r["state"]), r["attempts"], r["created_at"], r["next_attempt_at"], r["sent_at"],
                r["last_error"],
            )
            for r in rows
        ]  # fmt: skip

    def requeue(self, outbox_ids: Sequence[int], now: float) -> list[int]:
        """Put failed (or waiting) mail back in the queue, due now; sent mail is never sent again.
        Returns the ids requeued. The caller holds the transaction."""
        done = []
        for outbox_id in outbox_ids:
            cur = self.db.execute(
                "UPDATE outbox SET state = 'queued', next_attempt_at = ?, retried_at = ?, failure_noticed = 0 "
                "WHERE id = ? AND state IN ('failed', 'queued')",
                (now, now, outbox_id),
            )
            if cur.rowcount == 1:
                done.append(outbox_id)
        return done

    def failed_mail_ids(self, since: float) -> list[int]:
        """Mail that failed for good, queued at or after `since`."""
        rows = self.db.execute("SELECT id FROM outbox WHERE state = 'failed' AND created_at >= ? ORDER BY id", (since,))
        return [r[0] for r in rows]

    # --- unfinished processing attempts (poison messages)

    def unfinished_attempts(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, int]:
        """UIDs whose processing was begun and never finished, with how many times."""
        found: dict[int, int] = {}
        for start in range(0, len(uids), 500):
            chunk = tuple(uids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT uid, attempts FROM ingest_attempts WHERE mailbox = ? AND uidvalidity = ? "  # noqa: S608
                f"AND uid IN ({marks})",
                (mailbox, uidvalidity, *chunk),
            )
            found.update((r[0], r[1]) for r in rows)
        return found

    def begin_attempts(self, mailbox: str, uidvalidity: int, uids: Sequence[int], now: float) -> dict[int, int]:
        """Count one more attempt for each UID, committed before processing starts; returns the
        attempts each had before (0 for a first)."""
        before: dict[int, int] = {}
        with self.transaction():
            for uid in uids:
                row = self.db.execute(
                    "SELECT attempts FROM ingest_attempts WHERE mailbox = ? AND uidvalidity = ? AND uid = ?",
                    (mailbox, uidvalidity, uid),
                ).fetchone()
                before[uid] = row[0] if row else 0
                self.db.execute(
                    "INSERT INTO ingest_attempts (mailbox, uidvalidity, uid, attempts, first_at, last_at) "
                    "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (mailbox, uidvalidity, uid) "
                    "DO UPDATE SET attempts = ingest_attempts.attempts + 1, last_at = excluded.last_at",
                    (mailbox, uidvalidity, uid, now, now),
                )
        return before

    def end_attempts(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> None:
        """The UIDs were processed (in the caller's transaction): their attempts are finished."""
        self.db.executemany(
            "DELETE FROM ingest_attempts WHERE mailbox = ? AND uidvalidity = ? AND uid = ?",
            [(mailbox, uidvalidity, uid) for uid in uids],
        )
