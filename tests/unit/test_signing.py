"""Standard Webhooks signing (chalicelib/signing.py), judged by the reference package
`standardwebhooks`, not by our own code: what a receiver following the spec accepts."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chalicelib.signing import HEADERS, parse_signing_secrets, signature, signing_headers

SECRET = "whsec_" + base64.b64encode(b"k" * 24 + b"\xfe\xff\x00secret-bytes").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"rotated-secret-of-32-bytes-long!").decode()
MESSAGE_ID = "msg_2bT7f0c1-orders-0001"

BODIES = {
    "ascii": b'{"order_id":"o-1","total":12}',
    "non-ascii text": '{"name":"Zoë Ågren 東京 😀","note":"naïve — “quoted”"}'.encode(),
    "big numbers kept as JSON text": b'{"amount":123456789012345678901234567890.5,"n":98765432109876543210}',
    "200 KB string": json.dumps({"blob": "é" + "x" * 200_000}).encode(),
    "empty object": b"{}",
}


def verified(secret: str, headers: dict[str, str], body: bytes) -> object:
    return Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_the_reference_package_verifies_our_signature(body: bytes) -> None:
    headers = signing_headers(parse_signing_secrets(SECRET), MESSAGE_ID, int(time.time()), body)
    assert set(headers) == set(HEADERS)
    assert headers["webhook-id"] == MESSAGE_ID
    assert verified(SECRET, headers, body) == json.loads(body)


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_a_changed_body_or_another_secret_does_not_verify(body: bytes) -> None:
    headers = signing_headers(parse_signing_secrets(SECRET), MESSAGE_ID, int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        verified(SECRET, headers, body + b" ")
    with pytest.raises(WebhookVerificationError):
        verified(NEW_SECRET, headers, body)


def test_the_timestamp_is_the_one_given_and_is_signed() -> None:
    body, now = BODIES["ascii"], int(time.time())
    headers = signing_headers(parse_signing_secrets(SECRET), MESSAGE_ID, now, body)
    assert headers["webhook-timestamp"] == str(now)
    with pytest.raises(WebhookVerificationError):
        verified(SECRET, headers | {"webhook-timestamp": str(now - 1)}, body)


def test_the_message_id_is_signed() -> None:
    body = BODIES["ascii"]
    headers = signing_headers(parse_signing_secrets(SECRET), MESSAGE_ID, int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        verified(SECRET, headers | {"webhook-id": MESSAGE_ID + "x"}, body)


@pytest.mark.parametrize("separator", [" ", "\n", "  \t\n"])
def test_during_a_rotation_each_secret_alone_verifies_the_request(separator: str) -> None:
    keys = parse_signing_secrets(f"\n{SECRET}{separator}{NEW_SECRET}\n")
    assert len(keys) == 2
    body = BODIES["non-ascii text"]
    headers = signing_headers(keys, MESSAGE_ID, int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(s.startswith("v1,") for s in headers["webhook-signature"].split(" "))
    for secret in (SECRET, NEW_SECRET):
        assert verified(secret, headers, body) == json.loads(body)


def test_the_same_secret_twice_signs_once() -> None:
    keys = parse_signing_secrets(f"{SECRET} {SECRET}")
    assert len(signature(keys, MESSAGE_ID, 1, b"{}").split(" ")) == 1


def test_unpadded_base64_is_read_as_the_reference_package_reads_it() -> None:
    unpadded = "whsec_" + base64.b64encode(b"twenty-five-bytes-secret!").decode().rstrip("=")
    assert not unpadded.endswith("=")
    body = BODIES["ascii"]
    headers = signing_headers(parse_signing_secrets(unpadded), MESSAGE_ID, int(time.time()), body)
    assert verified(unpadded, headers, body) == json.loads(body)


SECRET_TEXT = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1zaG93"  # base64 of a secret, never in a message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no signing secret: expected one or more whsec_<base64> secrets"),
        ("  \n\t ", "no signing secret: expected one or more whsec_<base64> secrets"),
        (SECRET_TEXT, "secret 1 of 1 does not start with whsec_"),
        (f"whsec_{SECRET_TEXT} {SECRET_TEXT}", "secret 2 of 2 does not start with whsec_"),
        (f"WHSEC_{SECRET_TEXT}", "secret 1 of 1 does not start with whsec_"),
        (f"whsec_{SECRET_TEXT}!!", "secret 1 of 1 is not base64 after whsec_"),
        (f"whsec_{SECRET_TEXT[:-3]}-_x", "secret 1 of 1 is not base64 after whsec_"),
        (f"whsec_{SECRET_TEXT}a", "secret 1 of 1 is not base64 after whsec_"),  # 4n+1 characters
        ("whsec_", "secret 1 of 1 is empty after whsec_"),
        ("whsec_====", "secret 1 of 1 is not base64 after whsec_"),
    ],
)
def test_bad_secret_text_is_refused_without_showing_the_secret(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_signing_secrets(text)
    message = str(caught.value)
    assert problem in message
    assert SECRET_TEXT[:8] not in message and "c2Vj" not in message
