"""The digest on a moved clock against the real servers: once per period across a restart, one catch-up after
downtime, the same page from `mailsvc report --html`, and that page in a real browser (headless Chromium)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailsvc import metrics
from mailsvc.cli import main
from mailsvc.config import Config
from mailsvc.testing.browser import Chromium, find_chromium
from mailsvc.testing.desk import Clock, Desk, desk_config
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail
from mailsvc.testing.smtp_capture import Captured, SmtpCapture
from tests.integration.test_staff import body, staff_reply

BERLIN = ZoneInfo("Europe/Berlin")
TEAM = "team@example.org"


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


@pytest.fixture
def desk_settings(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Config:
    report = {"mail_to": [TEAM], "every": "weekly", "at": "Mon 08:00", "timezone": "Europe/Berlin"}
    return desk_config(tmp_path, mailbox, smtp, sections={"report": report})


def digests(desk: Desk) -> list[Captured]:
    """The digests sent since the last look (other mail is dropped)."""
    return [m for m in desk.take() if m.rcpt_tos == (TEAM,)]


def html_of(captured: Captured) -> str:
    part = captured.message.get_body(("html",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def a_week_of_traffic(desk: Desk, clock: Clock) -> None:
    """Three requests: one answered in 2 hours, resolved and rated 2 with a remark; one answered in 30 minutes;
    one nobody answered."""
    desk.deliver(mail(subject="VPN drops every hour", message_id="<vpn@example.net>"))
    vpn = next(m for m in desk.take() if "bob@example.org" in m.rcpt_tos)
    desk.deliver(mail(subject="New laptop", sender="Carol <carol@example.net>", message_id="<laptop@example.net>"))
    laptop = next(m for m in desk.take() if "bob@example.org" in m.rcpt_tos)
    clock.advance(timedelta(minutes=30))
    desk.deliver(staff_reply(laptop, "It is on its way."))
    clock.advance(timedelta(minutes=90))
    desk.deliver(staff_reply(vpn, "#resolve\nFixed the gateway."))
    resolved = next(m for m in desk.take() if m.rcpt_tos == ("alice@example.net",) and "resolved" in body(m))
    clock.advance(timedelta(hours=1))
    desk.deliver(
        mail(subject=f"Re: {resolved.message['Subject']}", body="2\nIt took a day to get anyone to look at it.\n",
             in_reply_to=resolved.message["Message-ID"])
    )  # fmt: skip
    desk.deliver(mail(subject="Printer <b>on fire</b>", sender="Dan <dan@example.net>"))
    desk.take()


def test_the_digest_is_sent_once_per_period_across_a_restart_and_catches_up_once(desk: Desk, clock: Clock) -> None:
    queued = metrics.REGISTRY.get_sample_value("mailsvc_mail_queued_total", {"purpose": "digest"}) or 0.0
    desk.tick()
    (first,) = digests(desk)
    assert "9 Nov - 16 Nov 2026: 0 cases" in first.message["Subject"], "at first, the latest complete week at once"

    a_week_of_traffic(desk, clock)
    clock.now = berlin(2026, 11, 23, 7, 59)
    desk.tick()
    assert digests(desk) == [], "not before Monday 08:00 in Berlin"
    clock.now = berlin(2026, 11, 23, 8, 0)
    desk.tick()
    (weekly,) = digests(desk)
    assert weekly.message["Subject"] == (
        "Weekly help desk digest, 16 Nov - 23 Nov 2026: 3 cases, median first response 1h 15m"
    )
    assert weekly.message["Auto-Submitted"] == "auto-generated"
    text, html = body(weekly), html_of(weekly)
    for figure in ("1h 15m", "It took a day to get anyone to look at it.", "Printer <b>on fire</b>"):
        assert figure in text
    assert "Printer &lt;b&gt;on fire&lt;/b&gt;" in html and "<script" not in html

    desk.tick()
    desk.stop()
    desk.start()  # a restart: the period is in the store, not in memory
    desk.tick()
    assert digests(desk) == [], "once per period"

    clock.now = berlin(2026, 12, 16, 12, 0)  # three Mondays missed
    desk.tick()
    (caught_up,) = digests(desk)
    assert "7 Dec - 14 Dec 2026: 0 cases" in caught_up.message["Subject"], "one catch-up: the latest week only"
    desk.tick()
    assert digests(desk) == []
    rows = desk.store.db.execute("SELECT count(*), count(outbox_id) FROM digests").fetchone()
    assert tuple(rows) == (3, 3)
    assert metrics.REGISTRY.get_sample_value("mailsvc_mail_queued_total", {"purpose": "digest"}) == queued + 3


def test_report_html_writes_the_page_and_a_real_browser_shows_its_figures(
    desk: Desk, clock: Clock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_week_of_traffic(desk, clock)
    page = tmp_path / "report.html"
    config = str(tmp_path / "mailsvc.yaml")
    # The command's period ends at the real now; --since reaches back to the moved clock's cases whatever the date.
    assert main(["report", "--html", str(page), "--since", "2026-11-01", "-c", config]) == 0
    assert f"{page}: 3 cases opened 2026-11-01 00:00" in capsys.readouterr().out
    html = page.read_text()
    assert "Help desk report" in html and "It took a day to get anyone to look at it." in html

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (scripts/setup.sh installs the Debian package where it can)")
    with Chromium(chromium, width=800) as browser:
        browser.open(page.as_uri())
        text = browser.evaluate("document.body.innerText")
        shot = browser.screenshot(tmp_path / "report.png")
        overflow = browser.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.scrollWidth > e.clientWidth + 1 "
            "&& getComputedStyle(e).overflowX !== 'visible').length"
        )
        page_wider = browser.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
        images = browser.evaluate("document.images.length + document.scripts.length")
    with Chromium(chromium, width=375) as phone:
        phone.open(page.as_uri())
        phone_wider = phone.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    for figure in ("Help desk report", "Median first response", "1h 15m", "3 opened", "1 (bad)",
                   "It took a day to get anyone to look at it.", "Printer <b>on fire</b>"):  # fmt: skip
        assert figure in text, figure
    assert "Traceback" not in text and "error" not in text.lower()
    assert (overflow, page_wider, phone_wider, images) == (0, False, False, 0)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
