"""Rendering (pure): a QueueMail action, its case and the message that caused it -> an outgoing mail.

Templates are Jinja2 in a sandbox with strict undefined variables; requester text
enters them only as data and never reaches a header unsanitised.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr
from typing import Any
from urllib.parse import quote

import jinja2
import jinja2.bccache
from jinja2.sandbox import SandboxedEnvironment

from mailsvc import mimewrite
from mailsvc.envelope import idna_domain
from mailsvc.errors import TemplateError
from mailsvc.expect import TeamView, team_context
from mailsvc.model import STAFF_PURPOSES, Address, Attachment, Case, InboundMessage, OutgoingMail, QueueMail
from mailsvc.strip import MARKER
from mailsvc.thread import compile_tag, render_tag, strip_tags

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|vs|r|rif|odp|res)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
_TOKEN = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")  # a type/subtype a header can carry
MAX_REFERENCES = 20


def header_text(value: str) -> str:
    """One line, no control characters: nothing a requester writes can add a header."""
    return " ".join(_UNSAFE.sub(" ", value).split())


def reply_subject(subject: str, tag: str, position: str, tags: re.Pattern[str] | None = None) -> str:
    """'Re: <subject> [Help #42]': one tag, the case's own, one reply prefix, where the queue wants it.

    `tags` matches the queue's tag of any case: those are removed before ours is added."""
    text = header_text(subject).replace(tag, " ")
    if tags is not None:
        text = tags.sub(" ", text)
    text = " ".join(text.split())
    if not _REPLY_PREFIX.match(text):
        text = f"Re: {text}" if text else "Re:"
    if position == "start":
        prefix, _, rest = text.partition(":")
        return f"{prefix}: {tag} {rest.strip()}".rstrip()
    return f"{text} {tag}"


class _CompiledOnce(jinja2.BytecodeCache):
    """Compiled templates shared by every Templates of the process, all made alike: the start-up check
    and each queue compile a template's source once (about 10 ms each). Jinja checks the source's
    checksum, so a file edited before a reload is compiled anew."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _CompiledOnce()


class Templates:
    """The templates of one queue, from the loader a shell gives (mailsvc.templatefiles reads them from disk).

    Every template is read and compiled here, once: a file edited on disk changes outgoing mail only
    when the daemon starts or reloads, after the same check (Jinja would otherwise reload it on use).
    """

    def __init__(self, loader: jinja2.BaseLoader) -> None:
        self.env = SandboxedEnvironment(
            loader=loader,
            bytecode_cache=_COMPILED,
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=-1,  # never evicted, so never read again
        )
        self._load_all()

    def _load_all(self) -> None:
        try:
            names = self.env.list_templates(filter_func=lambda name: name.endswith(".j2"))
        except OSError:
            return  # a missing folder is reported by the check; the defaults still load lazily
        for name in names:
            # A broken template is reported by the check that start-up and reload run first.
            with contextlib.suppress(jinja2.TemplateError, OSError, UnicodeDecodeError):
                self.env.get_template(name)

    def has(self, name: str) -> bool:
        try:
            self.env.get_template(name)
        except jinja2.TemplateNotFound:
            return False
        return True

    def render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {name} not found") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {name}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    address: str
    display_name: str
    subject_tag: str
    tag_position: str
    team: TeamView | None = None  # what the team's hours and recent answers let a requester expect


def template_context(action: QueueMail, case: Case, msg: InboundMessage, queue: QueueView, tag: str) -> dict[str, Any]:
    sender = msg.from_
    return {
        "case": {
            "id": case.id, "subject": case.subject, "status": case.status.value, "tag": tag,
            "priority": case.priority, "owner": case.owner or "",
        },
        "requester": {"name": case.requester.name, "address": case.requester.addr},
        "sender": {"name": sender.name if sender else "", "address": sender.addr if sender else ""},
        "message": {"subject": msg.subject, "text": msg.text},
        "text": action.text,
        "attachments": [{"filename": a.filename, "size": a.size} for a in msg.attachments] if action.attach else [],
        "marker": MARKER,
        "queue": {"name": queue.name, "address": queue.address, "display_name": queue.display_name},
        "satisfaction": satisfaction_links(queue.address, tag),
        "team": team_context(queue.team),
    }  # fmt: skip


def satisfaction_links(address: str, tag: str) -> dict[str, str]:
    """mailto: links whose prepared subject carries the rating and the case tag."""
    links = {}
    for answer in ("good", "bad", "1", "2", "3", "4", "5"):
        subject = quote(f"Rating: {answer} {tag}", safe="")
        links[answer] = f"mailto:{address}?subject={subject}"
    return links


@dataclass(frozen=True, slots=True)
class ThreadIds:
    """The Message-IDs a mail names as its parent and its thread, written byte for byte as they came."""

    in_reply_to: str | None
    references: tuple[str, ...]


def compose(
    action: QueueMail,
    case: Case,
    msg: InboundMessage,
    *,
    templates: Templates,
    queue: QueueView,
    message_id: str,
    now: datetime,
    reply_to: str | None = None,
    thread: ThreadIds | None = None,
) -> OutgoingMail:
    """The mail `action` asks for. Mail to the requester takes its subject from the case and names
    `thread` (what the requester received or sent); without `thread`, `msg` is the parent."""
    tag = render_tag(queue.subject_tag, case.id)
    tags = compile_tag(queue.subject_tag)
    context = template_context(action, case, msg, queue, tag)
    utf8 = any(needs_smtputf8(a) for a in action.to)
    fields: list[bytes] = []
    if action.purpose in STAFF_PURPOSES:
        about = header_text(case.requester.name or case.requester.addr)
        sender = mimewrite.mailbox(header_text(f"{about} via {queue.display_name}"), queue.address, utf8=utf8)
        fields.append(mimewrite.address_field("From", [sender]))
        subject = f"{tag} ({case.status.value}) {strip_tags(header_text(case.subject), [tags])}"
        fields.append(mimewrite.text_field("Subject", subject, utf8=utf8))
        if reply_to:
            fields.append(mimewrite.address_field("Reply-To", [reply_to]))
    else:
        sender = mimewrite.mailbox(header_text(queue.display_name), queue.address, utf8=utf8)
        fields.append(mimewrite.address_field("From", [sender]))
        subject = reply_subject(case.subject, tag, queue.tag_position, tags)
        fields.append(mimewrite.text_field("Subject", subject, utf8=utf8))
    fields += [
        mimewrite.address_field("To", [_recipient(a, utf8) for a in action.to]),
        mimewrite.fold("Date", format_datetime(now)),
        mimewrite.fold("Message-ID", message_id),
        # RFC 3834: mark everything we send as automatic, and ask others not to answer it.
        mimewrite.fold("Auto-Submitted", "auto-replied" if action.purpose in ("ack", "refused") else "auto-generated"),
        b"X-Auto-Response-Suppress: All\r\n",
        mimewrite.text_field("X-Loop", queue.address, utf8=utf8),
        mimewrite.fold("X-Mailsvc-Case", str(case.id)),
        b"MIME-Version: 1.0\r\n",
    ]
    body = mimewrite.text_part(templates.render(f"{action.template}.txt.j2", context), "plain")
    html_name = f"{action.template}.html.j2"
    if templates.has(html_name):
        body = mimewrite.multipart(
            "alternative", [body, mimewrite.text_part(templates.render(html_name, context), "html")]
        )
    if action.attach and msg.attachments:
        body = mimewrite.multipart("mixed", [body, *(_attachment(part) for part in msg.attachments)])
    if thread is None:
        thread = ThreadIds(msg.message_id, (*msg.references, msg.message_id) if msg.message_id else ())
    raw = b"".join(fields) + body.as_bytes()
    return OutgoingMail(
        message_id=message_id,
        mail_from=queue.address,
        rcpt_to=tuple(a.addr for a in action.to),
        raw=thread_headers(thread) + raw,
        purpose=action.purpose,
    )


def _attachment(part: Attachment) -> mimewrite.Part:
    maintype, _, subtype = part.content_type.partition("/")
    if maintype in ("message", "multipart") or not subtype or not _TOKEN.fullmatch(part.content_type):
        # Not a leaf that can be re-encoded byte for byte: sent as the bytes it was.
        maintype, subtype = "application", "octet-stream"
    return mimewrite.attachment_part(part.data, f"{maintype}/{subtype}", part.filename)


def _recipient(address: Address, utf8: bool) -> str:
    """A mailbox of the To field: the domain in IDNA where the local part is ASCII (header_address)."""
    addr = address.addr
    local, _, domain = addr.rpartition("@")
    if not addr.isascii() and local.isascii():
        with contextlib.suppress(ValueError):
            addr = f"{local}@{idna_domain(domain)}"
    return mimewrite.mailbox(header_text(address.name), addr, utf8=utf8)


def _local_part(addr: str) -> str:
    return addr.rpartition("@")[0]


def header_address(address: Address) -> str:
    """An address for To/Cc: the domain in its ASCII (IDNA) form where the local part is ASCII;
    a non-ASCII local part stays UTF-8 (RFC 6532), and the mail then needs SMTPUTF8."""
    name = header_text(address.name)
    local, _, domain = address.addr.rpartition("@")
    if address.addr.isascii():
        return formataddr((name, address.addr))
    if local.isascii():
        try:
            return formataddr((name, f"{local}@{idna_domain(domain)}"))
        except ValueError:
            pass
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address.addr}>' if name else address.addr


def thread_headers(thread: ThreadIds) -> bytes:
    """In-Reply-To and References as raw header lines: Message-IDs are written as they came, never
    decoded (an encoded-word look-alike stays one) nor encoded (a UTF-8 id stays UTF-8)."""
    lines = b""
    if thread.in_reply_to:
        lines += b"In-Reply-To: " + _clean_id(thread.in_reply_to) + b"\r\n"
    refs = [_clean_id(r) for r in dict.fromkeys(thread.references) if r]
    if len(refs) > MAX_REFERENCES:  # the root and the newest: what threading needs most
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
    if refs:
        lines += b"References: " + b"\r\n ".join(refs) + b"\r\n"
    return lines


def _clean_id(message_id: str) -> bytes:
    return _UNSAFE.sub("", message_id).replace(" ", "").encode("utf-8", "surrogateescape")


def needs_smtputf8(address: Address) -> bool:
    """An address whose local part is not ASCII: only SMTPUTF8 can carry it."""
    return not _local_part(address.addr).isascii()


def recipient_groups(to: tuple[Address, ...]) -> tuple[tuple[Address, ...], ...]:
    """The copies to send: addresses that need SMTPUTF8 apart from the others, so that a server
    without it fails only their copy, never everyone's."""
    plain = tuple(a for a in to if not needs_smtputf8(a))
    utf8 = tuple(a for a in to if needs_smtputf8(a))
    return tuple(group for group in (plain, utf8) if group)
