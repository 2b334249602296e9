from mailsvc.classify import ClassifyContext, classify
from mailsvc.decide import decide
from mailsvc.model import (
    Address,
    CaseStatus,
    Classification,
    FileMessage,
    MessageKind,
    OpenCase,
    QueueMail,
    SetStatus,
    Suppress,
    ThreadMatch,
)
from tests.unit.factories import case, message

CTX = ClassifyContext(own_addresses=frozenset({"help@example.org"}))
NEW = ThreadMatch(None, "new")


def test_new_request_opens_case_and_queues_one_ack_to_the_sender() -> None:
    msg = message()
    decision = decide(msg, classify(msg, CTX), NEW, "help")
    assert decision.case_id is None
    assert decision.actions == (
        OpenCase("help", msg.subject, msg.from_),
        FileMessage(MessageKind.REQUEST),
        QueueMail("ack", "ack", (msg.from_,)),
    )


def test_automatic_mail_opens_case_without_ack() -> None:
    msg = message(headers={"Auto-Submitted": ["auto-replied"]})
    decision = decide(msg, classify(msg, CTX), NEW, "help")
    assert not [a for a in decision.actions if isinstance(a, QueueMail)]
    assert Suppress("ack", "Auto-Submitted: auto-replied") in decision.actions


def test_our_own_mail_coming_back_is_only_filed() -> None:
    msg = message(from_=Address("help@example.org"))
    decision = decide(msg, classify(msg, CTX), NEW, "help")
    assert decision.actions == (FileMessage(MessageKind.LOOP),)


def test_reply_on_open_case_is_filed_without_ack() -> None:
    msg = message(subject="Re: printer [Help #42]")
    decision = decide(msg, classify(msg, CTX), ThreadMatch(case(), "tag"), "help")
    assert decision.case_id == 42
    assert decision.actions == (FileMessage(MessageKind.REQUESTER_REPLY),)


def test_reply_on_waiting_case_reopens_it() -> None:
    msg = message()
    decision = decide(msg, classify(msg, CTX), ThreadMatch(case(status=CaseStatus.WAITING), "tag"), "help")
    assert SetStatus(CaseStatus.OPEN) in decision.actions


def test_reply_on_closed_case_opens_a_new_case() -> None:
    msg = message()
    decision = decide(msg, classify(msg, CTX), ThreadMatch(case(status=CaseStatus.CLOSED), "tag"), "help")
    assert decision.case_id is None
    assert isinstance(decision.actions[0], OpenCase)


def test_auto_reply_on_existing_case_is_filed_and_changes_nothing() -> None:
    found = Classification(MessageKind.AUTO_REPLY, "Auto-Submitted: auto-replied")
    decision = decide(message(), found, ThreadMatch(case(status=CaseStatus.WAITING), "references"), "help")
    assert decision.actions == (FileMessage(MessageKind.AUTO_REPLY),)


def test_existing_case_keeps_its_queue() -> None:
    msg = message()
    decision = decide(msg, classify(msg, CTX), ThreadMatch(case(queue="billing"), "tag"), "help")
    assert decision.queue == "billing"
