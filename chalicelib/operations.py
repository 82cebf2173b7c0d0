"""What the operator routes do: status, delivery lookups, dead-letter peeks and redrive jobs, and
direct submissions. Returns plain dicts; app.py maps errors to HTTP answers."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalicelib.archive import ResponseArchive
from chalicelib.dead_letters import RedriveFilter, Redriver
from chalicelib.fifo_queue import FifoQueue, ReceivedMessage
from chalicelib.ledger import Ledger, Notes, Status, redrive_note_key, run_note_key
from chalicelib.submissions import Submission

PEEK_VISIBILITY_S = 5
MAX_PAGE = 50


def is_message_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Operations:
    def __init__(
        self,
        sqs: Any,
        queue: FifoQueue,
        dead_letters: FifoQueue,
        ledger: Ledger,
        notes: Notes,
        archive: ResponseArchive | None,
        destination: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sqs = sqs
        self._queue = queue
        self._dead_letters = dead_letters
        self._ledger = ledger
        self._notes = notes
        self._archive = archive
        self._destination = destination
        self._clock = clock

    def _depths(self, queue: FifoQueue) -> dict[str, int]:
        queued, in_flight = queue.counts()
        return {"queued": queued, "in_flight": in_flight}

    def _oldest_age_s(self) -> float | None:
        """The oldest visible message's age: a receive with visibility 0 leaves it where it was."""
        messages = self._queue.receive(1, 0)
        if not messages or not messages[0].sent_at_ms:
            return None
        return round(max(0.0, self._clock() - messages[0].sent_at_ms / 1000), 3)

    def status(self) -> dict[str, Any]:
        return {
            "destinations": {
                self._destination: {
                    "queue": self._depths(self._queue) | {"oldest_message_age_s": self._oldest_age_s()},
                    "dead_letters": self._depths(self._dead_letters),
                    "last_run": self._notes.load(run_note_key(self._destination)),
                }
            }
        }

    def submit(self, submission: Submission) -> dict[str, Any]:
        failures = self._queue.send([submission.message])
        if failures:
            raise RuntimeError(f"message not queued: {failures[0].reason}")
        self._ledger.record_queued(submission.message.message_id, submission.message.group_id)
        return {
            "message_id": submission.message.message_id,
            "status_url": f"/messages/{submission.message.message_id}",
        }

    def lookup(self, message_id: str) -> dict[str, Any] | None:
        if not is_message_id(message_id):
            return None
        record = self._ledger.get(message_id)
        if record is None:
            return None
        answer = record.as_dict()
        if record.status is Status.DELIVERED and self._archive is not None:
            answer["response_url"] = self._archive.url(message_id)
        return answer

    def dead_letters(self, limit: int, page_token: str | None) -> dict[str, Any]:
        """A page of dead letters, oldest groups first, without consuming them: they are read with
        a short visibility and released at once (FIFO returns a group only while none of it is in
        flight, so a page is read whole before anything is released)."""
        limit = max(1, min(MAX_PAGE, limit))
        skip = int(base64.urlsafe_b64decode(page_token.encode()).decode()) if page_token else 0
        seen: list[ReceivedMessage] = []
        while len(seen) < skip + limit:
            batch = self._dead_letters.receive(10, PEEK_VISIBILITY_S)
            if not batch:
                break
            seen += batch
        self._dead_letters.change_visibility([(m, 0) for m in seen])
        page = seen[skip : skip + limit]
        more = len(seen) > skip + limit
        return {
            "dead_letters": [
                {
                    "message_id": m.message_id,
                    "group_id": m.group_id,
                    "reason": m.attributes.get("trickle-reason", ""),
                    "attributes": dict(m.attributes),
                    "body": m.body,
                }
                for m in page
            ],
            "next": base64.urlsafe_b64encode(str(skip + limit).encode()).decode() if more else None,
        }

    def start_redrive(
        self, wanted: RedriveFilter, description: dict[str, Any], budget_s: float
    ) -> dict[str, Any]:
        job_id = str(uuid.uuid4())
        job = {
            "id": job_id,
            "state": "running",
            "filter": description,
            "moved": 0,
            "method": "",
            "started_at": self._clock(),
        }
        return self._advance(job, wanted, budget_s)

    def redrive_progress(self, job_id: str, budget_s: float) -> dict[str, Any] | None:
        job = self._notes.load(redrive_note_key(job_id)) if is_message_id(job_id) else None
        if job is None or job["state"] != "running":
            return job
        description = job["filter"]
        wanted = RedriveFilter(
            groups=set(description["groups"]) if description.get("groups") else None,
            message_ids=set(description["message_ids"]) if description.get("message_ids") else None,
        )
        return self._advance(job, wanted, budget_s)

    def _advance(self, job: dict[str, Any], wanted: RedriveFilter, budget_s: float) -> dict[str, Any]:
        """Redrive for at most `budget_s` within this request; a GET on the job continues it."""
        deadline = self._clock() + budget_s
        redriver = Redriver(self._sqs, self._dead_letters, self._queue)
        report = redriver.redrive(
            wanted, use_move_task=not job["moved"], stop=lambda: self._clock() > deadline
        )
        job["moved"] += report.moved
        job["method"] = report.method
        job["skipped_not_redrivable"] = report.skipped_not_redrivable
        job["failed"] = job.get("failed", 0) + report.failed
        job["state"] = "running" if report.interrupted else "done"
        self._notes.save(redrive_note_key(job["id"]), job)
        return job
