from email.message import Message
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsvc import bounce
from mailsvc.bounce import MAX_BYTES, MAX_LINES, MAX_RECIPIENTS, Bounce, detect_bounce

OURS = "<case-42.1700000000@help.example.org>"


def dsn(*blocks: str, returned: str = "message/rfc822", original: str = OURS) -> bytes:
    """A Postfix-shaped RFC 3464 report: notification, delivery-status blocks, the returned mail's headers."""
    status = "Reporting-MTA: dns; mx.example.org\n\n" + "\n\n".join(blocks)
    return f"""\
Return-Path: <>
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: help@example.org
Subject: Undelivered Mail Returned to Sender
Message-Id: <20240101.ABC@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.
Your message could not be delivered to one or more recipients.

--B
Content-Description: Delivery report
Content-Type: message/delivery-status

{status}

--B
Content-Description: Undelivered Message
Content-Type: {returned}

From: Help Desk <help@example.org>
To: alice@example.net
Subject: [Help #42] Your printer
Message-ID: {original}

--B--
""".encode()


FAILED = (
    "Final-Recipient: rfc822; Alice@Example.NET\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 no"
)
DELAYED = (
    "Final-Recipient: rfc822; bob@example.net\nAction: delayed\nStatus: 4.4.1\nDiagnostic-Code: X-Postfix; timeout"
)
DELIVERED = "Final-Recipient: rfc822; carol@example.net\nAction: delivered\nStatus: 2.0.0"


def test_failed_dsn_is_a_hard_bounce_naming_our_message() -> None:
    found = detect_bounce(dsn(FAILED))
    assert found is not None
    assert found.recipients == ("alice@example.net",)
    assert found.permanent
    assert found.status == "5.1.1"
    assert found.kind == "dsn"
    assert found.diagnostic == "smtp; 550 5.1.1 no"
    assert found.original_message_id == OURS


def test_delayed_dsn_is_a_soft_bounce() -> None:
    found = detect_bounce(dsn(DELAYED))
    assert found is not None
    assert (found.recipients, found.permanent, found.status, found.kind) == (
        ("bob@example.net",),
        False,
        "4.4.1",
        "delay",
    )


def test_delivered_dsn_is_no_bounce() -> None:
    assert detect_bounce(dsn(DELIVERED)) is None


def test_failures_outrank_delays_in_one_report() -> None:
    found = detect_bounce(dsn(DELAYED, FAILED, DELIVERED))
    assert found is not None
    assert (found.recipients, found.permanent, found.kind) == (("alice@example.net",), True, "dsn")


def test_given_up_on_a_transient_cause_loses_the_mail_but_is_soft() -> None:
    found = detect_bounce(dsn("Final-Recipient: rfc822; alice@example.net\nAction: failed\nStatus: 4.4.7"))
    assert found is not None
    assert (found.kind, found.permanent, found.status) == ("dsn", False, "4.4.7")


def test_original_recipient_is_the_address_we_wrote() -> None:
    block = "Original-Recipient: rfc822;info@example.net\nFinal-Recipient: rfc822; alice@mbox.example.net\n"
    found = detect_bounce(dsn(block + "Action: failed\nStatus: 5.1.1"))
    assert found is not None
    assert found.recipients == ("info@example.net",)


def test_returned_headers_part_carries_the_original_message_id() -> None:
    found = detect_bounce(dsn(FAILED, returned="text/rfc822-headers", original="<abc.7@help.example.org>"))
    assert found is not None
    assert found.original_message_id == "<abc.7@help.example.org>"


def test_line_endings_do_not_matter() -> None:
    lf = dsn(FAILED)
    assert detect_bounce(lf.replace(b"\n", b"\r\n")) == detect_bounce(lf.replace(b"\n", b"\r")) == detect_bounce(lf)


QMAIL = b"""\
Return-Path: <>
From: MAILER-DAEMON@mx.example.net
To: help@example.org
Subject: failure notice

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<dave@example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <help@example.org>
From: help@example.org
To: dave@example.net
Message-ID: <case-7.1@help.example.org>
Subject: [Help #7] Re: VPN

Hello Dave
"""


def test_qmail_bounce_goes_to_flufl() -> None:
    found = detect_bounce(QMAIL)
    assert found is not None
    assert (found.recipients, found.permanent, found.kind) == (("dave@example.net",), True, "flufl:Qmail")
    assert found.status == "5.1.1"
    assert found.original_message_id == "<case-7.1@help.example.org>"


POSTFIX_OLD = b"""\
From: MAILER-DAEMON@mail.example.com (Mail Delivery System)
To: help@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="P"

--P
Content-Description: Notification
Content-Type: text/plain

This is the Postfix program at host mail.example.com.

I'm sorry to have to inform you that the message returned
below could not be delivered to one or more destinations.

			The Postfix program

<erin@example.com>: host mx.example.com said: 550 User unknown

--P
Content-Description: Undelivered Message
Content-Type: message/rfc822

From: help@example.org
To: erin@example.com
Message-ID: <case-9.3@help.example.org>

Hi
--P--
"""


def test_postfix_bounce_without_a_report_goes_to_flufl() -> None:
    found = detect_bounce(POSTFIX_OLD)
    assert found is not None
    assert (found.recipients, found.permanent, found.kind) == (("erin@example.com",), True, "flufl:Postfix")
    assert found.original_message_id == "<case-9.3@help.example.org>"


EXIM_TEXT = b"""\
From: Mail Delivery System <Mailer-Daemon@relay.example.com>
To: help@example.org
Subject: Mail delivery failed: returning message to sender
In-Reply-To: <case-3.9@help.example.org>

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a temporary error. The following address(es) deferred:

  frank@example.com
    retry time not reached for any host after a long failure period; will be retried
"""


def test_heuristic_bounce_saying_it_will_retry_is_soft() -> None:
    found = detect_bounce(EXIM_TEXT)
    assert found is not None
    assert (found.recipients, found.permanent, found.kind) == (("frank@example.com",), False, "flufl:SimpleMatch")
    assert found.original_message_id == "<case-3.9@help.example.org>"


DRAGONFLY = b"""\
From: MAILER-DAEMON <>
To: help@example.org
Subject: Mail delivery failed

This is the DragonFly Mail Agent v0.13 at df.example.jp.

There was an error delivering your mail to <grace@example.jp>.

mx.example.jp [192.0.2.1] did not like our RCPT TO:
550 5.1.1 <grace@example.jp>: Recipient address rejected: User unknown

Message headers follow.

From: <help@example.org>
To: <grace@example.jp>
Message-Id: <case-11.4@help.example.org>
Subject: [Help #11] Re: badge
"""


def test_format_flufl_does_not_know_falls_to_the_generic_reader() -> None:
    found = detect_bounce(DRAGONFLY)
    assert found is not None
    assert (found.recipients, found.permanent, found.status, found.kind) == (
        ("grace@example.jp",),
        True,
        "5.1.1",
        "notice",
    )
    assert found.original_message_id == "<case-11.4@help.example.org>"


ARF = b"""\
From: abuse@isp.example
To: help@example.org
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report.
--F
Content-Type: message/feedback-report

Feedback-Type: abuse
Version: 1

--F
Content-Type: text/rfc822-headers

From: help@example.org
Message-ID: <case-5.2@help.example.org>

--F--
"""


def test_abuse_report_is_no_bounce_and_names_no_recipient() -> None:
    found = detect_bounce(ARF)
    assert found is not None
    assert (found.kind, found.recipients, found.diagnostic) == ("arf", (), "feedback-type: abuse")
    assert found.original_message_id == "<case-5.2@help.example.org>"


HUMAN = b"""\
From: Grace <grace@example.com>
To: help@example.org
Subject: Re: [Help #42] printer
In-Reply-To: <case-42.1700000000@help.example.org>

My mail to the printer team failed again, could you copy
them in, a@example.com, b@example.com, c@example.com, thanks.
Error 550 it said.
"""


def test_person_writing_about_failures_is_no_bounce() -> None:
    assert detect_bounce(HUMAN) is None


def test_the_sender_named_in_the_prose_is_not_a_bounced_recipient() -> None:
    raw = DRAGONFLY.replace(b"your mail to", b"your mail from <help@example.org> to")
    found = detect_bounce(raw)
    assert found is not None
    assert found.recipients == ("grace@example.jp",)


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\xff" * 100, b"Content-Type: multipart/report; boundary=\n\n--\n", b"\n\n\n"]
)
def test_garbage_is_no_bounce(raw: bytes) -> None:
    assert detect_bounce(raw) is None


def test_huge_input_is_cut_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """What bounds the time (measured in bench/pathological.py): the parser sees MAX_BYTES and MAX_LINES at most."""
    seen: list[bytes] = []
    parsebytes = BytesParser.parsebytes

    def recording(self: BytesParser, text: bytes, headersonly: bool = False) -> Message:
        seen.append(text)
        return parsebytes(self, text, headersonly)

    monkeypatch.setattr(BytesParser, "parsebytes", recording)
    raw = dsn(FAILED).replace(b"This is the mail system", b"x@y.z, " * (MAX_BYTES // 4) + b"This is")
    detect_bounce(raw + b"\n \n" * 100_000)
    assert seen
    assert all(len(text) <= MAX_BYTES and text.count(b"\n") < MAX_LINES for text in seen)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_inner_detector_handles_bytes(raw: bytes) -> None:
    """detect_bounce's catch-all would hide a bug: the function inside it is fuzzed, its result checked."""
    assert_plausible(bounce._detect(raw))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_inner_detector_handles_a_damaged_report(data: st.DataObject) -> None:
    raw = bytearray(dsn(FAILED, DELAYED))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at : at + data.draw(st.integers(0, 40))] = data.draw(st.binary(max_size=40))
    assert_plausible(bounce._detect(bytes(raw)))


def assert_plausible(found: Bounce | None) -> None:
    """What ingest relies on: a known kind, at most MAX_RECIPIENTS distinct lower-case addresses, none for ARF."""
    if found is None:
        return
    assert found.kind in {"dsn", "delay", "notice", "arf"} or found.kind.startswith("flufl:"), found.kind
    assert len(found.recipients) == len(set(found.recipients)) <= MAX_RECIPIENTS
    assert all("@" in r and r == r.lower() and r.strip() == r for r in found.recipients), found.recipients
    assert found.kind != "arf" or found.recipients == ()
    assert isinstance(found.permanent, bool)
