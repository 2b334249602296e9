from datetime import timedelta

from mailsvc.guard import MailFacts, automatic_recipients, guard_automatic
from mailsvc.model import (
    Address,
    FileMessage,
    MessageKind,
    QueueMail,
    SetTimer,
    Suppress,
    TimerKind,
)
from tests.unit.factories import T0

ALICE = Address("alice@example.net", "Alice Example")
DAVE = Address("dave@example.net")
BOB = Address("bob@example.org", "Bob Staff")
ACK = QueueMail("ack", "ack", (ALICE,))
BOUNCING = MailFacts(bouncing=frozenset({"alice@example.net"}))


def test_mail_to_a_bouncing_address_is_suppressed() -> None:
    assert guard_automatic([ACK], BOUNCING, 5) == (Suppress("ack", "alice@example.net is bouncing"),)


def test_bouncing_is_matched_without_regard_to_case() -> None:
    shouting = QueueMail("ack", "ack", (Address("Alice@Example.NET"),))
    assert guard_automatic([shouting], BOUNCING, 5) == (Suppress("ack", "Alice@Example.NET is bouncing"),)


def test_recipients_left_keep_the_mail_with_its_text_and_attachments() -> None:
    reminder = QueueMail("reminder", "reminder", (ALICE, DAVE), text="Still stuck?", attach=True)
    assert guard_automatic([reminder], BOUNCING, 5) == (
        QueueMail("reminder", "reminder", (DAVE,), text="Still stuck?", attach=True),
        Suppress("reminder", "alice@example.net is bouncing"),
    )


def test_limit_counts_mail_sent_in_the_last_hour() -> None:
    assert guard_automatic([ACK], MailFacts(recent={"alice@example.net": 4}), 5) == (ACK,)
    assert guard_automatic([ACK], MailFacts(recent={"alice@example.net": 5}), 5) == (
        Suppress("ack", "rate limit: 5 automatic mails to alice@example.net in the last hour"),
    )


def test_limit_counts_mail_earlier_in_the_same_actions() -> None:
    reminder = QueueMail("reminder", "reminder", (ALICE,))
    resolved = QueueMail("auto_resolved", "auto_resolved", (ALICE,))
    facts = MailFacts(recent={"alice@example.net": 1})
    assert guard_automatic([ACK, reminder, resolved], facts, 2) == (
        ACK,
        Suppress("reminder", "rate limit: 2 automatic mails to alice@example.net in the last hour"),
        Suppress("auto_resolved", "rate limit: 2 automatic mails to alice@example.net in the last hour"),
    )


def test_limit_is_per_address() -> None:
    to_both = QueueMail("reminder", "reminder", (ALICE, DAVE))
    facts = MailFacts(recent={"alice@example.net": 3})
    assert guard_automatic([to_both], facts, 3) == (
        QueueMail("reminder", "reminder", (DAVE,)),
        Suppress("reminder", "rate limit: 3 automatic mails to alice@example.net in the last hour"),
    )


def test_mail_a_human_wrote_or_to_staff_is_never_held_back() -> None:
    actions = (
        FileMessage(MessageKind.STAFF_REPLY),
        QueueMail("relay", "relay", (ALICE,), text="Fixed."),
        QueueMail("resolved", "resolved", (ALICE,)),
        QueueMail("notify", "notify", (BOB,)),
        SetTimer(TimerKind.CLOSE, T0 + timedelta(days=7)),
    )
    facts = MailFacts(bouncing=frozenset({"alice@example.net", "bob@example.org"}), recent={"alice@example.net": 9})
    assert guard_automatic(actions, facts, 1) == actions


def test_mail_a_human_wrote_does_not_count_towards_the_limit() -> None:
    relay = QueueMail("relay", "relay", (ALICE,), text="Fixed.")
    assert guard_automatic([relay, relay, ACK], MailFacts(), 1) == (relay, relay, ACK)


def test_automatic_recipients_are_the_keys_of_automatic_mail_only() -> None:
    actions = [
        QueueMail("ack", "ack", (Address("Alice@Example.net"),)),
        QueueMail("reminder", "reminder", (DAVE,)),
        QueueMail("notify", "notify", (BOB,)),
    ]
    assert automatic_recipients(actions) == {"alice@example.net", "dave@example.net"}


UNVERIFIED = MailFacts(unverified=frozenset({"alice@example.net"}))


def test_automatic_mail_to_an_unverified_requester_is_suppressed() -> None:
    reminder = QueueMail("reminder", "reminder", (ALICE, DAVE))
    assert guard_automatic([reminder], UNVERIFIED, 5) == (
        QueueMail("reminder", "reminder", (DAVE,)),
        Suppress("reminder", "sender not verified: alice@example.net"),
    )


def test_mail_people_wrote_goes_to_an_unverified_requester() -> None:
    relay = QueueMail("relay", "relay", (ALICE,), text="Try turning it off and on.")
    resolved = QueueMail("resolved", "resolved", (ALICE,))
    assert guard_automatic([relay, resolved], UNVERIFIED, 5) == (relay, resolved)
