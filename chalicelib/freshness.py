"""What a backfilled message remembers of the item it was built from, so its drain can tell whether
the item has changed or gone since (issue #26): the item's key, and a fingerprint of the whole item
as the scan read it. Pure, no I/O: the backfill writes these attributes, the drain compares them with
a consistent read of the item before sending (a changed item's newer state comes through the stream;
a deleted one is never resurrected); what the comparison says is `judge`'s, a table. And the id the
API sees when it is not the message's own (`api_id`: a replay with the same keys)."""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Message attributes on a destination's queue (SQS allows ten per message; model.py lists the rest).
SOURCE_KEY_ATTRIBUTE = "trickle-source-key"  # the item's key, typed DynamoDB JSON (`key_text`)
FINGERPRINT_ATTRIBUTE = "trickle-fingerprint"  # `fingerprint` of the item the message was built from
JOB_ATTRIBUTE = "trickle-job"  # the backfill or replay job that queued the message
API_ID_ATTRIBUTE = "trickle-api-id"  # the id the API sees, when not the message's own (a replay's same keys)

_SETS = ("SS", "NS", "BS")


def api_id(message_id: str, attributes: Mapping[str, str]) -> str:
    """The id the API sees for a message (its Idempotency-Key, webhook-id, a batched item's id):
    its `API_ID_ATTRIBUTE` when it has one, so a replay with the same keys is recognised by the API
    as the message it already had, while the ledger and SQS know the copy by its own id."""
    return attributes.get(API_ID_ATTRIBUTE) or message_id


def _image(image: Mapping[str, Any]) -> dict[str, Any]:
    """An item (attribute name -> typed value) as one text gives it whatever order it came in."""
    return {name: _typed(value) for name, value in image.items()}


def _typed(value: Mapping[str, Any]) -> dict[str, Any]:
    """A typed attribute value with its sets sorted (DynamoDB returns a set's members in no set
    order, so the same item read twice could otherwise give two fingerprints) and its binaries as
    base64 text (a low-level client's Scan and GetItem give bytes, a stream's Lambda event the text)."""
    return {kind: _inner(kind, inner) for kind, inner in value.items()}


def _inner(kind: str, inner: Any) -> Any:
    if kind in _SETS:
        return sorted(_binary(v) for v in inner)
    if kind == "M":
        return _image(inner)
    if kind == "L":
        return [_typed(v) for v in inner]
    return _binary(inner)


def _binary(value: Any) -> Any:
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes | bytearray) else value


def key_text(keys: Mapping[str, Any]) -> str:
    """An item's key (typed: `{"pk": {"S": "a"}}`) as compact JSON with sorted names: the attribute
    the drain reads the item back with."""
    return json.dumps(_image(keys), sort_keys=True, separators=(",", ":"))


def fingerprint(image: Mapping[str, Any]) -> str:
    """The SHA-256 of a typed item image (as Scan, GetItem and stream images give it): equal for
    equal items, whatever order their attributes and set members come in."""
    text = json.dumps(_image(image), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_KEY_TYPES = ("S", "N", "B")


@dataclass(frozen=True)
class Claim:
    """What a backfilled message says of its item: its key (`key_text`) and the item's fingerprint
    when the message was built."""

    key: str
    fingerprint: str


def claim(attributes: Mapping[str, str]) -> Claim | str | None:
    """The claim a message's attributes make; None for a message that makes none (a live one: never
    read); or, as text, why they cannot be checked (one without the other, a key that is not a
    DynamoDB key): such a message is never sent unchecked."""
    key, print_ = attributes.get(SOURCE_KEY_ATTRIBUTE), attributes.get(FINGERPRINT_ATTRIBUTE)
    if key is None and print_ is None:
        return None
    if not key or not print_:
        missing = SOURCE_KEY_ATTRIBUTE if not key else FINGERPRINT_ATTRIBUTE
        return f"{missing} is missing or empty, so the item cannot be read back"
    try:
        keys = json.loads(key)
    except ValueError:
        return f"{SOURCE_KEY_ATTRIBUTE} is not JSON"
    if not _is_key(keys):
        return f"{SOURCE_KEY_ATTRIBUTE} is not an item key (one or two attributes, each typed S, N or B)"
    return Claim(key_text(keys), print_)


def _is_key(keys: Any) -> bool:
    """A DynamoDB key in typed JSON: one or two attributes, each a string, number or binary (base64)."""
    if not isinstance(keys, dict) or not 1 <= len(keys) <= 2:
        return False
    for name, value in keys.items():
        if not name or not isinstance(value, dict) or len(value) != 1:
            return False
        ((kind, text),) = value.items()
        if kind not in _KEY_TYPES or not isinstance(text, str) or not text:
            return False
        if kind == "B":
            try:
                base64.b64decode(text, validate=True)
            except ValueError:
                return False
    return True


def key_attributes(text: str) -> dict[str, Any]:
    """A claim's key as a low-level client takes it (a binary as bytes)."""
    keys: dict[str, dict[str, str]] = json.loads(text)
    return {name: {"B": base64.b64decode(v["B"])} if "B" in v else v for name, v in keys.items()}


class Freshness(enum.Enum):
    """What reading a backfilled message's item again said."""

    CURRENT = "current"  # the item is as the message was built from: send it
    GONE = "gone"  # deleted since: never resurrected
    CHANGED = "changed"  # changed since: its change's own stream message carries the newer state
    UNREAD = "unread"  # the read failed: the message waits, unsent, for a later one
    INVALID = "invalid"  # its attributes cannot be checked (`claim`): dead-lettered with why


@dataclass(frozen=True)
class Check:
    """A message's freshness, and with UNREAD or INVALID what went wrong."""

    result: Freshness
    detail: str = ""


def judge(claimed: str, current: str | None, read: bool, changes_follow: bool = True) -> Freshness:
    """The table: `claimed`, the message's fingerprint; `current`, the item's now (None: no such
    item); `read`, whether the consistent read answered at all; `changes_follow`, whether the
    message's route takes MODIFY records, so a change's own message follows it. Through a route of
    inserts only, no change ever reaches the destination: dropping the scanned state for it would
    lose the item, so it is sent as scanned, as the route sends an item as first seen."""
    if not read:
        return Freshness.UNREAD
    if current is None:
        return Freshness.GONE
    return Freshness.CURRENT if current == claimed or not changes_follow else Freshness.CHANGED
