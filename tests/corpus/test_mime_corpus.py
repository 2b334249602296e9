"""parse and classify over ../shared/corpus/mime, compared with the checked-in expectations.

One test per distinct file (byte-identical copies are one file). Each compares what parse and classify make
of it (kind, sender, subject, text hash, attachments, quarantine reason) with tests/corpus/expected/mime.json,
so a file that was filed before and now falls back to quarantine fails, and so does any other change of
outcome. A deliberate change: `python -m tests.corpus.expect --update-expected`, the diff in the commit.
The corpus is found next to the project or through MAILSVC_CORPUS; without it the module skips.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.corpus.expect import CORPUS, load, mime_files, mime_summary

pytestmark = pytest.mark.corpus

if not (CORPUS / "mime").is_dir():
    pytest.skip(f"no MIME corpus at {CORPUS / 'mime'} (set MAILSVC_CORPUS)", allow_module_level=True)

FILES = mime_files()
EXPECTED: dict[str, dict[str, object]] = load("mime")


@pytest.mark.parametrize("name", sorted(FILES))
def test_file_gives_the_expected_outcome(name: str) -> None:
    assert name in EXPECTED, f"{name} has no expectation: review it and run --update-expected"
    assert mime_summary(FILES[name].read_bytes()) == EXPECTED[name]


def test_every_expectation_names_a_corpus_file() -> None:
    """A file gone from the corpus (or now a copy of another) is a change to review, not a silent pass."""
    assert sorted(set(EXPECTED) - set(FILES)) == []


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = Counter(str(summary["quarantine"] or "stored") for summary in EXPECTED.values())
    copies = sum(1 for p in (CORPUS / "mime").rglob("*") if p.is_file() and p.suffix != ".json") - len(FILES)
    with capsys.disabled():
        print(f"\nmime corpus: {len(FILES)} distinct files ({copies} byte-identical copies left out): {dict(outcomes)}")
    assert outcomes["stored"] > len(FILES) / 2, outcomes
