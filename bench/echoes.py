"""Echoes: what mail servers send back when mailsvc's acknowledgements reach them.

After an ingest, some acknowledgements are answered automatically: an Exchange
out-of-office (In-Reply-To and References), a Sieve vacation reply (In-Reply-To),
a crude autoresponder (neither), or a delivery status notification (a bounce:
no In-Reply-To, the returned acknowledgement's headers inside). An answer that
carries In-Reply-To (or the case tag, in the subject it quotes) belongs to the
acknowledged request's case, and so does a bounce, by the Message-ID of the
mail that bounced (mailsvc 7029e97); the crude autoresponder opens its own.
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message

from bench import mime
from bench.corpus import HELP, HELP_DISPLAY, CorpusMessage, Generator
from bench.corpus_text import LOCALES


def echoes(gen: Generator, acks: list[bytes], rate: float = 0.03) -> list[CorpusMessage]:
    """Automatic answers to about `rate` of the acknowledgements (at least one), in a stable order."""
    out: list[CorpusMessage] = []
    parsed = [email.message_from_bytes(a, policy=email.policy.compat32) for a in acks]
    parsed.sort(key=lambda m: str(m["In-Reply-To"]))
    for ack in parsed:
        if gen.rng.random() >= rate and out:
            continue
        thread = gen.by_id.get(str(ack["In-Reply-To"]).strip())
        if thread is None:
            continue
        r = gen.rng.random()
        if r < 0.4:
            out.append(_auto_reply(gen, ack, thread, style="exchange"))
        elif r < 0.6:
            out.append(_auto_reply(gen, ack, thread, style="sieve"))
        elif r < 0.75:
            out.append(_auto_reply(gen, ack, gen.new_key(), style="crude"))
        else:
            out.append(_bounce(gen, ack, thread))
    return out


def _auto_reply(gen: Generator, ack: Message, key: str, *, style: str) -> CorpusMessage:
    rcpt = str(ack["To"])
    person = next((p for p in gen.people if p.addr in rcpt), gen.people[0])
    ack_id, ack_subject = str(ack["Message-ID"]).strip(), str(ack["Subject"])
    mid = gen.message_id(person.addr)
    headers = [
        *gen.envelope(person.addr),
        ("From", mime.address(person.name, person.addr, person.charset)),
        ("To", mime.address(HELP_DISPLAY, HELP)),
        ("Date", gen.date(person.locale)),
        ("Message-ID", mid),
    ]
    if style == "exchange":
        headers += [("Subject", "Automatic reply: " + ack_subject), ("In-Reply-To", ack_id),
                    ("References", mime.fold_ids([*str(ack["References"]).split(), ack_id])),
                    ("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")]  # fmt: skip
    elif style == "sieve":
        headers += [("Subject", "Auto: " + ack_subject), ("In-Reply-To", ack_id), ("References", ack_id),
                    ("Auto-Submitted", "auto-replied (vacation)"), ("Precedence", "bulk")]  # fmt: skip
    else:
        headers += [("Subject", "Out of Office"), ("X-Autoreply", "yes"), ("Auto-Submitted", "auto-replied")]
    body = gen.body(person, ["I am on holiday and will read your message after my return."])
    raw = mime.render(headers, mime.text(body, "plain", "utf-8", "8bit"))
    return gen.emit(raw, key, mid, "auto_reply", wants_ack=False)


def _bounce(gen: Generator, ack: Message, key: str) -> CorpusMessage:
    rcpt = str(ack["To"])
    mid = gen.message_id("mx.example.org")
    headers = [
        ("Return-Path", "<>"),
        ("Delivered-To", HELP),
        ("From", "MAILER-DAEMON@mx.example.org (Mail Delivery System)"),
        ("To", HELP),
        ("Subject", "Undelivered Mail Returned to Sender"),
        ("Date", gen.date(LOCALES[0])),
        ("Message-ID", mid),
        ("Auto-Submitted", "auto-replied"),
    ]
    notice = mime.text(
        f"I'm sorry to have to inform you that your message could not be delivered to {rcpt}.\n",
        "plain", "us-ascii", "7bit",
    )  # fmt: skip
    report = mime.Entity(
        [("Content-Type", "message/delivery-status")],
        f"Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; {rcpt}\nAction: failed\n"
        f"Status: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: user unknown\n".encode(errors="replace"),
    )
    head = "".join(f"{k}: {v}\n" for k, v in ack.items())
    original = mime.Entity([("Content-Type", "text/rfc822-headers")], head.encode("ascii", "replace"))
    body = mime.multipart("report", [notice, report, original], gen.boundary(), " report-type=delivery-status;")
    return gen.emit(mime.render(headers, body), key, mid, "bounce", wants_ack=False)
