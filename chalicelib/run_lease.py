"""One drain run at a time per destination, with or without reserved concurrency.

Scheduled runs can outlast their interval, and a stage need not reserve concurrency (new accounts
often cannot: AWS keeps 10 executions unreserved). Two overlapping runs would each hold a rate
limiter and together exceed the destination's rate, so a run first takes a lease: a conditional
PutItem in the notes table (`chalicelib.notes`) under `lease#<destination>` that succeeds only if
no lease exists or the one there has expired. It expires after the longest the run can live (the
Lambda's remaining time) plus a margin for clock skew, so a run that dies without releasing blocks
the next ones only until then. A run that finds the lease held does nothing else.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.drain_state import DrainReport
from chalicelib.naming import lease_key
from chalicelib.notes import NOTE_KEY

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

# Lambda clocks agree to well under a second; the margin keeps a lease alive past its holder's end.
LEASE_MARGIN_S = 30.0
# The item itself goes through the notes table's TTL a day after it expired (the condition reads
# `lease_until`, never the lazily applied TTL).
LEASE_RECORD_TTL_S = 86_400
OVERLAP = "overlap"


class RunLease:
    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        destination: str,
        clock: Callable[[], float] = time.time,
        new_holder: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._client = client
        self._table = table
        self._destination = destination
        self._key = {NOTE_KEY: {"S": lease_key(destination)}}
        self._clock = clock
        self._new_holder = new_holder

    def acquire(self, duration_s: float) -> str | None:
        """The holder id of a fresh lease for `duration_s`, or None if another live run holds it."""
        now = self._clock()
        holder = self._new_holder()
        until = now + duration_s
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._key
                | {
                    "holder": {"S": holder},
                    "lease_until": {"N": f"{until:.3f}"},
                    "expires_at": {"N": str(int(until) + LEASE_RECORD_TTL_S)},
                },
                ConditionExpression=f"attribute_not_exists({NOTE_KEY}) OR lease_until < :now",
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            # the item as it was (ReturnValuesOnConditionCheckFailure), which botocore's type leaves out
            held: dict[str, Any] = exc.response.get("Item", {})  # type: ignore[assignment]
            log.info(
                "drain skipped: another run holds the lease",
                extra={
                    "destination": self._destination,
                    "holder": held.get("holder", {}).get("S"),
                    "lease_until": held.get("lease_until", {}).get("N"),
                },
            )
            return None
        return holder

    def release(self, holder: str) -> bool:
        """Give the lease back; False if it had expired and another run took it over meanwhile."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=self._key,
                ConditionExpression="holder = :holder",
                ExpressionAttributeValues={":holder": {"S": holder}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            log.warning(
                "the drain's lease expired before the run ended and was taken over",
                extra={"destination": self._destination, "holder": holder},
            )
            return False
        return True

    def run(
        self, remaining_ms: Callable[[], int], drain: Callable[[Callable[[], int]], DrainReport]
    ) -> DrainReport:
        """`drain(remaining_ms)` under the lease; a report stopped by "overlap" if it is held."""
        holder = self.acquire(remaining_ms() / 1000 + LEASE_MARGIN_S)
        if holder is None:
            return DrainReport(stopped_by=OVERLAP)
        try:
            return drain(remaining_ms)
        finally:
            self.release(holder)
