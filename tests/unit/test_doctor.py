"""The doctor's checks that need no server: the configuration, the store's schema, the templates."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mailsvc.config import Config, parse_config
from mailsvc.doctor import CheckFailed, check_store, check_templates, run_doctor
from mailsvc.store import Store
from mailsvc.store.migrate import latest_version
from mailsvc.testing.sandbox import sandbox_config, write_config


def config_of(tmp_path: Path, store: Path, **overrides: Any) -> Config:
    raw = sandbox_config(imap_port=1143, imap_user="desk", smtp_port=1025, store=store, **overrides)
    return parse_config(raw, tmp_path)


def with_version(path: Path, version: int) -> Path:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {version}")
    db.close()
    return path


def test_a_store_in_a_folder_that_does_not_exist_fails(tmp_path: Path) -> None:
    config = config_of(tmp_path, tmp_path / "missing" / "mailsvc.db")
    with pytest.raises(CheckFailed, match=r"missing does not exist") as failed:
        check_store(config)
    assert failed.value.hint == "create it, writable by the service's user"


def test_a_store_of_a_newer_mailsvc_fails_with_upgrade_hint(tmp_path: Path) -> None:
    config = config_of(tmp_path, with_version(tmp_path / "mailsvc.db", latest_version() + 1))
    with pytest.raises(CheckFailed, match=rf"schema version {latest_version() + 1} is newer") as failed:
        check_store(config)
    assert failed.value.hint == "upgrade mailsvc"


def test_an_older_store_is_brought_up_to_date_at_the_next_start(tmp_path: Path) -> None:
    config = config_of(tmp_path, with_version(tmp_path / "mailsvc.db", 1))
    assert check_store(config).endswith(f"schema version 1, brought to {latest_version()} at the next start")


def test_a_current_store_passes(tmp_path: Path) -> None:
    Store.open(tmp_path / "mailsvc.db").close()
    config = config_of(tmp_path, tmp_path / "mailsvc.db")
    assert check_store(config).endswith(f"schema version {latest_version()} is current")


def test_a_file_that_is_not_a_database_fails_with_the_sqlite_error(tmp_path: Path) -> None:
    path = tmp_path / "mailsvc.db"
    path.write_bytes(b"this is not an SQLite file, it is a mail someone saved here\n" * 100)
    with pytest.raises(CheckFailed, match=r"file is not a database") as failed:
        check_store(config_of(tmp_path, path))
    assert failed.value.hint == "check the file's owner and mode, and the disk"


def test_broken_templates_fail_with_the_file_and_the_fix(tmp_path: Path) -> None:
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "relay.txt.j2").write_text("{{ text }}\n--\n{% if sender.name %}{{ sender.name }}\n")
    queues = {"help": {"address": "help@example.org", "templates_dir": str(overrides)}}
    config = config_of(tmp_path, tmp_path / "mailsvc.db", queues=queues)
    with pytest.raises(CheckFailed, match=r"relay\.txt\.j2") as failed:
        check_templates(config)
    assert failed.value.hint == "run `mailsvc templates check` and fix them"


def test_a_bad_configuration_stops_the_doctor_before_any_server(tmp_path: Path) -> None:
    raw = sandbox_config(imap_port=1143, imap_user="desk", smtp_port=1025, store=tmp_path / "mailsvc.db")
    raw["imap"]["folder_name"] = "INBOX"
    path = write_config(tmp_path / "mailsvc.yaml", raw)
    lines: list[str] = []
    assert run_doctor(path, out=lines.append) == 1
    assert lines[1].startswith("[FAIL] configuration: imap.folder_name: ")
    assert lines[2] == f"       hint: run `mailsvc check-config {path}`"
    assert lines[-1] == "1 problem found: the configuration comes first."
    assert len(lines) == 4  # no server was asked
