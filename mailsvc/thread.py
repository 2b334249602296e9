"""Threading (pure, given a read-only lookup): which case a message belongs to.

A message joins a case by the case tag in its subject, else by In-Reply-To and
References naming any Message-ID the case received or sent; otherwise it is new.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from mailsvc.model import Case, InboundMessage, ThreadMatch


class CaseLookup(Protocol):
    def case_by_id(self, case_id: int) -> Case | None: ...

    def case_by_message_ids(self, message_ids: Sequence[str]) -> Case | None: ...


def compile_tag(tag: str) -> re.Pattern[str]:
    """A pattern for a subject tag such as '[Help #{id}]', lenient about spaces and case."""
    before, _, after = tag.partition("{id}")

    def lenient(text: str) -> str:
        return r"\s*".join(re.escape(word) for word in text.split())

    return re.compile(
        lenient(before) + r"\s*(\d{1,12})\s*" + lenient(after),
        re.IGNORECASE,
    )


def render_tag(tag: str, case_id: int) -> str:
    return tag.replace("{id}", str(case_id))


def reference_chain(msg: InboundMessage) -> list[str]:
    """In-Reply-To first, then References newest first: the likeliest parent leads."""
    seen: dict[str, None] = {}
    for message_id in (*msg.in_reply_to, *reversed(msg.references)):
        seen.setdefault(message_id)
    return list(seen)


def find_case(msg: InboundMessage, lookup: CaseLookup, tags: Mapping[str, re.Pattern[str]]) -> ThreadMatch:
    """`tags` maps each queue to its tag pattern; a tag only counts for a case of its queue."""
    for queue, pattern in tags.items():
        for found in pattern.finditer(msg.subject):
            case = lookup.case_by_id(int(found.group(1)))
            if case is not None and case.queue == queue:
                return ThreadMatch(case, "tag", found.group(0))
    chain = reference_chain(msg)
    case = lookup.case_by_message_ids(chain)
    if case is not None:
        return ThreadMatch(case, "references")
    return ThreadMatch(None, "new")


def _base_address(addr: str) -> str:
    """help+c42-sig@example.org -> help@example.org (plus-addressing)."""
    local, _, domain = addr.lower().partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def route_queue(msg: InboundMessage, queue_addresses: Mapping[str, str]) -> str | None:
    """The queue a new message was sent to, by To, Cc, Delivered-To and X-Original-To."""
    by_address = {addr.lower(): name for name, addr in queue_addresses.items()}
    candidates = [a.addr for a in msg.recipients]
    for header in ("delivered-to", "x-original-to"):
        candidates.extend(v.strip().strip("<>") for v in msg.header_all(header))
    for addr in candidates:
        name = by_address.get(_base_address(addr))
        if name is not None:
            return name
    return None
