"""Bounce detection measured on ../shared/corpus/bounces/ against each source's gold (SOURCES.md, section 4),
and each distinct file's verdict compared with tests/corpus/expected/bounces.json (files without gold included).

Per gold set: detection precision/recall (is it a bounce?), address precision/recall (the right bounced
addresses), hard/soft accuracy. Complaints (ARF), RFC 3834 auto-replies and success reports are the negatives.
sisimai's set is reported apart from flufl.bounce's own fixtures, which flufl was written against.
"""

from __future__ import annotations

import json
import mailbox
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailsvc.bounce import Bounce, detect_bounce
from tests.corpus.expect import bounce_files, bounce_summary, load

pytestmark = pytest.mark.corpus

CORPUS = Path(os.environ.get("MAILSVC_CORPUS") or Path(__file__).resolve().parents[2].parent / "shared" / "corpus")
BOUNCES = CORPUS / "bounces"
if not (BOUNCES / "sisimai-set-of-emails" / "expected.json").is_file():
    pytest.skip(f"bounce corpus not found at {BOUNCES}", allow_module_level=True)

MIN_RECALL = 0.95
NOT_BOUNCES = {"feedback", "vacation", "delivered"}  # sisimai reasons that report no failed delivery


@dataclass(frozen=True)
class Gold:
    """What one file should give. None means the gold does not say."""

    path: Path
    bounce: bool | None
    addresses: frozenset[str] | None = None
    permanent: bool | None = None
    count: int | None = None  # sisimai: bounced recipients, whose addresses its gold does not give
    complaint: bool = False  # an ARF feedback report: no bounce, but kind "arf" is expected
    raw: bytes | None = field(default=None, repr=False)  # one message of an mbox; else the file's bytes


@dataclass
class Score:
    files: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    addr_tp: int = 0
    addr_fp: int = 0
    addr_fn: int = 0
    hard_ok: int = 0
    hard_n: int = 0
    count_ok: int = 0
    count_n: int = 0
    detected: int = 0
    msgid: int = 0
    arf_ok: int = 0
    arf_n: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, gold: Gold, found: Bounce | None) -> None:
        self.files += 1
        said = found is not None and found.kind != "arf"
        if said and found is not None:
            self.detected += 1
            self.msgid += found.original_message_id is not None
        name = gold.path.relative_to(CORPUS).as_posix() + (" (in mbox)" if gold.raw is not None else "")
        if gold.complaint:
            self.arf_n += 1
            self.arf_ok += found is not None and found.kind == "arf"
        if gold.bounce is None:
            return
        if gold.bounce and said:
            self.tp += 1
        elif gold.bounce:
            self.fn += 1
            self.misses.append(f"missed {name}")
        elif said:
            self.fp += 1
            self.misses.append(f"false alarm {name} ({found.kind if found else ''})")
        else:
            self.tn += 1
        got = set(found.recipients) if said and found is not None else set()
        if gold.addresses is not None:
            self.addr_tp += len(got & gold.addresses)
            self.addr_fp += len(got - gold.addresses)
            self.addr_fn += len(gold.addresses - got)
            if got != gold.addresses and said:
                self.misses.append(f"addresses {name}: got {sorted(got)} want {sorted(gold.addresses)}")
        if gold.count is not None and said:
            self.count_n += 1
            self.count_ok += len(got) == gold.count
        if gold.permanent is not None and said and found is not None:
            self.hard_n += 1
            self.hard_ok += found.permanent == gold.permanent
            if found.permanent != gold.permanent:
                self.misses.append(f"hard/soft {name}: got permanent={found.permanent} ({found.status})")

    @property
    def detection_recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def address_recall(self) -> float | None:
        return _ratio(self.addr_tp, self.addr_tp + self.addr_fn)

    def row(self, name: str) -> str:
        cells = [
            _pct(_ratio(self.tp, self.tp + self.fp)),
            _pct(self.detection_recall),
            _pct(_ratio(self.addr_tp, self.addr_tp + self.addr_fp)),
            _pct(self.address_recall),
            _pct(_ratio(self.count_ok, self.count_n)),
            _pct(_ratio(self.hard_ok, self.hard_n)),
            _pct(_ratio(self.msgid, self.detected)),
            _pct(_ratio(self.arf_ok, self.arf_n)),
        ]
        counts = f"{self.files:5d} {self.tp + self.fn:4d} {self.fp + self.tn:4d} {self.detected:5d}"
        return f"{name:<26} {counts} " + " ".join(f"{c:>7}" for c in cells)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


HEADER = f"{'set':<26} {'files':>5} {'pos':>4} {'neg':>4} {'found':>5} " + " ".join(
    f"{c:>7}" for c in ("det P", "det R", "addr P", "addr R", "rcpt #", "hard", "msgid", "arf")
)


# --- Gold readers, one per source


def _load(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((BOUNCES / name / "expected.json").read_text("utf-8"))
    return data


def flufl_fixtures() -> Iterator[Gold]:
    """flufl's DATA table: per detector, the permanent or temporary addresses; an empty set is that detector's
    negative check, not a verdict on the message."""
    samples = _load("flufl.bounce")["samples"]
    assert isinstance(samples, dict)
    for name, records in samples.items():
        hits = [r for r in records if r["addresses"]]
        addresses = frozenset(a.lower() for r in hits for a in r["addresses"])
        yield Gold(BOUNCES / "flufl.bounce" / name, bool(hits), addresses, any(r["kind"] == "permanent" for r in hits))


def mailman2() -> Iterator[Gold]:
    """Mailman 2.1's DATA table. STOP is a delay warning: a soft bounce whose address Mailman does not score."""
    samples = _load("mailman2")["samples"]
    assert isinstance(samples, dict)
    for name, records in samples.items():
        path = BOUNCES / "mailman2" / name
        if any(r.get("result") == "STOP" for r in records):
            yield Gold(path, True, None, False)
            continue
        addresses = frozenset(a.lower() for r in records for a in r.get("addresses", []))
        yield Gold(path, bool(addresses), addresses if addresses else frozenset(), True if addresses else None)


def enmime() -> Iterator[Gold]:
    """enmime's RFC 3464 samples: the failed recipients, or the delayed ones when nothing failed."""
    for name, sample in _load("enmime-dsn").items():
        if name.startswith("_"):
            continue
        assert isinstance(sample, dict)
        blocks = sample["recipient_dsns"]
        failed = [b for b in blocks if b["Action"] == "failed"]
        chosen = failed or [b for b in blocks if b["Action"] == "delayed"]
        addresses = frozenset(
            (b.get("Original-Recipient") or b["Final-Recipient"]).split(";", 1)[1].strip().lower() for b in chosen
        )
        # Hard or soft by the RFC 3463 class of the Status it gives: "failed" with 4.0.0 gave up on a transient cause.
        permanent = any(b["Status"].startswith("5") for b in chosen)
        yield Gold(BOUNCES / "enmime-dsn" / name, True, addresses, permanent)


def ruby_mail() -> Iterator[Gold]:
    for name, sample in _load("ruby-mail").items():
        if name.startswith("_"):
            continue
        assert isinstance(sample, dict)
        recipient = sample.get("final_recipient")
        addresses = frozenset({recipient.split(";", 1)[1].strip().lower()}) if recipient else None
        permanent = None if "retryable" not in sample else not sample["retryable"]
        yield Gold(BOUNCES / "ruby-mail" / name, True, addresses, permanent)


def flanker() -> Iterator[Gold]:
    """flanker's gold names two bounces and one non-bounce; its _about names the rest (delays, ARF complaints)."""
    gold = _load("flanker")
    root = BOUNCES / "flanker"
    for path in sorted((root / "bounce").iterdir()):
        sample = gold.get(f"bounce/{path.name}")
        recipient = sample.get("failed_recipient_in_notification") if isinstance(sample, dict) else None
        delayed = path.name.startswith("delayed")
        yield Gold(path, True, frozenset({recipient.lower()}) if recipient else None, False if delayed else None)
    for path in sorted((root / "complaints").iterdir()):
        yield Gold(path, False, complaint=True)
    signed = CORPUS / "mime" / "flanker" / "messages" / "signed.eml"
    if signed.is_file():
        yield Gold(signed, False)


def _sisimai_gold() -> dict[str, Gold]:
    root = BOUNCES / "sisimai-set-of-emails"
    samples = _load("sisimai-set-of-emails")["samples"]
    assert isinstance(samples, dict)
    gold: dict[str, Gold] = {}
    for name, sample in samples.items():
        bounced = [r for r in sample["recipients"] if r["reason"] not in NOT_BOUNCES]
        status = bounced[0]["delivery_status"] if bounced else ""
        permanent = {"5": True, "4": False}.get(status[:1])
        complaint = any(r["reason"] == "feedback" for r in sample["recipients"])
        gold[name] = Gold(root / name, bool(bounced), None, permanent, len(bounced) or None, complaint)
    return gold


def sisimai() -> Iterator[Gold]:
    """go-sisimai's tables: reason and status per recipient, no addresses. maildir/not/ holds non-bounces."""
    gold = _sisimai_gold()
    root = BOUNCES / "sisimai-set-of-emails" / "maildir"
    yield from gold.values()
    for path in sorted((root / "not").iterdir()):
        yield Gold(path, False)


def sisimai_line_endings() -> Iterator[Gold]:
    """dos/ (CRLF) and mac/ (CR) copies, scored with the gold of the bsd/ file they copy byte for byte."""
    gold = _sisimai_gold()
    root = BOUNCES / "sisimai-set-of-emails" / "maildir"
    for folder in ("dos", "mac"):
        for path in sorted((root / folder).iterdir()):
            twin = gold.get(f"maildir/bsd/{path.name}")
            lf = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if twin is not None and lf == twin.path.read_bytes():
                yield Gold(path, twin.bounce, None, twin.permanent, twin.count, twin.complaint)
            else:
                yield Gold(path, None)


def ordinary_mail() -> Iterator[Gold]:
    """Mail from people (mailing-list threads, reply-stripping fixtures): every one a negative, mboxes split."""
    for folder in ("threading", "reply-stripping"):
        for path in sorted((CORPUS / folder).rglob("*")):
            if not path.is_file() or path.suffix in {".json", ".md"}:
                continue
            if path.read_bytes()[:5] != b"From ":
                yield Gold(path, False)
                continue
            for message in mailbox.mbox(path, create=False):
                yield Gold(path, False, raw=message.as_bytes())


def mime_stress() -> Iterator[Gold]:
    """Tricky and malformed MIME (some of it bounces): no gold; each verdict is pinned by expected/bounces.json."""
    for path in sorted((CORPUS / "mime").rglob("*")):
        if path.is_file() and path.suffix != ".json":
            yield Gold(path, None)


def ungolded() -> Iterator[Gold]:
    """Files under bounces/ that no gold covers (sisimai's err/, tmp/, mailbox/, renamed samples; nodemailer)."""
    golden = {g.path for source in GOLD_SETS.values() for g in source() if g.bounce is not None}
    for path in sorted(BOUNCES.rglob("*")):
        if path.is_file() and path.name != "expected.json" and path not in golden:
            yield Gold(path, None)


GOLD_SETS: dict[str, Callable[[], Iterator[Gold]]] = {
    "flufl.bounce fixtures": flufl_fixtures,
    "mailman2": mailman2,
    "enmime-dsn": enmime,
    "ruby-mail": ruby_mail,
    "flanker": flanker,
    "sisimai bsd+not": sisimai,
    "sisimai dos/mac copies": sisimai_line_endings,
}
SETS: dict[str, Callable[[], Iterator[Gold]]] = {
    **GOLD_SETS,
    "bounces/ without gold": ungolded,
    "ordinary mail (negatives)": ordinary_mail,
    "mime/ (stress, no gold)": mime_stress,
}
MAX_FALSE_ALARMS = 0.01  # on mail from people: a bounce verdict there stops mail to a real requester
LEGEND = """\
pos/neg: gold bounces / gold non-bounces (ARF, RFC 3834 auto-replies, success reports, mail from people);
found: files detect_bounce called a bounce (ARF excluded). addr: micro-averaged over bounced addresses.
rcpt #: sisimai's gold lists no addresses, only how many recipients bounced: share of files with that count.
hard: agreement on hard/soft where the gold says: flufl/mailman2 call every given-up recipient permanent,
  ruby-mail, enmime and sisimai go by the status class (5.x.x hard, 4.x.x soft), as Bounce.permanent does.
msgid: share of found bounces with the original Message-ID. arf: complaints in the gold given kind "arf"."""


def _detect(gold: Gold) -> Bounce | None:
    return detect_bounce(gold.raw if gold.raw is not None else gold.path.read_bytes())


def test_bounce_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    scores: dict[str, Score] = {}
    for name, source in SETS.items():
        score = scores[name] = Score()
        for gold in source():
            score.add(gold, _detect(gold))
    lines = ["", f"bounce detection on {BOUNCES}", HEADER, *(score.row(name) for name, score in scores.items()), LEGEND]
    for name, score in scores.items():
        lines += [f"  {name}: {miss}" for miss in score.misses]
    report = "\n".join(lines)
    print(report)  # shown with a failure
    with capsys.disabled():  # pytest captures file descriptor 2 as well: suspend it so a passing run shows the table
        if sys.__stderr__ is not None:
            sys.__stderr__.write(report + "\n")
    for name in GOLD_SETS:
        score = scores[name]
        # sisimai's gold gives no addresses (address recall None there): its "rcpt #" column is reported, not asserted.
        for what, value in (("detection", score.detection_recall), ("address", score.address_recall)):
            assert value is None or value >= MIN_RECALL, f"{name}: {what} recall {value:.3f} < {MIN_RECALL}"
    people = scores["ordinary mail (negatives)"]
    assert people.fp <= MAX_FALSE_ALARMS * people.files, people.misses


FILES = bounce_files()
EXPECTED: dict[str, dict[str, object]] = load("bounces")


@pytest.mark.parametrize("name", sorted(FILES))
def test_file_gives_the_expected_verdict(name: str) -> None:
    """Per distinct file, gold or not: the verdict reviewed when the expectations were written."""
    assert name in EXPECTED, f"{name} has no expectation: review it and run --update-expected"
    assert bounce_summary(FILES[name].read_bytes()) == EXPECTED[name]


def test_every_expectation_names_a_corpus_file() -> None:
    assert sorted(set(EXPECTED) - set(FILES)) == []
