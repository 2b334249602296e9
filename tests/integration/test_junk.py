"""Answer people, not spam: spam verdicts of a real SpamAssassin, forged senders, sender rules and the
#spam commands, on the real Dovecot and SMTP capture."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailsvc import metrics
from mailsvc.cli import main
from mailsvc.config import Config, load_config
from mailsvc.daemon import run_once
from mailsvc.store import Store
from mailsvc.store.figures import store_gauges
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.sandbox import mail, sandbox_config, write_config
from mailsvc.testing.smtp_capture import Captured, SmtpCapture
from mailsvc.testing.spamd import GTUBE, PrivateSpamd

SIGNED = {"Authentication-Results": "mx.example.org; dkim=pass header.d=example.org header.from=example.org"}


def make_config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, **overrides: Any) -> Config:
    queue_extra = overrides.pop("queue", {})
    raw = sandbox_config(
        imap_port=mailbox.port, imap_user=mailbox.user, imap_password=mailbox.password,
        smtp_port=smtp.port, store=tmp_path / "mailsvc.db",
        trust={"authserv_ids": ["mx.example.org"], "token_key": "test-token-key-0123456789"}, **overrides,
    )  # fmt: skip
    raw["queues"]["help"]["staff"] = [{"address": "bob@example.org", "name": "Bob Staff"}]
    raw["queues"]["help"].update(queue_extra)
    return load_config(write_config(tmp_path / "mailsvc.yaml", raw))


@pytest.fixture
def config(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> Config:
    return make_config(tmp_path, mailbox, smtp)


def sent(smtp: SmtpCapture, to: str) -> list[Captured]:
    return [c for c in smtp.messages if to in c.rcpt_tos]


def body(captured: Captured) -> str:
    part = captured.message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def message_ids(mailbox: Mailbox, folder: str) -> set[str]:
    found = set()
    for raw in mailbox.fetch_all(folder):
        for line in raw.split(b"\r\n\r\n", 1)[0].splitlines():
            if line.lower().startswith(b"message-id:"):
                found.add(line.split(b":", 1)[1].strip().decode())
    return found


def junk_counted(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("mailsvc_junk_total", {"reason": reason}) or 0.0


def purposes(store: Store) -> list[tuple[int, str, str]]:
    rows = store.db.execute("SELECT case_id, purpose, rcpt_to FROM outbox ORDER BY id").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


# -- 1. spam verdicts -----------------------------------------------------------------------------------


def test_spam_marked_by_spamassassin_gets_no_answer_and_lands_in_junk(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture, spamd: PrivateSpamd, capsys: pytest.CaptureFixture[str]
) -> None:
    spam = spamd.filter(mail(subject="You won", sender="winner@lottery.example", body=GTUBE + "\n",
                             message_id="<spam-1@lottery.example>"))  # fmt: skip
    ham = spamd.filter(mail(subject="VPN drops", message_id="<ham-1@example.net>"))
    assert b"X-Spam-Flag: YES" in spam and b"X-Spam-Flag" not in ham, "spamd marks only the spam"
    mailbox.append([spam, ham])
    before = junk_counted("spamassassin")

    assert run_once(config) == 0

    assert [c.rcpt_tos for c in sent(smtp, "winner@lottery.example")] == [], "no acknowledgement to spam"
    notices = sent(smtp, "bob@example.org")
    assert len(notices) == 1 and "VPN drops" in notices[0].message["Subject"], "staff hear of the request only"
    assert len(sent(smtp, "alice@example.net")) == 1, "the person is acknowledged"
    store = Store.open(config.store.path)
    (junk,) = store.list_cases(junk=True)
    assert junk.requester.addr == "winner@lottery.example" and (junk.junk or "").startswith("SpamAssassin")
    assert [c.subject for c in store.list_cases()] == ["VPN drops", "You won"]
    assert all(c.junk is None for c in store.list_cases(junk.status)), "a junk case is in no other status list"
    assert message_ids(mailbox, "Junk") == {"<spam-1@lottery.example>"}
    assert message_ids(mailbox, "Processed") == {"<ham-1@example.net>"}
    assert junk_counted("spamassassin") == before + 1
    assert store_gauges(store, 0).cases == {("help", "junk"): 1, ("help", "open"): 1}
    report = store.report_cases(0)
    assert [r.id for r in report] != [] and junk.id not in [r.id for r in report], "junk is not in the report"

    capsys.readouterr()
    assert main(["cases", "list", "--status", "junk", "-c", str(config_path(config))]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 1 and " junk " in lines[0] and "winner@lottery.example" in lines[0]
    assert main(["cases", "show", str(junk.id), "-c", str(config_path(config))]) == 0
    shown = capsys.readouterr().out
    assert "status junk," in shown and "  junk: SpamAssassin: X-Spam-Flag: YES (the status it keeps: open)" in shown


def config_path(config: Config) -> Path:
    return config.store.path.parent / "mailsvc.yaml"


def test_only_the_filters_the_configuration_trusts_count_and_header_rules_add_their_own(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, spamd: PrivateSpamd
) -> None:
    untrusted = make_config(tmp_path / "a", mailbox, smtp, spam={"trust": []})
    mailbox.append(spamd.filter(mail(subject="GTUBE 1", sender="x@spam.example", body=GTUBE + "\n")))
    run_once(untrusted)
    assert len(sent(smtp, "x@spam.example")) == 1, "with no filter trusted, X-Spam-Flag means nothing"

    ruled = make_config(
        tmp_path / "b", mailbox, smtp, spam={"trust": [], "headers": [{"name": "X-Spam-Level", "matches": r"\*{20}"}]}
    )
    smtp.clear()
    mailbox.append(spamd.filter(mail(subject="GTUBE 2", sender="y@spam.example", body=GTUBE + "\n")))
    mailbox.append(spamd.filter(mail(subject="printer", sender="z@example.net")))
    run_once(ruled)
    assert sent(smtp, "y@spam.example") == [] and len(sent(smtp, "z@example.net")) == 1
    (junk,) = Store.open(ruled.store.path).list_cases(junk=True)
    assert junk.requester.addr == "y@spam.example" and "X-Spam-Level matches" in (junk.junk or "")


# -- 2. forged senders ----------------------------------------------------------------------------------

DMARC_FAIL = {"Authentication-Results": "mx.example.org; dkim=none; spf=softfail smtp.mailfrom=bank.example; "
              "dmarc=fail header.from=bank.example"}  # fmt: skip


def test_no_backscatter_to_a_sender_that_failed_dmarc_but_staff_hear_of_it(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    mailbox.append(mail(subject="Reset my password", sender="ceo@bank.example", headers=DMARC_FAIL))
    run_once(config)

    assert sent(smtp, "ceo@bank.example") == [], "no acknowledgement to a forged From"
    (notice,) = sent(smtp, "bob@example.org")
    assert "Sender not verified: dmarc=fail header.from=bank.example by mx.example.org" in body(notice)
    store = Store.open(config.store.path)
    (case,) = store.list_cases()
    (message,) = store.case_messages(case.id)
    events = [(e.event, e.detail) for e in store.case_events(case.id)]
    assert ("ack_suppressed", "sender not verified: dmarc=fail header.from=bank.example by mx.example.org") in events
    assert message.kind == "request"


def test_require_authenticated_answers_only_authenticated_senders(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    config = make_config(tmp_path, mailbox, smtp, auto_mail={"require_authenticated": True})
    signed = {"Authentication-Results": "mx.example.org; dkim=pass header.d=example.net header.from=example.net"}
    mailbox.append(mail(subject="signed", sender="alice@example.net", headers=signed))
    mailbox.append(mail(subject="unsigned", sender="dave@example.com"))
    run_once(config)

    assert len(sent(smtp, "alice@example.net")) == 1 and sent(smtp, "dave@example.com") == []
    notices = {c.message["Subject"].split(") ", 1)[1]: body(c) for c in sent(smtp, "bob@example.org")}
    assert "Sender not verified: no trusted Authentication-Results" in notices["unsigned"]
    assert "not verified" not in notices["signed"]


# -- 3. sender rules ------------------------------------------------------------------------------------


def test_allow_list_refuses_others_politely_within_the_rate_limit_and_deny_and_no_ack(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture
) -> None:
    senders = {"allow": ["*.example.net", "partner.example"], "deny": ["bad@partner.example"],
               "no_ack": ["monitor@ops.example.net"]}  # fmt: skip
    config = make_config(tmp_path, mailbox, smtp, queue={"senders": senders})
    mailbox.append(mail(subject="allowed", sender="alice@it.example.net"))
    mailbox.append(mail(subject="denied", sender="bad@partner.example"))
    mailbox.append(mail(subject="disk full", sender="monitor@ops.example.net"))
    mailbox.append([mail(subject=f"outsider {n}", sender="eve@elsewhere.example") for n in range(7)])
    run_once(config)

    assert [c.message["Auto-Submitted"] for c in sent(smtp, "alice@it.example.net")] == ["auto-replied"]
    assert sent(smtp, "bad@partner.example") == [], "a denied sender is junk: nothing goes back"
    assert sent(smtp, "monitor@ops.example.net") == [], "no_ack: no acknowledgement"
    refused = sent(smtp, "eve@elsewhere.example")
    assert len(refused) == config.auto_mail.max_per_hour == 5, "refusals are automatic mail, rate-limited"
    assert "your address is not among them" in body(refused[0])
    notices = sorted(c.message["Subject"].split(") ", 1)[1] for c in sent(smtp, "bob@example.org"))
    assert notices == ["allowed", "disk full"], "staff hear of what is a request, not of junk"
    store = Store.open(config.store.path)
    junk = {c.subject: c.junk for c in store.list_cases(junk=True)}
    assert junk["denied"] == "sender denied (bad@partner.example)"
    assert junk["outsider 0"] == "sender not on the allow list" and len(junk) == 8
    assert len(message_ids(mailbox, "Junk")) == 8 and len(message_ids(mailbox, "Processed")) == 2


def test_senders_list_shows_the_configuration_and_the_store(
    tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    senders = {"allow": ["*.example.net"], "deny": ["bad@partner.example"], "no_ack": ["monitor@example.net"]}
    config = make_config(tmp_path, mailbox, smtp, queue={"senders": senders})
    path = str(config_path(config))
    capsys.readouterr()
    assert main(["senders", "list", "--json", "-c", path]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["rule"], r["pattern"], r["source"]) for r in rows] == [
        ("allow", "*.example.net", "config"), ("deny", "bad@partner.example", "config"),
        ("no_ack", "monitor@example.net", "config"),
    ]  # fmt: skip
    assert main(["senders", "remove", "help", "bad@partner.example", "-c", path]) == 1, "the file's rules stay"
    assert "no stored rule for bad@partner.example" in capsys.readouterr().out


# -- 4. staff commands ------------------------------------------------------------------------------------


def staff_mail(notify: Captured, text: str) -> bytes:
    return mail(
        subject=f"Re: {notify.message['Subject']}", sender="Bob Staff <bob@example.org>",
        to=notify.message["Reply-To"], body=text + "\n", in_reply_to=notify.message["Message-ID"],
        references=notify.message["Message-ID"], headers=SIGNED,
    )  # fmt: skip


def test_spam_block_and_notspam_by_mail(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    mailbox.append(mail(subject="Cheap pills", sender="seller@pills.example", message_id="<pills-1@pills.example>"))
    run_once(config)
    (notify,) = sent(smtp, "bob@example.org")
    store = Store.open(config.store.path)
    (case,) = store.list_cases()
    assert message_ids(mailbox, "Processed") == {"<pills-1@pills.example>"}

    mailbox.append(staff_mail(notify, "#spam block\nthis text goes nowhere"))
    smtp.clear()
    run_once(config)
    case = store.case_by_id(case.id) or case
    assert case.junk == "#spam by bob@example.org" and case.status.value == "open"
    assert message_ids(mailbox, "Junk") == {"<pills-1@pills.example>"}, "the requester's mail, not the #spam itself"
    assert "<pills-1@pills.example>" not in message_ids(mailbox, "Processed")
    assert sent(smtp, "seller@pills.example") == [], "#spam never relays the staff text"
    capsys.readouterr()
    assert main(["senders", "list", "-c", str(config_path(config))]) == 0
    out = capsys.readouterr().out
    assert "help         deny    seller@pills.example" in out and "#spam block by bob@example.org" in out
    assert main(["senders", "list", "--json", "-c", str(config_path(config))]) == 0
    (rule,) = json.loads(capsys.readouterr().out)
    assert (rule["pattern"], rule["source"], rule["case_id"]) == ("seller@pills.example", "#spam block", case.id)

    mailbox.append(mail(subject="More pills", sender="Seller@Pills.example"))
    run_once(config)
    assert sent(smtp, "Seller@Pills.example") == [] and sent(smtp, "bob@example.org") == []
    assert {c.subject for c in store.list_cases(junk=True)} == {"Cheap pills", "More pills"}

    mailbox.append(staff_mail(notify, "#notspam"))
    run_once(config)
    case = store.case_by_id(case.id) or case
    assert case.junk is None and case.status.value == "open", "#notspam gives back the status it had"
    assert [c.id for c in store.list_cases(junk=True)] != [case.id]
    assert case.id in [c.id for c in store.list_cases(case.status)]

    capsys.readouterr()
    assert main(["senders", "remove", "help", "Seller@Pills.example", "-c", str(config_path(config))]) == 0
    assert capsys.readouterr().out == "removed: Seller@Pills.example in queue help\n"
    mailbox.append(mail(subject="Pills again", sender="seller@pills.example"))
    run_once(config)
    assert len(sent(smtp, "seller@pills.example")) == 1, "no longer denied: acknowledged like anyone"


def test_a_verified_staff_answer_is_relayed_whatever_the_filter_thought(
    config: Config, mailbox: Mailbox, smtp: SmtpCapture, spamd: PrivateSpamd
) -> None:
    mailbox.append(mail(subject="Printer", message_id="<p@example.net>"))
    run_once(config)
    (notify,) = sent(smtp, "bob@example.org")
    answer = spamd.filter(staff_mail(notify, "Try this: " + GTUBE))
    assert b"X-Spam-Flag: YES" in answer
    mailbox.append(answer)
    run_once(config)

    (relay,) = [c for c in sent(smtp, "alice@example.net") if c.message["Auto-Submitted"] == "auto-generated"]
    assert "Try this" in body(relay)
    assert Store.open(config.store.path).list_cases(junk=True) == []


def test_spam_moves_mail_left_in_place_to_the_junk_folder(tmp_path: Path, mailbox: Mailbox, smtp: SmtpCapture) -> None:
    config = make_config(tmp_path, mailbox, smtp, imap={"processed_folder": None})
    mailbox.append(mail(subject="Cheap pills", sender="seller@pills.example", message_id="<pills-2@pills.example>"))
    run_once(config)
    assert message_ids(mailbox, "INBOX") == {"<pills-2@pills.example>"}, "processed, and left where it was"
    (notify,) = sent(smtp, "bob@example.org")

    mailbox.append(staff_mail(notify, "#spam"))
    run_once(config)

    assert message_ids(mailbox, "Junk") == {"<pills-2@pills.example>"}
    assert "<pills-2@pills.example>" not in message_ids(mailbox, "INBOX") and len(mailbox.uids()) == 1
