"""Stream records to queue messages: pure decisions, no I/O.

DynamoDB numbers carry up to 38 digits, so they never pass through a float: integers become JSON
integers and other numbers are written with exactly the digits DynamoDB stored. What strict JSON
cannot carry (NaN, Infinity, numbers beyond a double, lone surrogates, nesting deeper than DynamoDB
allows) is refused with the path of the value, never sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer

from chalicelib.settings import Settings
from chalicelib.strict_json import MAX_DEPTH, JsonInputError, check_json, child_path, sqs_text

JsonValue = Any
ENVELOPE_VERSION = 1
_NAMESPACE = uuid.UUID("5d0e8f0c-3f5e-4b8e-9a57-7f0e1d6c2a11")
_GROUP_ID_SAFE = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")
_DESERIALIZER = TypeDeserializer()
MESSAGE_ID_ATTRIBUTE = "trickle-message-id"
DESTINATION_ATTRIBUTE = "trickle-destination"
REASON_ATTRIBUTE = "trickle-reason"


class RecordError(ValueError):
    """A stream record that can never become a message."""


@dataclass(frozen=True)
class OutboundMessage:
    """One SQS FIFO entry, ready to send."""

    message_id: str
    group_id: str
    dedup_id: str
    body: str
    attributes: Mapping[str, str]
    sequence_number: str
    keys: Mapping[str, JsonValue] = field(default_factory=dict)

    def size_bytes(self) -> int:
        """Size as SQS counts it: body plus attribute names, types and values."""
        attrs = sum(len(k.encode()) + len("String") + len(v.encode()) for k, v in self.attributes.items())
        return len(self.body.encode()) + attrs


@dataclass(frozen=True)
class RejectedRecord:
    """A record kept out of the queue, with the reason it goes to the dead-letter queue."""

    message_id: str
    group_id: str
    sequence_number: str
    keys: Mapping[str, JsonValue]
    reason: str


@dataclass
class BuildResult:
    messages: list[OutboundMessage] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    skipped: int = 0


def _unbase64(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return base64.b64decode(value, validate=True)


def _lambda_to_boto(av: Mapping[str, Any], depth: int = 0) -> Mapping[str, Any]:
    """Lambda events carry binary as base64 text; TypeDeserializer wants bytes."""
    if depth > MAX_DEPTH:
        raise RecordError(f"an attribute is nested more than {MAX_DEPTH} levels deep")
    if "B" in av:
        return {"B": _unbase64(av["B"])}
    if "BS" in av:
        return {"BS": [_unbase64(v) for v in av["BS"]]}
    if "M" in av:
        return {"M": {k: _lambda_to_boto(v, depth + 1) for k, v in av["M"].items()}}
    if "L" in av:
        return {"L": [_lambda_to_boto(v, depth + 1) for v in av["L"]]}
    return av


def _binary_bytes(binary: Any) -> bytes:
    return bytes(binary.value)


def _plain(value: Any) -> JsonValue:
    """Deserialized DynamoDB value -> JSON-ready value (Decimals stay Decimal)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise RecordError(f"number {value} is not a finite DynamoDB number")
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, Binary):
        return base64.b64encode(_binary_bytes(value)).decode()
    if isinstance(value, (set, frozenset)):
        items = list(value)
        if items and isinstance(items[0], Binary):
            return [base64.b64encode(b).decode() for b in sorted(_binary_bytes(i) for i in items)]
        return [_plain(v) for v in sorted(items)]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _deserialize(av: Any) -> Any:
    boto_shaped: Any = _lambda_to_boto(av)
    return _DESERIALIZER.deserialize(boto_shaped)


def decode_image(image: Mapping[str, Any], path: str = "item") -> dict[str, JsonValue]:
    """A DynamoDB image from a Lambda event -> plain JSON value, losing nothing; a value strict JSON
    cannot carry is a RecordError naming it."""
    decoded: dict[str, JsonValue] = {}
    try:
        attributes = list(image.items())
    except AttributeError as exc:
        raise RecordError(f"{path} is not a map of attributes") from exc
    for name, av in attributes:
        try:
            decoded[name] = _plain(_deserialize(av))
        except RecordError as exc:
            raise RecordError(f"{child_path(path, name)}: {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
            raise RecordError(f"{child_path(path, name)}: undecodable attribute value: {exc}") from exc
    try:
        check_json(decoded, path)
    except JsonInputError as exc:
        raise RecordError(str(exc)) from None
    return decoded


def dumps(value: Any) -> str:
    """Compact JSON in which Decimals appear as exact JSON numbers (json would need a float).
    U+FFFE and U+FFFF, which SQS refuses in a body, are written as escapes (the same JSON value)."""
    return _dumps(value).replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


def _dumps(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_dumps(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def message_id_for(table: str, event_id: str) -> str:
    """Stable across Lambda retries and stream replays of the same record."""
    return str(uuid.uuid5(_NAMESPACE, _valid_unicode(f"{table}/{event_id}")))


def group_id_for(settings: Settings, keys: Mapping[str, JsonValue]) -> str:
    """Per-item order by partition key, or one group for global order."""
    if settings.group_by == "table":
        return safe_group_id(settings.table_name)
    pk = settings.partition_key or ""
    if pk not in keys:
        raise RecordError(f"partition key {pk!r} missing from record keys {sorted(keys)}")
    return safe_group_id(f"{settings.table_name}#{dumps(keys[pk])}")


def safe_group_id(raw: str) -> str:
    """SQS allows 128 printable ASCII characters; anything else is hashed, stably."""
    if _GROUP_ID_SAFE.fullmatch(raw):
        return raw
    return "h-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _valid_unicode(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _iso_utc(epoch: Any) -> str:
    moment = datetime.fromtimestamp(float(epoch), tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_message(record: Mapping[str, Any], settings: Settings) -> OutboundMessage | RejectedRecord | None:
    """One Lambda stream record -> a message, a rejection with its reason, or None if not relayed."""
    ddb = record.get("dynamodb") or {}
    if not isinstance(ddb, Mapping):
        ddb = {}
    event_id = str(record.get("eventID") or "")
    sequence = str(ddb.get("SequenceNumber") or "")
    event_name = record.get("eventName")
    if event_name not in settings.event_names:
        return None
    table = settings.table_name
    message_id = message_id_for(table, event_id or sequence)
    raw_keys = ddb.get("Keys") or {}
    key_error = ""
    try:
        keys = decode_image(raw_keys, "keys")
    except RecordError as exc:
        keys, key_error = {}, f": {exc}"
    group_id = _fallback_group(settings, keys)
    try:
        if not event_id or not sequence:
            raise RecordError("record has no eventID or SequenceNumber")
        check_json([event_id, sequence], "eventID/SequenceNumber")
        if not keys:
            raise RecordError(f"record has no decodable Keys{key_error}")
        group_id = group_id_for(settings, keys)
        new_image = ddb.get("NewImage")
        if new_image is None and event_name != "REMOVE":
            raise RecordError(
                "record has no NewImage: the stream view type must be NEW_IMAGE or NEW_AND_OLD_IMAGES"
            )
        envelope = {
            "version": ENVELOPE_VERSION,
            "message_id": message_id,
            "event_name": event_name,
            "source": {
                "table": table,
                "event_id": event_id,
                "sequence_number": sequence,
                "approximate_creation_time": _iso_utc(ddb.get("ApproximateCreationDateTime", 0)),
            },
            "keys": keys,
            "item": decode_image(new_image) if new_image is not None else None,
        }
    except (RecordError, ValueError, TypeError, OverflowError, OSError) as exc:
        return RejectedRecord(message_id, group_id, _valid_unicode(sequence), keys, str(exc))
    message = OutboundMessage(
        message_id=message_id,
        group_id=group_id,
        dedup_id=message_id,
        body=dumps(envelope),
        attributes={
            MESSAGE_ID_ATTRIBUTE: message_id,
            DESTINATION_ATTRIBUTE: settings.destination.name,
            "trickle-event": str(event_name),
        },
        sequence_number=sequence,
        keys=keys,
    )
    if message.size_bytes() > settings.max_message_bytes:
        return RejectedRecord(
            message_id,
            group_id,
            sequence,
            keys,
            f"message of {message.size_bytes()} bytes exceeds the queue limit"
            f" of {settings.max_message_bytes}",
        )
    return message


def _fallback_group(settings: Settings, keys: Mapping[str, JsonValue]) -> str:
    try:
        return group_id_for(settings, keys)
    except RecordError:
        return safe_group_id(f"{settings.table_name}#undecodable")


def build_messages(records: Iterable[Mapping[str, Any]], settings: Settings) -> BuildResult:
    """Stream order is kept: messages come out in the order the records came in."""
    result = BuildResult()
    for record in records:
        built = build_message(record, settings)
        if built is None:
            result.skipped += 1
        elif isinstance(built, RejectedRecord):
            result.rejected.append(built)
        else:
            result.messages.append(built)
    return result


def rejection_message(rejected: RejectedRecord, settings: Settings) -> OutboundMessage:
    """A dead-letter entry for a record that cannot be queued: its keys and reason, no item."""
    body = sqs_text(
        dumps(
            {
                "version": ENVELOPE_VERSION,
                "message_id": rejected.message_id,
                "rejected_at": "ingest",
                "reason": rejected.reason,
                "source": {"table": settings.table_name, "sequence_number": rejected.sequence_number},
                "keys": rejected.keys,
            }
        )
    )
    return OutboundMessage(
        message_id=rejected.message_id,
        group_id=rejected.group_id,
        dedup_id=rejected.message_id,
        body=body,
        attributes={
            MESSAGE_ID_ATTRIBUTE: rejected.message_id,
            DESTINATION_ATTRIBUTE: settings.destination.name,
            REASON_ATTRIBUTE: sqs_text(rejected.reason)[:1024] or "unknown",
            "trickle-rejected-at": "ingest",
        },
        sequence_number=rejected.sequence_number,
        keys=rejected.keys,
    )
