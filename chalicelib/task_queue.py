"""The stage's tasks queue (`TRICKLE_JOBS_QUEUE_URL`, a standard SQS queue): each message is a task
for the `jobs` function (`chalicelib.job_plan.Task`), which Lambda's event source mapping hands it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from chalicelib.batch_retry import retry_unprocessed
from chalicelib.job_plan import MAX_DELAY_S, Task
from chalicelib.model import MAX_BATCH_ENTRIES

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class TaskQueueError(RuntimeError):
    """Tasks SQS did not take: the caller fails (a route answers 5xx, a worker's task comes back)."""


class TaskQueue:
    def __init__(
        self, client: SQSClient, url: str, attempts: int = 4, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = client
        self.url = url
        self._attempts = attempts
        self._sleep = sleep

    def send(self, tasks: Sequence[Task], delay_s: int = 0) -> None:
        """Queue the tasks, each visible after `delay_s` (0..900); entries SQS reports failed are
        sent again (`batch_retry`), and any left after that raise TaskQueueError."""
        delay = max(0, min(MAX_DELAY_S, delay_s))
        for start in range(0, len(tasks), MAX_BATCH_ENTRIES):
            self._send_batch(tasks[start : start + MAX_BATCH_ENTRIES], delay)

    def _send_batch(self, tasks: Sequence[Task], delay: int) -> None:
        batch = {str(i): t for i, t in enumerate(tasks)}
        reasons: dict[str, str] = {}

        def send(ids: Sequence[str]) -> list[str]:
            response = self._client.send_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": i, "MessageBody": batch[i].body(), "DelaySeconds": delay} for i in ids],
            )
            failed = response.get("Failed", [])
            reasons.update({f["Id"]: f"{f.get('Code', 'Error')}: {f.get('Message', '')}" for f in failed})
            return [f["Id"] for f in failed]

        left = retry_unprocessed(send, list(batch), self._attempts, self._sleep)
        if left:
            raise TaskQueueError(f"{len(left)} task(s) not queued; first: {reasons[left[0]]}")
