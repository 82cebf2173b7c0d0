"""Redrive jobs: `POST /dead-letters/redrive` opens one (a note), and the destination's drain carries
it on at the start of each run, for a slice of the run, under the run's lease, so what it moves back
is delivered in that same run. Reading a job moves nothing, and a destination's dead letters are
only ever copied back by one runner at a time: its drain.

A job is the note `redrive#<destination>#<id>`; the ids of a destination's open jobs are a set in
the note `redrive#<destination>` (both named in `chalicelib.naming`), which the route adds to and
the drain takes from, each in one write."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.dead_letters import RedriveFilter, RedriveReport
from chalicelib.naming import open_redrives_key, redrive_job_key

log = logging.getLogger(__name__)

MAX_OPEN = 10  # open jobs per destination: every run's slice goes to them, oldest first

Stop = Callable[[], bool]
# One pass of a redrive (`Redriver.redrive`): (filter, may use the move task, stop) -> its report.
Step = Callable[[RedriveFilter, bool, Stop], RedriveReport]


class JobNotes(Protocol):
    """The notes a job is kept in (`chalicelib.notes.Notes`)."""

    def save(self, key: str, document: dict[str, Any]) -> None: ...

    def load(self, key: str) -> dict[str, Any] | None: ...

    def members(self, key: str) -> set[str]: ...

    def add_member(self, key: str, member: str) -> None: ...

    def remove_member(self, key: str, member: str) -> None: ...


class TooManyRedrivesError(Exception):
    """MAX_OPEN jobs of the destination are still open."""

    def __init__(self, destination: str) -> None:
        super().__init__(
            f"{MAX_OPEN} redrives of {destination} are still open; each of its drain runs carries them"
            " on, so wait for one to be done (GET its progress_url) and ask again"
        )


class RedriveJobs:
    """One destination's redrive jobs."""

    def __init__(
        self,
        notes: JobNotes,
        destination: str,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._notes = notes
        self._destination = destination
        self._open_key = open_redrives_key(destination)
        self._clock = clock
        self._new_id = new_id

    def start(self, description: dict[str, Any]) -> dict[str, Any]:
        """A new job for the filter `description` (as `RedriveFilter.from_request` gives it), for the
        drain's next run; TooManyRedrivesError when MAX_OPEN are open already."""
        if len(self._notes.members(self._open_key)) >= MAX_OPEN:
            raise TooManyRedrivesError(self._destination)
        job: dict[str, Any] = {
            "id": self._new_id(),
            "destination": self._destination,
            "state": "running",
            "filter": description,
            "moved": 0,
            "method": "",
            "skipped_not_redrivable": 0,
            "failed": 0,
            "started_at": self._clock(),
            "steps": 0,
            "advanced_at": None,
        }
        self._save(job)
        # listed once it exists: every id the drain reads has its job
        self._notes.add_member(self._open_key, job["id"])
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self._notes.load(redrive_job_key(self._destination, job_id))

    def advance(self, step: Step, stop: Stop) -> int:
        """Carry the open jobs on, oldest first, until `stop`; the dead letters moved back. An AWS
        error ends the slice (kept in the job as `last_error` when a step failed): the next run
        tries again."""
        moved = 0
        try:
            for job in self._open():
                if stop():
                    break
                try:
                    report = step(RedriveFilter.described(job["filter"]), not job["steps"], stop)
                except (ClientError, BotoCoreError) as exc:
                    self._save(job | {"last_error": str(exc)})
                    raise
                moved += report.moved
                self._record(job, report)
        except (ClientError, BotoCoreError) as exc:
            log.error(
                "redrive not carried on; the next drain run tries again",
                extra={"destination": self._destination, "error": str(exc)},
            )
        return moved

    def _open(self) -> list[dict[str, Any]]:
        """The open jobs, oldest first; an id whose job is gone (expired) or done is taken out."""
        jobs = []
        for job_id in self._notes.members(self._open_key):
            job = self.get(job_id)
            if job is None or job["state"] != "running":
                self._notes.remove_member(self._open_key, job_id)
            else:
                jobs.append(job)
        return sorted(jobs, key=lambda job: (job["started_at"], job["id"]))

    def _record(self, job: dict[str, Any], report: RedriveReport) -> None:
        job.pop("last_error", None)
        job["steps"] += 1
        job["moved"] += report.moved
        job["method"] = report.method
        job["skipped_not_redrivable"] = report.skipped_not_redrivable  # as the last pass found them
        job["failed"] += report.failed
        job["state"] = "running" if report.interrupted else "done"
        job["advanced_at"] = self._clock()
        self._save(job)
        if job["state"] == "done":
            self._notes.remove_member(self._open_key, job["id"])

    def _save(self, job: dict[str, Any]) -> None:
        self._notes.save(redrive_job_key(self._destination, job["id"]), job)
