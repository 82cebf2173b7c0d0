"""Stream records to queue messages: pure decisions, no I/O.

DynamoDB numbers carry up to 38 significant digits, so they never pass through a float: integers
become JSON integers and other numbers are written with exactly the digits DynamoDB stored, whatever
the notation (`1E+2`, `100`, `1.50`). What strict JSON cannot carry (NaN, Infinity, numbers beyond a
double, lone surrogates, nesting deeper than DynamoDB allows) is refused with the path of the value,
never sent.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer

from chalicelib import item_keys
from chalicelib.model import (
    DESTINATION_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    REASON_ATTRIBUTE,
    ROUTE_ATTRIBUTE,
    JsonValue,
    OutboundMessage,
    iso_utc,
)
from chalicelib.routing import Route, RouteError, record_view
from chalicelib.settings import Destination, Settings
from chalicelib.strict_json import MAX_DEPTH, JsonInputError, check_json, child_path, dumps, sqs_text

ENVELOPE_VERSION = 1
_NAMESPACE = uuid.UUID("5d0e8f0c-3f5e-4b8e-9a57-7f0e1d6c2a11")
_GROUP_ID_SAFE = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")
_DYNAMODB_DIGITS = 38
_DYNAMODB_SMALLEST = Decimal("1E-130")
_DYNAMODB_LARGEST = Decimal("9.9999999999999999999999999999999999999E+125")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII only


class RecordError(ValueError):
    """A stream record that can never become a message."""


@dataclass(frozen=True)
class RejectedRecord:
    """A record kept out of the queue, with the reason it goes to the dead-letter queue."""

    message_id: str
    group_id: str
    sequence_number: str
    keys: Mapping[str, JsonValue]
    reason: str
    destination: str


@dataclass
class BuildResult:
    messages: list[OutboundMessage] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    unrouted: int = 0


_OUT_OF_RANGE = f"outside DynamoDB's range (magnitudes {_DYNAMODB_SMALLEST} to {_DYNAMODB_LARGEST}, and 0)"


def _shown(text: Any) -> str:
    """A number's text for a reason: whole unless long (a dead letter's reason is capped)."""
    if not isinstance(text, str):
        return repr(text)[:60]
    return text if len(text) <= 60 else f"{text[:30]}…{text[-20:]} ({len(text)} characters)"


def dynamodb_number(text: Any) -> Decimal:
    """The exact value of a number DynamoDB holds, in any notation a stream may carry it (`1E+2`,
    `100`, `100.00`, `0.0010`); what DynamoDB would refuse is a RecordError saying why. boto3's own
    decoder rounds to 38 digits first, so it refused `1234…780` (39 digits, 38 significant)."""
    shown = _shown(text)
    if not isinstance(text, str):
        raise RecordError(f"number {shown} is {type(text).__name__}, not text")
    if not _NUMBER_TEXT.fullmatch(text):
        raise RecordError(f"number {shown} is not a finite DynamoDB number")
    try:
        number = Decimal(text)  # exact: the constructor never rounds
    except InvalidOperation:  # an exponent past what Python's decimal can hold
        raise RecordError(f"number {shown} is {_OUT_OF_RANGE}") from None
    significant = len("".join(map(str, number.as_tuple().digits)).strip("0"))
    if significant > _DYNAMODB_DIGITS:
        raise RecordError(
            f"number {shown} has {significant} significant digits; DynamoDB holds at most {_DYNAMODB_DIGITS}"
        )
    magnitude = number.copy_abs()  # abs() would round to the context's precision
    if number and not _DYNAMODB_SMALLEST <= magnitude <= _DYNAMODB_LARGEST:
        raise RecordError(f"number {shown} is {_OUT_OF_RANGE}")
    return number


class _Deserializer(TypeDeserializer):
    """boto3's decoder, with numbers read exactly by `dynamodb_number` (sets of numbers too)."""

    def _deserialize_n(self, value: Any) -> Decimal:
        return dynamodb_number(value)


_DESERIALIZER = _Deserializer()


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
    if isinstance(value, Decimal):  # finite: `dynamodb_number` read it
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


def message_id_for(table: str, event_id: str, destination: str) -> str:
    """Stable across Lambda retries and stream replays of the same record, one per destination."""
    return str(uuid.uuid5(_NAMESPACE, _valid_unicode(f"{table}/{event_id}/{destination}")))


def group_id_for(
    destination: Destination, table: str, keys: Mapping[str, JsonValue], view: Any, pk: str | None
) -> str:
    """Per-item order by partition key, by an expression over the record, or one group for the table."""
    if destination.group_by == "table":
        return safe_group_id(table)
    if destination.group_by == "expression":
        assert destination.group_expression is not None  # settings require one
        try:
            value = destination.group_expression.search(view)
        except ValueError as exc:
            raise RecordError(
                f"group_expression {destination.group_expression.text!r} failed: {exc}"
            ) from exc
        if value is None:
            raise RecordError(f"group_expression {destination.group_expression.text!r} gave null")
        return safe_group_id(f"{table}#{dumps(value)}")
    if pk is None or pk not in keys:
        raise RecordError(f"partition key {pk!r} missing from record keys {sorted(keys)}")
    return safe_group_id(f"{table}#{dumps(keys[pk])}")


def safe_group_id(raw: str) -> str:
    """SQS allows 128 printable ASCII characters; anything else is hashed, stably."""
    if _GROUP_ID_SAFE.fullmatch(raw):
        return raw
    return "h-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _valid_unicode(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@dataclass(frozen=True)
class _Record:
    """A stream record, decoded once for every route."""

    event_id: str
    sequence: str
    event_name: str
    keys: dict[str, JsonValue]
    item: JsonValue
    old_item: JsonValue
    created: str


def _decode(record: Mapping[str, Any]) -> _Record:
    ddb = record.get("dynamodb") or {}
    if not isinstance(ddb, Mapping):
        ddb = {}
    event_id = str(record.get("eventID") or "")
    sequence = str(ddb.get("SequenceNumber") or "")
    event_name = str(record.get("eventName"))
    if not event_id or not sequence:
        raise RecordError("record has no eventID or SequenceNumber")
    check_json([event_id, sequence], "eventID/SequenceNumber")
    keys = decode_image(ddb.get("Keys") or {}, "keys")
    if not keys:
        raise RecordError("record has no decodable Keys")
    new_image, old_image = ddb.get("NewImage"), ddb.get("OldImage")
    if new_image is None and event_name != "REMOVE":
        raise RecordError(
            "record has no NewImage: the stream view type must be NEW_IMAGE or NEW_AND_OLD_IMAGES"
        )
    return _Record(
        event_id,
        sequence,
        event_name,
        keys,
        decode_image(new_image, "item") if new_image is not None else None,
        decode_image(old_image, "old_item") if old_image is not None else None,
        iso_utc(float(ddb.get("ApproximateCreationDateTime", 0))),
    )


def route_record(record: Mapping[str, Any], settings: Settings) -> BuildResult:
    """One stream record -> one message per destination of every route that takes it (the first
    route for a destination wins), or rejections naming what failed; when no route takes it, a count
    of one unrouted record (and, if the stage says so, its rejection, `_unrouted`).

    A record that cannot be decoded is rejected for every destination whose routes take its event
    (its filters cannot be evaluated); a filter, transform or group expression that fails rejects
    the record for that route's destinations only."""
    result = BuildResult()
    table = settings.table_name
    event_name = record.get("eventName")
    ddb = record.get("dynamodb") or {}
    if not isinstance(ddb, Mapping):
        ddb = {}
    sequence = str(ddb.get("SequenceNumber") or "")
    event_id = str(record.get("eventID") or "") or sequence
    try:
        decoded = _decode(record)
    except (RecordError, ValueError, TypeError, OverflowError, OSError) as exc:
        candidates = {d for r in settings.routes if event_name in r.events for d in r.destinations}
        if not candidates:
            reason = f"no route takes {event_name} records (and this one cannot be decoded: {exc})"
            _unrouted(result, settings, event_id, _valid_unicode(sequence), _keys_or_empty(ddb), reason)
        for name in sorted(candidates):
            message_id = message_id_for(table, event_id, name)
            group = safe_group_id(f"{table}#undecodable")
            result.rejected.append(
                RejectedRecord(
                    message_id, group, _valid_unicode(sequence), _keys_or_empty(ddb), str(exc), name
                )
            )
        return result
    done: set[str] = set()
    for route in settings.routes:
        pending = [d for d in route.destinations if d not in done]
        if not pending:
            continue
        base_view = record_view(
            decoded.event_name,
            decoded.keys,
            decoded.item,
            decoded.old_item,
            {"source": _source(decoded, table)},
        )
        try:
            if not route.accepts(base_view):
                continue
        except RouteError as exc:
            done.update(pending)
            result.rejected += [
                _rejection(decoded, table, settings.destination(d), str(exc)) for d in pending
            ]
            continue
        done.update(pending)
        for name in pending:
            built = _build(decoded, route, settings.destination(name), settings)
            if isinstance(built, RejectedRecord):
                result.rejected.append(built)
            else:
                result.messages.append(built)
    if not done:
        reason = f"no route takes this {decoded.event_name} record"
        _unrouted(result, settings, decoded.event_id, decoded.sequence, decoded.keys, reason)
    return result


def _unrouted(
    result: BuildResult,
    settings: Settings,
    event_id: str,
    sequence: str,
    keys: Mapping[str, JsonValue],
    reason: str,
) -> None:
    """Count a record no route takes; with TRICKLE_UNROUTED=dead_letter:<destination>, also reject it
    there, so it reaches that destination's dead-letter queue (and dead-letter list) with the reason."""
    result.unrouted += 1
    target = settings.unrouted_dead_letters
    if target is not None:
        table = settings.table_name
        result.rejected.append(
            RejectedRecord(
                message_id_for(table, event_id, target),
                safe_group_id(f"{table}#unrouted"),
                sequence,
                keys,
                reason,
                target,
            )
        )


def _source(decoded: _Record, table: str) -> dict[str, str]:
    return {
        "table": table,
        "event_id": decoded.event_id,
        "sequence_number": decoded.sequence,
        "approximate_creation_time": decoded.created,
    }


def _keys_or_empty(ddb: Mapping[str, Any]) -> dict[str, JsonValue]:
    try:
        return decode_image(ddb.get("Keys") or {}, "keys")
    except RecordError:
        return {}


def _rejection(decoded: _Record, table: str, destination: Destination, reason: str) -> RejectedRecord:
    message_id = message_id_for(table, decoded.event_id, destination.name)
    return RejectedRecord(
        message_id,
        safe_group_id(f"{table}#unroutable"),
        decoded.sequence,
        decoded.keys,
        reason,
        destination.name,
    )


def _build(
    decoded: _Record, route: Route, destination: Destination, settings: Settings
) -> OutboundMessage | RejectedRecord:
    table = settings.table_name
    message_id = message_id_for(table, decoded.event_id, destination.name)
    envelope = {
        "version": ENVELOPE_VERSION,
        "message_id": message_id,
        "event_name": decoded.event_name,
        "source": _source(decoded, table),
        "keys": decoded.keys,
        "item": decoded.item,
    }
    view = record_view(decoded.event_name, decoded.keys, decoded.item, decoded.old_item, envelope)
    try:
        group_id = group_id_for(destination, table, decoded.keys, view, settings.partition_key)
        body = dumps(route.body(view, envelope))
    except RouteError as exc:  # names its route and expression already
        return _rejection(decoded, table, destination, str(exc))
    except (RecordError, ValueError, TypeError) as exc:
        return _rejection(decoded, table, destination, f"route {route.name!r}: {exc}")
    message = OutboundMessage(
        message_id=message_id,
        group_id=group_id,
        dedup_id=message_id,
        body=body,
        attributes={
            MESSAGE_ID_ATTRIBUTE: message_id,
            DESTINATION_ATTRIBUTE: destination.name,
            ROUTE_ATTRIBUTE: route.name,
            **_item_attribute(decoded.keys, settings.partition_key),
        },
        sequence_number=decoded.sequence,
        keys=decoded.keys,
        destination=destination.name,
    )
    if message.size_bytes() > settings.max_message_bytes:
        return RejectedRecord(
            message_id,
            group_id,
            decoded.sequence,
            decoded.keys,
            f"message of {message.size_bytes()} bytes exceeds the queue limit"
            f" of {settings.max_message_bytes}",
            destination.name,
        )
    return message


def _item_attribute(keys: Mapping[str, JsonValue], partition_key: str | None) -> dict[str, str]:
    """The item the message is built from, for search by item key (`chalicelib.item_keys`)."""
    key = item_keys.of_keys(keys, partition_key)
    return {item_keys.ITEM_KEY_ATTRIBUTE: item_keys.attribute(key)} if key else {}


def build_messages(records: Iterable[Mapping[str, Any]], settings: Settings) -> BuildResult:
    """Stream order is kept: messages come out in the order the records came in."""
    result = BuildResult()
    for record in records:
        routed = route_record(record, settings)
        result.messages += routed.messages
        result.rejected += routed.rejected
        result.unrouted += routed.unrouted
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
            DESTINATION_ATTRIBUTE: rejected.destination,
            REASON_ATTRIBUTE: sqs_text(rejected.reason)[:1024] or "unknown",
            "trickle-rejected-at": "ingest",
        },
        sequence_number=rejected.sequence_number,
        keys=rejected.keys,
        destination=rejected.destination,
    )
