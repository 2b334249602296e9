"""`mailsvc templates check` and `mailsvc templates preview`, run as the console script on a real config and store."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pytest

from mailsvc.cli import main
from mailsvc.config import load_config
from mailsvc.ingest import Outcome, Pipeline
from mailsvc.model import MailRef
from mailsvc.store import Store
from mailsvc.testing.sandbox import HELP_ADDRESS, mail, sandbox_config, write_config
from mailsvc.trust import sign_token


def mailsvc(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script as an operator runs it (about a second to start: used where it matters)."""
    return subprocess.run(
        [sys.executable, "-m", "mailsvc", *args], capture_output=True, text=True, timeout=60, check=False
    )


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """The same entry point in this process, for the many preview runs."""

    def run(*args: str) -> Run:
        code = main(list(args))
        out = capsys.readouterr()
        return Run(code, out.out, out.err)

    return run


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    return tmp_path / "help-templates"


@pytest.fixture
def config_file(tmp_path: Path, overrides: Path) -> Path:
    # The servers are never contacted: these commands read only the config, the templates and the store.
    queue = {"address": HELP_ADDRESS, "display_name": "Example Help Desk", "templates_dir": str(overrides)}
    raw = sandbox_config(
        imap_port=1, imap_user="help", smtp_port=2, store=tmp_path / "mailsvc.db", queues={"help": queue}
    )
    overrides.mkdir()
    return write_config(tmp_path / "mailsvc.yaml", raw)


def file_request(config_file: Path, raw: bytes, uid: int = 1) -> int:
    """File a mail as one ingest pass would, without the IMAP server: returns its case id."""
    config = load_config(config_file)
    store = Store.open(config.store.path)
    try:
        with store.transaction():
            outcome, case_id = Pipeline(config, store).handle(MailRef("INBOX", 1, uid), raw)
    finally:
        store.close()
    assert outcome is Outcome.FILED and case_id is not None
    return case_id


def test_check_passes_a_good_override_folder(config_file: Path, overrides: Path) -> None:
    (overrides / "ack.txt.j2").write_text("Hello {{ requester.name or requester.address }}, see {{ case.tag }}.\n")
    proc = mailsvc("templates", "check", "-c", str(config_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    defaults = [p for p in files("mailsvc.templates").iterdir() if p.name.endswith(".j2")]
    assert f"ok, {len(defaults) + 1} templates checked" in proc.stdout


def test_check_names_file_and_line_of_each_problem(config_file: Path, overrides: Path) -> None:
    ack = overrides / "ack.txt.j2"
    ack.write_text("Hello {{ requester.name }},\n\nyour case {{ case.nmae }} is open.\n")
    relay = overrides / "relay.txt.j2"
    relay.write_text("{{ text }}\n--\n{% if sender.name %}{{ sender.name }}\n")
    proc = mailsvc("templates", "check", "-c", str(config_file))
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"{ack}:3: ") and "case.nmae" in line for line in lines), proc.stdout
    assert any(line.startswith(f"{relay}:") and "endif" in line for line in lines), proc.stdout
    assert "package:" not in proc.stdout  # the defaults beside them are fine


def test_preview_renders_the_queue_template_for_a_filed_case(
    config_file: Path, overrides: Path, cli: Callable[..., Run]
) -> None:
    case_id = file_request(config_file, mail(subject="VPN drops every hour", message_id="<vpn-1@example.net>"))
    (overrides / "ack.txt.j2").write_text("Custom ack for {{ case.tag }}: {{ case.subject }}\n")

    proc = mailsvc("templates", "preview", "ack", "--case", str(case_id), "-c", str(config_file))
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines())
    assert headers["To"] == "Alice Example <alice@example.net>"
    assert headers["Subject"] == f"Re: VPN drops every hour [Help #{case_id}]"
    assert headers["Message-ID"] == "<preview@localhost>"
    assert headers["In-Reply-To"] == "<vpn-1@example.net>"
    assert headers["Auto-Submitted"] == "auto-replied"
    assert body == f"Custom ack for [Help #{case_id}]: VPN drops every hour\n"

    html = cli("templates", "preview", "ack", "--case", str(case_id), "--html", "-c", str(config_file))
    assert html.returncode == 0, html.stderr
    assert f"<strong>[Help #{case_id}]</strong>" in html.stdout


def test_preview_of_unknown_case_or_template(config_file: Path, cli: Callable[..., Run]) -> None:
    case_id = file_request(config_file, mail())

    no_case = cli("templates", "preview", "ack", "--case", str(case_id + 1), "-c", str(config_file))
    assert no_case.returncode == 1
    assert f"no case {case_id + 1}" in no_case.stderr

    no_template = cli("templates", "preview", "akc", "--case", str(case_id), "-c", str(config_file))
    assert no_template.returncode == 2
    assert "'akc'" in no_template.stderr
    available = no_template.stderr.rpartition("available: ")[2].strip().split(", ")
    assert {"ack", "relay", "notify"} <= set(available)


def test_requester_text_shows_literally_in_a_preview(config_file: Path, cli: Callable[..., Run]) -> None:
    case_id = file_request(
        config_file,
        mail(
            subject="Print {{ 7*7 }} copies", body="Please print {{ 7*7 }} copies {% for x in [1] %}now{% endfor %}\n"
        ),
    )
    ack = cli("templates", "preview", "ack", "--case", str(case_id), "-c", str(config_file))
    assert ack.returncode == 0, ack.stderr
    assert f"Subject: Re: Print {{{{ 7*7 }}}} copies [Help #{case_id}]" in ack.stdout
    assert "    Print {{ 7*7 }} copies\n" in ack.stdout  # the case subject in the body
    assert "Print 49" not in ack.stdout

    notify = cli("templates", "preview", "notify", "--case", str(case_id), "-c", str(config_file))
    assert notify.returncode == 0, notify.stderr
    assert "Please print {{ 7*7 }} copies {% for x in [1] %}now{% endfor %}" in notify.stdout
    assert "print 49" not in notify.stdout


def test_preview_masks_the_reply_token_signature(tmp_path: Path, config_file: Path, cli: Callable[..., Run]) -> None:
    raw = load_config(config_file).model_dump(mode="json", exclude_none=True)
    raw["imap"]["password"] = raw["smtp"]["password"] = "secret"
    raw["trust"] = {"token_key": "k" * 32}
    path = write_config(tmp_path / "with-key.yaml", raw)
    case_id = file_request(path, mail(message_id="<token-1@example.net>"))
    preview = cli("templates", "preview", "notify", "--case", str(case_id), "-c", str(path))
    assert preview.returncode == 0, preview.stderr
    assert f"Reply-To: help+c{case_id}-[redacted]@example.org" in preview.stdout
    assert sign_token(case_id, b"k" * 32) not in preview.stdout
