"""What a backfilled message remembers of the item it was built from, so its drain can tell whether
the item has changed or gone since (issue #26): the item's key, and a fingerprint of the whole item
as the scan read it. Pure, no I/O: the backfill writes these attributes, the drain compares them with
a consistent read of the item before sending (a changed item's newer state comes through the stream;
a deleted one is never resurrected). And the id the API sees when it is not the message's own
(`api_id`: a replay with the same keys)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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


def _canonical(value: Any) -> Any:
    """A typed attribute value with its sets sorted: DynamoDB returns a set's members in no set
    order, so the same item read twice could otherwise give two fingerprints."""
    if isinstance(value, Mapping):
        return {kind: sorted(inner) if kind in _SETS else _canonical(inner) for kind, inner in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def key_text(keys: Mapping[str, Any]) -> str:
    """An item's key (typed: `{"pk": {"S": "a"}}`) as compact JSON with sorted names: the attribute
    the drain reads the item back with."""
    return json.dumps(_canonical(keys), sort_keys=True, separators=(",", ":"))


def fingerprint(image: Mapping[str, Any]) -> str:
    """The SHA-256 of a typed item image (as Scan, GetItem and stream images give it): equal for
    equal items, whatever order their attributes and set members come in."""
    text = json.dumps(_canonical(image), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
