from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from mailsvc import templatecheck
from mailsvc.config import Config, parse_config
from mailsvc.templatecheck import (
    TemplateProblem,
    check_config_templates,
    check_templates,
    checked_files,
    sample_context,
    template_names,
)
from mailsvc.templatefiles import load_templates
from mailsvc.testing.sandbox import sandbox_config


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def problems_in(folder: Path) -> list[TemplateProblem]:
    """The problems of the files in `folder` only (the defaults are checked by their own test)."""
    return [p for p in check_templates(load_templates([folder])) if p.file.startswith(str(folder))]


def test_the_default_templates_check_clean() -> None:
    assert check_templates(load_templates([])) == []


def test_the_default_templates_are_found_by_listing_not_by_a_list() -> None:
    names = template_names(load_templates([]))
    assert "ack" in names and "relay" in names and "notify" in names
    assert template_names(load_templates([]), html=True) == [n for n in names if f"{n}.html.j2" in _package_files()]


def _package_files() -> set[str]:
    return {p.name for p in files("mailsvc.templates").iterdir() if p.name.endswith(".j2")}


def test_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    text = "Hello {{ requester.name }},\n\n{% if case.owner %}\nowned\n{% endfor %}\n\n{{ queue.display_name }}\n"
    path = write(tmp_path, "ack.txt.j2", text)
    (problem,) = problems_in(tmp_path)
    assert problem.file == str(path)
    assert problem.line == 5
    assert "endfor" in problem.message


def test_syntax_error_in_an_expression_gets_the_line_of_the_expression(tmp_path: Path) -> None:
    write(tmp_path, "relay.txt.j2", "{{ text }}\n--\n{{ queue.display_name ) }}\n")
    (problem,) = problems_in(tmp_path)
    assert problem.line == 3


def test_unknown_top_level_variable_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ack.txt.j2", "Hello {{ requester.name }},\n\ncase {{ case.tag }} for {{ costumer }}\n")
    (problem,) = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(path), 3)
    assert '"costumer"' in problem.message and "requester" in problem.message  # it says what is known


def test_typo_in_an_attribute_of_a_known_variable(tmp_path: Path) -> None:
    write(tmp_path, "ack.txt.j2", "Hello,\n\nyour case:\n    {{ case.nmae }}\n")
    (problem,) = problems_in(tmp_path)
    assert problem.line == 4
    assert '"case.nmae"' in problem.message and "subject" in problem.message


def test_typo_in_an_item_of_a_known_variable(tmp_path: Path) -> None:
    write(tmp_path, "ack.txt.j2", "Hello {{ requester['adress'] }}\n")
    (problem,) = problems_in(tmp_path)
    assert problem.line == 1 and "requester['adress']" in problem.message


def test_typo_in_a_loop_variable_over_a_known_list(tmp_path: Path) -> None:
    write(tmp_path, "notify.txt.j2", "{{ text }}\n{% for a in attachments %}\n{{ a.filenme }}\n{% endfor %}\n")
    (problem,) = problems_in(tmp_path)
    assert problem.line == 3 and '"a.filenme"' in problem.message


def test_loop_variables_set_and_dict_methods_are_not_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "notify.txt.j2",
        "{% set who = requester.name or requester.address %}{{ who }}\n"
        "{% for a in attachments %}{{ loop.index }}. {{ a.filename }} ({{ a['size'] }}){% endfor %}\n"
        "{% for key, value in case.items() %}{{ key }}={{ value }}{% endfor %}\n"
        "{% with n = case.id %}{{ n }}{% endwith %}{{ range(2) | list }}\n"
        "{% if case.later is defined %}{{ case.later }}{% endif %}{{ later | default('') }}\n",
    )
    assert problems_in(tmp_path) == []


def test_a_name_the_template_sets_itself_is_not_checked_against_the_context(tmp_path: Path) -> None:
    write(tmp_path, "ack.txt.j2", "{% set case = {'title': 'x'} %}{{ case.title }}\n")
    assert problems_in(tmp_path) == []


def test_the_known_variables_come_from_template_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "reminder.txt.j2", "Still open after {{ timer.days }} days: {{ case.tag }}\n")
    assert [p.line for p in problems_in(tmp_path)] == [1]

    real = templatecheck.template_context

    def with_timer(*args: Any) -> dict[str, Any]:
        return {**real(*args), "timer": {"days": 3}}

    monkeypatch.setattr(templatecheck, "template_context", with_timer)
    assert problems_in(tmp_path) == []
    assert sample_context("reminder")["timer"] == {"days": 3}


def test_unknown_filter_and_sandbox_violation(tmp_path: Path) -> None:
    write(tmp_path, "ack.txt.j2", "Hello\n{{ case.subject | shout }}\n")
    write(tmp_path, "relay.txt.j2", "{{ text }}\n\n{{ text.__class__.__mro__ }}\n")
    by_file = {Path(p.file).name: p for p in problems_in(tmp_path)}
    assert by_file["ack.txt.j2"].line == 2 and "shout" in by_file["ack.txt.j2"].message
    assert by_file["relay.txt.j2"].line == 3 and "SecurityError" in by_file["relay.txt.j2"].message


def test_html_template_without_any_text_template(tmp_path: Path) -> None:
    path = write(tmp_path, "survey.html.j2", "<p>{{ case.tag }}</p>\n")
    write(tmp_path, "ack.html.j2", "<p>{{ case.tag }}</p>\n")  # ack.txt.j2 comes from the defaults
    (problem,) = problems_in(tmp_path)
    assert (problem.file, problem.line) == (str(path), None)
    assert "survey.txt.j2" in problem.message


def test_every_folder_is_checked_as_it_is_even_where_shadowed(tmp_path: Path) -> None:
    queue = write(tmp_path / "queue", "ack.txt.j2", "Fine {{ case.tag }}\n")
    shared = write(tmp_path / "shared", "ack.txt.j2", "Broken {{ case.tga }}\n")
    problems = check_templates(load_templates([queue.parent, shared.parent]))
    assert [(p.file, p.line) for p in problems] == [(str(shared), 1)]


def test_a_missing_templates_folder_is_reported(tmp_path: Path) -> None:
    problems = check_templates(load_templates([tmp_path / "nowhere"]))
    assert [p.file for p in problems] == [str(tmp_path / "nowhere")]


def test_problem_prints_as_path_line_message() -> None:
    assert str(TemplateProblem("/t/ack.txt.j2", 3, "bad")) == "/t/ack.txt.j2:3: bad"
    assert str(TemplateProblem("package:ack.html.j2", None, "bad")) == "package:ack.html.j2: bad"


def config_with(tmp_path: Path, queues: dict[str, Any], templates_dir: Path | None = None) -> Config:
    raw = sandbox_config(imap_port=1, imap_user="help", smtp_port=2, store=tmp_path / "mailsvc.db", queues=queues)
    if templates_dir is not None:
        raw["templates_dir"] = str(templates_dir)
    return parse_config(raw, tmp_path)


def test_config_check_reports_a_shared_file_once_and_each_queue_folder(tmp_path: Path) -> None:
    shared = write(tmp_path / "shared", "notify.txt.j2", "{{ txet }}\n")
    sales = write(tmp_path / "sales", "ack.txt.j2", "{{ case.tga }}\n")
    config = config_with(
        tmp_path,
        {
            "help": {"address": "help@example.org"},
            "sales": {"address": "sales@example.org", "templates_dir": str(sales.parent)},
        },
        templates_dir=shared.parent,
    )
    problems = check_config_templates(config)
    assert sorted((p.file, p.line) for p in problems) == [(str(sales), 1), (str(shared), 1)]
    files = checked_files(config)
    assert len(files) == len(set(files)) == len(_package_files()) + 2


def test_config_check_of_the_defaults_is_clean(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"help": {"address": "help@example.org"}})
    assert check_config_templates(config) == []


def test_queues_with_the_same_template_folders_share_one_compiled_set(tmp_path: Path) -> None:
    raw = sandbox_config(imap_port=1143, imap_user="desk", smtp_port=25, store=tmp_path / "x.db")
    raw["queues"] = {
        "help": {"address": "help@example.org"},
        "billing": {"address": "billing@example.org"},
        "hr": {"address": "hr@example.org", "templates_dir": str(tmp_path)},
    }
    templates = templatecheck.queue_templates(parse_config(raw, tmp_path))
    assert templates["help"] is templates["billing"]
    assert templates["hr"] is not templates["help"]
