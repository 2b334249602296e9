"""Build InboundMessage and Case values directly, so pure stages are tested without parsing."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from typing import Any

from mailsvc.model import Address, Case, CaseStatus, InboundMessage
from mailsvc.parse import parse_message

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def message(**fields: Any) -> InboundMessage:
    headers: dict[str, tuple[str, ...]] = {k.lower(): tuple(v) for k, v in fields.pop("headers", {}).items()}
    base: dict[str, Any] = {
        "raw": b"raw",
        "content_hash": "hash",
        "message_id": "<m1@example.net>",
        "in_reply_to": (),
        "references": (),
        "from_": Address("alice@example.net", "Alice Example"),
        "reply_to": (),
        "to": (Address("help@example.org"),),
        "cc": (),
        "subject": "Printer on floor 3 is jammed",
        "date": T0,
        "text": "It jams on every page.",
        "html": None,
        "attachments": (),
        "headers": headers,
        "return_path": "alice@example.net",
    }
    if "raw" not in fields and headers:
        # Trust reads the order of the header fields from the raw mail.
        lines = [f"{name}: {value}" for name, values in headers.items() for value in values]
        base["raw"] = ("\r\n".join(lines) + "\r\n\r\n").encode()
    base.update(fields)
    return InboundMessage(**base)


def case(**fields: Any) -> Case:
    base: dict[str, Any] = {
        "id": 42,
        "queue": "help",
        "subject": "Printer on floor 3 is jammed",
        "requester": Address("alice@example.net", "Alice Example"),
        "status": CaseStatus.OPEN,
        "created_at": T0,
        "updated_at": T0,
    }
    base.update(fields)
    return Case(**base)


def parse_with_peak(raw: bytes, **options: Any) -> tuple[InboundMessage, int]:
    """parse_message(raw, **options), and the peak of the memory it allocated on the way (tracemalloc)."""
    tracemalloc.start()
    try:
        msg = parse_message(raw, **options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return msg, peak
