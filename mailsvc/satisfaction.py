"""Satisfaction answers (pure): "was your problem solved?" answered by a reply.

The resolved mail asks for a reply whose first line is a rating (1 to 5, or
good / bad) and nothing else, and offers mailto: links with a prepared subject ("Rating: 5").
An answer is recorded on its case; it never reopens the case by itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORDS = {"good": 5, "bad": 1, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5}
# At the start (after reply prefixes only): a case's own subject ("Fire rating 2 doors") is no answer.
_SUBJECT = re.compile(r"^(?:\s*(?:re|aw|sv|antw|fwd?)\s*:)*\s*rating\s*[:=]\s*(good|bad|[1-5])\b", re.IGNORECASE)
# The rating alone on the first line: "5", "4/5", "Good!"; "2 printers are down" is not one.
_FIRST_LINE = re.compile(r"^[^\w]*(good|bad|[1-5])(?:\s*/\s*5)?[^\w]*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Rating:
    score: int  # 1 (bad) .. 5 (good)
    answer: str  # the word or digit the requester used
    remark: str  # any text after it, for the team


def parse_rating(subject: str, text: str) -> Rating | None:
    """The rating in a reply: a prepared subject ("Rating: 4"), or the first word of the new text."""
    body = text.strip()
    found = _SUBJECT.search(subject)
    if found:
        return Rating(_WORDS[found.group(1).lower()], found.group(1), body)
    first_line, _, rest = body.partition("\n")
    found = _FIRST_LINE.match(first_line.strip())
    if found is None:
        return None
    return Rating(_WORDS[found.group(1).lower()], found.group(1), rest.strip())
