"""bounce (pure): delivery status notifications and non-standard bounces → the bounced recipients
and the original Message-ID.

Beside classify in the data path (DESIGN.md): from an inbound message's raw bytes, whether it reports a failed or
delayed delivery of mail we sent, to whom, and which of our messages it was. RFC 3464 reports are read here; the
non-standard formats go to flufl.bounce's detectors (Mailman's), then to one generic reader of ours. No I/O.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from flufl.bounce import BounceDetector, Recipients, all_failures

# A bounce carries its report near the top; what lies beyond is the returned mail, needed only for its headers.
# Cutting there keeps every detector (several run regexes over every body line) linear in a small input.
MAX_BYTES = 256 * 1024
MAX_LINES = 4000  # the email package parses thousands of blank-line groups in a report part in quadratic time
MAX_PARTS = 64
MAX_TEXT = 64 * 1024
MAX_RECIPIENTS = 50


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a bounce says. `kind`: "dsn", "delay", "flufl:<Detector>", "notice" (our generic reader), or "arf"
    (a complaint: not a bounce, `recipients` empty). `permanent` follows the status class (5.x.x) when one is given,
    else the Action or the detector: an Action "failed" with 4.4.7 lost the mail, but the address may be fine."""

    recipients: tuple[str, ...]
    permanent: bool
    status: str | None
    diagnostic: str
    original_message_id: str | None
    kind: str


@dataclass(frozen=True, slots=True)
class _Report:
    """The bounce's own parts (not those of the mail it returns), its prose, and the returned mail's headers."""

    parts: tuple[Message, ...]
    text: str
    returned: Message | None


# RFC 3463 codes, not the inside of an IP address or a version number.
_STATUS = re.compile(r"(?<![\d.])([245])\.\d{1,3}\.\d{1,3}(?!\.?\d)")
_FAILED_STATUS = re.compile(r"(?<![\d.])([45])\.\d{1,3}\.\d{1,3}(?!\.?\d)")
_SMTP_REPLY = re.compile(r"(?<![\w.-])([45])[0-5]\d(?=[ -][45]\.|[ -]?[^\d\s.-]| ?$)", re.M)  # not 480-624-2500
_FAILURE_CODE = re.compile(f"{_FAILED_STATUS.pattern}|{_SMTP_REPLY.pattern}", re.MULTILINE)
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
# Anchored at the start of a token: unanchored, a long run of address characters costs quadratic time.
_ADDRESS = re.compile(r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_REPORT_TYPES = {"message/delivery-status", "message/global-delivery-status"}
_RETURNED_TYPES = {"message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers"}
# Where the prose ends and an inline copy of the returned mail begins, in the words MTAs use for it.
_RETURNED_START = re.compile(
    r"^(?:[^\n]*(?:copy of (?:the|your) (?:original )?message|(?:unsent|original|returned) (?:message|mail)"
    r"(?:\s+(?:follows|headers?)|\s*-{2,}|$)|message headers? follow|header of the original message"
    r"|below (?:this line )?is a copy|bounced e-?mail)"
    r"|(?:received|return-path|dkim-signature|message-id|mime-version):|from \S+ +\w{3} \w{3} )",
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_LINE = re.compile(r"^[A-Za-z][\w-]*:(?!//)", re.MULTILINE)
_DAEMONS = re.compile(r"^(mailer-?daemon|mail-daemon|post_?master|mdaemon|bounces?|mail\.delivery\.system)$", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|not (?:be )?delivered|deliver(?:y|ed)\W+(?:status|fail|notif|problem|report|error|delay)|returned"
    r" mail|failure notice|mail delivery|delivery failure|non.?delivery|delayed mail|bounce|rejected|unzustellbar"
    r"|returned to sender|mail failure|unable to deliver",
    re.IGNORECASE,
)
_FAILURE_WORDS = re.compile(
    r"undeliver|not (?:be )?delivered|could not|unable to|fail|rejected|refused|unknown|does not exist|no such|invalid"
    r"|disabled|not found|aborted|mailbox (?:is )?full|quota|expired|timed? ?out|not reach|error",
    re.IGNORECASE,
)
_SOFT_WORDS = re.compile(
    r"delay|will (?:be )?retr|still (?:being )?(?:re)?tr|not yet been|warning|temporary err|defer", re.I
)
_SENT_TO = ("to", "cc", "bcc", "x-original-to", "envelope-to")  # in the returned mail: to whom we sent it
_ROLE_ACCOUNTS = re.compile(r"^(postmaster|mailer-daemon|abuse|hostmaster|support|no-?reply|help)@", re.I)


def detect_bounce(raw: bytes) -> Bounce | None:
    """The bounce `raw` reports, or None when it is not one. Never raises; MAX_BYTES and MAX_LINES bound the time."""
    try:
        return _detect(raw)
    except Exception:  # mail too mangled to read is no bounce we can act on, and must not stop the loop
        return None


def _detect(raw: bytes) -> Bounce | None:
    """detect_bounce without its catch-all, so that tests can fuzz what it would hide."""
    # One line ending: flufl's detectors split body lines on LF only, so a CR-only bounce is one long line.
    lines = raw[:MAX_BYTES].replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n", MAX_LINES)
    msg = BytesParser(policy=compat32).parsebytes(b"\n".join(lines[:MAX_LINES]))
    report = _read_report(msg)
    complaint = _complaint(report)
    if complaint is not None:
        return complaint
    blocks = [(rcpt, fields) for fields in _status_blocks(report) if (rcpt := _recipient(fields))]
    if any(_action(fields) for _, fields in blocks):  # a readable DSN is authoritative, also about success
        return _from_dsn(blocks, report)
    if not _from_mail_system(msg):  # heuristics on human mail find addresses in signatures and lists
        return None
    return _from_flufl(msg, report) or _from_notice(msg, report)


def _read_report(msg: Message) -> _Report:
    """Walk the bounce's parts, not the returned mail's; its prose ends where an inline copy of that mail starts."""
    parts: list[Message] = []
    returned: Message | None = None
    stack = [msg]
    while stack and len(parts) < MAX_PARTS:
        part = stack.pop()
        parts.append(part)
        content_type = part.get_content_type()
        if content_type in _RETURNED_TYPES:  # the returned mail: its headers matter, its body is not ours
            if returned is None:
                returned = _headers_of(part)
        elif part.is_multipart() and content_type not in _REPORT_TYPES:
            stack.extend(reversed([p for p in part.get_payload() if isinstance(p, Message)]))
    prose = "\n".join(_text(p) for p in parts if _is_prose(p))[:MAX_TEXT]
    cut = _RETURNED_START.search(prose)
    if cut is not None:
        header = _HEADER_LINE.search(prose, cut.start())
        if returned is None and header is not None:  # an inline copy: its header block, past any separator
            returned = HeaderParser(policy=compat32).parsestr(prose[header.start() :])
        prose = prose[: cut.start()]
    return _Report(tuple(parts), prose, returned)


def _is_prose(part: Message) -> bool:
    """Text of the bounce itself; a multipart whose boundary is broken arrives as one text payload."""
    maintype = part.get_content_maintype()
    broken = maintype == "multipart" and not part.is_multipart()
    return (maintype == "text" and part.get_content_type() not in _RETURNED_TYPES) or broken


def _headers_of(part: Message) -> Message | None:
    # Asked without decode=True, get_payload() decodes text with the declared charset, and a malformed one raises.
    if not part.is_multipart():
        return HeaderParser(policy=compat32).parsestr(_text(part))
    return next((p for p in part.get_payload() if isinstance(p, Message)), None)


# --- RFC 3464 delivery status notifications and RFC 5965 complaints


def _status_blocks(report: _Report) -> Iterable[dict[str, str]]:
    """Per-recipient field groups. The email package splits them into sub-messages; when it cannot (an encoded or
    mislabelled part) we split the text, since RFC 3464 field groups are header blocks between blank lines."""
    for part in report.parts:
        if part.get_content_type() not in _REPORT_TYPES:
            continue
        if part.is_multipart():
            blocks = [dict(block.items()) for block in part.get_payload() if isinstance(block, Message)]
        else:
            chunks = re.split(r"\n\s*\n", _text(part))
            blocks = [dict(HeaderParser(policy=compat32).parsestr(chunk).items()) for chunk in chunks]
        for block in blocks:
            yield {name.lower(): " ".join(str(value).split()) for name, value in block.items()}


def _recipient(fields: dict[str, str]) -> str | None:
    """Original-Recipient is the address we wrote; Final-Recipient may be an alias it expanded to."""
    for name in ("original-recipient", "final-recipient", "x-actual-recipient"):
        address_type, _, address = fields.get(name, "").rpartition(";")
        found = _ADDRESS.search(address)
        if found and address_type.strip().lower() in {"", "rfc822", "utf-8"}:
            return found.group(0).lower()
    return None


def _action(fields: dict[str, str]) -> str:
    """The Action, or the one its Status implies when an MTA leaves it out; OpenSMTPD writes "error", SendGrid
    "expired"."""
    action = fields.get("action", "").strip().lower()
    if action.startswith(("fail", "error", "expired")):
        return "failed"
    if action.startswith("delay"):
        return "delayed"
    status = _STATUS.search(fields.get("status", ""))
    return action or {"5": "failed", "4": "delayed"}.get(status.group(1) if status else "", "")


def _from_dsn(blocks: Sequence[tuple[str, dict[str, str]]], report: _Report) -> Bounce | None:
    """Failed recipients make the bounce, else delayed ones; delivered, relayed and expanded are not bounces."""
    failed = [(rcpt, fields) for rcpt, fields in blocks if _action(fields) == "failed"]
    chosen = failed or [(rcpt, fields) for rcpt, fields in blocks if _action(fields) == "delayed"]
    if not chosen:
        return None
    statuses = [found.group(0) for _, fields in chosen if (found := _STATUS.search(fields.get("status", "")))]
    first = chosen[0][1]
    return Bounce(
        recipients=_unique(rcpt for rcpt, _ in chosen),
        permanent=any(s.startswith("5") for s in statuses) if statuses else bool(failed),
        status=statuses[0] if statuses else None,
        diagnostic=_clip(first.get("diagnostic-code") or first.get("status") or first.get("action", "")),
        original_message_id=_original_message_id(report),
        kind="dsn" if failed else "delay",
    )


def _complaint(report: _Report) -> Bounce | None:
    """An ARF report (RFC 5965): mail from a machine about a recipient's complaint, not about a delivery."""
    feedback = [p for p in report.parts if p.get_content_type() == "message/feedback-report"]
    if not feedback and report.parts[0].get_param("report-type") != "feedback-report":
        return None
    fields = _headers_of(feedback[0]) if feedback else None
    feedback_type = str(fields.get("feedback-type", "") if fields is not None else "").strip().lower() or "unknown"
    return Bounce((), False, None, f"feedback-type: {feedback_type}", _original_message_id(report), "arf")


# --- Non-standard bounces: flufl.bounce's detectors, then our generic reader


def _from_mail_system(msg: Message) -> bool:
    """Sent by a mail system rather than a person: only then may address-scraping heuristics run."""
    sender_name, sender = parseaddr(str(msg.get("from", "")))
    return bool(
        msg.get_content_type() == "multipart/report"
        or msg.get("x-failed-recipients")
        or str(msg.get("return-path", "absent")).strip() in {"<>", ""}
        or _DAEMONS.match(sender.partition("@")[0])
        or re.search(r"mail delivery|mailer|postmaster", sender_name, re.IGNORECASE)
        or _BOUNCE_SUBJECT.search(_decoded(msg.get("subject", "")))
    )


def _flufl_detectors() -> Sequence[type[BounceDetector]]:
    """flufl's own ordered list, so that its precedence holds and the detector that fired can be named. The list
    is private: should a release move it, all_failures() still runs them, unnamed."""
    try:
        scan = importlib.import_module("flufl.bounce._scan")
    except ImportError:
        return ()
    return tuple(getattr(scan, "_DETECTORS", ()))


_FLUFL: Sequence[type[BounceDetector]] = _flufl_detectors()


def _run_flufl(msg: Message) -> tuple[str, Recipients, Recipients]:
    for detector in _FLUFL:
        try:
            temporary, permanent = detector().process(msg)
        except Exception:  # noqa: S112 - one detector choking on odd MIME must not hide the rest
            continue
        if temporary or permanent:
            return detector.__name__, temporary, permanent
    return ("", frozenset(), frozenset()) if _FLUFL else ("flufl", *all_failures(msg))


def _from_flufl(msg: Message, report: _Report) -> Bounce | None:
    name, temporary, permanent = _run_flufl(msg)
    found = (_ADDRESS.search(a.decode("ascii", "replace")) for a in sorted(permanent or temporary))
    not_recipients = _not_recipients(msg, report)
    recipients = _unique(a for m in found if m and (a := m.group(0).lower()) not in not_recipients)
    return _notice_bounce(report, recipients, bool(permanent), f"flufl:{name}") if recipients else None


def _from_notice(msg: Message, report: _Report) -> Bounce | None:
    """Generic: addresses the prose names next to a failure, preferring those the returned mail was sent to."""
    if not (_FAILURE_CODE.search(report.text) or _FAILURE_WORDS.search(report.text)):
        return None
    ours = _not_recipients(msg, report)
    sent_to = _addresses(report.returned, *_SENT_TO)
    named = [a for a in _unique(a.lower().rstrip(".") for a in _ADDRESS.findall(report.text)) if a not in ours]
    # Contact addresses in the prose ("please write to support@...") are not recipients, unless we wrote to them.
    recipients = tuple(a for a in named if a in sent_to) or tuple(a for a in named if not _ROLE_ACCOUNTS.match(a))
    if not named:  # the prose gives only an SMTP reply or a reason: the returned mail says to whom
        recipients = _unique(sorted(sent_to - ours))
    if not recipients or len(recipients) > MAX_RECIPIENTS:
        return None
    return _notice_bounce(report, recipients, True, "notice")


def _not_recipients(msg: Message, report: _Report) -> set[str]:
    """The bounce's own parties, the returned mail's sender (us) and Message-IDs, which heuristics mistake for
    failed recipients; marking our own address as bouncing would silence the help desk."""
    ids = [m.strip("<>").lower() for h in ("message-id", "references") for m in _MESSAGE_ID.findall(str(msg.get(h)))]
    returned_id = str(report.returned.get("message-id", "")) if report.returned is not None else ""
    ids += [m.strip("<>").lower() for m in _MESSAGE_ID.findall(returned_id)]
    parties = _addresses(msg, "from", "to", "cc", "sender") | _addresses(report.returned, "from", "sender")
    return (parties | set(ids)) - _addresses(report.returned, *_SENT_TO)  # unless we wrote to it: mail to self bounces


def _addresses(msg: Message | None, *fields: str) -> set[str]:
    if msg is None:
        return set()
    return {a.lower() for _, a in getaddresses([str(msg.get(f, "")) for f in fields]) if "@" in a}


def _notice_bounce(report: _Report, recipients: tuple[str, ...], permanent: bool, kind: str) -> Bounce:
    """A status code in the prose overrides the detector's guess at hard or soft: RFC 3463 classes are explicit."""
    found = _FAILED_STATUS.search(report.text)
    status = found.group(0) if found else None
    smtp = _SMTP_REPLY.search(report.text)
    code = status[0] if status else smtp.group(1) if smtp else None
    permanent = code == "5" if code else permanent and not _SOFT_WORDS.search(report.text)
    line = next((ln.strip() for ln in report.text.splitlines() if _FAILURE_CODE.search(ln)), kind)
    return Bounce(recipients, permanent, status, _clip(line), _original_message_id(report), kind)


# --- Shared helpers


def _original_message_id(report: _Report) -> str | None:
    """The returned mail names the message that bounced; failing that, the bounce's In-Reply-To or References."""
    returned = report.returned.get("message-id") if report.returned is not None else None
    top = report.parts[0]
    for value in (returned, top.get("in-reply-to"), *reversed(_MESSAGE_ID.findall(str(top.get("references", ""))))):
        found = _MESSAGE_ID.search(str(value or ""))
        if found:
            return found.group(0)
    return None


def _decoded(value: object) -> str:
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError, MessageError):
        return str(value)


def _text(part: Message) -> str:
    """The decoded text of a leaf part, bounded; undecodable bytes become U+FFFD rather than an error."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload[:MAX_TEXT].decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return payload[:MAX_TEXT].decode("utf-8", "replace")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
