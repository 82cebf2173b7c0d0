"""Reads a DynamoDB stream as Lambda's event source mapping does and hands Lambda-shaped batches
to the app's `on_dynamodb_record` handler: one shard at a time, checkpointed, retried, never skipped.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger("trickle.local.stream")

Invoke = Callable[[dict[str, Any]], Any]


def _lambda_value(av: Mapping[str, Any]) -> dict[str, Any]:
    """boto3's AttributeValue (bytes for binary) -> Lambda's JSON (base64 strings)."""
    ((kind, value),) = av.items()
    if kind == "B":
        return {"B": base64.b64encode(value).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(v).decode() for v in value]}
    if kind == "M":
        return {"M": {k: _lambda_value(v) for k, v in value.items()}}
    if kind == "L":
        return {"L": [_lambda_value(v) for v in value]}
    return {kind: value}


def _lambda_image(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _lambda_value(av) for name, av in image.items()}


def to_lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """One `GetRecords` record -> the record Lambda puts in a DynamoDB stream event."""
    ddb = dict(record["dynamodb"])
    created = ddb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        ddb["ApproximateCreationDateTime"] = created.timestamp()
    for image in ("Keys", "NewImage", "OldImage"):
        if image in ddb:
            ddb[image] = _lambda_image(ddb[image])
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", stream_arn.split(":")[3]),
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }


@dataclass
class Shard:
    shard_id: str
    parent_id: str | None
    iterator: str | None = None
    checkpoint: str | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    pending_since: float = 0.0
    closed: bool = False
    failures: int = 0


@dataclass
class PollerStats:
    batches: int = 0
    records: int = 0
    failures: int = 0


class StreamPoller:
    """`poll()` once per tick; the runtime calls it in a loop."""

    def __init__(
        self,
        streams: Any,
        stream_arn: str,
        invoke: Invoke,
        batch_size: int = 100,
        window_s: float = 0.0,
        starting_position: str = "TRIM_HORIZON",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._streams = streams
        self.stream_arn = stream_arn
        self._invoke = invoke
        self._batch_size = batch_size
        self._window_s = window_s
        self._start = starting_position
        self._clock = clock
        self.shards: dict[str, Shard] = {}
        self.stats = PollerStats()

    def discover(self) -> None:
        """Follow new shards (a shard splits or rolls over every few hours on AWS)."""
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            description = self._streams.describe_stream(**kwargs)["StreamDescription"]
            for raw in description.get("Shards", []):
                if raw["ShardId"] not in self.shards:
                    self.shards[raw["ShardId"]] = Shard(raw["ShardId"], raw.get("ParentShardId"))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return
            kwargs["ExclusiveStartShardId"] = last

    def poll(self) -> int:
        """Read each ready shard once and invoke the handler where a batch is due.

        Returns how many records were handed over."""
        self.discover()
        handed = 0
        for shard in list(self.shards.values()):
            if shard.closed or not self._parent_done(shard):
                continue
            self._read(shard)
            if shard.pending and self._due(shard):
                handed += self._deliver(shard)
        return handed

    def _parent_done(self, shard: Shard) -> bool:
        """A child shard waits until its parent is fully processed, as Lambda orders them."""
        parent = self.shards.get(shard.parent_id or "")
        return parent is None or (parent.closed and not parent.pending)

    def _read(self, shard: Shard) -> None:
        if len(shard.pending) >= self._batch_size:
            return
        if shard.iterator is None:
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard.shard_id}
            if shard.checkpoint:
                kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.checkpoint)
            else:
                kwargs.update(ShardIteratorType=self._start)
            shard.iterator = self._streams.get_shard_iterator(**kwargs)["ShardIterator"]
        response = self._streams.get_records(ShardIterator=shard.iterator, Limit=self._batch_size)
        records = [to_lambda_record(r, self.stream_arn) for r in response.get("Records", [])]
        if records and not shard.pending:
            shard.pending_since = self._clock()
        shard.pending.extend(records)
        shard.iterator = response.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True

    def _due(self, shard: Shard) -> bool:
        return (
            len(shard.pending) >= self._batch_size
            or shard.closed
            or self._clock() - shard.pending_since >= self._window_s
        )

    def _deliver(self, shard: Shard) -> int:
        batch = shard.pending[: self._batch_size]
        try:
            self._invoke({"Records": batch})
        except Exception as exc:  # the handler failed: Lambda retries the same batch, never skips it
            shard.failures += 1
            self.stats.failures += 1
            log.warning(
                "ingest batch failed; will retry from checkpoint",
                extra={
                    "shard": shard.shard_id,
                    "records": len(batch),
                    "error": str(exc),
                    "failures": shard.failures,
                },
            )
            return 0
        shard.failures = 0
        shard.pending = shard.pending[len(batch) :]
        shard.pending_since = self._clock()
        shard.checkpoint = batch[-1]["dynamodb"]["SequenceNumber"]
        self.stats.batches += 1
        self.stats.records += len(batch)
        return len(batch)
