"""A request whose sender failed DMARC: people's answers reach the address, automatic mail does not,
until the requester writes authenticated mail on the case. Real Dovecot, real SMTP, a moved clock."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from mailsvc.cli import main
from mailsvc.testing.desk import Clock, Desk
from mailsvc.testing.sandbox import mail
from tests.integration.test_staff import staff_reply

FORGED = {"Authentication-Results": "mx.example.org; dkim=none; dmarc=fail header.from=example.net"}
SIGNED = {"Authentication-Results": "mx.example.org; dkim=pass header.d=example.net header.from=example.net"}
SUPPRESSED = ("reminder_suppressed", "sender not verified: alice@example.net")


def answer(desk: Desk, text: str) -> None:
    """Bob answers the notification just sent (the only mail since the last take): relayed to Alice,
    and the case waits on her."""
    (notify,) = desk.take()
    assert notify.rcpt_tos == ("bob@example.org",), "nothing automatic to Alice"
    desk.deliver(staff_reply(notify, text))
    (relay,) = desk.take()
    assert desk.purposes([relay]) == ["relay"] and relay.rcpt_tos == ("alice@example.net",)
    assert desk.case()["status"] == "waiting"


def events(desk: Desk, case_id: int = 1) -> list[tuple[str, str]]:
    return [(e.event, e.detail) for e in desk.store.case_events(case_id)]


def test_no_reminder_to_a_sender_that_failed_dmarc_until_it_writes_authenticated(desk: Desk, clock: Clock) -> None:
    desk.deliver(mail(subject="VPN drops", message_id="<req@example.net>", headers=FORGED))
    answer(desk, "Which client version do you run?")

    clock.advance(timedelta(days=3, minutes=1))
    desk.tick()
    assert desk.take() == [], "the reminder is automatic: held back"
    assert SUPPRESSED in events(desk)
    assert ("reminder", "fired") in desk.timers()

    desk.deliver(mail(subject="Re: VPN drops [Help #1]", body="Version 5.2.\n", in_reply_to="<req@example.net>",
                      headers=SIGNED))  # fmt: skip
    assert ("unverified_cleared", "alice@example.net wrote authenticated mail") in events(desk)
    answer(desk, "Please update to 5.3.")
    clock.advance(timedelta(days=3, minutes=1))
    desk.tick()
    (reminder,) = desk.take()
    assert desk.purposes([reminder]) == ["reminder"] and reminder.rcpt_tos == ("alice@example.net",)
    assert events(desk).count(SUPPRESSED) == 1


def test_an_unauthenticated_reply_keeps_automatic_mail_held(desk: Desk, clock: Clock, tmp_path: Path) -> None:
    desk.deliver(mail(subject="VPN drops", message_id="<req@example.net>", headers=FORGED))
    answer(desk, "Which client version do you run?")
    desk.deliver(mail(subject="Re: VPN drops [Help #1]", body="Version 5.2.\n", in_reply_to="<req@example.net>"))
    answer(desk, "Please update to 5.3.")
    clock.advance(timedelta(days=7, minutes=2))
    desk.tick()
    desk.tick()
    assert desk.take() == [], "neither the reminder nor the auto-resolve notice goes"
    assert desk.case()["status"] == "resolved"
    assert ("auto_resolved_suppressed", "sender not verified: alice@example.net") in events(desk)

    marks = "SELECT address FROM unverified_senders"
    assert [r[0] for r in desk.store.db.execute(marks)] == ["alice@example.net"]
    assert main(["forget", "alice@example.net", "-c", str(tmp_path / "mailsvc.yaml")]) == 0
    assert desk.store.db.execute(marks).fetchall() == [], "an erasure request erases the mark too"


def listed_marks(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, bool, bool]]:
    """`mailsvc cases list` by requester: the MARKS column, and the automatic and unverified flags of --json."""
    capsys.readouterr()  # what the desk logged
    assert main(["cases", "list", "-c", str(config)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "MARKS"]
    columns = {cols[6]: cols[2] for cols in (row.split(maxsplit=7) for row in rows)}
    assert main(["cases", "list", "--json", "-c", str(config)]) == 0
    listed = json.loads(capsys.readouterr().out)
    return {c["requester"]: (columns[c["requester"]], c["automatic"], c["unverified"]) for c in listed}


def test_cases_list_marks_the_automatic_case_and_the_unverified_requester(
    desk: Desk, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    desk.deliver(
        mail(subject="VPN drops", message_id="<req@example.net>", headers=FORGED),
        mail(subject="[announce] Maintenance tonight", sender="list@lists.example.net",
             headers={"List-Id": "<announce.lists.example.net>"}),
        mail(subject="Printer jammed", sender="carol@example.net"),
    )  # fmt: skip
    config = tmp_path / "mailsvc.yaml"
    assert listed_marks(config, capsys) == {
        "alice@example.net": ("unverified", False, True),
        "list@lists.example.net": ("auto", True, False),
        "carol@example.net": ("-", False, False),
    }

    desk.deliver(mail(subject="Re: VPN drops [Help #1]", body="Version 5.2.\n", in_reply_to="<req@example.net>",
                      headers=SIGNED))  # fmt: skip
    assert listed_marks(config, capsys)["alice@example.net"] == ("-", False, False), "she proved herself"


def test_a_case_merged_in_brings_its_unverified_mark_and_automatic_mail_stays_held(desk: Desk, clock: Clock) -> None:
    desk.deliver(mail(subject="VPN drops", message_id="<req@example.net>", headers=FORGED))
    (notify_forged,) = desk.take()
    desk.deliver(mail(subject="VPN drops again", message_id="<req2@example.net>"))
    notify = next(m for m in desk.take() if m.rcpt_tos == ("bob@example.org",))
    assert desk.store.unverified_senders(2, ["alice@example.net"]) == frozenset()

    desk.deliver(staff_reply(notify_forged, "#merge 2"))  # Bob takes both for one conversation
    assert desk.store.unverified_senders(2, ["alice@example.net"]) == {"alice@example.net"}
    reason = "sender not verified: dmarc=fail header.from=example.net by mx.example.org"
    assert ("marked_unverified", f"alice@example.net: no automatic mail (from case 1: {reason})") in events(desk, 2)

    desk.deliver(staff_reply(notify, "Which client version do you run?"))
    (relay,) = desk.take()
    assert desk.purposes([relay]) == ["relay"] and relay.rcpt_tos == ("alice@example.net",), "people's answers go"
    clock.advance(timedelta(days=3, minutes=1))
    desk.tick()
    assert desk.take() == [], "the reminder is automatic: held back on the merged case too"
    assert SUPPRESSED in events(desk, 2)
