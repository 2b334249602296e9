"""Outgoing MIME bytes (pure): header fields and parts written directly, for render.compose.

render gives values it has already made safe (one line, no control characters, addresses checked),
so the email package's header registry, which parses every value it is given again, is not needed
to write them: ASCII values are folded at white space, other text becomes RFC 2047 encoded words
(or stays UTF-8 where the mail goes with SMTPUTF8, RFC 6532), file names RFC 2231 parameters.
Bodies take the encoding the email package's content manager would choose. Lines end in CRLF.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import encode_rfc2231, formataddr

MAX_LINE = 78  # RFC 5322's recommended length, as the email package folds
CRLF = b"\r\n"
_LONGEST_WORD = 900  # RFC 5322 allows lines of 998 octets
_WORD_BYTES = 45  # of text in one encoded word: 10 + 60 (base64) + 2 characters, under RFC 2047's 75


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity: its header fields (already encoded lines) and its body."""

    headers: tuple[bytes, ...]
    body: bytes

    def as_bytes(self) -> bytes:
        return b"".join(self.headers) + CRLF + self.body


def fold(name: str, value: str) -> bytes:
    """`Name: value` folded at white space to lines of at most 78 where the words allow (CRLF ends it)."""
    out: list[str] = []
    line = f"{name}:"
    for word in value.split(" "):
        if not word:
            continue
        if len(line) + 1 + len(word) > MAX_LINE and line != f"{name}:":
            out.append(line)
            line = " " + word
        else:
            line += " " + word
    out.append(line)
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


def _encoded_words(text: str) -> str:
    """`text` as RFC 2047 encoded words (UTF-8, base64), each at most 75 characters; space-separated.
    A word never splits a character (RFC 2047 section 5)."""
    words: list[str] = []
    chunk = b""
    for char in text:
        data = char.encode("utf-8", "surrogatepass")
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(_word(chunk))
            chunk = b""
        chunk += data
    if chunk or not words:
        words.append(_word(chunk))
    return " ".join(words)


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def text_field(name: str, value: str, *, utf8: bool = False) -> bytes:
    """An unstructured field (Subject, X-Loop): as written when ASCII or when the mail is UTF-8;
    encoded words otherwise, and for a word too long for one line (they can be split)."""
    if (value.isascii() or utf8) and all(len(word) <= _LONGEST_WORD for word in value.split(" ")):
        return fold(name, value)
    return fold(name, _encoded_words(value))


def mailbox(display_name: str, addr: str, *, utf8: bool = False) -> str:
    """One `name <addr>` of an address field; a non-ASCII name is encoded unless the mail is UTF-8."""
    if not display_name:
        return addr
    if display_name.isascii():
        return formataddr((display_name, addr))
    if utf8:
        quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{addr}>'
    return f"{_encoded_words(display_name)} <{addr}>"


def address_field(name: str, mailboxes: Sequence[str]) -> bytes:
    """From, To, Reply-To: mailboxes (from `mailbox`) separated by commas, folded between words."""
    return fold(name, ", ".join(mailboxes))


def text_part(text: str, subtype: str) -> Part:
    """A text/<subtype> part in UTF-8 with the transfer encoding the email package would pick:
    7bit or 8bit when every line fits, else the shorter of quoted-printable and base64."""
    cte, body = _encode_text(text)
    headers = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'.encode(),
        f"Content-Transfer-Encoding: {cte}\r\n".encode(),
    )
    return Part(headers, body)


def _encode_text(text: str) -> tuple[str, bytes]:
    lines = text.encode("utf-8").splitlines()
    if max((len(x) for x in lines), default=0) <= MAX_LINE:
        body = CRLF.join(lines) + CRLF
        return ("7bit" if body.isascii() else "8bit"), body
    sniff = b"\n".join(lines[:10]) + b"\n"
    if len(_quoted_printable(sniff)) > len(binascii.b2a_base64(sniff)):
        return "base64", _base64(b"\n".join(lines) + b"\n")  # line ends as the email package encodes them
    return "quoted-printable", _quoted_printable(b"\n".join(lines) + b"\n")


def _quoted_printable(data: bytes) -> bytes:
    """Quoted-printable of text with LF line ends, written with CRLF line breaks (soft ones at 76)."""
    return binascii.b2a_qp(data, istext=True).replace(b"\n", CRLF)


def _base64(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + CRLF for i in range(0, len(encoded), 76))


def attachment_part(data: bytes, content_type: str, filename: str) -> Part:
    """A file as it was (base64), with its name as a Content-Disposition parameter."""
    if filename.isascii():
        param = 'filename="' + filename.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        param = "filename*=" + encode_rfc2231(filename, "utf-8")
    headers = (
        f"Content-Type: {content_type}\r\n".encode(),
        b"Content-Transfer-Encoding: base64\r\n",
        fold("Content-Disposition", f"attachment; {param}"),
    )
    return Part(headers, _base64(data))


def multipart(subtype: str, parts: Sequence[Part]) -> Part:
    """A multipart/<subtype> of `parts`, with a boundary found in none of them."""
    bodies = [p.as_bytes() for p in parts]
    while True:
        boundary = f"==============={secrets.randbelow(10**19)}=="
        delimiter = b"--" + boundary.encode()
        if not any(delimiter in b for b in bodies):
            break
    body = b"".join(delimiter + CRLF + b + CRLF for b in bodies) + delimiter + b"--" + CRLF
    header = f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n'.encode()
    return Part((header,), body)
