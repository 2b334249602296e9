"""The OAuth2 grants against a token endpoint: MSAL for Microsoft, a few form POSTs for the others.

MSAL knows Microsoft's authority handling, tenant discovery, its reserved scopes and its error answers,
and is kept by Microsoft; we use its grants without its token cache (the token file is ours, shared with
the refresh policy and `mailsvc oauth status`). Google and generic providers speak plain RFC 6749 and
RFC 8628: one form POST per step, so a library would add nothing over urllib here. PKCE (RFC 7636) for
those is done by hand as well: a random verifier and its SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from mailsvc.config_servers import OAuth2Config
from mailsvc.errors import OAuthError
from mailsvc.oauth.providers import MSAL_RESERVED, authority_of, endpoints_of, hint_for, is_permanent, scopes_of

if TYPE_CHECKING:
    import msal

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
HTTP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Grant:
    """A successful answer of the token endpoint."""

    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceCode:
    """A started device authorization (RFC 8628): what the user is shown, and how to poll."""

    user_code: str
    verification_uri: str
    expires_at: float
    interval: float
    message: str = ""
    state: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A started authorization code request: the URL to open, and what proves the answer is ours."""

    url: str
    redirect_uri: str
    state: dict[str, Any] = field(default_factory=dict, repr=False)


class OAuthClient(Protocol):
    def refresh(self, refresh_token: str) -> Grant: ...
    def client_credentials(self) -> Grant: ...
    def start_device(self) -> DeviceCode: ...
    def poll_device(self, device: DeviceCode) -> Grant | DeviceCode:
        """The tokens, or the device code to poll again (its interval raised after slow_down)."""
        ...

    def start_authorization(self, redirect_uri: str) -> AuthorizationRequest: ...
    def redeem(self, request: AuthorizationRequest, answer: dict[str, str]) -> Grant: ...


def error_from(answer: dict[str, Any]) -> OAuthError:
    code = str(answer.get("error") or "unknown_error")
    # AADSTS codes lead Microsoft's descriptions; the rest of the text can be long (trace and correlation ids).
    lines = str(answer.get("error_description") or "").splitlines()
    description = lines[0][:200] if lines else ""
    return OAuthError(code, description, permanent=is_permanent(code), hint=hint_for(code))


def _grant(answer: dict[str, Any], asked: tuple[str, ...]) -> Grant:
    if "access_token" not in answer:
        raise error_from(answer)
    scope = answer.get("scope")
    return Grant(
        access_token=str(answer["access_token"]),
        expires_in=float(answer.get("expires_in") or 3600),
        refresh_token=answer.get("refresh_token"),
        scopes=tuple(scope.split()) if isinstance(scope, str) else asked,
    )


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class _PinnedHttp:
    """The HTTP client MSAL is given when oauth2.ca_file is set: requests lets REQUESTS_CA_BUNDLE override a
    session's CA bundle, but not one given with each request."""

    def __init__(self, ca_file: str) -> None:
        import requests  # noqa: PLC0415 (with MSAL, only where Microsoft sign-in is configured)

        self.session = requests.Session()
        self.ca_file = ca_file

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.session.post(url, verify=self.ca_file, timeout=HTTP_TIMEOUT, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.session.get(url, verify=self.ca_file, timeout=HTTP_TIMEOUT, **kwargs)

    def close(self) -> None:
        self.session.close()


class MicrosoftClient:
    """Microsoft identity platform (v2.0) through MSAL."""

    def __init__(self, cfg: OAuth2Config) -> None:
        self.cfg = cfg
        self.scopes = tuple(s for s in scopes_of(cfg) if s not in MSAL_RESERVED)
        secret = cfg.secret()
        common: dict[str, Any] = {
            "authority": authority_of(cfg),
            # Any other sign-in host (a national cloud's, a test's) is taken as given.
            "instance_discovery": cfg.authority is None,
            "timeout": HTTP_TIMEOUT,
        }
        if cfg.ca_file:
            common["http_client"] = _PinnedHttp(str(cfg.ca_file))
        self._app_args = (cfg.client_id, secret, common)
        self._made: msal.ClientApplication | None = None

    def _app(self) -> msal.ClientApplication:
        if self._made is not None:
            return self._made
        import msal  # noqa: PLC0415 (its import costs start-up a sixth of a second; only Microsoft sign-in needs it)

        client_id, secret, common = self._app_args
        try:
            if secret:
                self._made = msal.ConfidentialClientApplication(client_id, client_credential=secret, **common)
            else:
                self._made = msal.PublicClientApplication(client_id, **common)
            return self._made
        except ValueError as exc:  # tenant discovery failed: a wrong tenant, or the service is down
            raise OAuthError("authority_unavailable", str(exc)[:200], permanent=False,
                             hint="check oauth2.tenant; retried") from None  # fmt: skip
        except OSError as exc:
            raise OAuthError("network_error", str(exc)[:200], permanent=False, hint=hint_for("")) from None

    def refresh(self, refresh_token: str) -> Grant:
        app = self._app()  # its own errors (OAuthError is an OSError too) keep their code and hint
        try:
            answer = app.acquire_token_by_refresh_token(refresh_token, scopes=list(self.scopes))
        except OSError as exc:
            raise OAuthError("network_error", str(exc)[:200], permanent=False, hint=hint_for("")) from None
        return _grant(answer, self.scopes)

    def client_credentials(self) -> Grant:
        app = self._app()
        import msal  # noqa: PLC0415 (imported by _app already)

        if not isinstance(app, msal.ConfidentialClientApplication):
            raise OAuthError("invalid_client", "client_credentials needs a client secret", permanent=True,
                             hint=hint_for("invalid_client"))  # fmt: skip
        try:
            answer = app.acquire_token_for_client(scopes=list(self.scopes))
        except OSError as exc:
            raise OAuthError("network_error", str(exc)[:200], permanent=False, hint=hint_for("")) from None
        return _grant(answer, self.scopes)

    def start_device(self) -> DeviceCode:
        flow = self._app().initiate_device_flow(scopes=list(self.scopes))
        if "user_code" not in flow:
            raise error_from(flow)
        return DeviceCode(
            user_code=flow["user_code"], verification_uri=flow["verification_uri"],
            expires_at=float(flow["expires_at"]), interval=float(flow.get("interval", 5)),
            message=flow.get("message", ""), state={"flow": flow},
        )  # fmt: skip

    def poll_device(self, device: DeviceCode) -> Grant | DeviceCode:
        flow = device.state["flow"]
        flow.pop("latest_attempt_at", None)  # we keep the pace ourselves
        # exit_condition True: one poll, no sleeping inside MSAL.
        answer = self._app().acquire_token_by_device_flow(flow, exit_condition=lambda _flow: True)
        if answer.get("error") in ("authorization_pending", "slow_down"):
            return replace(device, interval=float(flow.get("interval", device.interval)))
        return _grant(answer, self.scopes)

    def start_authorization(self, redirect_uri: str) -> AuthorizationRequest:
        app = self._app()
        with warnings.catch_warnings():
            # MSAL recommends form_post; the answer goes to our own listener on loopback either way.
            warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
            flow = app.initiate_auth_code_flow(scopes=list(self.scopes), redirect_uri=redirect_uri)
        return AuthorizationRequest(url=flow["auth_uri"], redirect_uri=redirect_uri, state={"flow": flow})

    def redeem(self, request: AuthorizationRequest, answer: dict[str, str]) -> Grant:
        result = self._app().acquire_token_by_auth_code_flow(request.state["flow"], answer)
        return _grant(result, self.scopes)


class StandardClient:
    """RFC 6749 / 8628 / 7636 against the configured (or Google's) endpoints."""

    def __init__(self, cfg: OAuth2Config) -> None:
        self.cfg = cfg
        self.scopes = scopes_of(cfg)
        self.endpoints = endpoints_of(cfg)
        self._context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)

    def _post(self, url: str, form: dict[str, str]) -> dict[str, Any]:
        if not url.startswith("https://"):  # the configuration allows no other scheme; never file: or http:
            raise OAuthError("bad_endpoint", f"not an https URL: {url}", permanent=True, hint="fix the endpoint")
        form = {"client_id": self.cfg.client_id, **form}
        secret = self.cfg.secret()
        if secret:
            form["client_secret"] = secret
        request = urllib.request.Request(  # noqa: S310 (https only, checked above)
            url, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(  # noqa: S310 (https only, checked above)
                request, timeout=HTTP_TIMEOUT, context=self._context
            ) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code >= 500 or not body:
                raise OAuthError(f"http_{exc.code}", exc.reason, permanent=False, hint=hint_for("")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OAuthError("network_error", str(reason)[:200], permanent=False, hint=hint_for("")) from None
        try:
            answer: dict[str, Any] = json.loads(body)
        except ValueError:
            raise OAuthError("bad_answer", "the token endpoint did not answer JSON", permanent=False,
                             hint=hint_for("")) from None  # fmt: skip
        return answer

    def refresh(self, refresh_token: str) -> Grant:
        answer = self._post(self.endpoints.token, {"grant_type": "refresh_token", "refresh_token": refresh_token})
        return _grant(answer, self.scopes)

    def client_credentials(self) -> Grant:
        answer = self._post(self.endpoints.token, {"grant_type": "client_credentials", "scope": " ".join(self.scopes)})
        return _grant(answer, self.scopes)

    def start_device(self) -> DeviceCode:
        if not self.endpoints.device_authorization:
            raise OAuthError("no_device_endpoint", "no device_authorization_endpoint", permanent=True)
        answer = self._post(self.endpoints.device_authorization, {"scope": " ".join(self.scopes)})
        if "device_code" not in answer:
            raise error_from(answer)
        return DeviceCode(
            user_code=answer["user_code"],
            # Google says verification_url, RFC 8628 verification_uri.
            verification_uri=answer.get("verification_uri") or answer.get("verification_url", ""),
            expires_at=time.time() + float(answer.get("expires_in", 900)),
            interval=float(answer.get("interval", 5)), message=answer.get("message", ""),
            state={"device_code": answer["device_code"]},
        )  # fmt: skip

    def poll_device(self, device: DeviceCode) -> Grant | DeviceCode:
        answer = self._post(self.endpoints.token, {"grant_type": DEVICE_GRANT, **device.state})
        error = answer.get("error")
        if error == "authorization_pending":
            return device
        if error == "slow_down":
            return replace(device, interval=device.interval + 5)  # RFC 8628, 3.5
        return _grant(answer, self.scopes)

    def start_authorization(self, redirect_uri: str) -> AuthorizationRequest:
        if not self.endpoints.authorization:
            raise OAuthError("no_authorization_endpoint", "no authorization_endpoint", permanent=True)
        verifier, challenge = _pkce()
        state = secrets.token_urlsafe(16)
        query = {
            "response_type": "code", "client_id": self.cfg.client_id, "redirect_uri": redirect_uri,
            "scope": " ".join(self.scopes), "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256",
        }  # fmt: skip
        if self.cfg.provider == "google":
            query.update(access_type="offline", prompt="consent")  # Google gives a refresh token only so
        url = f"{self.endpoints.authorization}?{urllib.parse.urlencode(query)}"
        return AuthorizationRequest(url, redirect_uri, {"state": state, "verifier": verifier})

    def redeem(self, request: AuthorizationRequest, answer: dict[str, str]) -> Grant:
        if answer.get("state") != request.state["state"]:
            raise OAuthError("state_mismatch", "the answer is not for this request", permanent=True)
        if "code" not in answer:
            raise error_from(answer)
        form = {
            "grant_type": "authorization_code", "code": answer["code"], "redirect_uri": request.redirect_uri,
            "code_verifier": request.state["verifier"],
        }  # fmt: skip
        return _grant(self._post(self.endpoints.token, form), self.scopes)


def client_for(cfg: OAuth2Config) -> OAuthClient:
    return MicrosoftClient(cfg) if cfg.provider == "microsoft" else StandardClient(cfg)
