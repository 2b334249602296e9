"""Spam verdicts (pure): did our receiving server's filter mark this mail as spam?

classify asks `spam_verdict` before anything else answers: a message marked spam is junk, never
acknowledged. Each filter is a small detector over the parsed headers; these headers count only
because our MTA strips the copies that arrive with the mail (README, "Spam and junk").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mailsvc.model import InboundMessage


@dataclass(frozen=True, slots=True)
class HeaderRule:
    """Spam when header `name` matches `pattern`, or its leading number is at least `score_at_least`."""

    name: str
    pattern: re.Pattern[str] | None = None
    score_at_least: float | None = None


@dataclass(frozen=True, slots=True)
class SpamPolicy:
    """`trust`: the filters whose own headers count (spamassassin, rspamd); `rules`: the configuration's."""

    trust: frozenset[str] = frozenset()
    rules: tuple[HeaderRule, ...] = ()


NO_SPAM_RULES = SpamPolicy()

Detector = Callable[[InboundMessage], str | None]

_SA_STATUS = re.compile(r"^\s*yes\b", re.IGNORECASE)
_NUMBER = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]+)?)")
_RSPAMD_SPAM_ACTIONS = frozenset({"reject", "add header", "rewrite subject"})


def spamassassin(msg: InboundMessage) -> str | None:
    """`X-Spam-Flag: YES`, or `X-Spam-Status: Yes, score=...` (folded: only its start is read)."""
    if any(v.strip().lower() == "yes" for v in msg.header_all("x-spam-flag")):
        return "SpamAssassin: X-Spam-Flag: YES"
    for value in msg.header_all("x-spam-status"):
        if _SA_STATUS.match(value):
            return "SpamAssassin: X-Spam-Status: " + " ".join(value.split())[:120]
    return None


def rspamd(msg: InboundMessage) -> str | None:
    """`X-Spam: Yes` (rspamd's milter headers), or an `X-Rspamd-Action` that is not `no action`/`greylist`."""
    if any(v.strip().lower() == "yes" for v in msg.header_all("x-spam")):
        return "rspamd: X-Spam: yes"
    for value in (*msg.header_all("x-rspamd-action"), *msg.header_all("x-spam-action")):
        if value.strip().lower() in _RSPAMD_SPAM_ACTIONS:
            return f"rspamd: action {value.strip().lower()}"
    return None


FILTERS: dict[str, Detector] = {"spamassassin": spamassassin, "rspamd": rspamd}


def rule_verdict(msg: InboundMessage, rule: HeaderRule) -> str | None:
    for value in msg.header_all(rule.name):
        if rule.pattern is not None and rule.pattern.search(value):
            return f"{rule.name} matches {rule.pattern.pattern!r}"
        number = _NUMBER.match(value) if rule.score_at_least is not None else None
        if number is not None and rule.score_at_least is not None and float(number.group(1)) >= rule.score_at_least:
            return f"{rule.name}: {number.group(1)} >= {rule.score_at_least:g}"
    return None


def spam_verdict(msg: InboundMessage, policy: SpamPolicy) -> str | None:
    """Why the message is spam by a trusted filter or a configured rule, or None."""
    for name, detector in FILTERS.items():
        found = detector(msg) if name in policy.trust else None
        if found is not None:
            return found
    for rule in policy.rules:
        found = rule_verdict(msg, rule)
        if found is not None:
            return found
    return None
