"""A request mailed in becomes a case and is acknowledged: real Dovecot, real SMTP, real store."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailsvc.cli import main
from mailsvc.config import Config, parse_config
from mailsvc.daemon import run_once
from mailsvc.imap import ImapSource
from mailsvc.store import Store
from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture


@pytest.fixture
def config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Config:
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db",
    )  # fmt: skip
    return parse_config(raw, tmp_path)


def wait_until(holds: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not holds():
        assert time.monotonic() < deadline, f"no {what} in {timeout}s"
        time.sleep(0.02)


def store_of(config: Config) -> Store:
    return Store.open(config.store.path)


def test_request_becomes_case_and_is_acknowledged_once(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    request = mail(subject="VPN drops every hour", message_id="<req-1@example.net>")
    mailbox.append(request)

    assert run_once(config) == 0

    store = store_of(config)
    (case,) = store.list_cases()
    assert case.subject == "VPN drops every hour" and case.requester.addr == "alice@example.net"
    (message,) = store.case_messages(case.id)
    assert message["kind"] == "request" and message["message_id"] == "<req-1@example.net>"
    stored_raw = store.db.execute("SELECT raw FROM messages WHERE id = ?", (message["id"],)).fetchone()[0]
    assert stored_raw.replace(b"\r\n", b"\n") == request.replace(b"\r\n", b"\n")
    (out,) = store.case_outbox(case.id)
    assert (out["purpose"], out["state"], out["attempts"]) == ("ack", "sent", 1)

    assert mailbox.uids("INBOX") == []
    assert len(mailbox.uids("Processed")) == 1

    (ack,) = smtp.messages
    assert ack.mail_from == "help@example.org" and ack.rcpt_tos == ("alice@example.net",)
    msg = ack.message
    assert msg["Subject"] == f"Re: VPN drops every hour [Help #{case.id}]"
    assert msg["From"] == "Example Help Desk <help@example.org>"
    assert msg["In-Reply-To"] == "<req-1@example.net>"
    assert msg["Message-ID"] == out["message_id"]
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
    kinds = [m["kind"] for m in store.case_messages(case.id)]
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
    assert (out["state"], out["attempts"]) == ("queued", 1) and out["last_error"].startswith("451")
    assert smtp.messages == []

    (due,) = store.db.execute("SELECT next_attempt_at FROM outbox WHERE id = ?", (out["id"],)).fetchone()
    wait_until(lambda: time.time() >= due, "the retry to fall due")
    run_once(config)
    (out,) = store.case_outbox(case.id)
    assert (out["state"], out["attempts"]) == ("sent", 2)
    (ack,) = smtp.messages
    assert ack.message["Message-ID"] == out["message_id"]


def test_permanent_smtp_failure_is_recorded_not_dropped(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    smtp.fail_next(1, code=550)
    mailbox.append(mail(subject="Nobody home"))
    run_once(config)
    store = store_of(config)
    (case,) = store.list_cases()
    (out,) = store.case_outbox(case.id)
    assert out["state"] == "failed" and out["last_error"].startswith("550")


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
