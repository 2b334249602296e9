"""Charsets under parse: what a label names, text from bytes in a declared or guessed charset, and the guard
that keeps punycode and idna labels from the email package's decoders.

Pure and bounded like parse itself: no I/O, and nothing here raises on bad mail.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

# Labels mailers use that Python lacks, or knows only as a narrower charset.
_CHARSET_ALIASES = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "iso-8859-8-e": "iso-8859-8",
    "iso-8859-6-e": "iso-8859-6",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "x-sjis": "shift_jis",
    "x-mac-roman": "mac_roman",
    "unicode-1-1-utf-7": "utf-7",
    # Browsers and mail clients read these labels as windows-1252; its smart quotes are common.
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
}
# Text codecs that are not charsets; punycode and idna also decode in quadratic time.
_UNSAFE_CODECS = frozenset({"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"})

# A charset token as the email package reads it: in an encoded word or an RFC 2231 value.
_UNSAFE_CHARSET = re.compile(rb"(?i)(=\?|\*\s*=\s*\"?)(\s*)(punycode|idna)")


@lru_cache(maxsize=256)
def _codec(charset: str) -> str | None:
    label = charset.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):
        return None
    return None if name in _UNSAFE_CODECS else name


def decode_unknown(data: bytes) -> str:
    """Text of bytes in no declared charset: UTF-8 when they are (or mostly are), else windows-1252, else latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", "replace")
    # More bytes in valid multi-byte sequences than broken ones: damaged UTF-8, keep it.
    if len(data) - len(text) > text.count("\ufffd"):
        return text
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """`data` as text in `charset`, and a short reason when the charset had to be guessed."""
    problem = None
    if charset and charset.strip("\"' \t"):
        codec = _codec(charset)
        if codec is None:
            problem = f"unknown charset {charset[:40]!r}"
        else:
            try:
                return data.decode(codec), None
            except (UnicodeError, LookupError):
                problem = f"bytes not valid {codec}"
            # Mislabelled UTF-8 is the usual case; else a few bad bytes should not cost the whole
            # text its charset. ASCII and UTF-8 labels tell nothing about other bytes: guess.
            if codec not in ("ascii", "utf-8"):
                for attempt, errors in (("utf-8", "strict"), (codec, "replace")):
                    try:
                        return data.decode(attempt, errors), problem
                    except (UnicodeError, LookupError):
                        pass
    elif data.isascii():
        return data.decode("ascii"), None
    text = decode_unknown(data)
    return text, problem or "undeclared 8-bit text"


def clean_text(value: str) -> str:
    """`value` with no lone surrogates, so it can be encoded as UTF-8 (and stored).

    The email package carries undecodable header and body bytes as surrogate escapes; they are
    read as UTF-8 when they are, else as windows-1252.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return value
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no escape made, e.g. from a UTF-7 body
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return decode_unknown(data)


def neutralise_charsets(raw: bytes) -> bytes:
    """`raw` with punycode/idna charset labels renamed, for the email package only.

    Its decoders would run them (quadratic time) and let their UnicodeError escape.
    """
    if not _mentions_unsafe_charset(raw):
        return raw
    return _UNSAFE_CHARSET.sub(rb"\1\2x-unsafe", raw)


_LOWER_PIECE = 1 << 20


def _mentions_unsafe_charset(raw: bytes) -> bool:
    """Whether "punycode" or "idna" occurs in `raw`, in any ASCII case. Lowered a megabyte at a time (ten
    times faster than a case-blind search, and never a second copy of a large message); pieces overlap by
    the longest word less one, so a word across two pieces is found."""
    for at in range(0, len(raw), _LOWER_PIECE):
        piece = raw[at : at + _LOWER_PIECE + len(b"punycode") - 1].lower()
        if b"punycode" in piece or b"idna" in piece:
            return True
    return False
