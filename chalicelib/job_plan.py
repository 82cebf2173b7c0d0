"""Jobs (issue #26): long work, a backfill's Scan or a replay's read of the archive, split into parts,
each worked by its own invocation of the `jobs` function from a task on the stage's tasks queue (a
standard SQS queue: AWS retries a task whose worker died or timed out, caps how many run at once,
and dead-letters one that keeps failing; no scheduler of ours). Pure, no I/O: a task's shape, what a
worker does with a task given what the notes say, how long it waits while a destination's queue is
full, and a job's progress. `chalicelib.jobs` keeps the notes, `chalicelib.job_worker` works a part.

A job's note holds what it does and its state; each part's note its checkpoint (`position`, the
kind's own: a Scan's last evaluated key, a replay's place in the archive), its counts, its `step`
(how many times a worker handed the part on to the next task) and its `version` (how many times it
was written: every write is conditional on the version read, `Notes.replace`, so of two workers on
one part the second to write stops). A task names the step it was sent for: a worker finding the
part at another step does nothing, unless the part has stalled (see `start`).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KINDS = ("backfill", "replay")
RUNNING, DONE, CANCELLED = "running", "done", "cancelled"
MAX_PARTS = 64
MAX_ACTIVE = 10  # jobs running at once in a stage
# SQS's longest DelaySeconds; the shortest wait is long enough for a drain run to have taken some.
MAX_DELAY_S = 900
MIN_DELAY_S = 5
# A destination's queue holds at most about a minute of its rate limit of a job's messages
# (`backfill_max_queued`, docs/routes.md), and never less than this: live items queued behind the
# job wait at most about that minute.
BACKLOG_WINDOW_S = 60
MIN_MAX_QUEUED = 300
# A part not written for this long has lost its task (a worker killed between handing it on and
# sending the next task): an older task of it takes it over (`start`). Longer than a worker's slice
# and a paced wait, both of which write the part.
STALL_S = 1800
MAX_ERROR_CHARS = 300  # a filter error's text, as the job's counts keep the first


class TaskError(ValueError):
    """A task message that is not `{"job": id, "part": n, "step": k}`."""


@dataclass(frozen=True)
class Task:
    """Work part `part` of job `job`, which its note should show at step `step`."""

    job: str
    part: int
    step: int

    def body(self) -> str:
        return json.dumps({"job": self.job, "part": self.part, "step": self.step}, separators=(",", ":"))

    @classmethod
    def parse(cls, body: str) -> Task:
        try:
            document = json.loads(body)
        except ValueError:
            raise TaskError(f"task is not JSON: {body[:80]!r}") from None
        if (
            not isinstance(document, dict)
            or set(document) != {"job", "part", "step"}
            or not isinstance(document["job"], str)
            or not document["job"]
            or type(document["part"]) is not int
            or type(document["step"]) is not int
            or not 0 <= document["part"] < MAX_PARTS
            or document["step"] < 0
        ):
            raise TaskError(f'task is not {{"job": id, "part": n, "step": k}}: {body[:120]!r}')
        return cls(document["job"], document["part"], document["step"])


class Start(enum.Enum):
    """What a worker does with a task."""

    WORK = "work"  # carry the part on from its checkpoint
    CANCEL = "cancel"  # the job was cancelled: mark the part so, queue nothing
    WATCH = "watch"  # an older task of a part still moving: send it again later, in case the part stalls
    STALE = "stale"  # a finished part, or a task from no step the part had: do nothing
    GONE = "gone"  # no such job (it expired, or the task is not ours): do nothing


def start(job: Mapping[str, Any] | None, part: Mapping[str, Any], task: Task, now: float) -> Start:
    """A task is worked if its part is running at the step it names, in a running job. A task of an
    earlier step (delivered again after its worker handed the part on, or died doing so) keeps
    watching: once the part has not been written for STALL_S, it takes the part over from its
    checkpoint. Two tasks working one part are safe (each write is conditional on the version read:
    the later stops), so a late take-over costs at most one page queued twice, which the queue's
    deduplication or the drain's ledger drops."""
    if job is None:
        return Start.GONE
    if part["state"] != RUNNING or task.step > part["step"]:
        return Start.STALE
    if job["state"] == CANCELLED:
        return Start.CANCEL
    if job["state"] != RUNNING:
        return Start.STALE
    if task.step < part["step"] and now - (part["updated_at"] or 0) < STALL_S:
        return Start.WATCH
    return Start.WORK


def new_part(part: int) -> dict[str, Any]:
    """A part no worker has checkpointed yet (its note does not exist)."""
    return {
        "part": part,
        "state": RUNNING,
        "step": 0,
        "version": 0,
        "position": None,
        "counts": {},
        "updated_at": None,
    }


def advanced(
    part: Mapping[str, Any], position: Any, counts: Mapping[str, Any], finished: bool, now: float
) -> dict[str, Any]:
    """The part after one more page: its new position, its counts with the page's added, done when
    the page was its last. Its `version` stays the one it was read at (`Notes.replace` writes the
    next), its `step` the task's."""
    return dict(part) | {
        "position": position,
        "counts": add_counts(part["counts"], counts),
        "state": DONE if finished else RUNNING,
        "updated_at": now,
    }


def handed_on(part: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The part as its worker leaves it for the next task (`step` + 1)."""
    return dict(part) | {"step": part["step"] + 1, "updated_at": now}


def add_counts(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Counters added name by name, nested maps (per destination) alike; a text (the first error
    seen) is kept as it was first given."""
    out: dict[str, Any] = dict(a)
    for name, value in b.items():
        if isinstance(value, Mapping):
            out[name] = add_counts(out.get(name) or {}, value)
        elif isinstance(value, str):
            out.setdefault(name, value)
        else:
            out[name] = out.get(name, 0) + value
    return out


def default_max_queued(rate_limit_per_s: float) -> int:
    """A destination's high-water mark when the routes file sets no `backfill_max_queued`."""
    return max(MIN_MAX_QUEUED, math.ceil(rate_limit_per_s * BACKLOG_WINDOW_S))


def pace(backlogs: Mapping[str, int], marks: Mapping[str, int], rates: Mapping[str, float]) -> int | None:
    """None: queue the next page now. Otherwise how long to wait (the task comes back after that
    many seconds): while any destination's queue holds its mark or more, the time its rate limit
    takes to bring the fullest down to half its mark, at least MIN_DELAY_S, at most MAX_DELAY_S."""
    waits = [
        (backlog - marks[name] / 2) / rates[name]
        for name, backlog in backlogs.items()
        if backlog >= marks[name]
    ]
    if not waits:
        return None
    return min(MAX_DELAY_S, max(MIN_DELAY_S, math.ceil(max(waits))))


def finished(job: Mapping[str, Any], parts: Mapping[int, Mapping[str, Any]]) -> bool:
    """Every part of the job has stopped: done, or cancelled."""
    return all(parts.get(n, {}).get("state") in (DONE, CANCELLED) for n in range(job["parts"]))


def progress(job: Mapping[str, Any], parts: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """A job as `GET /backfills/{id}`, `GET /replays/{id}` and `GET /status` show it: what it does,
    its state, how many parts are done, and its counts summed over the parts (each part's too)."""
    each = [parts.get(n) or new_part(n) for n in range(job["parts"])]
    total: dict[str, Any] = {}
    for part in each:
        total = add_counts(total, part["counts"])
    states = [part["state"] for part in each]
    return dict(job) | {
        "counts": total,
        "parts_done": states.count(DONE),
        "part_states": [
            {
                "part": part["part"],
                "state": part["state"],
                "step": part["step"],
                "updated_at": part["updated_at"],
                "counts": part["counts"],
            }
            for part in each
        ],
    }


def filter_error(exc: Exception) -> str:
    """A job filter's failure on one record, as its counts keep the first (one line, bounded)."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:MAX_ERROR_CHARS]


def filter_warnings(counts: Mapping[str, Any], seen: str, noun: str) -> list[str]:
    """What a job's operator should hear of its filter: it failed on records (they are left out,
    counted in `filter_errors`, the first error in `filter_error`), out of those `seen`."""
    errors = counts.get("filter_errors", 0)
    if not errors:
        return []
    return [
        f"the filter failed on {errors} of {counts.get(seen, 0)} {noun}, left out (first:"
        f" {counts.get('filter_error')}): check its functions' argument types"
    ]
