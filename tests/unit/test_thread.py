"""Threading precedence, run against the in-memory lookup and the real SQLite store alike."""

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from mailsvc.model import Address, Case, CaseStatus
from mailsvc.store import Store
from mailsvc.thread import CaseLookup, compile_tag, find_case, reference_chain, render_tag, route_queue, strip_tags
from tests.unit.factories import T0, case, message


class Lookup:
    """An in-memory stand-in for the store's read-only view."""

    def __init__(self, cases: Sequence[Case], ids: Mapping[str, int | Sequence[int]]) -> None:
        self.cases = {c.id: c for c in cases}
        self.ids = ids

    def case_by_id(self, case_id: int) -> Case | None:
        return self.cases.get(case_id)

    def cases_by_message_ids(self, message_ids: Sequence[str]) -> dict[str, Case]:
        found = {}
        for mid in message_ids:
            owners = self.ids.get(mid)
            if owners is None:
                continue
            # As the store does: of several cases, the most recently active.
            candidates = [self.cases[i] for i in ([owners] if isinstance(owners, int) else owners)]
            found[mid] = max(candidates, key=lambda c: (c.updated_at, c.id))
        return found


def sqlite_lookup(path: Path, cases: Sequence[Case], ids: Mapping[str, int | Sequence[int]]) -> Store:
    """The same cases and Message-IDs in a real store."""
    store = Store.open(path)
    for c in cases:
        store.db.execute(
            "INSERT INTO cases (id, queue, subject, requester, requester_name, status, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (c.id, c.queue, c.subject, c.requester.addr, c.requester.name, c.status.value,
             c.created_at.timestamp(), c.updated_at.timestamp()),
        )  # fmt: skip
    for mid, owners in ids.items():
        for case_id in [owners] if isinstance(owners, int) else owners:
            store.db.execute("INSERT INTO case_message_ids (message_id, case_id) VALUES (?, ?)", (mid, case_id))
    return store


MakeLookup = Callable[[Sequence[Case], Mapping[str, int | Sequence[int]]], CaseLookup]


@pytest.fixture(params=["fake", "sqlite"])
def make_lookup(request: pytest.FixtureRequest, tmp_path: Path) -> MakeLookup:
    if request.param == "fake":
        return Lookup
    return lambda cases, ids: sqlite_lookup(tmp_path / "thread.db", cases, ids)


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
def test_subject_tag_finds_case(subject: str, make_lookup: MakeLookup) -> None:
    match = find_case(message(subject=subject), make_lookup([case()], {}), TAGS)
    assert match.case is not None and match.case.id == 42
    assert match.method == "tag"


def test_tag_of_unknown_case_is_ignored(make_lookup: MakeLookup) -> None:
    match = find_case(message(subject="Re: [Help #999] printer"), make_lookup([case()], {}), TAGS)
    assert match.case is None and match.method == "new"


def test_tag_of_another_queue_does_not_count(make_lookup: MakeLookup) -> None:
    tags = {"billing": compile_tag("[Billing #{id}]"), "help": compile_tag("[Help #{id}]")}
    match = find_case(message(subject="Re: [Billing #42]"), make_lookup([case(queue="help")], {}), tags)
    assert match.case is None


def test_references_thread_without_tag(make_lookup: MakeLookup) -> None:
    lookup = make_lookup([case()], {"<ack-42@example.org>": 42})
    msg = message(subject="Re: printer", in_reply_to=("<ack-42@example.org>",), references=("<m1@example.net>",))
    match = find_case(msg, lookup, TAGS)
    assert match.case is not None and match.case.id == 42 and match.method == "in_reply_to"


def test_reference_chain_puts_parent_first_and_dedupes() -> None:
    msg = message(in_reply_to=("<c>",), references=("<a>", "<b>", "<c>"))
    assert reference_chain(msg) == ["<c>", "<b>", "<a>"]


def test_new_message_without_tag_or_references(make_lookup: MakeLookup) -> None:
    match = find_case(message(), make_lookup([case()], {"<other>": 42}), TAGS)
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


LATER = T0 + timedelta(hours=1)


def test_in_reply_to_wins_over_an_older_reference_to_a_more_active_case(make_lookup: MakeLookup) -> None:
    # Case 2 was active more recently, but the reply answers a message of case 1.
    lookup = make_lookup([case(id=1), case(id=2, updated_at=LATER)], {"<c1@x>": 1, "<c2@x>": 2})
    msg = message(subject="Re: printer", in_reply_to=("<c1@x>",), references=("<c2@x>", "<c1@x>"))
    match = find_case(msg, lookup, TAGS)
    assert match.case is not None and (match.case.id, match.method) == (1, "in_reply_to")


def test_newest_reference_wins_when_in_reply_to_is_unknown(make_lookup: MakeLookup) -> None:
    lookup = make_lookup([case(id=1, updated_at=LATER), case(id=2)], {"<c1@x>": 1, "<c2@x>": 2})
    msg = message(in_reply_to=("<unknown@x>",), references=("<c1@x>", "<c2@x>"))
    match = find_case(msg, lookup, TAGS)
    assert match.case is not None and (match.case.id, match.method) == (2, "references")


def test_one_message_id_of_two_cases_goes_to_the_more_active(make_lookup: MakeLookup) -> None:
    lookup = make_lookup([case(id=1), case(id=2, updated_at=LATER)], {"<both@x>": [1, 2]})
    match = find_case(message(in_reply_to=("<both@x>",)), lookup, TAGS)
    assert match.case is not None and match.case.id == 2


def test_references_win_over_a_tag(make_lookup: MakeLookup) -> None:
    lookup = make_lookup([case(id=15, status=CaseStatus.CLOSED), case(id=16)], {"<ack16@x>": 16})
    msg = message(subject="Re: Docking station [Help #15]", in_reply_to=("<ack16@x>",))
    match = find_case(msg, lookup, TAGS)
    assert match.case is not None and match.case.id == 16


def test_newest_tag_of_a_case_not_closed_wins(make_lookup: MakeLookup) -> None:
    cases = [case(id=15, status=CaseStatus.CLOSED), case(id=16), case(id=17, status=CaseStatus.CLOSED)]
    msg = message(subject="Re: Docking station [Help #15] [Help #17] [Help #16]")
    match = find_case(msg, make_lookup(cases, {}), TAGS)
    assert match.case is not None and (match.case.id, match.method) == (16, "tag")


def test_tag_of_a_closed_case_still_matches_when_nothing_else_does(make_lookup: MakeLookup) -> None:
    cases = [case(id=15, status=CaseStatus.CLOSED), case(id=17, status=CaseStatus.CLOSED)]
    match = find_case(message(subject="Re: x [Help #15] [Help #17]"), make_lookup(cases, {}), TAGS)
    assert match.case is not None and (match.case.id, match.case.status) == (17, CaseStatus.CLOSED)


def test_reply_token_wins_over_references_and_tag(make_lookup: MakeLookup) -> None:
    lookup = make_lookup([case(id=1), case(id=2), case(id=3)], {"<c1@x>": 1})
    msg = message(subject="Re: [Help #2]", in_reply_to=("<c1@x>",))
    match = find_case(msg, lookup, TAGS, token_case=3)
    assert match.case is not None and (match.case.id, match.method) == (3, "token")


def test_returned_mail_of_a_bounce_wins(make_lookup: MakeLookup) -> None:
    lookup = make_lookup([case(id=1), case(id=2)], {"<ack1@x>": 1})
    match = find_case(message(subject="[Help #2]"), lookup, TAGS, token_case=2, bounced_id="<ack1@x>")
    assert match.case is not None and (match.case.id, match.method) == (1, "bounce")


def test_strip_tags_removes_every_tag_of_every_queue() -> None:
    tags = [compile_tag("[Help #{id}]"), compile_tag("[Billing #{id}]")]
    assert strip_tags("Re: Docking [Help #15]  station [billing # 3] [Help #16]", tags) == "Re: Docking station"
