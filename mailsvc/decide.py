"""Decisions (pure): from the message, its classification, its case, the sender's trust, the actions.

All policy lives here: when a case opens, who is told, what is relayed to the
requester, which staff commands run, and when mail is suppressed (and why).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mailsvc.classify import is_automatic
from mailsvc.commands import Command, ParsedCommands, parse_commands
from mailsvc.model import (
    STAFF_PURPOSES,
    Action,
    AddCc,
    Address,
    CancelTimers,
    Case,
    CaseStatus,
    Classification,
    ClearAutomatic,
    ClearBouncing,
    ClearJunk,
    ClearUnverified,
    Decision,
    DenySender,
    FileMessage,
    InboundMessage,
    MarkBouncing,
    MarkJunk,
    MarkUnverified,
    MergeInto,
    MessageKind,
    OpenCase,
    QueueMail,
    RecordSatisfaction,
    RemoveCc,
    SetOwner,
    SetPriority,
    SetStatus,
    SetTimer,
    Suppress,
    ThreadMatch,
    TimerKind,
)
from mailsvc.satisfaction import parse_rating
from mailsvc.senders import UNSCREENED, Screen
from mailsvc.strip import strip_reply
from mailsvc.thread import CaseLookup, case_subject
from mailsvc.trust import TrustVerdict

OPEN_STATES = (CaseStatus.OPEN, CaseStatus.WAITING)
DONE_STATES = (CaseStatus.RESOLVED, CaseStatus.CLOSED)


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """What decide needs to know of a queue."""

    name: str
    staff: tuple[Address, ...] = ()
    comment_address: str | None = None
    tag: re.Pattern[str] | None = None  # its subject tag, as thread.compile_tag makes it

    def staff_member(self, addr: str) -> Address | None:
        return next((s for s in self.staff if s.key == addr.lower()), None)


def decide(
    msg: InboundMessage,
    found: Classification,
    match: ThreadMatch,
    *,
    queues: Mapping[str, QueuePolicy],
    queue: str,
    sender: TrustVerdict,
    lookup: CaseLookup,
    screen: Screen = UNSCREENED,
) -> Decision:
    """`queue` is where a new case would open; an existing case keeps its own. `screen`: what the
    sender rules and the sender's authentication say (senders.screen_sender, trust.authenticate_sender)."""
    decision = _decide(msg, found, match, queues=queues, queue=queue, sender=sender, lookup=lookup, screen=screen)
    human = (MessageKind.REQUEST, MessageKind.REQUESTER_REPLY)
    if msg.from_ is not None and any(isinstance(a, FileMessage) and a.kind in human for a in decision.actions):
        # The requester wrote from this address: it works again, whatever bounced before.
        extra: tuple[Action, ...] = (ClearBouncing(msg.from_.key),)
        if match.case is not None and match.case.automatic and decision.case_id == match.case.id:
            extra += (ClearAutomatic(),)  # a person wrote: the case's SLA starts now
        if screen.authenticated and match.case is not None and decision.case_id == match.case.id:
            extra += (ClearUnverified(msg.from_.key),)  # the address proved itself: automatic mail may go
        return Decision(decision.case_id, decision.queue, (*decision.actions, *extra))
    return decision


def _decide(
    msg: InboundMessage,
    found: Classification,
    match: ThreadMatch,
    *,
    queues: Mapping[str, QueuePolicy],
    queue: str,
    sender: TrustVerdict,
    lookup: CaseLookup,
    screen: Screen,
) -> Decision:
    case = match.case
    if found.kind is MessageKind.LOOP:
        # Our own mail came back: keep it, but never act on it.
        return Decision(case.id if case else None, case.queue if case else queue, (FileMessage(found.kind),))
    if case is not None and sender.staff and not is_automatic(found.kind):
        return _staff_mail(msg, case, queues[case.queue], sender, lookup)
    if case is not None and case.junk and found.kind is MessageKind.REQUEST:
        # More mail on a junk case is junk too, until staff say #notspam.
        return Decision(case.id, case.queue, (FileMessage(MessageKind.JUNK, note=f"case is junk: {case.junk}"),))
    if (
        case is not None
        and found.kind is MessageKind.REQUEST
        and case.status in (CaseStatus.RESOLVED, CaseStatus.CLOSED)
    ):
        rating = parse_rating(msg.subject, strip_reply(msg.text))
        if rating is not None:
            return _satisfaction(case, queues[case.queue], rating.score, rating.answer, rating.remark)
    if case is None or (case.status is CaseStatus.CLOSED and found.kind is MessageKind.REQUEST):
        tags = tuple(q.tag for q in queues.values() if q.tag is not None)
        parent = case.id if case else None
        if found.kind is MessageKind.REQUEST and (screen.junk or screen.refuse):
            return _refused(msg, queues[queue], parent, tags, screen)
        return _open_case(msg, found, queues[queue], parent=parent, tags=tags, screen=screen)
    if found.kind is MessageKind.BOUNCE:
        # The requester did not get our mail: a human has to find another way to reach them.
        notice = _notify_staff(case, queues[case.queue], "bounce_notice", found.reason)
        mark = [MarkBouncing(found.bounced, found.reason)] if found.bounced else []
        return Decision(case.id, case.queue, (FileMessage(found.kind, note=found.reason), *mark, *notice))
    if found.kind is not MessageKind.REQUEST:
        return Decision(case.id, case.queue, (FileMessage(found.kind),))
    actions: list[Action] = [FileMessage(MessageKind.REQUESTER_REPLY, note=_unverified_note(screen))]
    if case.status in (CaseStatus.WAITING, CaseStatus.RESOLVED):
        actions.append(SetStatus(CaseStatus.OPEN))
    text = _unverified_banner(screen) + strip_reply(msg.text)
    actions.extend(_notify_staff(case, queues[case.queue], "notify", text, attach=True))
    return Decision(case.id, case.queue, tuple(actions))


def _unverified_note(screen: Screen) -> str:
    return f"sender not verified: {screen.unverified}" if screen.unverified else ""


def _unverified_banner(screen: Screen) -> str:
    return f"[Sender not verified: {screen.unverified}]\n\n" if screen.unverified else ""


def _refused(
    msg: InboundMessage, queue: QueuePolicy, parent: int | None, tags: tuple[re.Pattern[str], ...], screen: Screen
) -> Decision:
    """A sender the queue's rules turn away: a junk case, answered politely only when `refuse` says so
    (and never a sender whose mail failed authentication: the answer would be backscatter)."""
    assert msg.from_ is not None, "parse quarantines mail without a sender"
    reason = screen.junk or screen.refuse or ""
    subject = case_subject(msg.subject, tags) or "(no subject)"
    actions: list[Action] = [
        OpenCase(queue.name, subject, msg.from_, parent=parent, automatic=True),
        FileMessage(MessageKind.JUNK, note=reason),
        MarkJunk(reason),
        Suppress("ack", reason),
        Suppress("notify", reason),
    ]
    if screen.refuse and screen.unverified:
        actions.append(Suppress("refused", f"sender not verified: {screen.unverified}"))
    elif screen.refuse:
        actions.append(QueueMail("refused", "refused", (msg.from_,)))
    if screen.unverified:
        actions.append(MarkUnverified(msg.from_.key, _unverified_note(screen)))
    return Decision(None, queue.name, tuple(actions))


def silence(actions: tuple[Action, ...], reason: str) -> tuple[Action, ...]:
    """History (a backlog filed at the first start, an imported archive): filed as it is, but no mail
    goes out, a new case is opened as automatic (no SLA until a person writes) and no timer starts."""
    quiet: list[Action] = []
    for action in actions:
        match action:
            case QueueMail(purpose=purpose):
                quiet.append(Suppress(purpose, reason))
            case OpenCase():
                quiet.append(
                    OpenCase(action.queue, action.subject, action.requester, action.parent, action.ccs, automatic=True)
                )
            case SetTimer():
                continue
            case _:
                quiet.append(action)
    return tuple(quiet)


def _open_case(
    msg: InboundMessage,
    found: Classification,
    queue: QueuePolicy,
    parent: int | None,
    tags: tuple[re.Pattern[str], ...] = (),
    *,
    screen: Screen = UNSCREENED,
) -> Decision:
    """A new case; its subject is the topic alone (a follow-up's request quotes the old case's tag)."""
    assert msg.from_ is not None, "parse quarantines mail without a sender"
    ccs = tuple(a for a in msg.cc if a.key != msg.from_.key and queue.staff_member(a.addr) is None and "@" in a.addr)
    automatic = is_automatic(found.kind)
    subject = case_subject(msg.subject, tags) or "(no subject)"
    actions: list[Action] = [
        OpenCase(queue.name, subject, msg.from_, parent=parent, ccs=ccs, automatic=automatic),
        FileMessage(found.kind),
    ]
    if automatic:
        # Automatic mail that threads nowhere: no answer to a machine, but no silent case either.
        # Staff are told; the case is marked automatic and runs no SLA until a person writes on it.
        actions.append(Suppress("ack", found.reason))
        if found.kind is MessageKind.JUNK:
            actions.append(MarkJunk(found.reason))
        if found.bounced:  # a bounce of mail we cannot place: the address is bad all the same
            actions.append(MarkBouncing(found.bounced, found.reason))
        if found.kind is MessageKind.JUNK:
            actions.append(Suppress("notify", found.reason))
        elif queue.staff:
            text = f"Automatic mail ({found.reason}) that belongs to no case:\n\n{strip_reply(msg.text)}"
            actions.append(QueueMail("notify", "notify", queue.staff, text=text, attach=True))
        else:
            actions.append(Suppress("notify", "the queue has no staff"))
        return Decision(None, queue.name, tuple(actions))
    if screen.unverified:
        actions[1] = FileMessage(found.kind, note=_unverified_note(screen))
        actions.append(Suppress("ack", _unverified_note(screen)))
        actions.append(MarkUnverified(msg.from_.key, _unverified_note(screen)))
    elif screen.no_ack:
        actions.append(Suppress("ack", screen.no_ack))
    else:
        actions.append(QueueMail("ack", "ack", (msg.from_,)))
    if queue.staff:
        text = _unverified_banner(screen) + strip_reply(msg.text)
        actions.append(QueueMail("notify", "notify", queue.staff, text=text, attach=True))
    return Decision(None, queue.name, tuple(actions))


def _satisfaction(case: Case, queue: QueuePolicy, score: int, answer: str, remark: str) -> Decision:
    """Recorded, never reopening: a remark with the rating goes to the team, who decide."""
    actions: list[Action] = [
        FileMessage(MessageKind.REQUESTER_REPLY, note=f"satisfaction {score}"),
        RecordSatisfaction(score, answer),
    ]
    if remark:
        actions.extend(_notify_staff(case, queue, "notify", f"Rated {score}/5: {remark}"))
    return Decision(case.id, case.queue, tuple(actions))


def _notify_staff(case: Case, queue: QueuePolicy, purpose: str, text: str, attach: bool = False) -> list[Action]:
    """To the case's owner when it has one, else to all of the queue's staff."""
    owner = queue.staff_member(case.owner) if case.owner else None
    to = (owner,) if owner else queue.staff
    if not to:
        return [Suppress(purpose, "the queue has no staff")]
    return [QueueMail(purpose, purpose, to, text=text, attach=attach)]


def _staff_mail(
    msg: InboundMessage, case: Case, queue: QueuePolicy, sender: TrustVerdict, lookup: CaseLookup
) -> Decision:
    assert msg.from_ is not None
    if not sender.verified:
        return Decision(
            case.id,
            case.queue,
            (
                FileMessage(MessageKind.STAFF_REPLY, note=f"unverified: {sender.reason}"),
                Suppress("relay", f"sender not verified: {sender.reason}"),
                QueueMail("unverified", "unverified", queue.staff, text=sender.reason),
            ),
        )
    parsed = parse_commands(strip_reply(msg.text))
    errors = [f"line {e.line}: {e.text}\n    {e.reason}" for e in parsed.errors]
    errors.extend(_unknown_targets(parsed, queue, lookup, case))
    if errors:
        return Decision(
            case.id,
            case.queue,
            (
                FileMessage(MessageKind.COMMAND, note="rejected: " + "; ".join(errors)),
                QueueMail("command_error", "command_error", (msg.from_,), text="\n".join(errors)),
            ),
        )
    # Junk is never answered: a staff mail that marks it so is kept as a comment, never relayed.
    junk = any(c.name == "spam" for c in parsed.commands)
    comment = junk or any(c.name == "comment" for c in parsed.commands) or _sent_to(msg, queue.comment_address)
    body = parsed.body.strip()
    kind = MessageKind.COMMENT if comment else (MessageKind.STAFF_REPLY if body else MessageKind.COMMAND)
    actions: list[Action] = [FileMessage(kind)]
    status_set = False
    for command in parsed.commands:
        actions.extend(_run(command, msg.from_, queue) or _junk_command(command, msg.from_, case))
        status_set |= command.name == "status"
    if comment:
        others = tuple(s for s in queue.staff if s.key != msg.from_.key)
        if others and body:
            actions.append(QueueMail("comment", "comment", others, text=body, attach=True))
    elif body:
        actions.append(QueueMail("relay", "relay", (case.requester, *case.ccs), text=body, attach=True))
        if not status_set and case.status is not CaseStatus.WAITING:
            actions.append(SetStatus(CaseStatus.WAITING))
    if any(isinstance(a, SetStatus) and a.status is CaseStatus.RESOLVED for a in actions):
        actions.append(QueueMail("resolved", "resolved", (case.requester, *case.ccs)))
    return Decision(case.id, case.queue, tuple(actions))


def _sent_to(msg: InboundMessage, address: str | None) -> bool:
    return address is not None and any(a.key == address.lower() for a in msg.recipients)


def _unknown_targets(parsed: ParsedCommands, queue: QueuePolicy, lookup: CaseLookup, case: Case) -> list[str]:
    """Arguments the grammar accepts but this help desk cannot honour (no such staff, no such case)."""
    errors = []
    for c in parsed.commands:
        if c.name == "assign" and _staff_by_name(queue, c.args[0]) is None:
            errors.append(f"line {c.line}: #assign {c.args[0]}\n    not a staff member of queue {queue.name}")
        if c.name == "merge":
            target = int(c.args[0])
            if target == case.id or lookup.case_by_id(target) is None:
                errors.append(f"line {c.line}: #merge {target}\n    no other case {target} to merge into")
    return errors


def _staff_by_name(queue: QueuePolicy, who: str) -> Address | None:
    who = who.lower()
    for s in queue.staff:
        if who in (s.key, s.key.partition("@")[0], s.name.lower()):
            return s
    return None


def _run(command: Command, sender: Address, queue: QueuePolicy) -> list[Action]:
    match command.name, command.args:
        case "status", (status,):
            return [SetStatus(CaseStatus(status))]
        case "take", _:
            return [SetOwner(sender.key)]
        case "assign", (who,):
            member = _staff_by_name(queue, who)
            return [SetOwner(member.key if member else who)]
        case "priority", (priority,):
            return [SetPriority(priority)]
        case "cc", ("add", address):
            return [AddCc(Address(address))]
        case "cc", ("remove", address):
            return [RemoveCc(address.lower())]
        case "merge", (target,):
            return [MergeInto(int(target))]
    return []


def _junk_command(command: Command, sender: Address, case: Case) -> list[Action]:
    """#spam [block] and #notspam; the case's timers stop with #spam (no SLA for junk)."""
    match command.name, command.args:
        case "spam", args:
            actions: list[Action] = [
                MarkJunk(f"#spam by {sender.key}", move=True),
                CancelTimers(tuple(TimerKind), "the case is junk"),
            ]
            if args == ("block",):
                actions.append(DenySender(case.queue, case.requester.key, sender.key))
            return actions
        case "notspam", _:
            return [ClearJunk()]
    return []


def decide_send_failure(case: Case, queue: QueuePolicy, purpose: str, rcpt: str, error: str) -> tuple[Action, ...]:
    """Mail that will not be sent: the team hears of it, unless the lost mail was their own notice."""
    if purpose in STAFF_PURPOSES:
        return (Suppress("send_failed", f"the failed mail ({purpose}) was itself to staff"),)
    return tuple(_notify_staff(case, queue, "send_failed", f"{purpose} to {rcpt}: {error}"))
