"""What the stand-in API checks before it acts on a request, as a real API would: the credentials
its destination's `auth` kind sends, any secret headers, and a Standard Webhooks signature. Pure
functions over a request's headers (names lower-cased) and body bytes; the signature is judged by
the reference package (`standardwebhooks`), never by Trickle's own signing code."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Required:
    """What a request must carry; None (or empty) for what this API does not ask for. `bearer` is
    the OAuth2 token endpoint's judgement of a request's headers: whether they carry a token it
    issued that has not expired (`trickle_local.token_endpoint.TokenEndpoint.authorized`)."""

    api_key: str | None = None
    api_key_header: str = "x-api-key"
    api_key_scheme: str = ""  # "Bearer": the header must read "Bearer <key>"
    basic: tuple[str, str] | None = None  # (username, password)
    bearer: Callable[[Mapping[str, str]], bool] | None = None
    secret_headers: Mapping[str, str] | None = None  # name (lower-case) -> value
    signing_secret: str | None = None  # `whsec_<base64>`

    @property
    def auth(self) -> bool:
        """Whether any credential is asked for (else a request's auth is "not required")."""
        return bool(self.api_key is not None or self.basic or self.bearer is not None or self.secret_headers)

    def redacted(self) -> frozenset[str]:
        """Header names (lower-case) whose values a listing must not show."""
        names = {"authorization"} | set(self.secret_headers or {})
        return frozenset(names | ({self.api_key_header.lower()} if self.api_key is not None else set()))


def equal(given: str | None, expected: str) -> bool:
    """Constant-time comparison; a missing value is never equal."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def credentials(authorization: str | None, scheme: str) -> str | None:
    """The credentials of an `Authorization: <scheme> <credentials>` header (scheme case-insensitive,
    RFC 9110 11.4), or None."""
    if authorization is None:
        return None
    given, _, value = authorization.strip().partition(" ")
    return value.strip() or None if given.lower() == scheme.lower() else None


def api_key_ok(headers: Mapping[str, str], key: str, header: str, scheme: str) -> bool:
    expected = f"{scheme} {key}" if scheme else key
    return equal(headers.get(header.lower()), expected)


def basic_ok(authorization: str | None, username: str, password: str) -> bool:
    """RFC 7617: `Basic base64(utf-8 "username:password")`."""
    encoded = credentials(authorization, "Basic")
    if encoded is None:
        return False
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return equal(decoded, f"{username}:{password}")


def auth_ok(required: Required, headers: Mapping[str, str]) -> bool | None:
    """Whether the request carries every credential `required` asks for; None if it asks none."""
    if not required.auth:
        return None
    authorization = headers.get("authorization")
    checks = [
        required.api_key is None
        or api_key_ok(headers, required.api_key, required.api_key_header, required.api_key_scheme),
        required.basic is None or basic_ok(authorization, *required.basic),
        required.bearer is None or required.bearer(headers),
        all(equal(headers.get(name), value) for name, value in (required.secret_headers or {}).items()),
    ]
    return all(checks)


def signature_ok(secret: str | None, body: bytes, headers: Mapping[str, str]) -> bool | None:
    """Whether the Standard Webhooks headers sign `body` (the bytes as received) with `secret`,
    within the reference package's 5-minute timestamp tolerance; None if no signature is asked."""
    if secret is None:
        return None
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError:
        return False
    return True
