"""Reads a queue as Lambda's SQS event source mapping does and hands Lambda-shaped batches to an
`on_sqs_message` handler: a batch deleted when the handler returns, left in the queue when it raises
(it comes back after the queue's visibility timeout, its receive count one higher, and the queue's
redrive policy dead-letters it in the end). A delayed message (DelaySeconds) is simply not received
until its delay is over, as on AWS."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from chalice.app import SQSEventConfig

log = logging.getLogger("trickle.local.sqs")

Invoke = Callable[[dict[str, Any]], Any]
SQS_BATCH_MAX = 10  # ReceiveMessage and DeleteMessageBatch take at most 10


def queue_name(source: SQSEventConfig) -> str:
    """The queue a handler's decorator names, by name or by ARN (`arn:...:sqs:REGION:ACCOUNT:NAME`)."""
    if source.queue_arn:
        return source.queue_arn.rsplit(":", 1)[-1]
    if not source.queue:
        raise ValueError(f"function {source.name!r} names no queue")
    return source.queue


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """boto3's MessageAttributeValue (bytes for binary) -> Lambda's record form (base64 strings)."""
    out: dict[str, Any] = {"dataType": value["DataType"], "stringListValues": [], "binaryListValues": []}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return out


def to_lambda_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """One received message -> the record Lambda puts in an SQS event."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class SqsPoller:
    """`receive()` a batch, then `handle()` it (the runtime runs several batches at once, up to the
    mapping's maximum concurrency)."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        invoke: Invoke,
        batch_size: int = 10,
        window_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self._invoke = invoke
        self._batch_size = batch_size
        self._window_s = window_s
        self._clock = clock
        self.handled = 0  # messages whose batch the handler took (and that were deleted)
        self.failed = 0  # batches the handler raised on (left in the queue)

    def receive(self) -> list[dict[str, Any]]:
        """Up to `batch_size` messages: what is visible now, then, with a batching window, what
        arrives within the window after the first one."""
        batch: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(batch) < self._batch_size:
            wanted = min(SQS_BATCH_MAX, self._batch_size - len(batch))
            got = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=wanted,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=1 if batch else 0,
            ).get("Messages", [])
            if got and deadline is None:
                deadline = self._clock() + self._window_s
            batch += got
            if len(got) < wanted and (deadline is None or self._clock() >= deadline):
                break
        return batch

    def handle(self, batch: list[dict[str, Any]]) -> bool:
        """Invoke the handler with the batch; delete it if the handler returned. False: it raised,
        and the batch waits in the queue for its visibility timeout, as Lambda leaves it."""
        try:
            self._invoke({"Records": [to_lambda_record(m, self.queue_arn) for m in batch]})
        except Exception as exc:
            self.failed += 1
            log.warning(
                "sqs batch failed; it comes back after the queue's visibility timeout",
                extra={"queue": self.queue_arn, "messages": len(batch), "error": str(exc)},
            )
            return False
        for start in range(0, len(batch), SQS_BATCH_MAX):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(batch[start : start + SQS_BATCH_MAX])
            ]
            failed = self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries).get(
                "Failed", []
            )
            if failed:  # e.g. the handler outlived the visibility timeout: the message comes back
                log.warning("sqs delete failed", extra={"queue": self.queue_arn, "failed": failed})
        self.handled += len(batch)
        return True
