"""parse over ../shared/corpus/mime: every file gives a message in bounded time, stored or quarantined.

The corpus is found next to the project or through MAILSVC_CORPUS; without it the module skips.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from mailsvc.model import InboundMessage
from mailsvc.parse import parse_message

pytestmark = pytest.mark.corpus

CORPUS = Path(os.environ.get("MAILSVC_CORPUS") or Path(__file__).resolve().parents[2].parent / "shared" / "corpus")
MIME = CORPUS / "mime"
if not MIME.is_dir():
    pytest.skip(f"no MIME corpus at {MIME} (set MAILSVC_CORPUS)", allow_module_level=True)

FILES = sorted(path for path in MIME.rglob("*") if path.is_file())
SECONDS_PER_FILE = 10.0  # a guard against hangs, not a speed test


def timed_parse(path: Path) -> tuple[InboundMessage, float]:
    raw = path.read_bytes()
    started = time.perf_counter()
    msg = parse_message(raw)
    return msg, time.perf_counter() - started


@pytest.mark.parametrize("path", FILES, ids=[str(path.relative_to(MIME)) for path in FILES])
def test_file_parses_in_bounded_time(path: Path) -> None:
    msg, seconds = timed_parse(path)

    assert isinstance(msg, InboundMessage)
    assert seconds < SECONDS_PER_FILE
    assert msg.quarantine_reason is not None or msg.from_ is not None


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    reasons: Counter[str] = Counter()
    times: list[tuple[float, str]] = []
    for path in FILES:
        msg, seconds = timed_parse(path)
        reasons[msg.quarantine_reason or "stored"] += 1
        times.append((seconds, str(path.relative_to(MIME))))
    stored = reasons.pop("stored", 0)
    quarantined = sum(reasons.values())
    slowest = ", ".join(f"{name} {seconds:.3f}s" for seconds, name in sorted(times, reverse=True)[:3])
    with capsys.disabled():
        print(
            f"\nmime corpus: {len(FILES)} files in {sum(s for s, _ in times):.2f}s: "
            f"stored {stored}, quarantined {quarantined} ({dict(reasons.most_common())}); slowest: {slowest}"
        )

    assert stored + quarantined == len(FILES)
