"""HTTP adapter for the third-party API: one urllib3 connection pool per destination, every failure
mapped to a response.

urllib3 directly rather than requests: a POST through a requests Session cost about 1.7 ms of CPU
here against 0.7 ms for the same POST through a urllib3 pool (`bench.profile_drain`; requests
re-reads the proxy environment, merges settings, cookies and hooks on every call), which was most of
the drain's own CPU per message. What requests did per call is done once, in `connect`."""

from __future__ import annotations

import codecs
import time
import urllib.request
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as HttpTimeoutError

from chalicelib import bulk, strict_json
from chalicelib.model import ApiResponse, Authorization, BatchItem, CredentialsFailure, Unsent, UnsentKind
from chalicelib.request_shape import Refusal, with_path
from chalicelib.settings import Destination
from chalicelib.signing import signing_headers

BODY_EXCERPT_CHARS = 256


class Transport(Protocol):
    """`urlopen` of a urllib3 connection pool or proxy manager."""

    def urlopen(self, method: str, url: str, **kw: Any) -> Any: ...


@dataclass(frozen=True)
class Endpoint:
    """Where a destination's requests go: a pool, and the target it takes (the URL's path and query,
    or the whole URL when a proxy forwards plain HTTP)."""

    http: Transport
    target: str


def connect(url: str, max_connections: int) -> Endpoint:
    """A pool for the API's URL, made once per container so connections are reused across messages
    and runs (one kept open per worker). The proxy environment (`HTTPS_PROXY`, `HTTP_PROXY`,
    `ALL_PROXY`, `NO_PROXY`) is read here, once. TLS is verified against the runtime's CA store
    (OpenSSL's defaults; `SSL_CERT_FILE` points elsewhere)."""
    proxy = proxy_for(url)
    if proxy:
        return Endpoint(urllib3.ProxyManager(proxy, maxsize=max_connections), url)
    pool = urllib3.connection_from_url(url, maxsize=max_connections)
    return Endpoint(pool, urllib3.util.parse_url(url).request_uri)


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url`, as requests and curl read it; None to go direct."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.netloc):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all") or None


class Credentials(Protocol):
    """What a destination's requests carry (`chalicelib.credentials.RequestCredentials`)."""

    def current(self) -> Authorization | CredentialsFailure: ...

    def renew(self, stale: int, reread_secrets: bool) -> bool: ...


class ApiClient:
    """A destination's requests as its routes-file entry shapes them: method, path, fixed headers,
    credentials and signature. A request leaves with everything the destination requires or not
    at all (`ApiResponse.unsent` says why)."""

    def __init__(
        self,
        endpoint: Endpoint,
        destination: Destination,
        credentials: Credentials,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._endpoint = endpoint
        self.destination = destination
        self._credentials = credentials
        self._clock = clock
        self._fixed = {"Content-Type": "application/json", **dict(destination.headers)}
        self._timeout = urllib3.Timeout(
            connect=destination.connect_timeout_s, read=destination.read_timeout_s
        )

    def send(self, body: str, api_id: str) -> ApiResponse:
        """One request, `api_id` its Idempotency-Key and webhook-id (the message's id, or the one it
        carries for the API: `freshness.api_id`), never retried here and never redirected: a
        redirect would change the method or take the credentials to another host, so a 3xx answer
        is a failed attempt like a 5xx."""
        target = self._target(body)
        if isinstance(target, Unsent):
            return ApiResponse(None, error=target.reason, unsent=target)
        return self._request(target, body.encode(), api_id)

    def send_batch(self, items: Sequence[BatchItem]) -> list[ApiResponse]:
        """One request for several messages (issue #25), `items` their batch items (`bulk.item`),
        distinct ids: the body `bulk.build` makes of them, its Idempotency-Key (and webhook-id)
        derived from the ids. One answer per item, in order: its status as the destination's
        `batch_results` reads the answer, or as its `batch_failed` lists the failed items (or the
        request's); an answer that cannot be mapped to the items fails every item, never a success;
        a wrapper that cannot wrap them refuses every item (unsent)."""
        built = bulk.build(items, self.destination.batch_wrapper)
        if isinstance(built, bulk.Failure):
            refused = Unsent(UnsentKind.REFUSED, built.reason)
            return [ApiResponse(None, error=built.reason, unsent=refused)] * len(items)
        target = self._target(None)
        if isinstance(target, Unsent):
            return [ApiResponse(None, error=target.reason, unsent=target)] * len(items)
        response = self._request(target, built.body.encode(), built.key)
        return self._per_item(response, len(items))

    def _per_item(self, response: ApiResponse, n: int) -> list[ApiResponse]:
        """A batch's answer as each of its `n` items' answer."""
        if response.status is None:  # no answer (timeout, connection error) or never sent
            return [response] * n
        destination = self.destination
        answers: list[tuple[int, str | None]] | str
        if destination.batch_failed is not None:
            answers = bulk.failed(response.status, response.body, n, destination.batch_failed)
        else:
            statuses = bulk.results(response.status, response.body, n, destination.batch_results)
            answers = statuses if isinstance(statuses, str) else [(status, None) for status in statuses]
        if isinstance(answers, str):
            reason = f"the answer could not be mapped to the items: {answers}"
            return [replace(response, status=None, error=reason)] * n
        return [replace(response, status=status, error=why) for status, why in answers]

    def _request(self, target: str, data: bytes, key: str) -> ApiResponse:
        """Send `data` to `target` with the credentials, `key` as its Idempotency-Key and webhook-id."""
        authorization = self._credentials.current()
        if isinstance(authorization, CredentialsFailure):
            kind = (
                UnsentKind.CREDENTIALS_UNAVAILABLE
                if authorization.retryable
                else UnsentKind.CREDENTIALS_REFUSED
            )
            return ApiResponse(None, error=authorization.reason, unsent=Unsent(kind, authorization.reason))
        headers = {**self._fixed, "Idempotency-Key": key, **authorization.headers}
        if authorization.signing_keys:  # signed at send time: a retry carries a fresh timestamp
            headers |= signing_headers(authorization.signing_keys, key, int(self._clock()), data)
        started = time.perf_counter()
        try:
            response = self._endpoint.http.urlopen(
                self.destination.method,
                target,
                body=data,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except (HTTPError, OSError) as exc:
            return ApiResponse(
                None, error=failure(exc), elapsed_ms=_since(started), authorization=authorization.generation
            )
        raw = response.data.decode(charset(response.headers.get("Content-Type", "")), errors="replace")
        text = redact(raw, authorization.secrets)
        return ApiResponse(
            status=response.status,
            retry_after=response.headers.get("Retry-After"),
            body_excerpt=text[:BODY_EXCERPT_CHARS],
            elapsed_ms=_since(started),
            body=text,
            authorization=authorization.generation,
        )

    def renew(self, refused: ApiResponse, reread_secrets: bool) -> bool:
        return self._credentials.renew(refused.authorization, reread_secrets)

    def _target(self, body: str | None) -> str | Unsent:
        """Where the message goes: the URL's target with the destination's path filled from the body
        (None: a batch's, whose path is fixed: the settings refuse placeholders with batching)."""
        template = self.destination.path
        if template is None:
            return self._endpoint.target
        document = None
        if body is not None:
            try:
                document = strict_json.loads(body.encode())
            except ValueError:
                return Unsent(UnsentKind.REFUSED, "the body is not JSON, so its path cannot be filled")
        path = template.render(document)
        if isinstance(path, Refusal):
            return Unsent(UnsentKind.REFUSED, path.reason)
        return with_path(self._endpoint.target, path)  # a request target or, through a proxy, the URL


def redact(text: str, secrets: Collection[str]) -> str:
    """An answer's text without any secret the request carried (an API may echo a header back)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def failure(exc: Exception) -> str:
    """Why there is no answer, by the exception's type alone (its text may hold the URL or the key).
    urllib3 files refused and unresolvable connections under its timeouts: they are connection errors."""
    if isinstance(exc, HttpTimeoutError | TimeoutError) and not isinstance(exc, NewConnectionError):
        return "timeout"
    return f"connection error: {type(exc).__name__}"


def charset(content_type: str) -> str:
    """The charset a Content-Type names, if Python knows it; UTF-8 otherwise (JSON's)."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip('"')).name
            except LookupError:
                break
    return "utf-8"


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
