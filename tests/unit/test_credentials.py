"""A destination's credentials (chalicelib/credentials.py): the decisions as tables (the token
request, the token endpoint's answers, when to refresh, SSM errors, malformed parameters), then
`RequestCredentials` against fakes: what each auth kind carries, one token per expiry, renewals
deduplicated by generation, failures remembered, and never a secret in a reason, a log or a repr.
tests/integration/test_token_endpoint.py asks oauthlib's token endpoint over HTTP."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import pytest
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from chalicelib import secret_values
from chalicelib.api_client import Endpoint
from chalicelib.credentials import (
    Issued,
    OAuth2,
    RequestCredentials,
    TokenFailure,
    basic_credentials,
    read_token_answer,
    refresh_at,
    secret_failure,
    shown_url,
    token_request,
)
from chalicelib.model import Authorization, CredentialsFailure
from chalicelib.secret_values import SecretValueError
from chalicelib.secrets import SecretError
from chalicelib.settings import Settings
from tests.fakes import FakeClock, FakeSecret, HttpAnswer, ScriptedHttp

TOKEN_URL = "https://auth.example/oauth/token"
CLIENT = {"client_id": "trickle", "client_secret": "cs-9f2e-never-log-me"}
SIGNING_SECRET = "whsec_" + base64.b64encode(b"signing-key-never-log").decode()
KEY = "sk-live-0a1b-never-log-me"
TOKEN = "at-5c7d-never-log-me"


def token(access_token: str = TOKEN, expires_in: object = 3600, **more: object) -> HttpAnswer:
    fields: dict[str, object] = {"access_token": access_token, "token_type": "Bearer", **more}
    if expires_in is not None:
        fields["expires_in"] = expires_in
    return HttpAnswer(200, json.dumps(fields))


def refused(status: int = 401, error: str = "invalid_client") -> HttpAnswer:
    return HttpAnswer(status, json.dumps({"error": error}))


def oauth2(
    http: ScriptedHttp,
    client: FakeSecret | None = None,
    clock: FakeClock | None = None,
    skew_s: float = 60,
    **more: Any,
) -> RequestCredentials:
    return RequestCredentials(
        "billing",
        "oauth2_client_credentials",
        client or FakeSecret(json.dumps(CLIENT)),
        oauth2=OAuth2(TOKEN_URL, refresh_skew_s=skew_s),
        token_endpoint=Endpoint(http, "/oauth/token"),
        clock=(clock or FakeClock()).monotonic,
        **more,
    )


def carried(credentials: RequestCredentials) -> Authorization:
    got = credentials.current()
    assert isinstance(got, Authorization), got
    return got


# --- the decisions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (TOKEN_URL, TOKEN_URL),
        ("https://user:pw@auth.example:8443/t?key=secret#frag", "https://auth.example:8443/t"),
        ("http://127.0.0.1:9000/oauth/token", "http://127.0.0.1:9000/oauth/token"),
    ],
)
def test_a_reason_shows_the_token_url_without_user_info_or_query(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    ("config", "client_id", "secret", "basic_user", "form"),
    [
        (OAuth2(TOKEN_URL), "trickle", "s", ("trickle", "s"), {"grant_type": ["client_credentials"]}),
        (
            OAuth2(TOKEN_URL, scope="a:write b", audience="https://api.example"),
            "id",
            "s",
            ("id", "s"),
            {
                "grant_type": ["client_credentials"],
                "scope": ["a:write b"],
                "audience": ["https://api.example"],
            },
        ),
        # RFC 6749 2.3.1: form-urlencoded first, so ':' '%' '+' ' ' and UTF-8 survive Basic
        (
            OAuth2(TOKEN_URL),
            "a:b c",
            "p%+ é",
            ("a%3Ab+c", "p%25%2B+%C3%A9"),
            {"grant_type": ["client_credentials"]},
        ),
        (
            OAuth2(TOKEN_URL, client_auth="body"),
            "a:b c",
            "p%+ é",
            None,
            {"grant_type": ["client_credentials"], "client_id": ["a:b c"], "client_secret": ["p%+ é"]},
        ),
    ],
)
def test_the_token_request(
    config: OAuth2,
    client_id: str,
    secret: str,
    basic_user: tuple[str, str] | None,
    form: dict[str, list[str]],
) -> None:
    headers, body = token_request(config, client_id, secret)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(body) == form
    if basic_user is None:
        assert "Authorization" not in headers
    else:
        scheme, _, encoded = headers["Authorization"].partition(" ")
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        assert (scheme, user, password) == ("Basic", *basic_user)
        assert (unquote_plus(user), unquote_plus(password)) == (client_id, secret)


GARBLED = (True, False)
REFUSED = (False, True)


@pytest.mark.parametrize(
    ("status", "body", "meaning"),
    [
        (200, json.dumps({"access_token": "t", "token_type": "Bearer", "expires_in": 300}), Issued("t", 300)),
        (
            200,
            json.dumps({"access_token": "t", "token_type": "bearer", "expires_in": "300"}),
            Issued("t", 300),
        ),
        (200, json.dumps({"access_token": "t", "expires_in": 1.5}), Issued("t", 1.5)),
        (200, json.dumps({"access_token": "t", "token_type": "Bearer"}), Issued("t", None)),
        (201, json.dumps({"access_token": "t", "expires_in": None}), Issued("t", None)),
        (
            401,
            json.dumps({"error": "invalid_client"}),
            (*REFUSED, "refused the client: HTTP 401 invalid_client"),
        ),
        (
            400,
            json.dumps({"error": "invalid_scope"}),
            (*REFUSED, "refused the client: HTTP 400 invalid_scope"),
        ),
        (403, "<html>forbidden</html>", (*REFUSED, "refused the client: HTTP 403")),
        (400, json.dumps({"error": "bad <script>"}), (*REFUSED, "refused the client: HTTP 400")),
        (
            503,
            json.dumps({"error": "temporarily_unavailable"}),
            (*GARBLED, "is unavailable: HTTP 503 temporarily_unavailable"),
        ),
        (500, "oops", (*GARBLED, "is unavailable: HTTP 500")),
        (429, "", (*GARBLED, "is unavailable: HTTP 429")),
        (408, "", (*GARBLED, "is unavailable: HTTP 408")),
        (404, "", (False, False, "answered HTTP 404: check token_url")),
        (302, "", (False, False, "answered HTTP 302: check token_url")),
        (200, "not json", (*GARBLED, "answered HTTP 200 without a JSON object")),
        (200, "[1]", (*GARBLED, "answered HTTP 200 without a JSON object")),
        (200, json.dumps({"token_type": "Bearer"}), (*GARBLED, "answered HTTP 200 without an access_token")),
        (200, json.dumps({"access_token": ""}), (*GARBLED, "answered HTTP 200 without an access_token")),
        (200, json.dumps({"access_token": 7}), (*GARBLED, "answered HTTP 200 without an access_token")),
        (
            200,
            json.dumps({"access_token": "a\r\nX: y"}),
            (*GARBLED, "answered HTTP 200 with an access_token unfit for a header"),
        ),
        (
            200,
            json.dumps({"access_token": "a b"}),
            (*GARBLED, "answered HTTP 200 with an access_token unfit for a header"),
        ),
        (
            200,
            json.dumps({"access_token": "t", "token_type": "mac"}),
            (False, False, "issued a token of type 'mac' other than Bearer"),
        ),
        (
            200,
            json.dumps({"access_token": "t", "token_type": 1}),
            (False, False, "issued a token of type other than Bearer"),
        ),
        (
            200,
            json.dumps({"access_token": "t", "expires_in": 0}),
            (*GARBLED, "answered HTTP 200 with an expires_in that is not a positive number"),
        ),
        (
            200,
            json.dumps({"access_token": "t", "expires_in": "soon"}),
            (*GARBLED, "answered HTTP 200 with an expires_in that is not a positive number"),
        ),
        (
            200,
            json.dumps({"access_token": "t", "expires_in": True}),
            (*GARBLED, "answered HTTP 200 with an expires_in that is not a positive number"),
        ),
    ],
)
def test_what_the_token_endpoint_answer_means(
    status: int, body: str, meaning: Issued | tuple[bool, bool, str]
) -> None:
    expected = meaning if isinstance(meaning, Issued) else TokenFailure(*meaning)
    assert read_token_answer(status, body.encode()) == expected


@pytest.mark.parametrize(
    ("expires_in", "skew_s", "due"),
    [
        (3600, 60, 1000 + 3540),
        (300, 0, 1000 + 300),
        (10, 60, 1000 + 5),  # a short-lived token: used for half its life, not asked for at every use
        (120, 60, 1000 + 60),
    ],
)
def test_when_a_token_is_refreshed(expires_in: float, skew_s: float, due: float) -> None:
    assert refresh_at(1000, expires_in, skew_s) == due


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("ParameterNotFound", False),
        ("ParameterVersionNotFound", False),
        ("AccessDeniedException", False),
        ("InvalidKeyId", False),
        ("ValidationException", False),
        ("ThrottlingException", True),
        ("InternalServerError", True),
        ("EndpointConnectionError", True),
        ("", True),
    ],
)
def test_an_ssm_error_is_lasting_only_when_the_parameter_is_missing_or_forbidden(
    code: str, retryable: bool
) -> None:
    error = SecretError("cannot read SSM parameter '/p': X", code)
    assert secret_failure(error) == CredentialsFailure(retryable, "cannot read SSM parameter '/p': X")


# --- what each kind carries ---------------------------------------------------------------------


def test_no_auth_carries_nothing_but_what_it_is_given() -> None:
    assert carried(RequestCredentials("hooks", "none", None)) == Authorization({}, (), 1, ())


@pytest.mark.parametrize(
    ("header", "scheme", "value", "expected"),
    [
        ("x-api-key", "", KEY, {"x-api-key": KEY}),
        ("Authorization", "Bearer", KEY, {"Authorization": f"Bearer {KEY}"}),
    ],
)
def test_an_api_key_in_its_header(header: str, scheme: str, value: str, expected: dict[str, str]) -> None:
    credentials = RequestCredentials(
        "orders", "api_key", FakeSecret(value), key_header=header, key_scheme=scheme
    )
    assert carried(credentials) == Authorization(expected, (), 1, (KEY,))


def test_an_empty_basic_password_is_sent_as_empty() -> None:
    """An API key as the user name with no password (as Stripe takes it)."""
    got = carried(
        RequestCredentials("pay", "basic", FakeSecret(json.dumps({"username": "sk_x", "password": ""})))
    )
    assert got.headers == {"Authorization": "Basic " + base64.b64encode(b"sk_x:").decode()}


def test_basic_is_base64_of_utf8_user_colon_password() -> None:
    secret = FakeSecret(json.dumps({"username": "ünï", "password": "p:w é"}))
    got = carried(RequestCredentials("erp", "basic", secret))
    encoded = base64.b64encode("ünï:p:w é".encode()).decode()
    assert got.headers == {"Authorization": f"Basic {encoded}"}
    assert set(got.secrets) == {encoded, "p:w é"}


def test_oauth2_secret_headers_and_signing_keys_together() -> None:
    http = ScriptedHttp(token())
    headers = FakeSecret(json.dumps({"x-tenant-key": "tk-never-log"}), name="/trickle/test/billing-headers")
    credentials = oauth2(
        http,
        signing_secret=FakeSecret(SIGNING_SECRET, name="/trickle/test/billing-signing-secret"),
        headers_secret=headers,
        secret_headers=("X-Tenant-Key",),
    )
    got = carried(credentials)
    assert got.headers == {"Authorization": f"Bearer {TOKEN}", "X-Tenant-Key": "tk-never-log"}
    assert got.signing_keys == (b"signing-key-never-log",)
    assert set(got.secrets) == {TOKEN, "tk-never-log"}
    assert repr(got) == "Authorization(generation=1, headers=[Authorization, X-Tenant-Key])"


@pytest.mark.parametrize(
    ("kind", "value", "parse"),
    [
        ("api_key", f"{KEY}\r\nX-Evil: 1", secret_values.api_key),
        ("basic", json.dumps({"username": "u", "password": KEY, "extra": "x"}), secret_values.basic),
        ("oauth2", json.dumps({**CLIENT, "scope": "s"}), secret_values.oauth2_client),
        (
            "headers",
            json.dumps({"X-A": KEY, "X-Other": "2"}),
            partial(secret_values.secret_headers, names=("X-A",)),
        ),
        ("signing", f"{SIGNING_SECRET} whsec_%%%", secret_values.signing_keys),
    ],
    ids=["api_key", "basic", "oauth2", "headers", "signing"],
)
def test_each_parameter_is_read_as_secret_values_reads_its_kind_and_refused_naming_it(
    kind: str, value: str, parse: Callable[[str], object]
) -> None:
    """The rules themselves are tested as a table in test_secret_values.py."""
    secret = FakeSecret(value, name="/trickle/test/p")
    credentials = {
        "api_key": lambda: RequestCredentials("d", "api_key", secret),
        "basic": lambda: RequestCredentials("d", "basic", secret),
        "oauth2": lambda: oauth2(ScriptedHttp(token()), client=secret),
        "headers": lambda: RequestCredentials(
            "d", "none", None, headers_secret=secret, secret_headers=("X-A",)
        ),
        "signing": lambda: RequestCredentials("d", "none", None, signing_secret=secret),
    }[kind]()
    with pytest.raises(SecretValueError) as refused:
        parse(value)
    got = credentials.current()
    assert got == CredentialsFailure(False, f"SSM parameter '/trickle/test/p': {refused.value}")
    assert KEY not in got.reason and CLIENT["client_secret"] not in got.reason and "X-Evil" not in got.reason


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("d", "oauth2", FakeSecret("x")), {}),
        (("d", "none", FakeSecret("x")), {}),
        (("d", "api_key", None), {}),
        (("d", "oauth2_client_credentials", FakeSecret("x")), {}),
        (("d", "api_key", FakeSecret("x")), {"oauth2": OAuth2(TOKEN_URL)}),
        (("d", "none", None), {"secret_headers": ("X-A",)}),
        (("d", "none", None), {"headers_secret": FakeSecret("{}")}),
    ],
)
def test_credentials_built_against_their_kind_are_a_programming_error(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        RequestCredentials(*args, **kwargs)


@pytest.mark.parametrize(
    ("fields", "parameters", "headers"),
    [
        ({}, ["/trickle/test/api-key"], {"x-api-key": "v:/trickle/test/api-key"}),
        (
            {"api_key_header": "Authorization", "api_key_scheme": "Bearer"},
            ["/trickle/test/api-key"],
            {"Authorization": "Bearer v:/trickle/test/api-key"},
        ),
        ({"auth": "none", "api_key_parameter": ""}, [], {}),
        (
            {"auth": "none", "api_key_parameter": "", "secret_headers": ("X-A",), "headers_parameter": "/h"},
            ["/h"],
            {"X-A": "h"},
        ),
        ({"auth": "basic"}, ["/trickle/test/api-key"], {"Authorization": basic_credentials("u", "p")}),
        (
            {
                "auth": "oauth2_client_credentials",
                "token_url": TOKEN_URL,
                "scope": "s",
                "client_auth": "body",
            },
            ["/trickle/test/api-key"],
            {"Authorization": f"Bearer {TOKEN}"},
        ),
        (
            {
                "auth": "none",
                "api_key_parameter": "",
                "signing": "standard_webhooks",
                "signing_parameter": "/s",
            },
            ["/s"],
            {},
        ),
    ],
)
def test_credentials_of_a_routes_file_destination(
    settings: Settings, fields: dict[str, Any], parameters: list[str], headers: dict[str, str]
) -> None:
    destination = replace(settings.destination("orders"), **fields)
    values = {
        "/trickle/test/api-key": f"v:{destination.api_key_parameter}",
        "/h": '{"X-A": "h"}',
        "/s": SIGNING_SECRET,
    }
    if destination.auth == "basic":
        values["/trickle/test/api-key"] = json.dumps({"username": "u", "password": "p"})
    if destination.auth == "oauth2_client_credentials":
        values["/trickle/test/api-key"] = json.dumps(CLIENT)
    read: list[str] = []

    def secret(name: str) -> FakeSecret:
        read.append(name)
        return FakeSecret(values[name], name=name)

    http = ScriptedHttp(token())
    endpoint = Endpoint(http, "/oauth/token") if destination.auth == "oauth2_client_credentials" else None
    got = carried(RequestCredentials.from_destination(destination, secret, endpoint))
    assert (read, dict(got.headers)) == (parameters, headers)
    assert got.signing_keys == ((b"signing-key-never-log",) if destination.signing else ())
    if endpoint is not None:
        assert parse_qs(http.requests[0][3]) == {
            "grant_type": ["client_credentials"],
            "scope": ["s"],
            "client_id": [CLIENT["client_id"]],
            "client_secret": [CLIENT["client_secret"]],
        }


def test_a_bad_client_auth_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="client_auth"):
        RequestCredentials(
            "d",
            "oauth2_client_credentials",
            FakeSecret("{}"),
            oauth2=OAuth2(TOKEN_URL, client_auth="post"),
            token_endpoint=Endpoint(ScriptedHttp(token()), "/"),
        )


# --- generations, caching, refresh ---------------------------------------------------------------


def test_the_same_credentials_keep_their_generation_and_a_rotated_key_gets_the_next() -> None:
    key = FakeSecret("old-key")
    credentials = RequestCredentials("orders", "api_key", key, key_header="x-api-key")
    first = carried(credentials)
    assert carried(credentials) is first
    key.values = ["new-key"]  # the cached value passed its max age and was read again
    second = carried(credentials)
    assert (first.generation, second.generation) == (1, 2)
    assert second.headers == {"x-api-key": "new-key"}


def test_one_token_serves_every_use_until_it_is_due_then_one_more_request() -> None:
    http, clock = ScriptedHttp(token("t1", 600), token("t2", 600)), FakeClock()
    credentials = oauth2(http, clock=clock, skew_s=60)
    assert {carried(credentials).headers["Authorization"] for _ in range(50)} == {"Bearer t1"}
    clock.advance(539.9)
    assert carried(credentials).headers["Authorization"] == "Bearer t1"
    clock.advance(0.1)  # 60 s before it runs out
    got = carried(credentials)
    assert (got.headers["Authorization"], got.generation) == ("Bearer t2", 2)
    assert len(http.requests) == 2


def test_a_token_without_expires_in_is_used_until_the_api_refuses_it() -> None:
    http, clock = ScriptedHttp(token("t1", None), token("t2", None)), FakeClock()
    credentials = oauth2(http, clock=clock)
    used = carried(credentials)
    clock.advance(10 * 86400)
    assert carried(credentials) is used
    assert credentials.renew(used, reread_secrets=False) is True
    assert carried(credentials).headers["Authorization"] == "Bearer t2"
    assert len(http.requests) == 2


def test_sixteen_workers_refused_with_one_token_cause_one_token_request() -> None:
    http = ScriptedHttp(token("t1"), token("t2"), token("t3"))
    credentials = oauth2(http)
    refused_with = carried(credentials)
    renewed = [credentials.renew(refused_with.generation, reread_secrets=False) for _ in range(16)]
    after = {carried(credentials).headers["Authorization"] for _ in range(16)}
    assert renewed == [True] * 16
    assert after == {"Bearer t2"}
    assert len(http.requests) == 2


def test_a_renewal_after_newer_credentials_are_in_use_just_says_retry() -> None:
    http = ScriptedHttp(token("t1"), token("t2"))
    credentials = oauth2(http)
    old = carried(credentials)
    credentials.renew(old, reread_secrets=False)
    new = carried(credentials)
    assert credentials.renew(old, reread_secrets=True) is True
    assert carried(credentials) is new
    assert len(http.requests) == 2


@pytest.mark.parametrize(
    ("values", "reread", "changed"), [(["k"], False, False), (["k"], True, False), (["k", "k2"], True, True)]
)
def test_renewing_an_api_key_is_worth_a_retry_only_if_it_changed(
    values: list[str], reread: bool, changed: bool
) -> None:
    key = FakeSecret(*values)
    credentials = RequestCredentials("orders", "api_key", key)
    used = carried(credentials)
    assert credentials.renew(used, reread_secrets=reread) is changed
    assert key.refreshes == (1 if reread else 0)
    assert carried(credentials).generation == (2 if changed else 1)


def test_renewing_reads_the_signing_and_headers_parameters_again() -> None:
    signing_secret, headers = FakeSecret(SIGNING_SECRET), FakeSecret('{"X-A": "1"}', '{"X-A": "2"}')
    credentials = RequestCredentials(
        "d", "none", None, signing_secret=signing_secret, headers_secret=headers, secret_headers=("X-A",)
    )
    used = carried(credentials)
    assert credentials.renew(used, reread_secrets=True) is True
    assert (signing_secret.refreshes, headers.refreshes) == (1, 1)
    assert carried(credentials).headers == {"X-A": "2"}


def test_a_failed_refresh_keeps_the_unexpired_token_and_tries_again_later() -> None:
    http, clock = (
        ScriptedHttp(token("t1", 100), refused(503, "temporarily_unavailable"), token("t2", 100)),
        FakeClock(),
    )
    credentials = oauth2(http, clock=clock, skew_s=20, remember_failures_s=5)
    carried(credentials)
    clock.advance(80)  # due
    assert carried(credentials).headers["Authorization"] == "Bearer t1"
    clock.advance(4.9)
    assert carried(credentials).headers["Authorization"] == "Bearer t1"
    assert len(http.requests) == 2  # not asked again before 5 s
    clock.advance(0.1)
    assert carried(credentials).headers["Authorization"] == "Bearer t2"
    assert len(http.requests) == 3


def test_once_the_token_has_expired_a_failed_refresh_is_a_failure() -> None:
    http, clock = ScriptedHttp(token("t1", 100), HttpAnswer(503)), FakeClock()
    credentials = oauth2(http, clock=clock, skew_s=20, remember_failures_s=5)
    carried(credentials)
    clock.advance(100)
    assert credentials.current() == CredentialsFailure(
        True, f"token endpoint {TOKEN_URL} is unavailable: HTTP 503"
    )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (refused(503, "temporarily_unavailable"), "is unavailable: HTTP 503 temporarily_unavailable"),
        (HttpAnswer(200, "<html>"), "answered HTTP 200 without a JSON object"),
        (ReadTimeoutError(None, "/oauth/token", "read timed out"), "is unreachable: timeout"),
        (NewConnectionError(None, "refused"), "is unreachable: connection error: NewConnectionError"),  # type: ignore[arg-type]
        (ProtocolError("reset"), "is unreachable: connection error: ProtocolError"),
    ],
)
def test_an_unavailable_token_endpoint_is_retryable_and_remembered_briefly(
    answer: HttpAnswer | Exception, reason: str
) -> None:
    http, clock = ScriptedHttp(answer, token()), FakeClock()
    client = FakeSecret(json.dumps(CLIENT))
    credentials = oauth2(http, client=client, clock=clock, remember_failures_s=5)
    failed = CredentialsFailure(True, f"token endpoint {TOKEN_URL} {reason}")
    assert [credentials.current() for _ in range(16)] == [failed] * 16
    clock.advance(4.9)
    assert credentials.current() == failed
    assert (len(http.requests), client.refreshes) == (1, 0)
    clock.advance(0.1)
    assert carried(credentials).headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_refused_client_is_read_again_from_ssm_once_then_refused(status: int) -> None:
    http = ScriptedHttp(refused(status))
    client = FakeSecret(json.dumps(CLIENT), json.dumps({**CLIENT, "client_secret": "also-wrong"}))
    got = oauth2(http, client=client).current()
    assert got == CredentialsFailure(
        False, f"token endpoint {TOKEN_URL} refused the client: HTTP {status} invalid_client"
    )
    assert (client.refreshes, len(http.requests)) == (1, 2)


def test_a_refused_client_whose_secret_did_not_change_is_not_asked_for_again() -> None:
    http = ScriptedHttp(refused(401))
    client = FakeSecret(json.dumps(CLIENT))
    got = oauth2(http, client=client).current()
    assert isinstance(got, CredentialsFailure) and not got.retryable
    assert (client.refreshes, len(http.requests)) == (1, 1)


def test_a_rotated_client_secret_is_found_by_the_reread() -> None:
    http = ScriptedHttp(refused(401), token())
    client = FakeSecret(json.dumps(CLIENT), json.dumps({**CLIENT, "client_secret": "rotated"}))
    assert carried(oauth2(http, client=client)).headers["Authorization"] == f"Bearer {TOKEN}"
    sent_secrets = [
        parse_qs(body).get("client_secret") or headers["Authorization"]
        for _, _, headers, body in http.requests
    ]
    assert len(set(map(str, sent_secrets))) == 2


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (
            SecretError(
                "cannot read SSM parameter '/p': ClientError (ParameterNotFound)", "ParameterNotFound"
            ),
            False,
        ),
        (
            SecretError("cannot read SSM parameter '/p': EndpointConnectionError", "EndpointConnectionError"),
            True,
        ),
    ],
)
def test_an_unreadable_parameter_is_a_failure_of_its_kind(error: SecretError, retryable: bool) -> None:
    http = ScriptedHttp(token())
    got = oauth2(http, client=FakeSecret(error)).current()
    assert got == CredentialsFailure(retryable, str(error))
    assert http.requests == []  # never asks without a client


def test_sixteen_workers_starting_at_once_make_one_token_request() -> None:
    http = ScriptedHttp(token())
    credentials = oauth2(http)
    start = threading.Barrier(16)
    got: list[Authorization | CredentialsFailure] = []

    def worker() -> None:
        start.wait(timeout=30)
        got.append(credentials.current())

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == 16 and len({id(a) for a in got}) == 1
    assert len(http.requests) == 1


# --- no secret anywhere ---------------------------------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def credentials_log() -> Iterator[Captured]:
    """Records from the adapter's logger, whatever propagation the app's logging setup chose."""
    logger = logging.getLogger("chalicelib.credentials")
    handler, old_level = Captured(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_no_secret_or_token_in_any_reason_log_or_repr(credentials_log: Captured) -> None:
    secrets = [CLIENT["client_secret"], TOKEN, KEY, "pw-never-log", "tk-never-log", SIGNING_SECRET]
    texts: list[str] = []
    clock = FakeClock()
    scenarios = [
        oauth2(ScriptedHttp(token(), refused(401), refused(401)), clock=clock, skew_s=0),
        oauth2(
            ScriptedHttp(
                HttpAnswer(
                    400, json.dumps({"error": "invalid_client", "error_description": CLIENT["client_secret"]})
                )
            )
        ),
        oauth2(ScriptedHttp(HttpAnswer(200, json.dumps({"access_token": TOKEN, "token_type": "mac"})))),
        oauth2(ScriptedHttp(ReadTimeoutError(None, f"/oauth/token?secret={KEY}", KEY))),
        oauth2(ScriptedHttp(token()), client=FakeSecret(f'{{"client_id": "x", "client_secret": "{KEY}"')),
        RequestCredentials("o", "api_key", FakeSecret(f"{KEY}\n{KEY}")),
        RequestCredentials(
            "e", "basic", FakeSecret(json.dumps({"username": "u:x", "password": "pw-never-log"}))
        ),
        RequestCredentials(
            "h",
            "none",
            None,
            headers_secret=FakeSecret('{"X-A": "tk-never-log\\n"}'),
            secret_headers=("X-A",),
        ),
        RequestCredentials("s", "none", None, signing_secret=FakeSecret(SIGNING_SECRET + " whsec_")),
    ]
    for credentials in scenarios:
        first = credentials.current()
        clock.advance(3600)
        if isinstance(first, Authorization):
            credentials.renew(first, reread_secrets=True)
        for got in (first, credentials.current()):
            texts += [repr(got), str(got), got.reason if isinstance(got, CredentialsFailure) else ""]
        texts.append(repr(credentials))
    logged = [record.getMessage() for record in credentials_log.records]
    texts += [repr(vars(record)) for record in credentials_log.records]
    assert {"oauth2 token obtained", "credentials refused", "credentials unavailable"} <= set(logged)
    assert any("refused the client" in text for text in texts)
    assert [s for s in secrets if any(s in text for text in texts)] == []
