"""Raw MIME built by hand for the corpus: exact control of charsets, transfer encodings and boundaries.

The standard library's generator picks random boundaries and re-encodes headers
as UTF-8; a benchmark corpus must be the same bytes for the same seed, and must
keep the ISO-8859-1 encoded-words real mail clients still send.
"""

from __future__ import annotations

import base64
import quopri
import urllib.parse
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.utils import formataddr


@dataclass(frozen=True)
class Entity:
    """One MIME entity: its own headers (Content-*) and its encoded body, LF line ends."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _ascii(text: str) -> bool:
    return text.isascii()


def header_charset(text: str, preferred: str) -> str:
    """ISO-8859-1 when asked for and the text fits, else UTF-8."""
    if preferred == "iso-8859-1":
        try:
            text.encode("iso-8859-1")
        except UnicodeEncodeError:
            return "utf-8"
        return "iso-8859-1"
    return "utf-8"


def encode_words(text: str, charset: str, *, q: bool = False) -> str:
    """RFC 2047 encoded-words (folded) for a non-ASCII value, the text itself otherwise."""
    if _ascii(text):
        return text
    cs = Charset(header_charset(text, charset))
    if q:
        cs.header_encoding = QP
    return Header(text, cs).encode(maxlinelen=76)


def address(name: str, addr: str, charset: str = "utf-8") -> str:
    if not name:
        return addr
    if _ascii(name):
        return formataddr((name, addr))
    return formataddr((name, addr), charset=header_charset(name, charset))


def fold_ids(ids: list[str]) -> str:
    return "\n ".join(ids)


def text(content: str, subtype: str, charset: str, cte: str, *, flowed: bool = False) -> Entity:
    if not content.endswith("\n"):
        content += "\n"
    charset = header_charset(content, charset)
    data = content.encode(charset)
    if cte == "8bit" and data.isascii():
        cte = "7bit"
    if cte == "quoted-printable":
        body = quopri.encodestring(data)
    elif cte == "base64":
        body = base64.encodebytes(data)
    else:
        body = data
    params = f'; charset="{charset}"' if subtype == "html" else f"; charset={charset.upper()}"
    if flowed:
        params += "; format=flowed"
    return Entity([("Content-Type", f"text/{subtype}{params}"), ("Content-Transfer-Encoding", cte)], body)


def attachment(data: bytes, content_type: str, filename: str, *, rfc2231: bool = True) -> Entity:
    if _ascii(filename):
        name_param = f'filename="{filename}"'
        type_param = f'name="{filename}"'
    elif rfc2231:
        quoted = urllib.parse.quote(filename.encode("utf-8"))
        name_param = f"filename*=utf-8''{quoted}"
        type_param = f"name*=utf-8''{quoted}"
    else:  # what Outlook does: RFC 2047 inside a parameter, against the letter of the RFC
        encoded = Header(filename, "utf-8").encode(maxlinelen=998)
        name_param = f'filename="{encoded}"'
        type_param = f'name="{encoded}"'
    return Entity(
        [
            ("Content-Type", f"{content_type};\n {type_param}"),
            ("Content-Disposition", f"attachment;\n {name_param}"),
            ("Content-Transfer-Encoding", "base64"),
        ],
        base64.encodebytes(data),
    )


def multipart(subtype: str, parts: list[Entity], boundary: str, params: str = "") -> Entity:
    chunks = [b"This is a multi-part message in MIME format.\n"]
    for part in parts:
        chunks.append(f"\n--{boundary}\n".encode())
        chunks.append(_head(part.headers))
        chunks.append(b"\n")
        chunks.append(part.body if part.body.endswith(b"\n") else part.body + b"\n")
    chunks.append(f"\n--{boundary}--\n".encode())
    return Entity([("Content-Type", f'multipart/{subtype};{params}\n boundary="{boundary}"')], b"".join(chunks))


def message_entity(raw: bytes) -> Entity:
    """A whole message as a part (message/rfc822), e.g. inside a bounce."""
    return Entity([("Content-Type", "message/rfc822"), ("Content-Description", "Undelivered Message")], raw)


def _head(headers: list[tuple[str, str]]) -> bytes:
    return "".join(f"{name}: {value}\n" for name, value in headers).encode("ascii")


def render(headers: list[tuple[str, str]], entity: Entity) -> bytes:
    """The message on the wire: headers, MIME-Version, the entity; CRLF line ends."""
    raw = _head([*headers, ("MIME-Version", "1.0"), *entity.headers]) + b"\n" + entity.body
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
