"""`mailsvc store copy`: a store filled by the real daemon moves into an empty PostgreSQL database intact."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from mailsvc.cli import main
from mailsvc.config import load_config
from mailsvc.daemon import run_once
from mailsvc.store import Store
from mailsvc.store.copy import TABLES, copy_store, table_checksum
from mailsvc.store.postgres import PostgresStore
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, write_sandbox_config
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.stores import new_store_url
from tests.integration.test_store_contract import open_case
from tests.unit.factories import message


@pytest.fixture
def filled(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Path:
    """An SQLite store with cases, messages (one with an attachment, one quarantined), mail, timers, positions."""
    help_queue = {
        "address": "help@example.org",
        "display_name": "Help",
        "sla": {"first_response": 3600, "escalate_to": ["lead@example.org"]},
    }
    config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, tmp_path / "mailsvc.db",
                                  queues={"help": help_queue})  # fmt: skip
    for n in range(3):
        mailbox.append(mail(subject=f"Request {n}", sender=f"p{n}@example.net", message_id=f"<c{n}@example.net>"))
    again = message_from_bytes(mail(subject="Again", sender="p0@example.net", in_reply_to="<c0@example.net>",
                                    message_id="<c0b@example.net>"), policy=default)  # fmt: skip
    assert isinstance(again, EmailMessage)
    again.add_attachment(b"line\x00\xff", maintype="application", subtype="octet-stream", filename="log.bin")
    mailbox.append(again.as_bytes())
    mailbox.append(b"Subject: no sender at all\nMessage-ID: <nobody@example.net>\n\nWho wrote this?\n")
    assert run_once(load_config(config)) == 0
    return config


def test_copy_moves_every_table_and_verifies_it(filled: Path, request: pytest.FixtureRequest,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url = new_store_url(request)
    assert main(["store", "copy", "--to", url, "-c", str(filled)]) == 0
    out = capsys.readouterr().out
    source = Store.open(load_config(filled).store.path)  # type: ignore[arg-type]
    target = PostgresStore.connect(url)
    for table in TABLES:
        count = source.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        assert target.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count, table
        assert f"{table:<17} {count:>9} rows" in out
    assert source.db.execute("SELECT count(*) FROM attachments").fetchone()[0] == 1
    assert source.counts() == target.counts() and source.counts()["messages_quarantined"] == 1
    for case in source.list_cases():
        assert target.case_by_id(case.id) == case
        assert target.case_messages(case.id) == source.case_messages(case.id)
        assert target.case_outbox(case.id) == source.case_outbox(case.id)
        assert target.case_timers(case.id) == source.case_timers(case.id)
        assert target.case_events(case.id) == source.case_events(case.id)
    raws = "SELECT raw FROM messages ORDER BY id"
    assert table_checksum(target.db.execute(raws)) == table_checksum(source.db.execute(raws))
    assert target.mailbox_position("INBOX") == source.mailbox_position("INBOX")
    # New rows continue after the copied ids.
    cases = source.counts()["cases"]
    assert open_case(target, message(message_id="<new@x>", content_hash="new"), None) == cases + 1
    source.close()
    target.close()


def test_every_table_of_the_sqlite_store_is_copied(filled: Path) -> None:
    source = Store.open(load_config(filled).store.path)  # type: ignore[arg-type]
    names = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    assert {name for (name,) in source.db.execute(names)} == set(TABLES)
    source.close()


def test_copy_refuses_a_target_that_holds_data(filled: Path, request: pytest.FixtureRequest,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    url = new_store_url(request)
    assert main(["store", "copy", "--to", url, "-c", str(filled)]) == 0
    capsys.readouterr()
    assert main(["store", "copy", "--to", url, "-c", str(filled)]) == 1
    assert "not empty" in capsys.readouterr().err


def test_progress_is_told_per_table_up_to_its_total(filled: Path, request: pytest.FixtureRequest) -> None:
    source = Store.open(load_config(filled).store.path)  # type: ignore[arg-type]
    target = PostgresStore.connect(new_store_url(request))
    told: dict[str, tuple[int, int]] = {}
    copied = copy_store(source, target, lambda table, done, total: told.__setitem__(table, (done, total)))
    assert told == {t.table: (t.rows, t.rows) for t in copied}
    assert list(told) == list(TABLES)
    source.close()
    target.close()


def test_copy_refuses_what_it_cannot_do(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, tmp_path / "none.db")
    assert main(["store", "copy", "--to", "mysql://db/mailsvc", "-c", str(config)]) == 2
    assert "--to must be a postgresql:// URL" in capsys.readouterr().err
    assert main(["store", "copy", "--to", "postgresql://postgres@127.0.0.1/x", "-c", str(config)]) == 1
    assert f"there is no store at {tmp_path / 'none.db'}" in capsys.readouterr().err
