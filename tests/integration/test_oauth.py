"""OAuth2 end to end without the internet: each flow against the suite's identity provider, then real SASL
(XOAUTH2 / OAUTHBEARER) against Dovecot's IMAP and submission services, which check the tokens themselves."""

from __future__ import annotations

import asyncio
import re
import ssl
import stat
import subprocess
import sys
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailsvc import metrics
from mailsvc.config import Config
from mailsvc.credentials import OAuth2Provider, keeper_for, provider_for, token_path
from mailsvc.errors import OAuthError
from mailsvc.imap import ImapSource
from mailsvc.model import OutgoingMail
from mailsvc.oauth.flows import Grant
from mailsvc.oauth.keeper import store_login
from mailsvc.oauth.login import login, login_targets
from mailsvc.oauth.tokens import TokenFile
from mailsvc.smtp import Sender
from mailsvc.store import Store
from mailsvc.testing.dovecot import Mailbox
from mailsvc.testing.idp import IdentityProvider
from mailsvc.testing.sandbox import mail, write_config
from mailsvc.testing.securedovecot import SecureDovecot
from mailsvc.testing.smtp_capture import SmtpCapture
from mailsvc.testing.tls import ThrowawayCA
from tests.integration import secure


def oauth_config(
    dovecot: SecureDovecot, mailbox: Mailbox, idp: IdentityProvider, ca: ThrowawayCA, tmp_path: Path, **oauth: Any
) -> Config:
    section = secure.oauth2(idp, ca.cert_file, **oauth)
    imap = secure.imap(dovecot, mailbox.user, ca.cert_file, auth="oauth2", oauth2=section)
    smtp = secure.submission(dovecot, mailbox.user, ca.cert_file, auth="oauth2", oauth2=section)
    raw = secure.config_dict(mailbox, SmtpCapture(), tmp_path / "mailsvc.db", imap_section=imap, smtp_section=smtp)
    return secure.load(raw, tmp_path)


class Terminal:
    """What `oauth login` shows, and the waits it asks for (answered at once: the test approves or not)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.waits: list[float] = []

    def out(self, line: str) -> None:
        self.lines.append(line)

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)


def run_login(config: Config, terminal: Terminal, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    (target,) = login_targets(config)
    outcome: list[Any] = []

    def go() -> None:
        try:
            outcome.append(login(target, terminal.out, wait=terminal.wait, **kwargs))
        except OAuthError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    return thread, outcome


def wait_for_user_code(idp: IdentityProvider, thread: threading.Thread) -> str:
    for _ in range(2000):
        codes = idp.pending_user_codes()
        if codes:
            return codes[0]
        thread.join(0.005)
    raise AssertionError("no device code was asked for")


def imap_works(config: Config) -> None:
    source = ImapSource(config.imap, provider_for(config, "imap"))
    source.connect()
    try:
        assert source.pending_uids() == []
    finally:
        source.close()


def smtp_works(config: Config, sink: SmtpCapture, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "outbox.db")
    outgoing = OutgoingMail("<sent@example.org>", "help@example.org", ("alice@example.net",), mail(), "ack")
    with store.transaction():
        store.enqueue(outgoing, None, None, datetime.now(UTC))
    sender = Sender(config.smtp, provider_for(config, "smtp"), store)

    async def drain() -> int:
        try:
            return await sender.drain()
        finally:
            await sender.close()

    assert asyncio.run(drain()) == 1
    (relayed,) = sink.wait_for(1)
    assert relayed.rcpt_tos == ("alice@example.net",)
    store.close()


def test_device_code_login_then_imap_and_smtp_with_the_token(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA,
    relay_sink: SmtpCapture, tmp_path: Path,
) -> None:  # fmt: skip
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path)
    terminal = Terminal()
    thread, outcome = run_login(config, terminal)
    code = wait_for_user_code(idp, thread)
    idp.approve(code, secure_mailbox.user)
    thread.join(10)
    (tokens,) = outcome
    assert tokens.refresh_token
    assert terminal.lines[0] == f"To sign in, open {idp.base_url}/device and enter the code {code}"
    assert terminal.lines[1].startswith("waiting for the sign-in to be approved: 14:")
    path = token_path(config, config.imap)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # One login serves IMAP and SMTP of the same user and app registration.
    assert token_path(config, config.smtp) == path

    imap_works(config)
    smtp_works(config, relay_sink, tmp_path)
    assert "method=OAUTHBEARER" in secure_dovecot.log_tail(200)
    assert idp.grants["refresh_token"] == 0  # the login's access token was still fresh


def test_device_code_slow_down_then_approved(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    idp.slow_down_polls = 1
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path)
    terminal = Terminal()
    thread, outcome = run_login(config, terminal)
    idp.approve(wait_for_user_code(idp, thread), secure_mailbox.user)
    thread.join(10)
    assert not isinstance(outcome[0], OAuthError)
    # RFC 8628: after slow_down, poll 5 s more slowly.
    assert terminal.waits[:2] == [1.0, 6.0]
    assert "the identity provider asks to poll more slowly: every 6s" in terminal.lines


@pytest.mark.parametrize("ending", ["expired_token", "access_denied"])
def test_device_code_expired_or_denied_stores_nothing(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA,
    tmp_path: Path, ending: str,
) -> None:  # fmt: skip
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path)
    terminal = Terminal()
    thread, outcome = run_login(config, terminal)
    code = wait_for_user_code(idp, thread)
    if ending == "expired_token":
        idp.expire_device_codes()
    else:
        idp.deny(code)
    thread.join(10)
    (error,) = outcome
    assert isinstance(error, OAuthError)
    assert error.code == ending
    assert "mailsvc oauth login" in error.hint
    assert not token_path(config, config.imap).exists()


MICROSOFT = {
    "provider": "microsoft", "tenant": "contoso", "token_endpoint": None, "device_authorization_endpoint": None,
    "authorization_endpoint": None,
}  # fmt: skip


@pytest.mark.parametrize("provider", ["generic", "microsoft"])
def test_authorization_code_with_pkce_on_a_loopback_redirect(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA,
    tmp_path: Path, provider: str,
) -> None:  # fmt: skip
    idp.browser_user = secure_mailbox.user
    keys: dict[str, Any] = {**MICROSOFT, "authority": idp.base_url} if provider == "microsoft" else {}
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path, flow="authorization_code", **keys)
    browser_context = ssl.create_default_context(cafile=str(tls_ca.cert_file))
    pages: list[bytes] = []

    def browser(url: str) -> None:
        # The user signs in; the identity provider sends the browser back to our loopback listener.
        with urllib.request.urlopen(url, context=browser_context, timeout=10) as page:
            pages.append(page.read())

    terminal = Terminal()
    thread, outcome = run_login(config, terminal, open_browser=browser)
    thread.join(20)
    assert not isinstance(outcome[0], OAuthError), outcome
    assert pages == [b"mailsvc: sign-in received, you can close this page.\n"]
    assert idp.grants["authorization_code"] == 1
    imap_works(config)


def test_microsoft_device_code_through_msal(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path, **MICROSOFT, authority=idp.base_url)
    terminal = Terminal()
    thread, outcome = run_login(config, terminal)
    idp.approve(wait_for_user_code(idp, thread), secure_mailbox.user)
    thread.join(20)
    assert not isinstance(outcome[0], OAuthError), outcome
    imap_works(config)
    # A refresh through MSAL as well (the rotated refresh token comes back and is kept).
    before = TokenFile(token_path(config, config.imap)).load()
    assert before is not None
    keeper_for(config, "imap").access_token(renew=True)
    after = TokenFile(token_path(config, config.imap)).load()
    assert after is not None and after.refresh_token != before.refresh_token
    assert idp.grants["refresh_token"] == 1


def test_microsoft_client_credentials_opens_a_shared_mailbox(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    idp.app_mailboxes["mailsvc-app"] = secure_mailbox.user
    config = oauth_config(
        secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path, **MICROSOFT, authority=idp.base_url,
        flow="client_credentials", client_id="mailsvc-app", client_secret="app-secret-Zq7",
    )  # fmt: skip
    # No login on a terminal: the daemon asks for an app-only token itself.
    imap_works(config)
    assert idp.grants["client_credentials"] == 1
    tokens = TokenFile(token_path(config, config.imap)).load()
    assert tokens is not None and tokens.refresh_token is None


def test_rotated_refresh_token_survives_a_restart(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path)
    path = token_path(config, config.imap)
    seed(idp, config, secure_mailbox.user)
    refreshes = metric("mailsvc_oauth_refreshes_total", account="imap")
    keeper_for(config, "imap").access_token(renew=True)
    assert metric("mailsvc_oauth_refreshes_total", account="imap") == refreshes + 1
    rotated = TokenFile(path).load()
    assert rotated is not None
    # A new process: nothing but the file carries the rotated token (the first one is void at the provider).
    keeper_for(config, "imap").access_token(renew=True)
    assert idp.grants["refresh_token"] == 2
    final = TokenFile(path).load()
    assert final is not None and final.refresh_token not in (None, rotated.refresh_token)
    assert final.last_error is None


def test_a_refused_token_is_renewed_once_and_the_login_goes_on(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path)
    seed(idp, config, secure_mailbox.user, access_token="not-a-token-the-server-takes", expires_in=3600)
    imap_works(config)
    assert idp.grants["refresh_token"] == 1


def test_smtp_renews_a_refused_token_once_and_sends(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA,
    relay_sink: SmtpCapture, tmp_path: Path,
) -> None:  # fmt: skip
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path)
    seed(idp, config, secure_mailbox.user, access_token="not-a-token-the-server-takes", expires_in=3600)
    smtp_works(config, relay_sink, tmp_path)
    assert idp.grants["refresh_token"] == 1


def test_a_revoked_refresh_token_fails_for_good_once(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    config = oauth_config(secure_dovecot, secure_mailbox, idp, tls_ca, tmp_path)
    seed(idp, config, secure_mailbox.user)
    idp.revoke(secure_mailbox.user)
    provider = provider_for(config, "imap")
    assert isinstance(provider, OAuth2Provider)
    failures = metric("mailsvc_oauth_refresh_failures_total", account="imap")
    for _ in range(3):
        source = ImapSource(config.imap, provider)
        with pytest.raises(OAuthError) as caught:
            source.connect()
        assert caught.value.code == "invalid_grant"
    # Asked once: until a new login, the identity provider is not pestered with a token it refused.
    assert idp.grants["refresh_token"] == 1
    assert metric("mailsvc_oauth_refresh_failures_total", account="imap") == failures + 1
    tokens = TokenFile(token_path(config, config.imap)).load()
    assert tokens is not None and tokens.last_error == "invalid_grant"


def metric(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def seed(idp: IdentityProvider, config: Config, user: str, *, access_token: str = "", expires_in: float = 0) -> None:
    """A token file as a login left it: a refresh token, and an access token (expired unless given)."""
    assert config.imap.oauth2 is not None
    grant = Grant(access_token or "expired", expires_in, idp.refresh_token_for(user, "mail"), ("mail",))
    store_login(config.imap.oauth2, user, token_path(config, config.imap), grant)


def test_oauth_login_and_status_commands_print_no_token(
    secure_dovecot: SecureDovecot, secure_mailbox: Mailbox, idp: IdentityProvider, tls_ca: ThrowawayCA, tmp_path: Path
) -> None:
    idp.app_mailboxes["mailsvc-app"] = secure_mailbox.user
    section = secure.oauth2(idp, tls_ca.cert_file, flow="client_credentials", client_id="mailsvc-app",
                            client_secret="app-secret-Zq7")  # fmt: skip
    raw = secure.config_dict(
        secure_mailbox, SmtpCapture(), tmp_path / "mailsvc.db",
        imap_section=secure.imap(secure_dovecot, secure_mailbox.user, tls_ca.cert_file, auth="oauth2",
                                 oauth2=section),
        smtp_section={"host": "127.0.0.1", "port": 25, "tls": "none"},
    )  # fmt: skip
    path = write_config(tmp_path / "mailsvc.yaml", raw)

    def mailsvc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mailsvc", *args, "-c", str(path)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    signed_in = mailsvc("oauth", "login")
    assert signed_in.returncode == 0, signed_in.stderr
    assert f"imap ({secure_mailbox.user}): signed in; access token valid for 60:00 min" in signed_in.stdout
    status = mailsvc("oauth", "status")
    assert status.returncode == 0, status.stdout
    access, *rest = status.stdout.splitlines()[2:]
    assert re.fullmatch(r"  access token: expires in \d+:\d\d min", access)
    # A generic app-only client asks for no scope here, so the token names none.
    assert rest == ["  refresh token: none", "  scopes: -", "  last refresh error: none"]
    config = secure.load(raw, tmp_path)
    tokens = TokenFile(token_path(config, config.imap)).load()
    assert tokens is not None
    for output in (signed_in, status):
        assert tokens.access_token not in output.stdout + output.stderr
        assert "app-secret-Zq7" not in output.stdout + output.stderr
    unknown = mailsvc("oauth", "login", "--account", "queues.nope.imap")
    assert unknown.returncode == 1
    assert unknown.stderr == "mailsvc: no account 'queues.nope.imap'; accounts: imap, smtp\n"
