"""Staff command grammar (pure): the `#status closed` lines at the top of a staff mail.

decide runs the commands of a verified staff mail; the body, the text below them, is what it
relays or files as an internal comment. Nothing below the leading block is ever interpreted.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

STATUSES = ("open", "waiting", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")

# A command line is "#" and ASCII letters ending at a word boundary. So "#42 is broken",
# "# Heading", "#résumé" and "#foo_bar" stay text, while "#close." or "#stauts open" are
# commands with an error: a staff typo must come back as an error, never reach the requester.
_COMMAND_LINE = re.compile(r"#([A-Za-z]+)\b:?(.*)", re.DOTALL)
# Mail clients leave these in text; they are neither whitespace to str.strip nor meaningful.
_INVISIBLE = str.maketrans("", "", "\ufeff\u200b\u200c\u200d\u2060")
_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+\.[^\s@<>()\[\],;:\".]+")
_SHORT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_CASE_ID = re.compile(r"#?([0-9]{1,12})")


@dataclass(frozen=True, slots=True)
class Command:
    """A recognised command, normalised: `#resolve` is Command("status", ("resolved",), line)."""

    name: str
    args: tuple[str, ...]
    line: int  # 1-based line number in the text


@dataclass(frozen=True, slots=True)
class CommandError:
    line: int
    text: str  # the command line as written, stripped
    reason: str  # says what is wrong, for the reply to the staff member


@dataclass(frozen=True, slots=True)
class ParsedCommands:
    commands: tuple[Command, ...]
    errors: tuple[CommandError, ...]
    body: str  # the text without the command block and the blank lines before the body, "\n" line ends


# An argument parser turns the words after a command into (name, args), or a reason it cannot.
ArgParser = Callable[[list[str]], tuple[str, tuple[str, ...]] | str]


def _or(choices: Sequence[str]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


def _choice(name: str, choices: Sequence[str], args: list[str]) -> tuple[str, tuple[str, ...]] | str:
    if len(args) == 1 and args[0].lower() in choices:
        return name, (args[0].lower(),)
    if not args:
        return f"#{name} needs {_or(choices)}"
    given = " ".join(args)
    close = difflib.get_close_matches(given.lower(), choices, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"#{name} takes {_or(choices)}, not '{given}'{hint}"


def _fixed(written: str, name: str, args: tuple[str, ...]) -> ArgParser:
    def parse(given: list[str]) -> tuple[str, tuple[str, ...]] | str:
        return (name, args) if not given else f"#{written} takes no arguments, not '{' '.join(given)}'"

    return parse


def _address(word: str) -> str | None:
    bare = word.strip("<>")
    return bare if _ADDRESS.fullmatch(bare) else None


def _assign(args: list[str]) -> tuple[str, tuple[str, ...]] | str:
    if len(args) != 1:
        given = f", not '{' '.join(args)}'" if args else ""
        return f"#assign takes one staff address or short name{given}"
    if "@" in args[0]:
        address = _address(args[0])
        return ("assign", (address,)) if address else f"#assign needs a mail address, not '{args[0]}'"
    name = args[0].lower()
    return ("assign", (name,)) if _SHORT_NAME.fullmatch(name) else f"'{args[0]}' is not a staff short name"


def _cc(args: list[str]) -> tuple[str, tuple[str, ...]] | str:
    if not args:
        return "#cc needs add or remove, then a mail address"
    verb = args[0].lower()
    if verb not in ("add", "remove"):
        close = difflib.get_close_matches(verb, ("add", "remove"), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"#cc takes add or remove, not '{args[0]}'{hint}"
    if len(args) == 1:
        return f"#cc {verb} needs a mail address"
    if len(args) > 2:
        return f"#cc {verb} takes one mail address per line, not '{' '.join(args[1:])}'"
    address = _address(args[1])
    return ("cc", (verb, address)) if address else f"#cc {verb} needs a mail address, not '{args[1]}'"


def _merge(args: list[str]) -> tuple[str, tuple[str, ...]] | str:
    found = _CASE_ID.fullmatch(args[0]) if len(args) == 1 else None
    if found is not None and int(found.group(1)) > 0:
        return "merge", (str(int(found.group(1))),)
    if not args:
        return "#merge needs a case number, such as #merge 42"
    return f"#merge takes a case number, such as #merge 42, not '{' '.join(args)}'"


PARSERS: dict[str, ArgParser] = {
    "status": lambda args: _choice("status", STATUSES, args),
    "resolve": _fixed("resolve", "status", ("resolved",)),
    "close": _fixed("close", "status", ("closed",)),
    "assign": _assign,
    "take": _fixed("take", "take", ()),
    "priority": lambda args: _choice("priority", PRIORITIES, args),
    "cc": _cc,
    "merge": _merge,
    "comment": _fixed("comment", "comment", ()),
    "spam": lambda args: ("spam", ()) if not args else _choice("spam", ("block",), args),
    "notspam": _fixed("notspam", "notspam", ()),
}


def _clean(line: str) -> str:
    """A line as a command sees it: invisible marks dropped, whitespace (nbsp too) trimmed."""
    return line.translate(_INVISIBLE).strip()


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, PARSERS, n=1)
    if close:
        return f"unknown command #{name}; did you mean #{close[0]}?"
    return "unknown command #" + name + "; commands are " + _or([f"#{n}" for n in PARSERS])


def parse_line(text: str, number: int) -> Command | CommandError:
    """One command line (as `_COMMAND_LINE` matches it) into a command or an error."""
    found = _COMMAND_LINE.fullmatch(text)
    if found is None:
        return CommandError(number, text, "not a command line")
    name = found.group(1).lower()
    parser = PARSERS.get(name)
    if parser is None:
        return CommandError(number, text, _unknown(name))
    parsed = parser(found.group(2).split())
    if isinstance(parsed, str):
        return CommandError(number, text, parsed)
    return Command(parsed[0], parsed[1], number)


def _comment_text(text: str) -> str | None:
    """Text written on the `#comment` line itself: it is the comment's first line, not an argument."""
    found = _COMMAND_LINE.fullmatch(text)
    if found is None or found.group(1).lower() != "comment":
        return None
    rest = found.group(2).strip()
    # Text that is itself a command line is a mistake, reported as one by the #comment parser.
    return rest if rest and not _COMMAND_LINE.fullmatch(rest) else None


def parse_commands(text: str) -> ParsedCommands:
    """Read the leading command block of a staff mail. Never raises; errors are values."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    errors: list[CommandError] = []
    at = 0
    while at < len(lines):
        cleaned = _clean(lines[at])
        if not cleaned:
            at += 1
            continue
        if not _COMMAND_LINE.fullmatch(cleaned):
            break
        comment = _comment_text(cleaned)
        if comment is not None:
            # Keep it internal: as an argument it would be an error, and the mail might be relayed.
            commands.append(Command("comment", (), at + 1))
            lines[at] = comment
            break
        found = parse_line(cleaned, at + 1)
        if isinstance(found, Command):
            commands.append(found)
        else:
            errors.append(found)
        at += 1
    # A byte-order mark left at the start of the body is an encoding artefact, not text to relay.
    return ParsedCommands(tuple(commands), tuple(errors), "\n".join(lines[at:]).lstrip("\ufeff"))
