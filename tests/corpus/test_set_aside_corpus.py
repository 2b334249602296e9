"""Every message of ../shared/corpus/mime and bounces reads the same with its base64 runs set aside.

parse gives the email package a message whose long runs of base64 lines are token lines (mimeruns); here
every run is set aside, however short, and each message must read exactly as when the package is given it
whole: text, attachments and their bytes, defects, quarantine reason. The module skips without the corpus.
"""

from __future__ import annotations

import pytest

from mailsvc.mimeruns import set_aside
from mailsvc.parse import ParseLimits, parse_message
from tests.corpus.expect import CORPUS, bounce_files

pytestmark = pytest.mark.corpus

if not (CORPUS / "mime").is_dir():
    pytest.skip(f"no MIME corpus at {CORPUS / 'mime'} (set MAILSVC_CORPUS)", allow_module_level=True)

WHOLE = ParseLimits(set_aside_over=2**62)
EVERY = ParseLimits(set_aside_over=0)


def test_every_message_with_base64_lines_reads_as_when_given_whole() -> None:
    read = differ = 0
    for name, path in sorted(bounce_files().items()):
        raw = path.read_bytes()
        if not set_aside(raw, 0)[1].spans:
            continue
        read += 1
        for keep in (True, False):
            if parse_message(raw, EVERY, attachment_data=keep) != parse_message(raw, WHOLE, attachment_data=keep):
                differ += 1
                print(f"{name} (attachment data {keep}) reads otherwise with its runs set aside")
    assert read > 500 and differ == 0, (read, differ)
