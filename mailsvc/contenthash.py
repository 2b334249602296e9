"""The duplicate key's content hash (pure): what the author wrote, equal for every delivery of one mail.

parse.py gives it to each InboundMessage; the store keys duplicates by Message-ID and this hash.
A large mail is read a piece at a time, never copied whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

__all__ = ["ORIGIN_FIELDS", "content_hash", "hash_in_pieces"]

# What the author's client wrote: the duplicate key hashes these and the body, so fields added on
# the way (trace, spam verdicts, ARC, forwarders' signatures, Resent-*) never make a second case.
ORIGIN_FIELDS = frozenset(
    {b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to", b"references", b"mime-version"}
)
PIECE_BYTES = 1024 * 1024


def content_hash(raw: bytes) -> str:
    """sha256 of the origin fields (From, To, Cc, Subject, Date, Message-ID, In-Reply-To, References,
    MIME-Version, Content-*) and the body, with LF line ends: equal for every delivery of one mail."""
    return hash_in_pieces(raw, PIECE_BYTES)


def hash_in_pieces(raw: bytes, piece: int) -> str:
    """content_hash, reading the body `piece` bytes at a time (a large mail is not copied whole)."""
    pieces = _lf_pieces(raw, piece)
    data = b""
    for part in pieces:
        data += part
        if _head_complete(data):
            break
    found = _digest(data, pieces)
    if found is None:  # not a header block we know: all of it counts, so nothing unlike is taken for a copy
        data = raw.replace(b"\r\n", b"\n")
        return hashlib.sha256((data.partition(b"\n")[2] if data.startswith(b"From ") else data).strip()).hexdigest()
    return found


def _lf_pieces(raw: bytes, size: int) -> Iterator[bytes]:
    """`raw` with CRLF as LF, in pieces (a CR ending one piece waits for the next)."""
    carry = b""
    for start in range(0, len(raw), size):
        part = carry + raw[start : start + size]
        carry = b"\r" if part.endswith(b"\r") else b""
        yield (part[:-1] if carry else part).replace(b"\r\n", b"\n")
    if carry:
        yield carry


def _head_complete(data: bytes) -> bool:
    start = 0
    if data.startswith(b"From "):  # the mbox envelope line also differs per delivery
        start = data.find(b"\n") + 1
        if not start:
            return False
    return data.startswith(b"\n", start) or data.find(b"\n\n", start) >= 0


def _digest(data: bytes, rest: Iterator[bytes]) -> str | None:
    """The hash of `data` (the start of the mail, its header block whole) and then `rest`; None without
    an origin field."""
    if data.startswith(b"From "):
        data = data.partition(b"\n")[2]
    if data.startswith(b"\n"):
        head, body = b"", data[1:]
    else:
        head, _, body = data.partition(b"\n\n")
    unfolded = head.replace(b"\n ", b" ").replace(b"\n\t", b"\t")
    fields = []
    for line in unfolded.split(b"\n"):
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key in ORIGIN_FIELDS or key.startswith(b"content-"):
            fields.append(key + b":" + b" ".join(value.split()))
    if not fields:
        return None
    # In the order written per field name; a forwarder may reorder the block, never one field's copies.
    fields.sort(key=lambda field: field.partition(b":")[0])
    digest = hashlib.sha256(b"\n".join(fields))
    digest.update(b"\n\n")
    digest.update(body)
    for part in rest:
        digest.update(part)
    return digest.hexdigest()
