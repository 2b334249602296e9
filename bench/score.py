"""Correctness under speed: threading against the corpus's expected cases, lost messages, acknowledgements.

Threading is scored as a partition: messages with the same thread key must
share one case, messages with different keys must not. A thread's case is the
case its first message went to; a message counts as right when it was filed in
that case and the case was not opened by an earlier thread (a merge).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.corpus import CorpusMessage
from bench.env import Ack, StoredMessage


@dataclass
class Correctness:
    messages: int = 0
    filed: int = 0
    quarantined: int = 0
    lost: int = 0
    stored_twice: int = 0
    in_expected_case: int = 0
    acks: int = 0
    acks_due: int = 0
    duplicate_acks: int = 0
    missing_acks: int = 0
    unexpected_acks: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def threading_score(self) -> float:
        return self.in_expected_case / self.messages if self.messages else 1.0

    @property
    def ok(self) -> bool:
        return (
            self.threading_score == 1.0
            and self.lost == 0
            and self.stored_twice == 0
            and self.duplicate_acks == 0
            and self.missing_acks == 0
            and self.unexpected_acks == 0
        )

    def __iadd__(self, other: Correctness) -> Correctness:
        for name in ("messages", "filed", "quarantined", "lost", "stored_twice", "in_expected_case", "acks",
                     "acks_due", "duplicate_acks", "missing_acks", "unexpected_acks"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.examples.extend(other.examples[: max(0, 10 - len(self.examples))])
        return self

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "threading_score": self.threading_score, "ok": self.ok}


def duplicate_acks(acks: Sequence[Ack]) -> int:
    """More than one acknowledgement for one request, counted by In-Reply-To and by case."""
    by_request = len(acks) - len({a.in_reply_to for a in acks})
    per_case = Counter(a.case for a in acks if a.case)
    by_case = sum(n - 1 for n in per_case.values())
    return max(by_request, by_case)


def score(corpus: Sequence[CorpusMessage], stored: Sequence[StoredMessage], acks: Sequence[Ack]) -> Correctness:
    result = Correctness(messages=len(corpus))
    rows: dict[str, list[StoredMessage]] = defaultdict(list)
    for row in stored:
        rows[row.message_id].append(row)
    first_case: dict[str, int | None] = {}
    for msg in corpus:
        if msg.thread not in first_case:
            found = rows.get(msg.message_id)
            first_case[msg.thread] = found[0].case_id if found and found[0].state == "filed" else None
    owner: dict[int, str] = {}  # a case belongs to the first thread that opened it; later ones were merged in
    for thread, case in first_case.items():
        if case is not None:
            owner.setdefault(case, thread)
    for msg in corpus:
        found = rows.get(msg.message_id, [])
        if not found:
            result.lost += 1
            _example(result, msg, None, "lost: not in the store", first_case)
            continue
        result.stored_twice += len(found) - 1
        row = found[0]
        if row.state != "filed":
            result.quarantined += 1
            _example(result, msg, row, "quarantined", first_case)
            continue
        result.filed += 1
        expected = first_case[msg.thread]
        if row.case_id is not None and row.case_id == expected and owner[expected] == msg.thread:
            result.in_expected_case += 1
        elif row.case_id != expected:
            _example(result, msg, row, "split: not in its thread's case", first_case)
        else:
            _example(result, msg, row, "merged: its thread's case also holds another thread", first_case)
    due = {m.message_id for m in corpus if m.wants_ack}
    mine = list(acks)  # everything the capture got in this phase: all of it answers this corpus
    answered = {a.in_reply_to for a in mine}
    result.acks = len(mine)
    result.acks_due = len(due)
    result.duplicate_acks = duplicate_acks(mine)
    result.missing_acks = len(due - answered)
    result.unexpected_acks = len(answered - due)
    for a in mine:
        if a.in_reply_to not in due and len(result.examples) < 10:
            result.examples.append({"problem": "acknowledged, but not a new request", "in_reply_to": a.in_reply_to})
    return result


def _example(
    result: Correctness, msg: CorpusMessage, row: StoredMessage | None, problem: str, first: dict[str, int | None]
) -> None:
    if len(result.examples) >= 10:
        return
    head = msg.raw.partition(b"\r\n\r\n")[0].decode("ascii", "replace")
    result.examples.append(
        {
            "problem": problem,
            "message_id": msg.message_id,
            "kind": msg.kind,
            "thread": msg.thread,
            "expected_case": first.get(msg.thread),
            "stored_case": row.case_id if row else None,
            "stored_kind": row.kind if row else None,
            "headers": head[-1500:],
        }
    )
