"""Primitives under parse: base64, RFC 2047 words, the header block, addresses, file names, HTML.

Charsets (decoding text, the punycode guard) are in charsets.py.

Pure and bounded like parse itself: no I/O, and nothing here raises on bad mail.
"""

from __future__ import annotations

import binascii
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy, default
from email.utils import getaddresses
from functools import lru_cache
from html import unescape
from html.parser import HTMLParser

from mailsvc.charsets import clean_text, decode_bytes, decode_unknown
from mailsvc.model import Address

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_NOT_BASE64_BYTES = bytes(b for b in range(256) if _NOT_BASE64.fullmatch(bytes([b])))  # to delete, in one pass

# The email package's header line test (feedparser.headerRE), less its "From " and continuation arms.
_FIELD_LINE = re.compile(rb"[\041-\071\073-\176]*:")
# The line break that ends a field: one not followed by folding white space.
_FIELD_END = re.compile(rb"\r\n(?![ \t])|\r(?![\n \t])|\n(?![ \t])")
_BREAKS = re.compile(rb"\r\n|\r|\n")

_FILENAME_MAX = 200

_ATOM = r"[^\s\x00-\x1f\x7f\"<>()\[\],;:@\\]+"
_ADDR = re.compile(rf'(?:"[^"\s\\]*"|{_ATOM})@(?:{_ATOM}|\[[^\]\s\\]*\])')
_BARE_ADDR = re.compile(rf"{_ATOM}@{_ATOM}")
_ADDRESS_STRICT_MAX = 2048  # longer lists skip the strict parser: its time is quadratic
_ADDRESS_CACHED_MAX = 1024  # address fields up to this long are remembered (a bounded cache)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TAG = re.compile(r"<[^>]*>")

# The registry's parser is quadratic on some values (20 kB of Content-Type takes seconds) and
# the feed parser asks for Content-Type several times per part, so values are parsed once each,
# short ones freely, long ones from a per-message budget; 8 kB still admits mime4j's 7 kB boundary.
_HEADER_FREE = 256
_HEADER_MAX = 8192
_HEADER_BUDGET = 16 * 1024
_REGISTRY = HeaderRegistry()
_PLAIN_REGISTRY = HeaderRegistry(default_class=UnstructuredHeader, use_default_map=False)

SERIALIZE_POLICY = default.clone(refold_source="none", max_line_length=None)
"""Writes parsed headers back as they came, so an enclosed message keeps its own lines."""


def decode_base64(data: bytes) -> bytes:
    """Lenient base64: stray characters are skipped and missing padding is supplied."""
    data = _NOT_BASE64.sub(b"", data)
    if len(data) % 4 == 1:  # a lone trailing sextet carries no whole byte
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def decode_base64_text(text: str, piece: int = 1024 * 1024) -> bytes:
    """A base64 body (as the email parser holds it) decoded `piece` characters at a time: the email
    package makes three whole copies of a body first (about 100 MB for a 24 MB attachment)."""
    return b"".join(_base64_pieces(text, piece))


def base64_size(text: str, piece: int = 1024 * 1024) -> int:
    """How many bytes a base64 body decodes to, never holding more than a piece of them."""
    return sum(len(decoded) for decoded in _base64_pieces(text, piece))


def base64_size_of(pieces: Iterable[str]) -> int:
    """How many bytes a base64 body given in pieces (of any size) decodes to."""
    return sum(len(decoded) for decoded in decoded_pieces(pieces))


def padding_at_end_only(pieces: Iterable[str]) -> bool:
    """Whether the text the pieces make has "=" at its end only (`"=" not in text.rstrip().rstrip("=")`),
    read without joining them: from its first "=" on, only "=" signs and then white space."""
    state = 0  # 0: before the first "="; 1: in the "=" signs; 2: in the white space after them
    for piece in pieces:
        rest = piece
        if state == 0:
            at = rest.find("=")
            if at < 0:
                continue
            rest, state = rest[at:], 1
        if state == 1:
            rest = rest.lstrip("=")
            if not rest:
                continue
            state = 2
        if rest and not rest.isspace():
            return False
    return True


def _base64_pieces(text: str, piece: int) -> Iterator[bytes]:
    return decoded_pieces(text[start : start + piece] for start in range(0, len(text), piece))


def decoded_pieces(pieces: Iterable[str]) -> Iterator[bytes]:
    """A base64 body given in pieces (of any size), decoded a piece at a time (stray characters skipped)."""
    carry = b""
    for text in pieces:
        chunk = carry + text.encode("ascii", "replace").translate(None, _NOT_BASE64_BYTES)
        whole = len(chunk) - len(chunk) % 4
        yield binascii.a2b_base64(chunk[:whole])
        carry = chunk[whole:]
    yield decode_base64(carry)


def _word_bytes(kind: str, text: str) -> bytes:
    data = text.encode("utf-8", "replace")
    return binascii.a2b_qp(data, header=True) if kind in "qQ" else decode_base64(data)


def decode_words(value: str) -> tuple[str, str | None]:
    """`value` with its RFC 2047 encoded words decoded, and a reason when a charset was guessed.

    Lenient like mail clients: words need no surrounding space, and adjacent words in one charset
    are joined before decoding because mailers split multi-byte characters across them.
    """
    if "=?" not in value:
        return value, None
    out: list[str] = []
    problem: str | None = None
    run: bytearray | None = None
    run_charset = ""
    pos = 0

    def flush() -> None:
        nonlocal run, problem
        if run is not None:
            text, why = decode_bytes(bytes(run), run_charset)
            out.append(text)
            problem = problem or why
            run = None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[pos : match.start()]
        if gap and not (run is not None and gap.isspace()):
            flush()
            out.append(gap)
        charset = match.group(1).partition("*")[0]
        data = _word_bytes(match.group(2), match.group(3))
        if run is not None and charset.lower() == run_charset.lower():
            run += data
        else:
            flush()
            run, run_charset = bytearray(data), charset
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out), problem


def bounded_policy(problems: list[str]) -> EmailPolicy[EmailMessage]:
    """policy.default whose header parsing is memoised, bounded and never raises.

    What it had to cut or could not parse is appended to `problems`.
    """
    cache: dict[tuple[str, str], BaseHeader] = {}
    budget = _HEADER_BUDGET

    def header_factory(name: str, value: str) -> BaseHeader:
        nonlocal budget
        header = cache.get((name, value))
        if header is not None:
            return header
        if len(value) <= _HEADER_FREE:
            header = _short_header(name, value)
            if header is not None:
                cache[(name, value)] = header
                return header
        text = value
        if len(text) > _HEADER_FREE:
            cost = min(len(text), _HEADER_MAX)
            if cost <= budget:
                budget -= cost
                text = text[:cost]
            else:
                text = text[:_HEADER_FREE]
            if len(text) < len(value):
                problems.append(f"header:{name.lower()}: cut to {len(text)} characters for parsing")
        try:
            header = _REGISTRY(name, text)
        except Exception as exc:  # a parser bug on odd input must not lose the message
            problems.append(f"header:{name.lower()}: {type(exc).__name__}")
            header = _PLAIN_REGISTRY(name, "")
        cache[(name, value)] = header
        return header

    policy: EmailPolicy[EmailMessage] = default.clone(header_factory=header_factory)
    return policy


@lru_cache(maxsize=4096)
def _short_header(name: str, value: str) -> BaseHeader | None:
    """A short header parsed once for all messages (Content-Type, -Transfer-Encoding and -Disposition repeat
    in every part of every message); None when the parser fails on it (the caller records that)."""
    try:
        return _REGISTRY(name, value)
    except Exception:
        return None


def addresses(name: str, values: list[str], problems: list[str]) -> tuple[Address, ...]:
    """The mailboxes of address header `name`: decoded display names, addresses as written.

    The strict parser of the header registry first; for what it cannot read, or lists too long
    for its quadratic time, getaddresses; and last whatever looks like a mailbox. Entries without
    a usable address are dropped, repeats too.
    """
    found: dict[str, Address] = {}
    for value in values:
        for display, written in _address_pairs(name, clean_text(value), problems):
            addr = written.strip()
            if _ADDR.fullmatch(addr) and addr.lower() not in found:
                found[addr.lower()] = Address(addr=addr, name=_CONTROL.sub(" ", clean_text(display)).strip())
    return tuple(found.values())


def _address_pairs(name: str, value: str, problems: list[str]) -> list[tuple[str, str]]:
    if len(value) > _ADDRESS_CACHED_MAX:
        return _read_address_pairs(name, value, problems)
    pairs, found = _cached_address_pairs(name, value)
    problems.extend(found)
    return list(pairs)


@lru_cache(maxsize=4096)
def _cached_address_pairs(name: str, value: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The same correspondents write again and again: their address fields are read once."""
    problems: list[str] = []
    pairs = _read_address_pairs(name, value, problems)
    return tuple(pairs), tuple(problems)


def _read_address_pairs(name: str, value: str, problems: list[str]) -> list[tuple[str, str]]:
    if len(value) <= _ADDRESS_STRICT_MAX:
        try:
            header = _REGISTRY(name, value)
            pairs = [(a.display_name, a.addr_spec) for a in getattr(header, "addresses", ())]
        except Exception as exc:
            problems.append(f"header:{name}: {type(exc).__name__}")
            pairs = []
        if any(_ADDR.fullmatch(addr) for _, addr in pairs) or "@" not in value:
            return pairs
    try:
        pairs = [(decode_words(display)[0], addr) for display, addr in getaddresses([value])]
    except Exception as exc:  # it recurses per group (":") and per odd token
        problems.append(f"header:{name}: {type(exc).__name__}")
        pairs = []
    if any(_ADDR.fullmatch(addr.strip()) for _, addr in pairs):
        if len(value) <= _ADDRESS_STRICT_MAX:
            problems.append(f"header:{name}: malformed address list")
        return pairs
    # Neither parser found a mailbox ("John Doe john@example.org"): take what looks like one.
    problems.append(f"header:{name}: no parsable address")
    return [("", addr) for addr in _BARE_ADDR.findall(value)]


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """Top-level header fields as (name as written, unfolded value), and whether more followed.

    `cut` names the fields whose value was cut to its two ends.
    """

    fields: tuple[tuple[str, str], ...]
    too_many: bool
    cut: tuple[str, ...] = ()


def read_header_block(raw: bytes, max_fields: int, max_bytes: int, max_value: int) -> HeaderBlock:
    """The header fields at the top of `raw`, split where the email package splits them.

    Reads at most `max_bytes` and `max_fields` fields (an mbox "From " line counts as one);
    a value longer than `max_value` keeps its two ends, as References needs its first and last id.
    """
    fields: list[tuple[bytes, bytes]] = []
    cut: list[str] = []
    end = min(len(raw), max_bytes)
    pos = 0
    too_many = False
    while pos < end:
        match = _FIELD_END.search(raw, pos, end)
        stop = match.start() if match is not None else end
        chunk = raw[pos:stop]
        pos = match.end() if match is not None else end
        if not chunk:
            break  # the blank line that ends the header
        if chunk[:1] in (b" ", b"\t"):
            continue  # a continuation before any field is dropped, as the email package does
        if len(fields) >= max_fields:
            too_many = True
            break
        if chunk.startswith(b"From "):  # mbox envelope line
            fields.append((b"", b""))
            continue
        if _FIELD_LINE.match(chunk) is None:  # the body began without a blank line
            break
        name, _, value = chunk.partition(b":")
        if len(value) > max_value:
            value = value[: max_value // 2] + b" " + value[-(max_value // 2) :]
            cut.append(name.decode("ascii"))
        fields.append((name, _BREAKS.sub(b"", value).lstrip(b" \t")))
    return HeaderBlock(
        tuple((name.decode("ascii"), decode_unknown(value)) for name, value in fields if name),
        too_many,
        tuple(cut),
    )


def safe_filename(name: str) -> str:
    """`name` fit to store and show: no directories, control or format characters, leading dots."""
    name = clean_text(name).replace("\\", "/").rpartition("/")[2]
    # Format characters (category Cf) include the right-to-left override of "gpj.exe" tricks.
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith(("C", "Zl", "Zp")))
    name = name.strip().lstrip(".").strip()
    if len(name) > _FILENAME_MAX:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: _FILENAME_MAX - len(ext) - 1].rstrip() + "." + ext
        else:
            name = name[:_FILENAME_MAX].rstrip()
    return name or "attachment"


class _TagStripper(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "tr", "li", "table", "blockquote", "pre", "hr"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BREAKS or (len(tag) == 2 and tag[0] == "h" and tag[1].isdigit()):
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BREAKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def strip_tags(html: str) -> str:
    """Text of `html` by the standard library alone, for when inscriptis gives up."""
    stripper = _TagStripper()
    try:
        stripper.feed(html)
        stripper.close()
    except Exception:  # older html.parser raised on malformed declarations
        return unescape(_TAG.sub(" ", html))
    return "".join(stripper.chunks)
