"""Large bodies are read in pieces: the same bytes as the email package reads, without its whole copies."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsvc.charsets import neutralise_charsets
from mailsvc.mime import base64_size, decode_base64_text
from mailsvc.model import MailRef
from mailsvc.parse import parse_message
from mailsvc.store import Store
from tests.unit.factories import parse_with_peak


@given(data=st.binary(max_size=400), width=st.integers(1, 90), piece=st.integers(1, 64))
def test_base64_decoded_in_pieces_of_any_size_reads_as_whole(data: bytes, width: int, piece: int) -> None:
    encoded = base64.b64encode(data).decode()
    text = "\r\n".join(encoded[i : i + width] for i in range(0, len(encoded), width)) + "\r\n"
    assert decode_base64_text(text, piece) == data
    assert base64_size(text, piece) == len(data)


def _mail_with(payload: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.net>"
    msg["To"] = "help@example.org"
    msg["Subject"] = "Backup log"
    msg.set_content("The log is attached.\n")
    msg.add_attachment(payload, maintype="application", subtype="octet-stream", filename="backup.log")
    return msg.as_bytes()


def test_a_large_attachment_is_read_as_the_email_package_reads_it_in_less_memory() -> None:
    payload = bytes(range(256)) * (12 * 1024)  # 3 MB
    raw = _mail_with(payload)
    (part,) = message_from_bytes(raw, policy=default).iter_attachments()  # type: ignore[attr-defined]
    assert part.get_payload(decode=True) == payload
    msg, peak = parse_with_peak(raw)
    (attachment,) = msg.attachments
    assert (attachment.filename, attachment.size, attachment.data) == ("backup.log", len(payload), payload)
    # Fed whole and decoded by the email package: 6.7 times (three copies of the encoded body at once); 3.2 now.
    assert peak < 4.5 * len(raw), f"{peak / len(raw):.1f} times the message"


def test_filing_keeps_an_attachments_name_and_size_not_its_bytes() -> None:
    payload = bytes(range(256)) * (12 * 1024)
    (attachment,) = parse_message(_mail_with(payload), attachment_data=False).attachments
    assert (attachment.filename, attachment.size, attachment.data) == ("backup.log", len(payload), b"")
    (small,) = parse_message(_mail_with(b"tiny"), attachment_data=False).attachments
    assert (small.size, small.data) == (4, b"")


def test_a_large_message_is_stored_byte_exact(tmp_path: Path) -> None:
    raw = _mail_with(os.urandom(3 * 1024 * 1024))
    store = Store.open(tmp_path / "mailsvc.db")
    msg = parse_message(raw, attachment_data=False)
    with store.transaction():
        row = store.quarantine(msg, MailRef("INBOX", 1, 1), "test", datetime.now(UTC))
    assert store.message_raw(row) == raw
    assert store.message_hash(row) == msg.content_hash
    store.close()


@pytest.mark.parametrize("offset", [0, 1, 4, 7, 8])
def test_an_unsafe_charset_label_across_the_pieces_of_a_large_message_is_found(offset: int) -> None:
    """The label is looked for a megabyte at a time: one that straddles two pieces is still renamed."""
    head = b"x" * ((1 << 20) - offset)
    raw = head + b"=?PunyCode?q?abc?= tail"
    assert neutralise_charsets(raw) == head + b"=?x-unsafe?q?abc?= tail"
    assert neutralise_charsets(head + b" plain tail") == head + b" plain tail"
