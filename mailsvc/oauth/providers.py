"""Provider presets: endpoints and default scopes of Microsoft and Google, and what their errors mean."""

from __future__ import annotations

from dataclasses import dataclass

from mailsvc.config_servers import OAuth2Config

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
MICROSOFT_SCOPES = (
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
)
# App-only access (client_credentials) asks for the resource's configured permissions as a whole.
MICROSOFT_APP_SCOPES = ("https://outlook.office365.com/.default",)
GOOGLE_SCOPES = ("https://mail.google.com/",)
GOOGLE_ENDPOINTS = {
    "token_endpoint": "https://oauth2.googleapis.com/token",
    "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
    "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
}
# Scopes MSAL adds itself and refuses to be given.
MSAL_RESERVED = frozenset({"offline_access", "openid", "profile"})

# Errors of the token endpoint that retrying does not cure, and what the operator does about each.
PERMANENT_ERRORS = {
    "invalid_grant": "the refresh token was revoked or expired (password change, admin revocation, "
    "or unused too long): run `mailsvc oauth login` for this account",
    "interaction_required": "the user must sign in again (conditional access or MFA): run `mailsvc oauth login`",
    "consent_required": "an administrator must grant consent to the app registration, then run `mailsvc oauth login`",
    "invalid_client": "the client ID or client secret is wrong or expired: fix oauth2.client_id or the "
    "client secret in the configuration",
    "unauthorized_client": "the app registration may not use this grant or mailbox: check its API "
    "permissions (and, app-only, the mailbox's service principal access)",
    "invalid_scope": "the scopes are not granted to the app: check oauth2.scopes and the app's API permissions",
    "access_denied": "the sign-in was refused: run `mailsvc oauth login` again",
    "expired_token": "the sign-in code expired before it was used: run `mailsvc oauth login` again",
    "no_token": "there are no tokens for this account yet: run `mailsvc oauth login`",
}


def hint_for(code: str) -> str:
    return PERMANENT_ERRORS.get(code, "a temporary error of the identity provider: mailsvc retries")


def is_permanent(code: str) -> bool:
    return code in PERMANENT_ERRORS


@dataclass(frozen=True)
class Endpoints:
    token: str
    device_authorization: str | None
    authorization: str | None


def scopes_of(cfg: OAuth2Config) -> tuple[str, ...]:
    if cfg.scopes is not None:
        return cfg.scopes
    if cfg.provider == "microsoft":
        return MICROSOFT_APP_SCOPES if cfg.flow == "client_credentials" else MICROSOFT_SCOPES
    if cfg.provider == "google":
        return GOOGLE_SCOPES
    return ()


def authority_of(cfg: OAuth2Config) -> str:
    """Microsoft: the authority URL MSAL is given, e.g. https://login.microsoftonline.com/contoso.com."""
    return f"{(cfg.authority or MICROSOFT_AUTHORITY).rstrip('/')}/{cfg.tenant}"


def endpoints_of(cfg: OAuth2Config) -> Endpoints:
    preset: dict[str, str] = {}
    if cfg.provider == "google":
        preset = GOOGLE_ENDPOINTS
    elif cfg.provider == "microsoft":
        root = f"{authority_of(cfg)}/oauth2/v2.0"
        preset = {
            "token_endpoint": f"{root}/token",
            "device_authorization_endpoint": f"{root}/devicecode",
            "authorization_endpoint": f"{root}/authorize",
        }
    return Endpoints(
        token=cfg.token_endpoint or preset.get("token_endpoint", ""),
        device_authorization=cfg.device_authorization_endpoint or preset.get("device_authorization_endpoint"),
        authorization=cfg.authorization_endpoint or preset.get("authorization_endpoint"),
    )
