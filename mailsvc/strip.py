"""strip (pure): quoted history and signature removal, for relaying a staff reply's new text.

Sits between parse (an InboundMessage's `text`) and render (the relay to the
requester). Our own notifications carry MARKER; when a reply still holds it,
the cut is exact. Otherwise small detectors, tried in order, find where quoted
history starts (quote headers in many languages, Outlook blocks, "> " quoting)
and where a signature starts, in the manner of flufl.bounce.
"""

# Quote headers in a dozen scripts are the point here, look-alike letters included.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import islice

MARKER = "##- Please type your reply above this line -##"

Heads = Sequence[str]  # what detectors see: each line stripped and cut to _SCAN characters
HeaderDetector = Callable[[Heads, int], int]  # lines a quote header starting at line i spans (0: none)
SignatureDetector = Callable[[Heads, int], bool]  # whether a signature starts at line i

# No header or signature line is longer, so a 1 MB line costs a regex no more than a short one.
_SCAN = 300
# A quote header wraps over at most this many lines (Polymail puts "> wrote:" on a line of its own).
_WRAP = 5
# Outlook's From/Sent/To/Cc/Subject block, with wrapped values, fits in this many lines.
_BLOCK_DEPTH = 8
# How far back a header or a signature under a final quote is looked for.
_TAIL_WINDOW = 15
_ZERO_WIDTH = "\u200b\u200c\u200d\ufeff"


def _head(line: str) -> str:
    return line[:_SCAN].strip()


def _blank(head: str) -> bool:
    return not head.strip(_ZERO_WIDTH)


def _quoted(head: str) -> bool:
    return head.startswith(">")


# --- quote headers -----------------------------------------------------------

# "On <date>, <name> wrote:" ends in a verb (and a colon) in most languages.
_VERBS = (
    "wrote", "writes", "sent", "schrieb", "geschrieben", "écrit", "ecrit", "escribió", "escribio", "ha escrit",
    "scritto", "schreef", "geschreven", "napisał(a)", "napisała", "napisał", "napisal", "pisze", "escreveu",
    "пишет", "написала", "написал(а)", "написал", "написав", "skrev", "kirjoitti", "napsal", "írta", "irta",
    "yazdı", "yazdi", "έγραψε", "đã viết", "のメッセージ", "書きました", "写道", "寫道", "작성",
)  # fmt: skip


def _ends_with_verb(text: str) -> bool:
    """Whether `text` ends with a "wrote" verb as a word (a suffix test: no regex scans the line)."""
    low = text.lower()
    if not low.endswith(_VERBS):
        return False
    for verb in _VERBS:
        if low.endswith(verb):
            before = low[-len(verb) - 1 : -len(verb)]
            # CJK has no spaces before the verb; alphabetic scripts need a word boundary ("rewrote:").
            return not (before.isalpha() and ord(verb[0]) < 0x3000)
    return False


# German, Dutch and Scandinavian clients put the name after the verb: "Am ... schrieb Name <a@b>:".
_WROTE_MID = re.compile(r"(?:^|\s)(?:schrieb|schreef|skrev|kirjoitti)\s.{1,160}[:：]$", re.IGNORECASE)
# An opener makes "... wrote:" a header rather than prose ("Something wrote:" is prose).
_OPENER = re.compile(r"(?:-{2,}\s*)?(?:On|Am|Le|El|Il|Op|W dniu|Dnia|Em|Den|På|Vào|Dana|Dne|在)\s")
_DIGIT = re.compile(r"\d")
_TIME = re.compile(r"\d{1,2}[:.]\d{2}")
_ADDRESS = re.compile(r"[\w.+-]@[\w-]")
# No verb at all: "2014-03-20 8:48 GMT+01:00 Name <a@b>:", "2016-03-03 17:21 GMT+01:00 Some One".
_GMAIL_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2} \d{1,2}:\d{2} GMT[+-]\d{1,2}:\d{2}\s")
# Old Gmail: "2011/4/7 Name <a@b>", colon optional.
_NUMERIC_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\s")
# Android, Zoho: "---- On <date> John wrote ----".
_DASHED_WROTE = re.compile(r"-{2,}.{0,200}\bwrote\s*-{2,}$", re.IGNORECASE)
# A sentence ends in a word and a full stop; "28." in "schrieb am Fr., 28." is a date.
_SENTENCE_END = re.compile(r"[^\W\d_]{2}[.!?]$")


def _is_attribution(text: str) -> bool:
    """Whether `text` (one header line, or a wrapped one joined) is a quote attribution."""
    if not text:
        return False
    first, last = text[0], text[-1]
    if first.isdigit() and (
        _GMAIL_DATE.match(text) or (_NUMERIC_DATE.match(text) and "@" in text and text.rstrip(":").endswith(">"))
    ):
        return True
    # The last character decides which patterns can apply: most lines are ruled out at once.
    if last in ":：":
        address = bool(_ADDRESS.search(text))
        if _ends_with_verb(text[:-1].rstrip()) or _WROTE_MID.search(text[-200:]):
            return bool(_OPENER.match(text)) or address or bool(_DIGIT.search(text))
        # Many clients write only a date, a name and an address: '26.06.2014, 14:41, "Alex" <a@b>:'.
        return address and bool(_TIME.search(text))
    if last == "-":
        return first == "-" and bool(_DASHED_WROTE.match(text))
    if last.isalpha() and _OPENER.match(text) and _ADDRESS.search(text) and _TIME.search(text):
        # Some clients drop the colon: "On Wed, 14 Nov 2018 08:14:43 -0200 John <john@doe.com> wrote".
        return _ends_with_verb(text)
    return False


# Gmail sometimes glues the header to the reply's last line: "reply On Wed, ... wrote:".
_GLUED_ON = re.compile(r"(?:\s|-)On\s")


def glued_attribution(head: str) -> str | None:
    """The reply text in front of a header glued onto its line (None: no such header)."""
    if not head.endswith((":", "：")):
        return None
    for found in islice(_GLUED_ON.finditer(head), 3):  # a line with more "On"s than that is prose
        before = head[: found.start()].rstrip(" -")
        if before and _is_attribution(head[found.start() + 1 :].lstrip(" -")):
            return before
    return None


def attribution_header(heads: Heads, i: int) -> int:
    """ "On Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:", wrapped or not."""
    first = heads[i]
    if not first or _quoted(first):
        return 0
    if _is_attribution(first) or glued_attribution(first) is not None:
        return 1
    # A wrapped header starts with a date or an address, not with a sentence.
    if not (_DIGIT.search(first) or "@" in first) or _SENTENCE_END.search(first):
        return 0
    opener = bool(_OPENER.match(first))
    window = heads[i + 1 : i + _WRAP]
    # Only a colon, or a bare verb after an opener, can end a wrapped header.
    if not opener and not any(head.endswith((":", "：")) for head in window):
        return 0
    dated = opener or first[0].isdigit()
    parts = [first]
    for j in range(i + 1, min(i + _WRAP, len(heads))):
        part = heads[j].lstrip("> ")
        if not part:
            continue
        if _OPENER.match(part):
            return 0  # the header starts on this later line
        parts.append(part)
        if part[-1] not in ":：" and not (opener and part[-1].isalpha()):
            continue
        joined = " ".join(parts)
        if (dated or "@" in joined) and _is_attribution(joined):
            return j - i + 1
    return 0


_FROM_FIELDS = (
    r"From|Von|De|Van|Da|Fra|Från|Frá|Od|От|Lähettäjä|Feladó|Mittente|Remitente|Afzender|Expéditeur|Kimden|"
    r"发件人|寄件者|差出人|보낸 사람|Message du"
)
_OTHER_FIELDS = (
    r"Sent|Date|To|Cc|Bcc|Subject|Reply-To|Gesendet|Datum|An|Betreff|Kopie|Envoyé|Envoyé le|À|A|Objet|Copie|"
    r"Copie à|Sujet|Verzonden|Aan|Onderwerp|Enviado|Enviada|Enviado el|Fecha|Para|Asunto|Assunto|Inviato|Data|"
    r"Oggetto|Sendt|Til|Emne|Skickat|Till|Ämne|Kopia|Wysłane|Wysłano|Do|Temat|DW|Отправлено|Кому|Тема|Дата|"
    r"Копия|Lähetetty|Vastaanottaja|Aihe|Odesláno|Komu|Předmět|Elküldve|Címzett|Tárgy|Gönderildi|Kime|Konu|"
    r"发送时间|收件人|主题|抄送|日付|送信日時|宛先|件名|보낸 날짜|받는 사람|제목"
)
_FIELD_LINE = re.compile(rf"\*?\s?(?:(?P<sender>{_FROM_FIELDS})|{_OTHER_FIELDS})\s?\*?\s?[:：]", re.IGNORECASE)


def _field(head: str) -> re.Match[str] | None:
    return _FIELD_LINE.match(head) if ":" in head[:24] or "：" in head[:24] else None


def outlook_block(heads: Heads, i: int) -> int:
    """Outlook's "From: / Sent: / To: / Subject:" block, in its many translations."""
    first = _field(heads[i])
    if not first:
        return 0
    fields, span, j = 1, 1, i + 1
    while j < min(i + _BLOCK_DEPTH, len(heads)) and heads[j]:
        if _field(heads[j]):
            fields, span = fields + 1, j - i + 1
        j += 1
    if j == len(heads) or not heads[j]:
        span = j - i  # the paragraph closes: a long Subject wrapped onto the next line belongs to it
    # One field is prose ("Date: Wednesday 3, October"); two make a block. A lone
    # "From:" with an address is the reply header of some webmails.
    if fields >= 2 or (first["sender"] and "@" in heads[i]):
        return span
    return 0


_ORIGINAL_MESSAGE = re.compile(
    r"[-_=*\s]*(?:Original Message|Reply Message|Forwarded message|Ursprüngliche Nachricht|Antwort Nachricht|"
    r"Originalnachricht|Weitergeleitete Nachricht|Oprindelig meddelelse|Oprindelig besked|Videresendt meddelelse|"
    r"Message d'origine|Message original|Message transféré|Mensaje original|Mensaje reenviado|"
    r"Mensagem original|Mensagem encaminhada|Messaggio originale|Messaggio inoltrato|Oorspronkelijk bericht|"
    r"Origineel bericht|Doorgestuurd bericht|Originalmeddelande|Ursprungligt meddelande|"
    r"Vidarebefordrat meddelande|Opprinnelig melding|Alkuperäinen viesti|Wiadomość oryginalna|"
    r"Oryginalna wiadomość|Исходное сообщение|Пересылаемое сообщение|Původní zpráva|Eredeti üzenet|"
    r"Orijinal Mesaj|原始邮件|原始郵件|元のメッセージ|转发的邮件)[-_=*\s]*$"
    r"|(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht|Début du message réexpédié|"
    r"Inizio messaggio inoltrato|Comienzo del mensaje reenviado|Begin doorgestuurd bericht)\s?:$",
    re.IGNORECASE,
)


def original_message(heads: Heads, i: int) -> int:
    """ "-----Original Message-----", Gmail's "---- Forwarded message ----", Apple's "Begin forwarded message:"."""
    return 1 if len(heads[i]) <= 120 and _ORIGINAL_MESSAGE.match(heads[i]) else 0


QUOTE_HEADERS: tuple[HeaderDetector, ...] = (attribution_header, outlook_block, original_message)


def _header_at(heads: Heads, i: int) -> int:
    if _blank(heads[i]) or _quoted(heads[i]):
        return 0
    for detector in QUOTE_HEADERS:
        span = detector(heads, i)
        if span:
            return span
    return 0


# --- signatures --------------------------------------------------------------


def signature_delimiter(heads: Heads, i: int) -> bool:
    """The "-- " line (RFC 3676), and the bare "--" or "__" some clients write instead."""
    head = heads[i]
    return head == "--" or (len(head) >= 2 and not head.strip("_"))


# A lead, one to five words without sentence punctuation ("Sent from my desk, is much easier" is prose), a link.
_MOBILE = re.compile(
    r"(?:(?:Sent from(?: my)?|Sent with|Get Outlook for|Envoyé de(?:puis)?(?: mon)?|Envoyé à partir de|Von meinem|"
    r"Gesendet von(?: meinem)?|Gesendet mit|Enviado desde(?: mi)?|Enviado do(?: meu)?|Enviado de(?: meu)?|"
    r"Inviato da(?:l mio)?|Verzonden (?:vanaf|met)(?: mijn)?|Verstuurd vanaf(?: mijn)?|Wysłane z(?: mojego)?|"
    r"Отправлено (?:с|из)|Skickat från(?: min)?|Sendt fra(?: min)?|Lähetetty)"
    r"(?:\s[\w&'-]+){1,5}\s?(?:<[^<>\s]{1,200}>|\([^()\s]{1,200}\))?|iPhoneから送信|从我的\S{1,20}发送)$",
    re.IGNORECASE,
)


def mobile_signature(heads: Heads, i: int) -> bool:
    """ "Sent from my iPhone", "Envoyé de mon iPhone", "Get Outlook for iOS": the line alone."""
    return len(heads[i]) <= 250 and bool(_MOBILE.match(heads[i]))


_DASH_NAME = re.compile(r"-[^\W\d_][\w.'-]*(?:\s[\w.'-]+){0,2}$")


def dash_signoff(heads: Heads, i: int) -> bool:
    """A closing "-Abhishek Kona" paragraph: nothing but blank lines or another signature follows."""
    if not heads[i].startswith("-") or not _DASH_NAME.match(heads[i]) or (i > 0 and not _blank(heads[i - 1])):
        return False
    for j in range(i + 1, len(heads)):
        if not _blank(heads[j]):
            return signature_delimiter(heads, j) or mobile_signature(heads, j)
    return True


SIGNATURES: tuple[SignatureDetector, ...] = (signature_delimiter, mobile_signature, dash_signoff)


def _signature_start(heads: Heads) -> int:
    for i, head in enumerate(heads):
        if head and any(detector(heads, i) for detector in SIGNATURES):
            return i
    return len(heads)


# --- quoted history ----------------------------------------------------------

# A separator line; "ᐧ" is the invisible mark some Gmail add-ons leave where a signature would go.
_delimiter = re.compile(r"(?:[-_=*~#+.]{2,120}|ᐧ)$").match


def _rewrapped(heads: Heads, i: int) -> bool:
    """An unquoted line between two "> " lines: the client broke a long quoted line."""
    return 0 < i < len(heads) - 1 and _quoted(heads[i - 1]) and _quoted(heads[i + 1]) and not _blank(heads[i])


def _past_quote(heads: Heads, i: int) -> int:
    """The first line after the "> " block starting at `i` and the blank lines that follow it."""
    while i < len(heads) and (_quoted(heads[i]) or _blank(heads[i]) or _rewrapped(heads, i)):
        i += 1
    return i


def _drop_separator(kept: list[str]) -> None:
    """Drop the blank lines and the separator line a client puts just above a quote header."""
    while kept and _blank(_head(kept[-1])):
        kept.pop()
    if kept and _delimiter(_head(kept[-1])):
        kept.pop()


def _without_quotes(lines: Sequence[str]) -> list[str]:
    heads = [_head(line) for line in lines]
    kept: list[str] = []
    text_kept = False
    i = 0
    while i < len(lines):
        span = _header_at(heads, i)
        if not span:
            kept.append(lines[i])
            text_kept = text_kept or not _blank(heads[i])
            i += 1
            continue
        glued = glued_attribution(heads[i]) if span == 1 else None
        if glued:
            kept.append(glued)
            text_kept = True
        after = next((j for j in range(i + span, len(heads)) if not _blank(heads[j])), len(heads))
        quoted = after < len(heads) and _quoted(heads[after])
        past = _past_quote(heads, after) if quoted else after
        if not text_kept:
            # Nothing above the header: the reply, if any, is below it (bottom-posting, forwarding).
            i = past
            continue
        text_below = past < len(heads) and not (_delimiter(heads[past]) or signature_delimiter(heads, past))
        if quoted and text_below and attribution_header(heads, i):
            # "On ... wrote:" and its "> " block sit between two parts of the reply (not a footer): drop just them.
            i = past
            continue
        _drop_separator(kept)
        return kept
    return _without_quoted_tail(kept)


def _without_quoted_tail(kept: list[str]) -> list[str]:
    """Drop the "> " block that ends the text (with a "-- " signature under it) and its header."""
    heads = [_head(line) for line in kept]
    end = len(heads)
    for j in range(len(heads) - 1, max(-1, len(heads) - _TAIL_WINDOW), -1):
        if _quoted(heads[j]):
            break
        if signature_delimiter(heads, j):
            end = j
            break
    start = _quoting_start(heads, end)
    if not any(_quoted(head) for head in heads[start:end]):
        return kept
    tail = kept[:start]
    _drop_separator(tail)
    return tail


def _quoting_start(heads: Heads, end: int) -> int:
    """Where the quoting that ends heads[:end] starts: its "> " lines, and the header lines above them."""
    start = end
    while start and (_blank(heads[start - 1]) or _quoted(heads[start - 1]) or _rewrapped(heads, start - 1)):
        start -= 1
    above = heads[max(0, start - _TAIL_WINDOW) : start]
    return start - len(above) + next((i for i, h in enumerate(above) if h and _only_quoting(above[i:])), len(above))


def _only_quoting(heads: Heads) -> bool:
    """Whether `heads` hold nothing but quote headers, separators and blanks."""
    i = 0
    while i < len(heads):
        if _blank(heads[i]) or _quoted(heads[i]) or _delimiter(heads[i]):
            i += 1
            continue
        # Right above quoting, a short line with an address or a date, ending in a colon, is a header too.
        head = heads[i]
        unknown = len(head) < 200 and head.endswith((":", "：")) and ("@" in head or bool(_DIGIT.search(head)))
        span = _header_at(heads, i) or int(unknown)
        if not span:
            return False
        i += span
    return True


# --- our own marker, and the entry point ----------------------------------------


def _marker_line(lines: Sequence[str], marker: str) -> int | None:
    needle = "".join(marker.split())  # clients re-wrap and re-space quoted lines: compare without whitespace
    if not needle:
        return None
    return next((i for i, line in enumerate(lines) if marker in line or needle in "".join(line.split())), None)


def strip_reply(text: str, *, marker: str = MARKER, keep_signature: bool = False) -> str:
    """The new text of a reply: quoted history (and, unless `keep_signature`, the signature) removed.

    With our `marker` in the text the cut is exact: the marker line, what follows,
    and the quote header and quoting its client put above it go. Without it,
    detectors decide. Kept lines are as written (a "-- " keeps its space), joined
    by "\\n", without leading blank lines, trailing separator lines or trailing
    whitespace; never longer than `text`.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    at = _marker_line(lines, marker)
    if at is None:
        kept = _without_quotes(lines)
    else:
        kept = lines[: _quoting_start([_head(line) for line in lines[:at]], at)]
        _drop_separator(kept)
    if at is not None and all(_blank(_head(line)) for line in kept):
        # Bottom-posted under our quoted notification: the new text is below it.
        kept = _without_quotes(lines)
    if not keep_signature:
        kept = kept[: _signature_start([_head(line) for line in kept])]
    return _tidy(kept)


def _tidy(lines: Sequence[str]) -> str:
    heads = [_head(line) for line in lines]
    start = next((i for i, head in enumerate(heads) if not _blank(head)), len(heads))
    end = len(heads)
    while end > start and (_blank(heads[end - 1]) or _delimiter(heads[end - 1])):
        end -= 1
    return "\n".join(lines[start:end]).rstrip()
