"""The outbox and the timers as the sender and the scheduler see them (SQLite; PostgreSQL claims rows instead).

Outgoing mail is queued in the transaction of the decision that wrote it, and sent after the commit;
timers are due rows the scheduler handles by case.
"""

from __future__ import annotations

from datetime import datetime

from mailsvc.model import OutboxState, OutgoingMail, Timer, TimerKind, TimerState
from mailsvc.store.contract import FailedOutgoing, OutboxMail, TimerEntry
from mailsvc.store.sql import SqlConnection, dt, ts


class OutboxQueries:
    """Queue, take due and mark outgoing mail; the failures the team has not been told of yet."""

    db: SqlConnection

    def enqueue(self, mail: OutgoingMail, case_id: int | None, cause: int | None, now: datetime) -> int:
        cur = self.db.execute(
            "INSERT INTO outbox (case_id, cause, purpose, message_id, mail_from, rcpt_to, raw, state, "
            "created_at, next_attempt_at) VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (
                case_id,
                cause,
                mail.purpose,
                mail.message_id,
                mail.mail_from,
                "\n".join(mail.rcpt_to),
                mail.raw,
                OutboxState.QUEUED.value,
                ts(now),
                ts(now),
            ),
        )
        return int(cur.fetchone()[0])

    def due_mail(self, now: float, limit: int = 100) -> list[OutboxMail]:
        rows = self.db.execute(
            # An operator's retry starts the mail's age (smtp.max_attempts_age) afresh.
            "SELECT id, case_id, purpose, message_id, mail_from, rcpt_to, raw, attempts, "
            "CASE WHEN retried_at > created_at THEN retried_at ELSE created_at END AS created_at "
            "FROM outbox WHERE state = 'queued' AND draft IS NULL AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [
            OutboxMail(
                r["id"], r["case_id"], r["purpose"], r["message_id"], r["mail_from"],
                tuple(r["rcpt_to"].split("\n")), r["raw"], r["attempts"], r["created_at"],
            )
            for r in rows
        ]  # fmt: skip

    def next_due_at(self) -> float | None:
        row = self.db.execute(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = 'queued' AND draft IS NULL"
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def mark_sent(self, outbox_id: int, now: float) -> None:
        self.db.execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, last_error = '' WHERE id = ?",
            (now, outbox_id),
        )

    def mark_retry(self, outbox_id: int, error: str, next_attempt_at: float) -> None:
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
            (error, next_attempt_at, outbox_id),
        )

    def mark_failed(self, outbox_id: int, error: str) -> None:
        self.db.execute(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error, outbox_id),
        )

    def unnoticed_failures(self, limit: int = 100) -> list[FailedOutgoing]:
        """Mail that failed for good and the team has not been told of."""
        rows = self.db.execute(
            "SELECT id, case_id, purpose, rcpt_to, last_error, attempts FROM outbox "
            "WHERE state = 'failed' AND failure_noticed = 0 ORDER BY id LIMIT ?",
            (limit,),
        )
        return [FailedOutgoing(r[0], r[1], r[2], tuple(r[3].split("\n")), r[4], r[5]) for r in rows]

    def mark_failure_noticed(self, outbox_id: int) -> None:
        self.db.execute("UPDATE outbox SET failure_noticed = 1 WHERE id = ?", (outbox_id,))


class TimerQueries:
    """Pending timers: the due ones by case, the next due time, a case's whole list."""

    db: SqlConnection

    def due_timers(self, now: datetime, limit: int = 200) -> dict[int, list[Timer]]:
        """Pending timers due by `now`, by case (every due timer of each case returned, so they act together)."""
        rows = self.db.execute(
            "SELECT id, case_id, kind, due_at FROM timers WHERE state = 'pending' AND case_id IN "
            "(SELECT case_id FROM timers WHERE state = 'pending' AND due_at <= ? ORDER BY due_at LIMIT ?) "
            "AND due_at <= ? ORDER BY case_id, due_at, id",
            (ts(now), limit, ts(now)),
        ).fetchall()
        found: dict[int, list[Timer]] = {}
        for r in rows:
            found.setdefault(r["case_id"], []).append(
                Timer(r["id"], r["case_id"], TimerKind(r["kind"]), dt(r["due_at"]))
            )
        return found

    def next_timer_at(self) -> datetime | None:
        row = self.db.execute("SELECT min(due_at) FROM timers WHERE state = 'pending'").fetchone()
        return dt(row[0]) if row[0] is not None else None

    def case_timers(self, case_id: int) -> list[TimerEntry]:
        rows = self.db.execute(
            "SELECT id, kind, due_at, state, created_at, done_at FROM timers WHERE case_id = ? ORDER BY id", (case_id,)
        )
        return [TimerEntry(r[0], TimerKind(r[1]), r[2], TimerState(r[3]), r[4], r[5]) for r in rows]
