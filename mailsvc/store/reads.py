"""Read queries for the CLI (`mailsvc cases`) and the report, answering with frozen values.

Mixed into the store, which holds the connection; nothing here writes.
"""

from __future__ import annotations

from typing import Any

from mailsvc.model import Address, Case, CaseStatus, OutboxState
from mailsvc.report import CaseFacts, FailedMail
from mailsvc.store.contract import AttachmentInfo, CaseEvent, MessageSummary, OutboxEntry
from mailsvc.store.sql import SqlConnection, dt


def case_from_row(row: Any, ccs: tuple[Address, ...] = ()) -> Case:
    return Case(
        id=row["id"],
        queue=row["queue"],
        subject=row["subject"],
        requester=Address(row["requester"], row["requester_name"]),
        status=CaseStatus(row["status"]),
        created_at=dt(row["created_at"]),
        updated_at=dt(row["updated_at"]),
        priority=row["priority"],
        owner=row["owner"],
        ccs=ccs,
        merged_into=row["merged_into"],
        automatic=bool(row["automatic"]),
        junk=row["junk_reason"],
    )


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)


class CaseReadQueries:
    """The CLI's and the report's reads; mixed into Store."""

    db: SqlConnection

    def list_cases(self, status: CaseStatus | None = None, limit: int = 200, *, junk: bool = False) -> list[Case]:
        """Cases, newest first: of one status (junk cases apart), or with `junk` the junk cases only."""
        if junk:
            rows = self.db.execute("SELECT * FROM cases WHERE junk_at IS NOT NULL ORDER BY id DESC LIMIT ?", (limit,))
        elif status is None:
            rows = self.db.execute("SELECT * FROM cases ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.db.execute(
                "SELECT * FROM cases WHERE status = ? AND junk_at IS NULL ORDER BY id DESC LIMIT ?",
                (status.value, limit),
            )
        return [case_from_row(r) for r in rows]

    def case_messages(self, case_id: int) -> list[MessageSummary]:
        rows = self.db.execute(
            "SELECT id, kind, message_id, from_addr, from_name, subject, received_at, body_text, "
            "length(raw) AS size FROM messages WHERE case_id = ? ORDER BY id",
            (case_id,),
        )
        return [MessageSummary(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), r[7] or "", int(r[8])) for r in rows]

    def case_outbox(self, case_id: int) -> list[OutboxEntry]:
        rows = self.db.execute(
            "SELECT id, case_id, purpose, message_id, rcpt_to, state, attempts, created_at, next_attempt_at, "
            "sent_at, last_error FROM outbox WHERE case_id = ? ORDER BY id",
            (case_id,),
        )
        return [
            OutboxEntry(
                r[0], r[1], r[2], r[3], tuple(r[4].split("\n")), OutboxState(r[5]), r[6], r[7], r[8],
                _float_or_none(r[9]), r[10] or "",
            )
            for r in rows
        ]  # fmt: skip

    def case_events(self, case_id: int) -> list[CaseEvent]:
        rows = self.db.execute("SELECT at, event, detail FROM case_events WHERE case_id = ? ORDER BY id", (case_id,))
        return [CaseEvent(float(r[0]), r[1], r[2] or "") for r in rows]

    def message_attachments(self, message_row: int) -> list[AttachmentInfo]:
        rows = self.db.execute(
            "SELECT filename, content_type, size FROM attachments WHERE message = ? ORDER BY id", (message_row,)
        )
        return [AttachmentInfo(r[0] or "", r[1] or "", int(r[2] or 0)) for r in rows]

    def counts(self) -> dict[str, int]:
        """Totals for logs and checks: cases, messages by state, outbox by state."""
        result = {"cases": self.db.execute("SELECT count(*) FROM cases").fetchone()[0]}
        for state, n in self.db.execute("SELECT state, count(*) FROM messages GROUP BY state"):
            result[f"messages_{state}"] = n
        for state, n in self.db.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
            result[f"outbox_{state}"] = n
        return result

    # --- the report

    def report_cases(self, since: float) -> list[CaseFacts]:
        """Cases created at or after `since`, merged ones included, with how many of each timer kind fired."""
        rows = self.db.execute(
            "SELECT c.id, c.queue, c.status, c.created_at, c.first_response_at, c.resolved_at, c.satisfaction, "
            "c.merged_into, "
            "count(CASE WHEN t.kind = 'sla_1' THEN 1 END) AS sla_1_fired, "
            "count(CASE WHEN t.kind = 'sla_2' THEN 1 END) AS sla_2_fired, "
            "count(CASE WHEN t.kind = 'reminder' THEN 1 END) AS reminders_fired, "
            "count(CASE WHEN t.kind = 'auto_resolve' THEN 1 END) AS auto_resolves_fired "
            "FROM cases c LEFT JOIN timers t ON t.case_id = c.id AND t.state = 'fired' "
            "WHERE c.created_at >= ? AND c.junk_at IS NULL GROUP BY c.id ORDER BY c.id",
            (since,),
        )
        return [
            CaseFacts(
                id=int(r[0]), queue=str(r[1]), status=CaseStatus(r[2]), created_at=float(r[3]),
                first_response_at=_float_or_none(r[4]), resolved_at=_float_or_none(r[5]),
                satisfaction=None if r[6] is None else int(r[6]), merged_into=r[7], sla_1_fired=int(r[8]),
                sla_2_fired=int(r[9]), reminders_fired=int(r[10]), auto_resolves_fired=int(r[11]),
            )
            for r in rows
        ]  # fmt: skip

    def report_failed_mail(self, since: float) -> list[FailedMail]:
        """Outgoing mail queued at or after `since` and given up on, with the queue of its case (None if none)."""
        rows = self.db.execute(
            "SELECT o.created_at, c.queue FROM outbox o LEFT JOIN cases c ON c.id = o.case_id "
            "WHERE o.state = 'failed' AND o.created_at >= ? ORDER BY o.id",
            (since,),
        )
        return [FailedMail(created_at=float(r[0]), queue=r[1]) for r in rows]
