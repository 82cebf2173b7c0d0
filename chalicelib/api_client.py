"""HTTP adapter for the third-party API: one shared session, every failure mapped to a response."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from chalicelib.ports import ApiResponse
from chalicelib.settings import Destination

BODY_EXCERPT_CHARS = 256


def make_session() -> requests.Session:
    """One session per container so connections to the API are reused across messages and runs."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class ApiClient:
    def __init__(
        self,
        session: requests.Session,
        destination: Destination,
        api_key: Callable[[], str],
    ) -> None:
        self._session = session
        self.destination = destination
        self._api_key = api_key

    def post(self, body: str, idempotency_key: str) -> ApiResponse:
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
            response = self._session.post(
                self.destination.url,
                data=body.encode(),
                headers=headers,
                timeout=(self.destination.connect_timeout_s, self.destination.read_timeout_s),
            )
        except requests.Timeout:
            return ApiResponse(None, error="timeout", elapsed_ms=_since(started))
        except requests.RequestException as exc:
            return ApiResponse(
                None, error=f"connection error: {type(exc).__name__}", elapsed_ms=_since(started)
            )
        text = response.text.replace(key, "[redacted]") if key else response.text
        return ApiResponse(
            status=response.status_code,
            retry_after=response.headers.get("Retry-After"),
            body_excerpt=text[:BODY_EXCERPT_CHARS],
            elapsed_ms=_since(started),
            body=text,
        )


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
