"""A dead letter's entry: the message as it was, plus why it died; and its copy back to the source
queue when it is redriven. Pure: the drain writes the entries (`chalicelib.drain_effects`), the
redrive (`chalicelib.dead_letters`) reads them and sends the copies.

SQS allows ten message attributes; a dead-lettered message uses all ten: its three relay
attributes and seven describing the failure. A message the API knows by another id (a replay with
the same keys, `freshness.API_ID_ATTRIBUTE`) keeps that id, in both the entry and the redriven copy
(sent under a new id, the API would apply it again), in place of its first attempt's time, which
its ledger record keeps. The task token (`trickle-task-token`) is not among
them: it stays on the source queue's copy, whose task is answered when the message dies (or, if
Step Functions could not take the answer, when that copy comes back); a redriven copy has no
waiting task (it was failed) and is delivered without a callback.
"""

from __future__ import annotations

from chalicelib.freshness import API_ID_ATTRIBUTE
from chalicelib.model import (
    DESTINATION_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    REASON_ATTRIBUTE,
    ROUTE_ATTRIBUTE,
    LedgerRecord,
    OutboundMessage,
    ReceivedMessage,
    iso_utc,
)
from chalicelib.strict_json import sqs_text

RELAY_ATTRIBUTES = (MESSAGE_ID_ATTRIBUTE, DESTINATION_ATTRIBUTE, ROUTE_ATTRIBUTE, API_ID_ATTRIBUTE)
STATUS_ATTRIBUTE = "trickle-status-code"
EXCERPT_ATTRIBUTE = "trickle-response-excerpt"
ATTEMPTS_ATTRIBUTE = "trickle-attempts"
FIRST_ATTEMPT_ATTRIBUTE = "trickle-first-attempt-at"
LAST_ATTEMPT_ATTRIBUTE = "trickle-last-attempt-at"
REDRIVES_ATTRIBUTE = "trickle-redrives"
REJECTED_AT_ATTRIBUTE = "trickle-rejected-at"


def _sqs_text(value: str, limit: int) -> str:
    return sqs_text(value)[:limit]


def dead_letter(
    message: ReceivedMessage, reason: str, excerpt: str, record: LedgerRecord | None
) -> OutboundMessage:
    """The message as it was, plus why it died; deduplicated per copy so a retried send is safe."""
    attributes = _relay_attributes(message) | {
        REASON_ATTRIBUTE: _sqs_text(reason, 1024) or "unknown",
        ATTEMPTS_ATTRIBUTE: str(record.attempts if record else 0),
        REDRIVES_ATTRIBUTE: message.attributes.get(REDRIVES_ATTRIBUTE, "0"),
    }
    # Ten at most: the API's id, when the message has one, in place of the first attempt's time.
    first = record.first_attempt_at if record and API_ID_ATTRIBUTE not in attributes else None
    last = record.last_attempt_at if record else None
    optional = {
        STATUS_ATTRIBUTE: str(record.last_status_code) if record and record.last_status_code else "",
        EXCERPT_ATTRIBUTE: _sqs_text(excerpt, 256),
        FIRST_ATTEMPT_ATTRIBUTE: iso_utc(first) if first is not None else "",
        LAST_ATTEMPT_ATTRIBUTE: iso_utc(last) if last is not None else "",
    }
    attributes |= {name: value for name, value in optional.items() if value}
    return _resend(message, f"dead-{message.copy_id}", attributes)


def redrive_copy(message: ReceivedMessage) -> OutboundMessage:
    """Back to the source queue: same body and group, failure attributes dropped, a new
    deduplication id per redrive so SQS does not drop it as a repeat of the original."""
    generation = int(message.attributes.get(REDRIVES_ATTRIBUTE, "0") or 0) + 1
    attributes = _relay_attributes(message) | {REDRIVES_ATTRIBUTE: str(generation)}
    return _resend(message, f"{message.message_id}-r{generation}", attributes)


def _relay_attributes(message: ReceivedMessage) -> dict[str, str]:
    """The relay's attributes, with the message id always set: a message a state machine sent has
    none (its id is the SQS MessageId), and its copies must keep that id. Never the task token."""
    relayed = {name: message.attributes[name] for name in RELAY_ATTRIBUTES if message.attributes.get(name)}
    return relayed | {MESSAGE_ID_ATTRIBUTE: message.message_id}


def _resend(message: ReceivedMessage, dedup_id: str, attributes: dict[str, str]) -> OutboundMessage:
    """The same body in the same group, under a new deduplication id and attributes."""
    return OutboundMessage(
        message_id=message.message_id,
        group_id=message.group_id,
        dedup_id=dedup_id,
        body=message.body,
        attributes=attributes,
        sequence_number="",
    )
