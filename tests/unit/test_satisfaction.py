import pytest

from mailsvc.satisfaction import Rating, parse_rating

REPLY = "Re: [Help #7] Printer on floor 3 is jammed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", Rating(5, "5", "")),
        ("  3  \n", Rating(3, "3", "")),
        ("4/5", Rating(4, "4", "")),
        ("4 / 5", Rating(4, "4", "")),
        ("Good!", Rating(5, "Good", "")),
        ("GOOD", Rating(5, "GOOD", "")),
        ("bad", Rating(1, "bad", "")),
        ("1.", Rating(1, "1", "")),
        ("*2*", Rating(2, "2", "")),
    ],
)
def test_a_rating_alone_on_the_first_line_is_accepted(text: str, expected: Rating) -> None:
    assert parse_rating(REPLY, text) == expected


def test_lines_after_the_rating_are_the_remark() -> None:
    text = "bad\nThe printer still jams on page 2.\n\nAnd the toner is empty.\n"
    assert parse_rating(REPLY, text) == Rating(1, "bad", "The printer still jams on page 2.\n\nAnd the toner is empty.")


def test_a_prepared_subject_carries_the_rating() -> None:
    assert parse_rating("Rating: 3 [Help #7]", "") == Rating(3, "3", "")
    assert parse_rating("Re: rating=good [Help #7]", "") == Rating(5, "good", "")
    assert parse_rating("AW: Re: RATING: bad [Help #7]", "") == Rating(1, "bad", "")


def test_with_a_prepared_subject_the_whole_text_is_the_remark() -> None:
    assert parse_rating("Rating: 2 [Help #7]", "2 printers are still down.\n") == Rating(
        2, "2", "2 printers are still down."
    )


@pytest.mark.parametrize(
    "text",
    [
        "2 printers are down",
        "5.1 broke",
        "goodness",
        "Not good",
        "4/10",
        "6",
        "0",
        "",
        "   \n\n",
        "Thanks!\n5",
    ],
)
def test_anything_else_is_not_a_rating(text: str) -> None:
    assert parse_rating(REPLY, text) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Rating: 6 [Help #7]",
        "Ratings are 3 times worse",
        "Re: Operating 3 printers",
        # The case's own subject, carried by every reply: only the prepared subject counts.
        "Re: [Help #7] Fire rating 2 doors need inspection",
        "Re: Energy rating: 3 for the new fridge [Help #7]",
    ],
)
def test_a_subject_without_a_prepared_rating_is_not_one(subject: str) -> None:
    assert parse_rating(subject, "It is still broken.") is None
