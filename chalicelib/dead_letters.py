"""Dead-letter entries that say why, and redrive back to the source queue in group order.

SQS allows ten message attributes; a dead-lettered message uses all ten: its three relay
attributes and seven describing the failure. The task token (`trickle-task-token`) is not among
them: it stays on the source queue's copy, whose task is answered when the message dies (or, if
Step Functions could not take the answer, when that copy comes back); a redriven copy has no
waiting task (it was failed) and is delivered without a callback.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Container
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib import strict_json
from chalicelib.fifo_queue import FifoQueue
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

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

RELAY_ATTRIBUTES = (MESSAGE_ID_ATTRIBUTE, DESTINATION_ATTRIBUTE, ROUTE_ATTRIBUTE)
STATUS_ATTRIBUTE = "trickle-status-code"
EXCERPT_ATTRIBUTE = "trickle-response-excerpt"
ATTEMPTS_ATTRIBUTE = "trickle-attempts"
FIRST_ATTEMPT_ATTRIBUTE = "trickle-first-attempt-at"
LAST_ATTEMPT_ATTRIBUTE = "trickle-last-attempt-at"
REDRIVES_ATTRIBUTE = "trickle-redrives"
REJECTED_AT_ATTRIBUTE = "trickle-rejected-at"
MAX_FILTER_BYTES = 65_536
MAX_FILTER_ENTRIES = 500
GROUP_ID = re.compile(r"[!-~]{1,128}")  # what SQS accepts as a MessageGroupId
MESSAGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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
    first = record.first_attempt_at if record else None
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


@dataclass
class RedriveReport:
    method: str = "copy"
    moved: int = 0
    skipped_not_redrivable: int = 0
    skipped_by_filter: int = 0
    failed: int = 0
    interrupted: bool = False
    groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RedriveFilter:
    groups: Container[str] | None = None
    message_ids: Container[str] | None = None

    @property
    def everything(self) -> bool:
        return self.groups is None and self.message_ids is None

    @classmethod
    def from_request(cls, raw: bytes | str | None) -> tuple[RedriveFilter, dict[str, Any]]:
        """`{}` (everything), `{"groups": [...]}` or `{"message_ids": [...]}`; errors say what is wrong.
        Bounded, so the job note that keeps the filter always fits a DynamoDB item."""
        data = (raw.encode() if isinstance(raw, str) else raw) or b"{}"
        if len(data) > MAX_FILTER_BYTES:
            raise ValueError(f"the body is {len(data)} bytes; the limit is {MAX_FILTER_BYTES}")
        try:
            body = strict_json.loads(data)
        except strict_json.JsonInputError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(body, dict) or set(body) - {"groups", "message_ids"}:
            raise ValueError("the body may hold only 'groups' and 'message_ids', each a list of strings")
        for name, valid, what in (
            ("groups", GROUP_ID.fullmatch, "a message group id (1-128 printable ASCII characters)"),
            ("message_ids", MESSAGE_ID.fullmatch, "a message id (a lowercase UUID)"),
        ):
            value = body.get(name)
            if value is None:
                continue
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_FILTER_ENTRIES:
                raise ValueError(f"'{name}' must be a list of 1 to {MAX_FILTER_ENTRIES} strings")
            for index, entry in enumerate(value):
                if not isinstance(entry, str) or not valid(entry):
                    shown = (
                        json.dumps(entry, default=str)[:60]
                        if isinstance(entry, str)
                        else type(entry).__name__
                    )
                    raise ValueError(f"'{name}'[{index}] ({shown}) is not {what}")
        groups, ids = body.get("groups"), body.get("message_ids")
        return cls(set(groups) if groups else None, set(ids) if ids else None), {
            "groups": sorted(set(groups)) if groups else None,
            "message_ids": sorted(set(ids)) if ids else None,
        }

    def wants(self, message: ReceivedMessage) -> bool:
        if self.groups is not None and message.group_id not in self.groups:
            return False
        return self.message_ids is None or message.message_id in self.message_ids


class Redriver:
    """Moves dead letters back: `StartMessageMoveTask` where the endpoint has it, else an ordered copy
    that deletes from the dead-letter queue only after the send succeeded. Interrupted midway, the
    copy loses nothing (the original stays until its copy is queued) and duplicates nothing that
    reaches the API (the ledger knows a redriven message that was already delivered)."""

    def __init__(
        self,
        sqs: SQSClient,
        dead_letters: FifoQueue,
        source: FifoQueue,
        visibility_s: int = 60,
        progress: Callable[[RedriveReport], None] | None = None,
    ) -> None:
        self._sqs = sqs
        self._dead_letters = dead_letters
        self._source = source
        self._visibility_s = visibility_s
        self._progress = progress

    def redrive(
        self,
        wanted: RedriveFilter | None = None,
        use_move_task: bool = True,
        stop: Callable[[], bool] = lambda: False,
    ) -> RedriveReport:
        """`stop` ends an ordered copy early (`interrupted`); running it again continues."""
        wanted = wanted or RedriveFilter()
        if use_move_task and wanted.everything:
            report = self._move_task()
            if report is not None:
                return report
        return self._copy(wanted, stop)

    def _arn(self, url: str) -> str:
        attributes = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        return str(attributes["QueueArn"])

    def _move_task(self) -> RedriveReport | None:
        try:
            self._sqs.start_message_move_task(
                SourceArn=self._arn(self._dead_letters.url), DestinationArn=self._arn(self._source.url)
            )
        except ClientError as exc:
            log.debug("StartMessageMoveTask unavailable; copying in order", extra={"error": str(exc)})
            return None
        return RedriveReport(method="move_task")

    def _copy(self, wanted: RedriveFilter, stop: Callable[[], bool]) -> RedriveReport:
        """Messages left in place stay hidden while the copy runs, so they cannot crowd out the
        rest; when only they come back, they are released once to reach what their groups hid."""
        report = RedriveReport()
        seen: set[str] = set()
        held: list[ReceivedMessage] = []
        released_without_progress = False
        while True:
            if stop():
                self._dead_letters.change_visibility([(m, 0) for m in held])
                report.interrupted = True
                return report
            received = self._dead_letters.receive(10, self._visibility_s)
            fresh = [m for m in received if m.copy_id not in seen]
            held += [m for m in received if m.copy_id in seen]
            if not fresh:
                if not held or released_without_progress:
                    self._dead_letters.change_visibility([(m, 0) for m in held])
                    return report
                self._dead_letters.change_visibility([(m, 0) for m in held])
                held, released_without_progress = [], True
                continue
            released_without_progress = False
            seen.update(m.copy_id for m in fresh)
            moved, keep = self._copy_batch(fresh, wanted, report)
            self._dead_letters.delete(moved)
            held += keep
            if self._progress:
                self._progress(report)

    def _copy_batch(
        self, batch: list[ReceivedMessage], wanted: RedriveFilter, report: RedriveReport
    ) -> tuple[list[ReceivedMessage], list[ReceivedMessage]]:
        moved: list[ReceivedMessage] = []
        keep: list[ReceivedMessage] = []
        stopped: set[str] = set()
        for message in batch:
            if message.group_id in stopped:
                keep.append(message)
            elif message.attributes.get(REJECTED_AT_ATTRIBUTE):
                report.skipped_not_redrivable += 1  # a stub: the record never made it to the queue
                keep.append(message)
            elif not wanted.wants(message):
                report.skipped_by_filter += 1
                keep.append(message)
            elif self._source.send([redrive_copy(message)]):
                report.failed += 1
                stopped.add(message.group_id)  # nothing later of this group may overtake it
                keep.append(message)
            else:
                report.moved += 1
                moved.append(message)
                if message.group_id not in report.groups:
                    report.groups.append(message.group_id)
        return moved, keep
