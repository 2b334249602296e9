# Quote headers in a dozen scripts are the point here, look-alike letters included.
# ruff: noqa: RUF001


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsvc.strip import (
    _SCAN,
    MARKER,
    _head,
    attribution_header,
    dash_signoff,
    glued_attribution,
    mobile_signature,
    original_message,
    outlook_block,
    signature_delimiter,
    strip_reply,
)

NEW = "Fixed: the tray was misaligned.\n\nJane"
QUOTED_NOTE = f"> {MARKER}\n>\n> Case #1234: printer jammed\n> Hello, the printer is jammed.\n"


def heads(text: str) -> list[str]:
    """What detectors see: lines stripped (and cut to 300 characters)."""
    return [line[:300].strip() for line in text.split("\n")]


# --- detectors, one language or client per case -------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "On Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:",
        "On 23/11/2026 10:00, Help Desk wrote:",
        "On Wed, 14 Nov 2018 08:14:43 -0200 John Doe <john@doe.com> wrote",
        "Am 25.06.2015 um 10:55 schrieb Test user:",
        "Test user <test@example.com> schrieb:",
        "Le 19 mars 2014 10:37, Cédric Lombardot <cedric.lombardot@gmail.com> a écrit :",
        "El 19/03/2014 11:34, Juan Pérez <juan.perez@mailcatch.com> escribió:",
        "Il giorno lun 23 nov 2026 alle ore 10:00 Help Desk <help@example.org> ha scritto:",
        "Op 13-02-2014 3:18 schreef Julius Caesar <pantheon@rome.com>:",
        "W dniu 2015-01-07 14:23, pbrzoski91@gmail.com pisze:",
        "W dniu 7 stycznia 2015 15:24 użytkownik Paweł Brzoski <pbrzoski91@gmail.com> napisał:",
        "Em 10 de julho de 2017 às 16:32, John Doe <john@example.com> escreveu:",
        "29 декабря 2017 г. в 19:09, Иван <ivan@example.ru> пишет:",
        "пн, 23 нояб. 2026 г. в 10:00, Help Desk <help@example.org>:",
        "2016/11/08 14:26、Test user <test@example.com> のメッセージ:",
        "2016/11/08 14:26 Test user <test@example.com> 書きました:",
        "在 2016年11月8日，下午2:23，Test user <test@example.com> 写道：",
        "Den 08/06/2015 kl. 21.21 skrev Test user <test@example.com>:",
        "tir. 18. apr. 2017 kl. 13:09 skrev Test user <test@example.com>:",
        "pe 20. lokakuuta 2017 klo 17.50 John Coe <john@example.com> kirjoitti:",
        "2014-03-20 8:48 GMT+01:00 Rémi Dolan <do_not_reply@dolan.com>:",
        "2011/4/7 Nathan Brown <support@example.com>",
        "---- On Wed, 24 Feb 2021 14:02:50 +0530 john@gmail.com wrote ----",
        '26.06.2014, 14:41, "Alexander L" <abc@example.com>:',
    ],
)
def test_attribution_header_in_many_languages(header: str) -> None:
    assert attribution_header([header], 0) == 1


@pytest.mark.parametrize(
    ("wrapped", "span"),
    [
        ("On Mon, 23 Nov 2026 at 10:00, Help Desk <\nhelp@example.org> wrote:", 2),
        ("Erlend Sogge Heggen <meta@discoursemail.com> schrieb am Di., 16. Aug. 2016\num 12:52 Uhr:", 2),
        ("On Nov 30, 2011, at 12:47 PM, Somebody <\n416ffd3258d4@somebody.domain.com>\nwrote:", 3),
        ("On Tue, Apr 11, 2017 at 10:07 PM John Smith\n\n<\nmailto:John Smith <johnsmith@gmail.com>\n> wrote:", 5),
    ],
)
def test_attribution_header_wrapped(wrapped: str, span: int) -> None:
    assert attribution_header(heads(wrapped), 0) == span


@pytest.mark.parametrize(
    "prose",
    [
        "Something wrote:",
        "He wrote: the tray is fine, and then left.",
        "On the surface, this looks like a quote header but it's not.",
        "On average, this parser works well.",
        'It\'s interesting how they handled URLs with patterns like "wrote:" in them.',
        "Check https://example.com/blog/on-date-someone-wrote-about-parsing",
        "2024-01-15 14:30:25",
        "Jan 15, 2024 at 14:30",
    ],
)
def test_attribution_header_ignores_prose(prose: str) -> None:
    assert attribution_header([prose, "> quoted"], 0) == 0


def test_a_sentence_ending_above_a_header_is_not_part_of_it() -> None:
    lines = heads("I have 2 remarks.\nOn Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:")
    assert attribution_header(lines, 0) == 0
    assert attribution_header(lines, 1) == 1


def test_glued_attribution_keeps_the_reply_in_front() -> None:
    assert glued_attribution("reply On Wed, Apr 4, 2012 at 3:59 PM, bob@example.com wrote:") == "reply"
    assert glued_attribution("reply--- On Wed, Apr 4, 2012 at 3:59 PM, me@domain.com wrote:") == "reply"
    assert glued_attribution("I will see you On Monday as planned.") is None


@pytest.mark.parametrize(
    "block",
    [
        "From: Help Desk <help@example.org>\nSent: Monday, November 23, 2026 10:00 AM\nTo: Jane\nSubject: Case",
        "Von: Help Desk <help@example.org>\nGesendet: Montag, 23. November 2026 10:00\nAn: Jane\nBetreff: Case",
        "De : Help Desk <help@example.org>\nEnvoyé : lundi 23 novembre 2026 10:00\nÀ : Jane\nObjet : Case",
        "Van: Help Desk <help@example.org>\nVerzonden: maandag 23 november 2026\nAan: Jane\nOnderwerp: Case",
        "De: Help Desk <help@example.org>\nEnviado: lunes, 23 de noviembre de 2026\nPara: Jane\nAsunto: Case",
        "Da: Help Desk <help@example.org>\nInviato: lunedì 23 novembre 2026\nA: Jane\nOggetto: Case",
        "Od: Help Desk <help@example.org>\nWysłane: poniedziałek\nDo: Jane\nTemat: Case",
        "От: Help Desk <help@example.org>\nОтправлено: 23 ноября 2026 г.\nКому: Jane\nТема: Case",
        "Fra: Help Desk <help@example.org>\nSendt: 23. november 2026\nTil: Jane\nEmne: Case",
        "Från: Help Desk <help@example.org>\nSkickat: den 23 november 2026\nTill: Jane\nÄmne: Case",
        "*From:* bob@example.com\n*Sent:* Wednesday, June 27, 2012 3:05 PM\n*To:* travis@example.com",
        "Date: Wed, 16 May 2012 00:15:02 -0600\nTo: klizhentas@example.com",
    ],
)
def test_outlook_block_in_many_languages(block: str) -> None:
    assert outlook_block(heads(block), 0) == len(block.split("\n"))


def test_outlook_block_takes_a_wrapped_subject_when_the_paragraph_closes() -> None:
    lines = heads("From: a@example.org\nSent: today\nSubject: a subject so long\nthat it wraps\n\nBody")
    assert outlook_block(lines, 0) == 4


@pytest.mark.parametrize(
    "prose",
    ["Date: Wednesday 3, October 2011\nTime: 7 : 00am\nAddress: 130 Fox St", "To: all staff, please read this."],
)
def test_one_field_is_prose(prose: str) -> None:
    assert outlook_block(heads(prose), 0) == 0


def test_a_lone_from_line_with_an_address_is_a_header() -> None:
    assert outlook_block(heads("From: foo@example.com <foo@example.com>\n\nMy email is"), 0) == 1


@pytest.mark.parametrize(
    "line",
    [
        "-----Original Message-----",
        "-----Ursprüngliche Nachricht-----",
        "-------- Message d'origine --------",
        "-------- Oprindelig besked --------",
        "---------- Forwarded message ---------",
        "Begin forwarded message:",
    ],
)
def test_original_message_separators(line: str) -> None:
    assert original_message([line], 0) == 1


def test_original_message_is_not_prose() -> None:
    assert original_message(["The original message was lost."], 0) == 0


@pytest.mark.parametrize(("line", "found"), [("--", True), ("__", True), ("-- signed, Jane", False), ("----", False)])
def test_signature_delimiter(line: str, found: bool) -> None:
    assert signature_delimiter([line], 0) is found


@pytest.mark.parametrize(
    "line",
    [
        "Sent from my iPhone",
        "Sent from my Verizon Wireless BlackBerry",
        "Sent from Mail for Windows 10",
        "Sent from Outlook Mobile<https://aka.ms/x>",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Gesendet von Outlook für Android<https://aka.ms/AAb9ysg>",
        "Enviado desde mi iPhone",
        "Inviato da iPhone",
        "Verzonden vanaf mijn iPhone",
    ],
)
def test_mobile_signature(line: str) -> None:
    assert mobile_signature([line], 0)


@pytest.mark.parametrize(
    "line",
    [
        "Sent from my desk, is much easier then my mobile phone.",
        "The notification was sent from my iPhone app to all users.",
        "Sent from my iPhone app to all users, and it works.",
    ],
)
def test_mobile_signature_ignores_prose(line: str) -> None:
    assert not mobile_signature([line], 0)


def test_dash_signoff_closes_the_text_only() -> None:
    assert dash_signoff(heads("Thanks.\n\n-Abhishek Kona\n\n"), 2)
    assert dash_signoff(heads("Thanks.\n\n-Abhishek Kona\n\n__\nriak-users mailing list"), 2)
    assert not dash_signoff(heads("Items:\n-apples\n-pears"), 2)
    assert not dash_signoff(heads("Thanks.\n\n-Abhishek Kona\nmore text"), 2)


# --- strip_reply: our marker ----------------------------------------------------


def test_marker_under_a_gmail_header() -> None:
    reply = f"{NEW}\n\nOn Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:\n\n{QUOTED_NOTE}"
    assert strip_reply(reply) == NEW


def test_marker_under_a_wrapped_header_with_crlf() -> None:
    reply = f"{NEW}\n\nOn Mon, 23 Nov 2026 at 10:00, Help Desk <\nhelp@example.org> wrote:\n\n{QUOTED_NOTE}"
    assert strip_reply(reply.replace("\n", "\r\n")) == NEW


def test_marker_under_an_outlook_block() -> None:
    reply = (
        f"{NEW}\n\n________________________________\nFrom: Help Desk <help@example.org>\n"
        f"Sent: Monday, November 23, 2026 10:00 AM\nTo: Jane\nSubject: [Case #1234] printer\n\n{MARKER}\nCase #1234"
    )
    assert strip_reply(reply) == NEW


def test_marker_under_a_header_in_an_unknown_language() -> None:
    reply = f"{NEW}\n\n23.11.2026 10:00 Help Desk <help@example.org> kirjutas:\n{QUOTED_NOTE}"
    assert strip_reply(reply) == NEW


def test_marker_found_when_the_client_respaced_it() -> None:
    reply = f"{NEW}\n\n> ##-  Please type your reply above   this line -##\n> Case #1234"
    assert strip_reply(reply) == NEW


def test_marker_and_nothing_new() -> None:
    assert strip_reply(f"On Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:\n{QUOTED_NOTE}") == ""


def test_marker_bottom_posted_reply_is_found_below() -> None:
    reply = f"On Mon, 23 Nov 2026 at 10:00, Help Desk <help@example.org> wrote:\n{QUOTED_NOTE}\n{NEW}"
    assert strip_reply(reply) == NEW


def test_marker_keeps_text_that_only_mentions_addresses() -> None:
    new = "Please write to facilities@example.org"
    assert strip_reply(f"{new}\n\n{QUOTED_NOTE}") == new


def test_custom_marker() -> None:
    assert strip_reply("Done.\n\n> -- reply above --\n> Case 7", marker="-- reply above --") == "Done."


# --- strip_reply: heuristics ----------------------------------------------------


def test_plain_text_is_returned_unchanged() -> None:
    assert strip_reply("Hello,\n\n  indented line\nend") == "Hello,\n\n  indented line\nend"


def test_wrote_in_the_middle_of_the_text_stays() -> None:
    text = "Thanks.\n\nSomething wrote:\nthe tray was fine.\n\nAnd Bob wrote: it works."
    assert strip_reply(text) == text


def test_lines_starting_with_on_stay() -> None:
    text = "On the other hand, we should be careful.\nOn average, it works well."
    assert strip_reply(text) == text


def test_cut_at_the_quote_header() -> None:
    text = f"{NEW}\n\nOn 04/19/2011 07:10 AM, Roman Tkachenko wrote:\n\n> Test\n> Roman"
    assert strip_reply(text) == NEW


def test_cut_at_an_outlook_block_with_its_separator() -> None:
    text = f"{NEW}\n\n________________________________\nVon: Bob <bob@example.com>\nGesendet: Montag\nAn: x\n\nOld"
    assert strip_reply(text) == NEW


def test_cut_at_original_message() -> None:
    assert strip_reply(f"{NEW}\n\n-----Original Message-----\n\nOld text") == NEW


def test_cut_at_a_forwarded_message_below_text() -> None:
    text = f"{NEW}\n\n---------- Forwarded message ---------\nFrom: John <john@example.com>\nDate: Mon\n\nOld"
    assert strip_reply(text) == NEW


def test_a_forward_alone_keeps_the_forwarded_text() -> None:
    text = "---------- Forwarded message ---------\nFrom: John <john@example.com>\nDate: Mon\n\nThe content."
    assert strip_reply(text) == "The content."


def test_quoted_tail_without_header_is_cut() -> None:
    assert strip_reply(f"{NEW}\n\n> old\n> text\n") == NEW


def test_quoted_tail_with_unknown_header_is_cut() -> None:
    assert strip_reply(f"{NEW}\n\n23.11.2026 10:00 Bob <bob@example.com> kirjutas:\n> old\n") == NEW


def test_interleaved_quotes_without_header_stay() -> None:
    text = "> Is it fixed?\n\nYes.\n\n> And the toner?\n\nReplaced."
    assert strip_reply(text) == text


def test_bottom_posting_keeps_the_text_below_the_quote() -> None:
    text = "On 04/19/2011 07:10 AM, Roman Tkachenko wrote:\n\n> Is it fixed?\n\nYes, since this morning."
    assert strip_reply(text) == "Yes, since this morning."


def test_quote_between_two_parts_of_the_reply_is_dropped() -> None:
    text = "Test reply\n\nOn 04/19/2011 07:10 AM, Roman Tkachenko wrote:\n\n>\n> Test\n\nRegards, Roman"
    assert strip_reply(text) == "Test reply\n\nRegards, Roman"


def test_quoted_lines_broken_by_the_client_stay_in_the_quote() -> None:
    text = f"{NEW}\n\nOn 04/19/2011 07:10 AM, Roman wrote:\n> a long quoted line that\nwrapped\n> goes on\n\n-- \nRoman"
    assert strip_reply(text) == NEW


# --- strip_reply: signatures ----------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nJane Staff\nIT Support",
        "--\nJane Staff",
        "Sent from my iPhone",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Get Outlook for iOS",
        "-Jane",
    ],
)
def test_signature_is_removed(signature: str) -> None:
    assert strip_reply(f"{NEW}\n\n{signature}\n") == NEW


def test_signature_kept_on_request() -> None:
    text = "Hello \n\n-- \nxxx\nSent with Sparrow (http://www.sparrowmailapp.com/?sig)"
    assert (
        strip_reply(text + "\n\nOn Mon, 1 Jan 2024 at 10:00, Bob <b@example.com> wrote:\n> hi", keep_signature=True)
        == text
    )


def test_signature_delimiter_in_the_middle_of_a_line_stays() -> None:
    text = "I use -- to mark asides -- like this.\n\nBye"
    assert strip_reply(text) == text


def test_signature_then_quote() -> None:
    text = f"{NEW}\n\nSent from my iPhone\n\nOn 23 Nov 2026, at 10:00, Bob <bob@example.com> wrote:\n\n> Hi"
    assert strip_reply(text) == NEW


# --- bounded time on pathological input ---------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Hi\n" + "> \n" * 50_000,
        "x" * 1_000_000,
        ">" * 1_000_000,
        "On " * 300_000 + "wrote:",
        "On Mon 12:00 a@b.c\n" * 50_000,
        ("x On " * 60 + "\n") * 10_000,
        "From: a@b.c\nTo: x\n" * 25_000,
        "-Abc\n\n" * 25_000,
        "x\n" * 50_000 + MARKER,
    ],
    ids=["quotes", "long-line", "long-quote", "long-header", "headers", "glued", "fields", "signoffs", "marker"],
)
def test_pathological_input_returns(text: str) -> None:
    """Their times are in bench/pathological.py; here, what bounds them: detectors see lines cut to _SCAN."""
    found = strip_reply(text)
    assert len(found) <= len(text)
    assert all(len(_head(line)) <= _SCAN for line in text.split("\n"))


# --- properties -----------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "On Mon, 23 Nov 2026 at 10:00, Bob <bob@example.com> wrote:",
        "wrote:",
        "> ",
        ">",
        "-- ",
        "--",
        "__",
        "From: a@b.c",
        "Sent: Monday",
        "-----Original Message-----",
        "Sent from my iPhone",
        "-Jane",
        MARKER,
        "\r\n",
        "\n",
        " ",
        "On ",
        "ᐧ",
        "\u200b",
    ]
)
MIXED = st.lists(st.one_of(FRAGMENTS, st.text(max_size=20)), max_size=40).map("".join)


@given(st.one_of(st.text(), MIXED), st.booleans())
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_never_raises_and_never_grows(text: str, keep_signature: bool) -> None:
    assert len(strip_reply(text, keep_signature=keep_signature)) <= len(text)


PLAIN_LINE = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ,!?", max_size=60)


@given(st.lists(PLAIN_LINE, max_size=20))
def test_text_without_markers_is_unchanged(lines: list[str]) -> None:
    text = "\n".join(lines)
    while lines and not lines[0].strip():
        lines = lines[1:]
    assert strip_reply(text) == "\n".join(lines).rstrip()
