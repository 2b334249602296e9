"""A requester whose request failed sender authentication: marked on the case, lifted by an
authenticated mail of theirs (pure: screening and decide)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mailsvc.classify import ClassifyContext, classify
from mailsvc.config import parse_config
from mailsvc.decide import QueuePolicy, decide
from mailsvc.model import (
    Address,
    Case,
    ClearUnverified,
    Decision,
    InboundMessage,
    MarkUnverified,
    ThreadMatch,
)
from mailsvc.screening import Screening
from mailsvc.senders import Screen
from mailsvc.trust import TrustVerdict
from tests.unit.factories import case, message

QUEUES = {"help": QueuePolicy("help", (Address("bob@example.org", "Bob Staff"),))}
REQUESTER = TrustVerdict(staff=False, verified=False, reason="From is not a staff address")
NOTE = "sender not verified: dmarc=fail"
REPLY = ThreadMatch(case(), "in_reply_to")
NEW = ThreadMatch(None, "new")


class NoCases:
    def case_by_id(self, case_id: int) -> Case | None:
        return None

    def cases_by_message_ids(self, message_ids: Sequence[str]) -> dict[str, Case]:
        return {}


def run(msg: InboundMessage, screen: Screen, match: ThreadMatch = NEW) -> Decision:
    found = classify(msg, ClassifyContext(frozenset({"help@example.org"})))
    return decide(msg, found, match, queues=QUEUES, queue="help", sender=REQUESTER, lookup=NoCases(), screen=screen)


def test_an_unverified_request_marks_its_requester_on_the_new_case() -> None:
    actions = run(message(), Screen(unverified="dmarc=fail")).actions
    assert MarkUnverified("alice@example.net", NOTE) in actions
    assert not any(isinstance(a, MarkUnverified) for a in run(message(), Screen()).actions)


def test_an_unverified_refused_sender_is_marked_too() -> None:
    actions = run(message(), Screen(refuse="sender not on the allow list", unverified="dmarc=fail")).actions
    assert MarkUnverified("alice@example.net", NOTE) in actions


def test_an_authenticated_reply_lifts_the_mark_and_others_do_not() -> None:
    assert ClearUnverified("alice@example.net") in run(message(), Screen(authenticated=True), REPLY).actions
    for screen in (Screen(), Screen(unverified="dmarc=fail")):
        assert not any(isinstance(a, ClearUnverified) for a in run(message(), screen, REPLY).actions)


def test_an_unverified_reply_does_not_mark_a_case_the_requester_opened() -> None:
    assert not any(isinstance(a, MarkUnverified) for a in run(message(), Screen(unverified="x"), REPLY).actions)


def _screening() -> Screening:
    raw = {
        "imap": {"host": "127.0.0.1", "tls": "none", "user": "u", "password": "p"},
        "smtp": {"host": "127.0.0.1", "tls": "none"},
        "queues": {"help": {"address": "help@example.org"}},
        "store": {"path": "/var/lib/mailsvc/x.db"},
        "trust": {"authserv_ids": ["mx.example.org"]},
    }
    return Screening(parse_config(raw, Path("/")))


def test_screening_tells_authenticated_from_forged_and_unknown() -> None:
    def screen(results: str) -> Screen:
        msg = message(headers={"Authentication-Results": [results]})
        return _screening().screen(msg, "help", staff=False, denied=lambda queue: ())

    assert screen("mx.example.org; dkim=pass header.d=example.net") == Screen(authenticated=True)
    assert screen("mx.example.org; dmarc=fail header.from=example.net").unverified is not None
    assert screen("other.example; dkim=pass header.d=example.net") == Screen()
