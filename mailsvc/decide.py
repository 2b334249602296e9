"""Decisions (pure): from the message, its classification, its case and `now`, the actions.

All policy lives here: when a case opens, which status it takes, and when an
acknowledgement is sent or suppressed (and why).
"""

from __future__ import annotations

from mailsvc.classify import is_automatic
from mailsvc.model import (
    Action,
    CaseStatus,
    Classification,
    Decision,
    FileMessage,
    InboundMessage,
    MessageKind,
    OpenCase,
    QueueMail,
    SetStatus,
    Suppress,
    ThreadMatch,
)


def decide(msg: InboundMessage, found: Classification, match: ThreadMatch, queue: str) -> Decision:
    """`queue` is where a new case would open; an existing case keeps its own."""
    case = match.case
    if found.kind is MessageKind.LOOP:
        # Our own mail came back: keep it, but never act on it.
        return Decision(case.id if case else None, case.queue if case else queue, (FileMessage(found.kind),))
    if case is None or (case.status is CaseStatus.CLOSED and found.kind is MessageKind.REQUEST):
        return _open_case(msg, found, queue)
    actions: list[Action] = []
    if found.kind is MessageKind.REQUEST:
        actions.append(FileMessage(MessageKind.REQUESTER_REPLY))
        if case.status in (CaseStatus.WAITING, CaseStatus.RESOLVED):
            actions.append(SetStatus(CaseStatus.OPEN))
    else:
        actions.append(FileMessage(found.kind))
    return Decision(case.id, case.queue, tuple(actions))


def _open_case(msg: InboundMessage, found: Classification, queue: str) -> Decision:
    assert msg.from_ is not None, "parse quarantines mail without a sender"
    actions: list[Action] = [
        OpenCase(queue, msg.subject or "(no subject)", msg.from_),
        FileMessage(found.kind),
    ]
    if is_automatic(found.kind):
        actions.append(Suppress("ack", found.reason))
    else:
        actions.append(QueueMail("ack", "ack", (msg.from_,)))
    return Decision(None, queue, tuple(actions))
