"""The auth and oauth2 keys by key path, the token file, and the refresh policy without a provider to ask."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from mailsvc.config import parse_config
from mailsvc.credentials import token_path
from mailsvc.errors import ConfigError, OAuthError
from mailsvc.oauth.keeper import TokenKeeper
from mailsvc.oauth.providers import MICROSOFT_APP_SCOPES, MICROSOFT_SCOPES, endpoints_of, scopes_of
from mailsvc.oauth.tokens import TokenFile, TokenSet


def raw(imap: dict[str, Any] | None = None, smtp: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "imap": {"host": "outlook.office365.com", "user": "help@contoso.com", **(imap or {})},
        "smtp": {"host": "smtp.office365.com", **(smtp or {})},
        "queues": {"help": {"address": "help@contoso.com"}},
        "store": {"path": "/var/lib/mailsvc/mailsvc.db"},
    }


MICROSOFT = {"provider": "microsoft", "tenant": "contoso.com", "client_id": "0000-1111"}


def problems(data: dict[str, Any], tmp_path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path)
    return caught.value.problems


def test_microsoft_defaults(tmp_path: Path) -> None:
    config = parse_config(raw({"auth": "oauth2", "oauth2": MICROSOFT}), tmp_path)
    oauth2 = config.imap.oauth2
    assert oauth2 is not None
    assert scopes_of(oauth2) == MICROSOFT_SCOPES
    assert endpoints_of(oauth2).token == "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
    assert token_path(config, config.imap).parent == Path("/var/lib/mailsvc/oauth")
    app = oauth2.model_copy(update={"flow": "client_credentials"})
    assert scopes_of(app) == MICROSOFT_APP_SCOPES


@pytest.mark.parametrize(
    ("imap", "path", "reason"),
    [
        ({"auth": "oauth2"}, "imap", "Value error, auth is oauth2: give the oauth2 section"),
        ({"auth": "oauth2", "oauth2": MICROSOFT, "password": "x"}, "imap", "auth is oauth2: leave out password"),
        ({"oauth2": MICROSOFT, "password": "x"}, "imap", "an oauth2 section needs auth: oauth2"),
        ({"auth": "oauth2", "oauth2": {**MICROSOFT, "tenant": None}}, "imap.oauth2",
         "provider microsoft: give tenant (the directory ID or domain)"),
        ({"auth": "oauth2", "oauth2": {"provider": "generic", "client_id": "c"}}, "imap.oauth2",
         "provider generic, flow device_code: give token_endpoint, device_authorization_endpoint"),
        ({"auth": "oauth2", "oauth2": {**MICROSOFT, "flow": "client_credentials"}}, "imap.oauth2",
         "flow client_credentials needs client_secret, client_secret_env or client_secret_file"),
        ({"auth": "oauth2", "oauth2": {**MICROSOFT, "authority": "http://login.example"}}, "imap.oauth2",
         "authority must be an https:// URL, not 'http://login.example'"),
        ({"auth": "oauth2", "oauth2": {**MICROSOFT, "flow": "password"}}, "imap.oauth2.flow", None),
        ({"auth": "oauth2", "oauth2": {**MICROSOFT, "scope": "x"}}, "imap.oauth2.scope", "unknown key"),
        ({"auth": "kerberos"}, "imap.auth", None),
        ({"auth": "oauth2", "oauth2": {"provider": "google", "client_id": "c"}}, "imap.oauth2",
         "provider google: Google's device flow does not grant the mail scope; use flow: authorization_code "
         "(an OAuth client of type Desktop app)"),
    ],
)  # fmt: skip
def test_bad_oauth2_settings_name_their_key_path(
    imap: dict[str, Any], path: str, reason: str | None, tmp_path: Path
) -> None:
    found = problems(raw(imap), tmp_path)
    assert [p for p, _ in found] == [path]
    if reason is not None:
        assert found[0][1].removeprefix("Value error, ") == reason.removeprefix("Value error, ")


def test_a_client_secret_file_that_is_missing_is_named(tmp_path: Path) -> None:
    oauth2 = {**MICROSOFT, "client_secret_file": str(tmp_path / "nope")}
    found = problems(raw({"auth": "oauth2", "oauth2": oauth2}), tmp_path)
    assert found == [("imap.oauth2.client_secret_file", f"cannot read {tmp_path / 'nope'}: no such file")]


def test_google_defaults(tmp_path: Path) -> None:
    google = {"provider": "google", "client_id": "c", "client_secret": "s", "flow": "authorization_code"}
    config = parse_config(raw({"auth": "oauth2", "oauth2": google}), tmp_path)
    assert config.imap.oauth2 is not None
    assert scopes_of(config.imap.oauth2) == ("https://mail.google.com/",)
    assert endpoints_of(config.imap.oauth2).token == "https://oauth2.googleapis.com/token"


def test_relative_token_file_is_beside_the_config(tmp_path: Path) -> None:
    config = parse_config(raw({"auth": "oauth2", "oauth2": {**MICROSOFT, "token_file": "tokens/help.json"}}), tmp_path)
    assert token_path(config, config.imap) == tmp_path / "tokens/help.json"


def test_token_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    file = TokenFile(tmp_path / "state" / "t.json")
    with file.locked():
        file.save(TokenSet(user="u", access_token="a1", refresh_token="r1", expires_at=10, issued_at=0))
        file.save(TokenSet(user="u", access_token="a2", refresh_token="r2", expires_at=10, issued_at=0))
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
    assert sorted(os.listdir(file.path.parent)) == ["t.json", "t.json.lock"]  # no temporary file left
    loaded = file.load()
    assert loaded is not None and loaded.refresh_token == "r2"
    assert "a2" not in repr(loaded) and "r2" not in repr(loaded)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_a_token_file_written_by_root_stays_the_service_users(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)  # the service's state directory (nobody, here)
    file = TokenFile(state / "oauth" / "t.json")
    with file.locked():
        file.save(TokenSet(user="u", access_token="a1"))
    for path in (state / "oauth", file.path, Path(f"{file.path}.lock")):
        assert (path.stat().st_uid, path.stat().st_gid) == (65534, 65534), path


def test_a_token_is_renewed_ahead_of_expiry() -> None:
    hour = TokenSet(user="u", access_token="a", issued_at=0, expires_at=3600)
    assert hour.fresh(3299)
    assert not hour.fresh(3300)  # five minutes early
    short = TokenSet(user="u", access_token="a", issued_at=0, expires_at=40)
    assert short.fresh(29) and not short.fresh(30)  # a quarter of a short lifetime early


def test_before_the_first_login_no_token_file_is_made_and_staff_are_told_once(tmp_path: Path) -> None:
    config = parse_config(raw({"auth": "oauth2", "oauth2": {**MICROSOFT, "token_file": "t.json"}}), tmp_path)
    assert config.imap.oauth2 is not None
    told: list[str] = []

    def on_failure(tokens: TokenSet, exc: OAuthError) -> bool:
        told.append(exc.code)
        return True

    keeper = TokenKeeper(config.imap.oauth2, "help@contoso.com", tmp_path / "t.json", on_failure=on_failure)
    for _ in range(3):
        with pytest.raises(OAuthError) as caught:
            keeper.access_token()
        assert caught.value.code == "no_token"
        assert "mailsvc oauth login" in caught.value.hint
    assert told == ["no_token"]
    assert not (tmp_path / "t.json").exists()
