"""Logging in once, on a terminal: the configured flow, then the tokens stored for the daemon.

device_code shows the verification URL and code and counts down until the sign-in is approved, refused,
cancelled (Ctrl-C) or expired; authorization_code opens (or shows) the sign-in page and takes the answer
on a loopback redirect, with PKCE; client_credentials asks for an app-only token at once.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailsvc.config import Config
from mailsvc.config_servers import OAuth2Config
from mailsvc.credentials import Server, accounts, token_path
from mailsvc.errors import MailsvcError, OAuthError
from mailsvc.oauth.flows import Grant, OAuthClient, client_for
from mailsvc.oauth.keeper import store_login
from mailsvc.oauth.providers import hint_for
from mailsvc.oauth.tokens import TokenSet

Out = Callable[[str], None]
Wait = Callable[[float], None]
# How long a browser sign-in may take before authorization_code gives up.
BROWSER_TIMEOUT = 300.0


@dataclass(frozen=True)
class LoginTarget:
    """One token file to fill, and the accounts it serves."""

    accounts: tuple[str, ...]
    server: Server
    oauth2: OAuth2Config
    path: Path


def login_targets(config: Config, only: str | None = None) -> list[LoginTarget]:
    """The OAuth2 accounts, one target per token file (IMAP and SMTP of one user share it)."""
    found: dict[Path, LoginTarget] = {}
    known = accounts(config)
    if only is not None and only not in known:
        raise MailsvcError(f"no account {only!r}; accounts: {', '.join(known)}")
    for name, server in known.items():
        if server.oauth2 is None or (only is not None and name != only):
            continue
        path = token_path(config, server)
        if path in found:
            found[path] = LoginTarget((*found[path].accounts, name), server, server.oauth2, path)
        else:
            found[path] = LoginTarget((name,), server, server.oauth2, path)
    if only is not None and not found:
        raise MailsvcError(f"account {only} does not use auth: oauth2")
    return list(found.values())


def _remaining(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def device_login(client: OAuthClient, out: Out, wait: Wait, clock: Callable[[], float] = time.time) -> Grant:
    device = client.start_device()
    out(f"To sign in, open {device.verification_uri} and enter the code {device.user_code}")
    while True:
        left = device.expires_at - clock()
        if left <= 0:
            raise OAuthError("expired_token", "the code was not used in time", permanent=True,
                             hint=hint_for("expired_token"))  # fmt: skip
        out(f"waiting for the sign-in to be approved: {_remaining(left)} left (Ctrl-C cancels)")
        wait(min(device.interval, left))
        answer = client.poll_device(device)
        if isinstance(answer, Grant):
            return answer
        if answer.interval != device.interval:
            out(f"the identity provider asks to poll more slowly: every {answer.interval:.0f}s")
        device = answer


class _Redirect(http.server.BaseHTTPRequestHandler):
    def received(self, query: dict[str, str]) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        if "code" not in query and "error" not in query:
            self.send_error(404)
            return
        body = b"mailsvc: sign-in received, you can close this page.\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.received(query)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the query holds the code


def browser_login(
    client: OAuthClient, cfg: OAuth2Config, out: Out, open_browser: Callable[[str], object] = webbrowser.open
) -> Grant:
    got = threading.Event()
    answers: list[dict[str, str]] = []

    class Redirect(_Redirect):
        def received(self, query: dict[str, str]) -> None:
            answers.append(query)
            got.set()

    server = http.server.HTTPServer(("127.0.0.1", cfg.redirect_port), Redirect)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="oauth-redirect", daemon=True)
    thread.start()
    try:
        request = client.start_authorization(f"http://localhost:{port}/")
        out(f"Open this page to sign in (the answer comes back to http://localhost:{port}/):\n{request.url}")
        open_browser(request.url)
        deadline = time.monotonic() + BROWSER_TIMEOUT
        while not got.wait(1.0):
            left = deadline - time.monotonic()
            if left <= 0:
                raise OAuthError("expired_token", "no answer from the browser in time", permanent=True,
                                 hint=hint_for("expired_token"))  # fmt: skip
        return client.redeem(request, answers[0])
    finally:
        server.shutdown()
        server.server_close()


def login(
    target: LoginTarget,
    out: Out = print,
    *,
    wait: Wait = time.sleep,
    open_browser: Callable[[str], object] = webbrowser.open,
    client: OAuthClient | None = None,
) -> TokenSet:
    cfg = target.oauth2
    client = client or client_for(cfg)
    if cfg.flow == "device_code":
        grant = device_login(client, out, wait)
    elif cfg.flow == "authorization_code":
        grant = browser_login(client, cfg, out, open_browser)
    else:
        grant = client.client_credentials()
    tokens = store_login(cfg, target.server.user or "", target.path, grant)
    kept = "a refresh token" if tokens.refresh_token else "no refresh token (app-only: asked anew when due)"
    out(f"{', '.join(target.accounts)} ({tokens.user}): signed in; access token valid for "
        f"{_remaining(grant.expires_in)} min; {kept} stored in {target.path}")  # fmt: skip
    return tokens


def describe(tokens: TokenSet | None, now: float) -> list[str]:
    """`oauth status` lines for one token file; never a token."""
    if tokens is None:
        return ["no tokens: run `mailsvc oauth login`"]
    lines = []
    if tokens.access_token:
        left = tokens.expires_at - now
        lines.append(f"access token: {'expires in ' + _remaining(left) + ' min' if left > 0 else 'expired'}")
    if tokens.refresh_token and tokens.refresh_obtained_at is not None:
        lines.append(f"refresh token: {_age(now - tokens.refresh_obtained_at)} old")
    elif not tokens.refresh_token:
        lines.append("refresh token: none")
    lines.append(f"scopes: {' '.join(tokens.scopes) or '-'}")
    if tokens.last_error:
        since = f" ({_age(now - tokens.last_error_at)} ago)" if tokens.last_error_at else ""
        lines.append(f"last refresh error: {tokens.last_error}{since}: {hint_for(tokens.last_error)}")
    else:
        lines.append("last refresh error: none")
    return lines


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min {seconds % 60} s"
