"""Checked-in expectations for the shared corpus, and the script that writes them.

For each distinct corpus file (by SHA-256; byte-identical copies are listed once, under the first path in
sorted order) the expectation records what matters of its outcome, never the mail itself: the kind, sender,
subject (clipped), a hash and length of the text, attachment names and sizes, the quarantine reason, and the
bounce verdict. The tests compare with these files, so a file that parsed before and now falls back to
quarantine fails. A deliberate change is written with

    python -m tests.corpus.expect --update-expected

and its diff goes into the commit; without the flag the script prints what differs and exits 1 when anything
does. The corpus is found beside the project or through MAILSVC_CORPUS.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mailsvc.bounce import detect_bounce
from mailsvc.classify import ClassifyContext, classify
from mailsvc.parse import parse_message
from mailsvc.strip import strip_reply

CORPUS = Path(os.environ.get("MAILSVC_CORPUS") or Path(__file__).resolve().parents[2].parent / "shared" / "corpus")
EXPECTED = Path(__file__).resolve().parent / "expected"
OWN = ClassifyContext(own_addresses=frozenset({"help@example.org"}))
SUBJECT_CHARS = 80  # enough to tell files apart in a diff; the rest is the mail's, not ours

Summary = dict[str, Any]


def distinct_files(root: Path, skip: Callable[[Path], bool] = lambda _: False) -> dict[str, Path]:
    """Relative path -> file, one per content hash: the first path in sorted order stands for its copies."""
    seen: set[str] = set()
    files: dict[str, Path] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not skip(p)):
        digest = sha256(path.read_bytes())
        if digest not in seen:
            seen.add(digest)
            files[path.relative_to(CORPUS).as_posix()] = path
    return files


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mime_summary(raw: bytes) -> Summary:
    """What parse and classify make of one file, in values a reviewer can read."""
    msg = parse_message(raw)
    return {
        "sha256": sha256(raw),
        "kind": classify(msg, OWN).kind.value,
        "sender": msg.from_.addr if msg.from_ is not None else None,
        "subject": msg.subject[:SUBJECT_CHARS],
        "text_sha256": sha256(msg.text.encode("utf-8", "surrogatepass"))[:16],
        "text_chars": len(msg.text),
        "html": msg.html is not None,
        "attachments": [[a.filename, a.size] for a in msg.attachments],
        "quarantine": msg.quarantine_reason,
    }


def bounce_summary(raw: bytes) -> Summary:
    found = detect_bounce(raw)
    verdict = (
        None
        if found is None
        else {
            "kind": found.kind,
            "recipients": sorted(found.recipients),
            "permanent": found.permanent,
            "status": found.status,
        }
    )
    return {"sha256": sha256(raw), "bounce": verdict}


def mime_files() -> dict[str, Path]:
    return distinct_files(CORPUS / "mime", lambda p: p.suffix == ".json")


def bounce_files() -> dict[str, Path]:
    """Every distinct file bounce detection is run on without an mbox split: bounces/ and mime/."""
    files = distinct_files(CORPUS / "bounces", lambda p: p.name == "expected.json")
    hashes = {sha256(p.read_bytes()) for p in files.values()}
    for name, path in mime_files().items():
        if sha256(path.read_bytes()) not in hashes:
            files[name] = path
    return files


def stripping_outcomes() -> dict[str, dict[str, bool]]:
    """Per reply-stripping fixture: does strip_reply give the gold reply (gold) or meet its assertions (partial)."""
    from tests.corpus import test_reply_stripping as rs  # noqa: PLC0415 - the fixture readers live with the test

    gold = {
        case.name: rs.same(strip_reply(case.text, keep_signature=case.keep_signature), case.expected, case.compare)
        for case in rs.CASES
    }
    partial = {
        case.name: all(check.holds(strip_reply(case.text)) for check in case.checks) for case in rs.partial_cases()
    }
    return {"gold": gold, "partial": partial}


def load(name: str) -> Any:
    return json.loads((EXPECTED / f"{name}.json").read_text(encoding="utf-8"))


def _dump(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def current() -> Iterator[tuple[str, Any]]:
    yield "mime", {name: mime_summary(path.read_bytes()) for name, path in mime_files().items()}
    yield "bounces", {name: bounce_summary(path.read_bytes()) for name, path in bounce_files().items()}
    yield "reply-stripping", stripping_outcomes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update-expected", action="store_true", help="write the current outcomes as expected")
    args = parser.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"no corpus at {CORPUS} (set MAILSVC_CORPUS)", file=sys.stderr)
        return 2
    changed = False
    for name, value in current():
        path = EXPECTED / f"{name}.json"
        new = _dump(value)
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        if new == old:
            continue
        changed = True
        if args.update_expected:
            EXPECTED.mkdir(exist_ok=True)
            path.write_text(new, encoding="utf-8")
            print(f"wrote {path.name}")
        else:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), path.name, "now"))
    return 1 if changed and not args.update_expected else 0


if __name__ == "__main__":
    sys.exit(main())
