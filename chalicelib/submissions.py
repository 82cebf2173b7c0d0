"""Direct submission (the queue-based ingestion pattern): a producer that cannot write to the table
POSTs a JSON message; it joins the same queue, ledger and drain as stream items."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chalicelib import item_keys, strict_json
from chalicelib.callbacks import MAX_TOKEN_CHARS
from chalicelib.model import (
    DESTINATION_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    ROUTE_ATTRIBUTE,
    TASK_TOKEN_ATTRIBUTE,
    OutboundMessage,
    iso_utc,
)
from chalicelib.records import ENVELOPE_VERSION, safe_group_id
from chalicelib.settings import Settings
from chalicelib.strict_json import JsonInputError

_SUBMIT_NAMESPACE = uuid.UUID("0b1f5a57-9d8e-4a56-9a0f-5d6c1e1a7a11")
ALLOWED_FIELDS = frozenset({"item", "group", "idempotency_key", "destination", "task_token"})
MAX_KEY_CHARS = 128


class SubmissionError(ValueError):
    """A submission the API refuses with 400; the message is safe to show the caller."""


@dataclass(frozen=True)
class Submission:
    message: OutboundMessage
    idempotency_key: str | None


def parse_submission(raw: bytes | str | None, settings: Settings, now: datetime | None = None) -> Submission:
    """Validate a request body and build the queue message; every refusal says what to fix."""
    data = raw.encode() if isinstance(raw, str) else raw
    if data is None or not data.strip():
        raise SubmissionError("the body must be a JSON object with an 'item'")
    if len(data) > settings.submit_max_bytes:
        raise SubmissionError(f"the body is {len(data)} bytes; the limit is {settings.submit_max_bytes}")
    try:
        body = strict_json.loads(data)
    except JsonInputError as exc:
        raise SubmissionError(str(exc)) from None
    if not isinstance(body, dict):
        raise SubmissionError("the body must be a JSON object")
    unknown = sorted(set(body) - ALLOWED_FIELDS)
    if unknown:
        raise SubmissionError(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(ALLOWED_FIELDS))}"
        )
    item = body.get("item")
    if not isinstance(item, dict) or not item:
        raise SubmissionError("'item' must be a non-empty JSON object")
    try:
        strict_json.check_json(body, "body")
    except JsonInputError as exc:
        raise SubmissionError(str(exc).removeprefix("body.")) from None
    group = _optional_text(body, "group")
    key = _optional_text(body, "idempotency_key")
    destination = _destination(body, settings)
    token = _task_token(body, settings)
    message_id = str(uuid.uuid5(_SUBMIT_NAMESPACE, f"{destination}/{key}") if key else uuid.uuid4())
    submitted_at = iso_utc(now or datetime.now(UTC))
    envelope = {
        "version": ENVELOPE_VERSION,
        "message_id": message_id,
        "event_name": "SUBMIT",
        "source": {"submitted_at": submitted_at, "idempotency_key": key},
        "keys": {},
        "item": item,
    }
    message = OutboundMessage(
        message_id=message_id,
        group_id=safe_group_id(f"submit#{group or 'default'}"),
        dedup_id=message_id,
        body=strict_json.dumps(envelope),
        attributes={
            MESSAGE_ID_ATTRIBUTE: message_id,
            DESTINATION_ATTRIBUTE: destination,
            ROUTE_ATTRIBUTE: "submit",
            **({TASK_TOKEN_ATTRIBUTE: token} if token else {}),
            **_item_attribute(item, settings.partition_key),
        },
        sequence_number="",
        destination=destination,
    )
    if message.size_bytes() > settings.max_message_bytes:
        raise SubmissionError(
            f"the message would be {message.size_bytes()} bytes; the queue takes {settings.max_message_bytes}"
        )
    return Submission(message, key)


def _item_attribute(item: dict[str, Any], partition_key: str | None) -> dict[str, str]:
    """A submitted item that holds the table's partition key attribute (a string or a number) is
    found by it, as a stream item is (`chalicelib.item_keys`); it has no sort key to be found by."""
    value = item.get(partition_key) if partition_key else None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return {}
    key = item_keys.of_keys({"partition": value}, "partition")
    return {item_keys.ITEM_KEY_ATTRIBUTE: item_keys.attribute(key)} if key else {}


def _destination(body: dict[str, Any], settings: Settings) -> str:
    """The destination named in the body, or the only one there is."""
    name = _optional_text(body, "destination")
    if name is None and len(settings.destinations) == 1:
        return next(iter(settings.destinations))
    if name is None or name not in settings.destinations:
        raise SubmissionError(f"'destination' must be one of: {', '.join(settings.destinations)}")
    return name


def _task_token(body: dict[str, Any], settings: Settings) -> str | None:
    """A Step Functions task token: its task waits for this message's answer (docs/step-functions.md)."""
    token = body.get("task_token")
    if token is None:
        return None
    if not settings.callback_state_machines:
        raise SubmissionError(
            "'task_token': this stage answers no Step Functions tasks (TRICKLE_CALLBACK_STATE_MACHINES)"
        )
    if (
        not isinstance(token, str)
        or not 1 <= len(token) <= MAX_TOKEN_CHARS
        or not token.isascii()
        or not token.isprintable()
    ):
        raise SubmissionError(
            f"'task_token' must be a Step Functions task token"
            f" (1-{MAX_TOKEN_CHARS} printable ASCII characters)"
        )
    return token


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_KEY_CHARS:
        raise SubmissionError(f"'{name}' must be a non-empty string of at most {MAX_KEY_CHARS} characters")
    return value
