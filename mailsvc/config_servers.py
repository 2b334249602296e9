"""Configuration of what mailsvc connects to: the IMAP and SMTP servers, the store, OAuth2, and where each
secret comes from. `mailsvc.config` builds the whole Config from these sections and the desk's own.
"""

from __future__ import annotations

import ipaddress
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from mailsvc.scrub import protect

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


class TlsMode(StrEnum):
    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    NONE = "none"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def one_source(model: BaseModel, names: tuple[str, str, str]) -> list[str]:
    """The secret sources given (inline, environment, file); more than one is an error."""
    given = [k for k in names if getattr(model, k)]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(names)} (got {', '.join(given)})")
    return given


def read_secret(inline: SecretStr | None, env: str | None, file: str | None) -> str:
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


def source_problems(
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


class OAuth2Config(Strict):
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
        one_source(self, ("client_secret", "client_secret_env", "client_secret_file"))
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
        return read_secret(self.client_secret, self.client_secret_env, self.client_secret_file)


class Credentials(Strict):
    """A user and how it logs in: exactly one source of its password, or OAuth2."""

    user: str | None = None
    auth: Literal["password", "oauth2"] = "password"
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = None
    oauth2: OAuth2Config | None = None

    @model_validator(mode="after")
    def _one_password_source(self) -> Credentials:
        given = one_source(self, ("password", "password_env", "password_file"))
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
        return read_secret(self.password, self.password_env, self.password_file)


class Server(Credentials):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: TlsMode = TlsMode.IMPLICIT
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> Server:
        if self.tls is TlsMode.NONE and not is_loopback(self.host):
            raise ValueError(f"tls: none is allowed only for a loopback host, not {self.host!r}")
        return self


class ImapConfig(Server):
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


class SmtpConfig(Server):
    tls: TlsMode = TlsMode.STARTTLS
    max_attempts_age: float = Field(default=2 * 86400.0, gt=0, description="seconds to keep retrying")
    retry_base: float = Field(default=30.0, gt=0)
    retry_cap: float = Field(default=3600.0, gt=0)
    # SMTP sessions at most while a batch of mail drains (one more for every 10 mails due). 1, the default, suits
    # every server; a local relay (Postfix, Exim) takes 4 or more. Microsoft 365 allows 3 per mailbox.
    connections: int = Field(default=1, ge=1, le=20)

    @property
    def effective_port(self) -> int:
        return self.port or {TlsMode.IMPLICIT: 465, TlsMode.STARTTLS: 587, TlsMode.NONE: 25}[self.tls]


class StoreConfig(Strict):
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
    # 2: TCP keepalives count whole seconds, and a silent peer is given up after idle + one probe or more.
    failover: float = Field(default=30.0, ge=2, le=3600)
    # Connections each process keeps to PostgreSQL at most (one per component and thread at a time).
    pool_size: int = Field(default=8, ge=2, le=100)

    @model_validator(mode="after")
    def _one_backend(self) -> StoreConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give path (SQLite) or url (PostgreSQL), one of them")
        given = one_source(self, ("password", "password_env", "password_file"))
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
        return read_secret(self.password, self.password_env, self.password_file)

    @property
    def where(self) -> str:
        """The store for people and logs: the file, or the URL (which never holds the password)."""
        return str(self.path) if self.path is not None else str(self.url)
