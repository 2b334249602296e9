"""Private servers on 127.0.0.1 for tests/demo/bench: an OAuth2 identity provider over HTTPS.

It stands in for Microsoft's and Google's token services, which cannot be reached from here. It issues
HS256 JWT access tokens that the private Dovecot checks itself (passdb oauth2, local validation), and
implements the grants mailsvc uses: refresh_token (rotating), client_credentials, authorization_code with
PKCE, and the device code grant with authorization_pending, slow_down, expired_token and access_denied.
It also serves the OpenID discovery document MSAL reads, at /<tenant>/v2.0/.well-known/openid-configuration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import jwt

from mailsvc.testing.tls import ServerCert

HOST = "127.0.0.1"


@dataclass
class _Grant:
    user: str
    scope: str
    revoked: bool = False


@dataclass
class _DeviceCode:
    user_code: str
    scope: str
    expires_at: float
    user: str | None = None
    denied: bool = False
    polls: int = 0


@dataclass
class _AuthCode:
    user: str
    scope: str
    redirect_uri: str
    challenge: str


@dataclass
class IdentityProvider:
    """The token service; `key` is the HS256 key Dovecot validates the access tokens with."""

    cert: ServerCert
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    access_lifetime: int = 3600
    # A refresh answers with a new refresh token and forgets the old one, as Microsoft's does.
    rotate: bool = True
    # Confidential clients and their secrets; a client not named here is public (no secret).
    client_secrets: dict[str, str] = field(default_factory=dict)
    # client_credentials: the mailbox an application may open (its access to a shared mailbox).
    app_mailboxes: dict[str, str] = field(default_factory=dict)
    # The user that authorization requests are approved for (the browser's signed-in user).
    browser_user: str = ""
    # Answer this many device-code polls with slow_down before anything else.
    slow_down_polls: int = 0
    device_interval: int = 1
    # Seconds the provider's clock (its HTTP Date header) is ahead of this machine's.
    clock_offset: float = 0.0
    # (status, content type, body): what every POST gets instead, as from a proxy's error page or an outage.
    outage: tuple[int, str, bytes] | None = None
    port: int = 0
    grants: Counter[str] = field(default_factory=Counter)
    _refresh: dict[str, _Grant] = field(default_factory=dict)
    _devices: dict[str, _DeviceCode] = field(default_factory=dict)
    _codes: dict[str, _AuthCode] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        provider = self

        class Handler(_Handler):
            idp = provider

        server = ThreadingHTTPServer((HOST, self.port), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert.cert_file, self.cert.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="identity-provider", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def endpoints(self, tenant: str = "tenant") -> dict[str, str]:
        """The endpoint keys of an `oauth2` config section for provider `generic` (or a `microsoft` authority)."""
        root = f"{self.base_url}/{tenant}/oauth2/v2.0"
        return {
            "token_endpoint": f"{root}/token",
            "device_authorization_endpoint": f"{root}/devicecode",
            "authorization_endpoint": f"{root}/authorize",
        }

    # -- what a test does to it ----------------------------------------------------------------------------
    def access_token(self, user: str, scope: str = "mail", lifetime: int | None = None) -> str:
        now = int(time.time())
        claims = {"sub": user, "email": user, "iat": now, "exp": now + (lifetime or self.access_lifetime),
                  "scope": scope, "jti": secrets.token_hex(8)}  # fmt: skip
        return jwt.encode(claims, self.key, algorithm="HS256")

    def refresh_token_for(self, user: str, scope: str) -> str:
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = _Grant(user, scope)
        return token

    def revoke(self, user: str) -> int:
        """Revoke every refresh token of `user` (as an admin or a password change would); returns how many."""
        with self._lock:
            found = [g for g in self._refresh.values() if g.user == user and not g.revoked]
            for grant in found:
                grant.revoked = True
        return len(found)

    def approve(self, user_code: str, user: str) -> None:
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code:
                    device.user = user
                    return
        raise KeyError(user_code)

    def deny(self, user_code: str) -> None:
        with self._lock:
            for device in self._devices.values():
                if device.user_code == user_code:
                    device.denied = True

    def expire_device_codes(self) -> None:
        with self._lock:
            for device in self._devices.values():
                device.expires_at = 0

    def pending_user_codes(self) -> list[str]:
        with self._lock:
            return [d.user_code for d in self._devices.values() if d.user is None and not d.denied]

    # -- the token endpoint ----------------------------------------------------------------------------------
    def _tokens(self, user: str, scope: str, refresh: bool = True) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "token_type": "Bearer", "access_token": self.access_token(user, scope),
            "expires_in": self.access_lifetime, "scope": scope,
        }  # fmt: skip
        if refresh:
            answer["refresh_token"] = self.refresh_token_for(user, scope)
        return answer

    def _client_ok(self, form: dict[str, str], basic: tuple[str, str] | None) -> str | None:
        client_id = basic[0] if basic else form.get("client_id", "")
        secret = basic[1] if basic else form.get("client_secret")
        expected = self.client_secrets.get(client_id)
        if expected is not None and secret != expected:
            return None
        return client_id

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        client_id = self._client_ok(form, basic)
        if client_id is None:
            return 401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret."}
        self.grants[grant] += 1
        with self._lock:
            if grant == "refresh_token":
                found = self._refresh.get(form.get("refresh_token", ""))
                if found is None or found.revoked:
                    description = "AADSTS70008: The refresh token has expired or is revoked."
                    return 400, {"error": "invalid_grant", "error_description": description}
                if self.rotate:
                    del self._refresh[form["refresh_token"]]
                user, scope = found.user, found.scope
            elif grant == "client_credentials":
                mailbox = self.app_mailboxes.get(client_id)
                if mailbox is None or client_id not in self.client_secrets:
                    return 400, {"error": "unauthorized_client", "error_description": "no application access"}
                return 200, self._tokens(mailbox, form.get("scope", ""), refresh=False)
            elif grant == "authorization_code":
                code = self._codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if code is None or code.redirect_uri != form.get("redirect_uri") or digest != code.challenge:
                    return 400, {"error": "invalid_grant", "error_description": "bad code, redirect or verifier"}
                user, scope = code.user, code.scope
            elif grant == "urn:ietf:params:oauth:grant-type:device_code":
                device = self._devices.get(form.get("device_code", ""))
                if device is None:
                    return 400, {"error": "invalid_grant"}
                device.polls += 1
                if device.expires_at < time.time():
                    return 400, {"error": "expired_token"}
                if device.denied:
                    return 400, {"error": "access_denied"}
                if self.slow_down_polls > 0:
                    self.slow_down_polls -= 1
                    return 400, {"error": "slow_down"}
                if device.user is None:
                    return 400, {"error": "authorization_pending"}
                del self._devices[form["device_code"]]
                user, scope = device.user, device.scope
            else:
                return 400, {"error": "unsupported_grant_type"}
        return 200, self._tokens(user, scope)

    def device_code(self, form: dict[str, str]) -> dict[str, Any]:
        code = secrets.token_urlsafe(16)
        user_code = secrets.token_hex(4).upper()
        with self._lock:
            self._devices[code] = _DeviceCode(user_code, form.get("scope", ""), time.time() + 900)
        return {
            "device_code": code, "user_code": user_code, "verification_uri": f"{self.base_url}/device",
            "expires_in": 900, "interval": self.device_interval,
            "message": f"To sign in, open {self.base_url}/device and enter the code {user_code}.",
        }  # fmt: skip

    def authorize(self, query: dict[str, str]) -> str:
        """Approve an authorization request for `browser_user`: the redirect a browser would follow."""
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            params = {"error": "invalid_request", "state": query.get("state", "")}
        else:
            code = secrets.token_urlsafe(16)
            with self._lock:
                self._codes[code] = _AuthCode(
                    self.browser_user, query.get("scope", ""), query.get("redirect_uri", ""), query["code_challenge"]
                )
            params = {"code": code, "state": query.get("state", "")}
        return f"{query.get('redirect_uri', '')}?{urllib.parse.urlencode(params)}"

    def discovery(self, tenant: str) -> dict[str, Any]:
        ends = self.endpoints(tenant)
        return {
            "issuer": f"{self.base_url}/{tenant}/v2.0",
            "token_endpoint": ends["token_endpoint"],
            "authorization_endpoint": ends["authorization_endpoint"],
            "device_authorization_endpoint": ends["device_authorization_endpoint"],
            "response_types_supported": ["code"],
        }


class _Handler(BaseHTTPRequestHandler):
    idp: IdentityProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests carry secrets; the tests look at `grants` instead

    def date_time_string(self, timestamp: float | None = None) -> str:
        return super().date_time_string(time.time() + self.idp.clock_offset if timestamp is None else timestamp)

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path.endswith("/v2.0/.well-known/openid-configuration"):
            self._answer(200, self.idp.discovery(url.path.split("/")[1]))
        elif url.path.endswith("/authorize"):
            self.send_response(302)
            self.send_header("Location", self.idp.authorize(query))
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._answer(404, {"error": "not_found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        if self.idp.outage is not None:
            status, content_type, data = self.idp.outage
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        basic = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            basic = (urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(secret))
        path = urllib.parse.urlsplit(self.path).path
        if path.endswith("/token"):
            self._answer(*self.idp.token(form, basic))
        elif path.endswith("/devicecode"):
            self._answer(200, self.idp.device_code(form))
        else:
            self._answer(404, {"error": "not_found"})


def write_dovecot_key(keys_dir: Path, key: bytes) -> Path:
    """The key where Dovecot's local validation looks for an HS256 token without kid or azp."""
    path = keys_dir / "default" / "HS256" / "default"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(base64.b64encode(key).decode())
    return path
