"""`mailsvc once` sends from a process of its own while it files: real Dovecot, real SMTP, real store."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from mailsvc import crashpoint, sending
from mailsvc.config import Config, parse_config
from mailsvc.daemon import run_once
from mailsvc.ingest import Pipeline
from mailsvc.model import InboundMessage
from mailsvc.scrub import protected
from mailsvc.store import open_store
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, sandbox_config
from mailsvc.testing.smtp_capture import SmtpCapture


def once_config(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, store: Path | None = None, **imap: object
) -> Config:
    raw = sandbox_config(imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
                         smtp_port=smtp.port, store=store or tmp_path / "mailsvc.db")  # fmt: skip
    raw["imap"].update(imap)
    return parse_config(raw, tmp_path)


def requests_from(mailbox: Mailbox, *people: str) -> None:
    """A request from each of `people`, in that order (each sender gets an acknowledgement)."""
    for who in people:
        mailbox.append(mail(subject=f"Request from {who}", sender=f"{who} <{who}@example.net>"))


def test_a_backlogs_acknowledgements_go_out_while_it_is_filed(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = once_config(tmp_path, mailbox, smtp, fetch_batch=1)  # three batches: a backlog
    people = ("alice", "carol", "dave")
    requests_from(mailbox, *people)
    acked_before: dict[str, bool] = {}
    parse = Pipeline.parse

    def parse_once_the_earlier_batches_are_acknowledged(self: Pipeline, data: bytes) -> InboundMessage:
        parsed = parse(self, data)
        who = next(w for w in people if f"Request from {w}".encode() in data)
        earlier = people.index(who)
        if earlier:
            try:
                smtp.wait_for(earlier, timeout=10)
                acked_before[who] = True
            except TimeoutError:
                acked_before[who] = False
            time.sleep(0.5)  # the sender has sent what was due and waits: the next batch's mail needs a wake
        return parsed

    monkeypatch.setattr(Pipeline, "parse", parse_once_the_earlier_batches_are_acknowledged)
    with capture_logs() as logs:
        assert run_once(config) == 0

    assert acked_before == {"carol": True, "dave": True}
    assert [e["waiting"] for e in logs if e["event"] == "sender_process_started"] == [3]
    assert sorted(m.rcpt_tos[0] for m in smtp.wait_for(3)) == [f"{w}@example.net" for w in people]


def test_a_run_of_one_batch_sends_after_filing_without_a_second_process(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    config = once_config(tmp_path, mailbox, smtp, fetch_batch=2)
    requests_from(mailbox, "alice", "carol")

    with capture_logs() as logs:
        assert run_once(config) == 0

    events = [e["event"] for e in logs]
    assert "sender_process_started" not in events
    # Sent here, after the filing: the sender's events are in this process's log, after the pass's.
    assert events.index("pass_finished") < events.index("mail_sent")
    assert events.count("mail_sent") == 2 and len(smtp.messages) == 2


def test_without_a_sender_process_the_mail_is_sent_after_filing(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = once_config(tmp_path, mailbox, smtp, fetch_batch=1)
    requests_from(mailbox, "alice", "carol")

    def no_process(config: Config) -> subprocess.Popen[bytes]:
        raise BlockingIOError(11, "Resource temporarily unavailable")  # what fork() answers at the process limit

    monkeypatch.setattr(sending, "_start", no_process)
    with capture_logs() as logs:
        assert run_once(config) == 0

    (warning,) = [e for e in logs if e["event"] == "sender_process_unavailable"]
    assert warning["waiting"] == 2 and "Resource temporarily unavailable" in warning["error"]
    assert len(smtp.messages) == 2


def test_a_sender_process_killed_after_the_server_took_a_mail(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = once_config(tmp_path, mailbox, smtp, fetch_batch=1)
    requests_from(mailbox, "alice", "carol")
    start = sending._start

    def start_to_crash(config: Config) -> subprocess.Popen[bytes]:
        with monkeypatch.context() as env:  # the sender process's environment only
            env.setenv(crashpoint.ENV, "smtp_accepted")
            return start(config)

    monkeypatch.setattr(sending, "_start", start_to_crash)
    with capture_logs() as logs:
        assert run_once(config) == 1
    assert [e for e in logs if e["event"] == "component_failed"] == [
        {"event": "component_failed", "component": "sender", "exit_code": -signal.SIGKILL, "log_level": "error"}
    ]
    (first,) = smtp.messages
    store = open_store(config.store)
    assert len(store.list_cases()) == 2, "the filing went on"

    monkeypatch.setattr(sending, "_start", start)
    assert run_once(config) == 0
    # The one duplicate the design allows: sent again, with the same Message-ID; then never again.
    ids = sorted(m.message["Message-ID"] for m in smtp.messages)
    assert len(ids) == 3 and ids.count(first.message["Message-ID"]) == 2
    assert run_once(config) == 0
    assert len(smtp.messages) == 3
    assert [row["state"] for row in store.db.execute("SELECT state FROM outbox")] == ["sent", "sent"]


def test_a_sender_that_cannot_open_the_store_logs_why_and_exits_crashed(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (tmp_path / "not-a-folder").write_text("")
    config = once_config(tmp_path, mailbox, smtp, store=tmp_path / "not-a-folder" / "mailsvc.db")
    start = sending._Start(config, ("s3cret-of-the-parent",), "json", "info")
    payload = pickle.dumps(start)
    read, write = os.pipe()
    os.write(write, sending._LENGTH.pack(len(payload)) + payload)
    os.close(write)
    monkeypatch.setattr("sys.stdin", os.fdopen(read, "rb"))
    saved = structlog.get_config()
    try:
        assert sending.main() == sending.CRASHED
    finally:
        structlog.configure(**saved)

    (line,) = capsys.readouterr().out.splitlines()
    failed = json.loads(line)
    assert (failed["event"], failed["component"]) == ("component_failed", "sender")
    assert "cannot open the store" in failed["error"]
    assert "s3cret-of-the-parent" in protected(), "the parent's secrets are hidden in the child's logs too"
    assert smtp.messages == []
