"""The store's refusals on a real SQLite file: paths it cannot use, decisions that break its contract,
a timer handled twice; and the bounce marks' empty and cleared cases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailsvc.errors import StoreError, StoreUnavailable
from mailsvc.model import (
    ClearBouncing,
    Decision,
    EndTimer,
    FileMessage,
    MarkBouncing,
    MessageKind,
    SetTimer,
    TimerKind,
    TimerState,
)
from mailsvc.store import Store, store_path_problem
from mailsvc.store.migrate import latest_version
from tests.unit.factories import T0, message
from tests.unit.test_store import REF, open_case, outgoing


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "mailsvc.db")


def test_a_new_store_in_folders_yet_to_be_made_is_fine(tmp_path: Path) -> None:
    assert store_path_problem(tmp_path / "var" / "lib" / "mailsvc" / "mailsvc.db") is None


def test_a_directory_where_the_file_should_be_is_named(tmp_path: Path) -> None:
    assert store_path_problem(tmp_path) == f"{tmp_path} is a directory"


def test_a_file_in_the_way_of_the_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("not a folder\n")
    problem = store_path_problem(tmp_path / "var" / "lib" / "mailsvc.db")
    assert problem == f"cannot create {tmp_path / 'var' / 'lib' / 'mailsvc.db'}: {tmp_path / 'var'} is not a folder"


def test_a_file_that_is_not_a_database_is_named_and_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "mailsvc.db"
    path.write_bytes(b"Subject: a mail saved in the wrong place\n\n" * 200)
    assert store_path_problem(path) == f"cannot open {path}: file is not a database"
    with pytest.raises(StoreUnavailable, match=r"cannot open the store .*: file is not a database"):
        Store.open(path)
    assert path.read_bytes().startswith(b"Subject: a mail saved")  # left as it was


def test_a_store_of_a_newer_mailsvc_is_named(tmp_path: Path) -> None:
    path = tmp_path / "mailsvc.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {latest_version() + 3}")
    db.close()
    assert store_path_problem(path) == (
        f"the store's schema is version {latest_version() + 3}, newer than this mailsvc knows ({latest_version()})"
    )


def test_a_message_decision_that_files_nothing_is_refused_and_rolled_back(store: Store) -> None:
    case_id = open_case(store, message(message_id="<first@x>"))
    decision = Decision(case_id, "help", (SetTimer(TimerKind.REMINDER, T0),))
    with pytest.raises(StoreError, match="must file the message"), store.transaction():
        store.apply(decision, message(message_id="<second@x>"), REF, outgoing, T0)
    assert store.due_timers(T0) == {}


def test_a_timer_decision_that_files_a_message_is_refused(store: Store) -> None:
    case_id = open_case(store, message())
    decision = Decision(case_id, "help", (FileMessage(MessageKind.REQUESTER_REPLY),))
    with pytest.raises(StoreError, match="files no message"), store.transaction():
        store.apply_timers(decision, message(), outgoing, T0)


def test_a_timer_handled_twice_is_refused_the_second_time(store: Store) -> None:
    case_id = open_case(store, message())
    with store.transaction():
        store.apply_timers(Decision(case_id, "help", (SetTimer(TimerKind.REMINDER, T0),)), message(), outgoing, T0)
    ((timer,),) = store.due_timers(T0).values()
    end = Decision(case_id, "help", (EndTimer(timer, TimerState.FIRED),))
    with store.transaction():
        store.apply_timers(end, message(), outgoing, T0)
    with pytest.raises(StoreError, match=f"timer {timer.id} was already handled"), store.transaction():
        store.apply_timers(end, message(), outgoing, T0)


def test_bounce_marks_are_set_cleared_once_and_looked_up(store: Store) -> None:
    case_id = open_case(store, message())
    mark = Decision(case_id, "help", (MarkBouncing(("Alice@Example.net",), "550 no such user"),))
    with store.transaction():
        store.apply_timers(mark, message(), outgoing, T0)
    assert store.bouncing(["alice@example.NET", "bob@example.net"]) == {"alice@example.net"}
    assert store.bouncing([]) == frozenset()
    clear = Decision(case_id, "help", (ClearBouncing("alice@example.net"),))
    with store.transaction():
        first = store.apply_timers(clear, message(), outgoing, T0)
    with store.transaction():
        second = store.apply_timers(clear, message(), outgoing, T0)
    assert [e for e, _ in first.events] == ["recipient_bouncing_cleared"]
    assert second.events == ()  # nothing to clear: no event, no case history line
    assert store.bouncing(["alice@example.net"]) == frozenset()
