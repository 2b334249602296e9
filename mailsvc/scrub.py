"""Secrets out of text: every password and key the configuration hands out is remembered here, and
`scrub` removes it, and any report of one of its characters, from text bound for a log or a terminal.

Error messages quote what they choke on: a codec error names the character and its position
("'ascii' codec can't encode character '\\xe4' in position 3"), a server may echo what it was sent.
The log configuration runs every field through `scrub`; the shells use it for error text they print.
"""

from __future__ import annotations

import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()


class _Order:
    """The secrets longest first (a secret inside another is replaced after it): `scrub` runs on every
    string field of every log event, so the order is kept here, not sorted at each call."""

    longest_first: tuple[str, ...] = ()


# Python's codec errors: "'ascii' codec can't encode character '\xe4' in position 3: ordinal not in range(128)",
# "... can't encode characters in position 2-3: ...".
_CODEC_ERROR = re.compile(
    r"'[\w-]+' codec can't (?:en|de)code (?:character|characters|byte|bytes) .*?in position \d+(?:-\d+)?(?::[^\n]*)?",
)
REDACTED = "[redacted]"


def protect(secret: str | bytes) -> None:
    """Remember a secret so that `scrub` hides it (too short a value would hide common text: kept from 4)."""
    text = secret.decode(errors="replace") if isinstance(secret, bytes) else secret
    if len(text) >= 4:
        with _lock:
            _secrets.add(text)
            _Order.longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def protected() -> tuple[str, ...]:
    """Every secret remembered so far (for a child process, whose logs must hide them too)."""
    return _Order.longest_first


def scrub(text: str) -> str:
    """`text` without any remembered secret and without codec errors' quotes of characters and positions."""
    if "codec can't" in text:  # what _CODEC_ERROR needs; most text has none, and is not searched
        text = _CODEC_ERROR.sub("a character could not be encoded (which and where is not shown)", text)
    for secret in _Order.longest_first:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
