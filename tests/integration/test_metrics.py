"""`mailsvc run` with metrics on 127.0.0.1: after known traffic on the real Dovecot and SMTP capture, a scrape of
the endpoint shows each figure; under a notify socket, the status line says what the daemon watches."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, write_config
from mailsvc.testing.smtp_capture import SmtpCapture
from tests.integration.test_service import NotifyListener, Service, base_config

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_for_scrape(port: int, ready: Callable[[Samples], bool], timeout: float = 20) -> tuple[str, Samples]:
    deadline = time.monotonic() + timeout
    while True:
        text, samples = scrape(port)
        if ready(samples):
            return text, samples
        if time.monotonic() > deadline:
            raise AssertionError(f"the figures did not arrive in {timeout}s:\n{text}")
        time.sleep(0.1)


def test_a_scrape_after_known_traffic_shows_every_figure(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, notify: NotifyListener, services: list[Service]
) -> None:
    config = base_config(tmp_path, mailbox, smtp, metrics={"listen": "127.0.0.1:0"}, limits={"max_message_bytes": 2048})
    started = time.time()
    service = Service(write_config(tmp_path / "mailsvc.yaml", config), tmp_path / "daemon.log",
                      {"NOTIFY_SOCKET": str(notify.path)})  # fmt: skip
    services.append(service)
    (listening,) = service.wait_for("metrics_listening")
    assert listening["host"] == "127.0.0.1"
    port = int(listening["port"])
    service.wait_for("imap_connected")

    # A request whose acknowledgement the SMTP server refuses for good.
    smtp.fail_next(1, code=550, message="5.1.1 no such user")
    mailbox.append(mail(subject="Locked out", sender="ghost@example.net", message_id="<ghost@example.net>"))
    service.wait_for("mail_failed")
    # Two requests, an auto-reply, the first request again, and a message over the size limit.
    request = mail(subject="Printer jammed", message_id="<a@example.net>")
    mailbox.append(request)
    mailbox.append(mail(subject="VPN", sender="Bob <bob@example.net>", message_id="<b@example.net>"))
    mailbox.append(
        mail(subject="Out of office", sender="carol@example.net", headers={"Auto-Submitted": "auto-replied"})
    )
    mailbox.append(request)
    mailbox.append(mail(subject="Huge", sender="dan@example.net", body="x" * 3000))
    smtp.wait_for(2, timeout=20)

    inbox = {"mailbox": "INBOX"}
    text, s = wait_for_scrape(port, lambda s: get(s, "mailsvc_acks_sent_total") == 2
                              and get(s, "mailsvc_messages_quarantined_total", **inbox) == 1
                              and get(s, "mailsvc_outbox_queued") == 0)  # fmt: skip
    assert get(s, "mailsvc_messages_fetched_total", **inbox) == 6
    assert get(s, "mailsvc_messages_filed_total", **inbox) == 4
    assert get(s, "mailsvc_messages_duplicate_total", **inbox) == 1
    assert get(s, "mailsvc_cases_opened_total", queue="help") == 4
    assert get(s, "mailsvc_mail_queued_total", purpose="ack") == 3
    assert get(s, "mailsvc_acks_suppressed_total", reason="auto_reply") == 1
    assert get(s, "mailsvc_mail_sent_total", purpose="ack") == 2
    assert get(s, "mailsvc_send_attempts_total") == 3
    assert get(s, "mailsvc_send_failures_total", reason="smtp_5xx") == 1
    assert get(s, "mailsvc_mail_failed_total", reason="permanent") == 1
    assert get(s, "mailsvc_imap_connected", **inbox) == 1 and get(s, "mailsvc_imap_idle_connected", **inbox) == 1
    last_fetch = get(s, "mailsvc_last_fetch_timestamp_seconds", **inbox)
    assert last_fetch is not None and started < last_fetch <= time.time()
    assert get(s, "mailsvc_filed_to_ack_sent_seconds_count") == 2
    assert get(s, "mailsvc_arrival_to_filed_seconds_count") == 5, "filed or duplicate, each timed once"
    assert get(s, "mailsvc_cases", queue="help", status="open") == 4
    assert (get(s, "mailsvc_timers_due"), get(s, "mailsvc_timers_pending")) == (0, 0)
    assert (
        "mailsvc_outbox_oldest_queued_timestamp_seconds" in text
        and get(s, "mailsvc_outbox_oldest_queued_timestamp_seconds") is None
    ), "no sample while nothing waits"
    assert mailbox.password not in text

    # The status line, once every mailbox is connected.
    deadline = time.monotonic() + 20
    while not any(line.startswith("STATUS=watching 1 mailbox; outbox 0; last mail ") for line in notify.lines()):
        assert time.monotonic() < deadline, notify.lines()[-10:]
        time.sleep(0.1)
    assert service.stop() == 0, service.log_text()


def test_a_listener_that_cannot_start_leaves_the_daemon_working(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, services: list[Service]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = base_config(tmp_path, mailbox, smtp, metrics={"listen": f"127.0.0.1:{port}"})
        service = Service(write_config(tmp_path / "mailsvc.yaml", config), tmp_path / "daemon.log")
        services.append(service)
        (failed,) = service.wait_for("metrics_unavailable")
        assert failed["listen"] == f"127.0.0.1:{port}" and "Address already in use" in failed["error"]
        mailbox.append(mail(subject="Still answered", message_id="<still@example.net>"))
        smtp.wait_for(1, timeout=15)
    assert service.stop() == 0


def test_timers_that_fire_are_counted_by_kind(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, services: list[Service]
) -> None:
    config = base_config(tmp_path, mailbox, smtp, metrics={"listen": "127.0.0.1:0"},
                         trust={"token_key": "test-token-key-0123456789"})  # fmt: skip
    config["queues"]["help"]["staff"] = [{"address": "bob@example.org"}]
    config["queues"]["help"]["sla"] = {"first_response": 1}  # one second, unanswered: an escalation to Bob
    service = Service(write_config(tmp_path / "mailsvc.yaml", config), tmp_path / "daemon.log")
    services.append(service)
    port = int(service.wait_for("metrics_listening")[0]["port"])
    service.wait_for("imap_connected")
    mailbox.append(mail(subject="Nobody answers"))
    _, s = wait_for_scrape(port, lambda s: get(s, "mailsvc_mail_sent_total", purpose="escalation") == 1)
    assert get(s, "mailsvc_timers_fired_total", kind="sla_1") == 1
    assert (get(s, "mailsvc_timers_due"), get(s, "mailsvc_timers_pending")) == (0, 0)
    assert get(s, "mailsvc_mail_sent_total", purpose="notify") == 1 and get(s, "mailsvc_acks_sent_total") == 1
    assert service.stop() == 0
