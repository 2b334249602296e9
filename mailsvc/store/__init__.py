"""The store shell: the one module that speaks SQL (SQLite, WAL, foreign keys on).

`apply` performs a Decision for one message in one transaction together with
recording its IMAP position, so a message's whole effect is there or not at all.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailsvc.errors import StoreConflict, StoreError, StoreUnavailable
from mailsvc.model import (
    Action,
    AddCc,
    Address,
    CancelTimers,
    Case,
    ClearAutomatic,
    ClearBouncing,
    Decision,
    EndTimer,
    FileMessage,
    InboundMessage,
    MailRef,
    MarkBouncing,
    MergeInto,
    MessageState,
    OpenCase,
    QueueMail,
    RecordSatisfaction,
    RemoveCc,
    SetOwner,
    SetPriority,
    SetStatus,
    SetTimer,
    Suppress,
    TimerState,
)
from mailsvc.store.contract import (
    Applied,
    Compose,
    OutboxEntry,
    OutboxMail,
    StoreContract,
)
from mailsvc.store.drafts import DraftQueries
from mailsvc.store.figures import FigureQueries
from mailsvc.store.migrate import latest_version, migrate
from mailsvc.store.operations import OperationsQueries
from mailsvc.store.outbox import OutboxQueries, TimerQueries
from mailsvc.store.reads import CaseReadQueries, case_from_row
from mailsvc.store.retention import RetentionQueries
from mailsvc.store.senders import SenderQueries
from mailsvc.store.sql import SqlConnection, SqlCursor, ts

if TYPE_CHECKING:
    from mailsvc.config_servers import StoreConfig

# What a store that is there but cannot be used now raises (locked beyond the busy timeout, disk full,
# I/O error, cannot be opened): every component logs `store_unavailable`, backs off and tries again.
__all__ = [
    "STORE_ERRORS",
    "Applied",
    "Compose",
    "OutboxEntry",
    "OutboxMail",
    "Store",
    "StoreContract",
    "open_store",
    "store_path_problem",
]

STORE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError, StoreUnavailable)
DEFAULT_BUSY_TIMEOUT = 30.0
_BLOB_PIECE = 1024 * 1024


def open_store(config: StoreConfig) -> Store:
    """The store the configuration names: the SQLite file at `path`, or the PostgreSQL database at `url`."""
    if config.url is not None:
        from mailsvc.store.postgres import PostgresStore  # noqa: PLC0415 (psycopg only where it is used)

        return PostgresStore.connect(config.url, config.secret(), lease=config.failover, pool_size=config.pool_size)
    assert config.path is not None
    return Store.open(config.path, config.busy_timeout)


def store_path_problem(path: Path) -> str | None:
    """Why the store at `path` cannot be opened or created, or None; changes nothing on disk.

    An existing file must be an SQLite database this mailsvc can migrate, readable and writable; a
    new one needs a folder it can create and write in."""
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return f"cannot open {path}: permission denied"
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error as exc:
            return f"cannot open {path}: {exc}"
        if version > latest_version():
            return f"the store's schema is version {version}, newer than this mailsvc knows ({latest_version()})"
        return None
    folder = path.parent
    while not folder.exists():
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot create {path}: {folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create {path}: {folder} is not writable"
    return None


def dedupe_key(msg: InboundMessage) -> str:
    return f"{msg.message_id or ''} {msg.content_hash}"


class Store(
    DraftQueries,
    OutboxQueries,
    TimerQueries,
    OperationsQueries,
    CaseReadQueries,
    FigureQueries,
    SenderQueries,
    RetentionQueries,
):
    """The SQLite backend of StoreContract: one connection; use one Store per thread."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db: SqlConnection = db
        self._sqlite = db

    @classmethod
    def open(cls, path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Store:
        """`busy_timeout`: how long a write waits for another connection's transaction before it fails."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the store {path}: {exc}") from exc
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit is on disk before the server copy of the message is moved.
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            migrate(db)
        except sqlite3.Error as exc:
            db.close()
            raise StoreUnavailable(f"cannot open the store {path}: {exc}") from exc
        except BaseException:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        self._sqlite.close()

    def relax_durability(self) -> None:
        """For the sender: its updates may lag a power loss without losing mail (a resend at worst)."""
        self.db.execute("PRAGMA synchronous = NORMAL")

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def notify_new_work(self, *, outbox: bool, timers: bool) -> None:
        """Tell other processes of new outgoing mail or timers once the transaction commits. One process
        serves an SQLite store, and it wakes its own components: nothing to tell."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, busy) may leave the transaction open: end it, or every later
            # BEGIN on this connection would fail too.
            if self._sqlite.in_transaction:
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested all-or-nothing step inside a transaction (one message of a batch)."""
        self.db.execute("SAVEPOINT step")
        try:
            yield
        except BaseException:
            # SQLite may have rolled back the whole transaction already (disk full): then there is no
            # savepoint left, and the error that caused it is the one to report.
            if self._sqlite.in_transaction:
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK TO step")
                    self.db.execute("RELEASE step")
            raise
        self.db.execute("RELEASE step")

    # --- lookups (the read-only view thread.py is given)

    def _with_ccs(self, row: Any) -> Case | None:
        if row is None:
            return None
        ccs = tuple(
            Address(r[0], r[1])
            for r in self.db.execute(
                "SELECT address, name FROM case_ccs WHERE case_id = ? ORDER BY address", (row["id"],)
            )
        )
        return case_from_row(row, ccs)

    def case_by_id(self, case_id: int) -> Case | None:
        """The case, following merges to the case it now lives in."""
        for _ in range(20):
            row = self.db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None or row["merged_into"] is None:
                return self._with_ccs(row)
            case_id = row["merged_into"]
        return None

    def cases_by_message_ids(self, message_ids: Sequence[str]) -> dict[str, Case]:
        """For each id some case received or sent, that case (the most recently active of several);
        the caller chooses among the ids, in its own order."""
        ids = list(dict.fromkeys(message_ids))
        owner: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT m.message_id, c.id FROM case_message_ids m JOIN cases c ON c.id = m.case_id "  # noqa: S608
                f"WHERE m.message_id IN ({marks}) ORDER BY c.updated_at DESC, c.id DESC",
                chunk,
            )
            for message_id, case_id in rows:
                owner.setdefault(message_id, case_id)
        found: dict[str, Case] = {}
        for message_id, case_id in owner.items():
            case = self.case_by_id(case_id)
            if case is not None:
                found[message_id] = case
        return found

    def case_by_message_ids(self, message_ids: Sequence[str]) -> Case | None:
        """The case of the first of these ids (in the order given) that a case received or sent."""
        found = self.cases_by_message_ids(message_ids)
        return next((found[m] for m in message_ids if m in found), None)

    # --- ingest bookkeeping

    def known_uids(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> dict[int, MessageState]:
        """Which of these UIDs are already stored (committed, maybe not yet moved), and how."""
        known: dict[int, MessageState] = {}
        for start in range(0, len(uids), 500):
            chunk = tuple(uids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT uid, state FROM messages WHERE mailbox = ? AND uidvalidity = ? "  # noqa: S608
                f"AND uid IN ({marks})",
                (mailbox, uidvalidity, *chunk),
            )
            known.update((row[0], MessageState(row[1])) for row in rows)
        return known

    def is_duplicate(self, msg: InboundMessage) -> bool:
        row = self.db.execute("SELECT 1 FROM messages WHERE dedupe_key = ?", (dedupe_key(msg),)).fetchone()
        return row is not None

    def mailbox_position(self, name: str) -> tuple[int, int] | None:
        row = self.db.execute("SELECT uidvalidity, last_uid FROM mailboxes WHERE name = ?", (name,)).fetchone()
        return (row[0], row[1]) if row else None

    def _advance(self, ref: MailRef) -> None:
        self.db.execute(
            "INSERT INTO mailboxes (name, uidvalidity, last_uid) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET last_uid = CASE WHEN mailboxes.uidvalidity = excluded.uidvalidity "
            "AND mailboxes.last_uid > excluded.last_uid THEN mailboxes.last_uid ELSE excluded.last_uid END, "
            "uidvalidity = excluded.uidvalidity",
            (ref.mailbox, ref.uidvalidity, ref.uid),
        )

    # --- apply

    def _insert_message(
        self,
        msg: InboundMessage,
        *,
        ref: MailRef | None,
        case_id: int | None,
        state: MessageState,
        kind: str | None,
        reason: str,
        now: datetime,
    ) -> int:
        try:
            cur = self._insert_message_row(msg, ref=ref, case_id=case_id, state=state, kind=kind, reason=reason,
                                           now=now)  # fmt: skip
        except Exception as exc:
            if not self._is_unique_violation(exc):
                raise
            raise StoreConflict(f"the message is stored already: {exc}") from exc
        row = int(cur.fetchone()[0])
        if len(msg.raw) > _BLOB_PIECE:
            self._write_raw(row, msg.raw)
        self.db.executemany(
            "INSERT INTO attachments (message, filename, content_type, size, content_id, inline) VALUES (?,?,?,?,?,?)",
            [(row, a.filename, a.content_type, a.size, a.content_id, int(a.inline)) for a in msg.attachments],
        )
        if ref:
            self._advance(ref)
        return row

    def _insert_message_row(
        self,
        msg: InboundMessage,
        *,
        ref: MailRef | None,
        case_id: int | None,
        state: MessageState,
        kind: str | None,
        reason: str,
        now: datetime,
    ) -> SqlCursor:
        return self.db.execute(
            "INSERT INTO messages (case_id, state, kind, reason, mailbox, uidvalidity, uid, message_id, "
            "content_hash, dedupe_key, from_addr, from_name, subject, sent_at, received_at, body_text, "
            "defects, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (
                case_id,
                state.value,
                kind,
                reason,
                ref.mailbox if ref else None,
                ref.uidvalidity if ref else None,
                ref.uid if ref else None,
                msg.message_id,
                msg.content_hash,
                dedupe_key(msg),
                msg.from_.addr if msg.from_ else "",
                msg.from_.name if msg.from_ else "",
                msg.subject,
                ts(msg.date) if msg.date else None,
                ts(now),
                msg.text,
                "\n".join(msg.defects),
                msg.raw if len(msg.raw) <= _BLOB_PIECE else b"",
            ),
        )

    def _write_raw(self, message_row: int, raw: bytes) -> None:
        """A large message's bytes a piece at a time: bound whole, SQLite copies them twice more."""
        self.db.execute("UPDATE messages SET raw = zeroblob(?) WHERE id = ?", (len(raw), message_row))
        view = memoryview(raw)
        with self._sqlite.blobopen("messages", "raw", message_row) as blob:
            for start in range(0, len(raw), _BLOB_PIECE):
                blob.write(view[start : start + _BLOB_PIECE])

    def _event(self, case_id: int, now: datetime, event: str, detail: str = "") -> None:
        self.db.execute(
            "INSERT INTO case_events (case_id, at, event, detail) VALUES (?,?,?,?)",
            (case_id, ts(now), event, detail),
        )

    def _link_message_id(self, message_id: str | None, case_id: int) -> None:
        if message_id:
            self.db.execute(
                "INSERT INTO case_message_ids (message_id, case_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (message_id, case_id),
            )

    def apply(
        self,
        decision: Decision,
        msg: InboundMessage,
        ref: MailRef | None,
        compose: Compose,
        now: datetime,
    ) -> Applied:
        """Perform a message's decision, in order; the caller holds the transaction."""
        applied = self._perform(decision, msg, ref, compose, now)
        if applied.message_row is None:
            raise StoreError("a decision must file the message it was made for")
        return applied

    def apply_timers(self, decision: Decision, request: InboundMessage, compose: Compose, now: datetime) -> Applied:
        """Perform what a case's due timers do; `request` is the mail that opened the case (replies follow it)."""
        if decision.case_id is None or any(isinstance(a, FileMessage | OpenCase) for a in decision.actions):
            raise StoreError("a timer acts on an existing case and files no message")
        return self._perform(decision, request, None, compose, now)

    def _perform(
        self, decision: Decision, msg: InboundMessage, ref: MailRef | None, compose: Compose, now: datetime
    ) -> Applied:
        case_id = decision.case_id
        events: list[tuple[str, dict[str, object]]] = []
        message_row: int | None = None
        outbox: list[int] = []
        for action in decision.actions:
            match action:
                case OpenCase(queue=queue, subject=subject, requester=requester, parent=parent, ccs=ccs):
                    cur = self.db.execute(
                        "INSERT INTO cases (queue, subject, requester, requester_name, status, parent_case, "
                        "created_at, updated_at, automatic) VALUES (?,?,?,?,?,?,?,?,?) RETURNING id",
                        (queue, subject, requester.addr, requester.name, "open", parent, ts(now), ts(now),
                         int(action.automatic)),
                    )  # fmt: skip
                    case_id = int(cur.fetchone()[0])
                    for cc in ccs:
                        self._add_cc(case_id, cc)
                    follows = f", follows case {parent}" if parent else ""
                    follows += " (automatic mail)" if action.automatic else ""
                    self._event(case_id, now, "case_opened", requester.addr + follows)
                    if parent:
                        self._event(parent, now, "followed_up", f"by case {case_id}")
                    events.append(
                        ("case_opened", {"case_id": case_id, "queue": queue, "parent_case": parent,
                                         "automatic": action.automatic})
                    )  # fmt: skip
                case FileMessage(kind=kind, note=note):
                    message_row = self._insert_message(
                        msg, ref=ref, case_id=case_id, state=MessageState.FILED, kind=kind.value,
                        reason=note or kind.value, now=now,
                    )  # fmt: skip
                    if case_id is not None:
                        self._link_message_id(msg.message_id, case_id)
                        self.db.execute("UPDATE cases SET updated_at = ? WHERE id = ?", (ts(now), case_id))
                        self._event(case_id, now, "message_filed", kind.value)
                    events.append(("message_filed", {"case_id": case_id, "kind": kind.value}))
                case SetStatus() | SetOwner() | SetPriority() | AddCc() | RemoveCc() | MergeInto():
                    assert case_id is not None
                    events.append(self._change_case(case_id, action, now))
                    if isinstance(action, MergeInto):
                        case_id = action.target
                case QueueMail():
                    assert case_id is not None
                    case = self.case_by_id(case_id)
                    assert case is not None
                    for mail in compose(action, case, msg):
                        outbox.append(self.enqueue_draft(mail, case_id, message_row, now))
                        self._link_message_id(mail.message_id, case_id)
                        if action.automatic:
                            self.db.executemany(
                                "INSERT INTO automatic_mail (address, at, outbox_id) VALUES (?,?,?)",
                                [(a.key, ts(now), outbox[-1]) for a in mail.to],
                            )
                        self._event(case_id, now, f"{action.purpose}_queued", ", ".join(mail.rcpt_to))
                        events.append(
                            (f"{action.purpose}_queued", {"case_id": case_id, "out_message_id": mail.message_id})
                        )
                    if action.first_response:
                        self.db.execute(
                            "UPDATE cases SET first_response_at = coalesce(first_response_at, ?) WHERE id = ?",
                            (ts(now), case_id),
                        )
                case Suppress(purpose=purpose, reason=reason):
                    if case_id is not None:
                        self._event(case_id, now, f"{purpose}_suppressed", reason)
                    events.append((f"{purpose}_suppressed", {"case_id": case_id, "reason": reason}))
                case _:
                    assert case_id is not None
                    event = self._side_effect(case_id, action, now)
                    if event is not None:
                        events.append(event)
        return self._announced(decision, Applied(case_id, message_row, tuple(outbox), tuple(events)))

    def _announced(self, decision: Decision, applied: Applied) -> Applied:
        timers = any(isinstance(a, SetTimer) for a in decision.actions)
        if applied.outbox_ids or timers:
            self.notify_new_work(outbox=bool(applied.outbox_ids), timers=timers)
        return applied

    def _side_effect(self, case_id: int, action: Action, now: datetime) -> tuple[str, dict[str, object]] | None:
        """Timers, satisfaction and bouncing addresses; returns the event to log, if any."""
        match action:
            case SetTimer(kind=kind, due_at=due_at):
                self.db.execute(
                    "UPDATE timers SET state = 'cancelled', done_at = ? WHERE case_id = ? AND kind = ? "
                    "AND state = 'pending'",
                    (ts(now), case_id, kind.value),
                )
                self.db.execute(
                    "INSERT INTO timers (case_id, kind, due_at, state, created_at) VALUES (?,?,?,?,?)",
                    (case_id, kind.value, ts(due_at), TimerState.PENDING.value, ts(now)),
                )
                return "timer_set", {"case_id": case_id, "timer": kind.value, "due_at": due_at.isoformat()}
            case CancelTimers(kinds=kinds, reason=reason):
                marks = ",".join("?" * len(kinds))
                cur = self.db.execute(
                    f"UPDATE timers SET state = 'cancelled', done_at = ? WHERE case_id = ? "  # noqa: S608
                    f"AND state = 'pending' AND kind IN ({marks})",
                    (ts(now), case_id, *(k.value for k in kinds)),
                )
                if cur.rowcount == 0:
                    return None
                return "timers_cancelled", {"case_id": case_id, "timers": [k.value for k in kinds], "reason": reason}
            case EndTimer(timer=timer, state=state, reason=reason):
                cur = self.db.execute(
                    "UPDATE timers SET state = ?, done_at = ? WHERE id = ? AND state = 'pending'",
                    (state.value, ts(now), timer.id),
                )
                if cur.rowcount != 1:
                    # Someone else handled it first: roll back rather than act twice.
                    raise StoreConflict(f"timer {timer.id} was already handled")
                self._event(case_id, now, f"timer_{state.value}", f"{timer.kind.value} {reason}".strip())
                return f"timer_{state.value}", {"case_id": case_id, "timer": timer.kind.value, "reason": reason}
            case RecordSatisfaction(score=score, answer=answer):
                self.db.execute(
                    "UPDATE cases SET satisfaction = ?, satisfaction_at = ? WHERE id = ?", (score, ts(now), case_id)
                )
                self._event(case_id, now, "satisfaction", f"{score} ({answer})")
                return "satisfaction_recorded", {"case_id": case_id, "score": score}
            case MarkBouncing(addresses=addresses, reason=reason):
                for address in addresses:
                    self.db.execute(
                        "INSERT INTO bouncing (address, since, case_id, reason) VALUES (?,?,?,?) ON CONFLICT (address) "
                        "DO UPDATE SET since = excluded.since, case_id = excluded.case_id, reason = excluded.reason",
                        (address.lower(), ts(now), case_id, reason),
                    )
                self._event(case_id, now, "marked_bouncing", ", ".join(addresses))
                return "recipient_marked_bouncing", {"case_id": case_id, "addresses": list(addresses)}
            case ClearAutomatic():
                self.db.execute("UPDATE cases SET automatic = 0 WHERE id = ?", (case_id,))
                self._event(case_id, now, "automatic_cleared", "a person wrote")
                return "case_automatic_cleared", {"case_id": case_id}
            case ClearBouncing(address=address):
                cur = self.db.execute("DELETE FROM bouncing WHERE address = ?", (address.lower(),))
                if cur.rowcount == 0:
                    return None
                self._event(case_id, now, "bouncing_cleared", address)
                return "recipient_bouncing_cleared", {"case_id": case_id, "address": address}
        return self._junk_effect(case_id, action, now)

    def _change_case(
        self, case_id: int, action: SetStatus | SetOwner | SetPriority | AddCc | RemoveCc | MergeInto, now: datetime
    ) -> tuple[str, dict[str, object]]:
        """One change to a case's state, recorded in its history; returns the event to log."""
        match action:
            case SetStatus(status=status):
                self.db.execute(
                    "UPDATE cases SET status = ?, updated_at = ?, resolved_at = CASE WHEN ? = 'resolved' THEN ? "
                    "ELSE resolved_at END WHERE id = ?",
                    (status.value, ts(now), status.value, ts(now), case_id),
                )
                self._event(case_id, now, "status_changed", status.value)
                return "case_status_changed", {"case_id": case_id, "status": status.value}
            case SetOwner(owner=owner):
                self.db.execute("UPDATE cases SET owner = ? WHERE id = ?", (owner, case_id))
                self._event(case_id, now, "owner_changed", owner or "-")
                return "case_assigned", {"case_id": case_id, "owner": owner}
            case SetPriority(priority=priority):
                self.db.execute("UPDATE cases SET priority = ? WHERE id = ?", (priority, case_id))
                self._event(case_id, now, "priority_changed", priority)
                return "case_priority_changed", {"case_id": case_id, "priority": priority}
            case AddCc(address=address):
                self._add_cc(case_id, address)
                self._event(case_id, now, "cc_added", address.addr)
                return "case_cc_added", {"case_id": case_id, "cc": address.addr}
            case RemoveCc(address=address):
                self.db.execute("DELETE FROM case_ccs WHERE case_id = ? AND address = ?", (case_id, address.lower()))
                self._event(case_id, now, "cc_removed", address)
                return "case_cc_removed", {"case_id": case_id, "cc": address}
            case MergeInto(target=target):
                self._merge(case_id, target, now)
                carried = self._carry_unverified(case_id, target, now)
                return "case_merged", {"case_id": case_id, "into": target, "unverified_carried": carried}

    def _add_cc(self, case_id: int, address: Address) -> None:
        self.db.execute(
            "INSERT INTO case_ccs (case_id, address, name) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (case_id, address.key, address.name),
        )

    def _merge(self, source: int, target: int, now: datetime) -> None:
        """Everything of `source` moves to `target`; `source` stays, closed, pointing at it."""
        self.db.execute("UPDATE messages SET case_id = ? WHERE case_id = ?", (target, source))
        self.db.execute("UPDATE outbox SET case_id = ? WHERE case_id = ?", (target, source))
        self.db.execute(
            "INSERT INTO case_message_ids (message_id, case_id) "
            "SELECT message_id, ? FROM case_message_ids WHERE case_id = ? ON CONFLICT DO NOTHING",
            (target, source),
        )
        self.db.execute(
            "INSERT INTO case_ccs (case_id, address, name) SELECT ?, address, name FROM case_ccs "
            "WHERE case_id = ? ON CONFLICT DO NOTHING",
            (target, source),
        )
        self.db.execute(
            "UPDATE cases SET status = 'closed', merged_into = ?, updated_at = ? WHERE id = ?",
            (target, ts(now), source),
        )
        self.db.execute("UPDATE cases SET updated_at = ? WHERE id = ?", (ts(now), target))
        self._event(source, now, "merged", f"into case {target}")
        self._event(target, now, "merged", f"case {source} merged in")

    def quarantine(self, msg: InboundMessage, ref: MailRef | None, reason: str, now: datetime) -> int:
        return self._insert_message(
            msg, ref=ref, case_id=None, state=MessageState.QUARANTINED, kind=None, reason=reason, now=now
        )

    def case_request(self, case_id: int) -> bytes | None:
        """The raw mail that opened the case (its first filed message)."""
        row = self.db.execute(
            "SELECT raw FROM messages WHERE case_id = ? AND state = 'filed' ORDER BY id LIMIT 1", (case_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    def case_latest_raw(self, case_id: int) -> bytes | None:
        """The raw mail last filed on the case."""
        row = self.db.execute(
            "SELECT raw FROM messages WHERE case_id = ? AND state = 'filed' ORDER BY id DESC LIMIT 1", (case_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    # --- what the automatic-mail guard needs

    def bouncing(self, addresses: Sequence[str]) -> frozenset[str]:
        keys = [a.lower() for a in addresses]
        if not keys:
            return frozenset()
        marks = ",".join("?" * len(keys))
        rows = self.db.execute(f"SELECT address FROM bouncing WHERE address IN ({marks})", keys)  # noqa: S608
        return frozenset(r[0] for r in rows)

    def automatic_mail_counts(self, addresses: Sequence[str], since: datetime) -> dict[str, int]:
        """How many automatic mails each address was sent (queued) since `since`."""
        return {
            key: self.db.execute(
                "SELECT count(*) FROM automatic_mail WHERE address = ? AND at >= ?", (key, ts(since))
            ).fetchone()[0]
            for key in {a.lower() for a in addresses}
        }
