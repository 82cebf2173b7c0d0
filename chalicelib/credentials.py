"""What a destination's requests carry (issue #24): the auth header of its kind (none, an API key,
HTTP Basic, an OAuth2 client-credentials token), the secret headers and the signing keys, read from
its SSM parameters, as one `model.Authorization`; or why they cannot be had, a
`model.CredentialsFailure` (retryable, or refused). A request never leaves without them.

One `RequestCredentials` per destination per container, shared by every drain worker of every run:
- OAuth2 tokens are cached and fetched under a lock, so however many workers find the token missing
  or due, one token request is made per expiry; a token is refreshed `refresh_skew_s` (at most half
  its lifetime) before `expires_in` runs out, on the injected monotonic clock; a token without
  `expires_in` is used until the API refuses it. While a token is still unexpired, a failed refresh
  keeps it in use and tries again `remember_failures_s` later.
- `renew(stale, reread_secrets)` after a 401/403: the refused generation's token is dropped once,
  however many workers were refused with it; the SSM parameters are read again if asked.
- The token endpoint's 5xx, 429, 408, timeouts, resets and garbled answers are retryable; its
  400/401/403 make us read the client secret from SSM again and try once more (it may have been
  rotated), then the client is refused. A failure is remembered `remember_failures_s`, so the workers
  that ask meanwhile are answered without another request.
- Secrets and tokens never appear in a failure's reason, a log line or a repr: reasons name the
  parameter or the token endpoint (without its query or user info) and what is wrong.

The token request is ours, over a urllib3 pool of its own (`chalicelib.api_client.connect`), not a
library client's. Authlib's and requests-oauthlib's clients bring a requests Session, which costs
the drain about 1 ms of CPU per call (chalicelib/api_client.py); oauthlib's own client
(`BackendApplicationClient`) only formats the body and parses the answer: it refuses http token URLs
without OAUTHLIB_INSECURE_TRANSPORT, raises on an error answer without the HTTP status that tells
"unavailable" (retryable) from "refused", and does not do RFC 6749 2.3.1's form-urlencoded HTTP
Basic. What is left (a form body, a Basic header, reading a JSON answer) is a few lines here, and
oauthlib's server side judges them in the tests (trickle_local/token_endpoint.py).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import urllib3
from urllib3.exceptions import HTTPError

from chalicelib import secret_values
from chalicelib.api_client import Endpoint, failure
from chalicelib.model import Authorization, CredentialsFailure
from chalicelib.ports import Secret
from chalicelib.request_shape import header_value_problem
from chalicelib.secret_values import SecretValueError
from chalicelib.secrets import SecretError
from chalicelib.settings import AUTH_CHOICES, CLIENT_AUTH_CHOICES, Destination

log = logging.getLogger(__name__)

REMEMBER_FAILURES_S = 5.0
# SSM answers that will not change by asking again: the parameter or its key is missing, or the
# function may not read it. Anything else (throttling, a timeout, SSM unavailable) is retryable.
LASTING_SSM_CODES = frozenset(
    {
        "ParameterNotFound",
        "ParameterVersionNotFound",
        "AccessDeniedException",
        "InvalidKeyId",
        "ValidationException",
    }
)
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # an OAuth2 error code or token type worth quoting


@dataclass(frozen=True)
class OAuth2:
    """An `oauth2_client_credentials` destination's token request."""

    token_url: str
    scope: str = ""  # space-separated; "" asks for none
    audience: str = ""
    client_auth: str = "basic"  # "basic" (RFC 6749 2.3.1) or "body" (client_id, client_secret)
    refresh_skew_s: float = 60.0
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0


@dataclass(frozen=True)
class Issued:
    """A token the endpoint issued; `expires_in` None: it did not say (used until refused)."""

    access_token: str
    expires_in: float | None

    def __repr__(self) -> str:
        return f"Issued(expires_in={self.expires_in})"


@dataclass(frozen=True)
class TokenFailure:
    """Why the endpoint gave no token: `detail` completes "token endpoint <url> ..."; `reread`: read
    the client secret from SSM again and ask once more (the endpoint refused the client)."""

    retryable: bool
    reread: bool
    detail: str


@dataclass(frozen=True)
class _Token:
    access_token: str
    refresh_at: float | None  # None: used until the API refuses it
    expires_at: float | None


class _CredentialsError(Exception):
    """Carries a failure out of the reads and the token request to `current`."""

    def __init__(self, failure: CredentialsFailure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


def shown_url(url: str) -> str:
    """The URL as a reason may show it: no user info, query or fragment (they may hold a secret)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def basic_credentials(username: str, password: str) -> str:
    """HTTP Basic (RFC 7617): base64 of the UTF-8 `username:password`."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def token_request(config: OAuth2, client_id: str, client_secret: str) -> tuple[dict[str, str], str]:
    """The token request's headers and form body (RFC 6749 4.4.2). With client_auth "basic", the id
    and secret are form-urlencoded, then used as HTTP Basic's user-id and password (2.3.1), so a ':'
    in the id, or a '%' or '+' in either, reaches the server as it is."""
    form = {"grant_type": "client_credentials"}
    if config.scope:
        form["scope"] = config.scope
    if config.audience:
        form["audience"] = config.audience
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if config.client_auth == "basic":
        headers["Authorization"] = basic_credentials(quote_plus(client_id), quote_plus(client_secret))
    else:
        form |= {"client_id": client_id, "client_secret": client_secret}
    return headers, urlencode(form)


def read_token_answer(status: int, body: bytes) -> Issued | TokenFailure:
    """What a token endpoint's answer means (RFC 6749 5.1, 5.2)."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        document = None
    fields = document if isinstance(document, dict) else {}
    code = fields.get("error")
    said = f" {code}" if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else ""
    if status in (400, 401, 403):
        return TokenFailure(False, True, f"refused the client: HTTP {status}{said}")
    if status in (408, 429) or status >= 500:
        return TokenFailure(True, False, f"is unavailable: HTTP {status}{said}")
    if not 200 <= status < 300:
        return TokenFailure(False, False, f"answered HTTP {status}{said}: check token_url")
    if not fields:
        return TokenFailure(True, False, f"answered HTTP {status} without a JSON object")
    token, kind, expires_in = (
        fields.get("access_token"),
        fields.get("token_type", "Bearer"),
        fields.get("expires_in"),
    )
    if not isinstance(token, str) or not token:
        return TokenFailure(True, False, f"answered HTTP {status} without an access_token")
    if header_value_problem(token) or " " in token:
        return TokenFailure(True, False, f"answered HTTP {status} with an access_token unfit for a header")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        named = f" {kind!r}" if isinstance(kind, str) and _ERROR_CODE.fullmatch(kind) else ""
        return TokenFailure(False, False, f"issued a token of type{named} other than Bearer")
    lifetime = _seconds(expires_in)
    if lifetime is not None and lifetime <= 0:
        return TokenFailure(
            True, False, f"answered HTTP {status} with an expires_in that is not a positive number"
        )
    return Issued(token, lifetime)


def _seconds(value: object) -> float | None:
    """expires_in as a number of seconds (some endpoints send it as a string); None if absent;
    -1 if it is there but not a number."""
    if value is None:
        return None
    if isinstance(value, bool):
        return -1
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().isdigit():
        return float(value)
    return -1


def refresh_at(obtained_at: float, expires_in: float, skew_s: float) -> float:
    """When to ask for the next token: `skew_s` before expiry, but never in the first half of the
    token's life (a token of a few seconds with a minute's skew would be asked for on every use)."""
    return obtained_at + expires_in - min(skew_s, expires_in / 2)


def secret_failure(error: SecretError) -> CredentialsFailure:
    """A parameter that could not be read: lasting if it is missing or forbidden."""
    return CredentialsFailure(retryable=error.code not in LASTING_SSM_CODES, reason=str(error))


class RequestCredentials:
    """A destination's credentials, thread-safe. `credentials` is its key parameter (the key itself,
    Basic's `{"username", "password"}` or OAuth2's `{"client_id", "client_secret"}`; None for auth
    "none"); `signing` and `headers` its signing and secret-headers parameters when it has them;
    `token_endpoint` the pool for `oauth2.token_url` (`api_client.connect`)."""

    def __init__(
        self,
        destination: str,
        auth: str,
        credentials: Secret | None,
        *,
        key_header: str = "Authorization",
        key_scheme: str = "",
        oauth2: OAuth2 | None = None,
        token_endpoint: Endpoint | None = None,
        signing_secret: Secret | None = None,
        headers_secret: Secret | None = None,
        secret_headers: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        remember_failures_s: float = REMEMBER_FAILURES_S,
    ) -> None:
        if auth not in AUTH_CHOICES:
            raise ValueError(f"auth {auth!r} is not one of {', '.join(AUTH_CHOICES)}")
        if (credentials is None) != (auth == "none"):
            raise ValueError(
                f"auth {auth!r} {'reads no' if auth == 'none' else 'needs a'} credentials parameter"
            )
        oauth = auth == "oauth2_client_credentials"
        if oauth != (oauth2 is not None) or oauth != (token_endpoint is not None):
            raise ValueError("oauth2 and token_endpoint are given with auth 'oauth2_client_credentials' only")
        if oauth2 is not None and oauth2.client_auth not in CLIENT_AUTH_CHOICES:
            choices = ", ".join(CLIENT_AUTH_CHOICES)
            raise ValueError(f"client_auth {oauth2.client_auth!r} is not one of {choices}")
        if bool(secret_headers) != (headers_secret is not None):
            raise ValueError("secret_headers and headers_secret are given together")
        self.destination = destination
        self.auth = auth
        self._credentials = credentials
        self._key_header = key_header
        self._key_scheme = key_scheme
        self._oauth2 = oauth2
        self._token_endpoint = token_endpoint
        self._signing = signing_secret
        self._headers = headers_secret
        self._secret_headers = secret_headers
        self._clock = clock
        self._remember_s = remember_failures_s
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._failure: tuple[CredentialsFailure, float] | None = None  # and until when it stands
        self._authorization: Authorization | None = None
        self._renewed = 0  # the newest generation a renew dropped or replaced
        self._parsed: dict[str, tuple[str, Any]] = {}  # role -> (raw value, parsed)
        self._timeout = urllib3.Timeout(
            connect=oauth2.connect_timeout_s if oauth2 else None,
            read=oauth2.read_timeout_s if oauth2 else None,
        )

    @classmethod
    def from_destination(
        cls,
        destination: Destination,
        secret: Callable[[str], Secret],
        token_endpoint: Endpoint | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> RequestCredentials:
        """A routes-file destination's credentials: `secret(name)` reads an SSM parameter (a
        `SecretCache`), `token_endpoint` is the pool for its token_url (oauth2 only); the token
        request has the destination's timeouts."""
        d = destination
        oauth2 = OAuth2(
            d.token_url,
            d.scope,
            d.audience,
            d.client_auth,
            d.token_refresh_skew_s,
            d.connect_timeout_s,
            d.read_timeout_s,
        )
        return cls(
            d.name,
            d.auth,
            secret(d.api_key_parameter) if d.auth != "none" else None,
            key_header=d.api_key_header,
            key_scheme=d.api_key_scheme,
            oauth2=oauth2 if d.auth == "oauth2_client_credentials" else None,
            token_endpoint=token_endpoint,
            signing_secret=secret(d.signing_parameter) if d.signing else None,
            headers_secret=secret(d.headers_parameter) if d.secret_headers else None,
            secret_headers=d.secret_headers,
            clock=clock,
        )

    def __repr__(self) -> str:
        return f"RequestCredentials({self.destination!r}, auth={self.auth!r})"

    def current(self) -> Authorization | CredentialsFailure:
        """What a request carries now, or why it cannot be sent."""
        with self._lock:
            now = self._clock()
            if self._failure is not None and now < self._failure[1]:
                return self._failure[0]
            try:
                headers, keys, secrets = self._parts(now)
            except _CredentialsError as failed:
                self._failure = (failed.failure, now + self._remember_s)
                level = logging.WARNING if failed.failure.retryable else logging.ERROR
                log.log(
                    level,
                    "credentials unavailable" if failed.failure.retryable else "credentials refused",
                    extra={"destination": self.destination, "reason": failed.failure.reason},
                )
                return failed.failure
            self._failure = None
            held = self._authorization
            if held is not None and (dict(held.headers), held.signing_keys, held.secrets) == (
                headers,
                keys,
                secrets,
            ):
                return held
            generation = (held.generation if held else 0) + 1
            self._authorization = Authorization(headers, keys, generation, secrets)
            return self._authorization

    def renew(self, stale: Authorization | int, reread_secrets: bool) -> bool:
        """After the API refused `stale` (an Authorization or its generation, `ApiResponse.authorization`):
        drops its OAuth2 token, once however many workers were refused with it, and reads the SSM
        parameters again if `reread_secrets`. True if a request sent again would carry something new."""
        generation = stale if isinstance(stale, int) else stale.generation
        with self._lock:
            latest = self._authorization.generation if self._authorization else 0
            if generation < latest or generation <= self._renewed:
                return True  # newer credentials exist, or a renew is already under way for these
            changed = self._token is not None
            self._token = None
            if reread_secrets:
                changed = self._reread() or changed
            if changed:
                self._renewed = generation
                self._failure = None
            return changed

    def _reread(self) -> bool:
        """Reads every parameter now; True if any value differs from the one in use."""
        changed = False
        for role, secret in self._secrets():
            try:
                changed = secret.refresh() != self._parsed.get(role, (None,))[0] or changed
            except SecretError as error:
                log.warning(
                    "credentials: re-read failed",
                    extra={"destination": self.destination, "reason": str(error)},
                )
        return changed

    def _secrets(self) -> list[tuple[str, Secret]]:
        named = (("credentials", self._credentials), ("signing", self._signing), ("headers", self._headers))
        return [(role, secret) for role, secret in named if secret is not None]

    def _parts(self, now: float) -> tuple[dict[str, str], tuple[bytes, ...], tuple[str, ...]]:
        headers: dict[str, str] = {}
        secrets: list[str] = []
        if self.auth == "api_key":
            key = self._read("credentials", secret_values.api_key)
            headers[self._key_header] = f"{self._key_scheme} {key}" if self._key_scheme else key
            secrets.append(key)
        elif self.auth == "basic":
            username, password = self._read("credentials", secret_values.basic)
            value = basic_credentials(username, password)
            headers["Authorization"] = value
            secrets += [value.removeprefix("Basic "), password]
        elif self.auth == "oauth2_client_credentials":
            token = self._current_token(now)
            headers["Authorization"] = f"Bearer {token}"
            secrets.append(token)
        if self._headers is not None:
            extra = self._read("headers", lambda raw: secret_values.secret_headers(raw, self._secret_headers))
            headers |= extra
            secrets += extra.values()
        keys: tuple[bytes, ...] = self._read("signing", secret_values.signing_keys) if self._signing else ()
        return headers, keys, tuple(s for s in secrets if s)

    def _read(self, role: str, parse: Callable[[str], Any], fresh: bool = False) -> Any:
        """A parameter's value as `parse` (a `secret_values` parser) reads it, parsed again only when
        its text changed; one it refuses is refused for good, naming the parameter."""
        secret = dict(self._secrets())[role]
        try:
            raw = secret.refresh() if fresh else secret.get()
        except SecretError as error:
            raise _CredentialsError(secret_failure(error)) from None
        held = self._parsed.get(role)
        if held is None or held[0] != raw:
            try:
                held = self._parsed[role] = (raw, parse(raw))
            except SecretValueError as error:
                raise _CredentialsError(
                    CredentialsFailure(False, f"SSM parameter {secret.name!r}: {error}")
                ) from None
        return held[1]

    def _current_token(self, now: float) -> str:
        """The cached token, or a new one when it is due; a failed refresh keeps a token that has
        not expired (and tries again after `remember_failures_s`)."""
        held = self._token
        if held is not None and (held.refresh_at is None or now < held.refresh_at):
            return held.access_token
        try:
            self._token = self._fetch(now)
        except _CredentialsError as failed:
            if held is None or held.expires_at is None or now >= held.expires_at:
                raise
            self._token = replace(held, refresh_at=now + self._remember_s)
            log.warning(
                "oauth2 token refresh failed; the current token is used until it expires",
                extra={"destination": self.destination, "reason": failed.failure.reason},
            )
        return self._token.access_token

    def _fetch(self, now: float) -> _Token:
        assert self._oauth2 is not None
        used = self._read("credentials", secret_values.oauth2_client)
        answer = self._ask(*used)
        if isinstance(answer, TokenFailure) and answer.reread:
            fresh = self._read("credentials", secret_values.oauth2_client, fresh=True)
            if fresh != used:
                answer = self._ask(*fresh)
        url = shown_url(self._oauth2.token_url)
        if isinstance(answer, TokenFailure):
            raise _CredentialsError(
                CredentialsFailure(answer.retryable, f"token endpoint {url} {answer.detail}")
            )
        log.info(
            "oauth2 token obtained",
            extra={"destination": self.destination, "token_url": url, "expires_in": answer.expires_in},
        )
        if answer.expires_in is None:
            return _Token(answer.access_token, None, None)
        due = refresh_at(now, answer.expires_in, self._oauth2.refresh_skew_s)
        return _Token(answer.access_token, due, now + answer.expires_in)

    def _ask(self, client_id: str, client_secret: str) -> Issued | TokenFailure:
        """One token request, never retried or redirected here."""
        assert self._oauth2 is not None and self._token_endpoint is not None
        headers, body = token_request(self._oauth2, client_id, client_secret)
        try:
            response = self._token_endpoint.http.urlopen(
                "POST",
                self._token_endpoint.target,
                body=body.encode(),
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except (HTTPError, OSError) as exc:
            return TokenFailure(True, False, f"is unreachable: {failure(exc)}")
        return read_token_answer(response.status, response.data)
