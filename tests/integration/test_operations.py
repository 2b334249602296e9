"""What an operator meets, on the real servers: a rotated SMTP password holds the queue (nothing fails) until
a reload brings the right one, a reload into a store that cannot open is refused while the old setup goes on,
and no character of a password shows in any output even when the login fails."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, read_rows, sandbox_config, write_config
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.test_service import NotifyListener, Service, base_config, plain_body


@pytest.fixture
def smtp_auth() -> Iterator[SmtpCapture]:
    with SmtpCapture(logins={"help": "rotated-password"}) as capture:
        yield capture


def test_rotated_smtp_password_holds_the_queue_until_a_reload_fixes_it(
    tmp_path: Path, mailbox: Mailbox, smtp_auth: SmtpCapture, notify: NotifyListener, services: list[Service]
) -> None:
    smtp = smtp_auth
    config = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password, smtp_port=smtp.port,
        store=tmp_path / "mailsvc.db", smtp={"user": "help", "password": "old-password"},
    )  # fmt: skip
    path = write_config(tmp_path / "mailsvc.yaml", config)
    service = Service(path, tmp_path / "daemon.log", {"NOTIFY_SOCKET": str(notify.path)})
    services.append(service)
    service.wait_for("imap_connected")
    for n in range(3):
        mailbox.append(mail(subject=f"Request {n}", message_id=f"<rot{n}@example.net>"))
    service.wait_for("ack_queued", 3)
    held = service.wait_for("smtp_unavailable", 3)
    assert {(e["stage"], e["error"][:3]) for e in held} == {("login", "535")}
    notify.wait_for(next(line for line in notify.lines() if line.startswith("STATUS=SMTP unavailable (login: 535")))

    # Held, not failed: no mail charged an attempt, one login per retry however many mails wait.
    rows = read_rows(tmp_path / "mailsvc.db", "SELECT state, attempts FROM outbox")
    assert Counter(rows) == Counter({("queued", 0): 3})
    assert not service.events("mail_failed") and not service.events("mail_deferred")
    sessions = smtp.connections
    unavailable = len(service.events("smtp_unavailable"))  # read after: may count one more retry
    assert sessions <= unavailable + 1  # + 1: the next attempt may be under way
    assert smtp.login_attempts and not any(ok for _, ok in smtp.login_attempts)
    assert not smtp.messages

    config["smtp"]["password"] = "rotated-password"
    write_config(path, config)
    service.reload()
    service.wait_for("config_reloaded")
    acks = smtp.wait_for(3, timeout=20)
    assert sorted(str(a.message["In-Reply-To"]) for a in acks) == [f"<rot{n}@example.net>" for n in range(3)]
    service.wait_for("mail_sent", 3)
    rows = read_rows(tmp_path / "mailsvc.db", "SELECT state, attempts FROM outbox")
    assert Counter(rows) == Counter({("sent", 1): 3})
    assert service.stop() == 0
    assert len(smtp.messages) == 3


def test_reload_into_a_store_that_cannot_open_is_refused_and_the_old_setup_goes_on(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, services: list[Service]
) -> None:
    config = base_config(tmp_path, mailbox, smtp)
    path = write_config(tmp_path / "mailsvc.yaml", config)
    service = Service(path, tmp_path / "daemon.log")
    services.append(service)
    service.wait_for("imap_connected")

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be\n")
    write_config(path, {**config, "store": {"path": str(blocker / "mailsvc.db")}})
    service.reload()
    (refused,) = service.wait_for("config_reload_refused")
    assert any(p.startswith("store.path:") for p in refused["problems"]), refused
    assert not service.events("config_reloaded")

    mailbox.append(mail(subject="Still answered", message_id="<after-refusal@example.net>"))
    (ack,) = smtp.wait_for(1, timeout=15)
    assert ack.message["In-Reply-To"] == "<after-refusal@example.net>"
    assert service.proc.poll() is None
    assert service.stop() == 0

    check = subprocess.run(
        [sys.executable, "-m", "mailsvc", "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 2
    assert f"{path}: store.path: cannot create {blocker / 'mailsvc.db'}: {blocker} is not a folder" in check.stderr


NON_ASCII_PASSWORD = "Zür1ch-€-ßecret"


@pytest.mark.parametrize("command", ["once", "run"])
def test_no_character_of_a_non_ascii_password_in_any_output(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, command: str
) -> None:
    config = base_config(
        tmp_path, mailbox, smtp, imap={"password": NON_ASCII_PASSWORD, "retry_base": 0.2, "retry_cap": 0.5}
    )
    path = write_config(tmp_path / "mailsvc.yaml", config)
    args = [sys.executable, "-m", "mailsvc", command, "-c", str(path)]
    if command == "once":
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
        output = done.stdout + done.stderr
        assert done.returncode == 1
    else:
        service = Service(path, tmp_path / "daemon.log")
        service.wait_for("imap_disconnected", 2)
        assert service.stop() == 0
        output = service.log_path.read_text()
    assert "imap_" in output  # the failed login was reported
    secret_only = set(NON_ASCII_PASSWORD) - set(output.replace("\\u", ""))  # characters that never appear at all
    for char in ("ü", "€", "ß"):
        assert char in secret_only, f"{char!r} of the password shows in:\n{output}"
    for escaped in ("\\xfc", "\\u20ac", "\\xdf", "position"):
        assert escaped not in output, output
    assert NON_ASCII_PASSWORD not in output


def mailsvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailsvc", *args], capture_output=True, text=True, check=False)


def test_outbox_list_and_retry_resend_what_failed(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    path = str(write_config(tmp_path / "mailsvc.yaml", base_config(tmp_path, mailbox, smtp)))
    smtp.fail_next(1, 550, "5.1.1 mailbox unavailable")
    mailbox.append(mail(subject="Bounced ack", message_id="<retry-me@example.net>"))
    assert mailsvc("once", "-c", path).returncode == 0
    assert not smtp.messages

    failed = mailsvc("outbox", "list", "--state", "failed", "-c", path)
    assert failed.returncode == 0, failed.stderr
    (row,) = failed.stdout.splitlines()[1:2]
    assert row.split()[:5] == ["1", "failed", "1", "1", "ack"]
    assert "550 5.1.1 mailbox unavailable" in failed.stdout
    assert mailsvc("outbox", "list", "--state", "queued", "-c", path).stdout.count("\n") == 1  # the heading only

    retried = mailsvc("outbox", "retry", "--failed", "--since", "2000-01-01", "-c", path)
    assert (retried.returncode, retried.stdout) == (0, "requeued 1 mail(s): #1\n"), retried.stderr
    assert mailsvc("once", "-c", path).returncode == 0
    (ack,) = smtp.wait_for(1)
    assert ack.message["In-Reply-To"] == "<retry-me@example.net>"

    again = mailsvc("outbox", "retry", "1", "-c", path)
    assert again.returncode == 1 and "#1 is not failed or queued" in again.stderr
    assert mailsvc("once", "-c", path).returncode == 0
    listed = json.loads(mailsvc("outbox", "list", "--case", "1", "--json", "-c", path).stdout)
    assert [(e["state"], e["attempts"], e["message_id"]) for e in listed] == [("sent", 2, ack.message["Message-ID"])]
    assert len(smtp.messages) == 1
    assert mailsvc("outbox", "retry", "-c", path).returncode == 2  # neither IDs nor --failed


def test_a_template_edited_on_disk_changes_mail_only_after_a_reload(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, services: list[Service]
) -> None:
    templates = tmp_path / "help-templates"
    templates.mkdir()
    ack = templates / "ack.txt.j2"
    ack.write_text("First version for {{ case.tag }}\n")
    queue = {"address": "help@example.org", "display_name": "Example Help Desk", "templates_dir": str(templates)}
    path = write_config(tmp_path / "mailsvc.yaml", base_config(tmp_path, mailbox, smtp, queues={"help": queue}))
    service = Service(path, tmp_path / "daemon.log")
    services.append(service)
    service.wait_for("imap_connected")

    ack.write_text("Broken {{ case.tag }\n")  # saved half-way through an edit
    mailbox.append(mail(sender="a1 <a1@example.net>", message_id="<t1@example.net>"))
    (first,) = smtp.wait_for(1)
    assert plain_body(first).startswith("First version for [Help #1]")

    service.reload()
    service.wait_for("config_reload_refused")
    ack.write_text("Second version for {{ case.tag }}\n")
    mailbox.append(mail(sender="a2 <a2@example.net>", message_id="<t2@example.net>"))
    second = smtp.wait_for(2)[1]
    assert plain_body(second).startswith("First version for [Help #2]")

    service.reload()
    service.wait_for("config_reloaded")
    mailbox.append(mail(sender="a3 <a3@example.net>", message_id="<t3@example.net>"))
    third = smtp.wait_for(3)[2]
    assert plain_body(third).startswith("Second version for [Help #3]")
    assert service.stop() == 0


def test_no_character_of_a_non_ascii_smtp_password_in_output_when_the_login_fails(
    tmp_path: Path, mailbox: Mailbox, smtp_auth: SmtpCapture
) -> None:
    config = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password, smtp_port=smtp_auth.port,
        store=tmp_path / "mailsvc.db", smtp={"user": "help", "password": NON_ASCII_PASSWORD},
    )  # fmt: skip
    path = str(write_config(tmp_path / "mailsvc.yaml", config))
    mailbox.append(mail(message_id="<smtp-secret@example.net>"))
    done = subprocess.run(
        [sys.executable, "-m", "mailsvc", "once", "-c", path], capture_output=True, text=True, check=False, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1  # the mail is held, not sent and not failed
    assert '"smtp_unavailable"' in output and '"stage": "login"' in output, output
    for char in ("ü", "€", "ß", "\\xfc", "\\u20ac", "\\xdf"):
        assert char not in output, f"{char!r} shows in:\n{output}"
    assert read_rows(tmp_path / "mailsvc.db", "SELECT state, attempts FROM outbox") == [("queued", 0)]
