"""Worst-case inputs of the pure parsers, timed: `python bench/pathological.py`.

The tests assert the mechanisms that bound these times (cut lines, a byte and line limit, the refusal of
a charset); this prints the times themselves beside each input's upstream or our own limit, and exits 1
when one is over it. The shared corpus's performance traps are included when the corpus is found.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `mailsvc` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailsvc.bounce import MAX_BYTES, detect_bounce
from mailsvc.parse import parse_message
from mailsvc.strip import MARKER, strip_reply

CORPUS = Path(os.environ.get("MAILSVC_CORPUS") or Path(__file__).resolve().parents[1].parent / "shared" / "corpus")
TRAPS = CORPUS / "reply-stripping"


def _mime_headers() -> bytes:
    # The header registry is quadratic on these; unbounded, this message takes ten seconds or more.
    parts = [
        b"--b\nContent-Type: text/plain; n=%d" % n + b" ;" * 2000 + b"\nContent-Transfer-Encoding: " + b"x=y;" * 1000
        for n in range(20)
    ]
    return (
        b'From: a@example.org\nContent-Type: multipart/mixed; boundary="b"\n\n'
        + b"\n\nx\n".join(parts)
        + b"\n\nx\n--b--\n"
    )


def _punycode() -> bytes:
    word = b"=?punycode?q?" + b"a" * 5000 + b"-" + b"9" * 5000 + b"?="
    head = b"From: a@example.org\nSubject: " + word + b"\nContent-Type: text/plain; charset=punycode\n\n"
    return head + b"a" * 50_000 + b"-" + b"99" * 50_000


def _huge_bounce() -> bytes:
    head = b"From: MAILER-DAEMON@example.org\nSubject: Undelivered Mail\n\nThis is the mail system\n"
    return head + b"x@y.z, " * (MAX_BYTES // 4) + b"\n \n" * 100_000


STRIP = {
    "quotes": "Hi\n" + "> \n" * 50_000,
    "long-line": "x" * 1_000_000,
    "long-quote": ">" * 1_000_000,
    "long-header": "On " * 300_000 + "wrote:",
    "headers": "On Mon 12:00 a@b.c\n" * 50_000,
    "glued": ("x On " * 60 + "\n") * 10_000,
    "fields": "From: a@b.c\nTo: x\n" * 25_000,
    "signoffs": "-Abc\n\n" * 25_000,
    "marker": "x\n" * 50_000 + MARKER,
}
CORPUS_TRAPS = {
    "github-email_reply_parser/emails/pathological.txt": 1.0,
    "github-email_reply_parser/emails/email_long_quote.txt": 1.0,
    "zapier-email-reply-parser/emails/pathological.txt": 1.0,
    "discourse-email_reply_trimmer/matchers/does_not_contain_embedded_email.txt": 5.0,
}


def cases() -> list[tuple[str, float, Callable[[], object]]]:
    found: list[tuple[str, float, Callable[[], object]]] = [
        (f"strip_reply {name}", 5.0, lambda text=text: strip_reply(text)) for name, text in STRIP.items()
    ]
    found += [
        ("parse_message quadratic MIME headers", 10.0, lambda: parse_message(_mime_headers())),
        ("parse_message punycode charset", 2.0, lambda: parse_message(_punycode())),
        ("detect_bounce 1 MB of addresses", 5.0, lambda: detect_bounce(_huge_bounce())),
    ]
    for name, limit in CORPUS_TRAPS.items():
        if (TRAPS / name).is_file():
            text = (TRAPS / name).read_text(encoding="utf-8")
            found.append((f"strip_reply corpus {name}", limit, lambda text=text: strip_reply(text)))
    return found


def main() -> int:
    over = 0
    for name, limit, run in cases():
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        over += seconds >= limit
        print(f"{seconds:8.3f}s  limit {limit:4.1f}s  {seconds / limit:6.1%}  {name}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
