"""The identity provider's error answers as the flows see them, against the suite's HTTPS identity provider:
a wrong client secret, slow_down, an answer that is not JSON, an outage, an endpoint nobody answers; and
the requests the flows refuse to make."""

from __future__ import annotations

import socket
import time
import urllib.parse
from typing import Any

import pytest

from mailsvc.config_servers import OAuth2Config
from mailsvc.errors import OAuthError
from mailsvc.oauth.flows import (
    DEVICE_GRANT,
    AuthorizationRequest,
    DeviceCode,
    Grant,
    MicrosoftClient,
    StandardClient,
)
from mailsvc.oauth.login import device_login
from mailsvc.testing.idp import IdentityProvider
from mailsvc.testing.tls import ThrowawayCA


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def generic(idp: IdentityProvider, ca: ThrowawayCA, **keys: Any) -> StandardClient:
    ends = idp.endpoints()
    settings: dict[str, Any] = {"provider": "generic", "client_id": "mailsvc-test", "ca_file": ca.cert_file,
                                "token_endpoint": ends["token_endpoint"],
                                "device_authorization_endpoint": ends["device_authorization_endpoint"],
                                "authorization_endpoint": ends["authorization_endpoint"]}  # fmt: skip
    return StandardClient(OAuth2Config(**{**settings, **keys}))


def refused(call: Any) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    return caught.value


def test_a_wrong_client_secret_is_permanent_with_the_fix(idp: IdentityProvider, tls_ca: ThrowawayCA) -> None:
    client = generic(idp, tls_ca, client_id="mailsvc-app", client_secret="not-the-secret-5Tg")
    error = refused(lambda: client.refresh(idp.refresh_token_for("alice@example.org", "mail")))
    assert (error.code, error.permanent) == ("invalid_client", True)
    assert error.description == "AADSTS7000215: Invalid client secret."
    assert "fix oauth2.client_id or the client secret" in error.hint
    assert "not-the-secret-5Tg" not in str(error)


def test_slow_down_makes_the_device_poll_five_seconds_slower(idp: IdentityProvider, tls_ca: ThrowawayCA) -> None:
    client = generic(idp, tls_ca)
    idp.slow_down_polls = 1
    device = client.start_device()
    slower = client.poll_device(device)
    assert isinstance(slower, DeviceCode)
    assert slower.interval == device.interval + 5  # RFC 8628, 3.5
    assert client.poll_device(slower) is slower  # then pending, at that pace
    idp.approve(device.user_code, "alice@example.org")
    assert isinstance(client.poll_device(slower), Grant)


def test_an_answer_that_is_not_json_is_a_temporary_error(idp: IdentityProvider, tls_ca: ThrowawayCA) -> None:
    idp.outage = (200, "text/html", b"<html><body>Please sign in to the proxy</body></html>")
    error = refused(lambda: generic(idp, tls_ca).refresh("any"))
    assert (error.code, error.permanent) == ("bad_answer", False)
    assert error.description == "the token endpoint did not answer JSON"


def test_an_outage_without_a_body_is_a_temporary_error(idp: IdentityProvider, tls_ca: ThrowawayCA) -> None:
    idp.outage = (503, "text/plain", b"")
    error = refused(lambda: generic(idp, tls_ca).refresh("any"))
    assert (error.code, error.permanent) == ("http_503", False)
    assert error.hint == "a temporary error of the identity provider: mailsvc retries"


def test_a_device_request_refused_with_an_error_names_it(idp: IdentityProvider, tls_ca: ThrowawayCA) -> None:
    idp.outage = (400, "application/json", b'{"error": "invalid_scope", "error_description": "AADSTS70011: bad"}')
    error = refused(generic(idp, tls_ca).start_device)
    assert (error.code, error.description, error.permanent) == ("invalid_scope", "AADSTS70011: bad", True)


def test_an_endpoint_nobody_answers_is_a_network_error(tls_ca: ThrowawayCA) -> None:
    root = f"https://127.0.0.1:{closed_port()}"
    cfg = OAuth2Config(provider="generic", client_id="mailsvc-test", ca_file=tls_ca.cert_file,
                       token_endpoint=f"{root}/token", device_authorization_endpoint=f"{root}/devicecode")  # fmt: skip
    error = refused(lambda: StandardClient(cfg).refresh("any"))
    assert (error.code, error.permanent) == ("network_error", False)
    assert "refused" in error.description.lower()


def test_microsoft_with_a_sign_in_host_nobody_answers_is_a_network_error(tls_ca: ThrowawayCA) -> None:
    cfg = OAuth2Config(provider="microsoft", tenant="contoso.com", client_id="0000-1111", ca_file=tls_ca.cert_file,
                       authority=f"https://127.0.0.1:{closed_port()}")  # fmt: skip
    error = refused(lambda: MicrosoftClient(cfg).refresh("any"))
    assert (error.code, error.permanent) == ("network_error", False)
    # The connection's own error, said once: not wrapped again as "network_error: network_error: ...".
    assert error.description.startswith("HTTPSConnectionPool(host='127.0.0.1'")


def test_flows_without_their_endpoint_are_refused_before_any_request() -> None:
    """A client made for one flow, asked for the other (the configuration requires only its own flow's)."""
    token = "https://127.0.0.1:9/token"  # never asked
    browser = OAuth2Config(provider="generic", client_id="mailsvc-test", flow="authorization_code",
                           token_endpoint=token, authorization_endpoint="https://127.0.0.1:9/authorize")  # fmt: skip
    device = OAuth2Config(provider="generic", client_id="mailsvc-test", token_endpoint=token,
                          device_authorization_endpoint="https://127.0.0.1:9/devicecode")  # fmt: skip
    assert refused(StandardClient(browser).start_device).code == "no_device_endpoint"
    no_browser = refused(lambda: StandardClient(device).start_authorization("http://localhost:8080/"))
    assert (no_browser.code, no_browser.permanent) == ("no_authorization_endpoint", True)


def test_google_is_asked_for_a_refresh_token_by_consent() -> None:
    cfg = OAuth2Config(provider="google", client_id="1234.apps.googleusercontent.com", client_secret="s-3Fv",
                       flow="authorization_code")  # fmt: skip
    request = StandardClient(cfg).start_authorization("http://localhost:8080/")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
    assert (query["access_type"], query["prompt"]) == ("offline", "consent")
    assert query["code_challenge_method"] == "S256"
    assert "s-3Fv" not in request.url


def test_an_authorization_answer_for_another_request_or_with_an_error_is_refused(
    idp: IdentityProvider, tls_ca: ThrowawayCA
) -> None:
    client = generic(idp, tls_ca)
    request: AuthorizationRequest = client.start_authorization("http://localhost:8080/")
    state = request.state["state"]
    assert refused(lambda: client.redeem(request, {"state": "forged", "code": "x"})).code == "state_mismatch"
    denied = refused(lambda: client.redeem(request, {"state": state, "error": "access_denied"}))
    assert (denied.code, denied.permanent) == ("access_denied", True)
    assert idp.grants["authorization_code"] == 0  # nothing was redeemed


def test_a_device_code_not_used_in_time_stops_the_login_with_what_to_do(
    idp: IdentityProvider, tls_ca: ThrowawayCA
) -> None:
    shown: list[str] = []
    later = time.time() + 3600  # the code's 15 minutes are over
    error = refused(lambda: device_login(generic(idp, tls_ca), shown.append, lambda _s: None, clock=lambda: later))
    assert (error.code, error.permanent) == ("expired_token", True)
    assert error.hint == "the sign-in code expired before it was used: run `mailsvc oauth login` again"
    assert shown[0].startswith("To sign in, open ")
    assert idp.grants[DEVICE_GRANT] == 0  # not polled after it expired


def test_the_device_login_tells_when_the_provider_asks_to_poll_more_slowly(
    idp: IdentityProvider, tls_ca: ThrowawayCA
) -> None:
    shown: list[str] = []
    waits: list[float] = []
    idp.slow_down_polls = 1

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # the user approves while the second wait runs
            (code,) = idp.pending_user_codes()
            idp.approve(code, "alice@example.org")

    grant = device_login(generic(idp, tls_ca), shown.append, wait)
    assert grant.refresh_token
    assert "the identity provider asks to poll more slowly: every 6s" in shown
    assert waits == [1.0, 6.0]
