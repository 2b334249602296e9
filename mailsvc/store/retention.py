"""The store's queries for retention and erasure: closed cases losing their mail's content after
`retention.closed_after`, and `mailsvc forget ADDRESS`. Rows stay as tombstones (dates, kinds, counts)
so the report stays true; what goes is the content: raw bytes, bodies, names, addresses."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mailsvc.store.sql import SqlConnection

ERASED = "(erased)"


@dataclass(frozen=True, slots=True)
class Erased:
    """What one purge or erasure removed (or, dry, would remove)."""

    cases: int = 0
    messages: int = 0
    outgoing: int = 0
    attachments: int = 0
    case_ids: tuple[int, ...] = ()
    queued_kept: int = 0  # outgoing mail still waiting to be sent: its bytes are kept until then


def _marks(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


class RetentionQueries:
    """Mixed into Store: uses its connection; the caller holds the transaction."""

    db: SqlConnection

    def purge_candidates(self, queue: str, closed_before: float) -> list[int]:
        """Closed cases of `queue` untouched since `closed_before`, not purged yet (merged ones included)."""
        rows = self.db.execute(
            "SELECT id FROM cases WHERE queue = ? AND status = 'closed' AND purged_at IS NULL AND updated_at < ? "
            "ORDER BY id",
            (queue, closed_before),
        )
        return [r[0] for r in rows]

    def _content_counts(self, case_ids: Sequence[int], messages_where: str, args: Sequence[object]) -> Erased:
        messages = self.db.execute(
            f"SELECT count(*) FROM messages WHERE erased_at IS NULL AND ({messages_where})",  # noqa: S608
            args,
        ).fetchone()[0]
        attachments = self.db.execute(
            f"SELECT count(*) FROM attachments WHERE message IN (SELECT id FROM messages WHERE {messages_where})",  # noqa: S608
            args,
        ).fetchone()[0]
        marks = _marks(case_ids)
        outgoing = queued = 0
        if case_ids:
            outgoing = self.db.execute(
                f"SELECT count(*) FROM outbox WHERE case_id IN ({marks}) AND state <> 'queued' "  # noqa: S608
                f"AND length(raw) > 0",
                tuple(case_ids),
            ).fetchone()[0]
            queued = self.db.execute(
                f"SELECT count(*) FROM outbox WHERE case_id IN ({marks}) AND state = 'queued'",  # noqa: S608
                tuple(case_ids),
            ).fetchone()[0]
        return Erased(len(case_ids), messages, outgoing, attachments, tuple(case_ids), queued)

    def _erase_content(self, case_ids: Sequence[int], messages_where: str, args: Sequence[object], at: float) -> None:
        self.db.execute(
            f"DELETE FROM attachments WHERE message IN (SELECT id FROM messages WHERE {messages_where})",  # noqa: S608
            args,
        )
        self.db.execute(
            f"UPDATE messages SET raw = ?, body_text = '', defects = '', erased_at = ? "  # noqa: S608
            f"WHERE erased_at IS NULL AND ({messages_where})",
            (b"", at, *args),
        )
        if case_ids:
            self.db.execute(
                f"UPDATE outbox SET raw = ? WHERE case_id IN ({_marks(case_ids)}) AND state <> 'queued'",  # noqa: S608
                (b"", *case_ids),
            )

    def _record(self, kind: str, erased: Erased, at: float) -> None:
        self.db.execute(
            "INSERT INTO erasures (at, kind, cases, messages, outgoing) VALUES (?, ?, ?, ?, ?)",
            (at, kind, erased.cases, erased.messages, erased.outgoing),
        )

    def purge_cases(self, case_ids: Sequence[int], now: datetime, *, dry_run: bool = False) -> Erased:
        """Closed cases lose their mail's content; the case rows, message rows and history stay."""
        ids = tuple(case_ids)
        if not ids:
            return Erased()
        where = f"case_id IN ({_marks(ids)})"
        found = self._content_counts(ids, where, ids)
        if dry_run:
            return found
        at = now.timestamp()
        self._erase_content(ids, where, ids, at)
        self.db.execute(f"UPDATE cases SET purged_at = ? WHERE id IN ({_marks(ids)})", (at, *ids))  # noqa: S608
        self._record("purge", found, at)
        return found

    def forget_address(self, address: str, now: datetime, *, dry_run: bool = False) -> Erased:
        """One person's data: the mail they wrote (bytes, bodies, their name and address), the cases they
        opened (requester, subject) with the mail sent in them, their cc entries, and their address in
        case histories and the automatic-mail bookkeeping."""
        key = address.strip().lower()
        cases = tuple(
            r[0] for r in self.db.execute("SELECT id FROM cases WHERE lower(requester) = ? ORDER BY id", (key,))
        )
        where = "lower(from_addr) = ?" + (f" OR case_id IN ({_marks(cases)})" if cases else "")
        args: tuple[object, ...] = (key, *cases)
        found = self._content_counts(cases, where, args)
        if dry_run:
            return found
        at = now.timestamp()
        self._erase_content(cases, where, args, at)
        self.db.execute(
            f"UPDATE messages SET from_addr = ?, from_name = '', subject = '' WHERE {where}",  # noqa: S608
            (ERASED, *args),
        )
        if cases:
            self.db.execute(
                f"UPDATE cases SET requester = ?, requester_name = '', subject = ? "  # noqa: S608
                f"WHERE id IN ({_marks(cases)})",
                (ERASED, ERASED, *cases),
            )
        self.db.execute("DELETE FROM case_ccs WHERE lower(address) = ?", (key,))
        self.db.execute("DELETE FROM automatic_mail WHERE address = ?", (key,))
        self.db.execute("DELETE FROM bouncing WHERE address = ?", (key,))
        self.db.execute("DELETE FROM unverified_senders WHERE address = ?", (key,))
        self.db.execute("DELETE FROM sender_rules WHERE pattern = ?", (key,))
        pattern = re.compile(re.escape(key), re.IGNORECASE)
        rows = self.db.execute(
            "SELECT id, detail FROM case_events WHERE lower(detail) LIKE ?", (f"%{key}%",)
        ).fetchall()
        self.db.executemany(
            "UPDATE case_events SET detail = ? WHERE id = ?", [(pattern.sub(ERASED, r[1]), r[0]) for r in rows]
        )
        # Mail still queued keeps its recipient and bytes until it is sent (then a second forget erases it).
        rows = self.db.execute(
            "SELECT id, rcpt_to FROM outbox WHERE state <> 'queued' AND lower(rcpt_to) LIKE ?", (f"%{key}%",)
        ).fetchall()
        erased = [(pattern.sub(ERASED, r[1]), b"", r[0]) for r in rows]
        self.db.executemany("UPDATE outbox SET rcpt_to = ?, raw = ? WHERE id = ?", erased)
        self._record("forget", found, at)
        return found
