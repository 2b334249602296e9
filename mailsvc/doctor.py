"""`mailsvc doctor`: checks a configuration against the real servers, in the order a connection fails.

configuration; per account DNS, TCP, TLS (certificate subject and days to expiry), login (password or
token refresh); the IMAP folders (created with --fix), IDLE and MOVE; SMTP greeting, STARTTLS,
authentication and SMTPUTF8; the store's schema; the templates; the clock against a server's. It never
sends mail and never prints a secret. Exit 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sqlite3
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiosmtplib
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from mailsvc.config import Config, load_config
from mailsvc.config_servers import ImapConfig, SmtpConfig, TlsMode
from mailsvc.credentials import CredentialProvider, OAuth2Provider, PasswordProvider, accounts, keeper_for
from mailsvc.errors import ConfigError, CredentialError, OAuthError, StoreUnavailable
from mailsvc.imap import login as imap_login
from mailsvc.imap import quiet_imaplib
from mailsvc.log import configure
from mailsvc.oauth.providers import endpoints_of
from mailsvc.smtp import smtp_login
from mailsvc.store.migrate import latest_version
from mailsvc.templatecheck import check_config_templates

# Beyond this the clock is reported as wrong: token lifetimes and Date headers go astray.
CLOCK_TOLERANCE = 60.0


class CheckFailed(Exception):
    """A check that did not pass: what was seen, and what to do."""

    def __init__(self, seen: str, hint: str) -> None:
        super().__init__(seen)
        self.hint = hint


@dataclass(frozen=True)
class Outcome:
    name: str
    state: str  # ok, FAIL, skip, warn
    detail: str
    hint: str = ""


class Doctor:
    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.outcomes: list[Outcome] = []

    def _report(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.out(f"[{outcome.state:^4}] {outcome.name}: {outcome.detail}")
        if outcome.hint:
            self.out(f"       hint: {outcome.hint}")

    def check(self, name: str, run: Callable[[], str]) -> bool:
        try:
            detail = run()
        except CheckFailed as exc:
            self._report(Outcome(name, "FAIL", str(exc), exc.hint))
            return False
        self._report(Outcome(name, "ok", detail))
        return True

    def fail(self, name: str, failure: CheckFailed) -> None:
        self._report(Outcome(name, "FAIL", str(failure), failure.hint))

    def warn(self, name: str, detail: str, hint: str = "") -> None:
        self._report(Outcome(name, "warn", detail, hint))

    def skip(self, name: str, why: str) -> None:
        self._report(Outcome(name, "skip", why))

    @property
    def failures(self) -> int:
        return sum(o.state == "FAIL" for o in self.outcomes)


def _cert_facts(cert: Any) -> str:
    if not cert:
        return "no certificate seen"
    subject = dict(x[0] for x in cert.get("subject", ()))
    not_after = ssl.cert_time_to_seconds(str(cert["notAfter"]))
    days = int((not_after - time.time()) // 86400)
    return f"certificate {subject.get('commonName', '?')}, expires in {days} days"


def _tls_failure(server: ImapConfig | SmtpConfig, key: str, exc: BaseException) -> CheckFailed:
    where = f"{server.host}:{server.effective_port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        if "mismatch" in reason.lower():
            hint = f"the certificate does not name {server.host}: set {key}.host to a name it carries"
        else:
            hint = f"set {key}.ca_file to the CA that signed the server's certificate (or fix the server's chain)"
        return CheckFailed(f"{where}: certificate not trusted: {reason}", hint)
    return CheckFailed(f"{where}: {type(exc).__name__}: {exc}", f"check {key}.tls and {key}.port")


def _dns_and_tcp(doctor: Doctor, key: str, server: ImapConfig | SmtpConfig) -> bool:
    port = server.effective_port

    def dns() -> str:
        try:
            found = socket.getaddrinfo(server.host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise CheckFailed(f"{server.host} does not resolve: {exc.strerror}", f"check {key}.host") from None
        return f"{server.host} resolves to {', '.join(sorted({str(f[4][0]) for f in found}))}"

    def tcp() -> str:
        start = time.monotonic()
        try:
            socket.create_connection((server.host, port), timeout=server.timeout).close()
        except OSError as exc:
            raise CheckFailed(f"{server.host}:{port}: {exc.strerror or exc}",
                              f"check {key}.port, and that a firewall lets mailsvc out") from None  # fmt: skip
        return f"{server.host}:{port} answers ({(time.monotonic() - start) * 1000:.0f} ms)"

    return doctor.check(f"{key}: DNS", dns) and doctor.check(f"{key}: TCP", tcp)


def _provider(config: Config, key: str) -> CredentialProvider:
    """Like the daemon's, but a failure mails nobody: the doctor only looks."""
    server = accounts(config)[key]
    if server.oauth2 is None:
        return PasswordProvider(server.user or "", server.secret)
    return OAuth2Provider(keeper_for(config, key))


def _login_failure(key: str, server: ImapConfig | SmtpConfig, exc: BaseException) -> CheckFailed:
    if isinstance(exc, OAuthError):
        return CheckFailed(f"token refresh for {server.user} refused: {exc}", exc.hint)
    if isinstance(exc, CredentialError):
        return CheckFailed(str(exc), "run `mailsvc oauth login`")
    if server.auth == "oauth2":
        hint = "the server refused the token: check the app's permissions for this mailbox and oauth2.scopes"
    else:
        hint = f"check {key}.user and the password"
    return CheckFailed(f"{server.user} refused: {exc}", hint)


def check_imap(doctor: Doctor, config: Config, key: str, imap: ImapConfig, fix: bool) -> None:
    names = ("TLS", "login", "folders", "IDLE and MOVE")
    if not _dns_and_tcp(doctor, key, imap):
        for name in names:
            doctor.skip(f"{key}: {name}", "no connection")
        return
    holder: list[IMAPClient] = []

    def tls() -> str:
        context = ssl.create_default_context(cafile=str(imap.ca_file) if imap.ca_file else None)
        try:
            client = IMAPClient(imap.host, port=imap.effective_port, ssl=imap.tls is TlsMode.IMPLICIT,
                                ssl_context=context, timeout=imap.timeout)  # fmt: skip
            quiet_imaplib(client)
            holder.append(client)
            if imap.tls is TlsMode.STARTTLS:
                client.starttls(context)
        except (ssl.SSLError, OSError, IMAPClientError) as exc:
            raise _tls_failure(imap, key, exc) from None
        if imap.tls is TlsMode.NONE:
            return "none (tls: none, loopback only)"
        sock = client.socket()
        assert isinstance(sock, ssl.SSLSocket)
        return f"{imap.tls.value}, {sock.version()}, {_cert_facts(sock.getpeercert())}"

    if not doctor.check(f"{key}: TLS", tls):
        for name in names[1:]:
            doctor.skip(f"{key}: {name}", "no TLS")
        return
    client = holder[0]
    try:
        _imap_session(doctor, config, key, imap, client, fix=fix)
    finally:
        try:
            client.logout()
        except (IMAPClientError, OSError):
            client.shutdown()


def _imap_session(doctor: Doctor, config: Config, key: str, imap: ImapConfig, client: IMAPClient, *, fix: bool) -> None:
    def login() -> str:
        try:
            imap_login(client, _provider(config, key))
        except (IMAPClientError, CredentialError) as exc:
            raise _login_failure(key, imap, exc) from None
        return f"{imap.user} logged in ({imap.auth})"

    if not doctor.check(f"{key}: login", login):
        for name in ("folders", "IDLE and MOVE"):
            doctor.skip(f"{key}: {name}", "not logged in")
        return

    def folders() -> str:
        folders = (imap.folder, imap.processed_folder, imap.quarantine_folder, imap.junk_folder)
        wanted = [f for f in folders if f is not None]
        missing = [f for f in wanted if not client.folder_exists(f)]
        created = []
        if fix:
            created = [f for f in missing if f != imap.folder]
            for folder in created:
                client.create_folder(folder)
            missing = [f for f in missing if f == imap.folder]
        if imap.folder in missing:
            raise CheckFailed(f"missing: {', '.join(missing)}", f"the watched folder must exist: check {key}.folder")
        if missing:
            raise CheckFailed(f"missing: {', '.join(missing)}", "run `mailsvc doctor --fix` to create them")
        return f"{', '.join(wanted)} exist" + (f" (created {', '.join(created)})" if created else "")

    doctor.check(f"{key}: folders", folders)

    def capabilities() -> str:
        caps = {c.decode().upper() for c in client.capabilities()}
        if "IDLE" not in caps:
            raise CheckFailed("no IDLE", f"new mail is seen by polling every {imap.poll_interval:g}s")
        if "MOVE" not in caps:
            return "IDLE; no MOVE (COPY, then delete: slower, works)"
        return "IDLE, MOVE"

    doctor.check(f"{key}: IDLE and MOVE", capabilities)


async def _check_smtp(doctor: Doctor, config: Config, smtp_cfg: SmtpConfig) -> None:
    key = "smtp"
    context = ssl.create_default_context(cafile=str(smtp_cfg.ca_file) if smtp_cfg.ca_file else None)
    smtp = aiosmtplib.SMTP(hostname=smtp_cfg.host, port=smtp_cfg.effective_port,
                           use_tls=smtp_cfg.tls is TlsMode.IMPLICIT, start_tls=False,
                           tls_context=context, timeout=smtp_cfg.timeout)  # fmt: skip
    try:
        try:
            greeting = await smtp.connect()
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            cause = exc.__cause__ or exc.__context__ or exc
            failure = _tls_failure(smtp_cfg, key, cause if isinstance(cause, ssl.SSLError) else exc)
            doctor.fail(f"{key}: greeting", failure)
            return
        if not doctor.check(f"{key}: greeting", lambda: f"{greeting.code} {greeting.message.splitlines()[0]}"):
            return
        if smtp_cfg.tls is TlsMode.STARTTLS:
            try:
                await smtp.starttls(tls_context=context)
            except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
                cause = exc.__cause__ or exc
                failure = _tls_failure(smtp_cfg, key, cause if isinstance(cause, ssl.SSLError) else exc)
                doctor.fail(f"{key}: STARTTLS", failure)
                return
        transport = smtp.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        tls_state = {TlsMode.IMPLICIT: "implicit TLS", TlsMode.STARTTLS: "STARTTLS", TlsMode.NONE: "none"}
        doctor.check(f"{key}: STARTTLS", lambda: f"{tls_state[smtp_cfg.tls]}, {_cert_facts(peercert)}")
        if smtp_cfg.user:
            try:
                await smtp_login(smtp, _provider(config, key))
            except (aiosmtplib.SMTPException, CredentialError) as exc:
                failure = _login_failure(key, smtp_cfg, exc)
                doctor.fail(f"{key}: authentication", failure)
            else:
                doctor.check(f"{key}: authentication", lambda: f"{smtp_cfg.user} logged in ({smtp_cfg.auth})")
        else:
            doctor.check(f"{key}: authentication", lambda: "no user: a relay that needs no login")
        await _check_smtputf8(doctor, key, smtp)
    finally:
        if smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


async def _check_smtputf8(doctor: Doctor, key: str, smtp: aiosmtplib.SMTP) -> None:
    if smtp.is_ehlo_or_helo_needed:  # no login said EHLO, so no extension is known yet
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            pass  # the sender falls back to HELO, which offers no extension: reported below
        except (aiosmtplib.SMTPException, OSError) as exc:
            doctor.fail(f"{key}: SMTPUTF8", CheckFailed(f"EHLO failed: {exc}", f"check {key}.host and {key}.port"))
            return
    if smtp.supports_extension("smtputf8"):
        doctor.check(f"{key}: SMTPUTF8", lambda: "offered")
    else:
        doctor.warn(f"{key}: SMTPUTF8", "not offered: mail to addresses with non-ASCII local parts fails")


def check_smtp(doctor: Doctor, config: Config) -> None:
    if not _dns_and_tcp(doctor, "smtp", config.smtp):
        for name in ("greeting", "STARTTLS", "authentication", "SMTPUTF8"):
            doctor.skip(f"smtp: {name}", "no connection")
        return
    asyncio.run(_check_smtp(doctor, config, config.smtp))


def check_store(config: Config) -> str:
    if config.store.url is not None:
        return check_pg_store(config)
    path = config.store.path
    assert path is not None
    if not path.exists():
        if not path.parent.exists():
            raise CheckFailed(f"{path.parent} does not exist", "create it, writable by the service's user")
        return f"{path} does not exist yet: created at the first start"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise CheckFailed(f"{path}: {exc}", "check the file's owner and mode, and the disk") from None
    latest = latest_version()
    if version > latest:
        raise CheckFailed(f"schema version {version} is newer than this mailsvc ({latest})", "upgrade mailsvc")
    if version < latest:
        return f"{path} opens; schema version {version}, brought to {latest} at the next start"
    return f"{path} opens; schema version {version} is current"


def check_pg_store(config: Config) -> str:
    """Connects and reads the schema version; changes nothing (the daemon migrates at its start)."""
    from mailsvc.store.postgres import latest_pg_version, pg_schema_version  # noqa: PLC0415

    url = config.store.url
    assert url is not None
    try:
        version = pg_schema_version(url, config.store.secret())
    except StoreUnavailable as exc:
        raise CheckFailed(
            f"{url}: {exc}", "check that the database server is reachable, the user and password"
        ) from None
    latest = latest_pg_version()
    if version > latest:
        raise CheckFailed(f"schema version {version} is newer than this mailsvc ({latest})", "upgrade mailsvc")
    if version < latest:
        return f"{url} answers; schema version {version}, brought to {latest} at the next start"
    return f"{url} answers; schema version {version} is current"


def check_templates(config: Config) -> str:
    problems = check_config_templates(config)
    if problems:
        raise CheckFailed("; ".join(str(p) for p in problems[:3]), "run `mailsvc templates check` and fix them")
    return f"{len(config.queues)} queue(s) checked"


def _server_time(config: Config) -> tuple[str, datetime] | None:
    """A server's idea of now: an identity provider's HTTP Date header."""
    for server in accounts(config).values():
        if server.oauth2 is None:
            continue
        url = endpoints_of(server.oauth2).token
        context = ssl.create_default_context(cafile=str(server.oauth2.ca_file) if server.oauth2.ca_file else None)
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as response:  # noqa: S310 (https by config)
                date = response.headers.get("Date")
        except urllib.error.HTTPError as exc:
            date = exc.headers.get("Date")
        except (urllib.error.URLError, OSError):
            continue
        if date:
            return url.split("/")[2], parsedate_to_datetime(date)
    return None


def check_clock(config: Config) -> str:
    seen = _server_time(config)
    if seen is None:
        return "no server told its time (only identity providers do): not compared"
    host, theirs = seen
    offset = (datetime.now(UTC) - theirs).total_seconds()
    if abs(offset) > CLOCK_TOLERANCE:
        raise CheckFailed(f"{offset:+.0f}s against {host}", "synchronise the clock (systemd-timesyncd or chrony)")
    return f"{offset:+.0f}s against {host} (within the HTTP Date's one-second steps)"


def run_doctor(path: Path, fix: bool = False, out: Callable[[str], None] = print) -> int:
    doctor = Doctor(out)
    out(f"mailsvc doctor: {path}")
    holder: list[Config] = []

    def configuration() -> str:
        try:
            holder.append(load_config(path))
        except ConfigError as exc:
            problems = "; ".join(f"{p}: {r}" for p, r in exc.problems)
            raise CheckFailed(problems, f"run `mailsvc check-config {path}`") from None
        config = holder[0]
        return f"{len(config.queues)} queue(s), {len(accounts(config))} account(s)"

    if not doctor.check("configuration", configuration):
        out("1 problem found: the configuration comes first.")
        return 1
    config = holder[0]
    for key, server in accounts(config).items():
        if isinstance(server, ImapConfig):
            check_imap(doctor, config, key, server, fix)
    check_smtp(doctor, config)
    doctor.check("store", lambda: check_store(config))
    doctor.check("templates", lambda: check_templates(config))
    doctor.check("clock", lambda: check_clock(config))
    failures = doctor.failures
    out(f"{failures} problem(s) found." if failures else "all checks passed.")
    return 1 if failures else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    # The checklist says what the log events would: keep them out of it.
    configure("console", "critical")
    return run_doctor(args.config, args.fix)
