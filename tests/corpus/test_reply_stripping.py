"""strip_reply measured on the shared corpus (SOURCES.md section 1), beside mail-parser-reply.

Each source defines "the reply" its own way; expected.json and expected_notes.json
say how to compare per fixture, and the table keeps one row per source (talon's
four fixture kinds apart). Signatures are where the sources disagree most: talon's
quotation tests keep "Sent from my iPhone" and Sparrow's "-- " block, so those rows
run with `keep_signature=True`; every other source removes signatures.
"""

# Quote headers in a dozen scripts are the point here, look-alike letters included.
# ruff: noqa: RUF001

from __future__ import annotations

import email
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from inscriptis import get_text

from mailsvc.strip import MARKER, strip_reply

_DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
CORPUS = Path(os.environ.get("MAILSVC_CORPUS") or _DEFAULT)
GOLD = CORPUS / "reply-stripping"

if not (GOLD / "expected.json").is_file():
    pytest.skip(f"shared corpus not found at {CORPUS}", allow_module_level=True)

pytestmark = pytest.mark.corpus

MIN_OVERALL = 0.90
TALON = "mailgun-talon"


@dataclass(frozen=True)
class Case:
    """One gold fixture: what goes in, the reply its source expects, how to compare."""

    row: str
    name: str
    text: str
    expected: str
    compare: str  # "exact" | "strip" | "ws"
    keep_signature: bool = False


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def same(found: str, expected: str, compare: str) -> bool:
    """Compare as the source's notes say.

    "exact" allows only trailing whitespace at the end of the text: strip_reply's
    contract drops it, and some upstream values ("fragments[0].toString()") carry
    their fragment's trailing newline. Line endings are compared as "\\n".
    """
    found, expected = _lf(found), _lf(expected)
    if compare == "exact":
        return found.rstrip() == expected.rstrip()
    if compare == "strip":
        return found.strip() == expected.strip()
    return re.sub(r"\s", "", found) == re.sub(r"\s", "", expected)


def _compare_mode(note: str) -> str:
    if note.startswith("exact"):
        return "exact"
    if note.startswith(("strip", "trim")):
        return "strip"
    return "ws"


def _first_text_plain(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return str(part.get_content())
    raise AssertionError("no text/plain part")


def _row(key: str) -> str | None:
    """The table row of an expected.json key; None for fixtures whose expected output is HTML."""
    source = key.split("/", 1)[0]
    if source != TALON:
        return source
    if "/standard_replies/" in key:
        return f"{TALON} standard_replies"
    if "/signature/" in key:
        return f"{TALON} signature"
    if "/html_replies/" in key:
        return f"{TALON} html_replies"
    return None


def gold_cases() -> Iterator[Case]:
    expected: dict[str, str] = json.loads((GOLD / "expected.json").read_text(encoding="utf-8"))
    notes: dict[str, dict[str, Any]] = json.loads((GOLD / "expected_notes.json").read_text(encoding="utf-8"))
    for key, want in sorted(expected.items()):
        row = _row(key)
        if row is None:
            continue
        note = notes.get(key, {})
        path = GOLD / key
        raw = path.read_bytes()
        keep = row in (f"{TALON} standard_replies", f"{TALON} html_replies")
        if key.endswith(".eml"):
            text = _first_text_plain(raw)
        elif key.endswith(".html"):
            text = str(get_text(raw.decode("utf-8")))  # talon compares the HTML's text: ours via inscriptis
        else:
            text = raw.decode("utf-8")
        if key.startswith("discourse-"):
            text = text.strip()  # the upstream test trims the file before trimming the reply
        yield Case(row, key, text, want, _compare_mode(note.get("compare", "exact")), keep)
    yield from _date_template_cases(notes)
    yield from _talon_inline_cases()


def _date_template_cases(notes: dict[str, dict[str, Any]]) -> Iterator[Case]:
    """willdurand's template: one reply above a [DATE] quote header, 17 header styles."""
    key = "willdurand-EmailReplyParser/Fixtures/email_with_date_headers.txt"
    template = (GOLD / key).read_text(encoding="utf-8")
    (assertion,) = notes[key]["assertions"]
    for header in assertion["substitutions"]:
        text = template.replace(assertion["template_placeholder"], header)
        yield Case(
            "willdurand date headers", f"{key} [{header}]", text, assertion["expected_visible_text_for_each"], "exact"
        )


def _talon_inline_cases() -> Iterator[Case]:
    data = json.loads((GOLD / TALON / "inline_text_cases.json").read_text(encoding="utf-8"))
    for n, case in enumerate(data["cases"]):
        if case.get("decorators"):
            continue  # patches a talon internal (MAX_LINES_COUNT): not a property of the reply
        yield Case(f"{TALON} inline", f"{case['test']}#{n}", case["input"], case["expected"], "exact", True)


CASES = list(gold_cases())
# Which fixture strip_reply gets right, as reviewed: tests/corpus/expect.py writes it (--update-expected).
EXPECTED: dict[str, dict[str, bool]] = json.loads(
    (Path(__file__).resolve().parent / "expected" / "reply-stripping.json").read_text(encoding="utf-8")
)


# --- fixtures whose tests assert only parts of the reply ---------------------


@dataclass(frozen=True)
class Check:
    """One partial assertion on the visible reply: it must (or must not) contain a string or match a regex."""

    present: bool
    needle: str
    regex: bool = False

    def holds(self, found: str) -> bool:
        hit = bool(re.search(self.needle, found, re.MULTILINE)) if self.regex else self.needle in found
        return hit is self.present


@dataclass(frozen=True)
class Partial:
    row: str
    name: str
    text: str
    checks: tuple[Check, ...]


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def _checks(assertion: dict[str, Any], text: str) -> Iterator[Check]:
    """Translate the assertion kinds that speak about the visible reply; the rest are library internals."""
    quoted = assertion.get("quoted", [])
    hidden = assertion.get("hidden", [])
    if assertion.get("fragments") == 1 or "nothing to strip" in assertion.get("meaning", ""):
        yield Check(True, text.strip())  # one visible fragment: nothing may be cut
    for key, present in (
        ("fragment_contains_regex", True),
        ("fragment_regex", True),
        ("fragment_regex_multiline", True),
    ):
        for index, patterns in assertion.get(key, {}).items():
            k = int(index)
            if k == 0 and not (quoted and quoted[0]):
                yield from (Check(present, p, regex=True) for p in _as_list(patterns))
            elif k > 0 and ((k < len(hidden) and hidden[k]) or key == "fragment_regex_multiline"):
                yield from (Check(False, p, regex=True) for p in _as_list(patterns))
    for index, needle in assertion.get("fragment_contains", {}).items():
        if index == "0":
            yield Check(True, needle)
    for needle in assertion.get("fragment_not_contains", {}).values():
        yield Check(False, needle)
    for key in ("reply0_body_contains", "reply_contains"):
        yield from (Check(True, n) for n in _as_list(assertion.get(key, [])))
    for key in ("reply0_body_not_contains", "body_not_contains", "reply_not_contains", "result_not_contains"):
        if key in assertion:
            yield Check(False, assertion[key])
    for key, value in assertion.items():
        # An earlier message's header must be gone; its body words ("Hej") may recur in the reply.
        if re.fullmatch(r"reply[1-9]_headers?(_contains)?", key):
            yield from (Check(False, n) for n in _as_list(value))


def partial_cases() -> Iterator[Partial]:
    expected: dict[str, str] = json.loads((GOLD / "expected.json").read_text(encoding="utf-8"))
    notes: dict[str, dict[str, Any]] = json.loads((GOLD / "expected_notes.json").read_text(encoding="utf-8"))
    for key, note in sorted(notes.items()):
        if key in expected or not (GOLD / key).is_file():
            continue
        text = (GOLD / key).read_text(encoding="utf-8")
        for assertion in note.get("assertions", []):
            if "template_placeholder" in assertion and "fragment_1_content_for_each" in assertion:
                for value in assertion["substitutions"]:
                    body = text.replace(assertion["template_placeholder"], value)
                    yield Partial(key.split("/", 1)[0], f"{key} [{value}]", body, (Check(False, "My email is"),))
                continue
            checks = tuple(_checks(assertion, text))
            if checks:
                yield Partial(key.split("/", 1)[0], key, text, checks)


# --- mail-parser-reply, run over the same cases ---------------------------------


def _mail_parser_reply() -> Callable[[str, bool], str] | None:
    """mail-parser-reply with every language it knows; None when it is not installed (not a mailsvc dependency)."""
    try:
        from mailparser_reply import EmailReplyParser  # type: ignore[import-untyped]  # noqa: PLC0415
        from mailparser_reply.constants import MAIL_LANGUAGES  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        return None
    parser = EmailReplyParser(languages=list(MAIL_LANGUAGES))

    def run(text: str, keep_signature: bool) -> str:
        replies = parser.read(text).replies
        if not replies:
            return ""
        return str(replies[0].full_body if keep_signature else replies[0].body)

    return run


# --- the measurement ---------------------------------------------------------


@dataclass
class Tally:
    fixtures: int = 0
    ours: int = 0
    theirs: int = 0


def measure(
    cases: list[Case], theirs: Callable[[str, bool], str] | None
) -> tuple[dict[str, Tally], list[tuple[Case, str]]]:
    rows: dict[str, Tally] = {}
    failures: list[tuple[Case, str]] = []
    for case in cases:
        tally = rows.setdefault(case.row, Tally())
        tally.fixtures += 1
        found = strip_reply(case.text, keep_signature=case.keep_signature)
        if same(found, case.expected, case.compare):
            tally.ours += 1
        else:
            failures.append((case, found))
        if theirs is not None and same(theirs(case.text, case.keep_signature), case.expected, case.compare):
            tally.theirs += 1
    return rows, failures


def _rate(hits: int, total: int) -> str:
    return f"{hits:>4}/{total:<4} {hits / total:6.1%}" if total else "   -"


def render_table(rows: dict[str, Tally], with_theirs: bool) -> str:
    width = max(len(row) for row in rows) + 2
    theirs_head = "mail-parser-reply" if with_theirs else "mail-parser-reply (not installed)"
    lines = [f"{'source':<{width}} {'fixtures':>8}   {'strip_reply':<17} {theirs_head}"]
    total = Tally()
    for row, tally in sorted(rows.items()):
        total.fixtures += tally.fixtures
        total.ours += tally.ours
        total.theirs += tally.theirs
        theirs = _rate(tally.theirs, tally.fixtures) if with_theirs else "-"
        lines.append(f"{row:<{width}} {tally.fixtures:>8}   {_rate(tally.ours, tally.fixtures):<17} {theirs}")
    theirs = _rate(total.theirs, total.fixtures) if with_theirs else "-"
    lines.append(f"{'overall':<{width}} {total.fixtures:>8}   {_rate(total.ours, total.fixtures):<17} {theirs}")
    return "\n".join(lines)


def _show(report: str, capsys: pytest.CaptureFixture[str]) -> None:
    print(report)  # in the captured output: shown with -s, -rA or on failure
    # CI logs carry the table on every run: pytest's fd capture would swallow even sys.__stderr__.
    with capsys.disabled():
        print(report, file=sys.__stderr__)


def test_exact_match_rate_per_source(capsys: pytest.CaptureFixture[str]) -> None:
    theirs = _mail_parser_reply()
    rows, failures = measure(CASES, theirs)
    _show(
        "\nreply stripping, exact-match rate per source (as expected_notes.json compares)\n"
        + render_table(rows, theirs is not None),
        capsys,
    )
    total = sum(t.fixtures for t in rows.values())
    ours = sum(t.ours for t in rows.values())
    missed = "\n".join(f"  {case.row}: {case.name}" for case, _ in failures)
    assert ours / total >= MIN_OVERALL, f"overall {ours}/{total} below {MIN_OVERALL:.0%}; missed:\n{missed}"


def measure_partial(
    cases: list[Partial], theirs: Callable[[str, bool], str] | None
) -> tuple[dict[str, Tally], list[tuple[Partial, str]]]:
    rows: dict[str, Tally] = {}
    failures: list[tuple[Partial, str]] = []
    for case in cases:
        tally = rows.setdefault(case.row, Tally())
        tally.fixtures += 1
        found = strip_reply(case.text)
        if all(check.holds(found) for check in case.checks):
            tally.ours += 1
        else:
            failures.append((case, found))
        if theirs is not None and all(check.holds(theirs(case.text, False)) for check in case.checks):
            tally.theirs += 1
    return rows, failures


def test_partial_assertions_per_source(capsys: pytest.CaptureFixture[str]) -> None:
    """Fixtures without a gold reply: their contains / not-contains / nothing-to-strip assertions."""
    theirs = _mail_parser_reply()
    cases = list(partial_cases())
    rows, failures = measure_partial(cases, theirs)
    _show("\nreply stripping, fixtures with partial assertions only\n" + render_table(rows, theirs is not None), capsys)
    failed = {case.name for case, _ in failures}
    assert {case.name: case.name not in failed for case in cases} == EXPECTED["partial"]


def test_each_gold_fixture_keeps_its_outcome() -> None:
    """The overall rate above can hide one fixture breaking while another is fixed: each is pinned."""
    _, failures = measure(CASES, None)
    failed = {case.name for case, _ in failures}
    assert {case.name: case.name not in failed for case in CASES} == EXPECTED["gold"]


# --- replies to our own notifications: the marker makes the cut exact -------

NOTIFICATION = f"""{MARKER}

Case #1234: the printer on floor 3 is jammed
Requester: Alice Example <alice@example.net>

Hello, the printer on floor 3 shows error E-42 since this morning.
On Monday it printed fine. Bob wrote: "try turning it off and on".

--
Help Desk <help@example.org>"""


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.split("\n"))


def _outlook(fields: list[str], separator: str = "________________________________") -> str:
    block = "\n".join(fields)
    return f"{separator}\n{block}\n\n{NOTIFICATION}" if separator else f"{block}\n\n{NOTIFICATION}"


# How clients put the notification under the staff member's new text.
CLIENT_QUOTES: dict[str, str] = {
    "gmail en": f"On Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:\n\n{_quote(NOTIFICATION)}",
    "gmail en wrapped": (
        f"On Mon, 23 Nov 2026 at 10:00, Help Desk <\nhelp@example.org> wrote:\n\n{_quote(NOTIFICATION)}"
    ),
    "gmail de wrapped": (
        f"Am Mo., 23. Nov. 2026 um 10:00 Uhr schrieb Help Desk <\nhelp@example.org>:\n\n{_quote(NOTIFICATION)}"
    ),
    "gmail fr": f"Le lun. 23 nov. 2026 à 10:00, Help Desk <help@example.org> a écrit :\n\n{_quote(NOTIFICATION)}",
    "gmail es": f"El lun, 23 nov 2026 a las 10:00, Help Desk (<help@example.org>) escribió:\n\n{_quote(NOTIFICATION)}",
    "gmail it": (
        f"Il giorno lun 23 nov 2026 alle ore 10:00 Help Desk <help@example.org> ha scritto:\n\n{_quote(NOTIFICATION)}"
    ),
    "gmail nl": f"Op ma 23 nov. 2026 om 10:00 schreef Help Desk <help@example.org>:\n\n{_quote(NOTIFICATION)}",
    "gmail pl": f"pon., 23 lis 2026 o 10:00 Help Desk <help@example.org> napisał(a):\n\n{_quote(NOTIFICATION)}",
    "gmail pt": (
        f"Em seg., 23 de nov. de 2026 às 10:00, Help Desk <help@example.org> escreveu:\n\n{_quote(NOTIFICATION)}"
    ),
    "gmail ru": f"пн, 23 нояб. 2026 г. в 10:00, Help Desk <help@example.org>:\n\n{_quote(NOTIFICATION)}",
    "gmail ja": f"2026年11月23日(月) 10:00 Help Desk <help@example.org>:\n\n{_quote(NOTIFICATION)}",
    "gmail zh": f"Help Desk <help@example.org> 于2026年11月23日周一 10:00写道：\n\n{_quote(NOTIFICATION)}",
    "gmail sv": f"Den mån 23 nov. 2026 kl 10:00 skrev Help Desk <help@example.org>:\n\n{_quote(NOTIFICATION)}",
    "apple mail": f"> On 23 Nov 2026, at 10:00, Help Desk <help@example.org> wrote:\n> \n{_quote(NOTIFICATION)}",
    "apple mail unquoted header": (
        f"On 23 Nov 2026, at 10:00, Help Desk <help@example.org> wrote:\n\n{_quote(NOTIFICATION)}"
    ),
    "thunderbird en": f"On 23/11/2026 10:00, Help Desk wrote:\n{_quote(NOTIFICATION)}",
    "thunderbird de": f"Am 23.11.26 um 10:00 schrieb Help Desk:\n{_quote(NOTIFICATION)}",
    "outlook en": _outlook(
        [
            "From: Help Desk <help@example.org>",
            "Sent: Monday, November 23, 2026 10:00 AM",
            "To: Jane Staff <jane@example.org>",
            "Subject: [Case #1234] the printer on floor 3 is jammed",
        ]
    ),
    "outlook de": _outlook(
        [
            "Von: Help Desk <help@example.org>",
            "Gesendet: Montag, 23. November 2026 10:00",
            "An: Jane Staff <jane@example.org>",
            "Betreff: [Case #1234] the printer on floor 3 is jammed",
        ],
        "-----Ursprüngliche Nachricht-----",
    ),
    "outlook fr": _outlook(
        [
            "De : Help Desk <help@example.org>",
            "Envoyé : lundi 23 novembre 2026 10:00",
            "À : Jane Staff <jane@example.org>",
            "Objet : [Case #1234] the printer on floor 3 is jammed",
        ]
    ),
    "outlook nl no separator": _outlook(
        [
            "Van: Help Desk [mailto:help@example.org]",
            "Verzonden: maandag 23 november 2026 10:00",
            "Aan: Jane Staff",
            "Onderwerp: [Case #1234] the printer on floor 3 is jammed and the subject is long enough",
            "to wrap",
        ],
        "",
    ),
    "outlook bold": _outlook(
        [
            "*From:* Help Desk <help@example.org>",
            "*Sent:* Monday, November 23, 2026 10:00 AM",
            "*To:* Jane Staff <jane@example.org>",
            "*Subject:* [Case #1234] the printer on floor 3 is jammed",
        ],
        "",
    ),
    "original message": f"-----Original Message-----\n{NOTIFICATION}",
}

# The new text staff write above the quote; each must come back exactly.
NEW_TEXTS: dict[str, str] = {
    "one line": "Fixed, the tray was misaligned.",
    "paragraphs": (
        "Hi Alice,\n\nthe printer works again.\n\n  - tray realigned\n  - toner replaced\n\nBest regards,\nJane"
    ),
    "mentions wrote": "On Monday Bob wrote: the tray was fine.\nFrom: the lab, with love.\nIt is fixed now.",
    "ends with address": "Please write to facilities@example.org if it happens again.",
}
# Signatures the staff's client adds: gone from the relayed text.
SIGNATURES = [
    "",
    "\n\n-- \nJane Staff\nIT Support",
    "\n\nSent from my iPhone",
    "\n\nGet Outlook for iOS<https://aka.ms/o0ukef>",
]


def marker_replies() -> Iterator[tuple[str, str, str]]:
    for client, quoted in CLIENT_QUOTES.items():
        for name, new in NEW_TEXTS.items():
            for signature in SIGNATURES:
                reply = f"{new}{signature}\n\n{quoted}\n"
                yield f"{client} / {name} / {signature.strip()[:12]!r}", reply, new
                yield f"{client} / {name} / {signature.strip()[:12]!r} / CRLF", reply.replace("\n", "\r\n"), new


def test_replies_to_our_notifications_are_exact(capsys: pytest.CaptureFixture[str]) -> None:
    cases = list(marker_replies())
    wrong = [(name, found) for name, reply, new in cases if (found := strip_reply(reply)) != new]
    _show(f"\nreplies to our notifications (marker present): {len(cases) - len(wrong)}/{len(cases)} exact", capsys)
    assert not wrong, "\n".join(f"{name}: {found!r}" for name, found in wrong[:10])
