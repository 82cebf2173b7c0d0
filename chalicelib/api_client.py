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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as HttpTimeoutError

from chalicelib.model import ApiResponse
from chalicelib.settings import Destination

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


class ApiClient:
    def __init__(self, endpoint: Endpoint, destination: Destination, api_key: Callable[[], str]) -> None:
        self._endpoint = endpoint
        self.destination = destination
        self._api_key = api_key
        self._timeout = urllib3.Timeout(
            connect=destination.connect_timeout_s, read=destination.read_timeout_s
        )

    def post(self, body: str, idempotency_key: str) -> ApiResponse:
        """One POST, never retried here and never redirected: a redirect would turn the POST into a
        GET or take the key to another host, so a 3xx answer is a failed attempt like a 5xx."""
        key = self._api_key()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            self.destination.api_key_header: f"{scheme} {key}"
            if (scheme := self.destination.api_key_scheme)
            else key,
        }
        started = time.perf_counter()
        try:
            response = self._endpoint.http.urlopen(
                "POST",
                self._endpoint.target,
                body=body.encode(),
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except (HTTPError, OSError) as exc:
            return ApiResponse(None, error=failure(exc), elapsed_ms=_since(started))
        raw = response.data.decode(charset(response.headers.get("Content-Type", "")), errors="replace")
        text = raw.replace(key, "[redacted]") if key else raw
        return ApiResponse(
            status=response.status,
            retry_after=response.headers.get("Retry-After"),
            body_excerpt=text[:BODY_EXCERPT_CHARS],
            elapsed_ms=_since(started),
            body=text,
        )


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
