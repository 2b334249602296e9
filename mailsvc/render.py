"""Rendering (pure): a QueueMail action, its case and the message that caused it -> an outgoing mail.

Templates are Jinja2 in a sandbox with strict undefined variables; requester text
enters them only as data and never reaches a header unsanitised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from mailsvc.errors import TemplateError
from mailsvc.expect import TeamView, team_context
from mailsvc.model import STAFF_PURPOSES, Case, InboundMessage, OutgoingMail, QueueMail
from mailsvc.strip import MARKER
from mailsvc.thread import render_tag

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|vs|r|rif|odp|res)\s*(\[\d+\])?\s*:", re.IGNORECASE)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")
MAX_REFERENCES = 20


def header_text(value: str) -> str:
    """One line, no control characters: nothing a requester writes can add a header."""
    return " ".join(_UNSAFE.sub(" ", value).split())


def reply_subject(subject: str, tag: str, position: str) -> str:
    """'Re: <subject> [Help #42]': the tag once, one reply prefix, where the queue wants it."""
    text = header_text(subject).replace(tag, " ")
    text = " ".join(text.split())
    if not _REPLY_PREFIX.match(text):
        text = f"Re: {text}" if text else "Re:"
    if position == "start":
        prefix, _, rest = text.partition(":")
        return f"{prefix}: {tag} {rest.strip()}".rstrip()
    return f"{text} {tag}"


class Templates:
    """The templates of one queue: its own folder first, then the shared folder, then the defaults."""

    def __init__(self, folders: Sequence[Path]) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(f)) for f in folders]
        loaders.append(jinja2.PackageLoader("mailsvc.templates", ""))
        self.env = SandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
            keep_trailing_newline=True,
        )

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
) -> OutgoingMail:
    tag = render_tag(queue.subject_tag, case.id)
    context = template_context(action, case, msg, queue, tag)
    mail = EmailMessage()
    to_staff = action.purpose in STAFF_PURPOSES
    if to_staff:
        about = header_text(case.requester.name or case.requester.addr)
        mail["From"] = formataddr((header_text(f"{about} via {queue.display_name}"), queue.address))
        mail["Subject"] = f"{tag} ({case.status.value}) {header_text(case.subject)}"
        if reply_to:
            mail["Reply-To"] = reply_to
    else:
        mail["From"] = formataddr((header_text(queue.display_name), queue.address))
        mail["Subject"] = reply_subject(msg.subject or case.subject, tag, queue.tag_position)
    mail["To"] = ", ".join(formataddr((header_text(a.name), a.addr)) for a in action.to)
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = message_id
    if msg.message_id:
        mail["In-Reply-To"] = msg.message_id
        mail["References"] = " ".join([*msg.references, msg.message_id][-MAX_REFERENCES:])
    # RFC 3834: mark everything we send as automatic, and ask others not to answer it.
    mail["Auto-Submitted"] = "auto-replied" if action.purpose == "ack" else "auto-generated"
    mail["X-Auto-Response-Suppress"] = "All"
    mail["X-Loop"] = queue.address
    mail["X-Mailsvc-Case"] = str(case.id)
    mail.set_content(templates.render(f"{action.template}.txt.j2", context))
    html_name = f"{action.template}.html.j2"
    if templates.has(html_name):
        mail.add_alternative(templates.render(html_name, context), subtype="html")
    if action.attach:
        for part in msg.attachments:
            maintype, _, subtype = part.content_type.partition("/")
            mail.add_attachment(
                part.data, maintype=maintype or "application", subtype=subtype or "octet-stream",
                filename=part.filename,
            )  # fmt: skip
    return OutgoingMail(
        message_id=message_id,
        mail_from=queue.address,
        rcpt_to=tuple(a.addr for a in action.to),
        raw=mail.as_bytes(policy=SMTP),
        purpose=action.purpose,
    )
