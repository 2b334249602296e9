"""Sender authentication (pure): is a mail from staff, and the signed reply token that proves it.

classify and decide ask verify_sender before a mail may relay or run commands
(DESIGN.md, "Trust is explicit"); a From header alone never makes staff.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailsvc.authres import AuthResult, AuthResults, parse_authentication_results
from mailsvc.mime import read_header_block
from mailsvc.model import InboundMessage

# How much of a header block trust reads for the order of its trace fields.
_MAX_FIELDS = 1000
_HEADER_SCAN = 256 * 1024
_VALUE_MAX = 8192

# 16 hex digits (64 bits) of HMAC-SHA256 keep the address short enough for every mail client
# and are still far beyond guessing by mail; leading zeros are refused so each case has one token.
_TOKEN = re.compile(r"c(0|[1-9][0-9]{0,11})-([0-9a-f]{16})")


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    staff: frozenset[str]
    trusted_authserv_ids: frozenset[str]
    allow_spf: bool = False
    trust_from_header: bool = False

    def __post_init__(self) -> None:
        # Compared in lower case; a mixed-case entry in the config must not silently fail to match.
        object.__setattr__(self, "staff", frozenset(a.strip().lower() for a in self.staff))
        ids = frozenset(i.strip().lower() for i in self.trusted_authserv_ids)
        object.__setattr__(self, "trusted_authserv_ids", ids - {""})


@dataclass(frozen=True, slots=True)
class TrustVerdict:
    """`staff`: From is a staff address. `verified`: it passed authentication (judged for staff only)."""

    staff: bool
    verified: bool
    reason: str

    @property
    def trusted(self) -> bool:
        """Relay and run commands only when this is true."""
        return self.staff and self.verified


def trace_fields(msg: InboundMessage) -> tuple[tuple[str, str], ...]:
    """The top-level header fields of the raw mail, in order (the parsed mapping keeps no order across names)."""
    return read_header_block(msg.raw, _MAX_FIELDS, _HEADER_SCAN, _VALUE_MAX).fields


def trusted_results(msg: InboundMessage, policy: TrustPolicy) -> tuple[AuthResults, ...]:
    """The Authentication-Results our receiving server added: the topmost, contiguous ones.

    Headers are read topmost (newest) first. Anyone can write a header that names our server, but
    ours sit above whatever the sender or another server wrote. So the run is the first block of
    adjacent Authentication-Results with a trusted authserv-id, and it is taken only if no other
    server's Authentication-Results lies above it; it ends at the first other header (a Received is
    the next hop down). Nothing below it counts, and nothing below our receiving server's own
    Received header (its `by` host is a trusted authserv-id) when no verdict of ours sits above it.
    Headers above it (Return-Path, Delivered-To, the delivery agent's Received) were added on our
    side after the verdict. The MTA should also remove forged ones (RFC 8601 section 5).
    """
    run: list[AuthResults] = []
    for name, value in trace_fields(msg):
        kind = name.lower()
        parsed = parse_authentication_results(value) if kind == "authentication-results" else None
        if parsed is not None and parsed.authserv_id.lower() in policy.trusted_authserv_ids:
            run.append(parsed)
        elif run or kind == "authentication-results":
            # The end of our block, or another server's verdict above any of ours: nothing lower counts.
            break
        elif kind == "received" and _received_by(value) in policy.trusted_authserv_ids:
            # Our receiving server's own hop, and no verdict of ours above it: what lies below came with the mail.
            break
    return tuple(run)


_BY_HOST = re.compile(r"\bby\s+([^\s;()]+)", re.IGNORECASE)


def _received_by(value: str) -> str:
    """The host that wrote a Received header (its `by` clause), lower case; '' when it names none."""
    found = _BY_HOST.search(value)
    return found.group(1).rstrip(".").lower() if found else ""


def decisive(run: tuple[AuthResults, ...], method: str) -> tuple[str, tuple[AuthResult, ...]]:
    """The results for `method` in the newest trusted header that has any, with its authserv-id.

    An older header must not add a pass that the newest verdict of our own server lacks.
    """
    for header in run:
        found = header.results_for(method)
        if found:
            return header.authserv_id, found
    return "", ()


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment: `domain` is the From domain or a parent of it (organisational-domain approximation).

    A bare top-level domain never aligns, so `d=org` cannot vouch for every .org sender.
    """
    domain = domain.strip().rstrip(".").lower()
    from_domain = from_domain.strip().rstrip(".").lower()
    if "." not in domain or not from_domain:
        return False
    return from_domain == domain or from_domain.endswith("." + domain)


def _domain_of(value: str) -> str:
    return value.strip().strip("<>").rpartition("@")[2]


def _dkim_domain(result: AuthResult) -> str:
    # Gmail reports the signing domain as header.i=@example.org and leaves out header.d.
    return result.properties.get("header.d") or _domain_of(result.properties.get("header.i", ""))


def dkim_pass(from_domain: str, run: tuple[AuthResults, ...], policy: TrustPolicy) -> str | None:
    server, results = decisive(run, "dkim")
    for result in results:
        domain = _dkim_domain(result)
        if result.result == "pass" and aligned(domain, from_domain):
            return f"dkim=pass header.d={domain.lower()} by {server}"
    return None


def dmarc_pass(from_domain: str, run: tuple[AuthResults, ...], policy: TrustPolicy) -> str | None:
    server, results = decisive(run, "dmarc")
    for result in results:
        header_from = result.properties.get("header.from", "").strip().rstrip(".").lower()
        if result.result == "pass" and header_from and header_from == from_domain:
            return f"dmarc=pass header.from={header_from} by {server}"
    return None


def spf_pass(from_domain: str, run: tuple[AuthResults, ...], policy: TrustPolicy) -> str | None:
    if not policy.allow_spf:
        return None
    server, results = decisive(run, "spf")
    for result in results:
        domain = _domain_of(result.properties.get("smtp.mailfrom", ""))
        if result.result == "pass" and aligned(domain, from_domain):
            return f"spf=pass smtp.mailfrom={domain.lower()} by {server}"
    return None


Check = Callable[[str, tuple[AuthResults, ...], TrustPolicy], str | None]
CHECKS: tuple[Check, ...] = (dkim_pass, dmarc_pass, spf_pass)


def _describe(method: str, result: AuthResult, policy: TrustPolicy) -> str:
    if method == "dkim":
        domain = _dkim_domain(result)
        detail = f" header.d={domain}" if domain else ""
    elif method == "dmarc":
        header_from = result.properties.get("header.from", "")
        detail = f" header.from={header_from}" if header_from else ""
    else:
        detail = "" if policy.allow_spf else " (spf not allowed)"
    return f"{method}={result.result}{detail}"


def _failure(run: tuple[AuthResults, ...], policy: TrustPolicy) -> str:
    """What the trusted servers did say, short enough for one log field."""
    if not run:
        return "no trusted Authentication-Results"
    seen = [_describe(m, r, policy) for m in ("dkim", "dmarc", "spf") for r in decisive(run, m)[1]]
    servers = ", ".join(dict.fromkeys(h.authserv_id for h in run))
    return f"no aligned pass by {servers}: " + ("; ".join(seen) or "no dkim, dmarc or spf result")


def verify_sender(msg: InboundMessage, policy: TrustPolicy, token_case: int | None = None) -> TrustVerdict:
    """Judge a mail's claim to come from staff; `token_case` is the case a valid reply token named."""
    if msg.from_ is None:
        return TrustVerdict(staff=False, verified=False, reason="no From address")
    if msg.from_.key not in policy.staff:
        return TrustVerdict(staff=False, verified=False, reason="From is not a staff address")
    run = trusted_results(msg, policy)
    for check in CHECKS:
        reason = check(msg.from_.domain, run, policy)
        if reason is not None:
            return TrustVerdict(staff=True, verified=True, reason=reason)
    if token_case is not None:
        return TrustVerdict(staff=True, verified=True, reason=f"signed reply token for case {token_case}")
    if policy.trust_from_header:
        return TrustVerdict(staff=True, verified=True, reason="From header trusted (trust_from_header)")
    return TrustVerdict(staff=True, verified=False, reason=_failure(run, policy))


@dataclass(frozen=True, slots=True)
class SenderAuth:
    """A requester's mail as our trusted Authentication-Results judge it.

    `authenticated`: an aligned dkim or spf pass, or dmarc=pass. `forged`: dmarc=fail for the From
    domain: whoever wrote it, the From address did not, so nothing automatic may go to it."""

    authenticated: bool
    forged: bool
    reason: str


def _dmarc_fail(from_domain: str, run: tuple[AuthResults, ...]) -> str | None:
    server, results = decisive(run, "dmarc")
    for result in results:
        header_from = result.properties.get("header.from", "").strip().rstrip(".").lower()
        if result.result == "fail" and header_from in ("", from_domain):
            return f"dmarc=fail header.from={header_from or from_domain} by {server}"
    return None


def authenticate_sender(msg: InboundMessage, policy: TrustPolicy) -> SenderAuth:
    """Any sender's authentication, from the same trusted results staff trust reads (an aligned
    spf pass counts here whatever trust.allow_spf says: that switch is about staff powers)."""
    if msg.from_ is None:
        return SenderAuth(authenticated=False, forged=False, reason="no From address")
    run = trusted_results(msg, policy)
    domain = msg.from_.domain
    forged = _dmarc_fail(domain, run)
    if forged is not None:
        return SenderAuth(authenticated=False, forged=True, reason=forged)
    spf_policy = TrustPolicy(policy.staff, policy.trusted_authserv_ids, allow_spf=True)
    for check in CHECKS:
        reason = check(domain, run, spf_policy)
        if reason is not None:
            return SenderAuth(authenticated=True, forged=False, reason=reason)
    return SenderAuth(authenticated=False, forged=False, reason=_failure(run, spf_policy))


def _signature(case_id: int, key: bytes) -> str:
    return hmac.new(key, f"case:{case_id}".encode(), hashlib.sha256).hexdigest()[:16]


def sign_token(case_id: int, key: bytes) -> str:
    """`c42-<16 hex>`: names the case and proves we wrote it. An empty key would let anyone sign."""
    if not key:
        raise ValueError("token key is empty")
    if case_id < 0:
        raise ValueError(f"case id {case_id} is negative")
    return f"c{case_id}-{_signature(case_id, key)}"


def verify_token(token: str, key: bytes) -> int | None:
    """The case id a token names, or None when it is malformed or not signed with `key`."""
    found = _TOKEN.fullmatch(token.strip().lower())
    if found is None or not key:
        return None
    case_id = int(found.group(1))
    if hmac.compare_digest(_signature(case_id, key), found.group(2)):
        return case_id
    return None


_TOKEN_IN_TEXT = re.compile(r"(\+c(?:0|[1-9][0-9]{0,11})-)[0-9a-f]{16}(?=@)", re.IGNORECASE)


def redact_tokens(text: str) -> str:
    """help+c42-<signature>@... -> help+c42-[redacted]@...: a token's signature is a credential."""
    return _TOKEN_IN_TEXT.sub(r"\1[redacted]", text)


def reply_address(help_address: str, case_id: int, key: bytes) -> str:
    """help@example.org -> help+c42-<sig>@example.org (plus addressing, as Postfix and Dovecot deliver it)."""
    local, at, domain = help_address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{help_address!r} is not a mail address")
    return f"{local}+{sign_token(case_id, key)}@{domain}"


def token_from_recipients(msg: InboundMessage, help_addresses: Iterable[str], key: bytes) -> int | None:
    """The case named by a valid token in To, Cc, Delivered-To or X-Original-To, or None."""
    bases = [address.strip().lower().rpartition("@") for address in help_addresses]
    candidates = [a.addr for a in msg.recipients]
    for header in ("delivered-to", "x-original-to"):
        candidates.extend(msg.header_all(header))
    for candidate in candidates:
        local, _, domain = candidate.strip().strip("<>").lower().rpartition("@")
        for base_local, _, base_domain in bases:
            prefix = base_local + "+"
            if base_local and domain == base_domain and local.startswith(prefix):
                case_id = verify_token(local[len(prefix) :], key)
                if case_id is not None:
                    return case_id
    return None
