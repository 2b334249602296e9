"""Authentication-Results parsing: samples written in the style of real receivers, edge cases, and fuzzing."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsvc.authres import AuthResult, AuthResults, parse_authentication_results

GMAIL = (
    "mx.google.com;\r\n"
    "       dkim=pass header.i=@example.org header.s=20230601 header.b=Qx7+aB/c;\r\n"
    "       arc=pass (i=1 spf=pass spfdomain=example.org dkim=pass dkdomain=example.org\r\n"
    "       dmarc=pass fromdomain=example.org);\r\n"
    "       spf=pass (google.com: domain of alice@example.org designates 209.85.220.41 as permitted sender)"
    " smtp.mailfrom=alice@example.org;\r\n"
    "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.org"
)

# Microsoft 365 writes one header with no authserv-id at all.
MICROSOFT_365 = (
    "spf=pass (sender IP is 40.107.22.41) smtp.mailfrom=contoso.com; dkim=pass (signature was verified)"
    " header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;compauth=pass reason=100"
)

FASTMAIL = (
    "mx3.messagingengine.com;\n"
    "    dkim=pass (2048-bit rsa key sha256) header.d=example.org header.i=@example.org header.b=Zm9v\n"
    "      header.a=rsa-sha256 header.s=fm2 x-bits=2048;\n"
    "    dmarc=pass policy.published-domain-policy=none policy.applied-disposition=none\n"
    "      policy.evaluated-disposition=none (p=none,d=none,d.eval=none) policy.policy-from=p\n"
    "      header.from=example.org;\n"
    "    iprev=pass smtp.remote-ip=192.0.2.25 (mail.example.org);\n"
    "    spf=pass smtp.mailfrom=bob@example.org smtp.helo=mail.example.org;\n"
    "    x-aligned-from=pass (Address match);\n"
    "    x-me-sender=none;\n"
    "    x-tls=pass smtp.version=TLSv1.3 smtp.cipher=TLS_AES_256_GCM_SHA384 smtp.bits=256/256;\n"
    "    x-vs=clean score=-100 state=0"
)

OPENDKIM = (
    "mail.example.net;\n\tdkim=pass (2048-bit key; unprotected) header.d=example.org header.i=@example.org"
    " header.a=rsa-sha256 header.s=mail header.b=AbCdEf12"
)
OPENDMARC = "mail.example.net; dmarc=fail (p=reject dis=none) header.from=example.org"
POLICYD_SPF = (
    "mail.example.net; spf=pass (sender SPF authorized) smtp.mailfrom=example.org"
    " (client-ip=192.0.2.25; helo=mail.example.org; envelope-from=bob@example.org)"
)


def methods(parsed: AuthResults | None) -> list[tuple[str, str]]:
    assert parsed is not None
    return [(r.method, r.result) for r in parsed.results]


def test_gmail() -> None:
    parsed = parse_authentication_results(GMAIL)
    assert parsed is not None
    assert parsed.authserv_id == "mx.google.com"
    assert methods(parsed) == [("dkim", "pass"), ("arc", "pass"), ("spf", "pass"), ("dmarc", "pass")]
    dkim = parsed.results_for("dkim")[0]
    assert dkim.properties["header.i"] == "@example.org"
    assert dkim.properties["header.b"] == "Qx7+aB/c"
    assert parsed.results_for("spf")[0].properties == {"smtp.mailfrom": "alice@example.org"}
    assert parsed.results_for("dmarc")[0].properties["header.from"] == "example.org"


def test_microsoft_365_without_authserv_id() -> None:
    parsed = parse_authentication_results(MICROSOFT_365)
    assert parsed is not None
    assert parsed.authserv_id == ""
    assert methods(parsed) == [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("compauth", "pass")]
    assert parsed.results_for("dmarc")[0].properties == {"action": "none", "header.from": "contoso.com"}
    assert parsed.results_for("compauth")[0].reason == "100"


def test_microsoft_365_with_authserv_id() -> None:
    value = "dkim=none (message not signed) header.d=none;dmarc=none action=none header.from=contoso.com;"
    parsed = parse_authentication_results(f"mx.example.org; {value}")
    assert parsed is not None
    assert parsed.authserv_id == "mx.example.org"
    assert methods(parsed) == [("dkim", "none"), ("dmarc", "none")]


def test_fastmail() -> None:
    parsed = parse_authentication_results(FASTMAIL)
    assert parsed is not None
    assert parsed.authserv_id == "mx3.messagingengine.com"
    assert [r.method for r in parsed.results] == [
        "dkim",
        "dmarc",
        "iprev",
        "spf",
        "x-aligned-from",
        "x-me-sender",
        "x-tls",
        "x-vs",
    ]
    assert parsed.results_for("dkim")[0].properties["header.s"] == "fm2"
    assert parsed.results_for("dmarc")[0].properties["header.from"] == "example.org"
    assert parsed.results_for("x-vs")[0].result == "clean"


@pytest.mark.parametrize(
    ("value", "method", "result", "prop", "expected"),
    [
        (OPENDKIM, "dkim", "pass", "header.d", "example.org"),
        (OPENDMARC, "dmarc", "fail", "header.from", "example.org"),
        (POLICYD_SPF, "spf", "pass", "smtp.mailfrom", "example.org"),
    ],
)
def test_postfix_milters(value: str, method: str, result: str, prop: str, expected: str) -> None:
    parsed = parse_authentication_results(value)
    assert parsed is not None
    assert parsed.authserv_id == "mail.example.net"
    assert len(parsed.results) == 1
    assert parsed.results[0].method == method
    assert parsed.results[0].result == result
    assert parsed.results[0].properties[prop] == expected


def test_none_and_version() -> None:
    assert parse_authentication_results("example.org 1; none") == AuthResults("example.org", ())
    assert parse_authentication_results("example.org; none") == AuthResults("example.org", ())
    parsed = parse_authentication_results("example.org 1; dkim=pass header.d=example.org")
    assert methods(parsed) == [("dkim", "pass")]


def test_comments_quotes_and_case() -> None:
    value = (
        'MX.Example.ORG (our (nested; "server")) ; DKIM/1 = Pass (ok; really) header.D = "Example.org"'
        ' reason="signature \\"good\\""; spf=pass smtp.mailfrom="john smith"@example.org'
    )
    parsed = parse_authentication_results(value)
    assert parsed is not None
    assert parsed.authserv_id == "MX.Example.ORG"
    dkim, spf = parsed.results
    assert (dkim.method, dkim.result) == ("dkim", "pass")
    assert dkim.properties == {"header.d": "Example.org"}
    assert dkim.reason == 'signature "good"'
    assert spf.properties["smtp.mailfrom"] == "john smith@example.org"


def test_folding_whitespace_is_ignored() -> None:
    folded = parse_authentication_results("mx.example.org;\r\n\tdkim=pass\r\n header.d=example.org;\r\n spf=none")
    plain = parse_authentication_results("mx.example.org; dkim=pass header.d=example.org; spf=none")
    assert folded == plain
    assert methods(folded) == [("dkim", "pass"), ("spf", "none")]


def test_first_value_of_a_repeated_property_wins() -> None:
    parsed = parse_authentication_results("mx; dkim=pass header.d=example.org header.d=evil.example")
    assert parsed is not None
    assert parsed.results[0].properties["header.d"] == "example.org"


def test_malformed_resinfo_is_dropped_but_the_rest_kept() -> None:
    parsed = parse_authentication_results("mx; dkim=pass header.d=example.org junk; spf=pass smtp.mailfrom=a.example")
    assert methods(parsed) == [("spf", "pass")]


def test_properties_are_read_only() -> None:
    source = {"header.d": "example.org"}
    result = AuthResult("dkim", "pass", source)
    source["header.d"] = "evil.example"
    assert result.properties["header.d"] == "example.org"
    with pytest.raises(TypeError):
        result.properties["header.d"] = "evil.example"  # type: ignore[index]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        ";",
        "hello",
        "hello world",
        "foo; bar",
        "mx; dkim=pass (unclosed comment",
        'mx; dkim=pass header.d="unclosed',
        "mx; dkim=pass) header.d=example.org",
        "=pass",
        "mx; =pass",
        "mx; dkim==pass",
        "mx; dkim=pass header.d",
    ],
)
def test_garbage_is_none(value: str) -> None:
    assert parse_authentication_results(value) is None


@given(st.text())
def test_never_raises_on_text(value: str) -> None:
    parsed = parse_authentication_results(value)
    assert parsed is None or isinstance(parsed, AuthResults)


_atoms = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
_values = st.from_regex(r"[A-Za-z0-9@._+/-]{1,12}", fullmatch=True)


@given(st.text(alphabet='abc;=()"\\ \t\r\n.@-', max_size=60))
def test_never_raises_on_syntax_soup(value: str) -> None:
    parsed = parse_authentication_results(value)
    assert parsed is None or isinstance(parsed, AuthResults)


@given(
    st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
    st.lists(
        st.tuples(_atoms, _atoms, st.dictionaries(st.tuples(_atoms, _atoms).map(".".join), _values, max_size=3)),
        min_size=1,
        max_size=4,
    ),
)
def test_written_results_read_back(authserv_id: str, infos: list[tuple[str, str, dict[str, str]]]) -> None:
    written = ";\r\n ".join(
        [authserv_id] + [f"{m}={r} (comment; here) " + " ".join(f"{k}={v}" for k, v in p.items()) for m, r, p in infos]
    )
    parsed = parse_authentication_results(written)
    expected = tuple(AuthResult(m, r, p) for m, r, p in infos)
    assert parsed == AuthResults(authserv_id, expected)
