"""Sender rules (pure): a queue's allow, deny and no_ack lists, and what they make of a message.

Patterns are an address (`ops@example.org`), a domain (`example.org`, also `@example.org`) or
`*.example.org` (its subdomains, not the domain itself). The store adds the denials of `#spam block`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def matches(address: str, pattern: str) -> bool:
    """Whether `address` (any case) falls under `pattern` (already lower case)."""
    address = address.strip().lower()
    domain = address.rpartition("@")[2]
    pattern = pattern.strip().lower()
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    if "@" in pattern.lstrip("@"):
        return address == pattern
    return domain == pattern.lstrip("@")


def matches_any(address: str, patterns: Iterable[str]) -> str | None:
    """The first pattern `address` falls under, or None."""
    return next((p for p in patterns if matches(address, p)), None)


@dataclass(frozen=True, slots=True)
class SenderRules:
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    no_ack: tuple[str, ...] = ()
    refuse_others: bool = True  # with an allow list: others get the `refused` template (else: junk, silent)


@dataclass(frozen=True, slots=True)
class Screen:
    """What the sender rules and the sender's authentication say of one message, for decide.

    `junk`: file it as junk (why). `refuse`: junk, answered with the `refused` template.
    `no_ack`: open the case without an acknowledgement (why). `unverified`: no automatic mail to
    the sender, and staff are told the sender is not verified (why). `authenticated`: an aligned pass
    in our trusted Authentication-Results (it lifts an earlier `unverified` on the case)."""

    junk: str | None = None
    refuse: str | None = None
    no_ack: str | None = None
    unverified: str | None = None
    history: bool = False  # filed from a backlog or an archive: no mail at all, no SLA
    authenticated: bool = False


UNSCREENED = Screen()


def screen_sender(address: str, rules: SenderRules, denied: Iterable[str] = ()) -> Screen:
    """The configuration's lists, then the queue's denials kept in the store (`denied`)."""
    found = matches_any(address, (*rules.deny, *denied))
    if found is not None:
        return Screen(junk=f"sender denied ({found})")
    if rules.allow and matches_any(address, rules.allow) is None:
        reason = "sender not on the allow list"
        return Screen(refuse=reason) if rules.refuse_others else Screen(junk=reason)
    quiet = matches_any(address, rules.no_ack)
    return Screen(no_ack=f"sender on the no_ack list ({quiet})" if quiet else None)
