"""Long base64 bodies set aside while the email package reads a message's structure (pure; used by parse).

The email package holds a body as its lines and then joined: about three times a large attachment,
beside the message. A run of base64 lines can hold no header and no boundary (neither ":" nor "-" is
in the base64 alphabet, and a run has no empty line), so the parser is given the message with each
long run replaced by one token line, and what it holds is read back from the message's own bytes:
the same text, a piece at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

from mailsvc.mime import padding_at_end_only

__all__ = ["RUN_MIN", "SetAside", "set_aside"]

RUN_MIN = 64 * 1024  # bytes of base64 lines in a row before they are set aside
PIECE = 256 * 1024  # characters of a run read back at a time

# Whole lines of the base64 alphabet, with their line ends (LF or CRLF), one after another. Possessive:
# a plain repeat keeps a backtracking entry per line (more than twice the run's size, for nothing).
_RUN = re.compile(rb"^(?:[A-Za-z0-9+/=]++\r?\n)++", re.MULTILINE)
_MARK = "MAILSVC-SET-ASIDE-"


@dataclass(frozen=True, slots=True)
class SetAside:
    """The runs a token stands for: `spans` in `raw`, each without the line end of its last line (the
    token line keeps that one, so the parser treats the token as it treated that line)."""

    raw: bytes
    spans: tuple[tuple[int, int], ...]
    mark: str = _MARK

    def holds(self, text: str) -> bool:
        return bool(self.spans) and self.mark in text

    def pieces(self, text: str) -> Iterator[str]:
        """`text` as the parser would hold it without the tokens, at most a piece of a run at a time."""
        pos = 0
        if self.spans:
            for match in re.finditer(re.escape(self.mark) + r"(\d+)\.", text):
                if match.start() > pos:
                    yield text[pos : match.start()]
                start, end = self.spans[int(match.group(1))]
                for at in range(start, end, PIECE):
                    yield self.raw[at : min(at + PIECE, end)].decode("ascii")
                pos = match.end()
        if pos < len(text):
            yield text[pos:]

    def length(self, text: str) -> int:
        """len() of `text` with its runs put back."""
        return sum(len(piece) for piece in self.pieces(text))

    def restore(self, text: str) -> str:
        """`text` with its runs put back (whole: for the few readers that need it so)."""
        return "".join(self.pieces(text)) if self.holds(text) else text

    def put_back(self, part: EmailMessage) -> None:
        """The runs put back into what the parser holds of one part (body, preamble, epilogue): the email
        package then reads it as it would have read the message given whole."""
        payload = getattr(part, "_payload", None)
        if isinstance(payload, str) and self.holds(payload):
            part.set_payload(self.restore(payload))
        for name in ("preamble", "epilogue"):
            text = getattr(part, name, None)
            if isinstance(text, str) and self.holds(text):
                setattr(part, name, self.restore(text))

    def base64_body(self, part: EmailMessage, over: int) -> str | None:
        """What the parser holds of a base64 part with runs set aside, when it is one to read in pieces:
        longer than `over` put back, and with padding at its end only. Else None."""
        if str(part.get("content-transfer-encoding") or "").lower() != "base64":
            return None
        held = getattr(part, "_payload", None)
        if not isinstance(held, str) or not self.holds(held):
            return None
        if self.length(held) > over and padding_at_end_only(self.pieces(held)):
            return held
        return None


def set_aside(raw: bytes, minimum: int = RUN_MIN) -> tuple[bytes, SetAside]:
    """`raw` with each run of base64 lines longer than `minimum` bytes replaced by a token line."""
    mark = _MARK
    while mark.encode() in raw:  # a message that quotes a token: another mark, never an ambiguous one
        mark = "X" + mark
    spans: list[tuple[int, int]] = []
    out: list[bytes] = []
    pos = 0
    for match in _RUN.finditer(raw):
        start, end = match.span()
        if end - start <= minimum:
            continue
        end -= 2 if raw.endswith(b"\r\n", start, end) else 1
        out += [raw[pos:start], f"{mark}{len(spans)}.".encode()]
        spans.append((start, end))
        pos = end
    if not spans:
        return raw, SetAside(raw, (), mark)
    out.append(raw[pos:])
    return b"".join(out), SetAside(raw, tuple(spans), mark)
