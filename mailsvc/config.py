"""Configuration: the YAML schema, loading, and validation with key paths.

`load_config(path)` returns a frozen Config or raises ConfigError listing every
problem as (key path, reason); the CLI turns that into exit code 2. Relative
paths in the file are taken relative to the file's own folder.
"""

from __future__ import annotations

import os
import re
from datetime import date
from email.headerregistry import Address as HeaderAddress
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from mailsvc.config_servers import (
    Credentials,
    ImapConfig,
    SmtpConfig,
    StoreConfig,
    Strict,
    is_loopback,
    one_source,
    parse_duration,
    read_secret,
    source_problems,
)
from mailsvc.digest import DigestSchedule
from mailsvc.errors import ConfigError
from mailsvc.hours import BusinessHours

_TAG_FIELD = re.compile(r"\{id\}")


# Seconds; written in the file as seconds or as "3d", "4h", "90m".
Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


def _check_address(value: str) -> str:
    try:
        HeaderAddress(addr_spec=value)
    except (ValueError, IndexError, TypeError) as exc:
        raise ValueError(f"not a mail address: {value!r} ({exc})") from None
    if "@" not in value:
        raise ValueError(f"not a mail address: {value!r}")
    return value


class StaffMember(Strict):
    address: str
    name: str = ""

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return _check_address(value)


def _clock_time(value: Any) -> Any:
    """YAML 1.1 reads an unquoted 17:00 as the number 1020 (base 60): take it back as a time."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value


def _one_or_many(value: Any) -> Any:
    """`days: mon-fri` as well as `days: [mon-fri, sun]`."""
    return [value] if isinstance(value, str) else value


def _date_text(value: Any) -> Any:
    """YAML reads an unquoted 2026-12-25 as a date."""
    if isinstance(value, (list, tuple)):
        return [v.isoformat() if isinstance(v, date) else v for v in value]
    return value


class BusinessHoursConfig(Strict):
    """Working time that SLA clocks count (reminders and closing count calendar time)."""

    timezone: str
    days: Annotated[tuple[str, ...], BeforeValidator(_one_or_many)] = ("mon-fri",)
    start: Annotated[str, BeforeValidator(_clock_time)] = "09:00"
    end: Annotated[str, BeforeValidator(_clock_time)] = "17:00"
    holidays: Annotated[tuple[str, ...], BeforeValidator(_date_text)] = ()

    @model_validator(mode="after")
    def _valid_calendar(self) -> BusinessHoursConfig:
        self.calendar()
        return self

    def calendar(self) -> BusinessHours:
        return BusinessHours.parse(self.timezone, self.days, self.start, self.end, self.holidays)


class TimersConfig(Strict):
    """Waiting on the requester, and resolved cases: calendar time. Null turns a timer off."""

    remind_after: Duration | None = 3 * 86400.0
    auto_resolve_after: Duration | None = 7 * 86400.0
    close_after: Duration | None = 7 * 86400.0

    @model_validator(mode="after")
    def _remind_first(self) -> TimersConfig:
        if self.remind_after and self.auto_resolve_after and self.remind_after >= self.auto_resolve_after:
            raise ValueError("remind_after must be shorter than auto_resolve_after")
        return self


class SlaConfig(Strict):
    """First response: escalate when no staff reply is relayed within `first_response` working time."""

    first_response: Duration
    # Who is told; default: the queue's staff.
    escalate_to: tuple[str, ...] = ()
    # A second escalation this long (working time) after the first.
    second_level: Duration | None = None
    second_escalate_to: tuple[str, ...] = ()
    business_hours: BusinessHoursConfig | None = None

    @field_validator("escalate_to", "second_escalate_to")
    @classmethod
    def _valid_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_address(v) for v in value)


class SpamHeaderRule(Strict):
    """A header our receiving server adds: spam when its value matches `matches` (a regular
    expression, case-insensitive) or its leading number is at least `score_at_least`."""

    name: str = Field(pattern=r"^[!-9;-~]+$")
    matches: str | None = None
    score_at_least: float | None = None

    @model_validator(mode="after")
    def _one_test(self) -> SpamHeaderRule:
        if (self.matches is None) == (self.score_at_least is None):
            raise ValueError("give matches or score_at_least")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"matches: not a regular expression: {exc}") from None
        return self


class SpamConfig(Strict):
    """Spam verdicts of our own receiving server (the MTA must strip copies that come with the mail)."""

    # Whose headers to believe: spamassassin (X-Spam-Flag, X-Spam-Status), rspamd (X-Spam, X-Rspamd-Action).
    trust: tuple[Literal["spamassassin", "rspamd"], ...] = ("spamassassin", "rspamd")
    headers: tuple[SpamHeaderRule, ...] = ()


def _sender_pattern(value: str) -> str:
    text = value.strip().lower()
    bare = text.removeprefix("*.").removeprefix("@")
    if not bare or any(c in bare for c in " ,;<>()*") or bare.count("@") > 1 or "." not in bare.rpartition("@")[2]:
        raise ValueError(f"{value!r}: give an address, a domain, or *.domain for its subdomains")
    return text


SenderPattern = Annotated[str, AfterValidator(_sender_pattern)]


class SendersConfig(Strict):
    """Who may open cases in a queue: addresses, domains, `*.example.org` for subdomains."""

    allow: tuple[SenderPattern, ...] = ()
    deny: tuple[SenderPattern, ...] = ()
    no_ack: tuple[SenderPattern, ...] = ()
    # With an allow list, mail from anyone else: filed as junk, or answered with the `refused` template.
    others: Literal["junk", "refuse"] = "refuse"


class RetentionConfig(Strict):
    """Closed cases older than `closed_after` lose their mail's content; a tombstone stays."""

    closed_after: Duration | None = None


class QueueConfig(Strict):
    address: str
    display_name: str = "Help Desk"
    # Who answers this queue's cases by mail; their replies are relayed to the requester.
    staff: tuple[StaffMember, ...] = ()
    # Mail sent here by staff is an internal comment, never relayed.
    comment_address: str | None = None
    subject_tag: str = "[Help #{id}]"
    tag_position: Literal["end", "start"] = "end"
    templates_dir: Path | None = None
    timers: TimersConfig = TimersConfig()
    sla: SlaConfig | None = None
    # This queue's mail in its own folder of the main account, or in an account of its own;
    # without either, it arrives in the main mailbox and is routed by address.
    folder: str | None = None
    imap: ImapConfig | None = None
    senders: SendersConfig = SendersConfig()
    retention: RetentionConfig = RetentionConfig()

    @model_validator(mode="after")
    def _one_mailbox(self) -> QueueConfig:
        if self.folder and self.imap:
            raise ValueError("give folder (in the main account) or imap (an account of its own), not both")
        if self.sla and not (self.sla.escalate_to or self.staff):
            raise ValueError("sla: give escalate_to, or staff to escalate to")
        return self

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return _check_address(value)

    @field_validator("comment_address")
    @classmethod
    def _valid_comment_address(cls, value: str | None) -> str | None:
        return _check_address(value) if value is not None else None

    def staff_addresses(self) -> frozenset[str]:
        return frozenset(s.address.lower() for s in self.staff)

    @field_validator("subject_tag")
    @classmethod
    def _tag_has_id(cls, value: str) -> str:
        if len(_TAG_FIELD.findall(value)) != 1:
            raise ValueError("must contain {id} exactly once, e.g. '[Help #{id}]'")
        if any(c in value for c in "\r\n"):
            raise ValueError("must be one line")
        return value


class TrustConfig(Strict):
    """How a staff mail proves it is from staff (see README, "Trust")."""

    # Authentication-Results headers count only when added by these servers (authserv-id).
    authserv_ids: tuple[str, ...] = ()
    # Accept spf=pass (aligned with the From domain) as well as DKIM and DMARC.
    allow_spf: bool = False
    # Trust the From header alone: only for closed networks where nobody can forge it.
    trust_from_header: bool = False
    # The key that signs reply tokens (help+c42-<signature>@...): give one of these.
    token_key: SecretStr | None = None
    token_key_env: str | None = None
    token_key_file: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> TrustConfig:
        one_source(self, ("token_key", "token_key_env", "token_key_file"))
        if self.token_key is not None and len(self.token_key.get_secret_value()) < 16:
            raise ValueError("token_key must be at least 16 characters")
        return self

    def key(self) -> bytes:
        return read_secret(self.token_key, self.token_key_env, self.token_key_file).encode()


class AutoMailConfig(Strict):
    """Automatic mail (acknowledgements, reminders) to one address: a limit that catches
    auto-responders the headers do not reveal."""

    max_per_hour: int = Field(default=5, ge=1)
    # No automatic mail to a sender without an aligned dkim/spf/dmarc pass in our trusted
    # Authentication-Results (a dmarc=fail never gets one, whatever this says).
    require_authenticated: bool = False


class LimitsConfig(Strict):
    """Mail over these is stored raw and quarantined, never parsed further."""

    max_message_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_mime_depth: int = Field(default=20, ge=1, le=200)
    max_parts: int = Field(default=500, ge=1)
    max_headers: int = Field(default=1000, ge=10)


class MailboxSpec(BaseModel):
    """One watched folder: `key` names it in the store; `queue` is where its new cases open."""

    model_config = ConfigDict(frozen=True)
    key: str
    imap: ImapConfig
    queue: str | None


class LogConfig(Strict):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(Strict):
    """Prometheus metrics served by the daemon; loopback only, as the endpoint has no authentication."""

    listen: str

    @field_validator("listen")
    @classmethod
    def _loopback_listener(cls, value: str) -> str:
        host, colon, port = value.rpartition(":")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:9464 or [::1]:9464")
        if not is_loopback(bare) or bare == "localhost":
            raise ValueError(f"{bare!r} is not a loopback address (127.0.0.1 or [::1]): the metrics have no login")
        return value


class ReportConfig(Strict):
    """The digest: the report of the past period mailed to the team, once per period."""

    mail_to: tuple[str, ...] = Field(min_length=1)
    every: Literal["weekly", "daily"] = "weekly"
    # weekly: "Mon 08:00"; daily: "08:00"; in `timezone`
    at: Annotated[str | None, BeforeValidator(_clock_time)] = None
    timezone: str = "UTC"

    @field_validator("mail_to")
    @classmethod
    def _valid_addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_address(v) for v in value)

    @model_validator(mode="after")
    def _valid_schedule(self) -> ReportConfig:
        self.schedule()
        return self

    def schedule(self) -> DigestSchedule:
        return DigestSchedule.parse(self.every, self.at, self.timezone)


class Config(Strict):
    imap: ImapConfig
    smtp: SmtpConfig
    queues: dict[str, QueueConfig] = Field(min_length=1)
    store: StoreConfig
    templates_dir: Path | None = None
    our_addresses: tuple[str, ...] = ()
    trust: TrustConfig = TrustConfig()
    auto_mail: AutoMailConfig = AutoMailConfig()
    spam: SpamConfig = SpamConfig()
    limits: LimitsConfig = LimitsConfig()
    log: LogConfig = LogConfig()
    metrics: MetricsConfig | None = None
    report: ReportConfig | None = None

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: dict[str, QueueConfig]) -> dict[str, QueueConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
                raise ValueError(f"queue name {name!r}: use lower-case letters, digits, '-' and '_'")
        return value

    @model_validator(mode="after")
    def _each_folder_watched_once(self) -> Config:
        seen = {(self.imap.host, self.imap.user, self.imap.folder): "imap.folder"}
        for name, q in self.queues.items():
            imap = q.imap or self.imap
            where = (imap.host, imap.user, q.folder or imap.folder)
            if not (q.folder or q.imap):
                continue  # routed by address from the main folder
            if where in seen:
                raise ValueError(f"queues.{name}: its folder is already watched for {seen[where]}")
            seen[where] = f"queues.{name}"
        return self

    @model_validator(mode="after")
    def _staff_need_a_token_key(self) -> Config:
        t = self.trust
        if any(q.staff for q in self.queues.values()) and not (t.token_key or t.token_key_env or t.token_key_file):
            raise ValueError("trust: staff are configured, so give token_key, token_key_env or token_key_file")
        return self

    @model_validator(mode="after")
    def _digest_not_to_ourselves(self) -> Config:
        ours = sorted({a.lower() for a in self.report.mail_to} & self.own_addresses()) if self.report else []
        if ours:
            raise ValueError(f"report.mail_to: {', '.join(ours)} is our own address: the digest would come back in")
        return self

    def mailboxes(self) -> list[MailboxSpec]:
        """Every folder to watch: the main one (routed by address), then each queue's own."""
        found = [MailboxSpec(key=self.imap.folder, imap=self.imap, queue=None)]
        for name, q in self.queues.items():
            if q.imap is not None:
                found.append(MailboxSpec(key=f"{name}:{q.imap.folder}", imap=q.imap, queue=name))
            elif q.folder is not None:
                found.append(
                    MailboxSpec(key=q.folder, imap=self.imap.model_copy(update={"folder": q.folder}), queue=name)
                )
        return found

    @property
    def default_queue(self) -> str:
        return next(iter(self.queues))

    def own_addresses(self) -> frozenset[str]:
        """Every address that is us: loops to these are never answered."""
        found = {q.address.lower() for q in self.queues.values()}
        found.update(q.comment_address.lower() for q in self.queues.values() if q.comment_address)
        found.update(a.lower() for a in self.our_addresses)
        for imap in [self.imap, *(q.imap for q in self.queues.values() if q.imap)]:
            if imap.user and "@" in imap.user:
                found.add(imap.user.lower())
        return frozenset(found)


def _path_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


def _resolve_relative(raw: dict[str, Any], base: Path) -> None:
    """Make the file's relative paths relative to the file, not the working directory."""

    def fix(section: Any, key: str) -> None:
        if isinstance(section, dict) and isinstance(section.get(key), str):
            path = Path(os.path.expanduser(section[key]))
            section[key] = str(path if path.is_absolute() else base / path)

    fix(raw.get("store"), "path")
    fix(raw, "templates_dir")
    for server in _server_sections(raw):
        oauth2 = server.get("oauth2")
        fix(oauth2, "token_file")
        fix(oauth2, "ca_file")
    for queue in (raw.get("queues") or {}).values() if isinstance(raw.get("queues"), dict) else ():
        fix(queue, "templates_dir")


def _server_sections(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw imap, smtp and queues' imap sections that are mappings."""
    found = [raw.get("imap"), raw.get("smtp")]
    queues = raw.get("queues")
    if isinstance(queues, dict):
        found += [q.get("imap") for q in queues.values() if isinstance(q, dict)]
    return [s for s in found if isinstance(s, dict)]


def _check_secrets(config: Config) -> list[tuple[str, str]]:
    problems = []
    servers: list[tuple[str, Credentials]] = [("imap", config.imap), ("smtp", config.smtp)]
    servers += [(f"queues.{n}.imap", q.imap) for n, q in config.queues.items() if q.imap]
    for name, server in servers:
        problems += source_problems(name, "password_env", server.password_env, "password_file", server.password_file)
        if server.oauth2 is not None:
            o = server.oauth2
            problems += source_problems(
                f"{name}.oauth2", "client_secret_env", o.client_secret_env, "client_secret_file", o.client_secret_file
            )
    store = config.store
    problems += source_problems("store", "password_env", store.password_env, "password_file", store.password_file)
    trust = config.trust
    found = source_problems("trust", "token_key_env", trust.token_key_env, "token_key_file", trust.token_key_file)
    if not found and (trust.token_key_env or trust.token_key_file) and len(trust.key()) < 16:
        key = "trust.token_key_env" if trust.token_key_env else "trust.token_key_file"
        found = [(key, "the token key must be at least 16 characters")]
    return problems + found


def parse_config(raw: Any, base: Path) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError([("(top level)", "the file must hold a mapping of keys")])
    _resolve_relative(raw, base)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([(_path_of(e["loc"]), _reason(e)) for e in exc.errors()]) from None
    problems = _check_secrets(config)
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read {path}: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([("(file)", f"not UTF-8 text: byte {exc.start} cannot be decoded")]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([("(file)", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}")]) from None
    return parse_config(raw, path.resolve().parent)
