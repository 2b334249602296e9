"""parse: raw bytes from the IMAP source -> InboundMessage, the first pure stage of the data path.

Never raises and does no I/O; what could not be decoded is kept raw and named in `defects`.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.feedparser import BytesFeedParser
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import parsedate_to_datetime

from inscriptis import get_text

from mailsvc.charsets import clean_text, decode_bytes, neutralise_charsets
from mailsvc.contenthash import content_hash
from mailsvc.mime import (
    SERIALIZE_POLICY,
    addresses,
    base64_size,
    base64_size_of,
    bounded_policy,
    decode_base64,
    decode_base64_text,
    decode_words,
    decoded_pieces,
    read_header_block,
    safe_filename,
    strip_tags,
)
from mailsvc.mimeruns import RUN_MIN, SetAside, set_aside
from mailsvc.model import Attachment, InboundMessage

__all__ = ["ParseLimits", "content_hash", "html_to_text", "normalize_msgid", "parse_message", "safe_filename"]


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_depth: int = 20  # MIME nesting
    max_parts: int = 500
    max_headers: int = 1000  # header fields in the top-level header block
    set_aside_over: int = RUN_MIN  # base64 lines in a row the email parser is not given (mimeruns)


_HEADER_SCAN = 256 * 1024  # of a message over max_bytes, only this much is read for its headers
_HEADER_VALUE_MAX = 64 * 1024
_HTML_MAX = 2 * 1024 * 1024
_DEFECTS_MAX = 100
_FEED_BYTES = 1024 * 1024

_MSGID = re.compile(r"<([^<>]*)>")
_SPACE = re.compile(r"[\s\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LINEBREAK = re.compile(r"\r\n|\r|\n")
_BLANK_RUN = re.compile(r"\n{4,}")


def parse_message(raw: bytes, limits: ParseLimits = ParseLimits(), *, attachment_data: bool = True) -> InboundMessage:
    """What the help desk needs of one message; over a limit or without a sender it is quarantined.

    Without `attachment_data`, attachments keep their name and size but not their bytes (filing stores
    no more; the mail that forwards them parses the stored message again)."""
    try:
        return _parse(bytes(raw), limits, attachment_data)
    except Exception as exc:  # the contract is "never raises": a bug here must not stop ingestion
        data = raw if isinstance(raw, bytes) else b""
        return InboundMessage(
            raw=data,
            content_hash=hashlib.sha256(data).hexdigest(),
            message_id=None,
            in_reply_to=(),
            references=(),
            from_=None,
            reply_to=(),
            to=(),
            cc=(),
            subject="",
            date=None,
            text="",
            html=None,
            attachments=(),
            headers={},
            return_path=None,
            defects=(f"parse: {type(exc).__name__}",),
            quarantine_reason="unparseable",
        )


def normalize_msgid(value: str) -> str | None:
    """The first message id in `value` as "<...>" without white space, or None if there is none."""
    match = _MSGID.search(value)
    if match is not None:
        core = _SPACE.sub("", match.group(1))
    else:  # a bare id, as some mailers write Message-ID
        core = next((token for token in value.split() if "@" in token), "")
    return f"<{core}>" if core else None


def html_to_text(html: str) -> str:
    """Readable text of an HTML body (its first 2 MB), at most two blank lines in a row."""
    snippet = html[:_HTML_MAX]
    try:
        text = get_text(snippet)
    except Exception:  # inscriptis and lxml on hostile markup: recursion, parser errors
        text = strip_tags(snippet)
    text = "\n".join(line.rstrip() for line in _LINEBREAK.split(clean_text(text)))
    return _BLANK_RUN.sub("\n\n\n", text).strip()


class _TooManyParts(Exception):
    """More MIME parts than ParseLimits.max_parts: stops the email parser early."""


@dataclass(slots=True)
class _Body:
    plain: list[str] = field(default_factory=list)
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    reason: str | None = None
    keep_data: bool = True  # attachments' bytes, or only their size
    runs: SetAside = field(default_factory=lambda: SetAside(b"", ()))  # base64 runs the parser was not given


@dataclass(frozen=True, slots=True)
class _PartInfo:
    content_type: str
    charset: str | None
    disposition: str | None
    filename: str | None
    content_id: str | None

    @property
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]


def _parse(raw: bytes, limits: ParseLimits, attachment_data: bool = True) -> InboundMessage:
    problems: list[str] = []
    too_large = len(raw) > limits.max_bytes
    block = read_header_block(raw, limits.max_headers, _HEADER_SCAN if too_large else len(raw), _HEADER_VALUE_MAX)
    reason = "too_large" if too_large else "too_many_headers" if block.too_many else None
    body = _Body()
    if reason is None:
        body = _read_body(raw, limits, problems, attachment_data)
        reason = body.reason

    problems.extend(f"header:{name.lower()}: cut to its first and last {_HEADER_VALUE_MAX // 2}" for name in block.cut)
    raw_headers: dict[str, list[str]] = {}
    for name, value in block.fields:
        raw_headers.setdefault(name.lower(), []).append(value)
    headers = {name: tuple(_header_text(name, v, problems) for v in vs) for name, vs in raw_headers.items()}
    senders = addresses("from", raw_headers.get("from", []), problems)
    if reason is None and not senders:
        reason = "no_sender"
    message_ids = raw_headers.get("message-id", [])
    text = "".join(chunk if chunk.endswith("\n") else chunk + "\n" for chunk in body.plain[:-1])
    text += body.plain[-1] if body.plain else ""
    if not text.strip() and body.html is not None:
        text = html_to_text(body.html)
    return InboundMessage(
        raw=raw,
        content_hash=content_hash(raw),
        message_id=normalize_msgid(message_ids[0]) if message_ids else None,
        in_reply_to=_msgids(raw_headers.get("in-reply-to", [])),
        references=_msgids(raw_headers.get("references", [])),
        from_=senders[0] if senders else None,
        reply_to=addresses("reply-to", raw_headers.get("reply-to", []), problems),
        to=addresses("to", raw_headers.get("to", []), problems),
        cc=addresses("cc", raw_headers.get("cc", []), problems),
        subject=headers.get("subject", ("",))[0],
        date=_date(raw_headers.get("date", []), problems),
        text=text,
        html=body.html,
        attachments=tuple(body.attachments),
        headers=headers,
        return_path=_return_path(raw_headers.get("return-path", [])),
        defects=tuple(dict.fromkeys(problems))[:_DEFECTS_MAX],
        quarantine_reason=reason,
    )


def _read_body(raw: bytes, limits: ParseLimits, problems: list[str], attachment_data: bool = True) -> _Body:
    policy = bounded_policy(problems)
    skeleton, runs = set_aside(neutralise_charsets(raw), limits.set_aside_over)
    try:
        message = _parse_mime(skeleton, policy, limits.max_parts)
    except _TooManyParts:
        return _Body(reason="too_many_parts")
    except RecursionError:
        return _Body(reason="too_deep")
    except Exception as exc:
        problems.append(f"mime: {type(exc).__name__}")
        return _Body(reason="unparseable")
    return _walk(message, limits, problems, attachment_data, runs)


def _parse_mime(raw: bytes, parse_policy: EmailPolicy[EmailMessage], max_parts: int) -> EmailMessage:
    left = max_parts

    def new_part(policy: EmailPolicy[EmailMessage] = parse_policy) -> EmailMessage:
        nonlocal left
        left -= 1
        if left < 0:
            raise _TooManyParts
        return EmailMessage(policy=policy)

    parser: BytesFeedParser[EmailMessage] = BytesFeedParser(_factory=new_part, policy=parse_policy)
    left = max_parts  # the parser calls its factory once to learn its signature
    # In pieces: fed whole, the parser holds the message as one string and as its lines at the same time.
    for start in range(0, len(raw), _FEED_BYTES):
        parser.feed(raw[start : start + _FEED_BYTES])
    return parser.close()


def _walk(
    message: EmailMessage, limits: ParseLimits, problems: list[str], attachment_data: bool, runs: SetAside
) -> _Body:
    """Body and attachments, depth first in order; attached messages are not descended."""
    body = _Body(keep_data=attachment_data, runs=runs)
    stack: list[tuple[EmailMessage, int, str]] = [(message, 0, "")]
    seen = 0
    while stack:
        part, depth, parent = stack.pop()
        seen += 1
        if seen > limits.max_parts:
            body.reason = "too_many_parts"
            break
        if depth > limits.max_depth:
            body.reason = "too_deep"
            break
        problems.extend(type(defect).__name__ for defect in part.defects)
        try:
            info = _part_info(part)
            if not part.is_multipart():
                _add_leaf(part, info, parent, body, problems)
            elif info.maintype == "message":
                for block in part.walk():
                    body.runs.put_back(block)
                enclosed = _enclosed(part, info, problems)
                body.attachments.append(enclosed if body.keep_data else replace(enclosed, data=b""))
            else:
                children = [child for child in part.get_payload() if isinstance(child, EmailMessage)]
                subtype = info.content_type.partition("/")[2]
                stack.extend((child, depth + 1, subtype) for child in reversed(children))
        except Exception as exc:  # one odd part must not cost the rest of the message
            problems.append(f"part: {type(exc).__name__}")
    return body


def _part_info(part: EmailMessage) -> _PartInfo:
    ctype = part.get("content-type")
    params = getattr(ctype, "params", {})
    content_type = str(getattr(ctype, "content_type", "") or part.get_default_type()).lower()
    disposition = part.get("content-disposition")
    filename = getattr(disposition, "params", {}).get("filename") or params.get("name")
    if filename and "\ufffd" in filename:
        filename = _eight_bit_filename(part) or filename
    if filename and "=?" in filename:  # an encoded word in a parameter: wrong, and common
        filename = decode_words(filename)[0]
    content_id = part.get("content-id")
    cid = _SPACE.sub("", str(content_id)).strip("<>") if content_id is not None else ""
    return _PartInfo(
        content_type=content_type,
        charset=params.get("charset"),
        disposition=getattr(disposition, "content_disposition", None),
        filename=filename or None,
        content_id=cid or None,
    )


def _eight_bit_filename(part: EmailMessage) -> str | None:
    """A raw UTF-8 (or windows-1252) file name, which the header registry replaces by U+FFFD."""
    policy = part.policy
    for name, value in part.raw_items():
        key = name.lower()
        if key in ("content-disposition", "content-type") and isinstance(policy, EmailPolicy):
            header = policy.header_factory(name, clean_text(_LINEBREAK.sub("", value)))
            found = getattr(header, "params", {}).get("filename" if key == "content-disposition" else "name")
            if found and "\ufffd" not in found:
                return str(found)
    return None


def _add_leaf(part: EmailMessage, info: _PartInfo, parent: str, body: _Body, problems: list[str]) -> None:
    inline_text = info.disposition != "attachment" and info.filename is None
    if inline_text and info.content_type == "text/html":
        if body.html is None:
            body.runs.put_back(part)
            body.html = _part_text(part, info, problems)
        return
    # A multipart without usable boundary reaches here as one leaf: mail clients show it as text.
    if inline_text and (info.content_type == "text/plain" or info.maintype == "multipart"):
        # Later inline text in a multipart/mixed continues the body (text around an inline image,
        # a list footer); inside multipart/alternative it would repeat it.
        if not body.plain or parent == "mixed":
            body.runs.put_back(part)
            text = _part_text(part, info, problems)
            if text.strip() or not body.plain:
                body.plain.append(text)
        return
    if body.keep_data:
        size, data = -1, _payload_of(part, problems, body.runs)
    else:
        size, data = _payload_size(part, problems, body.runs), b""
    body.attachments.append(
        Attachment(
            filename=safe_filename(info.filename or ""),
            content_type=info.content_type,
            size=len(data) if size < 0 else size,
            data=data,
            content_id=info.content_id,
            inline=info.content_id is not None and info.disposition != "attachment",
        )
    )


def _payload(part: EmailMessage, problems: list[str]) -> bytes:
    try:
        header = part.get("content-transfer-encoding")
        cte = str(header or "").lower()
        # The email package compares the encoding with its white space and then skips decoding.
        if cte != cte.strip() and cte.strip() in ("base64", "quoted-printable"):
            encoded = str(part.get_payload(decode=False)).encode("utf-8", "replace")
            return decode_base64(encoded) if cte.strip() == "base64" else binascii.a2b_qp(encoded)
        if cte == "base64" and _large_plain_base64(part):
            return decode_base64_text(str(part.get_payload(decode=False)))
        data = part.get_payload(decode=True)
    except Exception as exc:
        problems.append(f"payload: {type(exc).__name__}")
        return b""
    return data if isinstance(data, bytes) else b""


def _payload_of(part: EmailMessage, problems: list[str], runs: SetAside) -> bytes:
    """`_payload` of a leaf whose large base64 body the parser was not given: decoded in pieces from the
    message's bytes, not put back whole first."""
    held = runs.base64_body(part, _FEED_BYTES)
    if held is not None:
        return b"".join(decoded_pieces(runs.pieces(held)))
    runs.put_back(part)
    return _payload(part, problems)


def _payload_size(part: EmailMessage, problems: list[str], runs: SetAside) -> int:
    """The decoded size of a leaf's body, without its bytes (a large base64 body is never decoded whole,
    nor one the parser was not given put back whole)."""
    held = runs.base64_body(part, _FEED_BYTES)
    if held is not None:
        return base64_size_of(runs.pieces(held))
    runs.put_back(part)
    if str(part.get("content-transfer-encoding") or "").lower() == "base64" and _large_plain_base64(part):
        return base64_size(str(part.get_payload(decode=False)))
    return len(_payload(part, problems))


def _large_plain_base64(part: EmailMessage) -> bool:
    """A body over a piece, with padding at its end only (so decoding it in pieces reads what the email
    package would)."""
    payload = part.get_payload(decode=False)
    if not isinstance(payload, str) or len(payload) <= _FEED_BYTES:
        return False
    return "=" not in payload.rstrip().rstrip("=")


def _part_text(part: EmailMessage, info: _PartInfo, problems: list[str]) -> str:
    text, problem = decode_bytes(_payload(part, problems), info.charset)
    if problem:
        problems.append(f"charset: {problem}")
    text = clean_text(text)
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _enclosed(part: EmailMessage, info: _PartInfo, problems: list[str]) -> Attachment:
    """An attached message (or delivery status) as one attachment of its own bytes."""
    payload = [block for block in part.get_payload() if isinstance(block, EmailMessage)]
    is_message = info.content_type in ("message/rfc822", "message/global") and bool(payload)
    data = b"".join(_serialize(block, problems) for block in (payload[:1] if is_message else payload))
    name = info.filename or ""
    if is_message and not name:  # the sender's file name wins; else the subject, as clients save it
        subject = next((v for k, v in payload[0].raw_items() if k.lower() == "subject"), "")
        stem = _header_text("subject", _LINEBREAK.sub("", subject), problems) or "message"
        name = stem.replace("/", "_").replace("\\", "_")[:190] + ".eml"
    return Attachment(
        filename=safe_filename(name),
        content_type=info.content_type,
        size=len(data),
        data=data,
        content_id=info.content_id,
    )


def _serialize(message: EmailMessage, problems: list[str]) -> bytes:
    try:
        return message.as_bytes(policy=SERIALIZE_POLICY)
    except Exception as exc:  # the bytes generator cannot write a broken multipart's text (U+FFFD)
        failure = exc
    try:
        return message.as_string(policy=SERIALIZE_POLICY).encode("utf-8", "surrogateescape")
    except Exception:
        problems.append(f"enclosed: {type(failure).__name__}")
        return b""


def _header_text(name: str, value: str, problems: list[str]) -> str:
    text, problem = decode_words(clean_text(value).strip())
    if problem:
        problems.append(f"header:{name}: {problem}")
    return _CONTROL.sub(" ", clean_text(text)).strip()


def _msgids(values: list[str]) -> tuple[str, ...]:
    ids: dict[str, None] = {}
    for value in values:
        found = [f"<{core}>" for core in (_SPACE.sub("", c) for c in _MSGID.findall(value)) if core]
        if not found:
            bare = normalize_msgid(value)
            found = [bare] if bare else []
        ids.update(dict.fromkeys(found))
    return tuple(ids)


def _date(values: list[str], problems: list[str]) -> datetime | None:
    if not values:
        return None
    try:
        parsed = parsedate_to_datetime(clean_text(values[0]).strip()[:256])
    except Exception:
        problems.append("header:date: unparseable")
        return None
    # RFC 5322: "-0000" means the zone is unknown; UTC is the only honest reading.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _return_path(values: list[str]) -> str | None:
    if not values:
        return None
    value = clean_text(values[0])
    match = _MSGID.search(value)
    inner = match.group(1) if match is not None else value
    return _SPACE.sub("", inner)
