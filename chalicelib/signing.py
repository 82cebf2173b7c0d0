"""Standard Webhooks request signing (https://www.standardwebhooks.com), for `signing =
"standard_webhooks"`. Pure: the keys come from the destination's signing parameter, read elsewhere.

A request carries `webhook-id` (the message id), `webhook-timestamp` (Unix seconds at send time)
and `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}." + body>` per key, separated
by spaces, so during a rotation (two secrets in the parameter) a receiver holding either one accepts
the request. The body is signed as the exact bytes sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)


def parse_signing_secrets(text: str) -> tuple[bytes, ...]:
    """The keys of a signing parameter: one or more `whsec_<base64>` secrets separated by whitespace
    (two while one is rotated). Base64 padding may be left off, as the reference package allows.
    ValueError says which secret (by position) is wrong and how, never any part of it."""
    words = text.split()
    if not words:
        raise ValueError(f"no signing secret: expected one or more {SECRET_PREFIX}<base64> secrets")
    keys: list[bytes] = []
    for position, word in enumerate(words, start=1):
        which = f"signing secret {position} of {len(words)}"
        if not word.startswith(SECRET_PREFIX):
            raise ValueError(f"{which} does not start with {SECRET_PREFIX}")
        encoded = word.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{which} is not base64 after {SECRET_PREFIX}") from None
        if not key:
            raise ValueError(f"{which} is empty after {SECRET_PREFIX}")
        keys.append(key)
    return tuple(dict.fromkeys(keys))


def signature(keys: tuple[bytes, ...], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per key, space-separated."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
        for key in keys
    )


def signing_headers(keys: tuple[bytes, ...], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a signed request carries; `timestamp` is the send time (fresh per retry)."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(keys, message_id, timestamp, body),
    }
