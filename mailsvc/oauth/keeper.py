"""The refresh policy: a fresh access token at every login, refreshed ahead of expiry and on demand.

A refresh that fails for good (revoked, expired, consent missing) is written to the token file, logged
once as `oauth_refresh_failed` with the provider's error code and what to do, and reported once through
`on_failure`; until someone logs in again, the identity provider is not asked again for that account.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from mailsvc import metrics
from mailsvc.config_servers import OAuth2Config
from mailsvc.errors import OAuthError
from mailsvc.log import get_logger
from mailsvc.oauth.flows import Grant, OAuthClient, client_for
from mailsvc.oauth.providers import hint_for
from mailsvc.oauth.tokens import TokenFile, TokenSet

log = get_logger(component="oauth")

# (token file, error code) already logged by this process.
_logged: set[tuple[Path, str]] = set()

# Told once per failure: (the account's token state, the error); True when the report was made.
OnFailure = Callable[[TokenSet, OAuthError], bool]


def tokens_from(grant: Grant, user: str, now: float, previous: TokenSet | None = None) -> TokenSet:
    """The token file's new content; a refresh token not rotated by the provider is kept."""
    kept = previous.refresh_token if previous else None
    return TokenSet(
        user=user,
        access_token=grant.access_token,
        expires_at=now + grant.expires_in,
        issued_at=now,
        refresh_token=grant.refresh_token or kept,
        refresh_obtained_at=now if grant.refresh_token else (previous.refresh_obtained_at if previous else None),
        scopes=grant.scopes,
    )


class TokenKeeper:
    def __init__(
        self,
        cfg: OAuth2Config,
        user: str,
        path: Path,
        *,
        account: str = "",
        client: OAuthClient | None = None,
        on_failure: OnFailure | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.user = user
        self.file = TokenFile(path)
        self.account = account
        self._client = client
        self.on_failure = on_failure
        self.clock = clock

    @property
    def client(self) -> OAuthClient:
        if self._client is None:
            self._client = client_for(self.cfg)
        return self._client

    def access_token(self, *, renew: bool = False) -> str:
        """A token valid now; `renew` after the server refused the last one."""
        with self.file.locked():
            tokens = self.file.load()
            now = self.clock()
            if tokens is not None and not renew and tokens.fresh(now) and tokens.last_error is None:
                return tokens.access_token
            if self.cfg.flow == "client_credentials":
                return self._obtain(tokens, now, self.client.client_credentials)
            if tokens is None or not tokens.refresh_token:
                state = tokens or TokenSet(user=self.user)
                raise self._failed(state, OAuthError("no_token", "", permanent=True, hint=hint_for("no_token")))
            if tokens.last_error is not None:
                # Failed for good already: asking again would only repeat the refusal.
                raise self._failed(tokens, OAuthError(tokens.last_error, "refused before; no new login since",
                                                      permanent=True, hint=hint_for(tokens.last_error)))  # fmt: skip
            refresh_token = tokens.refresh_token
            return self._obtain(tokens, now, lambda: self.client.refresh(refresh_token))

    def _obtain(self, tokens: TokenSet | None, now: float, ask: Callable[[], Grant]) -> str:
        try:
            grant = ask()
        except OAuthError as exc:
            metrics.OAUTH_REFRESH_FAILURES.labels(self.account).inc()
            if not exc.permanent:
                log.warning("oauth_refresh_deferred", account=self.account, user=self.user, error=exc.code,
                            detail=exc.description)  # fmt: skip
                raise
            raise self._failed(tokens or TokenSet(user=self.user), exc) from None
        metrics.OAUTH_REFRESHES.labels(self.account).inc()
        new = tokens_from(grant, self.user, now, tokens)
        self.file.save(new)
        _logged.difference_update({k for k in _logged if k[0] == self.file.path})
        log.info("oauth_token_refreshed", account=self.account, user=self.user, expires_in_s=round(grant.expires_in),
                 rotated=bool(grant.refresh_token and tokens and tokens.refresh_token), flow=self.cfg.flow)  # fmt: skip
        return new.access_token

    def _failed(self, tokens: TokenSet, exc: OAuthError) -> OAuthError:
        """Record a failure for good: logged and reported once, until the next success."""
        now = self.clock()
        updated = tokens.failed(exc.code, now)
        # Once per process and failure: another process (doctor, an earlier run) may have recorded it first.
        first_here = (self.file.path, exc.code) not in _logged
        if first_here:
            _logged.add((self.file.path, exc.code))
            log.error("oauth_refresh_failed", account=self.account, user=self.user, error=exc.code,
                      detail=exc.description, action=exc.hint)  # fmt: skip
        if not self.file.path.exists():
            # No login yet: nothing to record in (a check before the first login creates no file);
            # staff are told once per process.
            if first_here and self.on_failure is not None:
                self.on_failure(updated, exc)
            return exc
        if not updated.notified and self.on_failure is not None and self.on_failure(updated, exc):
            updated = replace(updated, notified=True)
        if updated != tokens:
            self.file.save(updated)
        return exc


def store_login(cfg: OAuth2Config, user: str, path: Path, grant: Grant, now: float | None = None) -> TokenSet:
    """Keep what a login gave: a new token file, any earlier failure forgotten."""
    tokens = tokens_from(grant, user, time.time() if now is None else now)
    file = TokenFile(path)
    with file.locked():
        file.save(tokens)
    return tokens
