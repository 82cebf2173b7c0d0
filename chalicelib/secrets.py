"""API keys from SSM Parameter Store, read once per container and cached with a max age."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class SecretError(RuntimeError):
    """The parameter could not be read; the message names it but never holds its value."""


class SecretCache:
    """Powertools-style parameter cache: one SSM read per `max_age_s`, `refresh()` after a 401/403."""

    def __init__(
        self,
        client: Any,
        name: str,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.name = name
        self._max_age_s = max_age_s
        self._clock = clock
        self._value: str | None = None
        self._lock = threading.Lock()
        self._read_at = 0.0

    def get(self) -> str:
        """Thread-safe: parallel deliveries that find the cache cold read SSM once between them."""
        with self._lock:
            if self._value is None or self._clock() - self._read_at >= self._max_age_s:
                self._read()
            assert self._value is not None
            return self._value

    def refresh(self) -> str:
        with self._lock:
            return self._read()

    def _read(self) -> str:
        try:
            response = self._client.get_parameter(Name=self.name, WithDecryption=True)
        except Exception as exc:  # botocore raises many types; the name is what an operator needs
            raise SecretError(f"cannot read SSM parameter {self.name!r}: {type(exc).__name__}") from exc
        self._value = str(response["Parameter"]["Value"])
        self._read_at = self._clock()
        return self._value
