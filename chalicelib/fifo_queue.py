"""SQS FIFO adapter: batching, per-entry retries and typed results over a boto3 client."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.batch_retry import retry_unprocessed
from chalicelib.model import (
    MAX_BATCH_ENTRIES,
    MESSAGE_ID_ATTRIBUTE,
    OutboundMessage,
    ReceivedMessage,
    SendFailure,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 1_048_576


def received(raw: Mapping[str, Any]) -> ReceivedMessage:
    """A message of a ReceiveMessage response, as the drain sees it."""
    attrs = {
        name: value.get("StringValue", "") for name, value in (raw.get("MessageAttributes") or {}).items()
    }
    system = raw.get("Attributes") or {}
    return ReceivedMessage(
        message_id=attrs.get(MESSAGE_ID_ATTRIBUTE) or raw["MessageId"],
        group_id=system.get("MessageGroupId", ""),
        receipt_handle=raw["ReceiptHandle"],
        body=raw["Body"],
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
        attributes=attrs,
        copy_id=raw["MessageId"],
        sent_at_ms=int(system.get("SentTimestamp", "0")),
    )


def chunk_for_batch(messages: Sequence[OutboundMessage]) -> Iterator[list[OutboundMessage]]:
    """Consecutive chunks of at most 10 entries and 1 MiB, keeping the given order."""
    chunk: list[OutboundMessage] = []
    size = 0
    for message in messages:
        message_size = message.size_bytes()
        if chunk and (len(chunk) == MAX_BATCH_ENTRIES or size + message_size > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(message)
        size += message_size
    if chunk:
        yield chunk


class FifoQueue:
    def __init__(
        self,
        client: SQSClient,
        url: str,
        attempts: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self.url = url
        self._attempts = attempts
        self._sleep = sleep

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendFailure]:
        """Send in order; retry failed entries; after a chunk fails for good, send nothing later.

        Stopping keeps a group's later messages from overtaking the failed one when the caller
        retries the whole batch (deduplication then drops what was already sent).
        """
        chunks = list(chunk_for_batch(messages))
        for index, chunk in enumerate(chunks):
            failures = self._send_chunk(chunk)
            if failures:
                unsent = [m for later in chunks[index + 1 :] for m in later]
                return failures + [SendFailure(m, "not sent: an earlier entry failed") for m in unsent]
        return []

    def _send_chunk(self, chunk: list[OutboundMessage]) -> list[SendFailure]:
        """Entries SQS reports failed are sent again (`batch_retry`); a call that failed as a whole
        was retried by botocore already, so its entries fail at once."""
        entries = {str(i): m for i, m in enumerate(chunk)}
        reasons: dict[str, str] = {}
        refused: list[str] = []

        def send(ids: Sequence[str]) -> list[str]:
            try:
                response = self._client.send_message_batch(
                    QueueUrl=self.url, Entries=[_entry(i, entries[i]) for i in ids]
                )
            except (ClientError, BotoCoreError) as exc:
                reasons.update({i: f"SendMessageBatch failed: {exc}" for i in ids})
                refused.extend(ids)
                return []
            failed = {
                f["Id"]: f"{f.get('Code', 'Error')}: {f.get('Message', '')}".strip()
                for f in response.get("Failed", [])
            }
            _warn_if_overtaken({i: entries[i] for i in ids}, failed)
            reasons.update(failed)
            if failed:
                log.warning("queue entries failed", extra={"queue": self.url, "entries": len(failed)})
            return [i for i in ids if i in failed]

        left = [*retry_unprocessed(send, list(entries), self._attempts, self._sleep), *refused]
        return [SendFailure(entries[i], reasons.get(i, "unknown failure")) for i in sorted(left, key=int)]

    def receive(self, max_messages: int, visibility_timeout_s: int, wait_s: int = 0) -> list[ReceivedMessage]:
        response = self._client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(MAX_BATCH_ENTRIES, max_messages)),
            VisibilityTimeout=visibility_timeout_s,
            WaitTimeSeconds=wait_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return [received(m) for m in response.get("Messages", [])]

    def counts(self) -> tuple[int, int]:
        """(waiting, in flight), SQS's approximate counts."""
        attributes = self._client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def depth(self) -> int:
        return sum(self.counts())

    def delete(self, messages: Sequence[ReceivedMessage]) -> list[ReceivedMessage]:
        """Delete in batches of 10; return the messages SQS did not delete."""
        return self._batched("delete_message_batch", [(m, {}) for m in messages])

    def change_visibility(self, changes: Sequence[tuple[ReceivedMessage, int]]) -> list[ReceivedMessage]:
        """Set each message's visibility timeout; return the ones SQS refused."""
        return self._batched(
            "change_message_visibility_batch",
            [(m, {"VisibilityTimeout": seconds}) for m, seconds in changes],
        )

    def _batched(
        self, operation: str, items: list[tuple[ReceivedMessage, dict[str, Any]]]
    ) -> list[ReceivedMessage]:
        failed: list[ReceivedMessage] = []
        for start in range(0, len(items), MAX_BATCH_ENTRIES):
            part = items[start : start + MAX_BATCH_ENTRIES]
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, **extra}
                for i, (m, extra) in enumerate(part)
            ]
            try:
                response = getattr(self._client, operation)(QueueUrl=self.url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                log.error("queue batch call failed", extra={"operation": operation, "error": str(exc)})
                failed.extend(m for m, _ in part)
                continue
            for failure in response.get("Failed", []):
                message = part[int(failure["Id"])][0]
                log.warning(
                    "queue batch entry failed",
                    extra={
                        "operation": operation,
                        "message_id": message.message_id,
                        "group_id": message.group_id,
                        "error": failure.get("Code"),
                    },
                )
                failed.append(message)
        return failed


def _warn_if_overtaken(sent: Mapping[str, OutboundMessage], failed: Mapping[str, str]) -> None:
    """A per-entry failure lets the same group's later entries in that call get ahead of it; SQS
    cannot take them back, so say so (whole-call errors, the common case, keep order)."""
    ids = list(sent)
    for position, entry_id in enumerate(ids):
        if entry_id not in failed:
            continue
        group = sent[entry_id].group_id
        overtaken_by = [i for i in ids[position + 1 :] if i not in failed and sent[i].group_id == group]
        if overtaken_by:
            log.warning(
                "group order at risk: later entries were accepted before a failed one",
                extra={
                    "message_id": sent[entry_id].message_id,
                    "group_id": group,
                    "overtaken_by": [sent[i].message_id for i in overtaken_by],
                },
            )


def _entry(entry_id: str, message: OutboundMessage) -> SendMessageBatchRequestEntryTypeDef:
    return {
        "Id": entry_id,
        "MessageBody": message.body,
        "MessageGroupId": message.group_id,
        "MessageDeduplicationId": message.dedup_id,
        "MessageAttributes": {
            k: {"DataType": "String", "StringValue": v} for k, v in message.attributes.items()
        },
    }
