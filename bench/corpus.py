"""The seeded corpus: realistic help-desk traffic, each message with the case it must land in.

Same seed and namespace, same bytes. About 60% new requests and 40% replies
(requester and staff) threaded by In-Reply-To/References, with edited subjects
("AW:", "RE: FW:", a new subject, the case tag kept or dropped), plain and
multipart/alternative bodies in UTF-8 and ISO-8859-1, RFC 2047 names and
subjects, small attachments, and a few auto-replies and notifications. After an
ingest, bench/echoes.py answers some of the acknowledgements mailsvc sent
(out-of-office replies, bounces), as their senders' servers would.
"""

from __future__ import annotations

import hashlib
import html
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from bench import mime
from bench.corpus_text import COMPANIES, LOCALES, NOTIFICATIONS, SIGNATURES, STAFF, Locale

HELP = "help@example.org"
HELP_DISPLAY = "Example Help Desk"
START = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CorpusMessage:
    raw: bytes = field(repr=False)
    thread: str  # the expected case, as an abstract key: same key, same case; another key, another case
    message_id: str
    kind: str  # request, requester_reply, staff_reply, auto_reply, notification, bounce
    wants_ack: bool  # a new request from a person: exactly one acknowledgement is due


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    addr: str
    locale: Locale
    charset: str  # what this person's mail client prefers for headers and bodies


@dataclass
class _Thread:
    key: str
    subject: str
    requester: Person
    case_no: int | None
    budget: int
    ids: list[str]
    last_text: str
    last_subject: str
    last_from: Person
    last_is_staff: bool = False


def _ascii_local(name: str, n: int) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = ["".join(c for c in w if c.isalnum()) for w in plain.split()]
    words = [w for w in words if w]
    return ".".join(words) if len(words) >= 2 else f"user{n}"


@dataclass(frozen=True, slots=True)
class Mix:
    """The shape of the traffic: how much is new requests, plain text, quoted history, attachments."""

    new_share: float  # of the messages, new requests (the rest answers open threads)
    plain_share: float  # of human mail, text/plain alone (the rest multipart/alternative)
    quote_lines: int  # quoted lines a reply carries at most
    attach_request: float
    attach_reply: float
    budget_weights: tuple[int, ...]  # replies a thread gets: 0, 1, 2, 3, 4, 6


MIXES = {
    # About 60% new requests, 40% replies: what a help desk with many one-off questions sees.
    "default": Mix(0.6, 0.45, 30, 0.07, 0.03, (35, 30, 20, 8, 4, 3)),
    # About 70% replies, mostly short plain text: a desk whose cases run to a conversation.
    "replies": Mix(0.3, 0.85, 8, 0.02, 0.01, (0, 15, 25, 30, 20, 10)),
}


class Generator:
    def __init__(
        self, seed: int, namespace: str = "bench", *, tags: bool = True, case_base: int = 0, mix: str = "default"
    ) -> None:
        self.mix = MIXES[mix]
        self.rng = random.Random(f"{seed}:{namespace}" if mix == "default" else f"{seed}:{namespace}:{mix}")
        self.ns = hashlib.sha1(namespace.encode()).hexdigest()[:4]
        self.tags = tags
        self.cases = case_base  # the id mailsvc gives the last case opened, if it threads right
        self.count = 0
        self.now = START
        self.thread_count = 0
        self.threads: list[_Thread] = []
        self.active: list[_Thread] = []
        self.by_id: dict[str, str] = {}  # Message-ID -> thread key
        self.people = [self._person(i) for i in range(500)]
        self.staff = [Person(n, a, LOCALES[0], "utf-8") for n, a in STAFF]

    # -- public ----------------------------------------------------------------------------------------------
    def generate(self, n: int) -> list[CorpusMessage]:
        """n messages of mixed traffic, in delivery order (a reply after what it answers)."""
        out: list[CorpusMessage] = []
        while len(out) < n:
            if not self.active or self.rng.random() < self.mix.new_share:
                out.append(self.notification() if self.rng.random() < 0.02 else self.request())
                continue
            thread = self.rng.choice(self.active[-150:])
            r = self.rng.random()
            if thread.last_is_staff and r < 0.08:
                out.append(self.out_of_office(thread))
                continue
            out.append(self.reply(thread, staff=r >= 0.62))
            thread.budget -= 1
            if thread.budget <= 0:
                self.active.remove(thread)
        return out

    def requests(self, n: int) -> list[CorpusMessage]:
        """n new requests from people, nothing else (the latency run)."""
        return [self.request() for _ in range(n)]

    # -- message kinds ---------------------------------------------------------------------------------------
    def request(self) -> CorpusMessage:
        person = self.rng.choice(self.people)
        loc = person.locale
        subject = self._fill(self.rng.choice(loc.subjects))
        if self.rng.random() < 0.05:
            subject = loc.forward_prefix + subject  # forwarded from elsewhere: still a new request
        lines = self.rng.sample(loc.sentences, k=min(len(loc.sentences), self.rng.randint(2, 5)))
        text = self.body(person, lines)
        key = self.new_key()
        self.cases += 1
        budget = self.rng.choices((0, 1, 2, 3, 4, 6), weights=self.mix.budget_weights)[0]
        mid = self.message_id(person.addr)
        thread = _Thread(key, subject, person, self.cases if self.tags else None, budget, [mid], text, subject, person)
        self.threads.append(thread)
        if budget:
            self.active.append(thread)
        raw = self._human(person, [("To", self._to_help())], subject, text, mid, attach=self.mix.attach_request)
        return self.emit(raw, key, mid, "request", wants_ack=True)

    def reply(self, thread: _Thread, *, staff: bool) -> CorpusMessage:
        loc = thread.requester.locale
        sender = self.rng.choice(self.staff) if staff else thread.requester
        pool = loc.staff_replies if staff else loc.replies
        to_ack = not staff and self.rng.random() < 0.3  # the requester answers our acknowledgement
        parent = thread.ids[-1] if self.rng.random() < 0.85 else self.rng.choice(thread.ids)
        chain = thread.ids[: thread.ids.index(parent) + 1]
        if to_ack:
            ack_id = f"<{self.rng.getrandbits(60)}.{self.count}.{self.rng.getrandbits(30)}.case@example.org>"
            in_reply_to, references = [ack_id], [thread.ids[0], ack_id]
        else:
            style = self.rng.random()
            in_reply_to = [] if style < 0.05 else [parent]  # a few clients send References only
            references = [parent] if style > 0.8 else (chain[:1] + chain[-9:] if len(chain) > 10 else chain)
        subject = self._reply_subject(thread, loc, to_ack=to_ack)
        quote = (thread.last_from, thread.last_text)
        text = self.body(sender, [self._fill(self.rng.choice(pool))], quote=quote, loc=loc)
        mid = self.message_id(sender.addr)
        if staff:
            headers = [("To", mime.address(thread.requester.name, thread.requester.addr)), ("Cc", self._to_help()),
                       ("Reply-To", mime.address(HELP_DISPLAY, HELP))]  # fmt: skip
        else:
            headers = [("To", self._to_help())]
        raw = self._human(sender, headers, subject, text, mid, in_reply_to, references, attach=self.mix.attach_reply)
        thread.ids.append(mid)
        thread.last_text, thread.last_subject, thread.last_from, thread.last_is_staff = text, subject, sender, staff
        return self.emit(raw, thread.key, mid, "staff_reply" if staff else "requester_reply", wants_ack=False)

    def out_of_office(self, thread: _Thread) -> CorpusMessage:
        """The requester's out-of-office answering a staff reply (which asked for replies to the help desk)."""
        person, parent = thread.requester, thread.ids[-1]
        mid = self.message_id(person.addr)
        headers = [
            *self.envelope(person.addr),
            ("From", mime.address(person.name, person.addr, person.charset)),
            ("To", mime.address(HELP_DISPLAY, HELP)),
            ("Subject", mime.encode_words(person.locale.ooo + thread.last_subject, person.charset)),
            ("Date", self.date(person.locale)),
            ("Message-ID", mid),
            ("In-Reply-To", parent),
            ("References", parent),
            ("Auto-Submitted", "auto-replied"),
            ("X-Auto-Response-Suppress", "All"),
        ]
        body = self.body(person, ["I am out of the office until next Monday with limited access to e-mail."])
        raw = mime.render(headers, mime.text(body, "plain", person.charset, "quoted-printable"))
        return self.emit(raw, thread.key, mid, "auto_reply", wants_ack=False)

    def notification(self) -> CorpusMessage:
        """Automatic mail that opens a case of its own and must never be answered."""
        name, addr, subject = self.rng.choice(NOTIFICATIONS)
        mid = self.message_id(addr)
        key = self.new_key()
        self.cases += 1
        headers = [
            ("Return-Path", f"<bounces+{self.rng.getrandbits(32):x}@{addr.partition('@')[2]}>"),
            *self.envelope(addr)[1:],
            ("From", mime.address(name, addr)),
            ("To", HELP),
            ("Subject", mime.encode_words(subject, "utf-8")),
            ("Date", self.date(LOCALES[0])),
            ("Message-ID", mid),
        ]
        if addr.startswith("newsletter"):
            headers += [("List-Id", "<news.vendor.example.com>"), ("Precedence", "bulk"),
                        ("List-Unsubscribe", "<https://vendor.example.com/u>")]  # fmt: skip
        else:
            headers.append(("Auto-Submitted", "auto-generated"))
        text = f"{subject}\n\nThis message was generated automatically at {self.now:%Y-%m-%d %H:%M} UTC.\n"
        body = self._alternative(text, "utf-8", "quoted-printable")
        return self.emit(mime.render(headers, body), key, mid, "notification", wants_ack=False)

    # -- pieces ----------------------------------------------------------------------------------------------
    def emit(self, raw: bytes, key: str, mid: str, kind: str, *, wants_ack: bool) -> CorpusMessage:
        self.by_id[mid] = key
        return CorpusMessage(raw, key, mid, kind, wants_ack)

    def new_key(self) -> str:
        self.thread_count += 1
        return f"t{self.thread_count}"

    def _person(self, n: int) -> Person:
        loc = self.rng.choices(LOCALES, weights=[loc.weight for loc in LOCALES])[0]
        first, last = self.rng.choice(loc.first), self.rng.choice(loc.last)
        name = f"{last} {first}" if loc.code == "ja" else f"{first} {last}"
        if self.rng.random() < 0.1:
            name = f"{last}, {first}"  # Outlook's "Last, First": needs quoting
        addr = f"{_ascii_local(name, n)}{n}@{self.rng.choice(loc.domains)}"
        charset = "iso-8859-1" if loc.code in ("de", "fr", "es", "sv") and self.rng.random() < 0.3 else "utf-8"
        return Person(name if self.rng.random() < 0.93 else "", addr, loc, charset)

    def _fill(self, template: str) -> str:
        return template.format(
            name=self.rng.choice(self.people).name or "Kim",
            asset=f"NB-{self.rng.randint(1000, 9999)}",
            ext=self.rng.randint(100, 899),
        )

    def body(
        self, person: Person, lines: list[str], quote: tuple[Person, str] | None = None, loc: Locale | None = None
    ) -> str:
        loc = loc or person.locale
        name = person.name or person.addr.partition("@")[0]
        text = f"{loc.greeting}\n\n" + " ".join(self._fill(s) for s in lines) + f"\n\n{loc.closing}\n{name}\n"
        sig = self.rng.choice(SIGNATURES)
        text += sig.format(name=name, company=self.rng.choice(COMPANIES), ext=self.rng.randint(100, 899))
        if quote is not None:
            who, quoted = quote
            lines_q = quoted.splitlines()[: self.mix.quote_lines]
            attribution = loc.wrote.format(date=f"{self.now:%d.%m.%Y %H:%M}", name=who.name or who.addr)
            text += f"\n{attribution}\n" + "".join(f"> {ln}\n" if ln else ">\n" for ln in lines_q)
        return text

    def _reply_subject(self, thread: _Thread, loc: Locale, *, to_ack: bool) -> str:
        base = thread.subject
        tag = f"[Help #{thread.case_no}]" if thread.case_no is not None else None
        r = self.rng.random()
        if to_ack and tag:  # the acknowledgement's subject, answered: tag kept unless the person removes it
            return f"Re: {base} {tag}" if r < 0.85 else f"Re: {base}"
        if r < 0.08:
            return self._fill(self.rng.choice(loc.replies)).rstrip("!.?")[:60]  # subject replaced entirely
        prefix = self.rng.choice(loc.reply_prefixes) if r < 0.85 else "Re: "
        if tag and r > 0.65:
            variant = self.rng.choice((tag, tag.lower(), tag.replace(" #", "#")))
            return f"{prefix}{variant} {base}" if self.rng.random() < 0.3 else f"{prefix}{base} {variant}"
        return f"{prefix}{base}"

    def _human(
        self,
        sender: Person,
        recipients: list[tuple[str, str]],
        subject: str,
        text: str,
        mid: str,
        in_reply_to: list[str] | None = None,
        references: list[str] | None = None,
        *,
        attach: float,
    ) -> bytes:
        cs = sender.charset
        headers = [
            *self.envelope(sender.addr),
            ("From", mime.address(sender.name, sender.addr, cs)),
            *recipients,
            ("Subject", mime.encode_words(subject, cs, q=self.rng.random() < 0.4)),
            ("Date", self.date(sender.locale)),
            ("Message-ID", mid),
        ]
        if in_reply_to:
            headers.append(("In-Reply-To", in_reply_to[0]))
        if references:
            headers.append(("References", mime.fold_ids(references)))
        headers.append(self.rng.choice(_AGENTS))
        r = self.rng.random()
        if r < self.mix.plain_share:
            cte = self.rng.choices(("8bit", "quoted-printable", "base64"), weights=(5, 4, 1))[0]
            body = mime.text(text, "plain", cs, cte, flowed=self.rng.random() < 0.3)
        else:
            body = self._alternative(text, cs, self.rng.choice(("quoted-printable", "base64")))
        if self.rng.random() < attach:
            body = mime.multipart("mixed", [body, self._attachment()], self.boundary())
        return mime.render(headers, body)

    def _alternative(self, text: str, charset: str, cte: str) -> mime.Entity:
        paragraphs = "".join(
            f"<p class=MsoNormal>{html.escape(p).replace(chr(10), '<br>')}</p>\n" for p in text.split("\n\n")
        )
        page = (
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
            "<style>p.MsoNormal{margin:0cm;font-size:11.0pt;font-family:Calibri,sans-serif}</style></head>\n"
            f'<body lang=EN-US link="#0563C1"><div class=WordSection1>\n{paragraphs}</div></body></html>\n'
        )
        parts = [mime.text(text, "plain", charset, cte), mime.text(page, "html", "utf-8", cte)]
        return mime.multipart("alternative", parts, self.boundary())

    def _attachment(self) -> mime.Entity:
        kind = self.rng.random()
        size = int(self.rng.triangular(800, 40_000, 3_000))
        if kind < 0.5:
            name = self.rng.choice(("screenshot.png", "Bildschirmfoto 2026-03-02 um 10.15.22.png", "écran.png"))
            return mime.attachment(b"\x89PNG\r\n\x1a\n" + self.rng.randbytes(size), "image/png", name,
                                   rfc2231=self.rng.random() < 0.6)  # fmt: skip
        if kind < 0.8:
            lines = [
                f"2026-03-02 10:{i % 60:02d}:{i % 59:02d} ERROR [worker-{i % 7}] request failed"
                for i in range(size // 60)
            ]
            return mime.attachment(("\n".join(lines) + "\n").encode(), "text/plain", "error.log")  # fmt: skip
        return mime.attachment(b"%PDF-1.4\n" + self.rng.randbytes(size), "application/pdf", "Übersicht Rechnung.pdf")

    def envelope(self, addr: str) -> list[tuple[str, str]]:
        domain = addr.partition("@")[2]
        ip = f"192.0.2.{self.rng.randint(1, 254)}"
        received = (
            f"from mail.{domain} (mail.{domain} [{ip}])\n\tby mx.example.org (Postfix) with ESMTPS id "
            f"4Z{self.rng.getrandbits(40):010X}\n\tfor <{HELP}>; {format_datetime(self.now)}"
        )
        auth = f"mx.example.org;\n\tdkim=pass header.d={domain};\n\tspf=pass smtp.mailfrom={domain}"
        return [("Return-Path", f"<{addr}>"), ("Delivered-To", HELP), ("Received", received),
                ("Authentication-Results", auth)]  # fmt: skip

    def _to_help(self) -> str:
        r = self.rng.random()
        return HELP if r < 0.4 else "help+it@example.org" if r < 0.45 else mime.address(HELP_DISPLAY, HELP)

    def date(self, loc: Locale) -> str:
        self.now += timedelta(seconds=self.rng.expovariate(1 / 90))
        sign = -1 if loc.tz[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(loc.tz[1:3]), minutes=int(loc.tz[3:])))
        return format_datetime(self.now.astimezone(tz))

    def message_id(self, addr: str) -> str:
        self.count += 1
        uniq = f"{self.ns}{self.count:06x}"
        h = f"{self.rng.getrandbits(64):016x}"
        domain = addr.partition("@")[2] or addr
        style = self.rng.random()
        if style < 0.35:
            return f"<CA+{h}{uniq}Xq@mail.gmail.com>"
        if style < 0.65:
            host = f"AM0PR07MB{h[:4].upper()}"
            return f"<{host}{uniq.upper()}{h[4:].upper()}@{host}.eurprd07.prod.outlook.com>"
        if style < 0.85:
            return f"<{h[:8]}-{h[8:12]}-{h[12:16]}-{uniq[:4]}-{uniq[4:]}{h[:2]}@{domain}>"
        return f"<{h[:8].upper()}-{uniq.upper()}@{domain}>"

    def boundary(self) -> str:
        return f"----=_Part_{self.rng.getrandbits(32)}_{self.rng.getrandbits(32)}.{self.count}"


_AGENTS: tuple[tuple[str, str], ...] = (
    ("X-Mailer", "Microsoft Outlook 16.0"),
    ("User-Agent", "Mozilla Thunderbird"),
    ("X-Mailer", "iPhone Mail (21D61)"),
    ("User-Agent", "Roundcube Webmail/1.6.5"),
    ("X-Mailer", "Apple Mail (2.3774.300.61.1.2)"),
)


def generate(n: int, seed: int = 1, namespace: str = "bench", *, tags: bool = True) -> list[CorpusMessage]:
    return Generator(seed, namespace, tags=tags).generate(n)
