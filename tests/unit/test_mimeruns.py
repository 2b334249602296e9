"""Long base64 runs set aside while the email package parses: the same message read, in less memory."""

from __future__ import annotations

import base64
import os
from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsvc.mime import padding_at_end_only
from mailsvc.mimeruns import set_aside
from mailsvc.parse import ParseLimits, parse_message
from tests.unit.factories import parse_with_peak

WHOLE = ParseLimits(set_aside_over=2**62)  # nothing set aside: the email package reads every line
EVERY = ParseLimits(set_aside_over=0)  # every run of base64 lines set aside, however short


def _request(attachments: list[tuple[bytes, str]], text: str = "The log is attached.\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.net>"
    msg["To"] = "help@example.org"
    msg["Subject"] = "Backup log"
    msg["Message-ID"] = "<log@example.net>"
    msg.set_content(text)
    for data, name in attachments:
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return msg


def _read_alike(raw: bytes) -> None:
    for keep in (True, False):
        assert parse_message(raw, EVERY, attachment_data=keep) == parse_message(raw, WHOLE, attachment_data=keep)


def test_a_message_is_the_token_lines_put_back() -> None:
    raw = _request([(os.urandom(300_000), "a.bin"), (os.urandom(100_000), "b.bin")]).as_bytes()
    skeleton, runs = set_aside(raw)
    assert len(runs.spans) == 2 and len(skeleton) < 2_000
    assert runs.restore(skeleton.decode("ascii")).encode("ascii") == raw
    small = b"From: a@example.net\n\nshort\n"
    skeleton, runs = set_aside(small)
    assert skeleton is small and runs.spans == ()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=3),
    crlf=st.booleans(),
    enclose=st.booleans(),
    width=st.sampled_from([0, 60, 76, 200]),
    tail=st.sampled_from(["", "\n", "\r\n", "==\n", "=\n=\n", " \n", "\nepilogue text\n"]),
)
def test_any_layout_reads_as_the_email_package_reads_it_whole(
    sizes: list[int], crlf: bool, enclose: bool, width: int, tail: str
) -> None:
    msg = _request([(os.urandom(n), f"f{i}.bin") for i, n in enumerate(sizes)])
    if enclose:  # a forwarded mail with its attachments: serialised back as it came
        outer = _request([])
        outer.add_attachment(msg)
        msg = outer
    raw = msg.as_bytes()
    if width:  # base64 wrapped otherwise than the email package writes it
        encoded = base64.b64encode(os.urandom(sizes[0])).decode()
        lines = "\n".join(encoded[i : i + width] for i in range(0, len(encoded), width))
        raw = (
            b"From: Alice <alice@example.net>\nSubject: one part\nContent-Type: application/pdf; name=x.pdf\n"
            b"Content-Transfer-Encoding: base64\n\n" + lines.encode() + tail.encode()
        )
    if crlf:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    _read_alike(raw)


def test_odd_bodies_read_as_the_email_package_reads_them_whole() -> None:
    big = base64.encodebytes(os.urandom(1_200_000))
    head = b"From: Alice <alice@example.net>\nSubject: odd\nMIME-Version: 1.0\n"
    mixed = head + b'Content-Type: multipart/mixed; boundary="b"\n\n'
    for raw in (
        # padding in the middle: the email package decodes it its own way, and so must the set-aside read
        head + b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + big + b"QQ==\n" + big,
        # a base64 body in an inline text part, and a run in the preamble and epilogue
        mixed
        + big
        + b"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(b"Hello\n" * 200_000)
        + b"--b--\n"
        + big,
        # no usable boundary: the whole body is one leaf
        head + b'Content-Type: multipart/mixed; boundary="nowhere"\n\n' + big,
        # a message quoting the token mark: another mark is taken
        head + b"\nMAILSVC-SET-ASIDE-0.\n" + big + b"MAILSVC-SET-ASIDE-0.\n",
        # a CTE with white space, which the email package does not decode
        mixed + b"--b\nContent-Type: image/png\nContent-Transfer-Encoding: base64 \n\n" + big + b"--b--\n",
        # no line end at the end of the message
        head + b"Content-Type: image/png\nContent-Transfer-Encoding: base64\n\n" + big.rstrip(),
    ):
        _read_alike(raw)


def test_filing_a_large_attachment_holds_little_beside_the_message() -> None:
    payload = os.urandom(6 * 1024 * 1024)
    raw = _request([(payload, "backup.log")]).as_bytes()
    msg, peak = parse_with_peak(raw, attachment_data=False)
    (attachment,) = msg.attachments
    assert (attachment.filename, attachment.size, attachment.data) == ("backup.log", len(payload), b"")
    # Given the whole message, the email package held its lines and their join: 2.9 times the message.
    assert peak < 0.75 * len(raw), f"{peak / len(raw):.2f} times the message"


def test_forwarding_a_large_attachment_holds_its_bytes_once_beside_the_message() -> None:
    payload = os.urandom(6 * 1024 * 1024)
    raw = _request([(payload, "backup.log")]).as_bytes()
    msg, peak = parse_with_peak(raw)
    assert msg.attachments[0].data == payload
    assert peak < 1.8 * len(raw), f"{peak / len(raw):.2f} times the message"


@given(st.lists(st.text(alphabet="AB=\n \t", max_size=8), max_size=6))
def test_padding_at_end_only_reads_pieces_as_the_whole(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert padding_at_end_only(pieces) == ("=" not in text.rstrip().rstrip("="))
