"""Redrive: dead letters back to the source queue in group order, by SQS's move task or an ordered
copy, and the filter an operator's request gives it. The entries themselves, what the drain writes
and the copies sent back, are `chalicelib.dead_letter_entries`.
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
from chalicelib.dead_letter_entries import REJECTED_AT_ATTRIBUTE, redrive_copy
from chalicelib.fifo_queue import FifoQueue
from chalicelib.model import ReceivedMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

MAX_FILTER_BYTES = 65_536
MAX_FILTER_ENTRIES = 500
GROUP_ID = re.compile(r"[!-~]{1,128}")  # what SQS accepts as a MessageGroupId
MESSAGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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

    @classmethod
    def described(cls, description: dict[str, Any]) -> RedriveFilter:
        """The filter `from_request` gave with this description (as a redrive job keeps it)."""
        groups, ids = description.get("groups"), description.get("message_ids")
        return cls(set(groups) if groups else None, set(ids) if ids else None)

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
