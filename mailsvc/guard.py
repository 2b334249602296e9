"""The automatic-mail guard (pure): the last word on acknowledgements, reminders and auto-closing mail.

Headers catch most auto-responders (classify.py); this catches the rest. No
automatic mail goes to an address whose mail bounced, none to a case's requester whose request
failed sender authentication (backscatter to whoever the From names), and at most
`max_per_hour` automatic mails go to one address in an hour. Mail a human
wrote (a staff reply, a resolution notice) is never held back here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mailsvc.model import AUTOMATIC_PURPOSES, Action, QueueMail, Suppress

__all__ = ["AUTOMATIC_PURPOSES", "MailFacts", "automatic_recipients", "guard_automatic"]


@dataclass(frozen=True, slots=True)
class MailFacts:
    """What the store knows of the recipients: bouncing ones, the ones not verified on this case, and
    automatic mails sent in the last hour."""

    bouncing: frozenset[str] = frozenset()
    recent: Mapping[str, int] | None = None
    unverified: frozenset[str] = frozenset()


def automatic_recipients(actions: Iterable[Action]) -> set[str]:
    return {a.key for x in actions if isinstance(x, QueueMail) and x.automatic for a in x.to}


def guard_automatic(actions: Iterable[Action], facts: MailFacts, max_per_hour: int) -> tuple[Action, ...]:
    """Drop bouncing, unverified and over-limit recipients from automatic mail; a mail left with none
    is suppressed."""
    sent = dict(facts.recent or {})
    out: list[Action] = []
    for action in actions:
        if not (isinstance(action, QueueMail) and action.automatic):
            out.append(action)
            continue
        keep = []
        reasons = []
        for rcpt in action.to:
            if rcpt.key in facts.bouncing:
                reasons.append(f"{rcpt.addr} is bouncing")
            elif rcpt.key in facts.unverified:
                reasons.append(f"sender not verified: {rcpt.addr}")
            elif sent.get(rcpt.key, 0) >= max_per_hour:
                reasons.append(f"rate limit: {max_per_hour} automatic mails to {rcpt.addr} in the last hour")
            else:
                keep.append(rcpt)
                sent[rcpt.key] = sent.get(rcpt.key, 0) + 1
        if keep:
            out.append(QueueMail(action.purpose, action.template, tuple(keep), action.text, action.attach))
        for reason in reasons:
            out.append(Suppress(action.purpose, reason))
    return tuple(out)
