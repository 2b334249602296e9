"""The duplicate key's hash, read in pieces, is the hash of the whole (stored keys stay valid)."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from mailsvc.contenthash import ORIGIN_FIELDS, hash_in_pieces


def whole(raw: bytes) -> str:
    """content_hash as it was written first: the mail with CRLF as LF, copied whole."""
    data = raw.replace(b"\r\n", b"\n")
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
        return hashlib.sha256(data.strip()).hexdigest()
    fields.sort(key=lambda field: field.partition(b":")[0])
    digest = hashlib.sha256(b"\n".join(fields))
    digest.update(b"\n\n")
    digest.update(body)
    return digest.hexdigest()


_TOKENS = st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b"From ", b"Subject:", b"to: x", b"a", b"b:", b"\xff"])


@given(tokens=st.lists(_TOKENS, max_size=60), piece=st.integers(1, 12))
def test_hash_in_pieces_is_the_hash_of_the_whole(tokens: list[bytes], piece: int) -> None:
    raw = b"".join(tokens)
    assert hash_in_pieces(raw, piece) == whole(raw)


def test_a_mail_with_crlf_split_across_pieces() -> None:
    raw = b"From: a@example.net\r\nSubject: x\r\n\r\nline one\r\nline two\r\n"
    for piece in range(1, len(raw) + 1):
        assert hash_in_pieces(raw, piece) == whole(raw), piece
