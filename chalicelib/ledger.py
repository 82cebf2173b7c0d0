"""The delivery ledger: one DynamoDB record per message id, written conditionally so two drains
never both deliver a message, and a message already delivered is never sent again (a drain that
died between the 2xx and the delete, an SQS redelivery, a stream replay after SQS's 5-minute
deduplication window)."""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


class Status(enum.StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"
    HALTED = "halted"
    SKIP = "skip"  # an operator chose to dead-letter a halted message and let its group move on


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

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LedgerRecord:
        def number(name: str) -> float | None:
            return float(item[name]["N"]) if name in item else None

        code = number("last_status_code")
        return cls(
            message_id=item["message_id"]["S"],
            status=Status(item["status"]["S"]),
            attempts=int(item.get("attempts", {}).get("N", "0")),
            group_id=item.get("group_id", {}).get("S", ""),
            last_status_code=int(code) if code is not None else None,
            last_error=item.get("last_error", {}).get("S", ""),
            first_attempt_at=number("first_attempt_at"),
            last_attempt_at=number("last_attempt_at"),
            updated_at=number("updated_at"),
            dead_copy=item.get("dead_copy", {}).get("S", ""),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "group_id": self.group_id,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "first_attempt_at": self.first_attempt_at,
            "last_attempt_at": self.last_attempt_at,
            "updated_at": self.updated_at,
        }


class ClaimKind(enum.Enum):
    CLAIMED = "claimed"  # ours to deliver now
    DELIVERED = "delivered"  # already delivered: delete without calling the API
    DEAD = "dead"  # a stale copy of a message already dead-lettered: delete it
    HALTED = "halted"  # strict ordering: the group waits for an operator
    BUSY = "busy"  # another drain holds a live lease
    SKIP = "skip"  # an operator asked for this message to be dead-lettered


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    record: LedgerRecord | None

    @property
    def attempts(self) -> int:
        return self.record.attempts if self.record else 0


_CLAIMABLE = (
    "attribute_not_exists(message_id) OR #status IN (:queued, :failed)"
    " OR (#status = :delivering AND lease_until < :now)"
)


class Ledger:
    def __init__(self, client: Any, table: str, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self.table = table
        self._ttl_s = ttl_s
        self._clock = clock

    def _key(self, message_id: str) -> dict[str, Any]:
        return {"message_id": {"S": message_id}}

    def _stamp(self) -> dict[str, Any]:
        now = self._clock()
        return {":now": {"N": repr(now)}, ":expires": {"N": str(int(now) + self._ttl_s)}}

    def get(self, message_id: str) -> LedgerRecord | None:
        item = self._client.get_item(
            TableName=self.table, Key=self._key(message_id), ConsistentRead=True
        ).get("Item")
        return LedgerRecord.from_item(item) if item else None

    def record_queued(self, message_id: str, group_id: str) -> bool:
        """First sight of a message; an existing record (any status) is left alone."""
        try:
            self._client.put_item(
                TableName=self.table,
                Item={
                    **self._key(message_id),
                    "status": {"S": Status.QUEUED.value},
                    "group_id": {"S": group_id},
                    "attempts": {"N": "0"},
                    "updated_at": self._stamp()[":now"],
                    "expires_at": self._stamp()[":expires"],
                },
                ConditionExpression="attribute_not_exists(message_id)",
            )
        except ClientError as exc:
            if _conditional(exc):
                return False
            raise
        return True

    def claim(self, message_id: str, group_id: str, owner: str, lease_s: int, copy_id: str) -> Claim:
        """Take the message for one delivery attempt, or say why not.

        `copy_id` is the SQS message id of the copy in hand: a dead-lettered message seen again
        under a new copy id was redriven, and starts over with fresh attempts.
        """
        stamp = self._stamp()
        values = {
            ":queued": {"S": Status.QUEUED.value},
            ":failed": {"S": Status.FAILED.value},
            ":delivering": {"S": Status.DELIVERING.value},
            ":owner": {"S": owner},
            ":lease": {"N": repr(self._clock() + lease_s)},
            ":group": {"S": group_id},
            ":zero": {"N": "0"},
            **stamp,
        }
        update = (
            "SET #status = :delivering, #owner = :owner, lease_until = :lease, group_id = :group,"
            " updated_at = :now, expires_at = :expires, attempts = if_not_exists(attempts, :zero)"
        )
        names = {"#status": "status", "#owner": "owner"}
        try:
            response = self._client.update_item(
                TableName=self.table,
                Key=self._key(message_id),
                UpdateExpression=update,
                ConditionExpression=_CLAIMABLE,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
            return Claim(ClaimKind.CLAIMED, LedgerRecord.from_item(response["Attributes"]))
        except ClientError as exc:
            if not _conditional(exc):
                raise
        current = self.get(message_id)
        if current is None:  # expired between the two calls: claim afresh
            return self.claim(message_id, group_id, owner, lease_s, copy_id)
        if current.status is Status.DEAD and current.dead_copy and current.dead_copy != copy_id:
            self._restart(message_id)
            return self.claim(message_id, group_id, owner, lease_s, copy_id)
        kinds = {
            Status.DELIVERED: ClaimKind.DELIVERED,
            Status.DEAD: ClaimKind.DEAD,
            Status.HALTED: ClaimKind.HALTED,
            Status.DELIVERING: ClaimKind.BUSY,
            Status.SKIP: ClaimKind.SKIP,
        }
        return Claim(kinds.get(current.status, ClaimKind.BUSY), current)

    def _restart(self, message_id: str) -> None:
        """A redriven message: fresh attempts, queued again (unless another drain already did it)."""
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key(message_id),
                UpdateExpression=(
                    "SET #status = :queued, attempts = :zero, updated_at = :now, expires_at = :expires"
                    " REMOVE dead_copy, first_attempt_at"
                ),
                ConditionExpression="#status = :dead",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":queued": {"S": Status.QUEUED.value},
                    ":dead": {"S": Status.DEAD.value},
                    ":zero": {"N": "0"},
                    **self._stamp(),
                },
            )
        except ClientError as exc:
            if not _conditional(exc):
                raise

    def settle(
        self,
        message_id: str,
        status: Status,
        status_code: int | None,
        error: str,
        counted: bool,
        dead_copy: str = "",
    ) -> LedgerRecord:
        """Record the outcome of an attempt (or a decision without one, `counted=False`)."""
        values: dict[str, Any] = {
            ":status": {"S": status.value},
            ":error": {"S": error[:500]},
            ":one": {"N": "1" if counted else "0"},
            **self._stamp(),
        }
        update = "SET #status = :status, last_error = :error, updated_at = :now, expires_at = :expires"
        if counted or status_code is not None:  # an attempt was made (decisions alone are not attempts)
            update += ", last_attempt_at = :now, first_attempt_at = if_not_exists(first_attempt_at, :now)"
        if status_code is not None:
            values[":code"] = {"N": str(status_code)}
            update += ", last_status_code = :code"
        if dead_copy:
            values[":copy"] = {"S": dead_copy}
            update += ", dead_copy = :copy"
        update += " ADD attempts :one REMOVE #owner, lease_until"
        response = self._client.update_item(
            TableName=self.table,
            Key=self._key(message_id),
            UpdateExpression=update,
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return LedgerRecord.from_item(response["Attributes"])

    def set_status(self, message_id: str, status: Status, reset_attempts: bool = False) -> None:
        """An operator's decision (retry a halted message, skip it)."""
        update = "SET #status = :status, updated_at = :now, expires_at = :expires"
        values: dict[str, Any] = {":status": {"S": status.value}, **self._stamp()}
        if reset_attempts:
            update += ", attempts = :zero"
            values[":zero"] = {"N": "0"}
        self._client.update_item(
            TableName=self.table,
            Key=self._key(message_id),
            UpdateExpression=update,
            ConditionExpression="attribute_exists(message_id)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
        )


class Notes:
    """Small JSON documents beside the message records (the last run per destination, redrive jobs),
    kept in the ledger table under keys that cannot be message ids."""

    def __init__(self, client: Any, table: str, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._ttl_s = ttl_s
        self._clock = clock

    def save(self, key: str, document: dict[str, Any]) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                "message_id": {"S": key},
                "status": {"S": "note"},
                "doc": {"S": json.dumps(document, default=str)},
                "expires_at": {"N": str(int(self._clock()) + self._ttl_s)},
            },
        )

    def load(self, key: str) -> dict[str, Any] | None:
        item = self._client.get_item(
            TableName=self._table, Key={"message_id": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return dict(json.loads(item["doc"]["S"])) if item and "doc" in item else None


def _conditional(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
