"""Outgoing mail (shell): drafts decided in a transaction become bytes after its commit.

`draft` runs inside `Store.apply` and only fixes the Message-ID and the envelope; `build_pending`
runs after the commit, outside the write lock, and renders each draft from the values decided,
the message that caused it, and the case's requester-visible thread. A draft that cannot be built
is marked failed with the reason: the scheduler tells the team once, as of any failed mail.
Drafts a crash left behind are built by the next pass, before the sender can see them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import make_msgid

from mailsvc.config import Config
from mailsvc.expect import TeamFigures
from mailsvc.log import get_logger
from mailsvc.model import STAFF_PURPOSES, Case, InboundMessage, MailDraft, QueueMail, QueueMap
from mailsvc.parse import ParseLimits, parse_message
from mailsvc.render import ThreadIds, compose, recipient_groups
from mailsvc.store import StoreContract
from mailsvc.store.contract import PendingDraft
from mailsvc.templatecheck import queue_templates, queue_view
from mailsvc.trust import reply_address


@dataclass
class BuildResult:
    built: int = 0
    failed: int = 0


class MailBuilder:
    def __init__(
        self,
        config: Config,
        store: StoreContract,
        clock: Callable[[], datetime],
        limits: ParseLimits,
        team: TeamFigures | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits
        self.views = QueueMap({name: queue_view(config, name) for name in config.queues}, config.default_queue)
        self.templates = QueueMap(queue_templates(config), config.default_queue)
        self.token_key = config.trust.key()
        self.team = team  # the acknowledgement's figures: when to expect an answer
        self.log = get_logger(component="outgoing")
        self._parsed: dict[tuple[str, int], InboundMessage] = {}
        # Messages their stage parsed already (ingest, the scheduler), by what `_cause` looks up: used
        # when the stored message has their content hash (a rolled-back transaction may give its row id
        # to another mail), which is read instead of the bytes (a large mail is not read back whole).
        self._known: dict[tuple[str, int], InboundMessage] = {}

    def known(self, msg: InboundMessage, *, message_row: int | None = None, request_of: int | None = None) -> None:
        """Hand over a parsed message the drafts of this pass may follow: parsed once, not again."""
        if message_row is not None:
            self._known[("message", message_row)] = msg
        if request_of is not None:
            self._known[("request", request_of)] = msg

    def draft(self, action: QueueMail, case: Case, msg: InboundMessage) -> tuple[MailDraft, ...]:
        """What the transaction records of a mail: Message-ID, envelope, and what to build it from.

        Recipients whose address needs SMTPUTF8 get a copy of their own (render.recipient_groups)."""
        view = self.views[case.queue]
        return tuple(
            MailDraft(
                message_id=make_msgid(idstring=f"case{case.id}", domain=view.address.rpartition("@")[2]),
                mail_from=view.address,
                rcpt_to=tuple(a.addr for a in to),
                purpose=action.purpose,
                template=action.template,
                to=to,
                text=action.text,
                attach=action.attach,
                status=case.status,
            )
            for to in recipient_groups(action.to)
        )

    def build_pending(self) -> BuildResult:
        """Build every draft waiting (this pass's, and any a crash left), then store the bytes of
        a batch in one short transaction: rendering never runs under the write lock."""
        result = BuildResult()
        while drafts := self.store.pending_drafts():
            built: list[tuple[PendingDraft, bytes | None, str]] = []
            self._parsed.clear()  # an acknowledgement and a notification share their cause: parsed once
            for pending in drafts:
                try:
                    built.append((pending, self._build(pending), ""))
                except Exception as exc:  # a template fault, an unencodable value: this mail fails, not the rest
                    built.append((pending, None, f"cannot build: {type(exc).__name__}: {exc}"[:300]))
            with self.store.transaction():
                stored = [
                    self.store.store_built(p.outbox_id, raw)
                    if raw is not None
                    else self.store.mark_build_failed(p.outbox_id, error)
                    for p, raw, error in built
                ]
            for (pending, raw, error), done in zip(built, stored, strict=True):
                if not done:
                    continue  # another worker built it first
                draft = pending.draft
                log = self.log.bind(case_id=pending.case_id, message_id=draft.message_id, purpose=draft.purpose)
                if raw is None:
                    log.error("mail_build_failed", error=error)
                    result.failed += 1
                else:
                    log.debug("mail_built", size=len(raw))
                    result.built += 1
        self._parsed.clear()
        self._known.clear()
        return result

    def _build(self, pending: PendingDraft) -> bytes:
        draft = pending.draft
        if pending.case_id is None:
            raise ValueError("a draft without a case")
        case = self.store.case_by_id(pending.case_id)
        if case is None:
            raise ValueError(f"case {pending.case_id} is gone")
        case = replace(case, status=draft.status)
        msg = self._cause(pending, case.id)
        view = self.views[case.queue]
        if self.team is not None:
            view = replace(view, team=self.team.view(case.queue, self.clock()))
        to_staff = draft.purpose in STAFF_PURPOSES
        reply_to = reply_address(view.address, case.id, self.token_key) if to_staff and self.token_key else None
        thread = None if to_staff else self._requester_thread(pending, msg)
        action = QueueMail(draft.purpose, draft.template, draft.to, draft.text, draft.attach)
        mail = compose(
            action, case, msg, templates=self.templates[case.queue], queue=view,
            message_id=draft.message_id, now=self.clock(), reply_to=reply_to, thread=thread,
        )  # fmt: skip
        return mail.raw

    def _cause(self, pending: PendingDraft, case_id: int) -> InboundMessage:
        """The message the mail answers; timer mail has none of its own and follows the case's request."""
        key = ("message", pending.cause) if pending.cause is not None else ("request", case_id)
        msg = self._parsed.get(key)
        # Filing keeps no attachment bytes: a mail that forwards them reads the stored message.
        if msg is not None and not (pending.draft.attach and _without_bytes(msg)):
            return msg
        known = self._known.get(key)
        usable = known is not None and not (pending.draft.attach and _without_bytes(known))
        if usable and known is not None and known.content_hash == self._stored_hash(key):
            self._parsed[key] = known
            return known
        raw = self.store.message_raw(key[1]) if key[0] == "message" else self.store.case_request(case_id)
        msg = self._parsed[key] = parse_message(raw or b"", self.limits)
        return msg

    def _stored_hash(self, key: tuple[str, int]) -> str | None:
        if key[0] == "message":
            return self.store.message_hash(key[1])
        return self.store.message_hash(request_of=key[1])

    def _requester_thread(self, pending: PendingDraft, cause: InboundMessage) -> ThreadIds:
        """Only what the requester received or sent up to this mail's decision: never a staff
        Message-ID nor a notification's. When the requester's own mail caused it, its References
        (their thread) lead."""
        assert pending.case_id is not None
        entries = self.store.requester_thread(pending.case_id, pending.outbox_id, pending.cause)
        parent = next((e.message_id for e in reversed(entries) if e.from_requester), None)
        earlier = cause.references if parent is not None and cause.message_id == parent else ()
        return ThreadIds(parent, (*earlier, *(e.message_id for e in entries)))


def _without_bytes(msg: InboundMessage) -> bool:
    """Parsed for filing: its attachments have a size but not their bytes."""
    return any(a.size and not a.data for a in msg.attachments)
