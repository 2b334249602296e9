"""Configuration: the YAML schema, loading, and validation with key paths.

`load_config(path)` returns a frozen Config or raises ConfigError listing every
problem as (key path, reason); the CLI turns that into exit code 2. Relative
paths in the file are taken relative to the file's own folder.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import date
from email.headerregistry import Address as HeaderAddress
from enum import StrEnum
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

from mailsvc.digest import DigestSchedule
from mailsvc.errors import ConfigError
from mailsvc.hours import BusinessHours
from mailsvc.scrub import protect


class TlsMode(StrEnum):
    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    NONE = "none"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _one_source(model: BaseModel, names: tuple[str, str, str]) -> list[str]:
    """The secret sources given (inline, environment, file); more than one is an error."""
    given = [k for k in names if getattr(model, k)]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(names)} (got {', '.join(given)})")
    return given


def _read_secret(inline: SecretStr | None, env: str | None, file: str | None) -> str:
    """A secret from where the config says: inline, an environment variable, or a file.

    Each one is handed to `scrub.protect`, so no log line or error shows it."""
    if inline is not None:
        value = inline.get_secret_value()
    elif env:
        value = os.environ.get(env, "")
    elif file:
        value = Path(os.path.expandvars(file)).read_text().strip()
    else:
        value = ""
    protect(value)
    return value


def _source_problems(
    section: str, env_key: str, env: str | None, file_key: str, file: str | None
) -> list[tuple[str, str]]:
    """An environment variable that is not set, a file that cannot be read."""
    if env and env not in os.environ:
        return [(f"{section}.{env_key}", f"environment variable {env} is not set")]
    if file:
        path = Path(os.path.expandvars(file))
        if not path.is_file():
            return [(f"{section}.{file_key}", f"cannot read {path}: no such file")]
        if not os.access(path, os.R_OK):
            return [(f"{section}.{file_key}", f"cannot read {path}: permission denied")]
    return []


OAUTH2_PROVIDERS = ("microsoft", "google", "generic")
OAUTH2_FLOWS = ("device_code", "authorization_code", "client_credentials")


class OAuth2Config(_Strict):
    """How an account gets its OAuth2 tokens (see README, "Microsoft 365 and Google Workspace")."""

    provider: Literal["microsoft", "google", "generic"]
    # Microsoft: the directory (tenant) ID or domain; "organizations" for any work account.
    tenant: str | None = None
    client_id: str = Field(min_length=1)
    # Confidential clients only (always for client_credentials); public clients have none.
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    # Default: the provider's (see mailsvc.oauth.providers).
    scopes: tuple[str, ...] | None = None
    flow: Literal["device_code", "authorization_code", "client_credentials"] = "device_code"
    # Microsoft: the sign-in host (https://login.microsoftonline.com; a national cloud's, or a test's).
    authority: str | None = None
    # Preset for microsoft and google; required for generic.
    token_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    authorization_endpoint: str | None = None
    # authorization_code: the loopback port the browser is sent back to (0: any free port).
    redirect_port: int = Field(default=0, ge=0, le=65535)
    # Where the tokens are kept (mode 0600); default: beside the store, one file per user and client.
    token_file: Path | None = None
    # CA bundle for the identity provider's HTTPS; default: the system's.
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> OAuth2Config:
        _one_source(self, ("client_secret", "client_secret_env", "client_secret_file"))
        has_secret = bool(self.client_secret or self.client_secret_env or self.client_secret_file)
        if self.provider == "microsoft" and not self.tenant:
            raise ValueError("provider microsoft: give tenant (the directory ID or domain)")
        if self.provider == "google" and self.flow == "device_code":
            raise ValueError("provider google: Google's device flow does not grant the mail scope; "
                             "use flow: authorization_code (an OAuth client of type Desktop app)")  # fmt: skip
        if self.provider != "microsoft" and self.tenant:
            raise ValueError(f"tenant is for provider microsoft, not {self.provider}")
        if self.flow == "client_credentials":
            if self.provider == "google":
                raise ValueError("flow client_credentials: Google has no app-only mail access (use a service "
                                 "account's domain-wide delegation elsewhere, or device_code)")  # fmt: skip
            if not has_secret:
                raise ValueError("flow client_credentials needs client_secret, client_secret_env or "
                                 "client_secret_file")  # fmt: skip
        if self.provider == "generic":
            needed = {"token_endpoint": self.token_endpoint}
            if self.flow == "device_code":
                needed["device_authorization_endpoint"] = self.device_authorization_endpoint
            if self.flow == "authorization_code":
                needed["authorization_endpoint"] = self.authorization_endpoint
            missing = [k for k, v in needed.items() if not v]
            if missing:
                raise ValueError(f"provider generic, flow {self.flow}: give {', '.join(missing)}")
        for key in ("authority", "token_endpoint", "device_authorization_endpoint", "authorization_endpoint"):
            url = getattr(self, key)
            if url and not url.startswith("https://"):
                raise ValueError(f"{key} must be an https:// URL, not {url!r}")
        return self

    def secret(self) -> str:
        """The client secret, read now (empty for a public client)."""
        return _read_secret(self.client_secret, self.client_secret_env, self.client_secret_file)


class _Credentials(_Strict):
    """A user and how it logs in: exactly one source of its password, or OAuth2."""

    user: str | None = None
    auth: Literal["password", "oauth2"] = "password"
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = None
    oauth2: OAuth2Config | None = None

    @model_validator(mode="after")
    def _one_password_source(self) -> _Credentials:
        given = _one_source(self, ("password", "password_env", "password_file"))
        if self.auth == "oauth2":
            if given:
                raise ValueError(f"auth is oauth2: leave out {', '.join(given)}")
            if self.oauth2 is None:
                raise ValueError("auth is oauth2: give the oauth2 section")
            if not self.user:
                raise ValueError("auth is oauth2: give user (the mailbox address)")
            return self
        if self.oauth2 is not None:
            raise ValueError("an oauth2 section needs auth: oauth2")
        if self.user and not given:
            raise ValueError("user is set: give password, password_env or password_file")
        return self

    def secret(self) -> str:
        """The password, read now from where the config says (empty when none)."""
        return _read_secret(self.password, self.password_env, self.password_file)


class _Server(_Credentials):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: TlsMode = TlsMode.IMPLICIT
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> _Server:
        if self.tls is TlsMode.NONE and not is_loopback(self.host):
            raise ValueError(f"tls: none is allowed only for a loopback host, not {self.host!r}")
        return self


class ImapConfig(_Server):
    folder: str = "INBOX"
    # null: processed mail stays in the watched folder, marked \\Seen and with `done_keyword`.
    processed_folder: str | None = "Processed"
    quarantine_folder: str = "Quarantine"
    junk_folder: str = "Junk"
    done_keyword: str = Field(default="$MailsvcDone", pattern=r"^[A-Za-z$][A-Za-z0-9_$.-]{0,63}$")
    # The first start on a folder that already holds mail: what happens to mail older than backlog_age.
    backlog: Literal["file", "skip", "answer"] = "file"
    backlog_age: float = Field(default=86400.0, ge=0)
    idle: bool = True
    poll_interval: float = Field(default=60.0, gt=0)
    idle_renew: float = Field(default=25 * 60.0, gt=0, le=29 * 60.0)
    fetch_batch: int = Field(default=200, ge=1, le=5000)
    # Reconnecting after a failure: the first delay, doubling (with jitter) up to the cap.
    retry_base: float = Field(default=1.0, gt=0)
    retry_cap: float = Field(default=60.0, gt=0)

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls is TlsMode.IMPLICIT else 143)

    @field_validator("backlog_age", mode="before")
    @classmethod
    def _backlog_duration(cls, value: Any) -> Any:
        return 0.0 if value == 0 else parse_duration(value)


class SmtpConfig(_Server):
    tls: TlsMode = TlsMode.STARTTLS
    max_attempts_age: float = Field(default=2 * 86400.0, gt=0, description="seconds to keep retrying")
    retry_base: float = Field(default=30.0, gt=0)
    retry_cap: float = Field(default=3600.0, gt=0)

    @property
    def effective_port(self) -> int:
        return self.port or {TlsMode.IMPLICIT: 465, TlsMode.STARTTLS: 587, TlsMode.NONE: 25}[self.tls]


_TAG_FIELD = re.compile(r"\{id\}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or text like "3d", "4h", "1d 12h", "90m", "1w"."""
    if isinstance(value, bool):
        # YAML reads yes/no/on/off as booleans: `on` is not one second, and `off` is not null (turned off).
        raise ValueError(f"not a duration: {value!r} (use e.g. 3d, 4h, 1d 12h, 90m, or seconds)")
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        raise ValueError(f"not a duration: {value!r} (use e.g. 3d, 4h, 1d 12h, 90m, or seconds)")
    return float(sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts))


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


class StaffMember(_Strict):
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


class BusinessHoursConfig(_Strict):
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


class TimersConfig(_Strict):
    """Waiting on the requester, and resolved cases: calendar time. Null turns a timer off."""

    remind_after: Duration | None = 3 * 86400.0
    auto_resolve_after: Duration | None = 7 * 86400.0
    close_after: Duration | None = 7 * 86400.0

    @model_validator(mode="after")
    def _remind_first(self) -> TimersConfig:
        if self.remind_after and self.auto_resolve_after and self.remind_after >= self.auto_resolve_after:
            raise ValueError("remind_after must be shorter than auto_resolve_after")
        return self


class SlaConfig(_Strict):
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


class SpamHeaderRule(_Strict):
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


class SpamConfig(_Strict):
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


class SendersConfig(_Strict):
    """Who may open cases in a queue: addresses, domains, `*.example.org` for subdomains."""

    allow: tuple[SenderPattern, ...] = ()
    deny: tuple[SenderPattern, ...] = ()
    no_ack: tuple[SenderPattern, ...] = ()
    # With an allow list, mail from anyone else: filed as junk, or answered with the `refused` template.
    others: Literal["junk", "refuse"] = "refuse"


class RetentionConfig(_Strict):
    """Closed cases older than `closed_after` lose their mail's content; a tombstone stays."""

    closed_after: Duration | None = None


class QueueConfig(_Strict):
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


class TrustConfig(_Strict):
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
        _one_source(self, ("token_key", "token_key_env", "token_key_file"))
        if self.token_key is not None and len(self.token_key.get_secret_value()) < 16:
            raise ValueError("token_key must be at least 16 characters")
        return self

    def key(self) -> bytes:
        return _read_secret(self.token_key, self.token_key_env, self.token_key_file).encode()


class StoreConfig(_Strict):
    """SQLite (`path`, the embedded default) or PostgreSQL (`url`, for several instances): exactly one."""

    path: Path | None = None
    # Seconds a write waits for another process's transaction before the store counts as unavailable.
    busy_timeout: float = Field(default=30.0, gt=0, le=600)
    # postgresql://user@host:port/dbname, without the password: that comes from one of the three below.
    url: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = None
    # Seconds after which another instance takes over a dead one's mailbox, outgoing mail and timers. At least
    # 3: TCP keepalives count whole seconds, and a silent peer is given up after idle + 2 probes.
    failover: float = Field(default=30.0, ge=3, le=3600)
    # Connections each process keeps to PostgreSQL at most (one per component and thread at a time).
    pool_size: int = Field(default=8, ge=2, le=100)

    @model_validator(mode="after")
    def _one_backend(self) -> StoreConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give path (SQLite) or url (PostgreSQL), one of them")
        given = _one_source(self, ("password", "password_env", "password_file"))
        if self.url is None:
            if given:
                raise ValueError(f"{given[0]} belongs to a PostgreSQL url; path needs none")
            return self
        scheme, sep, rest = self.url.partition("://")
        if scheme not in ("postgresql", "postgres") or not sep or not rest.split("/", 1)[0]:
            raise ValueError("url must look like postgresql://user@host:port/dbname")
        if ":" in rest.split("@", 1)[0] and "@" in rest:
            raise ValueError("url must not hold the password: give password_file or password_env")
        return self

    def secret(self) -> str:
        """The database password, read now (empty when none is configured)."""
        return _read_secret(self.password, self.password_env, self.password_file)

    @property
    def where(self) -> str:
        """The store for people and logs: the file, or the URL (which never holds the password)."""
        return str(self.path) if self.path is not None else str(self.url)


class AutoMailConfig(_Strict):
    """Automatic mail (acknowledgements, reminders) to one address: a limit that catches
    auto-responders the headers do not reveal."""

    max_per_hour: int = Field(default=5, ge=1)
    # No automatic mail to a sender without an aligned dkim/spf/dmarc pass in our trusted
    # Authentication-Results (a dmarc=fail never gets one, whatever this says).
    require_authenticated: bool = False


class LimitsConfig(_Strict):
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


class LogConfig(_Strict):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(_Strict):
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


class ReportConfig(_Strict):
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


class Config(_Strict):
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
    servers: list[tuple[str, _Credentials]] = [("imap", config.imap), ("smtp", config.smtp)]
    servers += [(f"queues.{n}.imap", q.imap) for n, q in config.queues.items() if q.imap]
    for name, server in servers:
        problems += _source_problems(name, "password_env", server.password_env, "password_file", server.password_file)
        if server.oauth2 is not None:
            o = server.oauth2
            problems += _source_problems(
                f"{name}.oauth2", "client_secret_env", o.client_secret_env, "client_secret_file", o.client_secret_file
            )
    store = config.store
    problems += _source_problems("store", "password_env", store.password_env, "password_file", store.password_file)
    trust = config.trust
    found = _source_problems("trust", "token_key_env", trust.token_key_env, "token_key_file", trust.token_key_file)
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
