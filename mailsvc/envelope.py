"""The SMTP envelope of an outgoing mail (pure): internationalised addresses (RFC 6531) for the sender.

With a server that offers SMTPUTF8, addresses go as written and the mail carries the SMTPUTF8
option whenever an address or a header is UTF-8. Without it, a domain goes in its IDNA form,
and an address whose local part is not ASCII cannot be expressed at all: the mail fails for
that reason (mailsvc sends such a recipient a copy of their own, so no one else's copy fails).
"""

from __future__ import annotations

from dataclasses import dataclass

import idna

SMTPUTF8 = "SMTPUTF8"
# RFC 6531 section 3.5: the reply a server gives to a non-ASCII address it cannot take.
NOT_EXPRESSIBLE_CODE = 553


@dataclass(frozen=True, slots=True)
class Envelope:
    mail_from: str
    rcpt_to: tuple[str, ...]
    mail_options: tuple[str, ...] = ()


class CannotExpress(ValueError):
    """An address of the mail has no form this server accepts; the reason says which and why."""


def idna_domain(domain: str) -> str:
    """The ASCII form of a domain (IDNA 2008 with UTS 46 mapping); ValueError when it has none."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"the domain {domain!r} has no IDNA form ({exc})") from exc


def ascii_address(addr: str) -> str:
    """`addr` as SMTP without SMTPUTF8 can carry it; CannotExpress when its local part is not ASCII."""
    local, at, domain = addr.rpartition("@")
    if not local.isascii():
        raise CannotExpress(f"{addr}: a non-ASCII local part needs SMTPUTF8, which the server does not offer")
    try:
        return f"{local}{at}{idna_domain(domain)}" if at else addr
    except ValueError as exc:
        raise CannotExpress(f"{addr}: {exc}") from exc


def _header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[:end]


def envelope(mail_from: str, rcpt_to: tuple[str, ...], raw: bytes, *, smtputf8: bool) -> Envelope:
    """The envelope to send `raw` with, given whether the server offers SMTPUTF8."""
    addresses = (mail_from, *rcpt_to)
    if smtputf8:
        utf8 = not all(a.isascii() for a in addresses) or not _header_block(raw).isascii()
        return Envelope(mail_from, rcpt_to, (SMTPUTF8,) if utf8 else ())
    # Without SMTPUTF8 a UTF-8 Message-ID in References still goes: servers pass 8-bit header
    # bytes on, and dropping the mail would cost the requester the answer.
    return Envelope(ascii_address(mail_from), tuple(ascii_address(a) for a in rcpt_to))
