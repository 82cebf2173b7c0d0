"""API keys from SSM Parameter Store (SecureString) through Powertools' parameters provider, which
reads with `WithDecryption` and caches each value for `max_age` seconds per container.

The parameters package is imported where a key is first read (`wiring.parameters()`, `_read`), never
by `import app`: its `__init__` imports every provider (AppConfig, DynamoDB, Secrets Manager, SSM),
a cost the ingest and the routes, which read no key, should not pay at cold start."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider


class SecretError(RuntimeError):
    """The parameter could not be read; the message names it but never holds its value. `code` is
    the AWS error code (`ParameterNotFound`, `AccessDeniedException`, ...) or the exception's type:
    what tells a missing or forbidden parameter from SSM being unavailable for now."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class SecretCache:
    """One parameter read through a shared `SSMProvider` (one per SSM client: each provider adds a
    user-agent hook to the client), with `refresh()` to re-read it after the API refused it (401/403).

    Ours on top of the provider, because it does more:
    - a lock: `BaseProvider.get` (aws_lambda_powertools/utilities/parameters/base.py) checks
      `has_not_expired_in_cache`, calls SSM, then `add_to_cache`, with nothing held in between, so the
      drain's worker threads that find the value cold or expired would each call GetParameter (and KMS
      Decrypt); under the lock they read it once between them.
    - errors that name the parameter and the error type only: the provider wraps every failure in
      `GetParameterError(str(exc))`, whose text is the SDK's message.
    """

    def __init__(self, provider: SSMProvider, name: str, max_age_s: int) -> None:
        self._provider = provider
        self.name = name
        self._max_age_s = max_age_s
        self._lock = threading.Lock()

    def get(self) -> str:
        """The cached value, read from SSM when older than `max_age_s` (every time when 0)."""
        with self._lock:
            return self._read(force=False)

    def refresh(self) -> str:
        """Read SSM now (the key may have been rotated); the value's age starts again."""
        with self._lock:
            return self._read(force=True)

    def _read(self, force: bool) -> str:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            value = self._provider.get(self.name, max_age=self._max_age_s, decrypt=True, force_fetch=force)
        except GetParameterError as exc:
            cause = exc.__context__ or exc  # the provider raises it while handling the SDK's error
            code = error_code(cause)
            named = type(cause).__name__ + ("" if code == type(cause).__name__ else f" ({code})")
            raise SecretError(f"cannot read SSM parameter {self.name!r}: {named}", code) from cause
        if not isinstance(value, str):  # no transform asked: SSM's string, never bytes or a dict
            raise SecretError(f"SSM parameter {self.name!r} did not read as a string")
        return value


def error_code(exc: BaseException) -> str:
    """A botocore ClientError's code (its response's, never its message), else the exception's type."""
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code if isinstance(code, str) and code else type(exc).__name__
