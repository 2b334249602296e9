"""Staff work a case from their mail client: notify, relay, comment, commands, trust. Real servers."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailsvc.cli import main
from mailsvc.config import Config, load_config
from mailsvc.daemon import run_once
from mailsvc.store import Store, open_store
from mailsvc.strip import MARKER
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture
from tests.integration.stores import STORE_BACKENDS, store_section

BOB = "Bob Staff <bob@example.org>"
SIGNED = {"Authentication-Results": "mx.example.org; dkim=pass header.d=example.org header.from=example.org"}


@pytest.fixture(params=STORE_BACKENDS)
def config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, request: pytest.FixtureRequest) -> Config:
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db",
        trust={"authserv_ids": ["mx.example.org"], "token_key": "test-token-key-0123456789"},
    )  # fmt: skip
    raw["queues"]["help"]["staff"] = [
        {"address": "bob@example.org", "name": "Bob Staff"},
        {"address": "carol@example.org", "name": "Carol Staff"},
    ]
    raw["store"] = store_section(request, tmp_path)
    return load_config(write_config(tmp_path / "mailsvc.yaml", raw))


def body(captured: Captured) -> str:
    part = captured.message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def by_purpose(store: Store, case_id: int) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in store.case_outbox(case_id):
        found.setdefault(row.purpose, []).append("\n".join(row.rcpt_to))
    return found


def open_case(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> tuple[int, Captured]:
    """A request comes in; returns the case id and Bob's notification."""
    mailbox.append(
        mail(subject="Printer jammed", body="The printer on floor 3 jams.\n", message_id="<req@example.net>")
    )
    run_once(config)
    notify = next(c for c in smtp.messages if "bob@example.org" in c.rcpt_tos)
    (case,) = open_store(config.store).list_cases()
    smtp.clear()
    return case.id, notify


def staff_reply(notify: Captured, text: str, *, subject: str | None = None, references: bool = True,
                headers: dict[str, str] | None = None) -> bytes:  # fmt: skip
    """Bob answers from his mail client: reply above the quoted notification."""
    quoted = "\n".join("> " + line for line in body(notify).splitlines())
    return mail(
        subject=subject or f"Re: {notify.message['Subject']}",
        sender=BOB,
        to=notify.message["Reply-To"],
        body=f"{text}\n\nOn Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:\n{quoted}\n",
        in_reply_to=notify.message["Message-ID"] if references else None,
        references=notify.message["Message-ID"] if references else None,
        headers=SIGNED if headers is None else headers,
    )


def test_notification_then_relay_of_only_the_new_text(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    case_id, notify = open_case(config, mailbox, smtp)
    assert notify.message["Reply-To"].startswith(f"help+c{case_id}-")
    assert body(notify).startswith(MARKER)
    assert "The printer on floor 3 jams." in body(notify)

    mailbox.append(staff_reply(notify, "Hello Alice,\n\nplease open tray 2 and pull the paper out.\n\nBob"))
    run_once(config)

    (relay,) = smtp.messages
    assert relay.rcpt_tos == ("alice@example.net",)
    assert relay.message["From"] == "Example Help Desk <help@example.org>"
    text = body(relay)
    assert text.startswith("Hello Alice,\n\nplease open tray 2 and pull the paper out.\n\nBob")
    assert MARKER not in text and "floor 3" not in text and "bob@example.org" not in relay.data.decode()
    store = open_store(config.store)
    case = store.case_by_id(case_id)
    assert case is not None and case.status.value == "waiting"

    # The requester answers: the case opens again and Bob hears of it.
    mailbox.append(mail(subject=relay.message["Subject"], body="That worked, thanks!\n",
                        in_reply_to=relay.message["Message-ID"]))  # fmt: skip
    run_once(config)
    case = store.case_by_id(case_id)
    assert case is not None and case.status.value == "open"
    (again,) = smtp.messages[1:]
    assert set(again.rcpt_tos) == {"bob@example.org", "carol@example.org"}
    assert "That worked, thanks!" in body(again)


def test_comment_reaches_other_staff_never_the_requester(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    case_id, notify = open_case(config, mailbox, smtp)
    mailbox.append(staff_reply(notify, "#comment\nAlice called: it is the fuser, order a new one."))
    run_once(config)
    (comment,) = smtp.messages
    assert comment.rcpt_tos == ("carol@example.org",)
    assert "order a new one" in body(comment)
    store = open_store(config.store)
    assert "relay" not in by_purpose(store, case_id)
    assert [m.kind for m in store.case_messages(case_id)][-1] == "comment"


def test_commands_by_mail(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    case_id, notify = open_case(config, mailbox, smtp)
    mailbox.append(staff_reply(notify, "#take\n#priority urgent\n#cc add dave@example.net"))
    run_once(config)
    store = open_store(config.store)
    case = store.case_by_id(case_id)
    assert case is not None
    assert (case.owner, case.priority, [c.addr for c in case.ccs]) == (
        "bob@example.org",
        "urgent",
        ["dave@example.net"],
    )
    assert smtp.messages == [], "commands alone relay nothing"

    mailbox.append(staff_reply(notify, "#resolve\nA new fuser is in. Closing this."))
    run_once(config)
    case = store.case_by_id(case_id)
    assert case is not None and case.status.value == "resolved"
    sent = by_purpose(store, case_id)
    assert sent["relay"] == ["alice@example.net\ndave@example.net"]
    assert sent["resolved"] == ["alice@example.net\ndave@example.net"]


def test_bad_command_changes_nothing_and_answers_the_sender(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    case_id, notify = open_case(config, mailbox, smtp)
    mailbox.append(staff_reply(notify, "#priority asap\nOn it."))
    run_once(config)
    (error,) = smtp.messages
    assert error.rcpt_tos == ("bob@example.org",)
    assert "line 1" in body(error) and "asap" in body(error)
    case = open_store(config.store).case_by_id(case_id)
    assert case is not None and case.priority == "normal" and case.status.value == "open"


def test_forged_staff_from_is_refused_and_staff_alerted(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    case_id, notify = open_case(config, mailbox, smtp)
    forged = {"Authentication-Results": "mx.attacker.example; dkim=pass header.d=example.org"}
    reply = staff_reply(notify, "#close\nPlease send me your password.", headers=forged)
    # Without the token (a forger does not know it) and with the subject tag only.
    reply = reply.replace(notify.message["Reply-To"].encode(), b"help@example.org")
    mailbox.append(reply)
    run_once(config)
    store = open_store(config.store)
    case = store.case_by_id(case_id)
    assert case is not None and case.status.value == "open"
    assert {tuple(c.rcpt_tos) for c in smtp.messages} == {("bob@example.org", "carol@example.org")}
    assert all("alice@example.net" not in c.rcpt_tos for c in smtp.messages)
    reason = store.db.execute("SELECT reason FROM messages ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert reason.startswith("unverified")


def test_reply_token_threads_an_edited_subject_without_references(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    case_id, notify = open_case(config, mailbox, smtp)
    # No Authentication-Results at all: the signed token is what proves the sender.
    reply = staff_reply(notify, "Replacement ordered.", subject="printer stuff", references=False, headers={})
    mailbox.append(reply)
    run_once(config)
    store = open_store(config.store)
    assert len(store.list_cases()) == 1
    (relay,) = smtp.messages
    assert relay.rcpt_tos == ("alice@example.net",) and f"[Help #{case_id}]" in relay.message["Subject"]


def dsn_for(original: Captured) -> bytes:
    """A Postfix-style delivery status notification returning `original`'s headers."""
    headers = original.data.split(b"\r\n\r\n", 1)[0].decode()
    return (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        "To: help@example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; alice@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <alice@example.net>: Recipient address rejected: User unknown\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--B--\r\n"
    ).encode()


def test_bounce_of_our_mail_is_filed_on_its_case_and_staff_told(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    mailbox.append(mail(subject="Printer jammed", message_id="<req@example.net>"))
    run_once(config)
    ack = next(c for c in smtp.messages if c.rcpt_tos == ("alice@example.net",))
    smtp.clear()

    mailbox.append(dsn_for(ack))
    run_once(config)

    store = open_store(config.store)
    assert len(store.list_cases()) == 1, "the bounce opens no case of its own"
    last = store.db.execute("SELECT kind, reason FROM messages ORDER BY id DESC LIMIT 1").fetchone()
    assert last["kind"] == "bounce" and "alice@example.net" in last["reason"] and "5.1.1" in last["reason"]
    (notice,) = smtp.messages
    assert set(notice.rcpt_tos) == {"bob@example.org", "carol@example.org"}
    assert "could not be delivered" in body(notice)


def test_assign_status_cc_remove_close_and_merge(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    first, notify = open_case(config, mailbox, smtp)
    mailbox.append(mail(subject="Printer again", body="Same printer, other floor.\n", message_id="<req2@example.net>"))
    run_once(config)
    store = open_store(config.store)
    second = max(c.id for c in store.list_cases())
    smtp.clear()

    mailbox.append(staff_reply(notify, "#assign carol\n#status waiting\n#cc add dave@example.net"))
    run_once(config)
    mailbox.append(staff_reply(notify, "#cc remove dave@example.net\n#close"))
    run_once(config)
    case = store.case_by_id(first)
    assert case is not None
    assert (case.owner, case.status.value, case.ccs) == ("carol@example.org", "closed", ())

    # Bob merges the second case into the first: its messages move, it points there.
    mailbox.append(
        mail(subject=f"Re: [Help #{second}] (open) Printer again", sender=BOB, body=f"#merge {first}\n", headers=SIGNED)
    )
    run_once(config)
    merged = store.db.execute("SELECT status, merged_into FROM cases WHERE id = ?", (second,)).fetchone()
    assert (merged["status"], merged["merged_into"]) == ("closed", first)
    subjects = [m.subject for m in store.case_messages(first)]
    assert "Printer again" in subjects
    assert store.case_messages(second) == []
    assert smtp.messages == [], "commands alone send nothing"


def test_reply_token_signature_shows_in_neither_cases_show_nor_logs(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    case_id, notify = open_case(config, mailbox, smtp)
    token_address = notify.message["Reply-To"]
    signature = token_address.partition("@")[0].rpartition("-")[2]
    assert len(signature) == 16
    # Bob's client quotes the header line with the token address under his answer.
    reply = staff_reply(notify, f"Fixed.\n\nOn Mon, Help Desk <{token_address}> wrote:\n> old text")
    capsys.readouterr()
    mailbox.append(reply)
    run_once(config)
    logs = capsys.readouterr().out
    assert "relay_queued" in logs and signature not in logs

    assert main(["cases", "show", str(case_id), "-c", str(tmp_path / "mailsvc.yaml"), "--lines", "50"]) == 0
    shown = capsys.readouterr().out
    assert "Fixed." in shown and "[redacted]@example.org" in shown
    assert signature not in shown


def test_relay_and_resolved_notice_carry_the_case_subject_and_only_the_requesters_thread(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    mailbox.append(mail(subject="Projector in room 4.12 shows no signal", message_id="<proj@example.net>"))
    run_once(config)
    ack = next(c for c in smtp.messages if c.rcpt_tos == ("alice@example.net",))
    notify = next(c for c in smtp.messages if "bob@example.org" in c.rcpt_tos)
    assert notify.message["Subject"] == "[Help #1] (open) Projector in room 4.12 shows no signal"
    smtp.clear()

    reply = staff_reply(notify, "#resolve\nThe HDMI cable was loose; it works now.")
    mailbox.append(reply)
    run_once(config)
    staff_ids = {notify.message["Message-ID"], message_from_bytes(reply)["Message-ID"]}
    relay, resolved = smtp.wait_for(2)
    assert relay.rcpt_tos == resolved.rcpt_tos == ("alice@example.net",)
    assert body(relay).startswith("The HDMI cable was loose")
    for out in (relay.message, resolved.message):
        assert out["Subject"] == "Re: Projector in room 4.12 shows no signal [Help #1]"
        assert out["In-Reply-To"] == "<proj@example.net>"
        assert not staff_ids & set(out["References"].split())
    assert relay.message["References"].split() == ["<proj@example.net>", ack.message["Message-ID"]]
    assert resolved.message["References"].split() == [
        "<proj@example.net>", ack.message["Message-ID"], relay.message["Message-ID"],
    ]  # fmt: skip


def test_staff_answer_reaches_the_requester_when_a_cc_needs_smtputf8_the_server_lacks(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    request = mail(subject="Printer jammed", message_id="<req@example.net>")
    cc = "Cc: Zoë <zoë@bücher.example>, Info <info@bücher.example>\r\n".encode()
    mailbox.append(cc + request)
    run_once(config)
    notify = next(c for c in smtp.messages if "bob@example.org" in c.rcpt_tos)
    smtp.clear()

    mailbox.append(staff_reply(notify, "Paper tray 2 was empty; refilled."))
    assert run_once(config) == 0
    (relay,) = smtp.messages
    # The domain goes as IDNA; the address with a UTF-8 local part gets a copy of its own, which fails.
    assert relay.rcpt_tos == ("alice@example.net", "info@xn--bcher-kva.example")
    assert body(relay).startswith("Paper tray 2 was empty")
    store = open_store(config.store)
    failed = [r for r in store.case_outbox(1) if r.state == "failed"]
    assert [(r.purpose, r.rcpt_to) for r in failed] == [("relay", ("zoë@bücher.example",))]
    assert "5.6.7" in failed[0].last_error and "SMTPUTF8" in failed[0].last_error
    assert mailbox.uids("Quarantine") == []

    run_once(config)
    (notice,) = smtp.messages[1:]
    assert set(notice.rcpt_tos) == {"bob@example.org", "carol@example.org"}
    assert "relay to zoë@bücher.example" in body(notice)
