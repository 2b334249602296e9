"""A first start on a full mailbox, mail left where it is, and archives imported: real Dovecot and SMTP."""

from __future__ import annotations

import mailbox as stdlib_mailbox
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailsvc.cli import main
from mailsvc.config import Config, load_config
from mailsvc.daemon import run_once
from mailsvc.imap import ImapSource
from mailsvc.ingest import Pipeline, ingest_pass
from mailsvc.store import Store
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture


def make_config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, **imap: Any) -> Config:
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db", trust={"token_key": "test-token-key-0123456789"},
    )  # fmt: skip
    raw["imap"].update(imap)
    raw["queues"]["help"]["staff"] = [{"address": "bob@example.org", "name": "Bob Staff"}]
    return load_config(write_config(tmp_path / "mailsvc.yaml", raw))


def append_dated(mailbox: Mailbox, messages: list[tuple[bytes, datetime]]) -> None:
    """APPEND with an INTERNALDATE: mail that arrived on the server days ago."""
    with mailbox.client() as client:
        for start in range(0, len(messages), 100):
            chunk = messages[start : start + 100]
            client.multiappend("INBOX", [{"msg": raw, "date": when} for raw, when in chunk])


def acks(smtp: SmtpCapture) -> list[str]:
    return sorted(c.message["To"] for c in smtp.messages if c.message["Auto-Submitted"] == "auto-replied")


def old_and_new(mailbox: Mailbox, old: int, new: int) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=3)
    backlog = [(mail(subject=f"old {n}", sender=f"old{n}@example.net", date=long_ago), long_ago) for n in range(old)]
    now = datetime.now(UTC)
    fresh = [(mail(subject=f"new {n}", sender=f"new{n}@example.net"), now) for n in range(new)]
    append_dated(mailbox, backlog + fresh)


def test_first_start_on_a_full_mailbox_files_old_mail_silently_and_answers_the_new(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    config = make_config(tmp_path, mailbox, smtp)
    old_and_new(mailbox, 500, 5)

    assert run_once(config) == 0

    assert acks(smtp) == [f"new{n}@example.net" for n in range(5)], "5 acknowledgements, for the 5 new mails"
    notices = [c for c in smtp.messages if "bob@example.org" in c.rcpt_tos]
    assert len(notices) == 5, "staff hear of the new mail only"
    store = Store.open(config.store.path)
    cases = store.list_cases(limit=1000)
    assert len(cases) == 505 and mailbox.uids() == [] and len(mailbox.uids("Processed")) == 505
    old_ids = [c.id for c in cases if c.subject.startswith("old ")]
    assert all(c.automatic for c in cases if c.subject.startswith("old ")), "no SLA on old mail"
    timers = store.db.execute(
        f"SELECT count(*) FROM timers WHERE case_id IN ({','.join(map(str, old_ids))})"
    ).fetchone()[0]
    assert timers == 0
    (event,) = [e.detail for e in store.case_events(old_ids[0]) if e.event == "ack_suppressed"]
    assert event == "filed as history: old mail at the first start"

    # Later mail is new mail, whatever its date says: the line was drawn once, at the first start.
    smtp.clear()
    long_ago = datetime.now(UTC) - timedelta(days=5)
    append_dated(mailbox, [(mail(subject="late", sender="late@example.net"), long_ago)])
    run_once(config)
    assert acks(smtp) == ["late@example.net"]


def test_backlog_skip_leaves_old_mail_untouched_on_the_server(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    config = make_config(tmp_path, mailbox, smtp, backlog="skip")
    old_and_new(mailbox, 20, 2)
    old_uids = mailbox.uids()[:20]

    run_once(config)
    run_once(config)

    assert acks(smtp) == ["new0@example.net", "new1@example.net"]
    assert mailbox.uids() == old_uids, "the old mail stays where it was"
    assert [c.subject for c in Store.open(config.store.path).list_cases()] == ["new 1", "new 0"]


def test_backlog_skip_judges_old_mail_once_on_a_connection(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path, mailbox, smtp, backlog="skip")
    old_and_new(mailbox, 20, 2)
    old_uids = mailbox.uids()[:20]
    store = Store.open(config.store.path)
    pipeline = Pipeline(config, store)
    source = ImapSource(config.imap, mailbox.password)  # one connection, many passes: the daemon's watcher
    source.connect()
    asked: list[list[int]] = []  # the UIDs of each FETCH of INTERNALDATE the real client sends
    client = source.client
    assert client is not None
    fetch = client.fetch

    def counted(uids: list[int], data: list[str], *args: Any, **kwargs: Any) -> Any:
        if "INTERNALDATE" in data:
            asked.append(sorted(uids))
        return fetch(uids, data, *args, **kwargs)

    monkeypatch.setattr(client, "fetch", counted)
    try:
        assert ingest_pass(source, pipeline).skipped == 20
        assert [u for uids in asked for u in uids if u in old_uids] == old_uids, "judged at the first pass"
        asked.clear()
        mailbox.append(mail(subject="later", sender="later@example.net"))
        second = ingest_pass(source, pipeline)
        assert second.skipped == 20 and second.filed == 1
        assert [uids for uids in asked if set(uids) & set(old_uids)] == [], "no FETCH of INTERNALDATE again"
    finally:
        source.close()
        store.close()
    assert mailbox.uids() == old_uids, "the old mail stays where it was"


def test_backlog_answer_is_todays_behaviour(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    config = make_config(tmp_path, mailbox, smtp, backlog="answer")
    old_and_new(mailbox, 3, 1)
    run_once(config)
    assert len(acks(smtp)) == 4


def test_processed_folder_null_leaves_mail_in_place_seen_and_keyworded(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    config = make_config(tmp_path, mailbox, smtp, processed_folder=None)
    mailbox.append(mail(subject="first", message_id="<first@example.net>"))

    run_once(config)
    run_once(config)

    (uid,) = mailbox.uids()
    with mailbox.client() as client:
        client.select_folder("INBOX", readonly=True)
        flags = set(client.get_flags([uid])[uid])
    assert {b"\\Seen", b"$MailsvcDone"} <= flags
    assert acks(smtp) == ["Alice Example <alice@example.net>"], "processed once, however often the folder is read"
    with mailbox.client() as client:
        assert not client.folder_exists("Processed")

    mailbox.append(mail(subject="second", sender="bob.user@example.net"))
    run_once(config)
    assert len(acks(smtp)) == 2 and len(mailbox.uids()) == 2


@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_import_an_archive_as_history(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, mailbox, smtp)
    first = mail(subject="Laptop broken", message_id="<l1@example.net>")
    reply = mail(subject="Re: Laptop broken", message_id="<l2@example.net>", in_reply_to="<l1@example.net>",
                 references="<l1@example.net>")  # fmt: skip
    other = mail(subject="New phone", sender="carl@example.net", message_id="<p1@example.net>")
    path = tmp_path / f"archive.{kind}"
    box: stdlib_mailbox.Mailbox[Any] = stdlib_mailbox.mbox(path) if kind == "mbox" else stdlib_mailbox.Maildir(path)
    no_sender = b"To: help@example.org\r\nSubject: who?\r\nMessage-ID: <anon@example.net>\r\n\r\nno From at all\r\n"
    for raw in (first, reply, other, no_sender):
        box.add(raw)
    box.close()

    args = ["import", kind, str(path), "-c", str(tmp_path / "mailsvc.yaml")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "imported 4 message(s)" in out and "3 filed in 2 case(s), 0 junk, 0 already there, 1 quarantined" in out
    store = Store.open(config.store.path)
    cases = {c.subject: c for c in store.list_cases()}
    assert sorted(cases) == ["Laptop broken", "New phone"]
    thread = [m.message_id for m in store.case_messages(cases["Laptop broken"].id)]
    assert thread == ["<l1@example.net>", "<l2@example.net>"]
    assert store.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0, "an archive is history: no mail"

    assert main(args) == 0
    assert "0 filed in 0 case(s), 0 junk, 4 already there" in capsys.readouterr().out
    run_once(config)
    assert smtp.messages == []


def test_import_refuses_an_unknown_queue_and_a_missing_archive(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    make_config(tmp_path, mailbox, smtp)
    path = str(tmp_path / "mailsvc.yaml")
    assert main(["import", "mbox", str(tmp_path / "none.mbox"), "--queue", "sales", "-c", path]) == 2
    assert "--queue: no queue 'sales' (queues: help)" in capsys.readouterr().err
    assert main(["import", "maildir", str(tmp_path / "no-such-maildir"), "-c", path]) == 1
    assert "cannot read maildir" in capsys.readouterr().err
