"""An OAuth2 token endpoint (client credentials grant, RFC 6749 4.4) for the local stand-in API and the
tests: oauthlib's server side (`BackendApplicationServer`) parses the request, checks the grant and
the scope, issues the Bearer token and words every error, so an implementation other than ours judges
how Trickle asks for a token (issue #24).

oauthlib leaves client authentication to the validator (`RequestValidator.authenticate_client`): the
one part written here is reading the client's id and secret, from HTTP Basic with both form-urlencoded
first (RFC 6749 2.3.1) or from `client_id`/`client_secret` in the form body, as the RFC says and not as
Trickle's client happens to send them.

Embedded in the stand-in API's handler through `TokenEndpoint.handle` (method, path, headers, body ->
`Answer`); `TokenServer` serves it alone on 127.0.0.1 for the tests. Faults (`TokenFaults`): down
(503) for a stretch or for a number of requests, slow, refusing every client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import unquote_plus

from oauthlib.oauth2 import BackendApplicationServer, RequestValidator
from oauthlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error, TemporarilyUnavailableError

TOKEN_PATH = "/oauth/token"
FORM = "application/x-www-form-urlencoded"


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class TokenFaults:
    """What the endpoint does wrong. `down_until` is a time on the endpoint's clock."""

    down_until: float = 0.0  # answers 503 temporarily_unavailable before this time
    down_requests: int = 0  # the next this many token requests answer 503
    delay_s: float = 0.0  # every token answer leaves this late
    refuse: bool = False  # 401 invalid_client whatever the client presents


@dataclass(frozen=True)
class TokenRequest:
    """One request to the token path, as the endpoint saw it (never the secret)."""

    client_auth: str  # "basic", "body", "both", "none", "malformed"; "" when not read (down, not a form)
    client_id: str
    status: int
    scope: str
    audience: str


@dataclass(frozen=True)
class _Client:
    client_id: str  # oauthlib reads `request.client.client_id`


def presented_client(
    authorization: str | None, body_id: str | None, body_secret: str | None
) -> tuple[str, str, str]:
    """How the client authenticated and the (id, secret) it presented: `basic` (RFC 6749 2.3.1: the id
    and secret form-urlencoded, then used as the user-id and password of HTTP Basic, RFC 7617),
    `body`, `both` (forbidden: "MUST NOT use more than one authentication method"), `none`, or
    `malformed` (a Basic header that does not decode)."""
    basic = authorization is not None and authorization[:6].lower() == "basic "
    if basic and body_secret is not None:
        return "both", "", ""
    if basic:
        assert authorization is not None
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "malformed", "", ""
        user, colon, password = decoded.partition(":")
        if not colon:
            return "malformed", "", ""
        return "basic", unquote_plus(user), unquote_plus(password)
    if body_secret is not None:
        return "body", body_id or "", body_secret
    return "none", body_id or "", ""


class _Validator(RequestValidator):  # type: ignore[misc]
    """What oauthlib asks of the server's store: this endpoint's one client and its tokens."""

    def __init__(self, endpoint: TokenEndpoint) -> None:
        self._endpoint = endpoint

    def client_authentication_required(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        return True

    def authenticate_client(self, request: Any, *args: Any, **kwargs: Any) -> bool:
        how, client_id, secret = presented_client(
            request.headers.get("Authorization"), request.client_id, request.client_secret
        )
        self._endpoint._saw(request, how, client_id)
        expected_id, expected_secret = self._endpoint.client
        ok = (
            how in ("basic", "body")
            and not self._endpoint.faults.refuse
            and hmac.compare_digest(client_id.encode(), expected_id.encode())
            and hmac.compare_digest(secret.encode(), expected_secret.encode())
        )
        if ok:
            request.client = _Client(client_id)
        return ok

    def validate_grant_type(
        self, client_id: str, grant_type: str, client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        return grant_type == "client_credentials"

    def validate_scopes(
        self, client_id: str, scopes: list[str], client: Any, request: Any, *args: Any, **kwargs: Any
    ) -> bool:
        allowed = self._endpoint.scopes
        return allowed is None or set(scopes) <= allowed

    def get_default_scopes(self, client_id: str, request: Any, *args: Any, **kwargs: Any) -> list[str]:
        return []

    def save_bearer_token(self, token: Mapping[str, Any], request: Any, *args: Any, **kwargs: Any) -> None:
        self._endpoint._issued(token["access_token"], int(token["expires_in"]))

    def validate_bearer_token(self, token: str | None, scopes: Any, request: Any) -> bool:
        return token is not None and self._endpoint.valid(token)


class TokenEndpoint:
    """One client (`client_id`, `client_secret`; change `client` to rotate), tokens that live
    `lifetime_s` on `clock` (a test's clock moves them to expiry), `scopes` a client may ask for
    (None: any). Thread-safe: the stand-in serves each request on its own thread."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        lifetime_s: int = 3600,
        scopes: frozenset[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        path: str = TOKEN_PATH,
    ) -> None:
        self.client = (client_id, client_secret)
        self.lifetime_s = lifetime_s
        self.scopes = scopes
        self.path = path
        self.faults = TokenFaults()
        self._clock = clock
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._tokens: dict[str, float] = {}  # access token -> when it expires, on `clock`
        self._requests: list[TokenRequest] = []
        self._seen = threading.local()
        self.tokens_issued = 0
        self._server = BackendApplicationServer(_Validator(self), token_expires_in=lambda _: self.lifetime_s)

    @property
    def requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def token_requests(self) -> int:
        with self._lock:
            return len(self._requests)

    def down_for(self, seconds: float) -> None:
        """503 for the next `seconds` of the endpoint's clock."""
        self.faults.down_until = self._clock() + seconds

    def valid(self, token: str) -> bool:
        """Whether `token` was issued here and has not expired."""
        with self._lock:
            expires = self._tokens.get(token)
        return expires is not None and self._clock() < expires

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether a request with these headers carries a valid, unexpired `Authorization: Bearer`
        token, as oauthlib's resource endpoint reads it."""
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if authorization is None:
            return False
        ok, _ = self._server.verify_request("/", headers={"Authorization": authorization})
        return bool(ok)

    def close(self) -> None:
        """Ends the waits of slow answers (the server is stopping)."""
        self._closing.set()

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """The answer to one HTTP request (`path` with its query, as the request line has it)."""
        if path.split("?", 1)[0] != self.path:
            return _json(404, b'{"error":"not_found"}')
        if method.upper() != "POST":
            refused = _json(405, b'{"error":"method_not_allowed"}')
            return refused._replace(headers={**refused.headers, "Allow": "POST"})
        wanted = {k.title(): v for k, v in headers.items()}
        answer, record = self._answer(path, wanted, body)
        with self._lock:
            self._requests.append(record)
        if self.faults.delay_s:
            self._closing.wait(self.faults.delay_s)
        return answer

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[Answer, TokenRequest]:
        if self._down():
            error = TemporarilyUnavailableError()
            return _json(503, error.json.encode()), TokenRequest("", "", 503, "", "")
        content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if content_type != FORM or text is None:
            error = InvalidRequestError(description=f"the body must be {FORM} in UTF-8")
            return _json(400, error.json.encode()), TokenRequest("", "", 400, "", "")
        self._seen.request = TokenRequest("none", "", 0, "", "")
        try:
            answer_headers, answer_body, status = self._server.create_token_response(
                path, http_method="POST", body=text, headers=headers
            )
        except OAuth2Error as error:  # what oauthlib checks before the grant answers (a query string)
            answer_headers, answer_body, status = error.headers, error.json, error.status_code
        record = replace(self._seen.request, status=status)
        answer = Answer(status, {**answer_headers, "Content-Type": "application/json"}, answer_body.encode())
        return answer, record

    def _saw(self, request: Any, client_auth: str, client_id: str) -> None:
        """What the validator read of the request being answered (on this thread)."""
        self._seen.request = TokenRequest(
            client_auth, client_id, 0, request.scope or "", getattr(request, "audience", None) or ""
        )

    def _down(self) -> bool:
        with self._lock:
            if self.faults.down_requests > 0:
                self.faults.down_requests -= 1
                return True
        return self._clock() < self.faults.down_until

    def _issued(self, token: str, expires_in: int) -> None:
        now = self._clock()
        with self._lock:
            self._tokens = {t: at for t, at in self._tokens.items() if at > now}  # the expired go
            self._tokens[token] = now + expires_in
            self.tokens_issued += 1


def _json(status: int, body: bytes) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, body)


class _Server(ThreadingHTTPServer):
    """A backlog for 16 workers asking at once (socketserver's default of 5 drops the surplus SYNs)."""

    request_queue_size = 128
    daemon_threads = True


class TokenServer:
    """`endpoint` served alone on loopback (tests): `start()`, `url` (the token URL), `stop()`."""

    def __init__(self, endpoint: TokenEndpoint, host: str = "127.0.0.1", port: int = 0) -> None:
        self.endpoint = endpoint
        self._server = _Server((host, port), _handler(endpoint))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.endpoint.path}"

    def start(self) -> TokenServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="token-endpoint",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.endpoint.close()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(endpoint: TokenEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle wait

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length", "0") or "0")
            body = self.rfile.read(length) if length > 0 else b""
            answer = endpoint.handle(self.command, self.path, dict(self.headers.items()), body)
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_POST(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler
