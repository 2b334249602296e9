"""Template checks and previews for `mailsvc templates`: what render.compose would fail on, found before any mail.

The known variables come from render.template_context itself, called on sample values, so a
key added there is known here at once; the template names come from what the loaders list.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes

from mailsvc.config import Config
from mailsvc.digest import digest_context, sample_digest
from mailsvc.expect import TeamView
from mailsvc.model import STAFF_PURPOSES, Address, Attachment, Case, CaseStatus, InboundMessage, QueueMail
from mailsvc.render import QueueView, Templates, compose, template_context
from mailsvc.strip import strip_reply
from mailsvc.templatefiles import load_templates
from mailsvc.thread import render_tag
from mailsvc.trust import reply_address

TEXT_SUFFIX = ".txt.j2"
HTML_SUFFIX = ".html.j2"
PREVIEW_MESSAGE_ID = "<preview@localhost>"
# The digest goes to the team about no case: its templates see the report (digest.digest_context), not a case.
DIGEST = "digest"
# A template may ask whether a variable exists; what it guards so is optional, not unknown.
_GUARD_TESTS = frozenset({"defined", "undefined"})
_GUARD_FILTERS = frozenset({"default", "d"})
_MISSING = object()


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """One problem in one template file; `file` is its path, or "package:<name>" for a default."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class TemplateFile:
    name: str  # as the loaders name it: "ack.txt.j2"
    file: str  # as problems name it: the path, or "package:ack.txt.j2"
    filename: str | None  # the path Jinja compiles it under, so tracebacks carry its lines
    source: str


def _folders(config: Config, queue: str) -> tuple[Path, ...]:
    """A queue's template folders in the order ingest uses: the queue's, the shared one (then the defaults)."""
    return tuple(d for d in (config.queues[queue].templates_dir, config.templates_dir) if d is not None)


def queue_templates(config: Config) -> dict[str, Templates]:
    """Each queue's templates; queues with the same folders share one set."""
    loaded: dict[tuple[Path, ...], Templates] = {}
    templates: dict[str, Templates] = {}
    for name in config.queues:
        folders = _folders(config, name)
        if folders not in loaded:
            loaded[folders] = load_templates(folders)
        templates[name] = loaded[folders]
    return templates


def queue_view(config: Config, name: str) -> QueueView:
    q = config.queues[name]
    return QueueView(name, q.address, q.display_name, q.subject_tag, q.tag_position)


def _loaders(templates: Templates) -> list[jinja2.BaseLoader]:
    loader = templates.env.loader
    if isinstance(loader, jinja2.ChoiceLoader):
        return list(loader.loaders)
    return [loader] if loader is not None else []


def visible_templates(templates: Templates) -> frozenset[str]:
    """Every template name some loader of this queue can give."""
    return frozenset(n for loader in _loaders(templates) for n in loader.list_templates() if n.endswith(".j2"))


def template_names(templates: Templates, *, html: bool = False) -> list[str]:
    """The mails this queue can render (those with a text template; with `html`, those with an HTML one)."""
    suffix = HTML_SUFFIX if html else TEXT_SUFFIX
    visible = visible_templates(templates)
    return sorted(
        n.removesuffix(suffix)
        for n in visible
        if n.endswith(suffix) and _base_name(n) + TEXT_SUFFIX in visible and _base_name(n) != DIGEST
    )


def _base_name(name: str) -> str:
    for suffix in (TEXT_SUFFIX, HTML_SUFFIX, ".j2"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _label(loader: jinja2.BaseLoader, name: str) -> str:
    if isinstance(loader, jinja2.PackageLoader):
        return f"package:{name}"
    if isinstance(loader, jinja2.FileSystemLoader):
        return next((str(Path(p, name)) for p in loader.searchpath if Path(p, name).is_file()), name)
    return name


def _read_files(templates: Templates) -> tuple[list[TemplateFile], list[TemplateProblem]]:
    """Every file of every loader, shadowed or not: a queue's folder and the shared one are checked as they are."""
    files: list[TemplateFile] = []
    problems: list[TemplateProblem] = []
    for loader in _loaders(templates):
        package = isinstance(loader, jinja2.PackageLoader)
        if isinstance(loader, jinja2.FileSystemLoader):
            problems += [
                TemplateProblem(str(folder), None, "templates folder does not exist")
                for folder in loader.searchpath
                if not Path(folder).is_dir()
            ]
        for name in sorted(loader.list_templates()):
            if not name.endswith(".j2"):
                continue
            try:
                source, filename, _ = loader.get_source(templates.env, name)
            except jinja2.TemplateNotFound:  # removed while we looked
                continue
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(TemplateProblem(_label(loader, name), None, f"cannot read: {exc}"))
                continue
            label = f"package:{name}" if package else (filename or _label(loader, name))
            files.append(TemplateFile(name, label, filename, source))
    return files, problems


def checked_files(config: Config) -> list[str]:
    """The distinct template files `check_config_templates` reads, as problems would name them."""
    seen: dict[str, None] = {}
    for templates in queue_templates(config).values():
        for f in _read_files(templates)[0]:
            seen.setdefault(f.file, None)
    return list(seen)


# --- sample values: what template_context makes of a typical case, so its keys are the known variables

_REQUESTER = Address("alice@example.net", "Alice Example")
_SAMPLE_TIME = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
_SAMPLE_CASE = Case(
    id=42, queue="help", subject="The printer on floor 3 is jammed", requester=_REQUESTER,
    status=CaseStatus.OPEN, created_at=_SAMPLE_TIME, updated_at=_SAMPLE_TIME, priority="normal",
    owner="bob@example.org", ccs=(Address("carol@example.net", "Carol"),),
)  # fmt: skip
_SAMPLE_MESSAGE = InboundMessage(
    raw=b"", content_hash="0" * 64, message_id="<sample@example.net>", in_reply_to=(), references=(),
    from_=_REQUESTER, reply_to=(), to=(Address("help@example.org"),), cc=(), subject=_SAMPLE_CASE.subject,
    date=_SAMPLE_TIME, text="It jams on every page.", html=None,
    attachments=(Attachment("jam.jpg", "image/jpeg", 4, b"\xff\xd8\xff\xe0"),), headers={}, return_path=_REQUESTER.addr,
)  # fmt: skip
# Outside working hours, with a typical answer time: every `team` variable has a value to check against.
_SAMPLE_TEAM = TeamView(
    datetime(2026, 1, 10, 10, tzinfo=UTC), False, datetime(2026, 1, 12, 8, tzinfo=UTC), "Europe/Berlin", 2 * 3600.0
)
_SAMPLE_QUEUE = QueueView("help", "help@example.org", "Example Help Desk", "[Help #{id}]", "end", _SAMPLE_TEAM)


def sample_context(purpose: str) -> dict[str, Any]:
    """The context render gives the template `purpose`, for the sample case and message (the digest: its own)."""
    if purpose == DIGEST:
        return digest_context(sample_digest())
    action = QueueMail(purpose, purpose, (_REQUESTER,), text="It jams on every page.", attach=True)
    tag = render_tag(_SAMPLE_QUEUE.subject_tag, _SAMPLE_CASE.id)
    return template_context(action, _SAMPLE_CASE, _SAMPLE_MESSAGE, _SAMPLE_QUEUE, tag)


# --- the checks


def _expr(node: nodes.Node) -> str:
    match node:
        case nodes.Name():
            return str(node.name)
        case nodes.Getattr():
            return f"{_expr(node.node)}.{node.attr}"
        case nodes.Getitem(arg=nodes.Const(value=key)):
            return f"{_expr(node.node)}[{key!r}]"
    return "(expression)"


def _constant_key(node: nodes.Getattr | nodes.Getitem) -> object:
    if isinstance(node, nodes.Getattr):
        return node.attr
    return node.arg.value if isinstance(node.arg, nodes.Const) else _MISSING


def _sample_value(node: nodes.Node, bound: dict[str, Any]) -> Any:
    """What `node` is in the sample context, following constant attributes and keys; _MISSING if unknown."""
    if isinstance(node, nodes.Name):
        return bound.get(node.name, _MISSING)
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        base = _sample_value(node.node, bound)
        key = _constant_key(node)
        if isinstance(base, dict) and isinstance(key, str):
            return base.get(key, _MISSING)
        if isinstance(base, list | tuple) and isinstance(key, int) and -len(base) <= key < len(base):
            return base[key]
    return _MISSING


def _guarded(ast: nodes.Template) -> set[str]:
    """What a template tests with `is defined` or gives a `default` ("case.due", "due"): optional, not a typo."""
    guarded = [n.node for n in ast.find_all(nodes.Test) if n.name in _GUARD_TESTS]
    guarded += [n.node for n in ast.find_all(nodes.Filter) if n.name in _GUARD_FILTERS and n.node is not None]
    return {_expr(n) for n in guarded}


def _bindings(ast: nodes.Template, context: dict[str, Any], own: set[str]) -> dict[str, Any]:
    """Sample values of the context names the template does not set itself, and of its simple loop variables."""
    bound = {name: value for name, value in context.items() if name not in own}
    stores = [n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")]
    for loop in ast.find_all(nodes.For):  # outer loops first, so nested loops over them resolve
        target = loop.target
        if isinstance(target, nodes.Name) and stores.count(target.name) == 1:
            items = _sample_value(loop.iter, bound)
            if isinstance(items, list | tuple) and items:
                bound[target.name] = items[0]
    return bound


def _unknown_names(
    ast: nodes.Template, file: TemplateFile, context: dict[str, Any], env: jinja2.Environment
) -> Iterator[TemplateProblem]:
    guarded = _guarded(ast)
    own = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    undeclared = meta.find_undeclared_variables(ast) - env.globals.keys() - guarded
    known = ", ".join(sorted(context))
    for name in sorted(undeclared - context.keys()):
        line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == name and n.ctx == "load"), None)
        yield TemplateProblem(file.file, line, f'unknown variable "{name}" (known: {known})')
    bound = _bindings(ast, context, own)
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        key = _constant_key(node)
        base = _sample_value(node.node, bound)
        if not isinstance(base, dict) or not isinstance(key, str) or key in base:
            continue
        if _expr(node) in guarded or (isinstance(node, nodes.Getattr) and hasattr(base, key)):  # `case.items()`
            continue
        has = ", ".join(sorted(base)) or "nothing"
        yield TemplateProblem(
            file.file, node.lineno, f'unknown variable "{_expr(node)}" ({_expr(node.node)} has: {has})'
        )


def _traceback_line(exc: BaseException, filename: str | None) -> int | None:
    """The line of this template where rendering failed: Jinja rewrites tracebacks to template lines."""
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == (filename or "<template>")]
    return lines[-1] if lines else None


def _check_file(env: jinja2.Environment, file: TemplateFile) -> list[TemplateProblem]:
    try:
        ast = env.parse(file.source, file.name, file.filename)
        code = env.compile(ast, file.name, file.filename)  # unknown filters and tests show here
    except jinja2.TemplateSyntaxError as exc:
        return [TemplateProblem(file.file, exc.lineno, exc.message or str(exc))]
    context = sample_context(_base_name(file.name))
    problems = sorted(_unknown_names(ast, file, context, env), key=lambda p: p.line or 0)
    if problems:
        return problems
    # Static checks cannot see sandbox refusals or type errors: render the sample too.
    try:
        env.template_class.from_code(env, code, env.make_globals(None)).render(context)
    except Exception as exc:
        detail = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
        line = exc.lineno if isinstance(exc, jinja2.TemplateSyntaxError) else _traceback_line(exc, file.filename)
        return [TemplateProblem(file.file, line, f"fails on a sample case: {type(exc).__name__}: {detail}")]
    return []


def check_templates(templates: Templates) -> list[TemplateProblem]:
    """Every problem in the templates this queue can see; an empty list when all would render."""
    files, problems = _read_files(templates)
    for file in files:
        problems += _check_file(templates.env, file)
    visible = visible_templates(templates)
    for file in files:
        if file.name.endswith(HTML_SUFFIX):
            text = file.name.removesuffix(HTML_SUFFIX) + TEXT_SUFFIX
            if text not in visible:
                problems.append(
                    TemplateProblem(file.file, None, f"no {text} beside this HTML template: mail needs a text part")
                )
    return problems


def _unique(problems: Iterable[TemplateProblem]) -> list[TemplateProblem]:
    return list(dict.fromkeys(problems))


def check_config_templates(config: Config) -> list[TemplateProblem]:
    """The problems of every queue's templates; a file shared by several queues is reported once."""
    distinct = {id(t): t for t in queue_templates(config).values()}.values()  # queues sharing folders: once
    return _unique(p for templates in distinct for p in check_templates(templates))


# --- preview


def preview_mail(
    name: str, case: Case, msg: InboundMessage, config: Config, *, now: datetime, html: bool = False
) -> str:
    """The mail template `name` makes for this case and message, to the requester: headers, then one body part."""
    view = queue_view(config, case.queue)
    key = config.trust.key()
    reply_to = reply_address(view.address, case.id, key) if name in STAFF_PURPOSES and key else None
    action = QueueMail(name, name, (case.requester,), text=strip_reply(msg.text))
    out = compose(
        action, case, msg, templates=queue_templates(config)[case.queue], queue=view,
        message_id=PREVIEW_MESSAGE_ID, now=now, reply_to=reply_to,
    )  # fmt: skip
    mail = message_from_bytes(out.raw, policy=default_policy)
    assert isinstance(mail, EmailMessage)
    lines = [f"{field}: {value}" for field, value in mail.items()]
    body = mail.get_body(("html",) if html else ("plain",))
    content = body.get_content().replace("\r\n", "\n") if isinstance(body, EmailMessage) else ""
    return "\n".join(lines) + "\n\n" + content + ("" if content.endswith("\n") else "\n")
