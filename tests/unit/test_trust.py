"""Sender authentication and reply tokens: every way a forged staff mail might get through."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsvc.config import TrustConfig
from mailsvc.log import redact_secrets
from mailsvc.model import Address
from mailsvc.parse import parse_message
from mailsvc.trust import (
    TrustPolicy,
    aligned,
    redact_tokens,
    reply_address,
    sign_token,
    token_from_recipients,
    verify_sender,
    verify_token,
)
from tests.unit.factories import message

STAFF = Address("bob@example.org", "Bob Staff")
POLICY = TrustPolicy(staff=frozenset({"bob@example.org"}), trusted_authserv_ids=frozenset({"mx.example.org"}))
KEY = b"k" * 32


def judge(*auth_results: str, policy: TrustPolicy = POLICY, token_case: int | None = None) -> tuple[bool, bool, str]:
    verdict = verify_sender(
        message(from_=STAFF, headers={"Authentication-Results": list(auth_results)}), policy, token_case
    )
    return verdict.staff, verdict.verified, verdict.reason


def test_forged_from_without_authentication_results() -> None:
    verdict = verify_sender(message(from_=STAFF), POLICY)
    assert verdict.staff is True
    assert verdict.verified is False
    assert verdict.trusted is False
    assert verdict.reason == "no trusted Authentication-Results"


def test_non_staff_from() -> None:
    verdict = verify_sender(
        message(headers={"Authentication-Results": ["mx.example.org; dkim=pass header.d=example.net"]}), POLICY
    )
    assert (verdict.staff, verdict.verified, verdict.reason) == (False, False, "From is not a staff address")


def test_no_from() -> None:
    verdict = verify_sender(message(from_=None), POLICY)
    assert (verdict.staff, verdict.verified) == (False, False)


def test_staff_match_ignores_case() -> None:
    policy = TrustPolicy(staff=frozenset({"Bob@Example.ORG"}), trusted_authserv_ids=frozenset({"MX.example.org"}))
    verdict = verify_sender(
        message(
            from_=Address("BOB@example.org"),
            headers={"Authentication-Results": ["mx.EXAMPLE.org; dmarc=pass header.from=example.org"]},
        ),
        policy,
    )
    assert verdict.trusted, verdict.reason


def test_dkim_pass_aligned() -> None:
    assert judge("mx.example.org; dkim=pass header.d=example.org") == (
        True,
        True,
        "dkim=pass header.d=example.org by mx.example.org",
    )


def test_dkim_pass_from_gmail_style_header_i() -> None:
    _, verified, reason = judge("mx.example.org; dkim=pass header.i=@example.org header.s=s1 header.b=abc")
    assert verified, reason


def test_authentication_results_from_an_untrusted_server() -> None:
    assert judge("mx.evil.example; dkim=pass header.d=example.org; dmarc=pass header.from=example.org") == (
        True,
        False,
        "no trusted Authentication-Results",
    )


def test_authentication_results_without_authserv_id_are_never_trusted() -> None:
    policy = TrustPolicy(staff=POLICY.staff, trusted_authserv_ids=frozenset({""}))
    _, verified, _ = judge("dkim=pass header.d=example.org;dmarc=pass header.from=example.org", policy=policy)
    assert not verified


def test_dkim_pass_for_another_domain() -> None:
    staff, verified, reason = judge("mx.example.org; dkim=pass header.d=evil.example")
    assert (staff, verified) == (True, False)
    assert reason == "no aligned pass by mx.example.org: dkim=pass header.d=evil.example"


def test_dkim_pass_for_a_lookalike_domain() -> None:
    _, verified, _ = judge("mx.example.org; dkim=pass header.d=badexample.org")
    assert not verified
    _, verified, _ = judge("mx.example.org; dkim=pass header.d=org")
    assert not verified


def test_dkim_pass_for_a_parent_domain() -> None:
    policy = TrustPolicy(staff=frozenset({"carol@it.example.org"}), trusted_authserv_ids=POLICY.trusted_authserv_ids)
    msg = message(
        from_=Address("carol@it.example.org"),
        headers={"Authentication-Results": ["mx.example.org; dkim=pass header.d=example.org"]},
    )
    assert verify_sender(msg, policy).verified


def test_dkim_pass_for_a_subdomain_does_not_cover_the_parent() -> None:
    _, verified, _ = judge("mx.example.org; dkim=pass header.d=mail.example.org")
    assert not verified


def test_dkim_fail() -> None:
    _, verified, reason = judge("mx.example.org; dkim=fail header.d=example.org")
    assert not verified
    assert "dkim=fail" in reason


def test_one_aligned_signature_among_several_is_enough() -> None:
    _, verified, _ = judge("mx.example.org; dkim=pass header.d=mailer.example; dkim=pass header.d=example.org")
    assert verified


def test_dmarc_pass() -> None:
    assert judge("mx.example.org; dmarc=pass (p=reject) header.from=example.org")[1:] == (
        True,
        "dmarc=pass header.from=example.org by mx.example.org",
    )


def test_dmarc_pass_for_another_from_domain() -> None:
    _, verified, _ = judge("mx.example.org; dmarc=pass header.from=evil.example")
    assert not verified
    _, verified, _ = judge("mx.example.org; dmarc=pass")
    assert not verified


def test_spf_only_when_allowed() -> None:
    header = "mx.example.org; spf=pass smtp.mailfrom=bob@example.org"
    _, verified, reason = judge(header)
    assert not verified
    assert "spf not allowed" in reason
    allowing = TrustPolicy(staff=POLICY.staff, trusted_authserv_ids=POLICY.trusted_authserv_ids, allow_spf=True)
    assert judge(header, policy=allowing) == (True, True, "spf=pass smtp.mailfrom=example.org by mx.example.org")


def test_spf_must_align_with_from() -> None:
    allowing = TrustPolicy(staff=POLICY.staff, trusted_authserv_ids=POLICY.trusted_authserv_ids, allow_spf=True)
    _, verified, _ = judge("mx.example.org; spf=pass smtp.mailfrom=bounces@mailer.example", policy=allowing)
    assert not verified
    _, verified, _ = judge("mx.example.org; spf=softfail smtp.mailfrom=bob@example.org", policy=allowing)
    assert not verified


def test_forged_header_below_ours_is_ignored() -> None:
    # Our server found no signature; the sender added a "pass" naming our server further down.
    ours = "mx.example.org; dkim=none; spf=fail smtp.mailfrom=evil.example"
    theirs = "mx.example.org; dkim=pass header.d=example.org"
    assert not judge(ours, theirs)[1]
    # A header by another server between ours and the forgery ends our run.
    assert not judge("mx.example.org; spf=fail", "mx.evil.example; none", theirs)[1]


def test_another_servers_header_above_ours_ends_the_search() -> None:
    # Our receiving server's verdict is the topmost one; a trusted id below another server's header was
    # written before our server saw the mail (a server that adds its own must be in authserv_ids).
    assert not judge("spamfilter.local; x-spam=clean", "mx.example.org; dkim=pass header.d=example.org")[1]


def layout(*fields: str) -> bool:
    """Whether a staff mail with these header fields, topmost first, is verified."""
    raw = ("\r\n".join([*fields, "From: Bob Staff <bob@example.org>", "Subject: x"]) + "\r\n\r\nbody\r\n").encode()
    msg = parse_message(raw)
    return verify_sender(msg, POLICY).verified


OUR_HOP = "Received: from mail.example.net (mail.example.net [192.0.2.7]) by mx.example.org with ESMTPS id 4F1"
THEIR_HOP = "Received: from laptop (unknown [198.51.100.2]) by mail.example.net with ESMTPSA id 77A"
DELIVERY = "Received: from mx.example.org by imap.example.org with LMTP id abc"
FORGED = "Authentication-Results: mx.example.org; dkim=pass header.d=example.org; dmarc=pass header.from=example.org"


def test_genuine_verdict_under_the_delivery_agents_headers_is_trusted() -> None:
    ours = "Authentication-Results: mx.example.org; dkim=pass header.d=example.org"
    assert layout("Return-Path: <bob@example.org>", "Delivered-To: help@example.org", DELIVERY, ours, OUR_HOP)


def test_forged_verdict_below_another_servers_received_header_is_ignored() -> None:
    # Our server wrote no verdict; the sender put one naming our server below the hops.
    assert not layout(DELIVERY, OUR_HOP, THEIR_HOP, FORGED)
    assert not layout(DELIVERY, OUR_HOP, FORGED, THEIR_HOP)


def test_forged_verdict_below_another_servers_authentication_results_is_ignored() -> None:
    other = "Authentication-Results: mail.example.net; dkim=pass header.d=example.org"
    assert not layout(DELIVERY, other, FORGED, OUR_HOP)


def test_no_fall_back_to_an_older_verdict_when_ours_has_no_dkim_result() -> None:
    ours = "Authentication-Results: mx.example.org; spf=fail smtp.mailfrom=evil.example"
    assert not layout(DELIVERY, ours, OUR_HOP, FORGED, THEIR_HOP)
    assert not layout(ours, OUR_HOP, THEIR_HOP, FORGED)


def test_several_headers_of_ours_each_answer_for_their_method() -> None:
    # OpenDKIM and OpenDMARC each add a header of their own.
    assert judge(
        "mx.example.org; dmarc=pass header.from=example.org", "mx.example.org; dkim=fail header.d=example.org"
    )[1]


def test_trust_from_header_for_closed_networks() -> None:
    closed = TrustPolicy(staff=POLICY.staff, trusted_authserv_ids=frozenset(), trust_from_header=True)
    assert judge(policy=closed) == (True, True, "From header trusted (trust_from_header)")
    assert not verify_sender(message(), closed).trusted


def test_reply_token_verifies_a_staff_from() -> None:
    assert judge(token_case=42) == (True, True, "signed reply token for case 42")
    assert not verify_sender(message(), POLICY, token_case=42).trusted


def test_token_round_trip() -> None:
    token = sign_token(42, KEY)
    assert token.startswith("c42-")
    assert len(token) == len("c42-") + 16
    assert verify_token(token, KEY) == 42
    assert verify_token(token.upper(), KEY) == 42


@given(st.integers(min_value=0, max_value=10**12 - 1), st.binary(min_size=1, max_size=64))
def test_any_token_round_trips(case_id: int, key: bytes) -> None:
    assert verify_token(sign_token(case_id, key), key) == case_id


def test_tampered_token() -> None:
    token = sign_token(42, KEY)
    case_part, _, signature = token.partition("-")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert verify_token(f"{case_part}-{flipped}", KEY) is None
    assert verify_token(token.replace("c42-", "c43-"), KEY) is None
    assert verify_token(token.replace("c42-", "c042-"), KEY) is None
    assert verify_token(token[:-1], KEY) is None
    assert verify_token(token + "0", KEY) is None
    assert verify_token("", KEY) is None
    assert verify_token("c42-", KEY) is None


def test_token_for_another_key() -> None:
    assert verify_token(sign_token(42, b"other key"), KEY) is None
    assert verify_token(sign_token(42, KEY), b"") is None


def test_signing_refuses_an_empty_key_or_negative_case() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign_token(42, b"")
    with pytest.raises(ValueError, match="negative"):
        sign_token(-1, KEY)


# Every notification carries a token in its Reply-To, so tokens wait in staff mailboxes for months. A change
# to the signing scheme, or to how the key file is read, would make each of them fail: these literals must not
# change (a new scheme has to keep verifying the old tokens).
PINNED_KEY = "pinned-token-key-0123456789abcdef"


def test_a_token_signed_today_still_verifies(tmp_path: Path) -> None:
    key_file = tmp_path / "token-key"
    key_file.write_text(PINNED_KEY + "\n")
    key = TrustConfig(token_key_file=str(key_file)).key()
    assert sign_token(42, key) == "c42-e306cb1da8a45467"
    assert reply_address("help@example.org", 1234, key) == "help+c1234-ac09999f628beca9@example.org"
    assert verify_token("c42-e306cb1da8a45467", key) == 42
    assert verify_token("C1234-AC09999F628BECA9", key) == 1234


def test_reply_address() -> None:
    address = reply_address("help@example.org", 42, KEY)
    assert address == f"help+{sign_token(42, KEY)}@example.org"
    with pytest.raises(ValueError, match="not a mail address"):
        reply_address("help", 42, KEY)


def test_token_from_to_with_plus_addressing_and_upper_case() -> None:
    address = reply_address("help@example.org", 42, KEY).upper()
    msg = message(to=(Address(address),))
    assert token_from_recipients(msg, ["Help@Example.org"], KEY) == 42


@pytest.mark.parametrize("header", ["Delivered-To", "X-Original-To"])
def test_token_from_delivery_headers(header: str) -> None:
    msg = message(
        to=(Address("help@example.org"),), headers={header: [f"<{reply_address('help@example.org', 7, KEY)}>"]}
    )
    assert token_from_recipients(msg, ["help@example.org"], KEY) == 7


def test_token_from_cc_of_a_second_help_address() -> None:
    msg = message(to=(Address("someone@example.net"),), cc=(Address(reply_address("it@example.org", 9, KEY)),))
    assert token_from_recipients(msg, ["help@example.org", "it@example.org"], KEY) == 9


def test_token_for_a_help_address_that_already_has_a_tag() -> None:
    msg = message(to=(Address(reply_address("help+it@example.org", 5, KEY)),))
    assert token_from_recipients(msg, ["help+it@example.org"], KEY) == 5


def test_no_token_from_strangers_or_bad_signatures() -> None:
    token = sign_token(42, KEY)
    for to in (
        f"help+{token}@evil.example",  # another domain
        f"helpdesk+{token}@example.org",  # another local part
        f"help+{token[:-1]}x@example.org",  # bad signature
        "help@example.org",
    ):
        assert token_from_recipients(message(to=(Address(to),)), ["help@example.org"], KEY) is None, to
    forged = message(to=(Address(reply_address("help@example.org", 42, b"attacker key")),))
    assert token_from_recipients(forged, ["help@example.org"], KEY) is None


@pytest.mark.parametrize(
    ("domain", "from_domain", "expected"),
    [
        ("example.org", "example.org", True),
        ("Example.org.", "example.ORG", True),
        ("example.org", "it.example.org", True),
        ("it.example.org", "example.org", False),
        ("example.org", "badexample.org", False),
        ("org", "example.org", False),
        ("", "example.org", False),
        ("example.org", "", False),
    ],
)
def test_alignment(domain: str, from_domain: str, expected: bool) -> None:
    assert aligned(domain, from_domain) is expected


def test_token_signatures_are_masked_in_text_and_log_events() -> None:
    address = reply_address("help@example.org", 42, b"k" * 32)
    signature = address.partition("@")[0].rpartition("-")[2]
    text = f"On Mon, Help Desk <{address}> wrote:"
    assert redact_tokens(text) == "On Mon, Help Desk <help+c42-[redacted]@example.org> wrote:"
    assert redact_tokens("a+c1-notatoken@example.org and c42-0123456789abcdef") == (
        "a+c1-notatoken@example.org and c42-0123456789abcdef"
    ), "only a signature in an address is touched"
    event = redact_secrets(None, "info", {"event": "x", "to": address, "token_key": "k", "n": 1})
    assert signature not in str(event) and event["token_key"] == "[redacted]" and event["n"] == 1
