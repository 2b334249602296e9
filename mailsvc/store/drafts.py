"""Outgoing mail between decision and bytes: drafts in the outbox, built after the commit.

A draft row is queued with its Message-ID and envelope fixed and `draft` holding what to build
it from; the sender sees the row only once `draft` is cleared (built) or it failed to build.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mailsvc.model import STAFF_PURPOSES, Address, CaseStatus, MailDraft, OutboxState
from mailsvc.store.contract import PendingDraft, ThreadEntry
from mailsvc.store.sql import SqlConnection

_STAFF = tuple(sorted(STAFF_PURPOSES))
_MARKS = ",".join("?" * len(_STAFF))
_THREAD_SQL = (
    "SELECT message_id, 1 AS mine, received_at AS at, id FROM messages WHERE case_id = ? "  # noqa: S608
    "AND state = 'filed' AND kind IN ('request', 'requester_reply') AND message_id IS NOT NULL "
    "AND (CAST(? AS INTEGER) IS NULL OR id <= ?) "
    "UNION ALL "
    "SELECT message_id, 0, created_at, id FROM outbox WHERE case_id = ? AND id < ? AND state != 'failed' "
    f"AND purpose NOT IN ({_MARKS}) ORDER BY at, mine DESC, id"
)


def encode_draft(draft: MailDraft) -> str:
    return json.dumps(
        {
            "template": draft.template,
            "to": [[a.addr, a.name] for a in draft.to],
            "text": draft.text,
            "attach": draft.attach,
            "status": draft.status.value,
        },
        ensure_ascii=False,
    )


def decode_draft(row: Any) -> MailDraft:
    spec = json.loads(row["draft"])
    return MailDraft(
        message_id=row["message_id"],
        mail_from=row["mail_from"],
        rcpt_to=tuple(row["rcpt_to"].split("\n")),
        purpose=row["purpose"],
        template=spec["template"],
        to=tuple(Address(addr, name) for addr, name in spec["to"]),
        text=spec["text"],
        attach=spec["attach"],
        status=CaseStatus(spec["status"]),
    )


class DraftQueries:
    """The draft side of the outbox; mixed into Store, which holds the connection."""

    db: SqlConnection

    def enqueue_draft(self, draft: MailDraft, case_id: int | None, cause: int | None, now: datetime) -> int:
        cur = self.db.execute(
            "INSERT INTO outbox (case_id, cause, purpose, message_id, mail_from, rcpt_to, raw, state, "
            "created_at, next_attempt_at, draft) VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (
                case_id, cause, draft.purpose, draft.message_id, draft.mail_from, "\n".join(draft.rcpt_to), b"",
                OutboxState.QUEUED.value, now.timestamp(), now.timestamp(), encode_draft(draft),
            ),
        )  # fmt: skip
        return int(cur.fetchone()[0])

    def pending_drafts(self, limit: int = 100) -> list[PendingDraft]:
        rows = self.db.execute(
            "SELECT id, case_id, cause, purpose, message_id, mail_from, rcpt_to, draft FROM outbox "
            "WHERE draft IS NOT NULL AND state = 'queued' ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [PendingDraft(r["id"], r["case_id"], r["cause"], decode_draft(r)) for r in rows]

    def store_built(self, outbox_id: int, raw: bytes) -> bool:
        """The draft's bytes; False when another worker built it first."""
        cur = self.db.execute(
            "UPDATE outbox SET raw = ?, draft = NULL WHERE id = ? AND draft IS NOT NULL", (raw, outbox_id)
        )
        return cur.rowcount == 1

    def mark_build_failed(self, outbox_id: int, error: str) -> bool:
        """A draft that cannot be built fails; the team is told as of any failed mail. It stays a draft,
        so `mailsvc outbox retry` (after the template is fixed) builds it anew before it is sent."""
        cur = self.db.execute(
            "UPDATE outbox SET state = 'failed', last_error = ? WHERE id = ? AND draft IS NOT NULL "
            "AND state = 'queued'",
            (error, outbox_id),
        )
        return cur.rowcount == 1

    def message_raw(self, message_row: int) -> bytes | None:
        row = self.db.execute("SELECT raw FROM messages WHERE id = ?", (message_row,)).fetchone()
        return bytes(row[0]) if row else None

    def message_hash(self, message_row: int | None = None, *, request_of: int | None = None) -> str | None:
        """The content hash of a message row, or of the request that opened case `request_of`: whether a
        message parsed before is the one stored, without reading its bytes."""
        if message_row is not None:
            row = self.db.execute("SELECT content_hash FROM messages WHERE id = ?", (message_row,)).fetchone()
        else:
            row = self.db.execute(
                "SELECT content_hash FROM messages WHERE case_id = ? AND state = 'filed' ORDER BY id LIMIT 1",
                (request_of,),
            ).fetchone()
        return str(row[0]) if row else None

    def requester_thread(
        self, case_id: int, before_outbox_id: int, up_to_message: int | None = None
    ) -> list[ThreadEntry]:
        """What the requester sent on the case (up to message row `up_to_message`, the mail's cause)
        and what we sent them before outbox row `before_outbox_id`, oldest first."""
        args = (case_id, up_to_message, up_to_message, case_id, before_outbox_id, *_STAFF)
        rows = self.db.execute(_THREAD_SQL, args).fetchall()
        return [ThreadEntry(r["message_id"], bool(r["mine"])) for r in rows]
