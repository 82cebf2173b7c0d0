"""The local OAuth2 token endpoint (trickle_local/token_endpoint.py): client authentication read as
RFC 6749 2.3.1 says, oauthlib's answers, the faults, the counts, and the tokens' lifetime on a clock
the test moves. In process through `handle`; tests/integration/test_token_endpoint.py goes over HTTP."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote_plus, urlencode

import pytest
import urllib3

from tests.fakes import FakeClock
from trickle_local.token_endpoint import TOKEN_PATH, TokenEndpoint, TokenServer, presented_client

CLIENT_ID, SECRET = "trickle", "s3cret-never-log"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def basic(client_id: str, secret: str, encode: bool = True) -> str:
    user, password = (quote_plus(client_id), quote_plus(secret)) if encode else (client_id, secret)
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ask(
    endpoint: TokenEndpoint, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object]]:
    fields = {"grant_type": "client_credentials", **(form or {})}
    answer = endpoint.handle("POST", TOKEN_PATH, {**FORM, **(headers or {})}, urlencode(fields).encode())
    return answer.status, json.loads(answer.body)


def by_basic(endpoint: TokenEndpoint, form: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    return ask(endpoint, form, {"Authorization": basic(CLIENT_ID, SECRET)})


@pytest.mark.parametrize(
    ("authorization", "body_id", "body_secret", "presented"),
    [
        (basic("a:b", "p%+ é"), None, None, ("basic", "a:b", "p%+ é")),
        (basic("id", "pw:with:colons", encode=False), None, None, ("basic", "id", "pw:with:colons")),
        (basic("a b", "x"), "a b", None, ("basic", "a b", "x")),  # client_id in the body too: one method
        ("basic " + base64.b64encode(b"id:pw").decode(), None, None, ("basic", "id", "pw")),
        (None, "id", "pw", ("body", "id", "pw")),
        (basic("id", "pw"), None, "pw", ("both", "", "")),
        (None, "id", None, ("none", "id", "")),
        (None, None, None, ("none", "", "")),
        ("Basic not-base64!", None, None, ("malformed", "", "")),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None, None, ("malformed", "", "")),
        ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), None, None, ("malformed", "", "")),
        ("Bearer abc", "id", "pw", ("body", "id", "pw")),
    ],
)
def test_the_client_is_read_as_rfc_6749_2_3_1_says(
    authorization: str | None, body_id: str | None, body_secret: str | None, presented: tuple[str, str, str]
) -> None:
    assert presented_client(authorization, body_id, body_secret) == presented


def test_a_token_by_basic_and_by_the_body_and_what_each_request_was() -> None:
    endpoint = TokenEndpoint(CLIENT_ID, SECRET, lifetime_s=30)
    status, token = by_basic(endpoint, {"scope": "a b", "audience": "https://api"})
    assert status == 200
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 30
    status, _ = ask(endpoint, {"client_id": CLIENT_ID, "client_secret": SECRET})
    assert status == 200
    assert [(r.client_auth, r.client_id, r.status, r.scope, r.audience) for r in endpoint.requests] == [
        ("basic", CLIENT_ID, 200, "a b", "https://api"),
        ("body", CLIENT_ID, 200, "", ""),
    ]
    assert (endpoint.token_requests, endpoint.tokens_issued) == (2, 2)


@pytest.mark.parametrize(
    ("form", "headers", "status", "error"),
    [
        ({}, {"Authorization": basic(CLIENT_ID, "wrong")}, 401, "invalid_client"),
        ({}, {"Authorization": basic(CLIENT_ID + "x", SECRET)}, 401, "invalid_client"),
        ({"client_id": CLIENT_ID, "client_secret": "wrong"}, {}, 401, "invalid_client"),
        ({"client_secret": SECRET}, {"Authorization": basic(CLIENT_ID, SECRET)}, 401, "invalid_client"),
        ({}, {}, 401, "invalid_client"),
        (
            {"grant_type": "password"},
            {"Authorization": basic(CLIENT_ID, SECRET)},
            400,
            "unsupported_grant_type",
        ),
        ({"scope": "admin"}, {"Authorization": basic(CLIENT_ID, SECRET)}, 400, "invalid_scope"),
    ],
)
def test_oauthlib_refuses(form: dict[str, str], headers: dict[str, str], status: int, error: str) -> None:
    endpoint = TokenEndpoint(CLIENT_ID, SECRET, scopes=frozenset({"a", "b"}))
    answered, body = ask(endpoint, form, headers)
    assert (answered, body["error"]) == (status, error)
    assert (endpoint.token_requests, endpoint.tokens_issued) == (1, 0)


def test_not_a_form_not_a_post_not_the_path() -> None:
    endpoint = TokenEndpoint(CLIENT_ID, SECRET)
    as_json = endpoint.handle("POST", TOKEN_PATH, {"Content-Type": "application/json"}, b"{}")
    assert (as_json.status, json.loads(as_json.body)["error"]) == (400, "invalid_request")
    query = endpoint.handle(
        "POST", f"{TOKEN_PATH}?grant_type=client_credentials", FORM, b"grant_type=client_credentials"
    )
    assert (query.status, json.loads(query.body)["error"]) == (400, "invalid_request")
    assert endpoint.handle("GET", TOKEN_PATH, {}, b"").status == 405
    assert endpoint.handle("POST", "/elsewhere", FORM, b"").status == 404
    assert endpoint.token_requests == 2  # the requests to the token path that were POSTs


def test_a_token_is_valid_until_its_lifetime_on_the_clock_has_passed() -> None:
    clock = FakeClock()
    endpoint = TokenEndpoint(CLIENT_ID, SECRET, lifetime_s=10, clock=clock.monotonic)
    _, token = by_basic(endpoint)
    access = str(token["access_token"])
    assert endpoint.valid(access)
    assert endpoint.authorized({"authorization": f"Bearer {access}"})
    clock.advance(9.9)
    assert endpoint.valid(access)
    clock.advance(0.1)
    assert not endpoint.valid(access)
    assert not endpoint.authorized({"Authorization": f"Bearer {access}"})


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-issued"}, {"Authorization": "Basic abc"}, {"X-Other": "Bearer x"}],
)
def test_a_request_without_an_issued_token_is_not_authorized(headers: dict[str, str]) -> None:
    endpoint = TokenEndpoint(CLIENT_ID, SECRET)
    by_basic(endpoint)
    assert not endpoint.authorized(headers)


def test_down_for_a_number_of_requests_then_up() -> None:
    endpoint = TokenEndpoint(CLIENT_ID, SECRET)
    endpoint.faults.down_requests = 2
    assert [by_basic(endpoint)[0] for _ in range(3)] == [503, 503, 200]
    assert by_basic(endpoint)[1].keys() >= {"access_token"}
    assert (endpoint.token_requests, endpoint.tokens_issued) == (4, 2)


def test_down_for_a_stretch_of_the_clock() -> None:
    clock = FakeClock()
    endpoint = TokenEndpoint(CLIENT_ID, SECRET, clock=clock.monotonic)
    endpoint.down_for(30)
    assert by_basic(endpoint) == (503, {"error": "temporarily_unavailable"})
    clock.advance(29.9)
    assert by_basic(endpoint)[0] == 503
    clock.advance(0.1)
    assert by_basic(endpoint)[0] == 200


def test_refusing_every_client_and_a_rotated_secret() -> None:
    endpoint = TokenEndpoint(CLIENT_ID, SECRET)
    endpoint.faults.refuse = True
    assert by_basic(endpoint) == (401, {"error": "invalid_client"})
    endpoint.faults.refuse = False
    endpoint.client = (CLIENT_ID, "rotated")
    assert by_basic(endpoint)[0] == 401
    assert ask(endpoint, {}, {"Authorization": basic(CLIENT_ID, "rotated")})[0] == 200


def test_served_over_http_on_loopback() -> None:
    with TokenServer(TokenEndpoint(CLIENT_ID, SECRET)) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith(TOKEN_PATH)
        http = urllib3.PoolManager()
        body = urlencode({"grant_type": "client_credentials"})
        answer = http.request(
            "POST", server.url, body=body, headers={**FORM, "Authorization": basic(CLIENT_ID, SECRET)}
        )
        assert answer.status == 200
        assert answer.headers["Cache-Control"] == "no-store"
        assert server.endpoint.valid(json.loads(answer.data)["access_token"])
        assert http.request("GET", server.url).status == 405
