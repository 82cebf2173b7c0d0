"""The API adapter's decisions that need no server (chalicelib/api_client.py).

A stand-in session object records the request and returns a canned response; HTTP itself is
exercised against a real server in the integration tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from chalicelib.api_client import BODY_EXCERPT_CHARS, ApiClient, make_session
from chalicelib.settings import Settings

MakeSettings = Callable[..., Settings]
KEY = "sk-live-3c9e1f0a-never-log-me"


class FakeResponse:
    def __init__(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.text = text
        self.headers = CaseInsensitiveDict(headers or {})


class FakeSession:
    def __init__(self, outcome: FakeResponse | Exception) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def post(self, url: str, **kwargs: Any) -> FakeResponse:
        self.calls.append((url, kwargs))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class KeySource:
    def __init__(self, key: str = KEY) -> None:
        self.key = key
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.key


def client(
    settings: Settings, outcome: FakeResponse | Exception, key: str = KEY
) -> tuple[ApiClient, FakeSession]:
    session = FakeSession(outcome)
    return ApiClient(cast(requests.Session, session), settings.destination("orders"), KeySource(key)), session


def test_request_shape(make_settings: MakeSettings) -> None:
    settings = make_settings(
        TRICKLE_DEST_ORDERS_KEY_HEADER="X-Partner-Token",
        TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S="1.5",
        TRICKLE_DEST_ORDERS_READ_TIMEOUT_S="7",
    )
    api, session = client(settings, FakeResponse(201, "created"))
    response = api.post('{"name":"café"}', idempotency_key="msg-1")
    assert response.status == 201
    assert response.error is None
    assert response.body_excerpt == "created"
    assert response.elapsed_ms >= 0
    ((url, kwargs),) = session.calls
    assert url == "https://api.example.com/items"
    assert kwargs["data"] == '{"name":"café"}'.encode()
    assert kwargs["headers"] == {
        "Content-Type": "application/json",
        "Idempotency-Key": "msg-1",
        "X-Partner-Token": KEY,
    }
    assert kwargs["timeout"] == (1.5, 7.0)


def test_key_is_asked_for_on_every_post(settings: Settings) -> None:
    keys = KeySource()
    api = ApiClient(
        cast(requests.Session, FakeSession(FakeResponse(200))), settings.destination("orders"), keys
    )
    api.post("{}", "a")
    api.post("{}", "b")
    assert keys.calls == 2


def test_retry_after_is_kept(settings: Settings) -> None:
    api, _ = client(settings, FakeResponse(429, "slow down", {"retry-after": "12"}))
    response = api.post("{}", "m")
    assert (response.status, response.retry_after) == (429, "12")


def test_echoed_key_is_redacted(settings: Settings) -> None:
    text = f'{{"error":"bad key {KEY}","again":"{KEY}"}}'
    api, _ = client(settings, FakeResponse(401, text))
    response = api.post("{}", "m")
    assert KEY not in response.body_excerpt
    assert response.body_excerpt == '{"error":"bad key [redacted]","again":"[redacted]"}'


def test_key_at_the_excerpt_edge_leaves_no_fragment(settings: Settings) -> None:
    text = "x" * (BODY_EXCERPT_CHARS - 6) + KEY + "tail"
    api, _ = client(settings, FakeResponse(500, text))
    excerpt = api.post("{}", "m").body_excerpt
    assert len(excerpt) == BODY_EXCERPT_CHARS
    assert KEY[:6] not in excerpt
    assert excerpt.endswith("[redac")


def test_excerpt_is_capped(settings: Settings) -> None:
    api, _ = client(settings, FakeResponse(500, "e" * 10_000))
    assert api.post("{}", "m").body_excerpt == "e" * BODY_EXCERPT_CHARS


def test_empty_key_redacts_nothing(settings: Settings) -> None:
    api, _ = client(settings, FakeResponse(403, "forbidden"), key="")
    assert api.post("{}", "m").body_excerpt == "forbidden"


@pytest.mark.parametrize(
    "exc",
    [requests.ConnectTimeout(f"timed out {KEY}"), requests.ReadTimeout("read timed out"), requests.Timeout()],
)
def test_timeouts_have_no_status(settings: Settings, exc: Exception) -> None:
    api, _ = client(settings, exc)
    response = api.post("{}", "m")
    assert (response.status, response.error) == (None, "timeout")


@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (requests.ConnectionError(f"refused {KEY}"), "ConnectionError"),
        (requests.exceptions.SSLError("bad cert"), "SSLError"),
        (requests.exceptions.InvalidURL("nope"), "InvalidURL"),
    ],
)
def test_connection_errors_name_the_type_only(settings: Settings, exc: Exception, name: str) -> None:
    api, _ = client(settings, exc)
    response = api.post("{}", "m")
    assert response.status is None
    assert response.error == f"connection error: {name}"
    assert KEY not in repr(response)


def test_session_reuses_connections_without_hidden_retries() -> None:
    session = make_session()
    try:
        for prefix in ("https://", "http://"):
            adapter = session.get_adapter(prefix + "api.example.com")
            assert isinstance(adapter, requests.adapters.HTTPAdapter)
            assert adapter.max_retries.total == 0
    finally:
        session.close()
