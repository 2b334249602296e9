"""The console script `mailsvc`: parses arguments and calls one function per command.

Exit codes: 0 done, 1 a runtime failure (server unreachable), 2 a bad
configuration or bad arguments.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from mailsvc import __version__
from mailsvc.cli_import import add_import_command
from mailsvc.cli_outbox import add_outbox_commands
from mailsvc.cli_retention import add_retention_commands
from mailsvc.cli_senders import add_senders_commands
from mailsvc.cli_store import add_store_commands
from mailsvc.config import Config, load_config
from mailsvc.daemon import load_service_config, run_forever, run_once
from mailsvc.digest import Period
from mailsvc.digest_job import write_html_report
from mailsvc.doctor import cmd_doctor
from mailsvc.errors import ConfigError, MailsvcError
from mailsvc.log import configure
from mailsvc.model import Case, CaseStatus
from mailsvc.oauth.commands import cmd_oauth_login, cmd_oauth_status
from mailsvc.parse import parse_message
from mailsvc.report import build_report, format_table, parse_since, period_start, to_json
from mailsvc.scrub import scrub
from mailsvc.store import STORE_ERRORS, StoreContract, open_store
from mailsvc.templatecheck import (
    check_config_templates,
    checked_files,
    preview_mail,
    queue_templates,
    template_names,
    visible_templates,
)
from mailsvc.trust import redact_tokens

DEFAULT_CONFIG = Path(os.environ.get("MAILSVC_CONFIG", "/etc/mailsvc/mailsvc.yaml"))


def _load(path: Path) -> Config:
    """The configuration with its templates checked, and logging set up from it."""
    config = load_service_config(path)
    configure(config.log.format, config.log.level)
    return config


def _when(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_check_config(args: argparse.Namespace) -> int:
    load_service_config(args.file)
    print(f"{args.file}: ok (configuration and templates)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return run_forever(_load(args.config), args.config)


def cmd_once(args: argparse.Namespace) -> int:
    return run_once(_load(args.config))


def cmd_cases_list(args: argparse.Namespace) -> int:
    store = open_store(load_config(args.config).store)
    junk = args.status == JUNK
    cases = store.list_cases(CaseStatus(args.status) if args.status and not junk else None, args.limit, junk=junk)
    marks = {c.id: _marks(store, c) for c in cases}
    if args.json:
        rows = [
            {"id": c.id, "queue": c.queue, "status": _status(c), "automatic": AUTOMATIC in marks[c.id],
             "unverified": UNVERIFIED in marks[c.id], "requester": c.requester.addr, "subject": c.subject,
             "updated_at": c.updated_at.isoformat()}
            for c in cases
        ]  # fmt: skip
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'ID':>6}  {'STATUS':<9} {'MARKS':<15} {'QUEUE':<10} {'UPDATED':<19}  {'REQUESTER':<28} SUBJECT")
    for c in cases:
        updated = c.updated_at.strftime("%Y-%m-%d %H:%M:%S")
        shown = ",".join(marks[c.id]) or "-"
        print(f"{c.id:>6}  {_status(c):<9} {shown:<15} {c.queue:<10} {updated:<19}  {c.requester.addr:<28} {c.subject}")
    return 0


AUTOMATIC = "auto"
UNVERIFIED = "unverified"


def _marks(store: StoreContract, case: Case) -> list[str]:
    """What sets the case apart in a listing: opened by automatic mail (no SLA until a person writes), and a
    requester whose mail failed sender authentication (no automatic mail to them until they write authenticated)."""
    marks = [AUTOMATIC] if case.automatic else []
    if store.unverified_senders(case.id, [case.requester.addr]):
        marks.append(UNVERIFIED)
    return marks


JUNK = "junk"


def _status(case: Case) -> str:
    """Junk is shown as the case's status; the workflow status it keeps comes back with #notspam."""
    return JUNK if case.junk else case.status.value


def show(text: str = "") -> None:
    """Print for people: reply-token signatures (credentials) in quoted mail are masked."""
    print(redact_tokens(text))


def cmd_cases_show(args: argparse.Namespace) -> int:
    store = open_store(load_config(args.config).store)
    case = store.case_by_id(args.id)
    if case is None:
        print(f"no case {args.id}", file=sys.stderr)
        return 1
    requester = f"{case.requester.name} <{case.requester.addr}>" if case.requester.name else case.requester.addr
    show(f"Case {case.id}: {case.subject}")
    show(f"  queue {case.queue}, status {_status(case)}, priority {case.priority}, owner {case.owner or '-'}")
    if case.junk:
        show(f"  junk: {case.junk} (the status it keeps: {case.status.value})")
    show(f"  requester {requester}")
    show(f"  opened {case.created_at:%Y-%m-%d %H:%M:%S}, updated {case.updated_at:%Y-%m-%d %H:%M:%S} (UTC)")
    show("\nMessages:")
    for m in store.case_messages(case.id):
        show(f"  #{m.id} {_when(m.received_at)} {m.kind} from {m.from_addr} ({m.size} bytes)")
        show(f"     Message-ID: {m.message_id or '-'}")
        for a in store.message_attachments(m.id):
            show(f"     attachment: {a.filename} ({a.content_type}, {a.size} bytes)")
        for line in m.body_text.strip().splitlines()[: args.lines]:
            show(f"     | {line}")
    show("\nOutgoing mail:")
    for o in store.case_outbox(case.id):
        error = f", last error: {o.last_error}" if o.last_error else ""
        show(
            f"  #{o.id} {o.purpose} to {', '.join(o.rcpt_to)}: {o.state.value} "
            f"after {o.attempts} attempt(s), queued {_when(o.created_at)}, sent {_when(o.sent_at)}{error}"
        )
        show(f"     Message-ID: {o.message_id}")
    show("\nTimers:")
    for t in store.case_timers(case.id):
        ended = f", {t.state.value} {_when(t.done_at)}" if t.done_at is not None else f", {t.state.value}"
        show(f"  {t.kind.value} due {_when(t.due_at)}{ended}")
    show("\nHistory:")
    for e in store.case_events(case.id):
        show(f"  {_when(e.at)} {e.event} {e.detail}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        since = period_start(now, parse_since(args.since) if args.since is not None else None)
    except ValueError as exc:
        print(f"mailsvc report: --since: {exc}", file=sys.stderr)
        return 2
    config = load_config(args.config)
    if args.queue is not None and args.queue not in config.queues:
        known = ", ".join(config.queues)
        print(f"mailsvc report: --queue: no queue {args.queue!r} in {args.config} (queues: {known})", file=sys.stderr)
        return 2
    if args.html is not None:
        try:
            digest = write_html_report(config, args.html, Period(since, now), now, args.queue)
        except OSError as exc:
            print(f"mailsvc report: --html: cannot write {args.html}: {exc.strerror}", file=sys.stderr)
            return 1
        print(
            f"{args.html}: {digest.current.total.cases} cases opened {since:%Y-%m-%d %H:%M} .. {now:%Y-%m-%d %H:%M} UTC"
        )
        return 0
    store = open_store(config.store)
    try:
        cases = store.report_cases(since.timestamp())
        failed = store.report_failed_mail(since.timestamp())
    finally:
        store.close()
    report = build_report(cases, failed, now=now, since=since, queue=args.queue, queues=list(config.queues))
    print(json.dumps(to_json(report), indent=2) if args.json else format_table(report))
    return 0


def cmd_templates_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    problems = check_config_templates(config)
    for problem in problems:
        print(problem)
    if problems:
        return 2
    print(f"{args.config}: ok, {len(checked_files(config))} templates checked for {len(config.queues)} queue(s)")
    return 0


def cmd_templates_preview(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = open_store(config.store)
    try:
        case = store.case_by_id(args.case)
        raw = store.case_latest_raw(case.id) if case is not None else None
    finally:
        store.close()
    if case is None:
        print(f"mailsvc templates preview: no case {args.case}", file=sys.stderr)
        return 1
    if case.queue not in config.queues:
        print(
            f"mailsvc templates preview: case {case.id} is in queue {case.queue!r}, unknown to {args.config}",
            file=sys.stderr,
        )
        return 1
    templates = queue_templates(config)[case.queue]
    kind = "html" if args.html else "txt"
    if not {f"{args.name}.txt.j2", f"{args.name}.{kind}.j2"} <= visible_templates(templates):
        names = ", ".join(template_names(templates, html=args.html))
        print(
            f"mailsvc templates preview: no {kind} template {args.name!r} for queue {case.queue}; available: {names}",
            file=sys.stderr,
        )
        return 2
    if raw is None:
        print(f"mailsvc templates preview: case {case.id} has no filed message to preview with", file=sys.stderr)
        return 1
    msg = parse_message(raw)
    # The Reply-To of a staff mail carries a valid reply token: masked, as `cases show` does.
    print(redact_tokens(preview_mail(args.name, case, msg, config, now=datetime.now(UTC), html=args.html)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailsvc", description="A help desk that lives in email.")
    parser.add_argument("--version", action="version", version=f"mailsvc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c", "--config", type=Path, default=DEFAULT_CONFIG,
            help=f"configuration file (default {DEFAULT_CONFIG}, or $MAILSVC_CONFIG)",
        )  # fmt: skip
        return p

    check = commands.add_parser("check-config", help="validate a configuration file (exit 2 when invalid)")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_check_config)
    with_config(commands.add_parser("run", help="run the daemon")).set_defaults(func=cmd_run)
    with_config(commands.add_parser("once", help="one pass over the mailbox, then exit")).set_defaults(func=cmd_once)

    cases = commands.add_parser("cases", help="inspect cases").add_subparsers(dest="cases_command", required=True)
    listing = with_config(cases.add_parser("list", help="list cases, newest first"))
    listing.add_argument("--status", choices=[*(s.value for s in CaseStatus), JUNK])
    listing.add_argument("--limit", type=int, default=200)
    listing.add_argument("--json", action="store_true", help="JSON for scripts")
    listing.set_defaults(func=cmd_cases_list)
    show = with_config(cases.add_parser("show", help="one case: messages, outgoing mail, history"))
    show.add_argument("id", type=int)
    show.add_argument("--lines", type=int, default=12, help="body lines shown per message")
    show.set_defaults(func=cmd_cases_show)

    templates = commands.add_parser("templates", help="check and preview mail templates")
    templates_commands = templates.add_subparsers(dest="templates_command", required=True)
    tcheck = templates_commands.add_parser("check", help="find template errors in every queue (exit 2 on any)")
    with_config(tcheck).set_defaults(func=cmd_templates_check)
    preview = with_config(templates_commands.add_parser("preview", help="render a template for a real case"))
    preview.add_argument("name", help='template name, e.g. "ack" or "relay"')
    preview.add_argument("--case", type=int, required=True, metavar="ID", help="the case to render it for")
    preview.add_argument("--html", action="store_true", help="show the HTML part instead of the text part")
    preview.set_defaults(func=cmd_templates_preview)

    _register_oauth_and_doctor(commands, with_config)
    add_outbox_commands(commands, with_config)
    add_senders_commands(commands, with_config)
    add_retention_commands(commands, with_config)
    add_import_command(commands, with_config)
    add_store_commands(commands, with_config)

    report = with_config(commands.add_parser("report", help="service figures: response times, SLA, satisfaction"))
    report.add_argument("--since", metavar="YYYY-MM-DD", help="cases created from this day on, UTC (default: 30 days)")
    report.add_argument("--queue", help="one queue only (default: every queue, and the total)")
    output = report.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="JSON for scripts")
    output.add_argument(
        "--html", type=Path, metavar="FILE", help="write the digest page (this period beside the one before) to FILE"
    )
    report.set_defaults(func=cmd_report)
    return parser


def _register_oauth_and_doctor(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    oauth = commands.add_parser("oauth", help="OAuth2 sign-in for Microsoft 365, Google and others")
    oauth_commands = oauth.add_subparsers(dest="oauth_command", required=True)
    login = with_config(oauth_commands.add_parser("login", help="sign in once, on this terminal; stores the tokens"))
    login.add_argument("--account", help="imap, smtp or queues.NAME.imap (default: every OAuth2 account)")
    login.set_defaults(func=cmd_oauth_login)
    status = oauth_commands.add_parser("status", help="each account's tokens: expiry, age, scopes, last error")
    with_config(status).set_defaults(func=cmd_oauth_status)
    doctor = with_config(commands.add_parser("doctor", help="check the configuration against the real servers"))
    doctor.add_argument("--fix", action="store_true", help="create missing folders")
    doctor.set_defaults(func=cmd_doctor)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        where = getattr(args, "file", None) or getattr(args, "config", "")
        for path, reason in exc.problems:
            print(f"{where}: {path}: {reason}", file=sys.stderr)
        return 2
    except STORE_ERRORS as exc:
        print(f"mailsvc: the store is unavailable: {scrub(str(exc))}", file=sys.stderr)
        return 1
    except MailsvcError as exc:
        print(f"mailsvc: {scrub(str(exc))}", file=sys.stderr)
        return 1
    return code


def entry() -> None:
    """The console script and `python -m mailsvc`: main(), then exit without the interpreter's last garbage
    collection over all the command made (0.3 s after filing 3,000 messages). Every store, connection and
    log is closed or flushed by then; atexit handlers still run."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
