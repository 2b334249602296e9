"""Reference order on real mail: notmuch's parent-priority threads (../shared/corpus/threading, SOURCES.md section 3).

The grand-child's References list its parent before the root (the wrong order), and In-Reply-To names the
parent: when root and parent sit in different cases, the grand-child joins the parent's case, through the
real store, even when the root's case was active more recently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailsvc.model import Address
from mailsvc.parse import parse_message
from mailsvc.store import Store
from mailsvc.thread import compile_tag, find_case

pytestmark = pytest.mark.corpus

CORPUS = Path(os.environ.get("MAILSVC_CORPUS") or Path(__file__).resolve().parents[2].parent / "shared" / "corpus")
PARENT_PRIORITY = CORPUS / "threading" / "notmuch" / "corpora" / "threading" / "parent-priority" / "cur"
if not (PARENT_PRIORITY / "grand-child").is_file():
    pytest.skip(f"threading corpus not found at {PARENT_PRIORITY}", allow_module_level=True)


def test_in_reply_to_wins_over_references_in_the_wrong_order(tmp_path: Path) -> None:
    root, child, grand_child = (
        parse_message((PARENT_PRIORITY / n).read_bytes()) for n in ("root", "child", "grand-child")
    )
    assert grand_child.in_reply_to == (child.message_id,) and grand_child.references[-1] == root.message_id
    store = Store.open(tmp_path / "mailsvc.db")
    who = Address("someone@example.org")
    for case_id, msg, updated in ((1, child, 100.0), (2, root, 200.0)):  # the root's case is the more active
        store.db.execute(
            "INSERT INTO cases (id, queue, subject, requester, status, created_at, updated_at) "
            "VALUES (?, 'help', ?, ?, 'open', 0, ?)",
            (case_id, msg.subject, who.addr, updated),
        )
        store.db.execute("INSERT INTO case_message_ids (message_id, case_id) VALUES (?, ?)", (msg.message_id, case_id))
    match = find_case(grand_child, store, {"help": compile_tag("[Help #{id}]")})
    assert match.case is not None and (match.case.id, match.method) == (1, "in_reply_to")
