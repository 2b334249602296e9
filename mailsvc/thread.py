"""Threading (pure, given a read-only lookup): which case a message belongs to.

When a message names several cases, the most specific evidence wins, in this order:

1. the case of the mail a delivery report returns (a bounce of our own mail);
2. our reply token in a recipient address (signed, so it names one case outright);
3. In-Reply-To;
4. References, newest to oldest;
5. the subject tag of the newest case that is not closed;
6. a subject tag of a closed case (decide opens a follow-up case that refers to it).

A Message-ID counts for every case that received or sent it; the lookup answers per
id, and the chain order above chooses. Nothing matched: a new case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from mailsvc.model import Case, CaseStatus, InboundMessage, ThreadMatch


class CaseLookup(Protocol):
    def case_by_id(self, case_id: int) -> Case | None: ...

    def cases_by_message_ids(self, message_ids: Sequence[str]) -> Mapping[str, Case]:
        """For each of these ids some case received or sent, that case (merges followed)."""
        ...


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


def find_case(
    msg: InboundMessage,
    lookup: CaseLookup,
    tags: Mapping[str, re.Pattern[str]],
    *,
    token_case: int | None = None,
    bounced_id: str | None = None,
) -> ThreadMatch:
    """The case `msg` joins, by the precedence of the module docstring.

    `tags` maps each queue to its tag pattern (a tag only counts for a case of its queue);
    `token_case` is the case a verified reply token names; `bounced_id` the Message-ID of
    our mail that a delivery report returns.
    """
    if bounced_id:
        case = lookup.cases_by_message_ids([bounced_id]).get(bounced_id)
        if case is not None:
            return ThreadMatch(case, "bounce", bounced_id)
    if token_case is not None:
        case = lookup.case_by_id(token_case)
        if case is not None:
            return ThreadMatch(case, "token")
    chain = reference_chain(msg)
    found = lookup.cases_by_message_ids(chain) if chain else {}
    for message_id in chain:
        case = found.get(message_id)
        if case is not None:
            method = "in_reply_to" if message_id in msg.in_reply_to else "references"
            return ThreadMatch(case, method, message_id)
    tagged = tagged_cases(msg.subject, lookup, tags)
    if tagged:
        best = max(tagged, key=lambda c: (c.status is not CaseStatus.CLOSED, c.id))
        return ThreadMatch(best, "tag", f"#{best.id}")
    return ThreadMatch(None, "new")


def tagged_cases(subject: str, lookup: CaseLookup, tags: Mapping[str, re.Pattern[str]]) -> list[Case]:
    """The cases the subject's tags name, each of its own queue's tag."""
    cases: dict[int, Case] = {}
    for queue, pattern in tags.items():
        for found in pattern.finditer(subject):
            case = lookup.case_by_id(int(found.group(1)))
            if case is not None and case.queue == queue:
                cases[case.id] = case
    return list(cases.values())


def strip_tags(subject: str, tags: Sequence[re.Pattern[str]]) -> str:
    """The subject without any of our case tags, white space collapsed."""
    for pattern in tags:
        subject = pattern.sub(" ", subject)
    return " ".join(subject.split())


_REPLY_PREFIXES = re.compile(r"^(\s*(re|aw|sv|antw|vs|r|rif|odp|res|fwd?|wg|tr)\s*(\[\d+\])?\s*:)+\s*", re.IGNORECASE)


def case_subject(subject: str, tags: Sequence[re.Pattern[str]]) -> str:
    """A new case's subject: the topic, without our tags and reply prefixes ('Re: x [Help #15]' -> 'x')."""
    return _REPLY_PREFIXES.sub("", strip_tags(subject, tags))


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
