"""Secrets never reach a log line or an error message, not even one character of them."""

from mailsvc.scrub import protect, scrub

PASSWORD = "pässw€rd-42"


def test_a_protected_secret_is_replaced_wherever_it_appears() -> None:
    protect(PASSWORD)
    assert scrub(f"LOGIN bob {PASSWORD} failed") == "LOGIN bob [redacted] failed"


def test_codec_errors_lose_the_character_and_its_position() -> None:
    try:
        PASSWORD.encode("ascii")
    except UnicodeEncodeError as exc:
        text = scrub(f"{type(exc).__name__}: {exc}")
    assert "\\xe4" not in text and "ä" not in text and "position" not in text
    assert text.startswith("UnicodeEncodeError: a character could not be encoded")
    try:
        "€uro".encode("latin-1")
    except UnicodeEncodeError as exc:
        assert "\\u20ac" not in scrub(str(exc))
