"""The store's queries for junk and senders: junk cases, the deny rules `#spam block` adds, the server
copies a `#spam` moves to the junk folder, and where the first start on a full folder drew its line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mailsvc.errors import StoreError
from mailsvc.model import Action, ClearJunk, ClearUnverified, DenySender, MarkJunk, MarkUnverified
from mailsvc.store.sql import SqlConnection

Event = tuple[str, dict[str, object]]


@dataclass(frozen=True, slots=True)
class SenderRule:
    """A denial kept in the store (`mailsvc senders list`)."""

    queue: str
    pattern: str
    rule: str
    added_at: float
    added_by: str
    case_id: int | None


@dataclass(frozen=True, slots=True)
class Backlog:
    """A folder's first start: UIDs up to `uid` that arrived before `before` (UNIX seconds) are old mail."""

    uidvalidity: int
    uid: int
    before: float


class SenderQueries:
    """Mixed into Store: uses its connection; `_event` writes the case history."""

    db: SqlConnection

    def _event(self, case_id: int, now: datetime, event: str, detail: str = "") -> None:
        raise NotImplementedError

    # --- junk

    def _junk_effect(self, case_id: int, action: Action, now: datetime) -> Event | None:
        """MarkJunk, ClearJunk and DenySender, inside `apply`'s transaction."""
        match action:
            case MarkJunk(reason=reason, move=move):
                self.db.execute(
                    "UPDATE cases SET junk_reason = ?, junk_at = ?, updated_at = ? WHERE id = ?",
                    (reason, now.timestamp(), now.timestamp(), case_id),
                )
                moving = 0
                if move:
                    moving = self.db.execute(
                        "UPDATE messages SET junk_move = 'pending' WHERE case_id = ? AND state = 'filed' "
                        "AND mailbox IS NOT NULL AND message_id IS NOT NULL "
                        # Junk is there already; the team's own mail (the #spam itself) is not junk.
                        "AND coalesce(kind, '') NOT IN ('junk', 'staff_reply', 'comment', 'command')",
                        (case_id,),
                    ).rowcount
                self._event(case_id, now, "junk_marked", reason)
                return "case_marked_junk", {"case_id": case_id, "reason": reason, "to_move": moving}
            case ClearJunk():
                self.db.execute(
                    "UPDATE cases SET junk_reason = NULL, junk_at = NULL, updated_at = ? WHERE id = ?",
                    (now.timestamp(), case_id),
                )
                self.db.execute("UPDATE messages SET junk_move = NULL WHERE case_id = ? AND junk_move = 'pending'",
                                (case_id,))  # fmt: skip
                self._event(case_id, now, "junk_cleared", "#notspam")
                return "case_junk_cleared", {"case_id": case_id}
            case DenySender(queue=queue, pattern=pattern, by=by):
                self.db.execute(
                    "INSERT INTO sender_rules (queue, pattern, rule, added_at, added_by, case_id) "
                    "VALUES (?, ?, 'deny', ?, ?, ?) ON CONFLICT (queue, pattern) DO NOTHING",
                    (queue, pattern.lower(), now.timestamp(), by, case_id),
                )
                self._event(case_id, now, "sender_denied", f"{pattern} in queue {queue}")
                return "sender_denied", {"case_id": case_id, "queue": queue, "pattern": pattern}
        return self._unverified_effect(case_id, action, now)

    # --- requesters not verified on a case

    def _unverified_effect(self, case_id: int, action: Action, now: datetime) -> Event | None:
        """MarkUnverified and ClearUnverified, inside `apply`'s transaction."""
        match action:
            case MarkUnverified(address=address, reason=reason):
                self.db.execute(
                    "INSERT INTO unverified_senders (case_id, address, since, reason) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (case_id, address) DO NOTHING",
                    (case_id, address.lower(), now.timestamp(), reason),
                )
                self._event(case_id, now, "marked_unverified", f"{address}: no automatic mail ({reason})")
                return "requester_marked_unverified", {"case_id": case_id, "reason": reason}
            case ClearUnverified(address=address):
                cur = self.db.execute(
                    "DELETE FROM unverified_senders WHERE case_id = ? AND address = ?", (case_id, address.lower())
                )
                if cur.rowcount == 0:
                    return None
                self._event(case_id, now, "unverified_cleared", f"{address} wrote authenticated mail")
                return "requester_unverified_cleared", {"case_id": case_id}
        raise StoreError(f"unknown action {type(action).__name__}")

    def _carry_unverified(self, source: int, target: int, now: datetime) -> int:
        """A merge: every address unverified on `source` is unverified on `target` too (their union). Staff
        joining two conversations proves nothing about who sent the mail, so only an authenticated mail from
        the address on the merged case lifts the mark, as on any case. Returns how many marks `target` gained."""
        rows = self.db.execute(
            "SELECT address, reason FROM unverified_senders WHERE case_id = ? AND address NOT IN "
            "(SELECT address FROM unverified_senders WHERE case_id = ?) ORDER BY address",
            (source, target),
        ).fetchall()
        for address, reason in rows:
            self.db.execute(
                "INSERT INTO unverified_senders (case_id, address, since, reason) VALUES (?, ?, ?, ?)",
                (target, address, now.timestamp(), reason),
            )
            origin = f"from case {source}: {reason}" if reason else f"from case {source}"
            self._event(target, now, "marked_unverified", f"{address}: no automatic mail ({origin})")
        return len(rows)

    def unverified_senders(self, case_id: int, addresses: Sequence[str]) -> frozenset[str]:
        """Which of `addresses` are not verified on the case: the guard holds automatic mail to them."""
        keys = [a.lower() for a in addresses]
        if not keys:
            return frozenset()
        marks = ",".join("?" * len(keys))
        rows = self.db.execute(
            f"SELECT address FROM unverified_senders WHERE case_id = ? AND address IN ({marks})",  # noqa: S608
            (case_id, *keys),
        )
        return frozenset(r[0] for r in rows)

    def junk_uids(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> frozenset[int]:
        """Which of these filed UIDs were filed as junk: their server copy belongs in the junk folder."""
        found: set[int] = set()
        for start in range(0, len(uids), 500):
            chunk = tuple(uids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT uid FROM messages WHERE mailbox = ? AND uidvalidity = ? AND kind = 'junk' "  # noqa: S608
                f"AND uid IN ({marks})",
                (mailbox, uidvalidity, *chunk),
            )
            found.update(r[0] for r in rows)
        return frozenset(found)

    def pending_junk_moves(self, mailbox: str, limit: int = 200) -> list[tuple[int, str]]:
        """(row id, Message-ID) of filed mail from `mailbox` whose server copy a #spam sends to the junk folder."""
        rows = self.db.execute(
            "SELECT id, message_id FROM messages WHERE mailbox = ? AND junk_move = 'pending' ORDER BY id LIMIT ?",
            (mailbox, limit),
        )
        return [(r[0], r[1]) for r in rows]

    def junk_moved(self, rows: Sequence[int]) -> None:
        """The server copies are in the junk folder (or gone): nothing more to move."""
        self.db.executemany("UPDATE messages SET junk_move = 'done' WHERE id = ?", [(r,) for r in rows])

    # --- sender rules

    def denied_senders(self, queue: str) -> tuple[str, ...]:
        rows = self.db.execute("SELECT pattern FROM sender_rules WHERE queue = ? AND rule = 'deny'", (queue,))
        return tuple(r[0] for r in rows)

    def sender_rules(self) -> list[SenderRule]:
        rows = self.db.execute(
            "SELECT queue, pattern, rule, added_at, added_by, case_id FROM sender_rules ORDER BY queue, pattern"
        )
        return [SenderRule(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def remove_sender_rule(self, queue: str, pattern: str) -> bool:
        cur = self.db.execute("DELETE FROM sender_rules WHERE queue = ? AND pattern = ?", (queue, pattern.lower()))
        return cur.rowcount > 0

    # --- the first start on a folder that already holds mail

    def backlog(self, mailbox: str) -> Backlog | None:
        """Where the first start drew the line, or None when the folder has no position yet."""
        row = self.db.execute(
            "SELECT uidvalidity, backlog_uid, backlog_before FROM mailboxes WHERE name = ?", (mailbox,)
        ).fetchone()
        if row is None:
            return None
        return Backlog(row[0], row[1] or 0, row[2] or 0.0)

    def start_position(self, mailbox: str, uidvalidity: int, backlog_uid: int, before: float) -> None:
        """The folder's first position: mail up to `backlog_uid` that arrived before `before` is old."""
        self.db.execute(
            "INSERT INTO mailboxes (name, uidvalidity, last_uid, backlog_uid, backlog_before) VALUES (?, ?, 0, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (mailbox, uidvalidity, backlog_uid, before),
        )
