"""Spam verdicts, sender rules, requester authentication, and what decide makes of them (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from mailsvc.classify import ClassifyContext, classify
from mailsvc.commands import Command, parse_commands
from mailsvc.config import parse_config
from mailsvc.decide import QueuePolicy, decide, silence
from mailsvc.errors import ConfigError
from mailsvc.model import (
    Address,
    CancelTimers,
    Case,
    ClearJunk,
    Decision,
    DenySender,
    FileMessage,
    InboundMessage,
    MarkJunk,
    MessageKind,
    OpenCase,
    QueueMail,
    SetTimer,
    Suppress,
    ThreadMatch,
    TimerKind,
)
from mailsvc.senders import Screen, SenderRules, matches, screen_sender
from mailsvc.spam import HeaderRule, SpamPolicy, spam_verdict
from mailsvc.trust import TrustPolicy, TrustVerdict, authenticate_sender
from tests.unit.factories import T0, case, message

BOB = Address("bob@example.org", "Bob Staff")
QUEUES = {"help": QueuePolicy("help", (BOB,))}
REQUESTER = TrustVerdict(staff=False, verified=False, reason="From is not a staff address")
STAFF = TrustVerdict(staff=True, verified=True, reason="dkim=pass")
BOTH = SpamPolicy(trust=frozenset({"spamassassin", "rspamd"}))


class NoCases:
    def case_by_id(self, case_id: int) -> Case | None:
        return None

    def cases_by_message_ids(self, message_ids: Sequence[str]) -> dict[str, Case]:
        return {}


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        ({"X-Spam-Flag": ["YES"]}, "SpamAssassin: X-Spam-Flag: YES"),
        ({"X-Spam-Status": ["Yes, score=7.1 required=5.0\r\n\ttests=GTUBE"]}, "SpamAssassin: X-Spam-Status: Yes"),
        ({"X-Spam-Status": ["No, score=-0.0 required=5.0"]}, None),
        ({"X-Spam": ["Yes"]}, "rspamd: X-Spam: yes"),
        ({"X-Rspamd-Action": ["add header"]}, "rspamd: action add header"),
        ({"X-Rspamd-Action": ["no action"]}, None),
        ({"X-Spam-Flag": ["NO"]}, None),
    ],
)
def test_filters_headers(headers: dict[str, list[str]], verdict: str | None) -> None:
    found = spam_verdict(message(headers=headers), BOTH)
    assert (found or "").startswith(verdict or "") and (found is None) == (verdict is None)


def test_only_trusted_filters_count_and_rules_by_pattern_or_score() -> None:
    msg = message(headers={"X-Spam-Flag": ["YES"], "X-Spam-Score": ["8.5 / 15"], "X-Custom": ["junk"]})
    assert spam_verdict(msg, SpamPolicy(trust=frozenset({"rspamd"}))) is None
    score = SpamPolicy(rules=(HeaderRule("X-Spam-Score", score_at_least=8.0),))
    assert spam_verdict(msg, score) == "X-Spam-Score: 8.5 >= 8"
    assert spam_verdict(msg, SpamPolicy(rules=(HeaderRule("X-Spam-Score", score_at_least=9.0),))) is None
    pattern = SpamPolicy(rules=(HeaderRule("X-Custom", re.compile("^junk$")),))
    assert spam_verdict(msg, pattern) == "X-Custom matches '^junk$'"
    assert classify(msg, ClassifyContext(frozenset(), spam=score)).kind is MessageKind.JUNK


@pytest.mark.parametrize(
    ("address", "pattern", "hit"),
    [
        ("Ops@Example.org", "ops@example.org", True),
        ("ops@example.org", "example.org", True),
        ("ops@example.org", "@example.org", True),
        ("ops@mail.example.org", "example.org", False),
        ("ops@mail.example.org", "*.example.org", True),
        ("ops@example.org", "*.example.org", False),
        ("ops@badexample.org", "*.example.org", False),
    ],
)
def test_sender_patterns(address: str, pattern: str, hit: bool) -> None:
    assert matches(address, pattern) is hit


def test_screen_sender_order_deny_then_allow_then_no_ack() -> None:
    rules = SenderRules(allow=("example.net",), deny=("bad@example.net",), no_ack=("mon@example.net",))
    assert screen_sender("bad@example.net", rules) == Screen(junk="sender denied (bad@example.net)")
    assert screen_sender("x@other.example", rules) == Screen(refuse="sender not on the allow list")
    quiet = SenderRules(allow=("example.net",), refuse_others=False)
    assert screen_sender("x@other.example", quiet) == Screen(junk="sender not on the allow list")
    assert screen_sender("mon@example.net", rules).no_ack == "sender on the no_ack list (mon@example.net)"
    assert screen_sender("ok@example.net", rules) == Screen()
    assert screen_sender("x@any.example", SenderRules(), denied=("any.example",)).junk == "sender denied (any.example)"


POLICY = TrustPolicy(staff=frozenset(), trusted_authserv_ids=frozenset({"mx.example.org"}))


@pytest.mark.parametrize(
    ("results", "authenticated", "forged"),
    [
        ("mx.example.org; dmarc=fail header.from=example.net", False, True),
        ("mx.example.org; dmarc=fail", False, True),
        ("mx.example.org; dmarc=fail header.from=other.example", False, False),
        ("mx.example.org; dkim=pass header.d=example.net", True, False),
        ("mx.example.org; spf=pass smtp.mailfrom=bounce@example.net", True, False),
        ("mx.example.org; dkim=pass header.d=elsewhere.example", False, False),
        ("other.example; dkim=pass header.d=example.net", False, False),
    ],
)
def test_authenticate_sender(results: str, authenticated: bool, forged: bool) -> None:
    auth = authenticate_sender(message(headers={"Authentication-Results": [results]}), POLICY)
    assert (auth.authenticated, auth.forged) == (authenticated, forged)


def test_authenticate_sender_without_from() -> None:
    assert authenticate_sender(message(from_=None), POLICY).reason == "no From address"


NEW = ThreadMatch(None, "new")


def run(msg: InboundMessage, screen: Screen, match: ThreadMatch = NEW, sender: TrustVerdict = REQUESTER) -> Decision:
    found = classify(msg, ClassifyContext(frozenset({"help@example.org"}), spam=BOTH))
    return decide(msg, found, match, queues=QUEUES, queue="help", sender=sender, lookup=NoCases(), screen=screen)


def test_refused_sender_gets_the_refused_template_unless_unverified() -> None:
    actions = run(message(), Screen(refuse="sender not on the allow list")).actions
    assert actions[0] == OpenCase("help", "Printer on floor 3 is jammed", Address("alice@example.net", "Alice Example"),
                                  automatic=True)  # fmt: skip
    assert MarkJunk("sender not on the allow list") in actions
    assert QueueMail("refused", "refused", (Address("alice@example.net", "Alice Example"),)) in actions
    quiet = run(message(), Screen(refuse="not allowed", unverified="dmarc=fail")).actions
    assert Suppress("refused", "sender not verified: dmarc=fail") in quiet
    assert not any(isinstance(a, QueueMail) for a in quiet)


def test_unverified_and_no_ack_senders_get_no_ack_but_staff_are_told() -> None:
    actions = run(message(), Screen(unverified="dmarc=fail header.from=example.net")).actions
    assert FileMessage(MessageKind.REQUEST, note="sender not verified: dmarc=fail header.from=example.net") in actions
    (notify,) = [a for a in actions if isinstance(a, QueueMail)]
    assert notify.purpose == "notify" and notify.text.startswith("[Sender not verified: dmarc=fail")
    quiet = run(message(), Screen(no_ack="sender on the no_ack list (x)")).actions
    assert Suppress("ack", "sender on the no_ack list (x)") in quiet
    assert [a.purpose for a in quiet if isinstance(a, QueueMail)] == ["notify"]


def test_spam_opens_a_junk_case_and_more_mail_on_a_junk_case_is_junk() -> None:
    spam = message(headers={"X-Spam-Flag": ["YES"]})
    actions = run(spam, Screen()).actions
    assert MarkJunk("SpamAssassin: X-Spam-Flag: YES") in actions
    assert not any(isinstance(a, QueueMail) for a in actions)
    junk_case = case(junk="#spam by bob@example.org")
    reply = run(message(), Screen(), ThreadMatch(junk_case, "in_reply_to")).actions
    assert reply == (FileMessage(MessageKind.JUNK, note="case is junk: #spam by bob@example.org"),)


def test_unverified_requester_reply_is_marked_for_staff() -> None:
    actions = run(message(), Screen(unverified="dmarc=fail"), ThreadMatch(case(), "in_reply_to")).actions
    assert actions[0] == FileMessage(MessageKind.REQUESTER_REPLY, note="sender not verified: dmarc=fail")


def test_staff_spam_block_and_notspam() -> None:
    assert parse_commands("#spam block\n").commands == (Command("spam", ("block",), 1),)
    assert parse_commands("#spam\n").commands == (Command("spam", (), 1),)
    assert "did you mean block" in parse_commands("#spam blok\n").errors[0].reason
    actions = run(message(from_=BOB, text="#spam block\nnot relayed"), Screen(), ThreadMatch(case(), "token"),
                  STAFF).actions  # fmt: skip
    assert MarkJunk("#spam by bob@example.org", move=True) in actions
    assert CancelTimers(tuple(TimerKind), "the case is junk") in actions
    assert DenySender("help", "alice@example.net", "bob@example.org") in actions
    assert not any(isinstance(a, QueueMail) and a.purpose == "relay" for a in actions)
    undo = run(message(from_=BOB, text="#notspam"), Screen(), ThreadMatch(case(junk="x"), "token"), STAFF).actions
    assert ClearJunk() in undo


def test_silence_files_history_without_mail_or_timers() -> None:
    opened = OpenCase("help", "s", Address("a@example.net"))
    actions = (opened, FileMessage(MessageKind.REQUEST), QueueMail("ack", "ack", (Address("a@example.net"),)),
               SetTimer(TimerKind.SLA_1, T0))  # fmt: skip
    assert silence(actions, "old") == (
        OpenCase("help", "s", Address("a@example.net"), automatic=True),
        FileMessage(MessageKind.REQUEST),
        Suppress("ack", "old"),
    )


def _config(**extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "imap": {"host": "127.0.0.1", "tls": "none", "user": "u", "password": "p"},
        "smtp": {"host": "127.0.0.1", "tls": "none"},
        "queues": {"help": {"address": "help@example.org"}},
        "store": {"path": "/var/lib/mailsvc/x.db"},
    }
    base.update(extra)
    return base


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"spam": {"headers": [{"name": "X-S"}]}}, ("spam.headers.0", "give matches or score_at_least")),
        ({"spam": {"headers": [{"name": "X-S", "matches": "("}]}}, ("spam.headers.0", "matches: not a regular")),
        ({"spam": {"trust": ["spamd"]}}, ("spam.trust.0", "")),
        ({"queues": {"help": {"address": "help@example.org", "senders": {"deny": ["nobody"]}}}},
         ("queues.help.senders.deny.0", "'nobody': give an address, a domain")),
        ({"imap": {"host": "127.0.0.1", "tls": "none", "user": "u", "password": "p", "backlog_age": "soon"}},
         ("imap.backlog_age", "not a duration")),
        ({"imap": {"host": "127.0.0.1", "tls": "none", "user": "u", "password": "p", "backlog": "all"}},
         ("imap.backlog", "")),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(extra: dict[str, object], problem: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(**extra), Path("/"))
    (path, reason), *_ = err.value.problems
    assert path == problem[0] and reason.startswith(problem[1]), (path, reason)


def test_config_defaults_and_null_processed_folder() -> None:
    imap = {"host": "127.0.0.1", "tls": "none", "user": "u", "password": "p", "processed_folder": None,
            "backlog_age": 0}  # fmt: skip
    config = parse_config(_config(imap=imap), Path("/"))
    assert config.imap.processed_folder is None and config.imap.backlog_age == 0.0
    assert (config.imap.junk_folder, config.imap.backlog, config.imap.done_keyword) == ("Junk", "file", "$MailsvcDone")
    assert config.spam.trust == ("spamassassin", "rspamd") and config.queues["help"].senders.others == "refuse"
