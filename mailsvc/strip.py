"""strip (pure): quoted history and signature removal, for relaying a staff reply's new text.

Sits between parse (an InboundMessage's `text`) and render (the relay to the
requester). Our own notifications carry MARKER; when a reply still holds it,
the cut is exact. Otherwise small detectors, tried in order, find where quoted
history starts (quote headers in many languages, Outlook blocks, "> " quoting)
and where a signature starts, in the manner of flufl.bounce.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

MARKER = "##- Please type your reply above this line -##"

Lines = Sequence[str]
# A header detector says how many lines a quote header starting at line `i` spans (0: none).
HeaderDetector = Callable[[Lines, int], int]
# A signature detector says whether a signature starts at line `i`.
SignatureDetector = Callable[[Lines, int], bool]

# Regexes only ever see this much of a line, so a 1 MB line costs no more than
# a short one: no header or signature line is that long.
_SCAN = 300
# A quote header wraps over at most this many lines (Gmail splits the address,
# Polymail even puts "> wrote:" on a line of its own).
_WRAP = 5
# Outlook's From/Sent/To/Cc/Subject block, with wrapped values, fits in this many lines.
_BLOCK_DEPTH = 8
# In the marker path, the client's header above our quoted notification is looked for this far back.
_MARKER_WINDOW = 15


def _head(line: str) -> str:
    return line[:_SCAN].strip()


def _blank(line: str) -> bool:
    return not line[:_SCAN].strip().strip("\u200b\u200c\u200d\ufeff")


def _quoted(line: str) -> bool:
    return line[:_SCAN].lstrip().startswith(">")


# --- quote headers -----------------------------------------------------------

# "On <date>, <name> wrote:" ends in a verb and a colon in most languages.
_VERBS = (
    r"wrote|writes|sent|schrieb|geschrieben|a [ée]crit|[ée]crit|escribi[óo]|ha escrit|ha scritto|scritto|schreef|"
    r"geschreven|napisa[łl]\(a\)|napisa[łl]a|napisa[łl]|pisze|escreveu|пишет|написала|написал\(а\)|написал|"
    r"написав|skrev|kirjoitti|napsal|[íi]rta|yazd[ıi]|έγραψε|đã viết|のメッセージ|書きました|写道|寫道|작성"
)
_WROTE_END = re.compile(rf"(?:{_VERBS})\s*[:：]$", re.IGNORECASE)
# Some clients drop the colon: "On Wed, 14 Nov 2018 08:14:43 -0200 John <john@doe.com> wrote".
_WROTE_BARE = re.compile(rf"\s(?:{_VERBS})$", re.IGNORECASE)
# German, Dutch and Scandinavian clients put the name after the verb: "Am ... schrieb Name <a@b>:".
_WROTE_MID = re.compile(r"(?:^|\s)(?:schrieb|schreef|skrev|kirjoitti)\s.{1,160}[:：]$", re.IGNORECASE)
# An opener makes "... wrote:" a header rather than prose ("Something wrote:" is prose).
_OPENER = re.compile(r"^(?:-{2,}\s*)?(?:On|Am|Le|El|Il|Op|W dniu|Dnia|Em|Den|På|Vào|Dana|Dne|在)\s")
_DIGIT = re.compile(r"\d")
_TIME = re.compile(r"\d{1,2}[:.]\d{2}")
_ADDRESS = re.compile(r"[^\s<>()\"]{1,64}@[^\s<>()\"]{1,255}")
# No verb at all: "2014-03-20 8:48 GMT+01:00 Name <a@b>:", "2016-03-03 17:21 GMT+01:00 Some One".
_GMAIL_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2} \d{1,2}:\d{2} GMT[+-]\d{1,2}:\d{2}\s")
# Old Gmail: "2011/4/7 Name <a@b>", colon optional.
_DATE_NAME_ADDRESS = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\s.{0,200}<[^<>\s]{1,200}@[^<>\s]{1,200}>:?$")
# Android, Zoho: "---- On <date> John wrote ----".
_DASHED_WROTE = re.compile(r"^-{2,}.{0,200}\bwrote\s*-{2,}$", re.IGNORECASE)
# A sentence ends in a word and a full stop; "28." in "schrieb am Fr., 28." is a date.
_SENTENCE_END = re.compile(r"[^\W\d_]{2}[.!?]$")


def _is_attribution(joined: str) -> bool:
    if _DASHED_WROTE.search(joined) or _GMAIL_DATE.search(joined) or _DATE_NAME_ADDRESS.search(joined):
        return True
    opener = bool(_OPENER.search(joined))
    address = "@" in joined and bool(_ADDRESS.search(joined))
    if _WROTE_END.search(joined) or _WROTE_MID.search(joined):
        return opener or address or bool(_DIGIT.search(joined))
    if _WROTE_BARE.search(joined):
        return opener and address and bool(_TIME.search(joined))
    # Many clients write only a date, a name and an address: '26.06.2014, 14:41, "Alex" <a@b>:'.
    return joined.endswith((":", "：")) and address and bool(_TIME.search(joined))


# Gmail sometimes glues the header to the reply's last line: "reply On Wed, ... wrote:".
_GLUED_ON = re.compile(r"(?:\s|-{2,}\s*)On\s.{1,200}$")


def glued_attribution(line: str) -> str | None:
    """The reply text in front of a header glued onto its line (None: no such header)."""
    found = _GLUED_ON.search(_head(line))
    if not found or not _is_attribution(found.group().lstrip(" -")):
        return None
    return _head(line)[: found.start()].rstrip(" -")


def attribution_header(lines: Lines, i: int) -> int:
    """ "On Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:", wrapped or not."""
    first = _head(lines[i])
    if not first or first.startswith(">"):
        return 0
    if _is_attribution(first) or glued_attribution(first) is not None:
        return 1
    # A wrapped header starts with a date or an address, not with a sentence.
    if not (_DIGIT.search(first) or "@" in first) or _SENTENCE_END.search(first):
        return 0
    dated = bool(_OPENER.search(first) or _DIGIT.match(first))
    parts = [first]
    for j in range(i + 1, min(i + _WRAP, len(lines))):
        part = _head(lines[j]).lstrip("> ")
        if not part:
            continue
        if _OPENER.search(part):
            return 0  # the header starts on this later line
        parts.append(part)
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
_FROM_LINE = re.compile(rf"^\*?\s?(?:{_FROM_FIELDS})\s?\*?\s?[:：]", re.IGNORECASE)
_FIELD_LINE = re.compile(rf"^\*?\s?(?:{_FROM_FIELDS}|{_OTHER_FIELDS})\s?\*?\s?[:：]", re.IGNORECASE)


def outlook_block(lines: Lines, i: int) -> int:
    """Outlook's "From: / Sent: / To: / Subject:" block, in its many translations."""
    first = _head(lines[i])
    if not _FIELD_LINE.search(first):
        return 0
    fields, span = 1, 1
    for j in range(i + 1, min(i + _BLOCK_DEPTH, len(lines))):
        line = _head(lines[j])
        if _FIELD_LINE.search(line):
            fields, span = fields + 1, j - i + 1
        elif not line:
            break
    # One field is prose ("Date: Wednesday 3, October"); two make a block. A lone
    # "From:" with an address is the reply header of some webmails.
    if fields >= 2 or (_FROM_LINE.search(first) and "@" in first):
        return span
    return 0


_ORIGINAL_MESSAGE = re.compile(
    r"^[-_=*\s]*(?:Original Message|Reply Message|Forwarded message|Ursprüngliche Nachricht|Antwort Nachricht|"
    r"Originalnachricht|Weitergeleitete Nachricht|Oprindelig meddelelse|Oprindelig besked|Videresendt meddelelse|"
    r"Message d'origine|Message original|Message transféré|Mensaje original|Mensaje reenviado|"
    r"Mensagem original|Mensagem encaminhada|Messaggio originale|Messaggio inoltrato|Oorspronkelijk bericht|"
    r"Origineel bericht|Doorgestuurd bericht|Originalmeddelande|Ursprungligt meddelande|"
    r"Vidarebefordrat meddelande|Opprinnelig melding|Alkuperäinen viesti|Wiadomość oryginalna|"
    r"Oryginalna wiadomość|Исходное сообщение|Пересылаемое сообщение|Původní zpráva|Eredeti üzenet|"
    r"Orijinal Mesaj|原始邮件|原始郵件|元のメッセージ|转发的邮件)[-_=*\s]*$",
    re.IGNORECASE,
)
_BEGIN_FORWARDED = re.compile(
    r"^(?:Begin forwarded message|Anfang der weitergeleiteten Nachricht|Début du message réexpédié|"
    r"Inizio messaggio inoltrato|Comienzo del mensaje reenviado|Begin doorgestuurd bericht)\s?:$",
    re.IGNORECASE,
)


def original_message(lines: Lines, i: int) -> int:
    """ "-----Original Message-----", Gmail's "---- Forwarded message ----", Apple's "Begin forwarded message:"."""
    line = _head(lines[i])
    return 1 if _ORIGINAL_MESSAGE.search(line) or _BEGIN_FORWARDED.search(line) else 0


QUOTE_HEADERS: tuple[HeaderDetector, ...] = (attribution_header, outlook_block, original_message)


def _header_at(lines: Lines, i: int) -> int:
    if _quoted(lines[i]):
        return 0
    for detector in QUOTE_HEADERS:
        span = detector(lines, i)
        if span:
            return span
    return 0


# --- signatures --------------------------------------------------------------

_SIG_DELIMITER = re.compile(r"^(?:--|__+)\s*$")


def signature_delimiter(lines: Lines, i: int) -> bool:
    """The "-- " line (RFC 3676), and the bare "--" or "__" some clients write instead."""
    return bool(_SIG_DELIMITER.match(lines[i][:_SCAN]))


_MOBILE_LEADS = (
    r"Sent from(?: my)?|Sent with|Get Outlook for|Envoyé de(?:puis)?(?: mon)?|Envoyé à partir de|Von meinem|"
    r"Gesendet von(?: meinem)?|Gesendet mit|Enviado desde(?: mi)?|Enviado do(?: meu)?|Enviado de(?: meu)?|"
    r"Inviato da(?:l mio)?|Verzonden (?:vanaf|met)(?: mijn)?|Verstuurd vanaf(?: mijn)?|Wysłane z(?: mojego)?|"
    r"Отправлено (?:с|из)|Skickat från(?: min)?|Sendt fra(?: min)?|Lähetetty"
)
# One to five words, no sentence punctuation ("Sent from my desk, is much easier" is prose), maybe a link.
_MOBILE = re.compile(
    rf"^(?:(?:{_MOBILE_LEADS})(?:\s[\w&'-]+){{1,5}}\s?(?:<[^<>\s]{{1,200}}>|\([^()\s]{{1,200}}\))?"
    r"|iPhoneから送信|从我的\S{1,20}发送)$",
    re.IGNORECASE,
)


def mobile_signature(lines: Lines, i: int) -> bool:
    """ "Sent from my iPhone", "Envoyé de mon iPhone", "Get Outlook for iOS": the line alone."""
    return bool(_MOBILE.match(_head(lines[i])))


_DASH_NAME = re.compile(r"^-[^\W\d_][\w.'-]*(?:\s[\w.'-]+){0,2}$")


def dash_signoff(lines: Lines, i: int) -> bool:
    """A closing "-Abhishek Kona" paragraph: nothing but blank lines or another signature follows."""
    if not _DASH_NAME.match(_head(lines[i])) or (i > 0 and not _blank(lines[i - 1])):
        return False
    for j in range(i + 1, len(lines)):
        if not _blank(lines[j]):
            return signature_delimiter(lines, j) or mobile_signature(lines, j)
    return True


SIGNATURES: tuple[SignatureDetector, ...] = (signature_delimiter, mobile_signature, dash_signoff)


def _signature_start(lines: Lines) -> int:
    for i in range(len(lines)):
        if any(detector(lines, i) for detector in SIGNATURES):
            return i
    return len(lines)


# --- quoted history ----------------------------------------------------------

# "ᐧ" is the invisible mark some Gmail add-ons leave where a signature would go.
_DELIMITER_LINE = re.compile(r"^(?:[-_=*~#+.]{2,}|ᐧ)$")


def _rewrapped(lines: Lines, i: int) -> bool:
    """An unquoted line between two "> " lines: the client broke a long quoted line."""
    return 0 < i < len(lines) - 1 and _quoted(lines[i - 1]) and _quoted(lines[i + 1]) and not _blank(lines[i])


def _past_quote(lines: Lines, i: int) -> int:
    """The first line after the "> " block starting at `i` and the blank lines that follow it."""
    j = i
    while j < len(lines) and (_quoted(lines[j]) or _blank(lines[j]) or _rewrapped(lines, j)):
        j += 1
    return j


def _skip_blank(lines: Lines, i: int) -> int:
    while i < len(lines) and _blank(lines[i]):
        i += 1
    return i


def _has_text(lines: Lines, i: int) -> bool:
    """Whether line `i` is new text rather than a signature, a footer or the end."""
    if i >= len(lines):
        return False
    head = _head(lines[i])
    return not (_quoted(head) or _DELIMITER_LINE.match(head) or signature_delimiter(lines, i))


def _drop_separator(kept: list[str]) -> None:
    """Drop the blank lines and the separator line a client puts just above a quote header."""
    while kept and _blank(kept[-1]):
        kept.pop()
    if kept and _DELIMITER_LINE.match(_head(kept[-1])):
        kept.pop()


def _without_quotes(lines: Lines) -> list[str]:
    kept: list[str] = []
    i = 0
    while i < len(lines):
        span = _header_at(lines, i)
        if not span:
            kept.append(lines[i])
            i += 1
            continue
        glued = glued_attribution(lines[i]) if span == 1 else None
        if glued:
            kept.append(glued)
        after = _skip_blank(lines, i + span)
        quoted = after < len(lines) and _quoted(lines[after])
        past = _past_quote(lines, after) if quoted else after
        if not any(not _blank(line) for line in kept):
            # Nothing above the header: the reply, if any, is below it (bottom-posting, forwarding).
            i = past
            continue
        if quoted and attribution_header(lines, i) and _has_text(lines, past):
            # "On ... wrote:" and its "> " block sit between two parts of the reply: drop just them.
            i = past
            continue
        _drop_separator(kept)
        return kept
    return _without_quoted_tail(kept)


def _without_quoted_tail(kept: list[str]) -> list[str]:
    """Drop the "> " block that ends the text (and a "-- " signature under it) and its header line."""
    end = len(kept)
    for j in range(len(kept) - 1, max(-1, len(kept) - _MARKER_WINDOW), -1):
        if _quoted(kept[j]):
            break
        if signature_delimiter(kept, j):
            end = j
            break
    start = end
    while start and (_blank(kept[start - 1]) or _quoted(kept[start - 1]) or _rewrapped(kept, start - 1)):
        start -= 1
    if not any(_quoted(line) for line in kept[start:end]):
        return kept
    tail = kept[:start]
    _drop_separator(tail)
    if tail and _looks_like_header(_head(tail[-1])):
        tail.pop()
        _drop_separator(tail)
    return tail


def _looks_like_header(line: str) -> bool:
    """A header in no language we know: an address, or a date and a colon at the end."""
    return "@" in line or (line.endswith((":", "：")) and bool(_DIGIT.search(line)))


# --- our own marker ----------------------------------------------------------


def _marker_line(lines: Lines, marker: str) -> int | None:
    words = marker.split()
    if not words:
        return None
    # Clients re-wrap and re-space quoted lines; compare without whitespace.
    needle = "".join(words)
    for i, line in enumerate(lines):
        if marker in line or (words[0] in line and needle in "".join(line.split())):
            return i
    return None


def _only_quoting_from(lines: Lines, i: int) -> bool:
    """Whether lines[i:] hold nothing but quote headers, "> " lines, separators and blanks."""
    j = i
    while j < len(lines):
        if _blank(lines[j]) or _quoted(lines[j]) or _DELIMITER_LINE.match(_head(lines[j])):
            j += 1
            continue
        # Right above our notification, any short line with an address, or a date and a colon, is a header.
        span = _header_at(lines, j) or (1 if len(_head(lines[j])) < 200 and _looks_like_header(_head(lines[j])) else 0)
        if not span:
            return False
        j += span
    return True


def _before_marker(lines: Lines) -> list[str]:
    start = len(lines)
    for i in range(max(0, len(lines) - _MARKER_WINDOW), len(lines)):
        if not _blank(lines[i]) and _only_quoting_from(lines, i):
            start = i
            break
    kept = list(lines[:start])
    _drop_separator(kept)
    return kept


# --- entry point -------------------------------------------------------------


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
    kept = _before_marker(lines[:at]) if at is not None else _without_quotes(lines)
    if at is not None and all(_blank(line) for line in kept):
        # Bottom-posted under our quoted notification: the new text is below it.
        kept = _without_quotes(lines)
    if not keep_signature:
        kept = kept[: _signature_start(kept)]
    return _tidy(kept)


def _tidy(lines: Lines) -> str:
    start, end = 0, len(lines)
    while start < end and _blank(lines[start]):
        start += 1
    while end > start and (_blank(lines[end - 1]) or _DELIMITER_LINE.match(_head(lines[end - 1]))):
        end -= 1
    return "\n".join(lines[start:end]).rstrip()
