"""The values the relay passes around: messages on their way in and out of a queue, the ledger's
record of a message, the API's answer, a Step Functions task's. Nothing here does I/O or imports
another Trickle module: the ports (`chalicelib.ports`), the decisions (`chalicelib.policy`), the drain
and the adapters all depend on this module, never the other way round."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

# The message attributes Trickle reads and writes on the destination queues (SQS allows ten).
MESSAGE_ID_ATTRIBUTE = "trickle-message-id"
DESTINATION_ATTRIBUTE = "trickle-destination"
REASON_ATTRIBUTE = "trickle-reason"
ROUTE_ATTRIBUTE = "trickle-route"
# A message with a Step Functions task waiting for it carries its token here, on the destination's
# queue only (`chalicelib.callbacks`).
TASK_TOKEN_ATTRIBUTE = "trickle-task-token"
# SQS's limit on a batch call's entries, and on the messages one receive returns: a receive that
# asks for this many and gets fewer found the queue's other groups in flight, or nothing left.
MAX_BATCH_ENTRIES = 10
MAX_TRANSACTION_ITEMS = 100  # the actions one DynamoDB TransactWriteItems takes

JsonValue = Any


def iso_utc(moment: float | datetime) -> str:
    """A moment (epoch seconds, or a datetime in UTC) as ISO 8601 to the millisecond with a `Z`: the
    one form of every time Trickle writes (envelopes, dead letters, the ledger's dead keys, task
    outputs, archived answers)."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    destination: str = ""

    def size_bytes(self) -> int:
        """Size as SQS counts it: body plus attribute names, types and values."""
        attrs = sum(len(k.encode()) + len("String") + len(v.encode()) for k, v in self.attributes.items())
        return len(self.body.encode()) + attrs


@dataclass(frozen=True)
class SendFailure:
    message: OutboundMessage
    reason: str


@dataclass(frozen=True)
class ReceivedMessage:
    """A message as the drain sees it; `message_id` is Trickle's id, not SQS's."""

    message_id: str
    group_id: str
    receipt_handle: str
    body: str
    receive_count: int
    attributes: Mapping[str, str] = field(default_factory=dict)
    copy_id: str = ""  # SQS's MessageId: differs for each copy (a redriven message is a new copy)
    sent_at_ms: int = 0


class Status(enum.StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    HALTED = "halted"
    SKIP = "skip"  # an operator chose to dead-letter a halted message and let its group move on
    # never sent: the backfilled item changed or went before its delivery (`last_error` says which)
    SUPERSEDED = "superseded"


# A record keeps its last attempts (issue #27), each reason cut short: a record over 1 KB costs
# DynamoDB a second write unit, and a whole timeline of short reasons ("HTTP 503") stays under it.
ATTEMPTS_KEPT = 10
ATTEMPT_REASON_CHARS = 100


@dataclass(frozen=True)
class Attempt:
    """One request for a message, as its record's timeline keeps it: when its answer came, the
    API's status (None: no answer, a timeout or connection error), how long it took, and why."""

    at: float
    status_code: int | None
    duration_ms: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": iso_utc(self.at),
            "status_code": self.status_code,
            "duration_ms": self.duration_ms,
            "reason": self.reason,
        }


def attempt(at: float, status_code: int | None, elapsed_ms: float, reason: str) -> Attempt:
    return Attempt(at, status_code, max(0, round(elapsed_ms)), reason[:ATTEMPT_REASON_CHARS])


@dataclass(frozen=True)
class QueuedTask:
    """A message queued with a Step Functions task token, as its ledger record keeps it until its task
    is answered or gone (`Ledger.queued_tasks`): what a paused drain needs to heartbeat a task no run
    has received the message of. The token is left out of the repr, so no log line carries it."""

    message_id: str
    group_id: str
    token: str = field(repr=False)
    status: Status = Status.QUEUED
    callback: str = ""  # the task was answered or is gone (`LedgerRecord.callback`)


@dataclass(frozen=True)
class LedgerRecord:
    message_id: str
    status: Status
    attempts: int = 0
    group_id: str = ""
    last_status_code: int | None = None
    last_error: str = ""
    first_attempt_at: float | None = None
    last_attempt_at: float | None = None
    updated_at: float | None = None
    dead_copy: str = ""
    dead_key: str = ""
    rejected_at_ingest: bool = False
    callback: str = ""  # the waiting task was answered: "success", "failure" or "rejected" (gone)
    callback_output: str = ""  # a delivered message's task output, kept while it is still owed
    retry_at: float | None = None  # not attempted again before this (a task-token message held short)
    # Where the ledger files the record, not what became of the message (a record the drain computes
    # does not know them, and equals the one written): whose message it is ("" in a record written
    # before the ledger said), `<when its status was written, ISO UTC>#<message id>` (status index).
    destination: str = field(default="", compare=False)
    status_at: str = field(default="", compare=False)
    # The item it was built from, as the index `by-item` files it (`chalicelib.item_keys`), kept
    # from the first write that knew it; "" when none did.
    item_key: str = field(default="", compare=False)
    item_sort: str = field(default="", compare=False)
    timeline: tuple[Attempt, ...] = ()  # its last `ATTEMPTS_KEPT` attempts, oldest first

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "destination": self.destination or None,
            "status": self.status.value,
            "attempts": self.attempts,
            "group_id": self.group_id,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "first_attempt_at": self.first_attempt_at,
            "last_attempt_at": self.last_attempt_at,
            "updated_at": self.updated_at,
            "dead_at": dead_at(self.dead_key),
            "status_since": dead_at(self.status_at),
            "callback": self.callback or None,
            "timeline": [a.as_dict() for a in self.timeline],
        }


def dead_at(key: str) -> str | None:
    """The time of a `<ISO UTC>#<message id>` index key (a dead key, a status key)."""
    return key.split("#", 1)[0] if key else None


@dataclass(frozen=True)
class Settlement:
    """What became of a message, for its ledger record: its new status and why. `status_code` is the
    API's answer (None: no answer, or no attempt); `counted` adds an attempt against the message (a
    decision without one, or the destination's failure, is not counted); `dead_copy` names the copy
    that died (a redriven copy is a new one); `at`: when it happened, if it is written later (a batch
    request's deliveries, written with the round's), else None: when it is written."""

    message_id: str
    group_id: str
    status: Status
    status_code: int | None
    error: str
    counted: bool
    dead_copy: str = ""
    at: float | None = None
    # The item it was built from (`LedgerRecord.item_key`, `item_sort`), filed with the record's first
    # write that has it ("": unknown); and its timeline after this settlement (None: unchanged).
    item_key: str = ""
    item_sort: str = ""
    timeline: tuple[Attempt, ...] | None = None


def logged(record: LedgerRecord | None, made: Attempt) -> tuple[Attempt, ...]:
    """The record's timeline with the attempt just made: the last `ATTEMPTS_KEPT`, oldest first."""
    return ((record.timeline if record else ()) + (made,))[-ATTEMPTS_KEPT:]


class Verdict(enum.Enum):
    """What the ledger says to do with a copy of a message in hand."""

    DELIVER = "deliver"  # never delivered: attempt it now
    DELIVERED = "delivered"  # already delivered: delete without calling the API
    DEAD = "dead"  # a stale copy of a message already dead-lettered: delete it
    REDRIVEN = "redriven"  # a dead-lettered message seen under a new copy id: start over
    HALTED = "halted"  # strict ordering: the group waits for an operator
    SKIP = "skip"  # an operator asked for this message to be dead-lettered
    SUPERSEDED = "superseded"  # settled unsent (its item changed or went since its backfill): delete it


def verdict(record: LedgerRecord | None, copy_id: str) -> Verdict:
    """No lease is needed: SQS hands a FIFO group to one consumer at a time and keeps a received copy
    invisible for longer than a drain can live, so no two drains ever hold the same message."""
    if record is None or record.status in (Status.QUEUED, Status.FAILED):
        return Verdict.DELIVER
    if record.status is Status.DEAD:
        return Verdict.REDRIVEN if record.dead_copy and record.dead_copy != copy_id else Verdict.DEAD
    return {
        Status.DELIVERED: Verdict.DELIVERED,
        Status.HALTED: Verdict.HALTED,
        Status.SKIP: Verdict.SKIP,
        Status.SUPERSEDED: Verdict.SUPERSEDED,
    }[record.status]


def delivered(
    record: LedgerRecord | None,
    message_id: str,
    group_id: str,
    status_code: int | None,
    now: float,
    made: Attempt | None = None,
    item: tuple[str, str] = ("", ""),
) -> LedgerRecord:
    """The record after a 2xx, computed from the one read at the start of the round (written in a
    batch with the rest of the round's deliveries, before their deletes): `made` joins its timeline;
    `item` (key, sort) files it under its item unless it is filed already."""
    item_key, item_sort = (record.item_key, record.item_sort) if record and record.item_key else item
    return LedgerRecord(
        message_id=message_id,
        status=Status.DELIVERED,
        attempts=(record.attempts if record else 0) + 1,
        group_id=group_id,
        last_status_code=status_code,
        first_attempt_at=(record.first_attempt_at if record and record.first_attempt_at is not None else now),
        last_attempt_at=now,
        updated_at=now,
        callback=record.callback if record else "",  # a task already gone stays gone
        item_key=item_key,
        item_sort=item_sort,
        timeline=logged(record, made) if made else (record.timeline if record else ()),
    )


def settled(record: LedgerRecord | None, settlement: Settlement, now: float) -> LedgerRecord:
    """The record after `settlement` is written as `Ledger.settle` writes it (attempts added,
    first attempt kept), computed from the one read at the start of the round: what a transaction
    of a batch's settlements leaves, which is not read back. Not for a dead settlement (its index
    key is the ledger's)."""
    s = settlement
    prior = record or LedgerRecord(s.message_id, s.status)
    attempted = s.counted or s.status_code is not None
    first = prior.first_attempt_at if prior.first_attempt_at is not None else now
    return replace(
        prior,
        status=s.status,
        group_id=s.group_id,
        attempts=prior.attempts + (1 if s.counted else 0),
        last_status_code=s.status_code if s.status_code is not None else prior.last_status_code,
        last_error=s.error[:500],
        first_attempt_at=first if attempted else prior.first_attempt_at,
        last_attempt_at=now if attempted else prior.last_attempt_at,
        updated_at=now,
        dead_copy=s.dead_copy or prior.dead_copy,
        item_key=prior.item_key or s.item_key,
        item_sort=prior.item_sort if prior.item_key else s.item_sort,
        timeline=prior.timeline if s.timeline is None else s.timeline,
    )


@dataclass(frozen=True)
class CredentialsFailure:
    """Why a destination's credentials could not be had (`chalicelib.credentials`): `retryable` (the
    token endpoint or SSM is unavailable now) or refused (bad client credentials, a malformed secret).
    The reason names the parameter or the endpoint, never a secret or a token."""

    retryable: bool
    reason: str


@dataclass(frozen=True)
class Authorization:
    """What a destination's request carries (`chalicelib.credentials`): its auth and secret headers,
    the keys it is signed with, which credentials these are (`generation`: a 401 renews only the
    ones it refused) and the values to redact from any answer's text. Never logged."""

    headers: Mapping[str, str]
    signing_keys: tuple[bytes, ...] = ()
    generation: int = 0
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Authorization(generation={self.generation}, headers=[{', '.join(self.headers)}])"


class UnsentKind(enum.StrEnum):
    """Why a request never left: the message is not to blame for the first two."""

    CREDENTIALS_UNAVAILABLE = "credentials_unavailable"  # retry later, not an attempt
    CREDENTIALS_REFUSED = "credentials_refused"  # stop the destination's run, alarm
    REFUSED = "refused"  # the message cannot be sent as the destination says (its path)


@dataclass(frozen=True)
class Unsent:
    kind: UnsentKind
    reason: str


@dataclass(frozen=True)
class BatchItem:
    """A message as a batch request carries it (issue #25, `bulk.item`): the id the API knows it by,
    the body it was made from, its JSON object with that id in the destination's `batch_id_field`,
    and that object written as strict JSON, once: its size is checked and the request's body
    assembled from that text (`bulk.build`)."""

    id: str
    body: str
    document: dict[str, Any]
    text: str


@dataclass(frozen=True)
class ApiResponse:
    """What the API said, or why it said nothing (`status` None: timeout or connection error, or
    `unsent`: the request never left)."""

    status: int | None
    error: str | None = None
    retry_after: str | None = None
    body_excerpt: str = ""
    elapsed_ms: float = 0.0
    body: str = ""
    unsent: Unsent | None = None
    authorization: int = 0  # the generation of the credentials the request carried (0: none)


class CallbackResult(enum.Enum):
    """How Step Functions took an answer to a waiting task."""

    SENT = "sent"
    REJECTED = "rejected"  # the task no longer waits: counted, never retried
    FAILED = "failed"  # throttled, 5xx, unreachable after retries: answer again later


@dataclass(frozen=True)
class SourceUnread:
    """Why the source table did not answer a drain's read of backfilled items (`chalicelib.ports.
    SourceItems`): their messages wait, unsent, for a later read (issue #26)."""

    reason: str


@dataclass(frozen=True)
class EnrichmentFailure:
    """Why a body could not be enriched now (an enricher's `EnrichmentError`, `chalicelib.enrichers`):
    `retryable` (a throttled or failing lookup) is backed off like a 5xx; otherwise the message is
    poison, like a 4xx."""

    reason: str
    retryable: bool
