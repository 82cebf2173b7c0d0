"""The stream handler's work: keep the relayed records, queue them in order, dead-letter the rest."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import item_keys
from chalicelib.metrics import RunMetrics
from chalicelib.model import OutboundMessage, SendFailure
from chalicelib.notes import UNROUTED_NOTE_KEY
from chalicelib.records import build_messages, rejection_message
from chalicelib.settings import Settings

if TYPE_CHECKING:  # the ingest function's cold start loads only what its work needs
    from chalicelib.ports import Counts, OutboundQueue, RejectionLedger

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """Raised so Lambda retries the batch; deduplication ids make the retry safe."""

    def __init__(self, failures: Sequence[SendFailure]) -> None:
        self.failures = list(failures)
        first = self.failures[0]
        super().__init__(
            f"{len(self.failures)} message(s) not queued; first {first.message.message_id}: {first.reason}"
        )


@dataclass
class IngestReport:
    records: int
    enqueued: int
    unrouted: int
    dead_lettered: int
    failed_sequence_numbers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Counts, plus `batchItemFailures` for an event source mapping with ReportBatchItemFailures:
        Lambda checkpoints before the lowest failed sequence number and retries from there."""
        counts: dict[str, Any] = asdict(self)
        failed = counts.pop("failed_sequence_numbers")
        return counts | {"batchItemFailures": [{"itemIdentifier": s} for s in failed]}


class Ingestor:
    """Queues each destination's messages on its own queue, in stream order."""

    def __init__(
        self,
        queues: Mapping[str, OutboundQueue],
        dead_letters: Mapping[str, OutboundQueue],
        ledgers: Mapping[str, RejectionLedger],
        settings: Settings,
        counts: Counts,
    ) -> None:
        self._queues = queues
        self._dead_letters = dead_letters
        self._ledgers = ledgers
        self._settings = settings
        self._counts = counts

    def _send(
        self, queues: Mapping[str, OutboundQueue], messages: Sequence[OutboundMessage]
    ) -> list[SendFailure]:
        failures: list[SendFailure] = []
        for name, queue in queues.items():
            failures += queue.send([m for m in messages if m.destination == name])
        return failures

    def handle(self, records: Sequence[Mapping[str, Any]]) -> IngestReport:
        built = build_messages(records, self._settings)
        for rejected in built.rejected:
            log.error(
                "record rejected",
                extra={
                    "message_id": rejected.message_id,
                    "group_id": rejected.group_id,
                    "keys": rejected.keys,
                    "sequence_number": rejected.sequence_number,
                    "reason": rejected.reason,
                    "destination": rejected.destination,
                },
            )
        failures = self._send(self._queues, built.messages)
        rejections = [rejection_message(r, self._settings) for r in built.rejected]
        failures += self._send(self._dead_letters, rejections)
        for failure in failures:
            log.error(
                "message not queued",
                extra={
                    "message_id": failure.message.message_id,
                    "group_id": failure.message.group_id,
                    "keys": failure.message.keys,
                    "reason": failure.reason,
                    "destination": failure.message.destination,
                },
            )
        identifiable = all(f.message.sequence_number.isdigit() for f in failures)
        if failures and not (self._settings.partial_batch_response and identifiable):
            failed = RunMetrics({"table": self._settings.table_name})
            failed.count("IngestFailures", len(failures))
            failed.flush()
            raise IngestError(failures)
        unsent = {f.message.message_id for f in failures}
        queued = [m for m in built.messages if m.message_id not in unsent]
        # Queued messages get no ledger record here: the drain writes one at the first attempt (a
        # record per message would be most of the relay's requests and cost; docs/benchmarks.md).
        now = time.time()
        for rejected in built.rejected:  # listed like every dead letter; a failed write fails the batch
            if rejected.message_id not in unsent:
                key = item_keys.of_keys(rejected.keys, self._settings.partition_key)
                self._ledgers[rejected.destination].record_dead(
                    rejected.message_id,
                    rejected.group_id,
                    rejected.reason,
                    item_keys.index_values(key, now, rejected.message_id),
                )
        report = IngestReport(
            len(records),
            len(queued),
            built.unrouted,
            len(built.rejected) - len(unsent & {r.message_id for r in built.rejected}),
            sorted({f.message.sequence_number for f in failures}, key=int),
        )
        if report.unrouted:
            self._count_unrouted(report)
        log.info("ingest batch queued", extra={"report": report.as_dict()})
        self._emit(report, len(failures))
        return report

    def _count_unrouted(self, report: IngestReport) -> None:
        """One write per batch that has any, for `/status`. A failed write loses this count (the
        metric still has it) rather than fail a batch whose records all went where they should."""
        batch = {"at": time.time(), "records": report.records, "unrouted": report.unrouted}
        try:
            self._counts.add(UNROUTED_NOTE_KEY, {"unrouted": report.unrouted}, batch)
        except (ClientError, BotoCoreError) as exc:
            log.error("unrouted count not saved", extra={"unrouted": report.unrouted, "error": str(exc)})

    def _emit(self, report: IngestReport, failures: int) -> None:
        metrics = RunMetrics({"table": self._settings.table_name})
        metrics.count("IngestRecords", report.records)
        metrics.count("IngestEnqueued", report.enqueued)
        metrics.count("IngestUnrouted", report.unrouted)  # the unrouted-share alarm divides by IngestRecords
        metrics.count("IngestRejected", report.dead_lettered)
        metrics.count("IngestFailures", failures)
        metrics.flush()
