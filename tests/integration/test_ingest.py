"""A request mailed in becomes a case and is acknowledged: real Dovecot, real SMTP, real store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailsvc.cli import main
from mailsvc.config import Config, parse_config
from mailsvc.daemon import run_once
from mailsvc.imap import ImapSource
from mailsvc.ingest import Outcome, Pipeline
from mailsvc.model import InboundMessage, MailRef
from mailsvc.parse import parse_message
from mailsvc.store import Store, open_store
from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture
from tests.integration.stores import STORE_BACKENDS, store_section


@pytest.fixture(params=STORE_BACKENDS)
def config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, request: pytest.FixtureRequest) -> Config:
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db",
    )  # fmt: skip
    raw["store"] = store_section(request, tmp_path)
    return parse_config(raw, tmp_path)


def wait_until(holds: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not holds():
        assert time.monotonic() < deadline, f"no {what} in {timeout}s"
        time.sleep(0.02)


def store_of(config: Config) -> Store:
    return open_store(config.store)


def test_request_becomes_case_and_is_acknowledged_once(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    request = mail(subject="VPN drops every hour", message_id="<req-1@example.net>")
    mailbox.append(request)

    assert run_once(config) == 0

    store = store_of(config)
    (case,) = store.list_cases()
    assert case.subject == "VPN drops every hour" and case.requester.addr == "alice@example.net"
    (message,) = store.case_messages(case.id)
    assert message.kind == "request" and message.message_id == "<req-1@example.net>"
    stored_raw = store.db.execute("SELECT raw FROM messages WHERE id = ?", (message.id,)).fetchone()[0]
    assert stored_raw.replace(b"\r\n", b"\n") == request.replace(b"\r\n", b"\n")
    (out,) = store.case_outbox(case.id)
    assert (out.purpose, out.state, out.attempts) == ("ack", "sent", 1)

    assert mailbox.uids("INBOX") == []
    assert len(mailbox.uids("Processed")) == 1

    (ack,) = smtp.messages
    assert ack.mail_from == "help@example.org" and ack.rcpt_tos == ("alice@example.net",)
    msg = ack.message
    assert msg["Subject"] == f"Re: VPN drops every hour [Help #{case.id}]"
    assert msg["From"] == "Example Help Desk <help@example.org>"
    assert msg["In-Reply-To"] == "<req-1@example.net>"
    assert msg["Message-ID"] == out.message_id
    assert msg["Auto-Submitted"] == "auto-replied"
    body = msg.get_body(("plain",))
    assert isinstance(body, EmailMessage) and f"[Help #{case.id}]" in body.get_content()
    assert msg.get_body(("html",)) is not None

    # Exactly once: another pass, and a restart, change nothing.
    assert run_once(config) == 0
    assert store.counts() == {"cases": 1, "messages_filed": 1, "outbox_sent": 1}
    assert len(smtp.messages) == 1


def test_replies_thread_by_tag_and_by_references(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    mailbox.append(mail(subject="Laptop will not boot", message_id="<boot-1@example.net>"))
    run_once(config)
    (ack,) = smtp.messages
    ack_id = ack.message["Message-ID"]
    tag_subject = ack.message["Subject"]

    mailbox.append(mail(subject=f"RE: {tag_subject}", body="It shows a blinking cursor.\n"))
    # A client that drops the tag from the subject but keeps References.
    mailbox.append(mail(subject="Still broken", in_reply_to=ack_id, references=f"<boot-1@example.net> {ack_id}"))
    run_once(config)

    store = store_of(config)
    (case,) = store.list_cases()
    kinds = [m.kind for m in store.case_messages(case.id)]
    assert kinds == ["request", "requester_reply", "requester_reply"]
    assert len(smtp.messages) == 1, "replies get no second acknowledgement"


def test_automatic_mail_gets_no_acknowledgement(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    mailbox.append(mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"}))
    mailbox.append(mail(subject="Newsletter", sender="news@shop.example", headers={"Precedence": "bulk"}))
    mailbox.append(mail(subject="Echo", sender="Help <help@example.org>"))
    run_once(config)

    store = store_of(config)
    assert smtp.messages == []
    assert store.counts()["messages_filed"] == 3
    assert len(store.list_cases()) == 2, "auto mail is kept on a case; our own echo opens none"
    assert len(mailbox.uids("Processed")) == 3


def test_bad_mail_is_quarantined_and_the_rest_goes_on(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    mailbox.append(b"Subject: no sender at all\r\n\r\nwho wrote this?\r\n")
    mailbox.append(mail(subject="A real request"))
    assert run_once(config) == 0

    store = store_of(config)
    counts = store.counts()
    assert counts["messages_quarantined"] == 1 and counts["messages_filed"] == 1
    reason = store.db.execute("SELECT reason FROM messages WHERE state = 'quarantined'").fetchone()[0]
    assert reason == "no_sender"
    assert len(mailbox.uids("Quarantine")) == 1 and len(mailbox.uids("Processed")) == 1
    assert len(smtp.messages) == 1


def test_crash_between_commit_and_move_neither_loses_nor_duplicates(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailbox.append(mail(subject="Committed but not moved"))

    def connection_lost(self: ImapSource, uids: list[int], folder: str) -> None:
        raise OSError("connection reset by peer")

    with monkeypatch.context() as patch:
        patch.setattr(ImapSource, "move", connection_lost)
        assert run_once(config) == 1
    assert mailbox.uids("INBOX") != [], "the server copy stays until it can be moved"

    assert run_once(config) == 0
    store = store_of(config)
    assert store.counts()["cases"] == 1
    assert mailbox.uids("INBOX") == [] and len(mailbox.uids("Processed")) == 1
    assert len(smtp.messages) == 1


def test_same_mail_delivered_twice_is_filed_once(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    request = mail(subject="Delivered twice", message_id="<twice@example.net>")
    mailbox.append(request)
    run_once(config)
    # The same mail again under a new UID (a second delivery, or a rebuilt mailbox).
    mailbox.append(b"Received: from mx2.example.net by mx.example.org; Mon, 23 Nov 2026 10:00:00 +0000\r\n" + request)
    run_once(config)
    store = store_of(config)
    assert store.counts() == {"cases": 1, "messages_filed": 1, "outbox_sent": 1}
    assert len(mailbox.uids("Processed")) == 2 and mailbox.uids("INBOX") == []


def test_transient_smtp_failure_is_retried_with_the_same_message_id(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    smtp.fail_next(1, code=451)
    mailbox.append(mail(subject="Retry me"))
    run_once(config)
    store = store_of(config)
    (case,) = store.list_cases()
    (out,) = store.case_outbox(case.id)
    assert (out.state, out.attempts) == ("queued", 1) and out.last_error.startswith("451")
    assert smtp.messages == []

    (due,) = store.db.execute("SELECT next_attempt_at FROM outbox WHERE id = ?", (out.id,)).fetchone()
    wait_until(lambda: time.time() >= due, "the retry to fall due")
    run_once(config)
    (out,) = store.case_outbox(case.id)
    assert (out.state, out.attempts) == ("sent", 2)
    (ack,) = smtp.messages
    assert ack.message["Message-ID"] == out.message_id


def test_permanent_smtp_failure_is_recorded_not_dropped(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    smtp.fail_next(1, code=550)
    mailbox.append(mail(subject="Nobody home"))
    run_once(config)
    store = store_of(config)
    (case,) = store.list_cases()
    (out,) = store.case_outbox(case.id)
    assert out.state == "failed" and out.last_error.startswith("550")


def test_unreachable_imap_is_a_clean_failure(config: Config) -> None:
    broken = config.model_copy(update={"imap": config.imap.model_copy(update={"port": 1})})
    assert run_once(broken) == 1


def test_server_without_move_gets_copy_delete_expunge(tmp_path: Path, smtp: SmtpCapture) -> None:
    # In the system's temp dir, not tmp_path: another pytest run on the machine makes pytest's base 0700,
    # and Dovecot's unprivileged processes then fail (CREATE answered SERVERBUG).
    with PrivateDovecot.in_temp_dir(disable_move=True) as server:
        box = server.new_mailbox("nomove")
        raw = sandbox_config(
            imap_port=box.port, imap_user=box.user, imap_password=box.password,
            smtp_port=smtp.port, store=tmp_path / "mailsvc.db",
        )  # fmt: skip
        config = parse_config(raw, tmp_path)
        box.append([mail(subject="one"), mail(subject="two")])
        assert run_once(config) == 0
        assert box.uids("INBOX") == []
        assert len(box.uids("Processed")) == 2
        assert len(smtp.wait_for(2)) == 2


def test_cases_list_and_show(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        tmp_path / "mailsvc.yaml",
        sandbox_config(
            imap_port=mailbox.port, imap_user=mailbox.user, imap_password="secret",
            smtp_port=smtp.port, store=tmp_path / "mailsvc.db",
        ),
    )  # fmt: skip
    mailbox.append(mail(subject="Keyboard missing keys", body="The Q key fell off.\n"))
    assert main(["once", "-c", str(path)]) == 0
    capsys.readouterr()

    assert main(["cases", "list", "-c", str(path)]) == 0
    listing = capsys.readouterr().out
    assert "Keyboard missing keys" in listing and "open" in listing and "alice@example.net" in listing
    assert main(["cases", "list", "--status", "closed", "-c", str(path)]) == 0
    assert "Keyboard" not in capsys.readouterr().out

    assert main(["cases", "show", "1", "-c", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "Case 1: Keyboard missing keys" in shown
    assert "The Q key fell off." in shown
    assert "ack to alice@example.net: sent after 1 attempt(s)" in shown
    assert "secret" not in shown, "no password in cases show"
    assert main(["cases", "show", "99", "-c", str(path)]) == 1


def test_follow_up_case_has_one_tag_and_its_replies_stay_in_it(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    mailbox.append(mail(subject="Docking station no video", message_id="<dock-1@example.net>"))
    run_once(config)
    (ack1,) = smtp.messages
    store = store_of(config)
    store.db.execute("UPDATE cases SET status = 'closed' WHERE id = 1")

    # The requester answers the old acknowledgement after the case closed: a follow-up case.
    mailbox.append(mail(subject=ack1.message["Subject"], message_id="<dock-2@example.net>",
                        in_reply_to=ack1.message["Message-ID"],
                        references=f"<dock-1@example.net> {ack1.message['Message-ID']}"))  # fmt: skip
    run_once(config)
    ack2 = smtp.wait_for(2)[1]
    assert ack2.message["Subject"] == "Re: Docking station no video [Help #2]"
    follow_up = store.case_by_id(2)
    assert follow_up is not None and follow_up.subject == "Docking station no video"

    # Answers to the follow-up's acknowledgement stay in it, by references or by its tag alone.
    mailbox.append(mail(subject=f"AW: {ack2.message['Subject']}", in_reply_to=ack2.message["Message-ID"],
                        references=f"<dock-2@example.net> {ack2.message['Message-ID']}"))  # fmt: skip
    mailbox.append(mail(subject="Re: Docking station no video [Help #1] [Help #2]", body="Still no video.\n"))
    run_once(config)
    assert [c.id for c in store.list_cases()] == [2, 1]
    assert [m.kind for m in store.case_messages(2)] == ["request", "requester_reply", "requester_reply"]
    assert len(smtp.messages) == 2, "no third acknowledgement"


def test_in_reply_to_wins_over_references_to_a_more_recent_case(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    mailbox.append(mail(subject="Laptop fan loud", message_id="<fan@example.net>"))
    run_once(config)
    mailbox.append(mail(subject="Monitor flickers", message_id="<flicker@example.net>"))
    run_once(config)
    store = store_of(config)
    assert [c.id for c in store.list_cases()] == [2, 1], "case 2 is the more recently active"

    # A reply to case 1's request whose References also name case 2's (a client that merged threads).
    mailbox.append(mail(subject="Re: Laptop fan loud", in_reply_to="<fan@example.net>",
                        references="<flicker@example.net> <fan@example.net>"))  # fmt: skip
    run_once(config)
    assert [m.kind for m in store.case_messages(1)] == ["request", "requester_reply"]
    assert [m.kind for m in store.case_messages(2)] == ["request"]


def test_same_mail_through_an_alias_with_its_own_delivery_headers_is_filed_once(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    request = mail(subject="Delivered via an alias", message_id="<alias@example.net>")
    mailbox.append(b"Delivered-To: help@example.org\r\nX-Spam-Status: No, score=-0.1\r\n" + request)
    # The alias's forwarder adds its own verdicts, seal and signature.
    mailbox.append(
        b"Delivered-To: it-alias@example.org\r\nX-Original-To: it-alias@example.org\r\n"
        b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=0.4\r\nX-Rspamd-Queue-Id: 4F2A\r\n"
        b"X-Forwarded-To: help@example.org\r\nResent-From: it-alias@example.org\r\n"
        b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=fwd.example; s=k; b=abc\r\n"
        b"Authentication-Results: fwd.example; dkim=pass header.d=example.net\r\n"
        b"DKIM-Signature: v=1; a=rsa-sha256; d=fwd.example; s=k; h=from; b=xyz\r\n" + request
    )
    run_once(config)
    store = store_of(config)
    assert store.counts() == {"cases": 1, "messages_filed": 1, "outbox_sent": 1}
    assert len(smtp.messages) == 1 and len(mailbox.uids("Processed")) == 2


def with_report_attached(subject: str) -> bytes:
    """A request that forwards a delivery report as an attachment (message/delivery-status)."""
    return (
        "From: Alice Example <alice@example.net>\r\nTo: help@example.org\r\n"
        f"Subject: {subject}\r\nMessage-ID: <report@example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nMy mail to the supplier came back, see attached.\r\n"
        '--B\r\nContent-Type: message/delivery-status\r\nContent-Disposition: attachment; filename="status.txt"\r\n\r\n'
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; orders@supplier.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--B--\r\n"
    ).encode()


def test_request_with_a_delivery_status_attachment_is_filed_and_its_report_forwarded_byte_exact(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db", trust={"token_key": "test-token-key-0123456789"},
    )  # fmt: skip
    raw["queues"]["help"]["staff"] = [{"address": "bob@example.org"}]
    config = parse_config(raw, tmp_path)
    mailbox.append(with_report_attached("Supplier bounce"))
    assert run_once(config) == 0
    store = store_of(config)
    assert store.counts() == {"cases": 1, "messages_filed": 1, "outbox_sent": 2}
    notify = next(c for c in smtp.wait_for(2) if c.rcpt_tos == ("bob@example.org",))
    (part,) = notify.message.iter_attachments()
    assert part.get_content_type() == "application/octet-stream" and part.get_filename() == "status.txt"
    (received,) = parse_message(with_report_attached("Supplier bounce")).attachments
    assert part.get_payload(decode=True) == received.data
    assert b"Final-Recipient: rfc822; orders@supplier.example" in received.data


def test_a_mail_that_cannot_be_built_fails_alone_and_staff_are_told_once(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    # Passes `templates check` (every name is known) and fails only when rendered.
    (templates / "ack.txt.j2").write_text("Your case {{ case.tag }}: {{ 1 // (case.id - case.id) }}\n")
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db", trust={"token_key": "test-token-key-0123456789"},
    )  # fmt: skip
    raw["queues"]["help"]["staff"] = [{"address": "bob@example.org"}]
    raw["queues"]["help"]["templates_dir"] = str(templates)
    config = parse_config(raw, tmp_path)
    mailbox.append(mail(subject="Scanner offline", message_id="<scan@example.net>"))
    assert run_once(config) == 0

    store = store_of(config)
    (case,) = store.list_cases()
    assert [m.kind for m in store.case_messages(case.id)] == ["request"]
    assert mailbox.uids("Quarantine") == [] and len(mailbox.uids("Processed")) == 1
    rows = {r.purpose: r for r in store.case_outbox(case.id)}
    assert rows["ack"].state == "failed"
    assert rows["ack"].last_error.startswith("cannot build: ZeroDivisionError")
    assert (rows["notify"].state, rows["send_failed"].state) == ("sent", "sent")
    notice = next(c for c in smtp.messages if "ZeroDivisionError" in c.data.decode())
    assert notice.rcpt_tos == ("bob@example.org",) and "ack to alice@example.net" in notice.data.decode()

    run_once(config)
    assert [r.purpose for r in store.case_outbox(case.id)].count("send_failed") == 1, "told once"

    # Fixed, then put back by the operator: the mail is built anew, never sent as the empty failed row.
    (templates / "ack.txt.j2").write_text("Your case {{ case.tag }} is in.\n")
    fixed = parse_config(raw, tmp_path)
    path = write_config(tmp_path / "mailsvc.yaml", raw)
    assert main(["outbox", "retry", str(rows["ack"].id), "-c", str(path)]) == 0
    assert run_once(fixed) == 0
    (ack,) = [c for c in smtp.messages if c.rcpt_tos == ("alice@example.net",)]
    assert ack.message["Message-ID"] == rows["ack"].message_id
    assert ack.message.get_body(("plain",)).get_content().startswith(f"Your case [Help #{case.id}] is in.")
    assert store.case_outbox(case.id)[0].state == "sent"


def test_drafts_a_crash_left_unbuilt_are_built_and_sent_on_restart(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    store = store_of(config)
    pipeline = Pipeline(config, store)
    with store.transaction():  # committed, then the process died before building
        outcome, case_id = pipeline.handle(MailRef("INBOX", 1, 1), mail(subject="Left as a draft"))
    assert outcome is Outcome.FILED and store.due_mail(time.time()) == []
    (draft,) = store.pending_drafts()

    assert run_once(config) == 0
    (ack,) = smtp.messages
    assert ack.message["Message-ID"] == draft.draft.message_id
    assert ack.message["Subject"] == f"Re: Left as a draft [Help #{case_id}]"


def staffed_config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, **queue: object) -> Config:
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db", trust={"token_key": "test-token-key-0123456789"},
    )  # fmt: skip
    raw["queues"]["help"]["staff"] = [{"address": "bob@example.org"}]
    raw["queues"]["help"].update(queue)
    return parse_config(raw, tmp_path)


def from_joerg(message_id: str, references: str = "") -> bytes:
    """A request as an RFC 6532 client writes it: UTF-8 addresses in the headers."""
    lines = [
        "From: Jörg Müller <jörg@exämple.net>", "To: help@example.org", "Subject: Drucker streikt",
        "Date: Mon, 23 Nov 2026 09:00:00 +0100", f"Message-ID: {message_id}",
        *([f"References: {references}"] if references else []),
        "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
        "", "Der Drucker im zweiten Stock druckt nicht mehr.", "",
    ]  # fmt: skip
    return "\r\n".join(lines).encode()


def test_internationalised_sender_is_filed_and_answered_over_smtputf8(tmp_path: Path, mailbox: Mailbox) -> None:
    with SmtpCapture(smtputf8=True) as smtp:
        config = staffed_config(tmp_path, mailbox, smtp)
        mailbox.append(from_joerg("<jörg-1@exämple.net>", references="<=?utf-8?q?x?=@e>"))
        assert run_once(config) == 0
        store = store_of(config)
        (case,) = store.list_cases()
        assert case.requester.addr == "jörg@exämple.net"
        assert store.counts()["messages_filed"] == 1 and mailbox.uids("Quarantine") == []
        ack = next(c for c in smtp.wait_for(2) if c.rcpt_tos == ("jörg@exämple.net",))
        assert "SMTPUTF8" in ack.mail_options
        assert 'To: "Jörg Müller" <jörg@exämple.net>'.encode() in ack.data
        # Message-IDs byte for byte: the UTF-8 one not encoded, the encoded-word look-alike not decoded.
        assert "In-Reply-To: <jörg-1@exämple.net>".encode() in ack.data
        assert "References: <=?utf-8?q?x?=@e>\r\n <jörg-1@exämple.net>".encode() in ack.data


def test_without_smtputf8_an_address_that_cannot_be_expressed_fails_with_a_notice(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    config = staffed_config(tmp_path, mailbox, smtp)
    mailbox.append(from_joerg("<jörg-2@example.net>"))
    assert run_once(config) == 0
    store = store_of(config)
    (case,) = store.list_cases()
    assert store.counts()["messages_filed"] == 1 and mailbox.uids("Quarantine") == []
    rows = {r.purpose: r for r in store.case_outbox(case.id)}
    assert rows["ack"].state == "failed"
    assert rows["ack"].last_error == (
        "553 5.6.7 jörg@exämple.net: a non-ASCII local part needs SMTPUTF8, which the server does not offer"
    )
    assert run_once(config) == 0  # the scheduler tells staff of mail that failed since its last look
    (notice,) = [c for c in smtp.messages if "5.6.7" in body_text(c)]
    assert notice.rcpt_tos == ("bob@example.org",) and "jörg@exämple.net" in body_text(notice)


def body_text(captured: Captured) -> str:
    part = captured.message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def test_automatic_mail_that_threads_nowhere_is_shown_to_staff_and_runs_no_sla_until_a_person_writes(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    config = staffed_config(tmp_path, mailbox, smtp, sla={"first_response": "4h"})
    out_of_office = {"Auto-Submitted": "auto-replied"}
    mailbox.append(mail(subject="Automatic reply: printer", message_id="<ooo@example.net>",
                        body="I am out of the office until Monday.\n", headers=out_of_office))  # fmt: skip
    mailbox.append(mail(subject="[announce] Maintenance tonight", sender="list@lists.example.net",
                        headers={"List-Id": "<announce.lists.example.net>"}))  # fmt: skip
    assert run_once(config) == 0
    store = store_of(config)
    cases = sorted(store.list_cases(), key=lambda c: c.id)
    assert [(c.automatic, c.requester.addr) for c in cases] == [
        (True, "alice@example.net"), (True, "list@lists.example.net"),
    ]  # fmt: skip
    notices = smtp.wait_for(2)
    assert all(c.rcpt_tos == ("bob@example.org",) for c in notices), "no acknowledgement to a machine"
    assert "out of the office until Monday" in body_text(notices[0])
    assert "Maintenance tonight" in notices[1].message["Subject"]
    assert [r.kind for r in store.case_timers(1)] == [], "no SLA on a case no person wrote"

    # Alice writes herself on that case: it is a case like any other from now on.
    mailbox.append(mail(subject="Re: Automatic reply: printer", in_reply_to="<ooo@example.net>",
                        body="Sorry, I am back: the printer on floor 3 is still jammed.\n"))  # fmt: skip
    assert run_once(config) == 0
    case = store.case_by_id(1)
    assert case is not None and not case.automatic
    assert [(r.kind, r.state) for r in store.case_timers(1)] == [("sla_1", "pending")]


def test_acknowledgement_answers_the_request_when_a_reply_follows_in_the_same_pass(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    mailbox.append(mail(subject="Badge reader broken", message_id="<badge-1@example.net>"))
    mailbox.append(mail(subject="Re: Badge reader broken", message_id="<badge-2@example.net>",
                        in_reply_to="<badge-1@example.net>", references="<badge-1@example.net>"))  # fmt: skip
    assert run_once(config) == 0
    (ack,) = smtp.messages
    assert ack.message["In-Reply-To"] == "<badge-1@example.net>"
    assert ack.message["References"] == "<badge-1@example.net>"


def test_a_message_another_process_stored_first_counts_as_a_duplicate(config: Config) -> None:
    """Between the duplicate check and the insert another instance may store the same position: the unique
    constraint decides, the message counts as a duplicate, and the batch's transaction goes on."""
    store = store_of(config)
    pipeline = Pipeline(config, store)
    ref = MailRef("INBOX", 1, 1)
    with store.transaction():
        first, _ = pipeline.handle(ref, mail(subject="Filed by the other instance", message_id="<a@example.net>"))
        again, case_id = pipeline.handle(ref, mail(subject="Same position, fetched here", message_id="<b@example.net>"))
        later, _ = pipeline.handle(MailRef("INBOX", 1, 2), mail(subject="Next in the batch"))
    assert (first, again, case_id, later) == (Outcome.FILED, Outcome.DUPLICATE, None, Outcome.FILED)
    assert [c.subject for c in store.list_cases()] == ["Next in the batch", "Filed by the other instance"]
    store.close()


def test_a_batch_is_parsed_before_its_transaction_takes_the_store(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender records what it sent on its own connection: parsing must not hold the write lock."""
    db = tmp_path / "mailsvc.db"
    raw = sandbox_config(imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
                         smtp_port=smtp.port, store=db)  # fmt: skip
    config = parse_config(raw, tmp_path)
    for i in range(3):
        mailbox.append(mail(subject=f"Request {i}", message_id=f"<parse-{i}@example.net>"))
    writable: list[bool] = []
    parse = Pipeline.parse

    def parse_and_try_a_write(self: Pipeline, data: bytes) -> InboundMessage:
        other = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            writable.append(True)
        except sqlite3.OperationalError:  # database is locked: a write transaction is open
            writable.append(False)
        finally:
            other.close()
        return parse(self, data)

    monkeypatch.setattr(Pipeline, "parse", parse_and_try_a_write)
    assert run_once(config) == 0
    assert writable == [True, True, True]
    assert len(store_of(config).list_cases()) == 3
