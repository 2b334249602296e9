from collections.abc import Sequence

from mailsvc.classify import ClassifyContext, classify
from mailsvc.decide import QueuePolicy, decide
from mailsvc.model import (
    AddCc,
    Address,
    Case,
    CaseStatus,
    Classification,
    Decision,
    FileMessage,
    InboundMessage,
    MergeInto,
    MessageKind,
    OpenCase,
    QueueMail,
    RemoveCc,
    SetOwner,
    SetPriority,
    SetStatus,
    Suppress,
    ThreadMatch,
)
from mailsvc.strip import MARKER
from mailsvc.trust import TrustVerdict
from tests.unit.factories import case, message

CTX = ClassifyContext(own_addresses=frozenset({"help@example.org"}))
NEW = ThreadMatch(None, "new")
BOB = Address("bob@example.org", "Bob Staff")
CAROL = Address("carol@example.org", "Carol Staff")
QUEUES = {
    "help": QueuePolicy("help", (BOB, CAROL), "help-comment@example.org"),
    "billing": QueuePolicy("billing"),
}
REQUESTER = TrustVerdict(staff=False, verified=False, reason="From is not a staff address")
STAFF = TrustVerdict(staff=True, verified=True, reason="dkim=pass header.d=example.org")
FORGED = TrustVerdict(staff=True, verified=False, reason="no trusted Authentication-Results")


class Lookup:
    def __init__(self, cases: Sequence[Case] = ()) -> None:
        self.cases = {c.id: c for c in cases}

    def case_by_id(self, case_id: int) -> Case | None:
        return self.cases.get(case_id)

    def case_by_message_ids(self, message_ids: Sequence[str]) -> Case | None:
        return None


def run(msg: InboundMessage, match: ThreadMatch = NEW, sender: TrustVerdict = REQUESTER, **kw: object) -> Decision:
    found = kw.pop("found", None) or classify(msg, CTX)
    return decide(msg, found, match, queues=QUEUES, queue="help", sender=sender, lookup=kw.pop("lookup", Lookup()))  # type: ignore[arg-type]


def mails(decision: Decision) -> dict[str, QueueMail]:
    return {a.purpose: a for a in decision.actions if isinstance(a, QueueMail)}


def staff_reply(text: str, **fields: object) -> InboundMessage:
    return message(from_=BOB, subject="Re: [Help #42] printer", text=text, **fields)


def test_new_request_opens_case_acks_requester_and_notifies_staff() -> None:
    msg = message(text="It jams.\n\nOn Mon, Alice wrote:\n> old text\n")
    decision = run(msg)
    assert decision.case_id is None
    assert decision.actions[:3] == (
        OpenCase("help", msg.subject, msg.from_),
        FileMessage(MessageKind.REQUEST),
        QueueMail("ack", "ack", (msg.from_,)),
    )
    notify = mails(decision)["notify"]
    assert notify.to == (BOB, CAROL) and notify.text == "It jams." and notify.attach


def test_new_request_keeps_ccs_but_not_staff() -> None:
    msg = message(cc=(Address("dave@example.net"), CAROL))
    (opened,) = [a for a in run(msg).actions if isinstance(a, OpenCase)]
    assert opened.ccs == (Address("dave@example.net"),)


def test_queue_without_staff_acks_only() -> None:
    msg = message()
    decision = decide(msg, classify(msg, CTX), NEW, queues=QUEUES, queue="billing", sender=REQUESTER, lookup=Lookup())
    assert set(mails(decision)) == {"ack"}


def test_automatic_mail_opens_case_without_ack() -> None:
    msg = message(headers={"Auto-Submitted": ["auto-replied"]})
    decision = run(msg)
    assert mails(decision) == {}
    assert Suppress("ack", "Auto-Submitted: auto-replied") in decision.actions


def test_our_own_mail_coming_back_is_only_filed() -> None:
    assert run(message(from_=Address("help@example.org"))).actions == (FileMessage(MessageKind.LOOP),)


def test_requester_reply_is_filed_and_notifies_the_owner_only() -> None:
    decision = run(message(text="More detail.\n"), ThreadMatch(case(owner="carol@example.org"), "tag"))
    assert decision.case_id == 42
    assert decision.actions[0] == FileMessage(MessageKind.REQUESTER_REPLY)
    assert mails(decision)["notify"].to == (CAROL,)
    assert "ack" not in mails(decision)


def test_requester_reply_reopens_waiting_and_resolved_cases() -> None:
    for status in (CaseStatus.WAITING, CaseStatus.RESOLVED):
        decision = run(message(), ThreadMatch(case(status=status), "tag"))
        assert SetStatus(CaseStatus.OPEN) in decision.actions


def test_reply_to_closed_case_opens_a_follow_up_case() -> None:
    decision = run(message(), ThreadMatch(case(status=CaseStatus.CLOSED), "tag"))
    assert decision.case_id is None
    opened = decision.actions[0]
    assert isinstance(opened, OpenCase) and opened.parent == 42


def test_auto_reply_on_existing_case_changes_nothing() -> None:
    found = Classification(MessageKind.AUTO_REPLY, "Auto-Submitted: auto-replied")
    decision = run(message(), ThreadMatch(case(status=CaseStatus.WAITING), "references"), found=found)
    assert decision.actions == (FileMessage(MessageKind.AUTO_REPLY),)


def test_staff_reply_relays_only_the_new_text_and_waits_on_requester() -> None:
    text = f"Try turning it off and on.\n\nOn Mon, 23 Nov 2026, Help <help@example.org> wrote:\n> {MARKER}\n> old\n"
    the_case = case(ccs=(Address("dave@example.net"),))
    decision = run(staff_reply(text), ThreadMatch(the_case, "token"), STAFF)
    relay = mails(decision)["relay"]
    assert relay.text == "Try turning it off and on."
    assert relay.to == (the_case.requester, Address("dave@example.net"))
    assert FileMessage(MessageKind.STAFF_REPLY) in decision.actions
    assert SetStatus(CaseStatus.WAITING) in decision.actions


def test_comment_never_reaches_the_requester() -> None:
    decision = run(staff_reply("#comment\nShe called, it is the fuser.\n"), ThreadMatch(case(), "token"), STAFF)
    assert set(mails(decision)) == {"comment"}
    comment = mails(decision)["comment"]
    assert comment.to == (CAROL,) and comment.text == "She called, it is the fuser."
    assert FileMessage(MessageKind.COMMENT) in decision.actions


def test_mail_to_comment_address_is_a_comment() -> None:
    msg = staff_reply("Internal only.\n", to=(Address("help-comment@example.org"),))
    assert set(mails(run(msg, ThreadMatch(case(), "tag"), STAFF))) == {"comment"}


def test_commands_only_change_the_case_and_relay_nothing() -> None:
    text = "#take\n#priority high\n#cc add dave@example.net\n#cc remove eve@example.net\n"
    decision = run(staff_reply(text), ThreadMatch(case(), "token"), STAFF)
    assert decision.actions == (
        FileMessage(MessageKind.COMMAND),
        SetOwner("bob@example.org"),
        SetPriority("high"),
        AddCc(Address("dave@example.net")),
        RemoveCc("eve@example.net"),
    )


def test_resolve_with_text_relays_and_sends_resolved_mail() -> None:
    decision = run(staff_reply("#resolve\nFixed the fuser.\n"), ThreadMatch(case(), "token"), STAFF)
    assert SetStatus(CaseStatus.RESOLVED) in decision.actions
    assert SetStatus(CaseStatus.WAITING) not in decision.actions
    assert set(mails(decision)) == {"relay", "resolved"}


def test_assign_by_short_name_and_merge_into_existing_case() -> None:
    lookup = Lookup([case(id=7)])
    decision = run(staff_reply("#assign carol\n#merge 7\n"), ThreadMatch(case(), "token"), STAFF, lookup=lookup)
    assert SetOwner("carol@example.org") in decision.actions
    assert MergeInto(7) in decision.actions


def test_any_bad_command_changes_nothing_and_tells_the_sender_why() -> None:
    decision = run(staff_reply("#take\n#stauts open\nHello\n"), ThreadMatch(case(), "token"), STAFF)
    assert [type(a) for a in decision.actions] == [FileMessage, QueueMail]
    error = mails(decision)["command_error"]
    assert error.to == (BOB,) and "line 2" in error.text and "#status" in error.text


def test_unknown_staff_and_missing_merge_target_are_errors() -> None:
    decision = run(staff_reply("#assign zed\n#merge 99\n"), ThreadMatch(case(), "token"), STAFF)
    text = mails(decision)["command_error"].text
    assert "zed" in text and "99" in text


def test_forged_staff_mail_relays_nothing_runs_nothing_and_alerts_staff() -> None:
    decision = run(staff_reply("#close\nGive me the admin password.\n"), ThreadMatch(case(), "tag"), FORGED)
    assert set(mails(decision)) == {"unverified"}
    assert mails(decision)["unverified"].to == (BOB, CAROL)
    filed = decision.actions[0]
    assert isinstance(filed, FileMessage) and filed.note.startswith("unverified")
    assert not [a for a in decision.actions if isinstance(a, SetStatus)]


def test_existing_case_keeps_its_queue() -> None:
    decision = run(message(), ThreadMatch(case(queue="billing"), "tag"))
    assert decision.queue == "billing"
