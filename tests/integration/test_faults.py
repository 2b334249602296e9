"""The running daemon against server faults: IMAP restarted, dropped, refusing the password, given a new
UIDVALIDITY, held in IDLE for many renewals; SMTP refusing connections. Mail is answered once, in the end."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsvc.testing.dovecot import Mailbox, PrivateDovecot
from mailsvc.testing.sandbox import mail, read_rows, write_sandbox_config
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.test_daemon import Daemon


@pytest.fixture(scope="module")
def dovecot() -> Iterator[PrivateDovecot]:
    """This module's own server (it gets restarted and its sessions killed), tracing what sessions do."""
    with PrivateDovecot.in_temp_dir(trace=True) as server:
        yield server


class Watched(Daemon):
    def events(self) -> list[dict[str, Any]]:
        """The log's events so far; the line being written may be incomplete."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e["event"] == name]

    def wait_for_count(self, name: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.named(name)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} {name} events in {timeout}s:\n{self.log_text()}")
            assert self.proc.poll() is None, f"daemon exited early:\n{self.log_text()}"
            time.sleep(0.05)
        return found

    def wait_for_event_where(
        self, name: str, holds: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not (found := [e for e in self.named(name) if holds(e)]):
            if time.monotonic() > deadline:
                raise AssertionError(f"no such {name} event in {timeout}s:\n{self.log_text()}")
            assert self.proc.poll() is None, f"daemon exited early:\n{self.log_text()}"
            time.sleep(0.05)
        return found[0]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


Launch = Callable[..., Watched]


@pytest.fixture
def launch(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Iterator[Launch]:
    """Start the daemon on this test's mailbox and SMTP capture; `imap` overrides go into the imap section."""
    started: list[Watched] = []

    def start(**imap: Any) -> Watched:
        config = write_sandbox_config(tmp_path / "mailsvc.yaml", mailbox, smtp, tmp_path / "mailsvc.db", imap=imap)
        daemon = Watched(config, tmp_path / f"daemon-{len(started)}.log")
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        try:
            daemon.stop()
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


SENTINEL = "<sentinel@example.net>"
SENTINEL_FROM = "last@example.net"


def assert_once(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, requests: list[str], daemon: Watched, folder: str = "INBOX"
) -> None:
    """Each request filed once, one case and one ack each, every ack received exactly once."""
    db = tmp_path / "mailsvc.db"
    daemon.wait_for_count("mail_sent", len(requests))
    # A sentinel request, filed and answered after the others: once its ack is out, a wrong second ack for
    # any of them would be out too.
    mailbox.append(mail(subject="Last one", sender=f"Last <{SENTINEL_FROM}>", message_id=SENTINEL), folder)
    daemon.wait_for_event_where("mail_sent", lambda e: e.get("rcpt") == [SENTINEL_FROM])
    query = "SELECT message_id, count(*) FROM messages WHERE message_id != ? GROUP BY message_id ORDER BY min(id)"
    stored = read_rows(db, query.replace("?", f"'{SENTINEL}'"))
    assert stored == [(r, 1) for r in requests]
    assert read_rows(db, "SELECT count(*) FROM cases") == [(len(requests) + 1,)]
    query = "SELECT message_id, purpose, state FROM outbox WHERE rcpt_to != ? ORDER BY id"
    outbox = read_rows(db, query.replace("?", f"'{SENTINEL_FROM}'"))
    assert [(p, s) for _, p, s in outbox] == [("ack", "sent")] * len(requests)
    answers = [c for c in smtp.messages if c.rcpt_tos != (SENTINEL_FROM,)]
    received = Counter(c.message["Message-ID"] for c in answers)
    assert received == Counter(m for m, _, _ in outbox)
    assert [c.message["In-Reply-To"] for c in answers] == requests
    names = [e["event"] for e in daemon.events()]
    assert names.count("case_opened") == len(requests) + 1 and names.count("ack_queued") == len(requests) + 1


def assert_reconnected(daemon: Watched) -> None:
    """The log says: connected, lost the server, connected again."""
    names = [e["event"] for e in daemon.events()]
    first = names.index("imap_connected")
    lost = names.index("imap_disconnected", first)
    assert "imap_connected" in names[lost:], names


def request(n: int, tag: str) -> tuple[str, bytes]:
    message_id = f"<{tag}-{n}@example.net>"
    raw = mail(subject=f"{tag} request {n}", sender=f"User {n} <user{n}@{tag}.example.net>", message_id=message_id)
    return message_id, raw


# -- IMAP ----------------------------------------------------------------------------------------------------


def test_restarted_server_while_idle(
    launch: Launch, dovecot: PrivateDovecot, mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path
) -> None:
    daemon = launch()
    daemon.wait_for_event("imap_connected")
    first_id, first = request(1, "restart")
    mailbox.append(first)
    smtp.wait_for(1, timeout=10)
    dovecot.wait_idling(mailbox.user)

    dovecot.restart()
    daemon.wait_for_count("imap_connected", 2)
    second_id, second = request(2, "restart")
    mailbox.append(second)
    smtp.wait_for(2, timeout=10)

    assert_reconnected(daemon)
    assert_once(tmp_path, mailbox, smtp, [first_id, second_id], daemon)
    assert mailbox.uids("INBOX") == [] and len(mailbox.uids("Processed")) == 3
    assert daemon.stop() == 0


@pytest.mark.parametrize("how", ["kick", "kill"])
def test_dropped_connection_while_idle(
    how: str, launch: Launch, dovecot: PrivateDovecot, mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path
) -> None:
    """kick: the server says BYE and closes; kill: the session process dies, the connection just ends."""
    daemon = launch()
    first_id, first = request(1, how)
    mailbox.append(first)
    smtp.wait_for(1, timeout=10)
    dovecot.wait_idling(mailbox.user)

    dropped = dovecot.kick(mailbox.user) if how == "kick" else dovecot.kill_sessions(mailbox.user)
    assert dropped == 1
    # Noticed from the connection itself: the IDLE renewal (25 minutes by default) is far past this wait.
    daemon.wait_for_count("imap_connected", 2)
    second_id, second = request(2, how)
    mailbox.append(second)
    smtp.wait_for(2, timeout=10)

    assert_reconnected(daemon)
    assert_once(tmp_path, mailbox, smtp, [first_id, second_id], daemon)
    assert daemon.stop() == 0


def test_changed_password_is_retried_with_growing_delays(
    launch: Launch, dovecot: PrivateDovecot, mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path
) -> None:
    daemon = launch()
    daemon.wait_for_event("imap_connected")
    dovecot.wait_idling(mailbox.user)
    dovecot.set_password(mailbox.user, "changed-on-the-server")
    dovecot.kick(mailbox.user)
    message_id, raw = request(1, "auth")
    mailbox.append(raw)

    # The kick, then two refused logins: the delays so far are 0.5-1s, 1-2s and 2-4s (no config shortens them).
    lost = daemon.wait_for_count("imap_disconnected", 3, timeout=10)
    assert all("LoginError" in e["error"] or "AUTHENTICATIONFAILED" in e["error"] for e in lost[1:3]), lost
    delays = [e["retry_in_s"] for e in lost[:3]]
    assert delays == sorted(delays) and delays[2] > delays[0], delays
    assert all(d <= 60 for d in delays), delays
    assert smtp.messages == [] and daemon.proc.poll() is None
    assert mailbox.password not in daemon.log_path.read_text()

    dovecot.set_password(mailbox.user, mailbox.password)
    smtp.wait_for(1, timeout=15)
    assert len(daemon.named("imap_connected")) == 2
    assert_once(tmp_path, mailbox, smtp, [message_id], daemon)
    assert daemon.stop() == 0


def test_reconnect_delays_are_capped(
    launch: Launch, dovecot: PrivateDovecot, mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path
) -> None:
    """With imap.retry_base 0.2 and retry_cap 0.8, as smtp.retry_base/retry_cap do for the sender."""
    dovecot.set_password(mailbox.user, "not-what-the-daemon-knows")
    daemon = launch(retry_base=0.2, retry_cap=0.8)
    lost = daemon.wait_for_count("imap_disconnected", 7, timeout=10)
    delays = [e["retry_in_s"] for e in lost]
    assert max(delays) <= 0.8 and delays[0] < delays[2], delays
    assert all(d >= 0.4 for d in delays[2:]), delays


def test_new_uidvalidity_recognises_processed_mail(
    launch: Launch, dovecot: PrivateDovecot, mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path
) -> None:
    mailbox.create_folder("Help")
    daemon = launch(folder="Help")
    old_id, old = request(1, "uidvalidity")
    (old_uid,) = mailbox.append(old, "Help")
    smtp.wait_for(1, timeout=10)
    daemon.wait_for_event("pass_finished")
    before = daemon.named("imap_connected")[0]["uidvalidity"]
    assert mailbox.uids("Help") == []

    # Rebuilt folder: the new mail gets the UID the processed one had; the processed one comes back after it.
    dovecot.delete_folder(mailbox.user, "Help")
    mailbox.create_folder("Help")
    new_id, new = request(2, "uidvalidity")
    assert mailbox.append(new, "Help") == [old_uid]
    mailbox.append(old, "Help")
    after = dovecot.uidvalidity(mailbox.user, "Help")
    assert after != before
    dovecot.kick(mailbox.user)  # Dovecot keeps a session on a deleted folder half alive; a migration ends it

    reconnected = daemon.wait_for_count("imap_connected", 2)[1]
    assert reconnected["uidvalidity"] == after
    smtp.wait_for(2, timeout=10)
    assert_once(tmp_path, mailbox, smtp, [old_id, new_id], daemon, folder="Help")
    duplicates = daemon.named("message_duplicate")
    assert [e["message_id"] for e in duplicates] == [old_id]
    assert mailbox.uids("Help") == [] and len(mailbox.uids("Processed")) == 4
    assert daemon.stop() == 0


def test_idle_is_renewed_and_keeps_answering(
    launch: Launch, dovecot: PrivateDovecot, mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path
) -> None:
    # imap.idle_renew must be > 0 (no other floor); IDLE is checked every second, so 0.5 renews each second.
    daemon = launch(idle_renew=0.5)
    daemon.wait_for_event("imap_connected")
    started = time.monotonic()
    requests = []
    for n in (1, 2):
        renewals = dovecot.commands(mailbox.user).count("IDLE")
        deadline = time.monotonic() + 10
        while dovecot.commands(mailbox.user).count("IDLE") < renewals + 4 - n:
            assert time.monotonic() < deadline, dovecot.commands(mailbox.user)
            time.sleep(0.1)
        dovecot.wait_idling(mailbox.user)
        message_id, raw = request(n, "renew")
        requests.append(message_id)
        mailbox.append(raw)
        (*_, ack) = smtp.wait_for(n, timeout=5)
        assert ack.message["In-Reply-To"] == message_id

    idles = dovecot.commands(mailbox.user).count("IDLE")
    elapsed = time.monotonic() - started
    # Renewed, but not in a loop: at most one IDLE per renewal period (plus the ones ended by new mail).
    assert 5 <= idles <= elapsed / 0.5 + 3, (idles, elapsed)
    assert len(daemon.named("imap_connected")) == 1 and not daemon.named("imap_disconnected")
    assert_once(tmp_path, mailbox, smtp, requests, daemon)
    assert daemon.stop() == 0


# -- SMTP ----------------------------------------------------------------------------------------------------


def test_smtp_down_defers_then_delivers_once(
    launch: Launch, dovecot: PrivateDovecot, mailbox: Mailbox, smtp: SmtpCapture, tmp_path: Path
) -> None:
    daemon = launch()
    daemon.wait_for_event("imap_connected")
    smtp.stop()
    message_id, raw = request(1, "smtpdown")
    mailbox.append(raw)
    # A refused connection is the server's state: the queue is held, the mail is not charged an attempt.
    unavailable = daemon.wait_for_count("smtp_unavailable", 2, timeout=10)
    assert all(e["stage"] == "connect" and "connect" in e["error"].lower() for e in unavailable), unavailable
    assert not daemon.named("mail_deferred")
    (queued,) = read_rows(tmp_path / "mailsvc.db", "SELECT message_id, state, attempts FROM outbox")
    assert queued[1:] == ("queued", 0)

    smtp.start()
    (ack,) = smtp.wait_for(1, timeout=10)
    assert ack.message["Message-ID"] == queued[0]
    assert_once(tmp_path, mailbox, smtp, [message_id], daemon)
    assert not daemon.named("mail_failed")
    daemon.wait_for_count("smtp_available", 1)
    assert daemon.stop() == 0
