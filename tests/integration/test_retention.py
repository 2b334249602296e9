"""Retention and erasure: closed cases lose their mail's content after retention.closed_after (by hand
and by the scheduler), and `mailsvc forget` erases one person. Real Dovecot, SMTP and store."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailsvc.cli import main
from mailsvc.config import Config
from mailsvc.daemon import run_once
from mailsvc.ingest import Pipeline
from mailsvc.scheduler import Scheduler
from mailsvc.store import Store
from mailsvc.testing.desk import desk_config
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture

SIGNED = {"Authentication-Results": "mx.example.org; dkim=pass header.d=example.org header.from=example.org"}


def make_config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, closed_after: str) -> Config:
    return desk_config(tmp_path, mailbox, smtp, retention={"closed_after": closed_after})


def with_attachment() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.net>"
    msg["To"] = "help@example.org"
    msg["Subject"] = "Scanner broken"
    msg["Message-ID"] = "<scan@example.net>"
    msg.set_content("The scanner shows error 42.\n")
    msg.add_attachment(b"%PDF-1.4 error log", maintype="application", subtype="pdf", filename="log.pdf")
    return msg.as_bytes()


def closed_case(config: Config, mailbox: Mailbox, smtp: SmtpCapture) -> int:
    """Alice's request, answered and closed by Bob; returns the case id."""
    mailbox.append(with_attachment())
    run_once(config)
    notify = next(c for c in smtp.messages if "bob@example.org" in c.rcpt_tos)
    close = mail(
        subject=f"Re: {notify.message['Subject']}", sender="Bob Staff <bob@example.org>",
        to=notify.message["Reply-To"], body="#close\nReplaced the lamp.\n", headers=SIGNED,
        in_reply_to=notify.message["Message-ID"],
    )  # fmt: skip
    mailbox.append(close)
    run_once(config)
    (case,) = Store.open(config.store.path).list_cases()
    assert case.status.value == "closed"
    return case.id


def said(out: str, prefix: str) -> str:
    """The line the command printed for people (log events, one per line, come before it)."""
    found = [line for line in out.splitlines() if line.startswith(prefix)]
    assert len(found) == 1, out
    return found[0]


def content(store: Store, case_id: int) -> list[tuple[int, int, str]]:
    rows = store.db.execute(
        "SELECT length(raw), length(body_text), kind FROM messages WHERE case_id = ? ORDER BY id", (case_id,)
    )
    return [(r[0], r[1], r[2]) for r in rows]


def test_scheduler_purges_closed_cases_past_retention_and_the_report_stays_true(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    config = make_config(tmp_path, mailbox, smtp, "30d")
    case_id = closed_case(config, mailbox, smtp)
    store = Store.open(config.store.path)
    report_before = store.report_cases(0)
    assert all(size > 0 for size, _, _ in content(store, case_id))

    Scheduler(Pipeline(config, store, clock=lambda: datetime.now(UTC) + timedelta(days=29))).tick()
    assert all(size > 0 for size, _, _ in content(store, case_id)), "not yet: closed 29 days"

    Scheduler(Pipeline(config, store, clock=lambda: datetime.now(UTC) + timedelta(days=31))).tick()
    assert content(store, case_id) == [(0, 0, "request"), (0, 0, "staff_reply")], "a tombstone per message"
    assert store.db.execute("SELECT count(*) FROM attachments").fetchone()[0] == 0
    outgoing = store.db.execute("SELECT length(raw), state FROM outbox WHERE case_id = ?", (case_id,)).fetchall()
    assert outgoing and all(r[0] == 0 for r in outgoing)
    assert store.report_cases(0) == report_before, "the report reads the same"
    (erasure,) = store.db.execute("SELECT kind, cases, messages FROM erasures").fetchall()
    assert tuple(erasure) == ("purge", 1, 2)


def test_purge_by_hand_with_dry_run(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, mailbox, smtp, "1s")
    case_id = closed_case(config, mailbox, smtp)
    store = Store.open(config.store.path)
    deadline = time.monotonic() + 10
    while not store.purge_candidates("help", time.time() - 1):
        assert time.monotonic() < deadline, "the closed case never became older than closed_after"
        time.sleep(0.05)
    args = ["purge", "-c", str(tmp_path / "mailsvc.yaml")]
    capsys.readouterr()

    assert main([*args, "--dry-run"]) == 0
    out = said(capsys.readouterr().out, "queue help:")
    assert out.startswith("queue help: would purge: 1 case(s), 2 message(s), 1 attachment(s)"), out
    assert all(size > 0 for size, _, _ in content(store, case_id)), "a dry run changes nothing"

    assert main(args) == 0
    assert said(capsys.readouterr().out, "queue help:").startswith("queue help: purged: 1 case(s), 2 message(s), 1 att")
    assert all(size == 0 for size, _, _ in content(store, case_id))
    assert main(args) == 0
    assert said(capsys.readouterr().out, "queue help:").startswith("queue help: purged: 0 case(s)"), "purged once"


def test_forget_erases_one_person_and_prints_what_it_removed(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, mailbox, smtp, "365d")
    case_id = closed_case(config, mailbox, smtp)
    mailbox.append(mail(subject="Other", sender="carl@example.net", body="Carl's own request.\n"))
    run_once(config)
    args = ["forget", "ALICE@example.net", "-c", str(tmp_path / "mailsvc.yaml")]
    capsys.readouterr()

    assert main([*args, "--dry-run"]) == 0
    assert said(capsys.readouterr().out, "would erase:").startswith("would erase: 1 case(s), 2 message(s)")
    assert main(args) == 0
    printed = capsys.readouterr()
    assert said(printed.out, "erased:").startswith("erased: 1 case(s), 2 message(s), 1 attachment(s)")
    assert said(printed.out, "cases:") == f"cases: #{case_id}"

    store = Store.open(config.store.path)
    tables = ("cases", "messages", "case_events", "outbox", "automatic_mail", "case_ccs", "attachments")
    dump = "\n".join(str(tuple(r)) for t in tables for r in store.db.execute(f"SELECT * FROM {t}"))
    assert "alice" not in dump.lower(), "no trace of the address, in any table"
    assert "alice" not in (printed.out + printed.err).lower()
    case = store.case_by_id(case_id)
    assert case is not None and case.requester.addr == "(erased)" and case.subject == "(erased)"
    assert content(store, case_id) == [(0, 0, "request"), (0, 0, "staff_reply")]
    carl = [c for c in store.list_cases() if c.requester.addr == "carl@example.net"]
    assert len(carl) == 1 and content(store, carl[0].id)[0][1] > 0, "nobody else's data is touched"


def test_purge_without_retention_and_forget_of_no_address(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, smtp_port=smtp.port, store=tmp_path / "mailsvc.db"
    )
    path = str(write_config(tmp_path / "mailsvc.yaml", raw))
    capsys.readouterr()
    assert main(["purge", "-c", path]) == 0
    assert capsys.readouterr().out == "no queue has retention.closed_after: nothing to purge\n"
    assert main(["forget", "alice", "-c", path]) == 2
    assert "'alice' is not a mail address" in capsys.readouterr().out
    assert main(["forget", "nobody@example.net", "-c", path]) == 0
    nothing = "erased: 0 case(s), 0 message(s), 0 attachment(s), 0 outgoing mail(s)"
    assert said(capsys.readouterr().out, "erased:") == nothing
