from collections.abc import Sequence

from mailsvc.classify import ClassifyContext, classify
from mailsvc.decide import QueuePolicy, decide, decide_send_failure
from mailsvc.model import (
    AddCc,
    Address,
    Case,
    CaseStatus,
    Classification,
    ClearAutomatic,
    ClearBouncing,
    Decision,
    FileMessage,
    InboundMessage,
    MarkBouncing,
    MergeInto,
    MessageKind,
    OpenCase,
    QueueMail,
    RecordSatisfaction,
    RemoveCc,
    SetOwner,
    SetPriority,
    SetStatus,
    Suppress,
    ThreadMatch,
)
from mailsvc.strip import MARKER
from mailsvc.thread import compile_tag
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

    def cases_by_message_ids(self, message_ids: Sequence[str]) -> dict[str, Case]:
        return {}


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


def test_automatic_mail_that_threads_nowhere_opens_an_automatic_case_staff_are_told() -> None:
    msg = message(headers={"Auto-Submitted": ["auto-replied"]}, text="I am out of office until Monday.")
    decision = run(msg)
    assert decision.actions[0] == OpenCase("help", msg.subject, msg.from_, automatic=True)
    assert Suppress("ack", "Auto-Submitted: auto-replied") in decision.actions
    assert set(mails(decision)) == {"notify"}
    notify = mails(decision)["notify"]
    assert notify.to == (BOB, CAROL)
    assert notify.text.startswith("Automatic mail (Auto-Submitted: auto-replied) that belongs to no case")
    assert "out of office until Monday" in notify.text


def test_automatic_mail_to_a_queue_without_staff_tells_no_one_and_says_why() -> None:
    msg = message(headers={"List-Id": ["<announce.example.net>"]})
    decision = decide(msg, classify(msg, CTX), NEW, queues=QUEUES, queue="billing", sender=REQUESTER, lookup=Lookup())
    assert mails(decision) == {} and Suppress("notify", "the queue has no staff") in decision.actions


def test_a_person_writing_on_an_automatic_case_clears_the_mark() -> None:
    auto = ThreadMatch(case(automatic=True), "tag")
    assert ClearAutomatic() in run(message(subject="Re: [Help #42]"), auto).actions
    assert ClearAutomatic() not in run(message(subject="Re: [Help #42]"), ThreadMatch(case(), "tag")).actions
    more_auto = message(headers={"Auto-Submitted": ["auto-replied"]})
    assert ClearAutomatic() not in run(more_auto, auto).actions


def test_a_new_request_opens_a_case_not_marked_automatic() -> None:
    assert run(message()).actions[0] == OpenCase("help", "Printer on floor 3 is jammed", message().from_)


def test_a_follow_up_case_subject_has_no_old_tag_and_no_reply_prefix() -> None:
    queues = {"help": QueuePolicy("help", (BOB,), tag=compile_tag("[Help #{id}]"))}
    msg = message(subject="AW: Re: Docking station no video [Help #15] [Help #16]")
    closed = ThreadMatch(case(id=16, status=CaseStatus.CLOSED), "tag")
    decision = decide(msg, classify(msg, CTX), closed, queues=queues, queue="help", sender=REQUESTER, lookup=Lookup())
    assert decision.actions[0] == OpenCase("help", "Docking station no video", msg.from_, parent=16)


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


# --- satisfaction answers, bouncing recipients, failed mail


def rating_reply(text: str, subject: str = "Re: [Help #42] Printer on floor 3 is jammed") -> InboundMessage:
    return message(subject=subject, text=text)


def test_rating_on_a_resolved_case_is_recorded_and_does_not_reopen() -> None:
    msg = rating_reply("5\n\nOn Mon, 23 Nov 2026, Help <help@example.org> wrote:\n> Was your problem solved?\n")
    decision = run(msg, ThreadMatch(case(status=CaseStatus.RESOLVED), "tag"))
    assert decision.case_id == 42
    assert decision.actions == (
        FileMessage(MessageKind.REQUESTER_REPLY, note="satisfaction 5"),
        RecordSatisfaction(5, "5"),
        ClearBouncing("alice@example.net"),
    )


def test_rating_with_a_remark_tells_staff() -> None:
    decision = run(rating_reply("bad\nStill jams on page 2.\n"), ThreadMatch(case(status=CaseStatus.RESOLVED), "tag"))
    assert decision.actions == (
        FileMessage(MessageKind.REQUESTER_REPLY, note="satisfaction 1"),
        RecordSatisfaction(1, "bad"),
        QueueMail("notify", "notify", (BOB, CAROL), text="Rated 1/5: Still jams on page 2."),
        ClearBouncing("alice@example.net"),
    )


def test_rating_on_a_closed_case_is_recorded_without_a_new_case() -> None:
    decision = run(rating_reply("", subject="Rating: 4 [Help #42]"), ThreadMatch(case(status=CaseStatus.CLOSED), "tag"))
    assert decision.case_id == 42
    assert decision.actions == (
        FileMessage(MessageKind.REQUESTER_REPLY, note="satisfaction 4"),
        RecordSatisfaction(4, "4"),
        ClearBouncing("alice@example.net"),
    )


def test_a_reply_that_is_no_rating_still_reopens_a_resolved_case() -> None:
    decision = run(rating_reply("2 printers are down now.\n"), ThreadMatch(case(status=CaseStatus.RESOLVED), "tag"))
    assert SetStatus(CaseStatus.OPEN) in decision.actions
    assert not [a for a in decision.actions if isinstance(a, RecordSatisfaction)]


def test_a_rating_like_word_in_the_case_subject_is_no_rating() -> None:
    the_case = case(status=CaseStatus.RESOLVED, subject="Fire rating 2 doors need inspection")
    msg = rating_reply(
        "The doors are still not inspected.\n", subject="Re: Fire rating 2 doors need inspection [Help #42]"
    )
    decision = run(msg, ThreadMatch(the_case, "tag"))
    assert SetStatus(CaseStatus.OPEN) in decision.actions
    assert not [a for a in decision.actions if isinstance(a, RecordSatisfaction)]


def test_a_rating_on_an_open_case_is_an_ordinary_reply() -> None:
    decision = run(rating_reply("5\n"), ThreadMatch(case(), "tag"))
    assert decision.actions[0] == FileMessage(MessageKind.REQUESTER_REPLY)
    assert not [a for a in decision.actions if isinstance(a, RecordSatisfaction)]


def test_hard_bounce_marks_the_recipients_bouncing_and_tells_staff() -> None:
    reason = "550 5.1.1 <alice@example.net>: user unknown"
    found = Classification(MessageKind.BOUNCE, reason, bounced=("alice@example.net",))
    msg = message(from_=Address("MAILER-DAEMON@mx.example.net"), subject="Undelivered Mail Returned to Sender")
    decision = run(msg, ThreadMatch(case(status=CaseStatus.WAITING), "references"), found=found)
    assert decision.actions == (
        FileMessage(MessageKind.BOUNCE, note=reason),
        MarkBouncing(("alice@example.net",), reason),
        QueueMail("bounce_notice", "bounce_notice", (BOB, CAROL), text=reason),
    )


def test_bounce_naming_no_recipient_marks_nobody() -> None:
    found = Classification(MessageKind.BOUNCE, "delivery status notification")
    msg = message(from_=Address("MAILER-DAEMON@mx.example.net"))
    decision = run(msg, ThreadMatch(case(), "references"), found=found)
    assert not [a for a in decision.actions if isinstance(a, MarkBouncing | ClearBouncing)]


def test_requester_mail_clears_bouncing_last() -> None:
    reply = run(message(from_=Address("Alice@Example.NET")), ThreadMatch(case(), "tag"))
    assert reply.actions[-1] == ClearBouncing("alice@example.net")
    assert [a for a in reply.actions if isinstance(a, ClearBouncing)] == [ClearBouncing("alice@example.net")]
    request = run(message())
    assert request.actions[-1] == ClearBouncing("alice@example.net")


def test_staff_and_automatic_mail_clear_nothing() -> None:
    staff = run(staff_reply("Try again.\n"), ThreadMatch(case(), "token"), STAFF)
    auto = run(message(headers={"Auto-Submitted": ["auto-replied"]}), ThreadMatch(case(), "tag"))
    new_auto = run(message(headers={"Auto-Submitted": ["auto-replied"]}))
    for decision in (staff, auto, new_auto):
        assert not [a for a in decision.actions if isinstance(a, ClearBouncing)]


def test_failed_mail_to_the_requester_is_reported_to_staff() -> None:
    error = "550 5.1.1 no such user"
    assert decide_send_failure(case(), QUEUES["help"], "ack", "alice@example.net", error) == (
        QueueMail("send_failed", "send_failed", (BOB, CAROL), text="ack to alice@example.net: 550 5.1.1 no such user"),
    )
    owned = case(owner="carol@example.org")
    assert decide_send_failure(owned, QUEUES["help"], "relay", "alice@example.net", error) == (
        QueueMail("send_failed", "send_failed", (CAROL,), text="relay to alice@example.net: 550 5.1.1 no such user"),
    )


def test_failed_mail_to_staff_is_not_reported_by_more_mail() -> None:
    assert decide_send_failure(case(), QUEUES["help"], "notify", "bob@example.org", "550 mailbox full") == (
        Suppress("send_failed", "the failed mail (notify) was itself to staff"),
    )
    assert decide_send_failure(case(queue="billing"), QUEUES["billing"], "ack", "alice@example.net", "550") == (
        Suppress("send_failed", "the queue has no staff"),
    )


def test_bounce_that_threads_nowhere_still_marks_the_address() -> None:
    reason = "550 5.1.1 <gone@example.net>: user unknown"
    found = Classification(MessageKind.BOUNCE, reason, bounced=("gone@example.net",))
    decision = run(message(from_=Address("MAILER-DAEMON@mx.example.net")), found=found)
    assert MarkBouncing(("gone@example.net",), reason) in decision.actions
    assert set(mails(decision)) == {"notify"}, "staff hear of it; nothing goes to the daemon"
