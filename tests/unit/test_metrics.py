"""Metrics counted from what the shells report: no sockets here (the endpoint is tested on a running daemon)."""

from __future__ import annotations

from pathlib import Path

import aiosmtplib
import pytest
from structlog.testing import capture_logs

from mailsvc import metrics
from mailsvc.config_servers import StoreConfig
from mailsvc.store import Applied, Store


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_applied_events_count_cases_mail_and_held_acknowledgements_by_reason() -> None:
    before = {
        "opened": value("mailsvc_cases_opened_total", queue="sales"),
        "auto": value("mailsvc_acks_suppressed_total", reason="auto_reply"),
        "rate": value("mailsvc_acks_suppressed_total", reason="rate_limit"),
        "ack": value("mailsvc_mail_queued_total", purpose="ack"),
        "fired": value("mailsvc_timers_fired_total", kind="reminder"),
    }
    metrics.count_applied(Applied(1, 1, (), (
        ("case_opened", {"case_id": 1, "queue": "sales"}),
        ("message_filed", {"case_id": 1, "kind": "auto_reply"}),
        ("ack_suppressed", {"case_id": 1, "reason": "Auto-Submitted: auto-replied"}),
    )))  # fmt: skip
    metrics.count_applied(Applied(2, 2, (5,), (
        ("message_filed", {"case_id": 2, "kind": "request"}),
        ("ack_suppressed", {"case_id": 2, "reason": "rate limit: 5 automatic mails to a@example.net in the last hour"}),
        ("ack_queued", {"case_id": 2}),
        ("timer_fired", {"case_id": 2, "timer": "reminder", "reason": ""}),
    )))  # fmt: skip
    assert value("mailsvc_cases_opened_total", queue="sales") == before["opened"] + 1
    assert value("mailsvc_acks_suppressed_total", reason="auto_reply") == before["auto"] + 1
    assert value("mailsvc_acks_suppressed_total", reason="rate_limit") == before["rate"] + 1
    assert value("mailsvc_mail_queued_total", purpose="ack") == before["ack"] + 1
    assert value("mailsvc_timers_fired_total", kind="reminder") == before["fired"] + 1


def test_sent_acknowledgements_are_timed_from_filing() -> None:
    count = value("mailsvc_filed_to_ack_sent_seconds_count")
    acks = value("mailsvc_acks_sent_total")
    metrics.mail_sent("ack", created_at=100.0, now=100.3)
    metrics.mail_sent("relay", created_at=100.0, now=160.0)
    assert value("mailsvc_filed_to_ack_sent_seconds_count") == count + 1
    assert value("mailsvc_acks_sent_total") == acks + 1
    assert value("mailsvc_filed_to_ack_sent_seconds_bucket", le="0.5") >= 1


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (aiosmtplib.SMTPResponseException(451, "try later"), "smtp_4xx"),
        (aiosmtplib.SMTPResponseException(554, "no"), "smtp_5xx"),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "unknown", "x@y")]), "smtp_5xx"),
        (aiosmtplib.SMTPServerDisconnected("gone"), "connection"),
        (ConnectionRefusedError(), "connection"),
        (aiosmtplib.SMTPTimeoutError("slow"), "timeout"),
        (TimeoutError(), "timeout"),
    ],
)
def test_send_failures_are_labelled_by_a_small_set_of_reasons(exc: BaseException, reason: str) -> None:
    assert metrics.failure_reason(exc) == reason


def test_a_mail_given_up_on_counts_as_failure_and_as_failed() -> None:
    failures = value("mailsvc_send_failures_total", reason="smtp_5xx")
    failed = value("mailsvc_mail_failed_total", reason="permanent")
    metrics.send_failed(aiosmtplib.SMTPResponseException(550, "no such user"), gave_up="permanent")
    metrics.send_failed(aiosmtplib.SMTPResponseException(552, "too big"))
    assert value("mailsvc_send_failures_total", reason="smtp_5xx") == failures + 2
    assert value("mailsvc_mail_failed_total", reason="permanent") == failed + 1


def test_listen_addresses_split_into_host_and_port() -> None:
    assert metrics.split_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert metrics.split_listen("[::1]:0") == ("::1", 0)


def test_store_gauges_are_read_at_scrape_and_a_failed_read_leaves_them_out(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "mailsvc.db")
    store.close()
    good = metrics.StoreCollector(StoreConfig(path=tmp_path / "mailsvc.db"))
    assert {f.name: f.samples[0].value for f in good.collect() if f.samples and not f.samples[0].labels} == {
        "mailsvc_outbox_queued": 0.0, "mailsvc_timers_due": 0.0, "mailsvc_timers_pending": 0.0,
    }  # fmt: skip
    good.close()
    errors = value("mailsvc_store_errors_total", component="metrics")
    (tmp_path / "not-a-db").mkdir()
    bad = metrics.StoreCollector(StoreConfig(path=tmp_path / "not-a-db"))
    with capture_logs() as logs:
        assert list(bad.collect()) == []
    assert [e["event"] for e in logs] == ["metrics_store_read_failed"]
    assert value("mailsvc_store_errors_total", component="metrics") == errors + 1
