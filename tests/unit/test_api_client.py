"""The API adapter (chalicelib/api_client.py): its decisions against a stand-in transport that records
the request and returns a canned response, and what only real HTTP shows (redirects, proxies)
against servers on loopback."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3
from standardwebhooks.webhooks import Webhook
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from chalicelib import bulk
from chalicelib.api_client import BODY_EXCERPT_CHARS, ApiClient, Endpoint, charset, connect, proxy_for
from chalicelib.model import CredentialsFailure, Unsent, UnsentKind
from chalicelib.policy import Decision, Outcome, classify
from chalicelib.settings import Settings
from chalicelib.signing import parse_signing_secrets
from tests.fakes import KeySource

MakeSettings = Callable[..., Settings]
KEY = "sk-live-3c9e1f0a-never-log-me"


class FakeResponse:
    def __init__(self, status: int, text: str = "", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = urllib3.HTTPHeaderDict(headers or {})
        charset_name = "utf-8"
        for part in self.headers.get("Content-Type", "").split(";")[1:]:
            if part.strip().lower().startswith("charset="):
                charset_name = part.split("=", 1)[1]
        self.data = text.encode(charset_name)


class FakeTransport:
    def __init__(self, outcome: FakeResponse | Exception) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def urlopen(self, method: str, url: str, **kw: Any) -> FakeResponse:
        self.calls.append((method, url, kw))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def client(
    settings: Settings, outcome: FakeResponse | Exception, key: str = KEY, destination: str = "orders"
) -> tuple[ApiClient, FakeTransport]:
    transport = FakeTransport(outcome)
    endpoint = Endpoint(transport, "/items")
    return ApiClient(
        endpoint, settings.destination(destination), KeySource(key), clock=lambda: 1767225600.5
    ), transport


def test_request_shape(make_settings: MakeSettings) -> None:
    settings = make_settings(
        TRICKLE_DEST_ORDERS_KEY_HEADER="X-Partner-Token",
        TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S="1.5",
        TRICKLE_DEST_ORDERS_READ_TIMEOUT_S="7",
    )
    transport = FakeTransport(FakeResponse(201, "created"))
    api = ApiClient(
        Endpoint(transport, "/items"), settings.destination("orders"), KeySource(header="X-Partner-Token")
    )
    response = api.send('{"name":"café"}', "msg-1")
    assert response.status == 201
    assert response.error is None
    assert response.body_excerpt == "created"
    assert response.elapsed_ms >= 0
    ((method, target, kwargs),) = transport.calls
    assert (method, target) == ("POST", "/items")
    assert kwargs["body"] == '{"name":"café"}'.encode()
    assert kwargs["headers"] == {
        "Content-Type": "application/json",
        "Idempotency-Key": "msg-1",
        "X-Partner-Token": KEY,
    }
    assert (kwargs["timeout"].connect_timeout, kwargs["timeout"].read_timeout) == (1.5, 7.0)
    assert (kwargs["retries"], kwargs["redirect"]) == (False, False)  # one attempt, answered as it came


def test_the_credentials_are_asked_for_on_every_request(settings: Settings) -> None:
    keys = KeySource()
    api = ApiClient(Endpoint(FakeTransport(FakeResponse(200)), "/"), settings.destination("orders"), keys)
    api.send("{}", "a")
    api.send("{}", "b")
    assert keys.calls == 2


def test_retry_after_is_kept(settings: Settings) -> None:
    api, _ = client(settings, FakeResponse(429, "slow down", {"retry-after": "12"}))
    response = api.send("{}", "m")
    assert (response.status, response.retry_after) == (429, "12")


def test_echoed_key_is_redacted(settings: Settings) -> None:
    text = f'{{"error":"bad key {KEY}","again":"{KEY}"}}'
    api, _ = client(settings, FakeResponse(401, text))
    response = api.send("{}", "m")
    assert KEY not in response.body_excerpt
    assert response.body_excerpt == '{"error":"bad key [redacted]","again":"[redacted]"}'


def test_key_at_the_excerpt_edge_leaves_no_fragment(settings: Settings) -> None:
    text = "x" * (BODY_EXCERPT_CHARS - 6) + KEY + "tail"
    api, _ = client(settings, FakeResponse(500, text))
    excerpt = api.send("{}", "m").body_excerpt
    assert len(excerpt) == BODY_EXCERPT_CHARS
    assert KEY[:6] not in excerpt
    assert excerpt.endswith("[redac")


def test_excerpt_is_capped(settings: Settings) -> None:
    api, _ = client(settings, FakeResponse(500, "e" * 10_000))
    assert api.send("{}", "m").body_excerpt == "e" * BODY_EXCERPT_CHARS


def test_empty_key_redacts_nothing(settings: Settings) -> None:
    api, _ = client(settings, FakeResponse(403, "forbidden"), key="")
    assert api.send("{}", "m").body_excerpt == "forbidden"


@pytest.mark.parametrize(
    "exc",
    [
        ConnectTimeoutError(f"timed out {KEY}"),
        ReadTimeoutError(None, "/items", "read timed out"),
        TimeoutError("timed out"),
    ],
)
def test_timeouts_have_no_status(settings: Settings, exc: Exception) -> None:
    api, _ = client(settings, exc)
    response = api.send("{}", "m")
    assert (response.status, response.error) == (None, "timeout")


@pytest.mark.parametrize(
    ("exc", "name"),
    [
        (NewConnectionError(None, f"refused {KEY}"), "NewConnectionError"),
        (NameResolutionError("api.example.com", None, OSError(KEY)), "NameResolutionError"),
        (ProtocolError("Connection aborted.", ConnectionResetError(KEY)), "ProtocolError"),
        (SSLError("bad cert"), "SSLError"),
        (ConnectionResetError(KEY), "ConnectionResetError"),
    ],
)
def test_connection_errors_name_the_type_only(settings: Settings, exc: Exception, name: str) -> None:
    api, _ = client(settings, exc)
    response = api.send("{}", "m")
    assert response.status is None
    assert response.error == f"connection error: {name}"
    assert KEY not in repr(response)


@pytest.mark.parametrize(
    ("content_type", "codec"),
    [
        ("application/json", "utf-8"),
        ("text/plain; charset=ISO-8859-1", "iso8859-1"),
        ('text/plain; Charset="latin-1"', "iso8859-1"),
        ("text/plain; charset=no-such-codec", "utf-8"),
        ("text/plain; charset=", "utf-8"),
        ("", "utf-8"),
    ],
)
def test_the_body_is_read_in_the_charset_it_names(content_type: str, codec: str) -> None:
    assert charset(content_type) == codec


def test_a_latin_1_answer_reads_as_sent(settings: Settings) -> None:
    api, _ = client(settings, FakeResponse(400, "refusé", {"Content-Type": "text/plain; charset=latin-1"}))
    assert api.send("{}", "m").body_excerpt == "refusé"


def test_bytes_that_are_not_utf_8_are_replaced_not_raised(settings: Settings) -> None:
    response = FakeResponse(500)
    response.data = b"bad \xff byte"
    api, _ = client(settings, response)
    assert api.send("{}", "m").body_excerpt == "bad \ufffd byte"


class Recorded(BaseHTTPRequestHandler):
    """Answers every request with the server's `reply` (status, headers) and records the request line."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        server: Any = self.server
        server.seen.append((self.requestline, dict(self.headers), body))
        status, headers = server.reply
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[Any]:
    httpd: Any = ThreadingHTTPServer(("127.0.0.1", 0), Recorded)
    httpd.seen, httpd.reply = [], (200, {})
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def url_of(server: Any, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def real_client(settings: Settings, url: str) -> ApiClient:
    return ApiClient(connect(url, 2), settings.destination("orders"), KeySource())


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_connections_are_reused_and_the_query_is_kept(
    settings: Settings, server: Any, no_proxy_env: Any
) -> None:
    api = real_client(settings, url_of(server, "/items?tenant=7"))
    assert [api.send(f'{{"n":{n}}}', f"m{n}").status for n in range(3)] == [200, 200, 200]
    assert [line for line, _, _ in server.seen] == ["POST /items?tenant=7 HTTP/1.1"] * 3
    assert [body for _, _, body in server.seen] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert server.seen[0][1]["Idempotency-Key"] == "m0"


def test_a_redirect_is_an_answer_not_followed(settings: Settings, server: Any, no_proxy_env: Any) -> None:
    """Following it would turn the POST into a GET, or take the key to whatever host it names."""
    server.reply = (302, {"Location": "http://127.0.0.1:9/elsewhere"})
    response = real_client(settings, url_of(server, "/items")).send("{}", "m")
    assert response.status == 302
    assert len(server.seen) == 1


def test_the_environments_proxy_carries_the_requests(
    settings: Settings, server: Any, no_proxy_env: Any
) -> None:
    """Read once when the pool is made; plain HTTP goes to the proxy with the whole URL."""
    no_proxy_env.setenv("HTTP_PROXY", url_of(server, ""))
    api = real_client(settings, "http://api.invalid/items")
    assert api.send("{}", "m").status == 200
    ((line, headers, _),) = server.seen
    assert line == "POST http://api.invalid/items HTTP/1.1"
    assert headers["Host"] == "api.invalid"


@pytest.mark.parametrize(
    ("env", "url", "proxy"),
    [
        ({}, "https://api.example.com/items", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.example.com/items", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://api.example.com/items", None),
        ({"ALL_PROXY": "http://proxy:3128"}, "http://api.example.com/items", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, "https://api.example.com/x", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.com"}, "https://api.example.com/x", "http://p:1"),
    ],
)
def test_which_proxy_the_environment_names(
    no_proxy_env: pytest.MonkeyPatch, env: dict[str, str], url: str, proxy: str | None
) -> None:
    for name, value in env.items():
        no_proxy_env.setenv(name, value)
    assert proxy_for(url) == proxy


# --- issue 24: what the destination says a request looks like -------------------------------------

SECRET = "whsec_" + base64.b64encode(b"a signing secret of 32 bytes....").decode()


def test_method_path_fixed_headers_and_signature_as_the_destination_says(make_settings: MakeSettings) -> None:
    settings = make_settings(
        TRICKLE_DEST_ORDERS_METHOD="PUT",
        TRICKLE_DEST_ORDERS_PATH="/customers/{keys.pk}/invoices/{item.n}",
        TRICKLE_DEST_ORDERS_HEADERS='{"X-Source": "trickle"}',
    )
    keys = KeySource(signing_keys=parse_signing_secrets(SECRET))
    transport = FakeTransport(FakeResponse(200))
    now = time.time()  # the reference package refuses a timestamp more than 5 minutes off
    api = ApiClient(
        Endpoint(transport, "/v1?tenant=7"), settings.destination("orders"), keys, clock=lambda: now
    )
    body = '{"keys": {"pk": "CUSTOMER#1/ä b"}, "item": {"n": 12345678901234567890123}}'

    assert api.send(body, "msg-1").status == 200

    ((method, target, kwargs),) = transport.calls
    assert (method, target) == (
        "PUT",
        "/v1/customers/CUSTOMER%231%2F%C3%A4%20b/invoices/12345678901234567890123?tenant=7",
    )
    headers = kwargs["headers"]
    assert headers["X-Source"] == "trickle" and headers["Idempotency-Key"] == "msg-1"
    assert (headers["webhook-id"], headers["webhook-timestamp"]) == ("msg-1", str(int(now)))
    # judged by the reference implementation, over the bytes that were sent
    Webhook(SECRET).verify(kwargs["body"], headers)
    assert kwargs["body"] == body.encode()


def test_every_send_is_signed_at_its_own_time(make_settings: MakeSettings) -> None:
    settings = make_settings()
    now = iter([1767225600.0, 1767225660.0])
    transport = FakeTransport(FakeResponse(500))
    keys = KeySource(signing_keys=parse_signing_secrets(SECRET))
    api = ApiClient(Endpoint(transport, "/"), settings.destination("orders"), keys, clock=lambda: next(now))
    api.send("{}", "m")
    api.send("{}", "m")
    stamps = [kwargs["headers"]["webhook-timestamp"] for _, _, kwargs in transport.calls]
    assert stamps == ["1767225600", "1767225660"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"keys": {}}', "path placeholder {keys.pk} is missing"),
        ('{"keys": {"pk": {"a": 1}}}', "path placeholder {keys.pk}"),
        ("not json", "the body is not JSON"),
    ],
)
def test_a_path_the_body_cannot_fill_sends_nothing_and_says_which_placeholder(
    make_settings: MakeSettings, body: str, reason: str
) -> None:
    settings = make_settings(TRICKLE_DEST_ORDERS_PATH="/customers/{keys.pk}")
    api, transport = client(settings, FakeResponse(200))
    response = api.send(body, "m")
    assert transport.calls == []
    assert response.unsent is not None and response.unsent.kind is UnsentKind.REFUSED
    assert response.unsent.reason.startswith(reason)


@pytest.mark.parametrize(
    ("retryable", "kind"),
    [(True, UnsentKind.CREDENTIALS_UNAVAILABLE), (False, UnsentKind.CREDENTIALS_REFUSED)],
)
def test_without_its_credentials_a_request_never_leaves(
    settings: Settings, retryable: bool, kind: UnsentKind
) -> None:
    """The failure pattern elsewhere: the token fetch failed, the request went out unauthenticated,
    got a 401 and was dead-lettered."""
    keys = KeySource()
    keys.failure = CredentialsFailure(
        retryable, "token endpoint https://auth.example.com/token answered HTTP 503"
    )
    transport = FakeTransport(FakeResponse(200))
    api = ApiClient(Endpoint(transport, "/items"), settings.destination("orders"), keys)
    response = api.send("{}", "m")
    assert transport.calls == []
    assert response.unsent == Unsent(kind, keys.failure.reason)


def test_renewal_names_the_credentials_the_refused_request_carried(settings: Settings) -> None:
    keys = KeySource()
    keys.generation = 7
    api = ApiClient(
        Endpoint(FakeTransport(FakeResponse(401)), "/items"), settings.destination("orders"), keys
    )
    refused = api.send("{}", "m")
    assert api.renew(refused, reread_secrets=True) is True
    assert keys.renewals == [(7, True)]


# --- issue 25: a batch of messages in one request --------------------------------------------------


class Bulk(BaseHTTPRequestHandler):
    """A bulk endpoint on loopback: records each request (line, headers, body) and answers with what
    the server's `answer(body)` says (status, JSON text)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server: Any = self.server
        server.seen.append((self.requestline, dict(self.headers), body))
        status, text = server.answer(body)
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def bulk_server() -> Iterator[Any]:
    httpd: Any = ThreadingHTTPServer(("127.0.0.1", 0), Bulk)
    httpd.seen, httpd.answer = [], lambda body: (200, "{}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


BATCHED = {
    "TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "10",
    "TRICKLE_DEST_ORDERS_PATH": "/bulk",
    "TRICKLE_DEST_ORDERS_BATCH_WRAPPER": "{records: @}",
}
PER_ITEM = {**BATCHED, "TRICKLE_DEST_ORDERS_BATCH_RESULTS": "results[].status"}
THREE = [
    bulk.item(i, body, "id") for i, body in [("m1", '{"n": 1.50}'), ("m2", '{"n": 2}'), ("m3", '{"n": 3}')]
]


def bulk_client(
    make_settings: MakeSettings, server: Any, keys: KeySource | None = None, **env: str
) -> ApiClient:
    settings = make_settings(TRICKLE_DEST_ORDERS_URL=url_of(server, "/v1"), **env)
    return ApiClient(connect(url_of(server, "/v1"), 2), settings.destination("orders"), keys or KeySource())


def results_of(*statuses: int) -> str:
    return json.dumps({"results": [{"status": s} for s in statuses]})


def test_a_batch_is_one_request_carrying_each_items_id_and_a_key_of_their_ids(
    make_settings: MakeSettings, bulk_server: Any, no_proxy_env: Any
) -> None:
    keys = KeySource(signing_keys=parse_signing_secrets(SECRET))
    api = bulk_client(make_settings, bulk_server, keys, **BATCHED)

    answers = api.send_batch(THREE)

    assert [a.status for a in answers] == [200, 200, 200]  # whole-request mode: the request's status
    ((line, headers, body),) = bulk_server.seen
    assert line == "POST /v1/bulk HTTP/1.1"
    assert body == b'{"records":[{"n":1.50,"id":"m1"},{"n":2,"id":"m2"},{"n":3,"id":"m3"}]}'
    key = bulk.batch_key(["m1", "m2", "m3"])
    assert headers["Idempotency-Key"] == key and headers["x-api-key"] == keys.key
    assert headers["webhook-id"] == key
    Webhook(SECRET).verify(body, headers)  # the reference implementation, over the bytes sent


def test_each_item_gets_its_own_status_from_the_answer(
    make_settings: MakeSettings, bulk_server: Any, no_proxy_env: Any
) -> None:
    bulk_server.answer = lambda body: (207, results_of(200, 400, 503))
    api = bulk_client(make_settings, bulk_server, **PER_ITEM)

    answers = api.send_batch(THREE)

    now = datetime.now(UTC)
    assert [a.status for a in answers] == [200, 400, 503]
    assert [classify(a, now).outcome for a in answers] == [
        Outcome.DELIVERED,
        Outcome.PERMANENT,
        Outcome.RETRY,
    ]
    assert all(a.body == results_of(200, 400, 503) for a in answers)


def test_the_items_an_answer_lists_as_failed_are_retried_and_the_rest_delivered(
    make_settings: MakeSettings, bulk_server: Any, no_proxy_env: Any
) -> None:
    bulk_server.answer = lambda body: (200, '{"errors": [{"index": 1, "error": "locked"}]}')
    api = bulk_client(
        make_settings, bulk_server, **BATCHED, TRICKLE_DEST_ORDERS_BATCH_FAILED="errors[].index"
    )

    answers = api.send_batch(THREE)

    now = datetime.now(UTC)
    assert [a.status for a in answers] == [200, 500, 200]
    assert [classify(a, now) for a in answers] == [
        Decision(Outcome.DELIVERED, "HTTP 200"),
        Decision(Outcome.RETRY, "HTTP 500: the API listed item 1 as failed"),
        Decision(Outcome.DELIVERED, "HTTP 200"),
    ]
    bulk_server.answer = lambda body: (200, '{"errors": [{"index": 3}]}')
    assert {a.error for a in api.send_batch(THREE)} == {
        "the answer could not be mapped to the items: batch_failed gave 3, not an index of the 3 items"
    }


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        pytest.param(
            results_of(200, 200), "batch_results 'results[].status' gave 2 statuses for 3 items", id="short"
        ),
        pytest.param(
            results_of(200, 200, 200, 200),
            "batch_results 'results[].status' gave 4 statuses for 3 items",
            id="long",
        ),
        pytest.param("<html>ok</html>", "the answer is not JSON", id="not-json"),
        pytest.param(
            '{"results": "ok"}', "batch_results 'results[].status' gave null, not a list", id="not-a-list"
        ),
    ],
)
def test_an_answer_that_cannot_be_mapped_fails_every_item_never_a_success(
    make_settings: MakeSettings, bulk_server: Any, no_proxy_env: Any, answer: str, why: str
) -> None:
    bulk_server.answer = lambda body: (200, answer)
    api = bulk_client(make_settings, bulk_server, **PER_ITEM)

    answers = api.send_batch(THREE)

    now = datetime.now(UTC)
    assert len(bulk_server.seen) == 1
    for item in answers:
        assert (item.status, item.error) == (None, f"the answer could not be mapped to the items: {why}")
        assert classify(item, now).outcome is Outcome.RETRY
        assert item.body_excerpt == answer[:BODY_EXCERPT_CHARS]


def test_a_failed_request_is_every_items_answer(
    make_settings: MakeSettings, bulk_server: Any, no_proxy_env: Any
) -> None:
    bulk_server.answer = lambda body: (503, '{"error": "unavailable"}')
    answers = bulk_client(make_settings, bulk_server, **PER_ITEM).send_batch(THREE)
    assert [a.status for a in answers] == [503, 503, 503]


def test_a_batch_its_wrapper_cannot_wrap_sends_nothing_and_refuses_every_item(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(**BATCHED | {"TRICKLE_DEST_ORDERS_BATCH_WRAPPER": "abs(@)"})
    transport = FakeTransport(FakeResponse(200))
    api = ApiClient(Endpoint(transport, "/items"), settings.destination("orders"), KeySource())
    answers = api.send_batch(THREE)
    assert transport.calls == []
    reason = answers[0].error
    assert reason is not None and reason.startswith("batch_wrapper 'abs(@)' failed: In function abs()")
    assert [a.unsent for a in answers] == [Unsent(UnsentKind.REFUSED, reason)] * 3


@pytest.mark.parametrize(
    ("retryable", "kind"),
    [(True, UnsentKind.CREDENTIALS_UNAVAILABLE), (False, UnsentKind.CREDENTIALS_REFUSED)],
)
def test_without_its_credentials_no_batch_leaves(
    make_settings: MakeSettings, retryable: bool, kind: UnsentKind
) -> None:
    keys = KeySource()
    keys.failure = CredentialsFailure(retryable, "token endpoint answered HTTP 503")
    transport = FakeTransport(FakeResponse(200))
    api = ApiClient(Endpoint(transport, "/items"), make_settings(**BATCHED).destination("orders"), keys)
    answers = api.send_batch(THREE)
    assert transport.calls == []
    assert [a.unsent for a in answers] == [Unsent(kind, keys.failure.reason)] * 3


def test_a_batch_that_timed_out_has_no_status_for_any_item(make_settings: MakeSettings) -> None:
    transport = FakeTransport(ReadTimeoutError(None, "/items/bulk", "read timed out"))
    api = ApiClient(
        Endpoint(transport, "/items"), make_settings(**PER_ITEM).destination("orders"), KeySource()
    )
    answers = api.send_batch(THREE)
    assert [(a.status, a.error) for a in answers] == [(None, "timeout")] * 3
    ((_, target, _),) = transport.calls
    assert target == "/items/bulk"
