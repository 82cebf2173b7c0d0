"""A stand-in for the third-party API: a real HTTP server on loopback that records every request
(POST, PUT or PATCH to any path under its base), refuses with a 401 those without the credentials
or the signature it requires (`trickle_local.standin_checks`), and injects the faults real APIs have
(latency, 5xx, 429 with Retry-After, timeouts, poison items). With an OAuth2 token endpoint
(`trickle_local.token_endpoint`) it serves that at its path and requires its tokens. With a bulk
endpoint (`trickle_local.standin_bulk`) it takes arrays of items at that path, answers a result per
item, and its faults apply per item as well as per request.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from chalicelib.strict_json import dumps
from trickle_local.ports import PortInUseError, in_use
from trickle_local.standin_bulk import Bulk, Item, ItemResult, answer, items_of, judge, whole
from trickle_local.standin_checks import Required, auth_ok, signature_ok
from trickle_local.token_endpoint import TokenEndpoint


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = '{"ok":true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    reset: bool = False  # drop the connection without an answer


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: str
    arrived_at: float
    status: int
    applied: bool
    method: str = "POST"
    auth_ok: bool | None = None  # None: this API requires no credentials
    signature_ok: bool | None = None  # None: this API requires no signature
    items: tuple[ItemResult, ...] | None = None  # None: not a request to the bulk endpoint

    @property
    def item_count(self) -> int:
        """The items it carried: a request outside the bulk endpoint carries one."""
        return 1 if self.items is None else len(self.items)

    @property
    def applied_items(self) -> tuple[ItemResult, ...]:
        """The items the API applied, in the request's order; a request outside the bulk endpoint
        is one item, its body, whose id is its idempotency key."""
        if self.items is not None:
            return tuple(item for item in self.items if item.applied)
        return (ItemResult(self.idempotency_key, self.body, self.status, True),) if self.applied else ()

    @property
    def refused(self) -> bool:
        """Refused (401) for missing or wrong credentials or a bad signature."""
        return self.auth_ok is False or self.signature_ok is False

    @property
    def idempotency_key(self) -> str:
        return self.headers.get("idempotency-key", "")

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Faults:
    """Fault rates are fractions of requests, drawn from a seeded generator; `item_error_rate` is
    the fraction of a bulk request's items answered 503 while the rest go on, and at the bulk
    endpoint `poison` refuses the items that carry a marker, each on its own. The API key, Basic
    credentials, secret headers and signing secret are what every request must carry (a 401
    otherwise, before any fault is drawn)."""

    latency_s: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int = 1
    timeout_rate: float = 0.0
    timeout_s: float = 5.0
    reset_rate: float = 0.0
    poison: frozenset[str] = frozenset()
    item_error_rate: float = 0.0
    api_key: str | None = None
    api_key_header: str = "x-api-key"
    api_key_scheme: str = ""  # "Bearer": the header must read "Bearer <key>"
    basic: tuple[str, str] | None = None  # (username, password)
    secret_headers: Mapping[str, str] | None = None  # header name -> the value it must have
    signing_secret: str | None = None  # Standard Webhooks `whsec_<base64>`
    honour_idempotency: bool = True
    seed: int = 0


Responder = Callable[[str, dict[str, str]], Reply | None]


class _Server(ThreadingHTTPServer):
    """socketserver listens with a backlog of 5: when more clients than that connect at once (16
    drain workers opening their connections), the kernel drops the surplus SYNs and those clients
    wait a second for the retransmit, or are reset. A drain's pool of workers is expected here."""

    request_queue_size = 128
    daemon_threads = True


class StandInApi:
    """Start with `start()`, read `requests`, stop with `stop()`; `responder` overrides faults (not
    the credentials and signature checks, which come first). Requests outside `base_path` get a 404;
    `tokens`, if given, answers at its own path, and every request must carry a token it issued
    that has not expired; `bulk`, if given, is the path (under `base_path`) taking arrays of items."""

    def __init__(
        self,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        base_path: str = "/",
        tokens: TokenEndpoint | None = None,
        bulk: Bulk | None = None,
    ) -> None:
        self.faults = faults or Faults()
        self.responder: Responder | None = None
        self.base_path = "/" + base_path.strip("/")
        self.tokens = tokens
        self.bulk = bulk
        self._random = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._applied_keys: set[str] = set()
        self._applied_ids: set[str] = set()  # the bulk endpoint's items applied, by their id
        self._in_flight = 0
        self.max_in_flight = 0
        try:
            self._server = _Server((host, port), self._handler_class())
        except OSError as exc:
            if in_use(exc):
                raise PortInUseError(port, "stand-in API") from None
            raise
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def applied(self) -> list[RecordedRequest]:
        """Requests the API acted on (2xx, or timed out after acting), in arrival order."""
        return [r for r in self.requests if r.applied]

    def applied_items(self) -> list[ItemResult]:
        """Items the API acted on, in arrival order: every applied item of a bulk request, and each
        other request applied (its body, its idempotency key as its id)."""
        return [item for r in self.requests for item in r.applied_items]

    @property
    def items(self) -> int:
        """Items the requests carried (one for a request outside the bulk endpoint)."""
        return sum(r.item_count for r in self.requests)

    @property
    def auth_failures(self) -> int:
        """Requests refused for their credentials or signature."""
        return sum(1 for r in self.requests if r.refused)

    @property
    def token_requests(self) -> int:
        """Requests its token endpoint answered (0 without one)."""
        return self.tokens.token_requests if self.tokens is not None else 0

    def required(self) -> Required:
        """What every request must carry, from the faults in force and the token endpoint."""
        f = self.faults
        return Required(
            api_key=f.api_key,
            api_key_header=f.api_key_header,
            api_key_scheme=f.api_key_scheme,
            basic=f.basic,
            bearer=self.tokens.authorized if self.tokens is not None else None,
            secret_headers={k.lower(): v for k, v in (f.secret_headers or {}).items()},
            signing_secret=f.signing_secret,
        )

    def reseed(self, seed: int) -> None:
        """Restart the fault draws, so a run with the same faults sees the same sequence."""
        with self._lock:
            self.faults.seed = seed
            self._random = random.Random(seed)

    def listing(self, path: str | None = None, since: int = 0) -> list[dict[str, object]]:
        """What the API received (at `path` or under it, or anywhere), oldest first, from entry
        `since`: what `GET <path>` answers, with the credentials' headers redacted and, for a bulk
        request, each item's result. Serialize it with `chalicelib.strict_json.dumps`, which writes
        the bodies' numbers with every digit."""
        redacted = self.required().redacted()
        entries: list[dict[str, object]] = []
        for n, request in enumerate(self.requests):
            if n < since or (path is not None and not under(request.path.split("?", 1)[0], path)):
                continue
            try:  # numbers exactly as sent (Decimal), for `chalicelib.strict_json.dumps`
                body: object = json.loads(request.body, parse_float=Decimal)
            except ValueError:
                body = request.body
            results = (
                {"results": [{"id": i.id, "status": i.status, "applied": i.applied} for i in request.items]}
                if request.items is not None
                else {}
            )
            entries.append(
                {
                    "n": n,
                    "method": request.method,
                    "path": request.path,
                    "arrived_at": request.arrived_at,
                    "status": request.status,
                    "applied": request.applied,
                    "auth_ok": request.auth_ok,
                    "signature_ok": request.signature_ok,
                    "idempotency_key": request.idempotency_key,
                    "items": request.item_count,
                    "headers": {
                        k: "(redacted)" if k in redacted else v for k, v in sorted(request.headers.items())
                    },
                    "body": body,
                    **results,
                }
            )
        return entries

    def forget(self, keys: Collection[str]) -> None:
        """The API lost what it applied under these Idempotency-Keys or item ids (data lost on its
        side): a request carrying one of them is applied again."""
        with self._lock:
            self._applied_keys.difference_update(keys)
            self._applied_ids.difference_update(keys)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._applied_keys.clear()
            self._applied_ids.clear()
            self.max_in_flight = 0

    def start(self) -> StandInApi:
        # stop() waits for the loop's next look at its shutdown flag: every 50 ms, not the default 0.5 s
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="standin-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.tokens is not None:
            self.tokens.close()
        self._server.shutdown()
        self._server.server_close()

    def decide(self, body: str, headers: dict[str, str]) -> tuple[Reply, bool]:
        """The reply for one request that passed the checks, and whether the API counts it as applied."""
        if self.responder is not None:
            reply = self.responder(body, headers)
            if reply is not None:
                return reply, 200 <= reply.status < 300
        f = self.faults
        key = headers.get("idempotency-key", "")
        if f.honour_idempotency and key:
            with self._lock:
                seen = key in self._applied_keys
            if seen:
                return Reply(200, '{"ok":true,"replayed":true}', delay_s=f.latency_s), False
        if any(token in body for token in f.poison):
            return Reply(400, '{"error":"poison item rejected"}', delay_s=f.latency_s), False
        with self._lock:
            roll = self._random.random()
        if roll < f.throttle_rate:
            return Reply(429, '{"error":"slow down"}', {"Retry-After": str(f.retry_after_s)}), False
        roll -= f.throttle_rate
        if roll < f.error_rate:
            return Reply(503, '{"error":"unavailable"}', delay_s=f.latency_s), False
        roll -= f.error_rate
        if roll < f.timeout_rate:
            return Reply(200, '{"ok":true}', delay_s=f.timeout_s), True
        roll -= f.timeout_rate
        if roll < f.reset_rate:
            return Reply(0, "", reset=True), False
        return Reply(200, '{"ok":true}', delay_s=f.latency_s), True

    def decide_bulk(
        self, raw: bytes, headers: dict[str, str], bulk: Bulk
    ) -> tuple[Reply, tuple[ItemResult, ...]]:
        """The reply to a request at the bulk endpoint that passed the checks, and each item's
        result. A responder's reply applies every item (not applied before) when it is a 2xx; else
        a request-wide fault (429, 503, a reset) fails every item, a timeout applies them and
        answers too late, and each item is judged on its own (`standin_bulk.judge`)."""
        f = self.faults
        if len(raw) > bulk.max_bytes:
            error = f"the body is {len(raw)} bytes, over this endpoint's {bulk.max_bytes}"
            return Reply(413, json.dumps({"error": error})), ()
        items = items_of(raw, bulk)
        if isinstance(items, str):
            return Reply(400, json.dumps({"error": items}), delay_s=f.latency_s), ()
        if self.responder is not None:
            reply = self.responder(raw.decode(), headers)
            if reply is not None:
                return reply, self._apply(items, bulk, everything=200 <= reply.status < 300)
        with self._lock:
            roll = self._random.random()
        if roll < f.throttle_rate:
            reply = Reply(429, '{"error":"slow down"}', {"Retry-After": str(f.retry_after_s)})
            return reply, whole(items, 429, "slow down")
        roll -= f.throttle_rate
        if roll < f.error_rate:
            reply = Reply(503, '{"error":"unavailable"}', delay_s=f.latency_s)
            return reply, whole(items, 503, "unavailable")
        roll -= f.error_rate
        late = roll < f.timeout_rate
        if not late and roll - f.timeout_rate < f.reset_rate:
            return Reply(0, "", reset=True), whole(items, 0, "connection reset")
        results = self._apply(items, bulk)
        status, body = answer(results)
        return Reply(status, body, delay_s=f.timeout_s if late else f.latency_s), results

    def _apply(self, items: list[Item], bulk: Bulk, everything: bool = False) -> tuple[ItemResult, ...]:
        """Judges each item in order and applies those it takes, under the lock, so an id is applied
        once however many requests carry it at the same time (unless ids are not honoured);
        `everything`: a responder's 2xx, every item taken that was not applied before."""
        f = self.faults
        results: list[ItemResult] = []
        with self._lock:
            for item in items:
                seen = f.honour_idempotency and item.id in self._applied_ids
                # drawn only with a rate: a request's faults then follow the seed request by request
                failed = f.item_error_rate > 0 and self._random.random() < f.item_error_rate
                if everything:
                    result = judge(item, bulk, seen=seen, poison=frozenset(), failed=False)
                else:
                    result = judge(item, bulk, seen=seen, poison=f.poison, failed=failed)
                if result.applied and result.id is not None:
                    self._applied_ids.add(result.id)
                results.append(result)
        return tuple(results)

    def receive(self, method: str, path: str, raw: bytes, headers: dict[str, str]) -> Reply:
        """One request to the API (headers lower-cased): checked, answered, recorded."""
        body = raw.decode()
        bare = path.split("?", 1)[0]
        bulk = self.bulk if self.bulk is not None and bare == self.bulk.path else None
        items: tuple[ItemResult, ...] | None = None
        if not under(bare, self.base_path):
            reply, applied, auth, signed = Reply(404, '{"error":"no such path"}'), False, None, None
        else:
            required = self.required()
            auth, signed = auth_ok(required, headers), signature_ok(required.signing_secret, raw, headers)
            if auth is False or signed is False:
                what = "credentials" if auth is False else "signature"
                reply, applied = Reply(401, f'{{"error":"unauthorized: bad or missing {what}"}}'), False
                if bulk is not None:
                    found = items_of(raw, bulk)
                    items = () if isinstance(found, str) else whole(found, 401, f"bad or missing {what}")
            elif bulk is not None:
                reply, items = self.decide_bulk(raw, headers, bulk)
                applied = any(item.applied for item in items)
            else:
                reply, applied = self.decide(body, headers)
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    path, headers, body, time.time(), reply.status, applied, method, auth, signed, items
                )
            )
            if applied:
                self._applied_keys.add(headers.get("idempotency-key", ""))
        return reply

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without this, Nagle's algorithm and
                # the client's delayed ACK add ~40 ms to every response.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def _headers(self) -> dict[str, str]:
                return {k.lower(): v for k, v in self.headers.items()}

            def _answer(self, status: int, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    if not any(name.lower() == "content-type" for name in headers or {}):
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _token(self) -> bool:
                """Answers a request to the token endpoint's path (True), or leaves it (False)."""
                tokens = api.tokens
                if tokens is None or self.path.split("?", 1)[0] != tokens.path:
                    return False
                answer = tokens.handle(self.command, self.path, dict(self.headers.items()), self._body())
                self._answer(answer.status, answer.body, answer.headers)
                return True

            def _receive(self) -> None:
                if self._token():
                    return
                reply = api.receive(self.command, self.path, self._body(), self._headers())
                with api._lock:
                    api._in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api._in_flight)
                try:
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                finally:
                    with api._lock:
                        api._in_flight -= 1
                if reply.reset:
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.request.close()
                    return
                self._answer(reply.status, reply.body.encode(), reply.headers)

            def do_POST(self) -> None:
                self._receive()

            def do_PUT(self) -> None:
                self._receive()

            def do_PATCH(self) -> None:
                self._receive()

            def do_GET(self) -> None:
                """A read-only listing of the requests made to this path or under it (`?since=N`
                skips the first N), so a user of the local runtime can see what the API got."""
                if self._token():
                    return
                path, _, query = self.path.partition("?")
                since = parse_qs(query).get("since", ["0"])[0]
                entries = api.listing(path, int(since) if since.isdigit() else 0)
                document = {
                    "path": path,
                    "received": len(entries),
                    "items": sum(n for e in entries if isinstance(n := e["items"], int)),
                    "auth_failures": api.auth_failures,
                    **({"token_requests": api.token_requests} if api.tokens is not None else {}),
                    "requests": entries,
                }
                self._answer(200, dumps(document).encode())

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler


def under(path: str, base: str) -> bool:
    """Whether `path` is `base` or below it, segment by segment (`/v1/x` is under `/v1`, `/v10`
    is not)."""
    base = base.rstrip("/")
    return path == base or path.startswith(base + "/") or not base
