from pathlib import Path

import pytest
import yaml

from mailsvc.cli import main
from mailsvc.config import load_config, parse_config
from mailsvc.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "mailsvc.example.yaml"


def minimal() -> dict:  # type: ignore[type-arg]
    return {
        "imap": {"host": "127.0.0.1", "tls": "none", "user": "help", "password": "secret"},
        "smtp": {"host": "127.0.0.1", "tls": "none", "port": 2525},
        "queues": {"help": {"address": "help@example.org"}},
        "store": {"path": "mailsvc.db"},
    }


def problems(raw: dict, base: Path = Path("/etc/mailsvc")) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        parse_config(raw, base)
    return err.value.problems


def test_minimal_config_gets_defaults_and_relative_paths() -> None:
    config = parse_config(minimal(), Path("/etc/mailsvc"))
    assert config.store.path == Path("/etc/mailsvc/mailsvc.db")
    assert config.imap.folder == "INBOX" and config.imap.effective_port == 143
    assert config.smtp.effective_port == 2525
    assert config.queues["help"].subject_tag == "[Help #{id}]"
    assert config.own_addresses() == frozenset({"help@example.org"})


def test_unknown_key_is_named_with_its_path() -> None:
    raw = minimal()
    raw["imap"]["pasword"] = "x"
    raw["queues"]["help"]["tag"] = "x"
    found = problems(raw)
    assert ("imap.pasword", "unknown key") in found
    assert ("queues.help.tag", "unknown key") in found


def test_every_problem_is_reported_at_once() -> None:
    raw = minimal()
    del raw["store"]
    raw["smtp"]["port"] = 70000
    raw["queues"]["help"]["address"] = "not-an-address"
    paths = {path for path, _ in problems(raw)}
    assert paths == {"store", "smtp.port", "queues.help.address"}


def test_plain_imap_only_on_loopback() -> None:
    raw = minimal()
    raw["imap"]["host"] = "imap.example.org"
    (path, reason), *_ = problems(raw)
    assert path == "imap" and "loopback" in reason


def test_password_sources_are_exclusive_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = minimal()
    raw["imap"]["password_env"] = "MAILSVC_TEST_PW"
    assert "only one of" in problems(raw)[0][1]
    del raw["imap"]["password"]
    monkeypatch.delenv("MAILSVC_TEST_PW", raising=False)
    assert problems(raw) == [("imap.password_env", "environment variable MAILSVC_TEST_PW is not set")]
    monkeypatch.setenv("MAILSVC_TEST_PW", "from-env")
    assert parse_config(raw, tmp_path).imap.secret() == "from-env"
    del raw["imap"]["password_env"]
    secret = tmp_path / "imap-password"
    secret.write_text("from-file\n")
    raw["imap"]["password_file"] = str(secret)
    assert parse_config(raw, tmp_path).imap.secret() == "from-file"


def test_subject_tag_needs_id() -> None:
    raw = minimal()
    raw["queues"]["help"]["subject_tag"] = "[Help]"
    assert problems(raw)[0][0] == "queues.help.subject_tag"


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILSVC_IMAP_PASSWORD", "x")
    monkeypatch.setenv("MAILSVC_SMTP_PASSWORD", "x")
    # As systemd's LoadCredential= provides it.
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "token-key").write_text("0123456789abcdef0123456789abcdef\n")
    config = load_config(EXAMPLE)
    assert config.queues["help"].staff and config.trust.key() == b"0123456789abcdef0123456789abcdef"


def test_short_token_key_from_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = minimal()
    raw["trust"] = {"token_key_env": "MAILSVC_TEST_KEY"}
    monkeypatch.setenv("MAILSVC_TEST_KEY", "")
    assert problems(raw) == [("trust.token_key_env", "the token key must be at least 16 characters")]
    monkeypatch.setenv("MAILSVC_TEST_KEY", "x" * 16)
    assert parse_config(raw, Path("/etc/mailsvc")).trust.key() == b"x" * 16


def test_staff_need_a_token_key() -> None:
    raw = minimal()
    raw["queues"]["help"]["staff"] = [{"address": "bob@example.org"}]
    assert problems(raw) == [
        ("(top level)", "trust: staff are configured, so give token_key, token_key_env or token_key_file")
    ]


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "imap: {host: 127.0.0.1, tls: none, user: help, password: s}\n"
        "smtp: {host: 127.0.0.1, tls: none}\n"
        "queues: {help: {address: help@example.org}}\n"
        "store: {path: x.db}\n"
    )
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("store: {path: x.db}", "store: {path: x.db, size: 3}"))
    assert main(["check-config", str(bad)]) == 2
    assert "store.size: unknown key" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("imap: [unclosed\n")
    assert main(["check-config", str(broken)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2


def test_metrics_listen_only_on_loopback() -> None:
    raw = minimal()
    raw["metrics"] = {"listen": "127.0.0.1:9464"}
    assert parse_config(raw, Path("/etc/mailsvc")).metrics is not None
    for listen, reason in [
        ("0.0.0.0:9464", "not a loopback address"),
        ("192.0.2.1:9464", "not a loopback address"),
        ("127.0.0.1", "not host:port"),
        ("127.0.0.1:99999", "not host:port"),
    ]:
        raw["metrics"] = {"listen": listen}
        ((path, why),) = problems(raw)
        assert path == "metrics.listen" and reason in why
    assert parse_config(minimal(), Path("/etc/mailsvc")).metrics is None, "off by default"


def test_report_digest_schedule_is_checked() -> None:
    raw = minimal()
    raw["report"] = {"mail_to": ["team@example.org"], "every": "weekly", "at": "Mon 08:00", "timezone": "Europe/Berlin"}
    report = parse_config(raw, Path("/etc/mailsvc")).report
    assert report is not None and report.schedule().weekday == 0
    raw["report"] = {"mail_to": ["team@example.org"], "every": "daily", "at": 480}  # YAML's unquoted 08:00
    report = parse_config(raw, Path("/etc/mailsvc")).report
    assert report is not None and report.schedule().at.hour == 8
    raw["report"] = {"mail_to": ["team@example.org"], "every": "daily", "at": "Mon 08:00"}
    assert problems(raw) == [("report", "at: a daily digest takes a time only, like '08:00', not 'Mon 08:00'")]
    raw["report"] = {"mail_to": ["Help@example.org"]}
    assert problems(raw) == [
        ("(top level)", "report.mail_to: help@example.org is our own address: the digest would come back in")
    ]
    raw["report"] = {"mail_to": [], "every": "fortnightly"}
    assert {path for path, _ in problems(raw)} == {"report.mail_to", "report.every"}


def test_example_metrics_and_report_sections_are_valid_once_uncommented() -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# metrics:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            if block and block[-1] == "":
                break
            block.append("")
            continue
        text = line[2:] if line.startswith("# ") else line[1:]
        if text.startswith(("metrics:", "report:", "  ")):
            block.append(text)
    raw = {**minimal(), **yaml.safe_load("\n".join(block))}
    config = parse_config(raw, Path("/etc/mailsvc"))
    assert config.metrics is not None and config.metrics.listen == "127.0.0.1:9464"
    assert config.report is not None and config.report.schedule().weekday == 0


def test_a_postgresql_store_is_checked_with_key_paths(tmp_path: Path) -> None:
    url = "postgresql://mailsvc@db.example.org:5432/mailsvc"
    raw = minimal()
    raw["store"] = {"url": url, "password_file": str(tmp_path / "db-password")}
    assert problems(raw) == [("store.password_file", f"cannot read {tmp_path / 'db-password'}: no such file")]
    (tmp_path / "db-password").write_text("s3cret\n")
    config = parse_config(raw, tmp_path)
    assert (config.store.path, config.store.url, config.store.failover) == (None, url, 30.0)
    assert config.store.secret() == "s3cret" and config.store.where == url
    for store, reason in [
        ({"path": "m.db", "url": url}, "give path (SQLite) or url (PostgreSQL), one of them"),
        ({}, "give path (SQLite) or url (PostgreSQL), one of them"),
        ({"url": "mysql://db/x"}, "url must look like postgresql://user@host:port/dbname"),
        (
            {"url": "postgresql://mailsvc:s3cret@db/x"},
            "url must not hold the password: give password_file or password_env",
        ),
        ({"path": "m.db", "password_env": "X"}, "password_env belongs to a PostgreSQL url; path needs none"),
        ({"url": url, "failover": 0}, None),
        ({"url": url, "failover": 1.5}, None),
    ]:
        raw["store"] = store
        found = problems(raw)
        assert len(found) == 1 and found[0][0].startswith("store"), found
        if reason is not None:
            assert found == [("store", reason)]
