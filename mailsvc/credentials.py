"""Credentials: the one seam IMAP and SMTP ask at each login (a password, or an OAuth2 access token).

No shell holds a secret that can go stale: a password file is read at each login, and an OAuth2 token
is refreshed ahead of expiry and once more after the server refused it (`renew=True`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from mailsvc.config import Config, MailboxSpec
from mailsvc.config_servers import ImapConfig, SmtpConfig
from mailsvc.oauth.keeper import TokenKeeper
from mailsvc.oauth.notice import staff_notice

Server = ImapConfig | SmtpConfig


@dataclass(frozen=True)
class Credential:
    user: str
    secret: str = field(repr=False)
    kind: Literal["password", "oauth2"]


class CredentialProvider(Protocol):
    def credential(self, *, renew: bool = False) -> Credential:
        """What to log in with now; `renew` after the server refused the last one."""
        ...


class PasswordProvider:
    """A password read from where the configuration says, at each login."""

    def __init__(self, user: str, read: Callable[[], str]) -> None:
        self.user = user
        self._read = read

    def credential(self, *, renew: bool = False) -> Credential:
        return Credential(self.user, self._read(), "password")


class OAuth2Provider:
    def __init__(self, keeper: TokenKeeper) -> None:
        self.keeper = keeper

    def credential(self, *, renew: bool = False) -> Credential:
        return Credential(self.keeper.user, self.keeper.access_token(renew=renew), "oauth2")


def fixed_password(user: str, password: str) -> PasswordProvider:
    return PasswordProvider(user, lambda: password)


def as_provider(user: str | None, credentials: CredentialProvider | str) -> CredentialProvider:
    """A provider from what a caller gives: a provider, or a password as such (tests, tools)."""
    if isinstance(credentials, str):
        return fixed_password(user or "", credentials)
    return credentials


def accounts(config: Config) -> dict[str, Server]:
    """Every account by its key path: imap, smtp, queues.NAME.imap."""
    found: dict[str, Server] = {"imap": config.imap, "smtp": config.smtp}
    found.update({f"queues.{n}.imap": q.imap for n, q in config.queues.items() if q.imap is not None})
    return found


def account_of(spec: MailboxSpec) -> str:
    """The account a watched folder belongs to."""
    return "imap" if spec.queue is None or spec.key == spec.imap.folder else f"queues.{spec.queue}.imap"


def token_path(config: Config, server: Server) -> Path:
    """The account's token file: as configured, else beside the store, one per user and client.

    IMAP and SMTP of the same user and app registration share it, so one login serves both.
    """
    oauth2 = server.oauth2
    assert oauth2 is not None
    if oauth2.token_file is not None:
        return oauth2.token_file
    user = server.user or ""
    tag = hashlib.sha256(f"{oauth2.provider}\0{oauth2.tenant}\0{oauth2.client_id}\0{user}".encode()).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9._@-]+", "_", user)[:64]
    # Beside the SQLite store; with PostgreSQL, in the service's state directory (StateDirectory=).
    base = (
        config.store.path.parent if config.store.path else Path(os.environ.get("STATE_DIRECTORY", "/var/lib/mailsvc"))
    )
    return base / "oauth" / f"{stem}-{tag[:10]}.json"


def keeper_for(config: Config, account: str, on_failure: Callable[..., bool] | None = None) -> TokenKeeper:
    server = accounts(config)[account]
    assert server.oauth2 is not None
    return TokenKeeper(server.oauth2, server.user or "", token_path(config, server), account=account,
                       on_failure=on_failure)  # fmt: skip


def provider_for(config: Config, account: str, notify: Callable[[], None] | None = None) -> CredentialProvider:
    """The account's credentials; an OAuth2 login that fails for good mails the staff concerned, then calls
    `notify` (to wake the sender)."""
    server = accounts(config)[account]
    if server.auth == "password" or server.oauth2 is None:
        return PasswordProvider(server.user or "", server.secret)
    return OAuth2Provider(keeper_for(config, account, staff_notice(config, account, notify)))


def mailbox_credentials(
    config: Config, spec: MailboxSpec, notify: Callable[[], None] | None = None
) -> CredentialProvider:
    return provider_for(config, account_of(spec), notify)
