import re
from email import message_from_bytes, message_from_string
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8, default

from hypothesis import given
from hypothesis import strategies as st

from mailsvc import mimewrite
from mailsvc.render import header_text


def _mail(fields: list[bytes], body: mimewrite.Part) -> EmailMessage:
    raw = b"".join(fields) + b"MIME-Version: 1.0\r\n" + body.as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only, no bare LF or CR
    mail = message_from_bytes(raw, policy=default)
    assert isinstance(mail, EmailMessage)
    return mail


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=300).map(header_text)


@given(subject=_TEXT, name=_TEXT)
def test_any_subject_and_display_name_read_back_as_written(subject: str, name: str) -> None:
    fields = [
        mimewrite.text_field("Subject", subject),
        mimewrite.address_field("From", [mimewrite.mailbox(name, "help@example.org")]),
    ]
    raw = b"".join(fields)
    assert raw.isascii()
    assert all(len(word) <= 75 for word in re.findall(rb"=\?utf-8\?b\?[^?]*\?=", raw))  # RFC 2047
    mail = _mail(fields, mimewrite.text_part("x", "plain"))
    assert str(mail["Subject"]) == subject
    (sender,) = mail["From"].addresses
    assert sender.addr_spec == "help@example.org"
    # The email package reads a space where a long name's encoded word was split (as it does in
    # what its own header registry writes).
    assert sender.display_name.replace(" ", "") == name.replace(" ", "")


def test_utf8_mail_keeps_text_as_it_is() -> None:
    fields = [
        mimewrite.text_field("Subject", "Drucker im 3. Stock läuft nicht", utf8=True),
        mimewrite.address_field("To", [mimewrite.mailbox("Zoë", "zoë@bücher.example", utf8=True)]),
    ]
    assert "Subject: Drucker im 3. Stock läuft nicht\r\n".encode() in fields[0]
    assert fields[1] == 'To: "Zoë" <zoë@bücher.example>\r\n'.encode()
    mail = message_from_string((b"".join(fields) + b"\r\nx\r\n").decode(), policy=SMTPUTF8)
    assert mail["To"].addresses[0].username == "zoë"


def test_a_long_subject_is_folded_and_a_word_too_long_for_a_line_is_encoded() -> None:
    words = " ".join(f"word{i}" for i in range(60))
    folded = mimewrite.text_field("Subject", words)
    assert folded.count(b"\r\n ") >= 4 and all(len(line) <= 78 for line in folded.split(b"\r\n"))
    huge = "x" * 2000
    mail = _mail([mimewrite.text_field("Subject", f"a {huge} b")], mimewrite.text_part("x", "plain"))
    assert str(mail["Subject"]) == f"a {huge} b"


@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=2000))
def test_text_parts_read_back_with_the_encoding_the_email_package_would_choose(text: str) -> None:
    part = mimewrite.text_part(text, "plain")
    mail = _mail([], part)
    written = EmailMessage()
    written.set_content(text)
    expected = message_from_bytes(written.as_bytes(policy=SMTP), policy=default)
    assert isinstance(expected, EmailMessage)
    assert mail["Content-Transfer-Encoding"] == expected["Content-Transfer-Encoding"]
    assert mail.get_content() == expected.get_content()


def test_attachment_keeps_bytes_and_a_non_ascii_file_name() -> None:
    data = bytes(range(256)) * 10
    body = mimewrite.multipart(
        "mixed",
        [mimewrite.text_part("see attached", "plain"), mimewrite.attachment_part(data, "image/png", "Bild ä.png")],
    )
    mail = _mail([], body)
    (part,) = list(mail.iter_attachments())
    assert part.get_filename() == "Bild ä.png"
    assert part.get_content_type() == "image/png" and part.get_payload(decode=True) == data
    text = mail.get_body(("plain",))
    assert text is not None and text.get_content() == "see attached\r\n"


def test_the_boundary_is_never_in_a_part(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    taken = "===============1=="
    draws = iter([1, 1, 2])
    monkeypatch.setattr("mailsvc.mimewrite.secrets.randbelow", lambda _: next(draws))
    body = mimewrite.multipart("mixed", [mimewrite.text_part(f"--{taken}\n", "plain")])
    assert b'boundary="===============2=="' in body.headers[0]
    mail = _mail([], body)
    assert [p.get_content() for p in mail.iter_parts()] == [f"--{taken}\r\n"]
