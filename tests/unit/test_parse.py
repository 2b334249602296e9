"""parse: raw bytes -> InboundMessage, on small hand-written messages and Hypothesis input."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsvc import parse
from mailsvc.model import Address, InboundMessage
from mailsvc.parse import ParseLimits, content_hash, html_to_text, normalize_msgid, parse_message, safe_filename

PLAIN = b"""\
Return-Path: <alice@example.org>
Received: from mx.example.org by mail.example.com; Mon, 3 Jun 2024 10:00:00 +0200
From: Alice Example <alice@example.org>
To: Help Desk <help@example.com>, bob@example.org
Cc: "Carol, C." <carol@example.org>, carol@EXAMPLE.org
Subject: Printer on the 3rd floor
 is jammed
Date: Mon, 3 Jun 2024 09:59:58 +0200
Message-ID: <CAF123@mail.example.org>
X-Mailer: Hand

Hi,

the printer is jammed again.
"""

ALTERNATIVE = b"""\
From: alice@example.org
To: help@example.com
Subject: alt
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

Plain caf=C3=A9
--b1
Content-Type: text/html; charset="UTF-8"

<p>HTML caf\xc3\xa9</p>
--b1--
"""

HTML_ONLY = b"""\
From: alice@example.org
Subject: html
Content-Type: text/html; charset=utf-8

<html><head><style>p { color: red }</style><script>alert(1)</script></head>
<body><h1>Outage</h1><p>The VPN is down &amp; email is slow.</p>
<br><br><br><br><br><br><p>Thanks</p></body></html>
"""


def message(headers: str, body: bytes = b"Hello\n", *, sender: str = "From: alice@example.org\n") -> bytes:
    return (sender + headers).encode() + b"\n" + body


def assert_storable(msg: InboundMessage) -> None:
    """Every string survives UTF-8 encoding (the store) and one-line fields have no line breaks."""
    texts = [msg.subject, msg.text, msg.html or "", msg.return_path or "", msg.message_id or ""]
    texts += [*msg.in_reply_to, *msg.references, *msg.defects]
    texts += [f"{a.name}{a.addr}" for a in (*msg.reply_to, *msg.to, *msg.cc)]
    texts += [f"{a.filename}{a.content_type}{a.content_id or ''}" for a in msg.attachments]
    texts += [name + "".join(values) for name, values in msg.headers.items()]
    if msg.from_ is not None:
        texts.append(msg.from_.name + msg.from_.addr)
    for text in texts:
        text.encode("utf-8")
    for one_line in [msg.subject, *(v for values in msg.headers.values() for v in values)]:
        assert "\n" not in one_line
        assert "\r" not in one_line


def test_plain_message() -> None:
    msg = parse_message(PLAIN)

    assert msg.quarantine_reason is None
    assert msg.from_ == Address("alice@example.org", "Alice Example")
    assert msg.to == (Address("help@example.com", "Help Desk"), Address("bob@example.org"))
    assert msg.cc == (Address("carol@example.org", "Carol, C."),)  # the same mailbox once
    assert msg.subject == "Printer on the 3rd floor is jammed"
    assert msg.date == datetime(2024, 6, 3, 9, 59, 58, tzinfo=timezone(timedelta(hours=2)))
    assert msg.message_id == "<CAF123@mail.example.org>"
    assert msg.text == "Hi,\n\nthe printer is jammed again.\n"
    assert msg.html is None
    assert msg.attachments == ()
    assert msg.return_path == "alice@example.org"
    assert msg.header("X-MAILER") == "Hand"
    assert msg.header_all("received") == ("from mx.example.org by mail.example.com; Mon, 3 Jun 2024 10:00:00 +0200",)
    assert msg.raw == PLAIN
    assert msg.defects == ()


def test_crlf_line_endings_are_normalised() -> None:
    msg = parse_message(PLAIN.replace(b"\n", b"\r\n"))

    assert msg.subject == "Printer on the 3rd floor is jammed"
    assert msg.text == "Hi,\n\nthe printer is jammed again.\n"


def test_alternative_takes_plain_and_keeps_html() -> None:
    msg = parse_message(ALTERNATIVE)

    assert msg.text.strip() == "Plain café"
    assert msg.html is not None
    assert "<p>HTML café</p>" in msg.html
    assert msg.attachments == ()


def test_html_only_becomes_readable_text() -> None:
    msg = parse_message(HTML_ONLY)

    assert "Outage" in msg.text
    assert "The VPN is down & email is slow." in msg.text
    assert "<" not in msg.text
    assert "alert" not in msg.text
    assert "color" not in msg.text
    assert "\n\n\n\n" not in msg.text
    assert msg.html is not None
    assert msg.html.startswith("<html>")


def test_blank_plain_part_falls_back_to_html() -> None:
    raw = ALTERNATIVE.replace(b"Plain caf=C3=A9", b"  ")

    assert parse_message(raw).text == "HTML café"


def test_rfc2047_subject_and_display_names() -> None:
    raw = message(
        "To: =?ISO-8859-1?Q?Andr=E9?= Pirard <pirard@example.be>\n"
        'Cc: "=?utf-8?B?0JDQu9C10LrRgdCw0L3QtNGA?=" <alex@example.ru>\n'
        "Reply-To: =?iso-8859-1?b?Wm/r?= <zoe@example.fr>\n"
        "Subject: =?UTF-8?B?w4Bww6lyby4uLg==?= =?UTF-8?Q?_caf=C3=A9?=\n"
        "   =?iso-8859-1?q?_=E0_midi?=\n",
        sender="From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>\n",
    )
    msg = parse_message(raw)

    assert msg.subject == "Àpéro... café à midi"
    assert msg.from_ == Address("joerg@example.de", "Jörg Müller")
    assert msg.to == (Address("pirard@example.be", "André Pirard"),)
    assert msg.cc == (Address("alex@example.ru", "Александр"),)
    assert msg.reply_to == (Address("zoe@example.fr", "Zoë"),)
    assert msg.header("subject") == msg.subject


def test_encoded_word_split_inside_a_character() -> None:
    # "€" is E2 82 AC; some mailers cut B-encoded words between bytes of one character.
    msg = parse_message(message("Subject: =?utf-8?B?4oI=?= =?utf-8?B?rA==?= rates\n"))

    assert msg.subject == "€ rates"


def test_unknown_charset_in_encoded_word_does_not_fail() -> None:
    msg = parse_message(message("Subject: =?x-unknown?Q?caf=E9?= =?punycode?Q?abc?= ok\n"))

    assert msg.subject == "caféabc ok"
    assert any(d.startswith("header:subject:") for d in msg.defects)


def test_rfc2231_and_rfc2047_filenames() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="xx"\n',
        b"--xx\n"
        b"Content-Type: text/plain\n\nSee attached.\n"
        b"--xx\n"
        b"Content-Type: application/pdf\n"
        b"Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf\n"
        b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n"
        b"--xx\n"
        b'Content-Type: application/octet-stream; name="=?ISO-8859-1?Q?caf=E9.bin?="\n\nxyz\n'
        b"--xx\n"
        b'Content-Type: text/plain; name="r\xc3\xa9sum\xc3\xa9.txt"\n\nraw UTF-8 name\n'
        b"--xx--\n",
    )
    msg = parse_message(raw)

    assert msg.text == "See attached."
    assert [a.filename for a in msg.attachments] == ["€ rates.pdf", "café.bin", "résumé.txt"]
    pdf = msg.attachments[0]
    assert pdf.content_type == "application/pdf"
    assert pdf.data == b"%PDF-1.4\n"
    assert pdf.size == len(pdf.data)
    assert not pdf.inline


def test_unknown_charset_keeps_text_with_defect() -> None:
    raw = message("Content-Type: text/plain; charset=x-unknown\n", b"caf\xc3\xa9 ok\n")
    msg = parse_message(raw)

    assert msg.text == "café ok\n"
    assert any("unknown charset 'x-unknown'" in d for d in msg.defects)


def test_wrong_charset_keeps_text_with_defect() -> None:
    raw = message('Content-Type: text/plain; charset="utf-8"\n', b"caf\xe9 \x93quoted\x94\n")
    msg = parse_message(raw)

    assert msg.text == "café “quoted”\n"
    assert any("not valid utf-8" in d for d in msg.defects)


def test_undeclared_utf8_and_8bit_headers() -> None:
    raw = "From: Jörg <joerg@example.de>\nSubject: Grüße\n\nGrüße\n".encode()
    msg = parse_message(raw)

    assert msg.subject == "Grüße"
    assert msg.from_ == Address("joerg@example.de", "Jörg")
    assert msg.text == "Grüße\n"


def test_latin1_8bit_header_is_readable() -> None:
    msg = parse_message(b"From: alice@example.org\nSubject: Gr\xfc\xdfe\n\nx\n")

    assert msg.subject == "Grüße"


def test_punycode_charset_is_refused_quickly() -> None:
    word = "=?punycode?q?" + "a" * 5000 + "-" + "9" * 5000 + "?="
    raw = message(
        f"Subject: {word}\nContent-Type: text/plain; charset=punycode\n",
        (b"a" * 50_000) + b"-" + (b"99" * 50_000),
    )
    msg = parse_message(raw)

    assert msg.quarantine_reason is None
    assert msg.text.startswith("aaaa")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("From: John Doe john@example.org\n", Address("john@example.org")),
        ('From: "Foo" <foo@example.org\n', Address("foo@example.org", "Foo")),
        ("From: foo@example.org (Foo Bar)\n", Address("foo@example.org")),
        ("From: <>, Second <second@example.org>\n", Address("second@example.org", "Second")),
        ("From: =?utf-8?q?bad?= <@@@>, , ok@example.org\n", Address("ok@example.org")),
    ],
)
def test_malformed_from_header_still_finds_the_mailbox(header: str, expected: Address) -> None:
    msg = parse_message(message("Subject: x\n", sender=header))

    assert msg.from_ == expected
    assert msg.quarantine_reason is None


def test_malformed_from_records_a_defect() -> None:
    msg = parse_message(message("Subject: x\n", sender="From: John Doe john@example.org\n"))

    assert any(d.startswith("header:from:") for d in msg.defects)


@pytest.mark.parametrize("sender", ["", "From: \n", "From: Alice\n", "From: undisclosed-recipients:;\n", "From: <>\n"])
def test_no_usable_sender_is_quarantined(sender: str) -> None:
    msg = parse_message(message("Subject: Who am I\nMessage-ID: <x@y>\n", sender=sender))

    assert msg.from_ is None
    assert msg.quarantine_reason == "no_sender"
    assert msg.subject == "Who am I"
    assert msg.message_id == "<x@y>"
    assert msg.text == "Hello\n"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", None),
        ("Return-Path: <>\n", ""),
        ("Return-Path: <> (null)\n", ""),
        ("Return-Path: < bounce+x@example.org >\n", "bounce+x@example.org"),
        ("Return-Path: bounce@example.org\n", "bounce@example.org"),
    ],
)
def test_return_path(header: str, expected: str | None) -> None:
    assert parse_message(message(header)).return_path == expected


def test_references_and_in_reply_to_are_normalised() -> None:
    raw = message(
        "Message-ID: bare-id@example.org\n"
        "In-Reply-To: Your message of Mon, 3 Jun 2024 <a@example.org> (sent at 10:00)\n"
        "References: <root@example.org>\n <a@example.org>\t<a@example.org>\n"
        "  < spaced @ example.org > junk <root@example.org>\n"
    )
    msg = parse_message(raw)

    assert msg.message_id == "<bare-id@example.org>"
    assert msg.in_reply_to == ("<a@example.org>",)
    assert msg.references == ("<root@example.org>", "<a@example.org>", "<spaced@example.org>")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@b>", "<a@b>"),
        ("  <A@B.example>  ", "<A@B.example>"),
        ("< a @ b >", "<a@b>"),
        ("a@b", "<a@b>"),
        ("junk <a@b> more", "<a@b>"),
        ("<no-at-sign>", "<no-at-sign>"),
        ("no id here", None),
        ("<>", None),
        ("", None),
    ],
)
def test_normalize_msgid(value: str, expected: str | None) -> None:
    assert normalize_msgid(value) == expected


def test_attached_message_is_an_attachment_not_the_body() -> None:
    inner = b"From: bob@example.org\nSubject: Original / question\n\nInner body\n"
    raw = message(
        'Subject: Fwd\nContent-Type: multipart/mixed; boundary="m"\n',
        b"--m\nContent-Type: text/plain\n\nOuter body\n--m\n"
        b"Content-Type: message/rfc822\n\n" + inner + b"--m\n"
        b'Content-Type: message/rfc822; name="named.eml"\n\n' + inner + b"--m--\n",
    )
    msg = parse_message(raw)

    assert msg.text == "Outer body"
    attached, named = msg.attachments
    assert attached.filename == "Original _ question.eml"
    assert attached.content_type == "message/rfc822"
    assert b"Subject: Original / question" in attached.data
    assert b"Inner body" in attached.data
    assert attached.size == len(attached.data)
    assert named.filename == "named.eml"


def test_attachment_filename_is_sanitised() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="m"\n',
        b"--m\n\nbody\n--m\n"
        b'Content-Type: application/octet-stream\nContent-Disposition: attachment; filename="../../etc/passwd"\n'
        b"\nroot:x:0:0\n--m--\n",
    )

    (attachment,) = parse_message(raw).attachments
    assert attachment.filename == "passwd"
    assert attachment.data == b"root:x:0:0"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\evil.exe", "evil.exe"),
        ("..hidden", "hidden"),
        ("a\x00b\x07c.txt", "abc.txt"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("", "attachment"),
        ("../", "attachment"),
        ("  ...  ", "attachment"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
        ("y" * 300, "y" * 200),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_inline_image_and_unnamed_parts() -> None:
    raw = message(
        'Content-Type: multipart/related; boundary="r"\n',
        b'--r\nContent-Type: text/html\n\n<p>Look: <img src="cid:logo@x"></p>\n--r\n'
        b"Content-Type: image/png\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\niVBORw0K\n"
        b"--r\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n--r--\n",
    )
    msg = parse_message(raw)

    assert msg.text == "Look:"
    image, calendar = msg.attachments
    assert (image.filename, image.content_type, image.content_id, image.inline) == (
        "attachment",
        "image/png",
        "logo@x",
        True,
    )
    assert image.data == b"\x89PNG\r\n"
    assert (calendar.content_type, calendar.inline) == ("text/calendar", False)


def test_inline_text_around_an_image_in_mixed_is_kept() -> None:
    raw = message(
        'Content-Type: multipart/mixed; boundary="m"\n',
        b"--m\nContent-Type: multipart/alternative; boundary=a\n\n"
        b"--a\nContent-Type: text/plain\n\nBefore\n--a\nContent-Type: text/html\n\n<p>Before</p>\n--a--\n"
        b"--m\nContent-Type: image/png\nContent-Disposition: inline\n\nPNG\n"
        b"--m\nContent-Type: text/plain\n\nAfter\n--m--\n",
    )
    msg = parse_message(raw)

    assert msg.text == "Before\nAfter"
    assert [a.content_type for a in msg.attachments] == ["image/png"]


def test_transfer_encoding_with_trailing_space_is_decoded() -> None:
    raw = message(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable   \n",
        b"Move =E2=99=9A\n",
    )

    assert parse_message(raw).text == "Move \u265a\n"


def test_long_header_keeps_both_ends() -> None:
    ids = " ".join(f"<id{n}@example.org>" for n in range(20_000))
    msg = parse_message(message(f"References: {ids}\nSubject: {'x' * 100_000}\n"))

    assert msg.references[0] == "<id0@example.org>"
    assert msg.references[-1] == "<id19999@example.org>"
    assert len(msg.references) < 20_000
    assert len(msg.subject) <= 64 * 1024 + 1
    assert any(d.startswith("header:references: cut") for d in msg.defects)


def test_pathological_mime_headers_stay_bounded() -> None:
    # The header registry is quadratic on these; unbounded, this message takes ten seconds or more.
    parts = [
        b"--b\nContent-Type: text/plain; n=%d" % n + b" ;" * 2000 + b"\nContent-Transfer-Encoding: " + b"x=y;" * 1000
        for n in range(20)
    ]
    raw = message('Content-Type: multipart/mixed; boundary="b"\n', b"\n\nx\n".join(parts) + b"\n\nx\n--b--\n")
    msg = parse_message(raw)

    assert msg.quarantine_reason is None
    assert any("cut to" in d for d in msg.defects)


def test_mbox_envelope_line_is_not_a_header() -> None:
    msg = parse_message(b"From alice@example.org Mon Jun  3 10:00:00 2024\n" + PLAIN)

    assert msg.from_ == Address("alice@example.org", "Alice Example")
    assert "from alice@example.org mon" not in msg.headers


def test_dates() -> None:
    unknown_zone = parse_message(message("Date: Mon, 3 Jun 2024 10:00:00 -0000\n"))
    garbage = parse_message(message("Date: next Tuesday-ish\n"))
    absent = parse_message(message(""))

    assert unknown_zone.date == datetime(2024, 6, 3, 10, 0, tzinfo=UTC)
    assert garbage.date is None
    assert "header:date: unparseable" in garbage.defects
    assert absent.date is None


MULTIPART_3 = message(
    'Subject: limits\nContent-Type: multipart/mixed; boundary="o"\n',
    b"--o\nContent-Type: multipart/alternative; boundary=i\n\n"
    b"--i\nContent-Type: text/plain\n\ninner\n--i--\n--o\nContent-Type: text/plain\n\nfooter\n--o--\n",
)


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (ParseLimits(max_bytes=100), "too_large"),
        (ParseLimits(max_depth=1), "too_deep"),
        (ParseLimits(max_parts=3), "too_many_parts"),
        (ParseLimits(max_headers=2), "too_many_headers"),
        (ParseLimits(), None),
    ],
)
def test_limits_quarantine_but_keep_what_they_can(limits: ParseLimits, reason: str | None) -> None:
    msg = parse_message(MULTIPART_3, limits)

    assert msg.quarantine_reason == reason
    assert msg.from_ == Address("alice@example.org")
    if reason != "too_many_headers":
        assert msg.subject == "limits"
    assert msg.content_hash == content_hash(MULTIPART_3)


def test_within_limits_the_multipart_parses() -> None:
    assert parse_message(MULTIPART_3, ParseLimits(max_depth=2, max_parts=4)).text == "inner\nfooter"


def test_too_large_reads_no_body() -> None:
    msg = parse_message(PLAIN, ParseLimits(max_bytes=len(PLAIN) - 1))

    assert msg.quarantine_reason == "too_large"
    assert msg.subject == "Printer on the 3rd floor is jammed"
    assert msg.text == ""


def test_email_package_failure_is_unparseable(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(parse, "_parse_mime", explode)
    msg = parse_message(PLAIN)

    assert msg.quarantine_reason == "unparseable"
    assert msg.subject == "Printer on the 3rd floor is jammed"
    assert msg.from_ == Address("alice@example.org", "Alice Example")
    assert "mime: ValueError" in msg.defects


def test_content_hash_ignores_trace_fields_and_line_endings() -> None:
    copy_a = b"Received: from a by b; Mon, 3 Jun 2024\nDelivered-To: help@example.com\n" + PLAIN
    copy_b = (
        b"Received: from c\n  by d; Tue, 4 Jun 2024\nX-Original-To: cc@example.com\n"
        b"Delivered-To: cc@example.com\nAuthentication-Results: mx; spf=pass\n" + PLAIN
    ).replace(b"\n", b"\r\n")

    assert content_hash(copy_a) == content_hash(copy_b) == content_hash(PLAIN)
    assert content_hash(PLAIN) != content_hash(PLAIN.replace(b"jammed again", b"jammed AGAIN"))
    assert content_hash(PLAIN) != content_hash(PLAIN.replace(b"Subject: Printer", b"Subject: Scanner"))
    assert content_hash(b"") == content_hash(b"\r\n") != content_hash(b"x")


@pytest.mark.parametrize(
    "added",
    [
        b"X-Spam-Status: No, score=-0.1\nX-Spam-Flag: NO\n",
        b"X-Rspamd-Queue-Id: 4F2A\nX-Rspamd-Action: no action\n",
        b"X-Forwarded-To: help@example.com\nX-Forwarded-For: alias@example.com help@example.com\n",
        b"Resent-From: alias@example.com\nResent-Date: Tue, 4 Jun 2024 10:00:00 +0000\n",
        b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=fwd.example; s=k; b=abc\n",
        b"Authentication-Results: fwd.example; dkim=pass\nDKIM-Signature: v=1; d=fwd.example; b=xyz\n",
        b"Delivered-To: alias@example.com\nX-Original-To: alias@example.com\nReturn-Path: <a@b>\n",
    ],
)
def test_content_hash_ignores_every_field_added_on_the_way(added: bytes) -> None:
    assert content_hash(added + PLAIN) == content_hash(PLAIN)
    assert content_hash(PLAIN.replace(b"\n\n", b"\n" + added + b"\n", 1)) == content_hash(PLAIN)


def test_content_hash_covers_what_the_author_wrote() -> None:
    for field in (b"From", b"To", b"Cc", b"Subject", b"Message-ID", b"Date"):
        line = next(x for x in PLAIN.split(b"\n") if x.lower().startswith(field.lower() + b":"))
        assert content_hash(PLAIN.replace(line, line + b"x")) != content_hash(PLAIN), field
    html = PLAIN.replace(b"\n\n", b"\nContent-Type: text/html\n\n", 1)
    assert content_hash(html) != content_hash(PLAIN)


def test_html_to_text() -> None:
    text = html_to_text("<p>One</p>" + "<br>" * 10 + "<p>Two &lt;3</p>")

    assert text.startswith("One\n")
    assert text.endswith("Two <3")
    assert "\n\n\n\n" not in text
    assert html_to_text("") == ""


def test_html_to_text_falls_back_when_inscriptis_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(html: str) -> str:
        raise RecursionError

    monkeypatch.setattr(parse, "get_text", explode)

    assert html_to_text("<style>x{}</style><p>A &amp; B</p><div>C</div>") == "A & B\n\nC"


def test_every_string_is_storable() -> None:
    raw = (
        b"From: \xff\xfe <a@example.org>\nSubject: =?utf-7?Q?+2AA-?= \xc3\n"
        b"Content-Type: text/plain; charset=utf-7\n\n+2AA- lone surrogate\n"
    )
    msg = parse_message(raw)

    assert_storable(msg)
    assert msg.from_ is not None


# --- Hypothesis: parse_message returns a message for any bytes.

SAMPLES = [PLAIN, ALTERNATIVE, HTML_ONLY, MULTIPART_3]
SMALL = ParseLimits(max_bytes=4096, max_depth=3, max_parts=8, max_headers=20)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 12))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "insert":
            data[at:at] = draw(
                st.sampled_from([b"\n", b"\r\n", b"--", b"--b1", b"=?", b"?=", b":", b"<", b">", b'"', b"\x00"])
                | st.binary(max_size=8)
            )
        elif at < len(data):
            if action == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            else:
                del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_inner_parse_handles_arbitrary_bytes(raw: bytes) -> None:
    """parse_message's catch-all would hide a bug here: its inner function is what is fuzzed."""
    msg = parse._parse(raw, ParseLimits())

    assert msg.raw == raw and msg.content_hash == content_hash(raw)
    assert msg.quarantine_reason is not None or msg.from_ is not None
    assert_storable(msg)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.booleans())
def test_inner_parse_handles_mutated_messages(raw: bytes, small_limits: bool) -> None:
    msg = parse._parse(raw, SMALL if small_limits else ParseLimits())

    assert msg.raw == raw and msg.content_hash == content_hash(raw)
    assert msg.quarantine_reason is not None or msg.from_ is not None
    assert_storable(msg)


def test_parse_limits_is_a_frozen_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ParseLimits().max_parts = 1  # type: ignore[misc]
