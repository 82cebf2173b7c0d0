"""The delivery ledger: one DynamoDB record per message id, so attempts are counted per message (not
per receive: messages behind a failing head are received without being tried), and a message already
delivered is never sent again (a drain that died between the 2xx and the delete, an SQS redelivery, a
stream replay after SQS's 5-minute deduplication window). A drain reads a round's records in one
call and writes its deliveries in one call before deleting them; failures are written one by one.
A batch request's (issue #25) items are settled in one transaction, all or none: at once when one
failed, else with the round's deliveries, several requests to a transaction.

Dead records carry `dead_destination` and `dead_key` (`<dead at, ISO UTC>#<message id>`), the keys of
the sparse index `dead-letters`: operators page through a destination's dead letters from there, in
the order they died, without touching the dead-letter queue. Every write that sets a status also
sets `status_key` (`<destination>#<status>`) and `status_at` (`<written at, ISO UTC>#<message id>`),
the keys of the index `by-status` (keys only): a destination's halted groups, and its messages by
status and time window, are listed from there (issue #27). The first write that knows a message's
item (`chalicelib.item_keys`) sets `item_key` and `item_sort`, the keys of the index `by-item` (keys
only), which later writes keep; and each write after an attempt keeps the record's last attempts in
`timeline`, computed by the drain from the record it read, in the write it makes anyway."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib.batch_retry import retry_unprocessed
from chalicelib.model import (
    MAX_TRANSACTION_ITEMS,
    Attempt,
    LedgerRecord,
    QueuedTask,
    Settlement,
    Status,
    iso_utc,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        KeysAndAttributesTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestUnionTypeDef,
    )

DEAD_INDEX = "dead-letters"
DEAD_LETTER_RETENTION_S = 14 * 86_400  # the longest SQS keeps a message
DEAD_PARTITION_KEY = "dead_destination"
DEAD_SORT_KEY = "dead_key"
STATUS_INDEX = "by-status"
STATUS_PARTITION_KEY = "status_key"
STATUS_SORT_KEY = "status_at"
ITEM_INDEX = "by-item"
ITEM_PARTITION_KEY = "item_key"
ITEM_SORT_KEY = "item_sort"
TASK_TOKEN = "task_token"  # a queued message's waiting task (`Ledger.record_queued`); never shown
# index -> (its partition key, its sort key, what it holds of a record)
INDEXES = {
    DEAD_INDEX: (DEAD_PARTITION_KEY, DEAD_SORT_KEY, "ALL"),
    # Keys only: a record's other changes cost the index nothing; a page reads its records back.
    STATUS_INDEX: (STATUS_PARTITION_KEY, STATUS_SORT_KEY, "KEYS_ONLY"),
    ITEM_INDEX: (ITEM_PARTITION_KEY, ITEM_SORT_KEY, "KEYS_ONLY"),
}


def table_definition() -> dict[str, Any]:
    """The ledger's key and its indexes, as both CreateTable and CloudFormation take them."""
    return {
        "KeySchema": [{"AttributeName": "message_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("message_id", *(key for p, s, _ in INDEXES.values() for key in (p, s)))
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": name,
                "KeySchema": [
                    {"AttributeName": partition, "KeyType": "HASH"},
                    {"AttributeName": sort, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": projection},
            }
            for name, (partition, sort, projection) in INDEXES.items()
        ],
    }


def dead_key(now: float, message_id: str) -> str:
    """Sorts by the time a message died; the message id makes it unique."""
    return f"{iso_utc(now)}#{message_id}"


def status_key(destination: str, status: Status) -> str:
    return f"{destination}#{status.value}"


def status_values(destination: str, status: Status, now: float, message_id: str) -> dict[str, Any]:
    """The attributes a write that sets `status` sets with it (none for a record of no known
    destination: it is left out of the status index, not filed under another's)."""
    if not destination:
        return {}
    return {
        "destination": {"S": destination},
        STATUS_PARTITION_KEY: {"S": status_key(destination, status)},
        STATUS_SORT_KEY: {"S": dead_key(now, message_id)},
    }


def _set(values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`values` (attribute -> value) as an update's SET clauses and their expression values."""
    return "".join(f", {name} = :{name}" for name in values), {f":{n}": v for n, v in values.items()}


def record_from_item(item: dict[str, Any]) -> LedgerRecord:
    def number(name: str) -> float | None:
        return float(item[name]["N"]) if name in item else None

    code = number("last_status_code")
    return LedgerRecord(
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
        dead_key=item.get(DEAD_SORT_KEY, {}).get("S", ""),
        rejected_at_ingest=item.get("dead_origin", {}).get("S") == "ingest",
        callback=item.get("callback", {}).get("S", ""),
        callback_output=item.get("callback_output", {}).get("S", ""),
        retry_at=number("retry_at"),
        destination=item.get("destination", {}).get("S", ""),
        status_at=item.get(STATUS_SORT_KEY, {}).get("S", ""),
        item_key=item.get(ITEM_PARTITION_KEY, {}).get("S", ""),
        item_sort=item.get(ITEM_SORT_KEY, {}).get("S", ""),
        timeline=read_timeline(item.get("timeline", {}).get("S", "")),
    )


def timeline_text(timeline: Sequence[Attempt]) -> str:
    """A timeline as the record keeps it: compact JSON, `[[at, status code, ms, reason], ...]`."""
    entries = [[a.at, a.status_code, a.duration_ms, a.reason] for a in timeline]
    return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))


def read_timeline(text: str) -> tuple[Attempt, ...]:
    """The timeline a record keeps; () for none (or for one this code did not write)."""
    try:
        entries = json.loads(text) if text else []
        return tuple(
            Attempt(float(at), None if c is None else int(c), int(ms), str(r)) for at, c, ms, r in entries
        )
    except (ValueError, TypeError):
        return ()


def _item_values(item_key: str, item_sort: str) -> dict[str, Any]:
    return {ITEM_PARTITION_KEY: {"S": item_key}, ITEM_SORT_KEY: {"S": item_sort}} if item_key else {}


def record_item(record: LedgerRecord, expires_at: int, destination: str, now: float) -> dict[str, Any]:
    """A whole record as PutItem takes it, filed in the status index under `destination` at its
    `updated_at` (else `now`)."""
    at = record.updated_at if record.updated_at is not None else now
    item: dict[str, Any] = {
        "message_id": {"S": record.message_id},
        "status": {"S": record.status.value},
        "attempts": {"N": str(record.attempts)},
        "group_id": {"S": record.group_id},
        "expires_at": {"N": str(expires_at)},
        **status_values(destination, record.status, at, record.message_id),
    }
    if record.last_error:
        item["last_error"] = {"S": record.last_error}
    if record.dead_copy:
        item["dead_copy"] = {"S": record.dead_copy}
    if record.callback:
        item["callback"] = {"S": record.callback}
    if record.callback_output:
        item["callback_output"] = {"S": record.callback_output}
    if record.timeline:
        item["timeline"] = {"S": timeline_text(record.timeline)}
    item |= _item_values(record.item_key, record.item_sort)
    if record.last_status_code is not None:
        item["last_status_code"] = {"N": str(record.last_status_code)}
    for name in ("first_attempt_at", "last_attempt_at", "updated_at", "retry_at"):
        value = getattr(record, name)
        if value is not None:
            item[name] = {"N": repr(value)}
    return item


class Ledger:
    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        ttl_s: int,
        *,
        destination: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`destination` is the one whose messages this ledger settles: dead records are indexed under it."""
        self._client = client
        self.table = table
        self._ttl_s = ttl_s
        self._destination = destination
        self._clock = clock
        self._sleep = sleep

    def _key(self, message_id: str) -> dict[str, Any]:
        return {"message_id": {"S": message_id}}

    def _stamp(self, dead: bool = False, now: float | None = None) -> dict[str, Any]:
        """Now (or the write's `now`), and when the record expires: a dead record lives at least as
        long as SQS can keep its dead letter, so the listing never loses one the queue still holds."""
        now = self._clock() if now is None else now
        ttl_s = max(self._ttl_s, DEAD_LETTER_RETENTION_S) if dead else self._ttl_s
        return {":now": {"N": repr(now)}, ":expires": {"N": str(int(now) + ttl_s)}}

    def get(self, message_id: str) -> LedgerRecord | None:
        item = self._client.get_item(
            TableName=self.table, Key=self._key(message_id), ConsistentRead=True
        ).get("Item")
        return record_from_item(item) if item else None

    def record_queued(
        self, message_id: str, group_id: str, item: tuple[str, str] = ("", ""), task_token: str = ""
    ) -> bool:
        """First sight of a message (`item`: its item's index keys, `item_keys.index_values`); an
        existing record (any status) is left alone. `task_token`: the Step Functions task waiting for
        it, kept until the task is answered or gone (`note_callback`, or a delivery's whole record),
        so a paused drain can heartbeat it before any run has received the message (`queued_tasks`);
        never read back into a `LedgerRecord`, so never shown."""
        extra = _item_values(*item) | ({TASK_TOKEN: {"S": task_token}} if task_token else {})
        return self._put_new(message_id, group_id, Status.QUEUED, extra)

    def _put_new(self, message_id: str, group_id: str, status: Status, extra: dict[str, Any]) -> bool:
        """Write a first record; False (and nothing written) if the message has one already."""
        stamp = self._stamp(dead=status is Status.DEAD)
        try:
            self._client.put_item(
                TableName=self.table,
                Item={
                    **self._key(message_id),
                    "status": {"S": status.value},
                    "group_id": {"S": group_id},
                    "attempts": {"N": "0"},
                    "updated_at": stamp[":now"],
                    "expires_at": stamp[":expires"],
                    **status_values(self._destination, status, float(stamp[":now"]["N"]), message_id),
                    **extra,
                },
                ConditionExpression="attribute_not_exists(message_id)",
            )
        except ClientError as exc:
            if _conditional(exc):
                return False
            raise
        return True

    def read(self, message_ids: Collection[str]) -> dict[str, LedgerRecord]:
        """The records of a whole receive round in one consistent BatchGetItem per 100 ids."""
        records = (record_from_item(item) for item in self._get_many(message_ids))
        return {record.message_id: record for record in records}

    def queued_tasks(self, scanned: int) -> list[QueuedTask]:
        """The destination's queued messages with a task token (`record_queued`), newest first,
        among the newest `scanned` of its status index's queued partition (keys only, eventually
        consistent: one queued a moment ago may show on the next call), each record read back for
        what a heartbeat needs (consistent BatchGetItem calls of 100, only those attributes).
        Whether each still waits is the caller's decision (`chalicelib.health.paused_heartbeats`)."""
        listed, _ = self.listed(
            STATUS_INDEX, status_key(self._destination, Status.QUEUED), scanned, newest_first=True
        )
        items = self._get_many(
            [message_id for message_id, _ in listed],
            {
                "ProjectionExpression": "message_id, group_id, #status, callback, #token",
                "ExpressionAttributeNames": {"#status": "status", "#token": TASK_TOKEN},
            },
        )
        order = {message_id: n for n, (message_id, _) in enumerate(listed)}  # BatchGetItem keeps none
        items.sort(key=lambda item: order[item["message_id"]["S"]])
        return [
            QueuedTask(
                item["message_id"]["S"],
                item.get("group_id", {}).get("S", ""),
                item[TASK_TOKEN]["S"],
                Status(item["status"]["S"]),
                item.get("callback", {}).get("S", ""),
            )
            for item in items
            if TASK_TOKEN in item and "status" in item
        ]

    def _get_many(
        self, message_ids: Collection[str], projection: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The items of `message_ids` (those that exist), in consistent BatchGetItem calls of 100;
        `projection`: only those attributes (a ProjectionExpression and its names)."""
        found: list[dict[str, Any]] = []
        ids = sorted(set(message_ids))

        def get(keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
            request: dict[str, KeysAndAttributesTypeDef] = {
                self.table: {"Keys": list(keys), "ConsistentRead": True, **(projection or {})}  # type: ignore[typeddict-item]
            }
            response = self._client.batch_get_item(RequestItems=request)
            found.extend(response.get("Responses", {}).get(self.table, []))
            left = (response.get("UnprocessedKeys") or {}).get(self.table)
            return list(left.get("Keys", [])) if left else []

        for start in range(0, len(ids), _BATCH_GET):
            keys = [self._key(i) for i in ids[start : start + _BATCH_GET]]
            left = retry_unprocessed(get, keys, _BATCH_TRIES, self._sleep)
            if left:
                raise LedgerUnavailableError(f"DynamoDB left {len(left)} ledger reads unprocessed")
        return found

    def write(self, records: Sequence[LedgerRecord]) -> None:
        """Whole records (a round's deliveries) in BatchWriteItem calls of 25. Unconditional, which is
        safe: no other drain holds these messages, and ingest only ever writes absent records."""
        now = self._clock()
        expires = int(now) + self._ttl_s

        def put(requests: Sequence[WriteRequestUnionTypeDef]) -> list[WriteRequestUnionTypeDef]:
            response = self._client.batch_write_item(RequestItems={self.table: list(requests)})
            return list((response.get("UnprocessedItems") or {}).get(self.table, []))

        for start in range(0, len(records), _BATCH_WRITE):
            requests: list[WriteRequestUnionTypeDef] = [
                {"PutRequest": {"Item": record_item(r, expires, self._destination, now)}}
                for r in records[start : start + _BATCH_WRITE]
            ]
            left = retry_unprocessed(put, requests, _BATCH_TRIES, self._sleep)
            if left:
                raise LedgerUnavailableError(f"DynamoDB left {len(left)} ledger writes unprocessed")

    def restart(self, message_id: str) -> LedgerRecord | None:
        """A redriven message: fresh attempts, queued again; a record no longer dead (or gone) is
        returned as it is."""
        stamp = self._stamp()
        indexed, values = _set(
            status_values(self._destination, Status.QUEUED, float(stamp[":now"]["N"]), message_id)
        )
        try:
            response = self._client.update_item(
                TableName=self.table,
                Key=self._key(message_id),
                UpdateExpression=(
                    "SET #status = :queued, attempts = :zero, updated_at = :now,"
                    f" expires_at = :expires{indexed}"
                    f" REMOVE dead_copy, first_attempt_at, retry_at, {DEAD_PARTITION_KEY}, {DEAD_SORT_KEY}"
                ),
                ConditionExpression="#status = :dead",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":queued": {"S": Status.QUEUED.value},
                    ":dead": {"S": Status.DEAD.value},
                    ":zero": {"N": "0"},
                    **stamp,
                    **values,
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _conditional(exc):
                raise
            item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            return record_from_item(item) if item else None
        return record_from_item(response["Attributes"])

    def settle(self, settlement: Settlement) -> LedgerRecord:
        """Record the outcome of an attempt (or a decision without one, `counted=False`)."""
        update, values = self._settlement(settlement)
        response = self._client.update_item(
            TableName=self.table,
            Key=self._key(settlement.message_id),
            UpdateExpression=update,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return record_from_item(response["Attributes"])

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Batch requests' settlements (issue #25), each as `settle` writes it (at its `at`, if it
        has one), in one TransactWriteItems: all or none, at most 100, one per message (the drain
        packs whole requests into it: `bulk.transactions`). Nothing is read back: the drain knows what
        it wrote (`model.settled`). A transaction DynamoDB did not take after botocore's retries (5xx,
        throttled, cancelled by a conflicting write) raises LedgerUnavailableError: none of it was
        written (or all of it, when a 5xx hid a success), so the run ends before its deletes and the
        messages come back to a ledger that counts each attempt once."""
        if not settlements:
            return
        if len(settlements) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{len(settlements)} settlements; one transaction takes {MAX_TRANSACTION_ITEMS}")
        actions: list[TransactWriteItemTypeDef] = []
        now = self._clock()  # one write, one time
        for settlement in settlements:
            update, values = self._settlement(settlement, now if settlement.at is None else settlement.at)
            actions.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": self._key(settlement.message_id),
                        "UpdateExpression": update,
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": values,
                    }
                }
            )
        try:
            # botocore gives the call a ClientRequestToken and keeps it over its retries: a retry
            # of a transaction that was applied is not applied again
            self._client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if not _unavailable(exc):
                raise
            raise LedgerUnavailableError(
                f"DynamoDB did not take a transaction of {len(actions)} ledger writes: {_said(exc)}"
            ) from exc

    def _settlement(self, settlement: Settlement, now: float | None = None) -> tuple[str, dict[str, Any]]:
        """The update expression and values that record a settlement; attempts are ADDed."""
        message_id, status, status_code = settlement.message_id, settlement.status, settlement.status_code
        values: dict[str, Any] = {
            ":status": {"S": status.value},
            ":error": {"S": settlement.error[:500]},
            ":one": {"N": "1" if settlement.counted else "0"},
            ":group": {"S": settlement.group_id},
            **self._stamp(dead=status is Status.DEAD, now=now),
        }
        indexed, index_values = _set(
            status_values(self._destination, status, float(values[":now"]["N"]), message_id)
        )
        values |= index_values
        update = (
            "SET #status = :status, group_id = :group, last_error = :error, updated_at = :now,"
            f" expires_at = :expires{indexed}"
        )
        if (
            settlement.counted or status_code is not None
        ):  # an attempt was made (decisions alone are not attempts)
            update += ", last_attempt_at = :now, first_attempt_at = if_not_exists(first_attempt_at, :now)"
        if status_code is not None:
            values[":code"] = {"N": str(status_code)}
            update += ", last_status_code = :code"
        if settlement.dead_copy:
            values[":copy"] = {"S": settlement.dead_copy}
            update += ", dead_copy = :copy"
        if settlement.item_key:  # filed once, under the first time it was known
            values |= {":item_key": {"S": settlement.item_key}, ":item_sort": {"S": settlement.item_sort}}
            update += (
                f", {ITEM_PARTITION_KEY} = if_not_exists({ITEM_PARTITION_KEY}, :item_key),"
                f" {ITEM_SORT_KEY} = if_not_exists({ITEM_SORT_KEY}, :item_sort)"
            )
        if settlement.timeline is not None:
            values[":timeline"] = {"S": timeline_text(settlement.timeline)}
            update += ", timeline = :timeline"
        if status is Status.DEAD:
            values[":dest"] = {"S": self._destination}
            values[":dead"] = {"S": dead_key(float(values[":now"]["N"]), message_id)}
            update += f", {DEAD_PARTITION_KEY} = :dest, {DEAD_SORT_KEY} = :dead"
        update += " ADD attempts :one"
        return update, values

    def note_callback(self, message_id: str, group_id: str, state: str) -> None:
        """The message's task was answered ("success", "failure") or is gone ("rejected"): it is
        never answered again, whatever copy of the message comes back, and its token (if the ledger
        kept it, `record_queued`) is forgotten. A message never seen
        before (sent by a state machine, its task gone at the first heartbeat) gets a queued record."""
        stamp = self._stamp()
        self._client.update_item(
            TableName=self.table,
            Key=self._key(message_id),
            UpdateExpression=(
                "SET callback = :state, updated_at = :now, #status = if_not_exists(#status, :queued),"
                " group_id = if_not_exists(group_id, :group), attempts = if_not_exists(attempts, :zero),"
                " expires_at = if_not_exists(expires_at, :expires)"
                f" REMOVE callback_output, {TASK_TOKEN}"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":state": {"S": state},
                ":queued": {"S": Status.QUEUED.value},
                ":group": {"S": group_id},
                ":zero": {"N": "0"},
                **stamp,
            },
        )

    def hold_until(self, message_id: str, group_id: str, until: float) -> None:
        """A held message that comes back early (to keep its task alive) is not attempted before `until`."""
        stamp = self._stamp()
        self._client.update_item(
            TableName=self.table,
            Key=self._key(message_id),
            UpdateExpression=(
                "SET retry_at = :until, #status = if_not_exists(#status, :queued),"
                " group_id = :group, attempts = if_not_exists(attempts, :zero),"
                " updated_at = :now, expires_at = :expires"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":until": {"N": repr(until)},
                ":queued": {"S": Status.QUEUED.value},
                ":group": {"S": group_id},
                ":zero": {"N": "0"},
                **stamp,
            },
        )

    def record_dead(
        self, message_id: str, group_id: str, reason: str, item: tuple[str, str] = ("", "")
    ) -> None:
        """A record rejected at ingest (undecodable, oversize): never queued, so it has no record yet;
        this one makes its dead letter listable (and findable by its item, `item`). A record that
        exists already is left alone."""
        extra = {
            **_item_values(*item),
            "last_error": {"S": reason[:500] or "rejected at ingest"},
            "dead_origin": {"S": "ingest"},
            DEAD_PARTITION_KEY: {"S": self._destination},
            DEAD_SORT_KEY: {"S": dead_key(self._clock(), message_id)},
        }
        self._put_new(message_id, group_id, Status.DEAD, extra)

    def dead_page(self, destination: str, limit: int, after: str | None) -> tuple[list[LedgerRecord], bool]:
        """Up to `limit` dead records of `destination` in the order they died, starting after the
        dead key `after`; and whether more follow. Reads the sparse index only (eventually
        consistent: a message dead-lettered a moment ago may show on the next call)."""
        condition = f"{DEAD_PARTITION_KEY} = :dest"
        values: dict[str, Any] = {":dest": {"S": destination}}
        if after is not None:
            condition += f" AND {DEAD_SORT_KEY} > :after"
            values[":after"] = {"S": after}
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": DEAD_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "Limit": limit + 1,
        }
        found: list[LedgerRecord] = []
        while len(found) <= limit:
            response = self._client.query(**request)
            found += [record_from_item(item) for item in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit], len(found) > limit

    def release(
        self, message_id: str, status: Status, reset_attempts: bool, destination: str
    ) -> tuple[bool, LedgerRecord | None]:
        """An operator's decision on a halted message (retry: failed with fresh attempts; skip), made
        only while it is still halted: (True, None) when made, else (False, the record as it is
        now, or None: there is none). `destination`: whose message it is, for the status index."""
        stamp = self._stamp()
        indexed, values = _set(status_values(destination, status, float(stamp[":now"]["N"]), message_id))
        update = f"SET #status = :status, updated_at = :now, expires_at = :expires{indexed}"
        if reset_attempts:
            update += ", attempts = :zero"
            values[":zero"] = {"N": "0"}
        try:
            self._client.update_item(
                TableName=self.table,
                Key=self._key(message_id),
                UpdateExpression=update,
                ConditionExpression="#status = :halted",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":status": {"S": status.value},
                    ":halted": {"S": Status.HALTED.value},
                    **stamp,
                    **values,
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _conditional(exc):
                raise
            item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            return False, record_from_item(item) if item else None
        return True, None

    def listed(
        self,
        index: str,
        partition: str,
        limit: int,
        *,
        low: str | None = None,
        high: str | None = None,
        after: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[tuple[str, str]], bool]:
        """Up to `limit` (message id, index sort key) of an index's `partition` whose sort keys lie
        between `low` and `high` (inclusive; None: open), in order (or the reverse), starting after
        the sort key `after`; and whether more follow. Eventually consistent, like every index."""
        partition_name, sort_name, _ = INDEXES[index]
        if after is not None:
            low, high = (low, after) if newest_first else (after, high)
        if low is not None and high is not None and low > high:
            return [], False
        condition = "#p = :p"
        names = {"#p": partition_name}
        values: dict[str, Any] = {":p": {"S": partition}}
        if low is not None or high is not None:
            names["#s"] = sort_name
            if low is not None and high is not None:  # inclusive: the `after` key is skipped below
                condition += " AND #s BETWEEN :low AND :high"
            else:
                condition += " AND #s >= :low" if low is not None else " AND #s <= :high"
            values |= {f":{n}": {"S": v} for n, v in (("low", low), ("high", high)) if v is not None}
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
            "Limit": limit + 2,
        }
        found: list[tuple[str, str]] = []
        while len(found) <= limit:
            response = self._client.query(**request)
            found += [
                (item["message_id"]["S"], item[sort_name]["S"])
                for item in response.get("Items", [])
                if item[sort_name]["S"] != after
            ]
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit], len(found) > limit


_BATCH_GET = 100
_BATCH_WRITE = 25
_BATCH_TRIES = 6
# What a transaction may still end with after botocore's retries when DynamoDB is busy: throttled,
# or cancelled because another write held one of its items (each action's reason, "None" for those
# that were fine)
_BUSY_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "TransactionInProgressException",
    }
)
_BUSY_REASONS = frozenset({"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


class LedgerUnavailableError(RuntimeError):
    """DynamoDB kept part of a batch unprocessed (throttling), or did not take a transaction: the
    run ends before any delete."""


def _unavailable(exc: ClientError) -> bool:
    """DynamoDB failed or was busy (worth another run), not a write it refuses as wrong."""
    if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
        return True
    code = exc.response.get("Error", {}).get("Code", "")
    if code == "TransactionCanceledException":
        reasons: list[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
        return {r.get("Code", "None") for r in reasons} <= _BUSY_REASONS
    return code in _BUSY_CODES


def _said(exc: ClientError) -> str:
    """The error's status, code and message, on one line and short; not a page of HTML (moto's 500)."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
    message = error.get("Message", "")
    said = " ".join(f"{error.get('Code', '')} {'' if message.lstrip().startswith('<') else message}".split())
    return f"HTTP {status} {said}"[:200].rstrip()


def _conditional(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
