"""Authentication-Results (RFC 8601) parsing (pure), for trust to judge a sender by.

One header value in, an AuthResults value out, or None when it is not one; never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_SEPARATORS = frozenset(';=()"')
# RFC 8601 methods and results are Keywords; a method may carry "/version" ("dkim/1").
_KEYWORD = re.compile(r"[a-z0-9][a-z0-9_-]*")
_METHOD = re.compile(r"([a-z0-9][a-z0-9_-]*)(?:/[0-9]+)?")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One resinfo: `dkim=pass header.d=example.org`; names lower-case, values as written."""

    method: str
    result: str
    properties: Mapping[str, str] = field(default_factory=dict, hash=False)
    reason: str | None = None

    def __post_init__(self) -> None:
        # A read-only copy, so a value that crosses module boundaries cannot change under its reader.
        object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))


@dataclass(frozen=True, slots=True)
class AuthResults:
    """One Authentication-Results header; `authserv_id` is "" when the writer gave none (Microsoft 365)."""

    authserv_id: str
    results: tuple[AuthResult, ...]

    def results_for(self, method: str) -> tuple[AuthResult, ...]:
        return tuple(r for r in self.results if r.method == method)


# A token is (";" | "=" | "word", text); comments are dropped, quoted strings unquoted.
_Token = tuple[str, str]


def _skip_comment(value: str, i: int) -> int | None:
    """Index after the comment opening at `i` (comments nest, backslash escapes), None if unclosed."""
    depth = 0
    while i < len(value):
        char = value[i]
        if char == "\\":
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _read_word(value: str, i: int) -> tuple[str, int] | None:
    """Atoms and quoted strings written together make one word: `"john smith"@example.org`."""
    parts: list[str] = []
    while i < len(value) and not value[i].isspace() and value[i] not in ";=()":
        if value[i] == '"':
            i += 1
            quoted: list[str] = []
            while i < len(value) and value[i] != '"':
                if value[i] == "\\" and i + 1 < len(value):
                    i += 1
                quoted.append(value[i])
                i += 1
            if i >= len(value):
                return None
            parts.append("".join(quoted))
            i += 1
        else:
            start = i
            while i < len(value) and not value[i].isspace() and value[i] not in _SEPARATORS:
                i += 1
            parts.append(value[start:i])
    return "".join(parts), i


def _tokenize(value: str) -> list[_Token] | None:
    tokens: list[_Token] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char.isspace():
            i += 1
        elif char == "(":
            end = _skip_comment(value, i)
            if end is None:
                return None
            i = end
        elif char in ";=":
            tokens.append((char, char))
            i += 1
        elif char == ")":
            return None
        else:
            word = _read_word(value, i)
            if word is None:
                return None
            tokens.append(("word", word[0]))
            i = word[1]
    return tokens


def _split(tokens: list[_Token]) -> list[list[_Token]]:
    segments: list[list[_Token]] = [[]]
    for token in tokens:
        if token[0] == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


def _resinfo(segment: list[_Token]) -> AuthResult | None:
    """`method=result` then `key=value` pairs; anything else makes the whole resinfo unusable."""
    if len(segment) % 3 != 0:
        return None
    pairs: list[tuple[str, str]] = []
    for at in range(0, len(segment), 3):
        left, equals, right = segment[at : at + 3]
        if left[0] != "word" or equals[0] != "=" or right[0] != "word":
            return None
        pairs.append((left[1], right[1]))
    method = _METHOD.fullmatch(pairs[0][0].lower())
    result = pairs[0][1].lower()
    if method is None or not _KEYWORD.fullmatch(result):
        return None
    properties: dict[str, str] = {}
    reason = None
    for key, value in pairs[1:]:
        if key.lower() == "reason":
            reason = value
        else:
            # The first value wins: a repeated property is not allowed to override what came first.
            properties.setdefault(key.lower(), value)
    return AuthResult(method.group(1), result, properties, reason)


def parse_authentication_results(value: str) -> AuthResults | None:
    """Parse one header value (folded or not); None when it is not an Authentication-Results value."""
    try:
        tokens = _tokenize(value)
    except (TypeError, AttributeError):
        return None
    if not tokens or tokens[0][0] != "word":
        return None
    if len(tokens) > 1 and tokens[1][0] == "=":
        # Microsoft 365 writes results with no authserv-id: keep them, under an id nobody can trust.
        authserv_id, rest = "", [(";", ";"), *tokens]
    else:
        authserv_id, rest = tokens[0][1], tokens[1:]
        if rest and rest[0][0] == "word" and rest[0][1].isdigit():
            rest = rest[1:]  # authres-version
        if not rest or rest[0][0] != ";":
            return None
    segments = [s for s in _split(rest)[1:] if s]
    wanted = [s for s in segments if not (len(s) == 1 and s[0][1].lower() == "none")]
    results = tuple(r for r in map(_resinfo, wanted) if r is not None)
    if wanted and not results:
        return None
    return AuthResults(authserv_id, results)
