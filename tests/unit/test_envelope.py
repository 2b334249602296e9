"""The SMTP envelope of internationalised addresses (RFC 6531), with and without SMTPUTF8."""

import pytest

from mailsvc.envelope import CannotExpress, Envelope, envelope

ASCII_MAIL = b"From: help@example.org\r\nTo: a@b\r\n\r\nbody \xc3\xa4\r\n"
UTF8_HEADERS = "From: help@example.org\r\nIn-Reply-To: <jörg-1@exämple.net>\r\n\r\nbody\r\n".encode()


def test_plain_mail_needs_no_option() -> None:
    assert envelope("help@example.org", ("a@example.net",), ASCII_MAIL, smtputf8=True) == Envelope(
        "help@example.org", ("a@example.net",)
    )


@pytest.mark.parametrize(
    ("rcpt", "raw"),
    [("jörg@exämple.net", ASCII_MAIL), ("info@bücher.example", ASCII_MAIL), ("a@example.net", UTF8_HEADERS)],
)
def test_smtputf8_is_asked_for_whenever_an_address_or_a_header_is_utf8(rcpt: str, raw: bytes) -> None:
    env = envelope("help@example.org", (rcpt,), raw, smtputf8=True)
    assert env.rcpt_to == (rcpt,) and env.mail_options == ("SMTPUTF8",)


def test_without_smtputf8_a_domain_goes_as_idna() -> None:
    env = envelope("help@example.org", ("info@bücher.example", "x@straße.de"), ASCII_MAIL, smtputf8=False)
    assert env == Envelope("help@example.org", ("info@xn--bcher-kva.example", "x@xn--strae-oqa.de"))


def test_without_smtputf8_a_utf8_local_part_cannot_be_expressed() -> None:
    with pytest.raises(CannotExpress, match=r"^jörg@exämple\.net: a non-ASCII local part needs SMTPUTF8"):
        envelope("help@example.org", ("a@example.net", "jörg@exämple.net"), ASCII_MAIL, smtputf8=False)


def test_without_smtputf8_a_domain_without_idna_form_cannot_be_expressed() -> None:
    with pytest.raises(CannotExpress, match="has no IDNA form"):
        envelope("help@example.org", ("a@bad\u2028domain.example",), ASCII_MAIL, smtputf8=False)


def test_utf8_message_ids_alone_do_not_stop_a_mail_without_smtputf8() -> None:
    env = envelope("help@example.org", ("a@example.net",), UTF8_HEADERS, smtputf8=False)
    assert env == Envelope("help@example.org", ("a@example.net",))
