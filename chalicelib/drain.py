"""The scheduled drain: receive in batches, deliver each group in order, delete only after a 2xx."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from chalicelib.api_client import ApiClient
from chalicelib.fifo_queue import FifoQueue, ReceivedMessage
from chalicelib.policy import HEAD_HOLD_S, Outcome, classify, release_plan
from chalicelib.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DrainReport:
    received: int = 0
    delivered: int = 0
    retried: int = 0
    released: int = 0
    delete_failures: int = 0
    stopped_by: str = ""
    blocked_groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def group_in_order(batch: list[ReceivedMessage]) -> dict[str, list[ReceivedMessage]]:
    """Split a receive batch by group; SQS returns each group's messages oldest first."""
    groups: dict[str, list[ReceivedMessage]] = {}
    for message in batch:
        groups.setdefault(message.group_id, []).append(message)
    return groups


class Drainer:
    def __init__(self, queue: FifoQueue, api: ApiClient, settings: Settings) -> None:
        self._queue = queue
        self._api = api
        self._settings = settings

    def run(self, remaining_ms: Callable[[], int]) -> DrainReport:
        """Drain until the queue is empty, the budget is spent or time runs short."""
        report = DrainReport()
        blocked: set[str] = set()
        margin = self._settings.drain_safety_margin_ms
        while True:
            budget_left = self._settings.drain_budget - report.received
            if budget_left <= 0:
                report.stopped_by = "budget"
                break
            if remaining_ms() < margin:
                report.stopped_by = "time"
                break
            batch = self._queue.receive(budget_left, self._settings.visibility_timeout_s)
            if not batch:
                report.stopped_by = "empty"
                break
            report.received += len(batch)
            out_of_time = self._process(batch, blocked, report, lambda: remaining_ms() < margin)
            if out_of_time:
                report.stopped_by = "time"
                break
        report.blocked_groups = sorted(blocked)
        log.info("drain run finished", extra={"report": report.as_dict()})
        return report

    def _process(
        self,
        batch: list[ReceivedMessage],
        blocked: set[str],
        report: DrainReport,
        out_of_time: Callable[[], bool],
    ) -> bool:
        delivered: list[ReceivedMessage] = []
        releases: list[tuple[ReceivedMessage, int]] = []
        timed_out = False
        for group_id, messages in group_in_order(batch).items():
            if group_id in blocked:
                releases += release_plan(messages, self._settings.retry_delay_s)
                continue
            for index, message in enumerate(messages):
                if timed_out or out_of_time():
                    timed_out = True
                    releases += release_plan(messages[index:], HEAD_HOLD_S)
                    break
                if self._deliver(message) is Outcome.DELIVERED:
                    delivered.append(message)
                    continue
                blocked.add(group_id)
                report.retried += 1
                releases += release_plan(messages[index:], self._settings.retry_delay_s)
                break
        report.delivered += len(delivered)
        report.delete_failures += len(self._queue.delete(delivered))
        report.released += len(releases)
        self._queue.change_visibility(releases)
        return timed_out

    def _deliver(self, message: ReceivedMessage) -> Outcome:
        response = self._api.post(message.body, idempotency_key=message.message_id)
        outcome = classify(response)
        log.info(
            "delivery",
            extra={
                "message_id": message.message_id,
                "group_id": message.group_id,
                "destination": self._api.destination.name,
                "receive_count": message.receive_count,
                "status": response.status,
                "error": response.error,
                "elapsed_ms": response.elapsed_ms,
                "outcome": outcome.value,
            },
        )
        return outcome
