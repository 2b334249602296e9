from collections.abc import Sequence

import pytest

from mailsvc.model import Address, Case
from mailsvc.thread import compile_tag, find_case, reference_chain, render_tag, route_queue
from tests.unit.factories import case, message


class Lookup:
    """An in-memory stand-in for the store's read-only view."""

    def __init__(self, cases: Sequence[Case], ids: dict[str, int]) -> None:
        self.cases = {c.id: c for c in cases}
        self.ids = ids
        self.asked: list[list[str]] = []

    def case_by_id(self, case_id: int) -> Case | None:
        return self.cases.get(case_id)

    def case_by_message_ids(self, message_ids: Sequence[str]) -> Case | None:
        self.asked.append(list(message_ids))
        for mid in message_ids:
            if mid in self.ids:
                return self.cases[self.ids[mid]]
        return None


TAGS = {"help": compile_tag("[Help #{id}]")}


@pytest.mark.parametrize(
    "subject",
    [
        "Re: printer [Help #42]",
        "AW: RE: printer [help #42]",
        "[Help # 42] printer",
        "Fwd: [Help  #42 ] printer",
    ],
)
def test_subject_tag_finds_case(subject: str) -> None:
    match = find_case(message(subject=subject), Lookup([case()], {}), TAGS)
    assert match.case is not None and match.case.id == 42
    assert match.method == "tag"


def test_tag_of_unknown_case_is_ignored() -> None:
    match = find_case(message(subject="Re: [Help #999] printer"), Lookup([case()], {}), TAGS)
    assert match.case is None and match.method == "new"


def test_tag_of_another_queue_does_not_count() -> None:
    tags = {"billing": compile_tag("[Billing #{id}]"), "help": compile_tag("[Help #{id}]")}
    match = find_case(message(subject="Re: [Billing #42]"), Lookup([case(queue="help")], {}), tags)
    assert match.case is None


def test_references_thread_without_tag() -> None:
    lookup = Lookup([case()], {"<ack-42@example.org>": 42})
    msg = message(subject="Re: printer", in_reply_to=("<ack-42@example.org>",), references=("<m1@example.net>",))
    match = find_case(msg, lookup, TAGS)
    assert match.case is not None and match.case.id == 42 and match.method == "references"


def test_reference_chain_puts_parent_first_and_dedupes() -> None:
    msg = message(in_reply_to=("<c>",), references=("<a>", "<b>", "<c>"))
    assert reference_chain(msg) == ["<c>", "<b>", "<a>"]


def test_new_message_without_tag_or_references() -> None:
    match = find_case(message(), Lookup([case()], {"<other>": 42}), TAGS)
    assert match.case is None and match.method == "new"


def test_render_tag() -> None:
    assert render_tag("[Help #{id}]", 7) == "[Help #7]"
    assert compile_tag("[Help #{id}]").search(render_tag("[Help #{id}]", 7))


@pytest.mark.parametrize(
    ("to", "headers", "expected"),
    [
        ("billing@example.org", {}, "billing"),
        ("Help@Example.org", {}, "help"),
        ("help+c42-abc@example.org", {}, "help"),
        ("someone@else.example", {"Delivered-To": ["billing@example.org"]}, "billing"),
        ("someone@else.example", {}, None),
    ],
)
def test_route_queue(to: str, headers: dict[str, list[str]], expected: str | None) -> None:
    msg = message(to=(Address(to),), headers=headers)
    assert route_queue(msg, {"help": "help@example.org", "billing": "billing@example.org"}) == expected
