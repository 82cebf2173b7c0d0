"""The notes of backfill and replay jobs (issue #26): a job is the note `job#<id>` (what it does,
its state), each of its parts the note `job#<id>#<n>` (checkpoint and counts), and the ids of the
running jobs the member set of `jobs#active`; keys from `chalicelib.naming`. Every write of a job or
part note is conditional on the version it was read at (`Notes.replace`), so two writers never both
win: a duplicate task finds itself stale, a cancel never undoes a finish. The decisions are in
`chalicelib.job_plan`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence, Set
from typing import Any, Protocol

from chalicelib.job_plan import (
    CANCELLED,
    DONE,
    KINDS,
    MAX_ACTIVE,
    MAX_PARTS,
    RUNNING,
    Task,
    finished,
    new_part,
    progress,
)
from chalicelib.naming import active_jobs_key, job_key, job_part_key

log = logging.getLogger(__name__)


class JobNotes(Protocol):
    """The notes jobs are kept in (`chalicelib.notes.Notes`)."""

    def load(self, key: str) -> dict[str, Any] | None: ...

    def load_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def replace(self, key: str, document: dict[str, Any], version: int) -> bool: ...

    def members(self, key: str) -> set[str]: ...

    def add_member(self, key: str, member: str) -> None: ...

    def remove_member(self, key: str, member: str) -> None: ...


class Tasks(Protocol):
    """The tasks queue (`chalicelib.task_queue.TaskQueue`)."""

    def send(self, tasks: Sequence[Task], delay_s: int = 0) -> None: ...


class TooManyJobsError(Exception):
    """MAX_ACTIVE jobs are running already."""

    def __init__(self) -> None:
        super().__init__(
            f"{MAX_ACTIVE} backfill or replay jobs are running already: wait for one to finish, or"
            " cancel one (GET /status lists them)"
        )


def is_job_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Jobs:
    def __init__(
        self,
        notes: JobNotes,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._notes = notes
        self._clock = clock
        self._new_id = new_id

    def create(
        self, kind: str, destinations: Sequence[str], parts: int, spec: dict[str, Any]
    ) -> dict[str, Any]:
        """A new running job of `parts` parts (none started: its tasks start them), listed as
        active; TooManyJobsError when MAX_ACTIVE are running. `spec` is the kind's own (a
        backfill's filter, a replay's window)."""
        assert kind in KINDS and 1 <= parts <= MAX_PARTS
        if len(self._notes.members(active_jobs_key())) >= MAX_ACTIVE:
            raise TooManyJobsError()
        job: dict[str, Any] = {
            "id": self._new_id(),
            "kind": kind,
            "state": RUNNING,
            "destinations": list(destinations),
            "parts": parts,
            "spec": spec,
            "created_at": self._clock(),
            "finished_at": None,
        }
        if not self._notes.replace(job_key(job["id"]), job, 0):
            raise RuntimeError(f"job {job['id']} exists already")
        self._notes.add_member(active_jobs_key(), job["id"])  # listed once it exists
        return self.get(job["id"]) or job

    def start(
        self, kind: str, destinations: Sequence[str], parts: int, spec: dict[str, Any], tasks: Tasks
    ) -> dict[str, Any]:
        """`create` the job and queue the first task of each part; if the tasks cannot be queued,
        the job is cancelled (nothing would ever work it) and the error raised."""
        job = self.create(kind, destinations, parts, spec)
        try:
            tasks.send([Task(job["id"], n, 0) for n in range(parts)])
        except Exception:
            self.cancel(job["id"])
            raise
        log.info("job started", extra={"job": job["id"], "kind": kind, "destinations": list(destinations)})
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self._notes.load(job_key(job_id)) if is_job_id(job_id) else None

    def part(self, job_id: str, part: int) -> dict[str, Any]:
        """The part's last checkpoint, or a new part if none was written yet."""
        return self._notes.load(job_part_key(job_id, part)) or new_part(part)

    def parts(self, job: dict[str, Any]) -> dict[int, dict[str, Any]]:
        keys = {job_part_key(job["id"], n): n for n in range(job["parts"])}
        return {keys[key]: note for key, note in self._notes.load_many(list(keys)).items()}

    def checkpoint(self, job_id: str, part: dict[str, Any]) -> dict[str, Any] | None:
        """Write the part, if it is still at the version it was read at: the part as now stored
        (its next version), or None if another task's worker wrote first and this one must stop."""
        if not self._notes.replace(job_part_key(job_id, part["part"]), part, part["version"]):
            return None
        return part | {"version": part["version"] + 1}

    def view(self, job_id: str, kind: str) -> dict[str, Any] | None:
        """The job of that kind with its progress (`job_plan.progress`), or None."""
        job = self.get(job_id)
        if job is None or job["kind"] != kind:
            return None
        return progress(job, self.parts(job))

    def active(self, listed: Set[str] | None = None) -> list[dict[str, Any]]:
        """The running jobs with their progress (their parts summed), oldest first; `listed`: the
        members of `jobs#active` if the caller read them already (`/status` reads it with its other
        notes). Reads only: an id whose note expired is left for the next finish or cancel to take out."""
        ids = sorted(self._notes.members(active_jobs_key()) if listed is None else listed)
        jobs = self._notes.load_many([job_key(i) for i in ids if is_job_id(i)])
        running = [job for job in jobs.values() if job["state"] == RUNNING]
        running.sort(key=lambda job: (job["created_at"], job["id"]))
        shown = [progress(job, self.parts(job)) for job in running]
        return [{k: v for k, v in job.items() if k != "part_states"} for job in shown]

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Mark a running job cancelled (its workers stop at their next page) and unlist it; a job
        already done or cancelled is returned as it is. None: no such job."""
        for _ in range(5):  # another writer (a finishing worker) may win the race: read again
            job = self.get(job_id)
            if job is None or job["state"] != RUNNING:
                return job
            if self._notes.replace(
                job_key(job_id), job | {"state": CANCELLED, "finished_at": self._clock()}, job["version"]
            ):
                self._notes.remove_member(active_jobs_key(), job_id)
                return self.get(job_id)
        raise RuntimeError(f"job {job_id} kept changing while it was being cancelled")

    def finish_if_done(self, job_id: str) -> bool:
        """Called by a worker after it stopped its part: if every part has stopped, the job is
        done (or stays cancelled) and is unlisted. Each worker writes its part before it reads the
        others (consistent reads), so the last to stop always sees every part stopped."""
        job = self.get(job_id)
        if job is None or not finished(job, self.parts(job)):
            return False
        if job["state"] == RUNNING:
            done = job | {"state": DONE, "finished_at": self._clock()}
            if self._notes.replace(job_key(job_id), done, job["version"]):
                log.info("job done", extra={"job": job_id, "kind": job["kind"]})
        self._notes.remove_member(active_jobs_key(), job_id)
        return True
