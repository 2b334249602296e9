"""Staff command grammar: what counts as a command line, each command's arguments, and fuzzing."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsvc.commands import (
    PRIORITIES,
    STATUSES,
    Command,
    CommandError,
    ParsedCommands,
    parse_commands,
)


def one(text: str) -> Command:
    parsed = parse_commands(text)
    assert parsed.errors == ()
    assert len(parsed.commands) == 1
    return parsed.commands[0]


def error(text: str) -> str:
    parsed = parse_commands(text)
    assert parsed.commands == ()
    assert len(parsed.errors) == 1
    return parsed.errors[0].reason


@pytest.mark.parametrize(
    ("line", "name", "args"),
    [
        ("#status open", "status", ("open",)),
        ("#status WAITING", "status", ("waiting",)),
        ("#Status Resolved", "status", ("resolved",)),
        ("#STATUS closed", "status", ("closed",)),
        ("#status: open", "status", ("open",)),
        ("#resolve", "status", ("resolved",)),
        ("#close", "status", ("closed",)),
        ("#Close", "status", ("closed",)),
        ("#assign bob@example.org", "assign", ("bob@example.org",)),
        ("#assign <Bob@Example.org>", "assign", ("Bob@Example.org",)),
        ("#assign Bob", "assign", ("bob",)),
        ("#assign j.doe-2", "assign", ("j.doe-2",)),
        ("#take", "take", ()),
        ("#priority urgent", "priority", ("urgent",)),
        ("#priority Low", "priority", ("low",)),
        ("#cc add carol@example.net", "cc", ("add", "carol@example.net")),
        ("#cc REMOVE <carol@example.net>", "cc", ("remove", "carol@example.net")),
        ("#merge 42", "merge", ("42",)),
        ("#merge #42", "merge", ("42",)),
        ("#merge 007", "merge", ("7",)),
        ("#comment", "comment", ()),
    ],
)
def test_commands(line: str, name: str, args: tuple[str, ...]) -> None:
    assert one(line) == Command(name, args, 1)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("#stauts open", "unknown command #stauts; did you mean #status?"),
        ("#prio high", "unknown command #prio; did you mean #priority?"),
        ("#frobnicate", "unknown command #frobnicate; commands are #status, #resolve, #close, #assign, #take,"),
        ("#priority asap", "#priority takes low, normal, high or urgent, not 'asap'"),
        ("#priority", "#priority needs low, normal, high or urgent"),
        ("#status resovled", "#status takes open, waiting, resolved or closed, not 'resovled'; did you mean resolved?"),
        ("#status open now", "#status takes open, waiting, resolved or closed, not 'open now'"),
        ("#status", "#status needs open, waiting, resolved or closed"),
        ("#resolve now", "#resolve takes no arguments, not 'now'"),
        ("#close.", "#close takes no arguments, not '.'"),
        ("#take it", "#take takes no arguments, not 'it'"),
        ("#cc", "#cc needs add or remove, then a mail address"),
        ("#cc add", "#cc add needs a mail address"),
        ("#cc remove bob", "#cc remove needs a mail address, not 'bob'"),
        ("#cc ad bob@example.org", "#cc takes add or remove, not 'ad'; did you mean add?"),
        (
            "#cc add a@example.org b@example.org",
            "#cc add takes one mail address per line, not 'a@example.org b@example.org'",
        ),
        ("#assign", "#assign takes one staff address or short name"),
        ("#assign bob carol", "#assign takes one staff address or short name, not 'bob carol'"),
        ("#assign bob@", "#assign needs a mail address, not 'bob@'"),
        ("#assign 'bob'", "''bob'' is not a staff short name"),
        ("#merge", "#merge needs a case number, such as #merge 42"),
        ("#merge [Help #42]", "#merge takes a case number, such as #merge 42, not '[Help #42]'"),
        ("#merge 0", "#merge takes a case number, such as #merge 42, not '0'"),
        ("#merge forty-two", "#merge takes a case number, such as #merge 42, not 'forty-two'"),
        ("#comment #close", "#comment takes no arguments, not '#close'"),
    ],
)
def test_errors(line: str, reason: str) -> None:
    assert error(line).startswith(reason)


def test_error_keeps_the_line_as_written() -> None:
    parsed = parse_commands("#status open\n  #stauts open\xa0\nThanks")
    assert parsed.commands == (Command("status", ("open",), 1),)
    assert parsed.errors == (CommandError(2, "#stauts open", "unknown command #stauts; did you mean #status?"),)
    assert parsed.body == "Thanks"


def test_block_with_blank_lines_then_body() -> None:
    text = "\n\n#assign bob\n\n#priority high\n\n\nHi Alice,\n\nfixed.\n#close\n"
    parsed = parse_commands(text)
    assert parsed == ParsedCommands(
        commands=(Command("assign", ("bob",), 3), Command("priority", ("high",), 5)),
        errors=(),
        body="Hi Alice,\n\nfixed.\n#close\n",
    )


@pytest.mark.parametrize(
    "text",
    [
        "#42 is broken again",
        "# Heading",
        "#résumé attached",
        "#foo_bar is a tag",
        "##status open",
        "Hello\n#status closed",
        "> #status closed\nquoted",
        "-- \n#close",
    ],
)
def test_not_a_command_block(text: str) -> None:
    parsed = parse_commands(text)
    assert parsed.commands == ()
    assert parsed.errors == ()
    assert parsed.body == text


def test_signature_and_quote_after_the_body_are_not_read() -> None:
    text = "#take\nOn it.\n-- \nBob\n#close\n> #status closed"
    parsed = parse_commands(text)
    assert parsed.commands == (Command("take", (), 1),)
    assert parsed.body == "On it.\n-- \nBob\n#close\n> #status closed"


def test_crlf_bom_and_outlook_spaces() -> None:
    text = "\ufeff\r\n  #status open \xa0\xa0\r\n\u200b#priority\xa0high\r\n\r\nDone.\r\nBob\r\n"
    parsed = parse_commands(text)
    assert parsed.commands == (Command("status", ("open",), 2), Command("priority", ("high",), 3))
    assert parsed.errors == ()
    assert parsed.body == "Done.\nBob\n"


def test_byte_order_mark_before_the_body_is_dropped() -> None:
    assert parse_commands("\ufeff\ufeff#take\n\ufeffHello").body == "Hello"
    assert parse_commands("\r\ufeff0").body == "0"


def test_old_mac_line_ends() -> None:
    parsed = parse_commands("#close\rThanks")
    assert parsed.commands == (Command("status", ("closed",), 1),)
    assert parsed.body == "Thanks"


def test_commands_only() -> None:
    assert parse_commands("#resolve\n\n") == ParsedCommands((Command("status", ("resolved",), 1),), (), "")


def test_empty_text() -> None:
    assert parse_commands("") == ParsedCommands((), (), "")


def test_text_on_the_comment_line_is_the_comment() -> None:
    parsed = parse_commands("#assign bob\n#comment the fuser died again\nsee the log\n#close")
    assert parsed.commands == (Command("assign", ("bob",), 1), Command("comment", (), 2))
    assert parsed.errors == ()
    assert parsed.body == "the fuser died again\nsee the log\n#close"


def test_comment_then_more_commands() -> None:
    parsed = parse_commands("#comment\n#assign carol\n\nThe printer is fine.")
    assert [c.name for c in parsed.commands] == ["comment", "assign"]
    assert parsed.body == "The printer is fine."


def test_errors_do_not_stop_the_block() -> None:
    parsed = parse_commands("#stauts open\n#close\nbye")
    assert [e.line for e in parsed.errors] == [1]
    assert parsed.commands == (Command("status", ("closed",), 2),)
    assert parsed.body == "bye"


# --- properties


@given(st.text())
def test_never_raises(text: str) -> None:
    assert isinstance(parse_commands(text), ParsedCommands)


_soup = st.text(alphabet="#abcstuoplen :\r\n\t\xa0\ufeff\u200b42@.>-", max_size=80)


@given(st.one_of(st.text(), _soup))
def test_body_has_no_leading_command_block(text: str) -> None:
    parsed = parse_commands(text)
    again = parse_commands(parsed.body)
    assert again.commands == ()
    assert again.errors == ()
    assert again.body == parsed.body


@given(st.one_of(st.text(), _soup))
def test_every_command_and_error_has_its_own_line(text: str) -> None:
    parsed = parse_commands(text)
    lines = [c.line for c in parsed.commands] + [e.line for e in parsed.errors]
    assert len(set(lines)) == len(lines)
    assert all(1 <= line <= text.count("\n") + text.count("\r") + 1 for line in lines)


_valid = st.one_of(
    st.sampled_from(STATUSES).map(lambda s: (f"#status {s}", Command("status", (s,), 0))),
    st.sampled_from(PRIORITIES).map(lambda p: (f"#priority {p.upper()}", Command("priority", (p,), 0))),
    st.just(("#resolve", Command("status", ("resolved",), 0))),
    st.just(("#take", Command("take", (), 0))),
    st.integers(1, 10**6).map(lambda n: (f"#merge #{n}", Command("merge", (str(n),), 0))),
    st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.org", fullmatch=True).map(
        lambda a: (f"#cc add {a}", Command("cc", ("add", a), 0))
    ),
)
_padding = st.sampled_from(["", " ", "\xa0", "  \xa0"])
_newline = st.sampled_from(["\n", "\r\n"])
_body = st.text().map(lambda t: "Hi" + t)


@given(st.lists(st.tuples(_valid, _padding, st.booleans()), min_size=1, max_size=6), _newline, _body)
def test_generated_commands_read_back(
    block: list[tuple[tuple[str, Command], str, bool]], newline: str, body: str
) -> None:
    lines: list[str] = []
    expected: list[Command] = []
    for (line, command), padding, blank_after in block:
        lines.append(padding + line + padding)
        expected.append(Command(command.name, command.args, len(lines)))
        if blank_after:
            lines.append(padding)
    parsed = parse_commands(newline.join([*lines, body]))
    assert parsed.errors == ()
    assert parsed.commands == tuple(expected)
    assert parsed.body == body.replace("\r\n", "\n").replace("\r", "\n")
