"""What the stand-in API requires of a request: its credentials (API key, Basic, OAuth2 bearer
token, secret headers) and its Standard Webhooks signature, judged without any HTTP."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from trickle_local.standin_checks import (
    Required,
    auth_ok,
    basic_ok,
    credentials,
    signature_ok,
)

SECRET = "whsec_" + base64.b64encode(b"a-signing-secret-of-32-bytes!!!!").decode()
OTHER = "whsec_" + base64.b64encode(b"another-secret-of-thirty-two-b!!").decode()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "scheme", "expected"),
    [
        ("Bearer abc", "Bearer", "abc"),
        ("bearer abc", "Bearer", "abc"),  # the scheme is case-insensitive
        ("  Bearer   abc  ", "Bearer", "abc"),
        ("Basic abc", "Bearer", None),
        ("Bearer", "Bearer", None),
        ("Bearer ", "Bearer", None),
        ("abc", "Bearer", None),
        (None, "Bearer", None),
    ],
)
def test_credentials_of_an_authorization_header(
    header: str | None, scheme: str, expected: str | None
) -> None:
    assert credentials(header, scheme) == expected


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic("ann", "pa:ss wörd"), True),  # a colon in the password, UTF-8 (RFC 7617)
        (basic("ann", "pa:ss wörd").replace("Basic", "basic"), True),
        (basic("ann", "wrong"), False),
        (basic("bob", "pa:ss wörd"), False),
        ("Bearer " + base64.b64encode(b"ann:pa:ss w\xc3\xb6rd").decode(), False),
        ("Basic not-base64!", False),
        ("Basic " + base64.b64encode(b"ann:\xff").decode(), False),  # not UTF-8
        (None, False),
    ],
)
def test_basic_credentials(header: str | None, ok: bool) -> None:
    assert basic_ok(header, "ann", "pa:ss wörd") is ok


def valid(headers: Mapping[str, str]) -> bool:
    """A token endpoint that issued t-1 only."""
    return headers.get("authorization") == "Bearer t-1"


CRM = Required(api_key="k", api_key_header="Authorization", api_key_scheme="Bearer")
BOTH = Required(bearer=valid, secret_headers={"x-t": "s"})


@pytest.mark.parametrize(
    ("required", "headers", "ok"),
    [
        (Required(), {}, None),  # nothing asked
        (Required(api_key="k"), {"x-api-key": "k"}, True),
        (Required(api_key="k"), {"x-api-key": "K"}, False),
        (Required(api_key="k"), {}, False),
        (CRM, {"authorization": "Bearer k"}, True),
        (CRM, {"authorization": "k"}, False),
        (Required(basic=("u", "p")), {"authorization": basic("u", "p")}, True),
        (Required(basic=("u", "p")), {"authorization": basic("u", "q")}, False),
        (Required(bearer=valid), {"authorization": "Bearer t-1"}, True),
        (Required(bearer=valid), {"authorization": "Bearer t-0"}, False),
        (Required(bearer=valid), {}, False),
        (Required(secret_headers={"x-tenant-key": "s"}), {"x-tenant-key": "s"}, True),
        (Required(secret_headers={"x-tenant-key": "s"}), {"x-tenant-key": "t"}, False),
        (Required(secret_headers={"x-tenant-key": "s"}), {}, False),
        # every credential asked for must be there
        (BOTH, {"authorization": "Bearer t-1"}, False),
        (BOTH, {"authorization": "Bearer t-1", "x-t": "s"}, True),
        # a signature alone is not a credential
        (Required(signing_secret=SECRET), {}, None),
    ],
)  # fmt: skip
def test_auth_asks_for_every_credential_required(
    required: Required, headers: dict[str, str], ok: bool | None
) -> None:
    assert auth_ok(required, headers) is ok


def test_the_listing_redacts_every_credential_header() -> None:
    required = Required(api_key="k", api_key_header="X-Api-Key", secret_headers={"x-tenant-key": "s"})
    assert required.redacted() == {"authorization", "x-api-key", "x-tenant-key"}
    assert Required().redacted() == {"authorization"}


def signed(secret: str, message_id: str, body: bytes, at: float) -> dict[str, str]:
    """Headers as a sender following the spec writes them, made by the reference package."""
    moment = datetime.fromtimestamp(int(at), tz=UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": Webhook(secret).sign(message_id, moment, body),
    }


def without(name: str, headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


BODY = '{"name":"Zoë 東京","big":12345678901234567890.123456789}'.encode()


Headers = Callable[[float], dict[str, str]]  # the headers of a request signed at a moment


# The moment is taken when the test runs, not when it is collected: the reference package refuses a
# timestamp more than 5 minutes off, and a whole suite runs longer than that.
@pytest.mark.parametrize(
    ("headers", "body", "ok"),
    [
        (lambda now: signed(SECRET, "m1", BODY, now), BODY, True),
        (lambda now: signed(OTHER, "m1", BODY, now), BODY, False),  # another secret
        (lambda now: signed(SECRET, "m1", BODY, now) | {"webhook-id": "m2"}, BODY, False),  # another id
        (lambda now: signed(SECRET, "m1", BODY, now), BODY + b" ", False),  # other bytes
        (lambda now: signed(SECRET, "m1", BODY, now - 600), BODY, False),  # older than 5 minutes
        (lambda now: without("webhook-signature", signed(SECRET, "m1", BODY, now)), BODY, False),
        (lambda now: {}, BODY, False),
    ],
)  # fmt: skip
def test_a_signature_is_verified_by_the_reference_package(headers: Headers, body: bytes, ok: bool) -> None:
    assert signature_ok(SECRET, body, headers(time.time())) is ok


def test_a_signature_made_with_two_secrets_verifies_with_either() -> None:
    """During a rotation the sender signs with both; a receiver holding either one accepts."""
    now = time.time()
    first, second = signed(SECRET, "m1", BODY, now), signed(OTHER, "m1", BODY, now)
    both = first | {"webhook-signature": f"{first['webhook-signature']} {second['webhook-signature']}"}
    assert signature_ok(SECRET, BODY, both) is True
    assert signature_ok(OTHER, BODY, both) is True


def test_no_signature_asked_is_none() -> None:
    assert signature_ok(None, BODY, {}) is None
