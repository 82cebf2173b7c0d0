"""Jobs (issue #26): long work, a backfill's Scan or a replay's read of the archive, split into parts,
each worked by its own invocation of the `jobs` function from a task on the stage's tasks queue (a
standard SQS queue: AWS retries a task whose worker died or timed out, caps how many run at once,
and dead-letters one that keeps failing; no scheduler of ours). Pure, no I/O: a task's shape, what a
worker does with a task given what the notes say, how much of a page it queues now and how long it
waits for the rest (its share of the rate limit, the room below the high-water mark), and a job's
progress. `chalicelib.jobs` keeps the notes, `chalicelib.job_worker` works a part.

A job's note holds what it does and its state; each part's note its checkpoint (`position`, the
kind's own: a Scan's last evaluated key, a replay's place in the archive), what of the page after it
was queued when a worker handed the part on mid-page (`sent`), its counts, its `step`
(how many times a worker handed the part on to the next task) and its `version` (how many times it
was written: every write is conditional on the version read, `Notes.replace`, so of two workers on
one part the second to write stops). A task names the step it was sent for: a worker finding the
part at another step does nothing, unless the part has stalled (see `start`).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KINDS = ("backfill", "replay")
RUNNING, DONE, CANCELLED = "running", "done", "cancelled"
MAX_PARTS = 64
MAX_ACTIVE = 10  # jobs running at once in a stage
# SQS's longest DelaySeconds; the shortest wait is long enough for a drain run to have taken some.
MAX_DELAY_S = 900
MIN_DELAY_S = 5
# A job keeps at most about one drain run's worth of a destination's messages in its queue, waiting
# and in flight (`backfill_max_queued`, docs/routes.md; `default_max_queued`): its rate limit over the
# time between runs, a second for a drain that runs back to back, never more than half a run's
# budget and never less than two SendMessageBatch calls: a live item queued meanwhile is taken by
# the next run, not left behind the job (docs/benchmarks.md, "Backfill"). A part queues a page in portions as
# room appears below that mark, at its share of the rate limit (a token bucket: a depth read that
# lags, as SQS's approximate count can, lets the backlog grow at the rate at most, never flood it).
BACKLOG_WINDOW_S = 1.0
MIN_MAX_QUEUED = 20
QUEUE_BATCH = 10  # SendMessageBatch's most entries: a portion is whole calls
MIN_PORTION = 2 * QUEUE_BATCH  # a part waits for this much room (or the page's rest): a depth read per 20
# A part's bucket holds this long of its share: what a page's read (a Scan page is a second or two
# on a loaded emulator) would otherwise lose, and no more at once.
BUCKET_S = 2.0
# How often a part of a job of several reads how many are still running (one BatchGetItem), so the
# last ones take the rate the finished ones leave.
PARTS_READ_S = 5.0
STEP_MIN_S, STEP_MAX_S = 0.25, 1.0  # a part waiting for tokens or room looks again after this long
# A part held this long by the mark (the drain is not taking: paused, or between scheduled runs)
# hands its task on, delayed (`pace`), rather than keep an invocation waiting; between a scheduled
# drain's runs, at once, until the next is due (`next_run_in`, `look_again`).
HOLD_S = float(MIN_DELAY_S)
# A scheduled run may start this long after it is due (Lambda's start) and takes its budget over
# seconds: a part looks in short steps meanwhile, a quarter period at most (`run_grace`).
RUN_GRACE_S = 15.0
RUN_GRACE_SHARE = 0.25
# A part holding the rest of a page waits in its invocation this long at most for the next run: a
# Lambda waiting costs less than the page's Scan again, and the worker's slice bounds it too.
MID_PAGE_WAIT_S = 120.0
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
        "sent": {},
        "updated_at": None,
    }


def advanced(
    part: Mapping[str, Any], position: Any, counts: Mapping[str, Any], finished: bool, now: float
) -> dict[str, Any]:
    """The part after one more page: its new position, its counts with the page's added, done when
    the page was its last, nothing of the next page `sent`. Its `version` stays the one it was read
    at (`Notes.replace` writes the next), its `step` the task's."""
    return dict(part) | {
        "position": position,
        "counts": add_counts(part["counts"], counts),
        "sent": {},
        "state": DONE if finished else RUNNING,
        "updated_at": now,
    }


def handed_on(part: Mapping[str, Any], now: float, sent: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The part as its worker leaves it for the next task (`step` + 1); mid-page, with the id of the
    last message of the page it queued for each destination (`sent`, `resume_at`)."""
    return dict(part) | {"step": part["step"] + 1, "updated_at": now, "sent": dict(sent or {})}


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


def default_max_queued(rate_limit_per_s: float, drain_period_s: float | None, drain_budget: int) -> int:
    """A destination's high-water mark when the routes file sets no `backfill_max_queued`: what one
    run of its drain takes, its rate limit over the time between runs (`drain_period_s`, from its
    schedule; None: unknown, or runs back to back: a second), but no more than half a run's budget,
    so the live items queued behind it are taken by the same run; at least two SendMessageBatch
    calls. A smaller mark would leave a scheduled drain's runs ending early on an empty queue."""
    window_s = max(BACKLOG_WINDOW_S, drain_period_s or 0.0)
    return max(MIN_MAX_QUEUED, min(drain_budget // 2, math.ceil(rate_limit_per_s * window_s)))


def pace(
    backlogs: Mapping[str, int],
    marks: Mapping[str, int],
    rates: Mapping[str, float],
    next_run_s: float | None = None,
) -> int:
    """How long a part the mark holds (`look_again`) leaves its task delayed: the time the rate limit
    takes to bring the fullest of its destinations' queues down to half its mark, and at least until
    a scheduled drain's next run is due (`next_run_s`: nothing makes room before it); at least
    MIN_DELAY_S, at most MAX_DELAY_S."""
    longest = max(
        ((backlog - marks[name] / 2) / rates[name] for name, backlog in backlogs.items()), default=0.0
    )
    return min(MAX_DELAY_S, max(MIN_DELAY_S, math.ceil(longest), math.ceil(next_run_s or 0.0)))


def drain_pace(rate_limit_per_s: float, period_s: float | None, drain_budget: int) -> float:
    """The most messages a second a destination's drain takes: its rate limit, and on a schedule
    (`period_s`) a run's budget over the time between runs. A backfill goes no faster."""
    return rate_limit_per_s if not period_s else min(rate_limit_per_s, drain_budget / period_s)


def estimate(messages: Mapping[str, int], paces: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """How long a dry run's messages (`would_queue` per destination) take to deliver at least, at
    their drains' `paces` (`drain_pace`), live items not counted."""
    return {
        name: {
            "messages": count,
            "at_most_per_s": round(paces[name], 2),
            "seconds_at_least": math.ceil(count / paces[name]),
        }
        for name, count in messages.items()
        if paces.get(name, 0) > 0
    }


def running_parts(job: Mapping[str, Any], parts: Mapping[int, Mapping[str, Any]], at_once: int) -> int:
    """Among how many of the job's parts each destination's rate limit is shared: those still
    running (a part not started yet is), but no more than the `jobs` function works at once (its
    maximum concurrency: the others' tasks wait for a turn), and at least the one asking."""
    each = (parts.get(n) or new_part(n) for n in range(job["parts"]))
    return max(1, min(at_once, sum(1 for part in each if part["state"] == RUNNING)))


def bucket(share: float) -> float:
    """A part's tokens at most, at `share` messages a second: a portion, or BUCKET_S of its share."""
    return max(float(MIN_PORTION), share * BUCKET_S)


def refill(tokens: float, elapsed_s: float, share: float) -> float:
    """A part's tokens for a destination after `elapsed_s` at its share of the rate limit."""
    return min(bucket(share), tokens + elapsed_s * share)


def part_mark(mark: int, running: int) -> int:
    """A part's share of a destination's mark: the mark over the job's parts running at once (several
    reading the queue's depth together would otherwise each fill the same room), one
    SendMessageBatch call's worth at least."""
    return max(QUEUE_BATCH, math.ceil(mark / running))


def room(backlog: int, mark: int, running: int = 1) -> int:
    """How many a part may add to a queue holding `backlog`: its share of the mark less its share of
    the backlog (all of the room when it runs alone)."""
    return part_mark(mark, running) - math.ceil(backlog / running)


def least(pending: int, mark: int, running: int = 1) -> int:
    """The smallest portion worth a look at the queue's depth: two calls' worth (the page's rest if
    less), and no more than half the part's share of the mark in whole calls (one call at least), so
    a part adds to a queue that still holds some for the drain rather than waiting for it to run dry."""
    half = part_mark(mark, running) // 2 // QUEUE_BATCH * QUEUE_BATCH
    return min(pending, MIN_PORTION, max(QUEUE_BATCH, half))


def portion(pending: int, tokens: float, backlog: int, mark: int, running: int = 1) -> int:
    """How many of a page's `pending` messages for a destination the part queues now: as many as its
    tokens and its room below the mark (`backlog`: the queue's depth; `room`) allow, in whole
    SendMessageBatch calls, and none until that is at least `least`."""
    allowed = min(math.floor(tokens), room(backlog, mark, running))
    if allowed >= pending:
        return pending
    if allowed < least(pending, mark, running):
        return 0
    return allowed // QUEUE_BATCH * QUEUE_BATCH


def wait_s(
    pending: int, tokens: float, share: float, backlog: int, mark: int, rate: float, running: int = 1
) -> float:
    """How long until `least` could go: the tokens refill at the part's share, the drain makes room
    at the rate limit (the part's room grows by one for every `running` taken)."""
    need = least(pending, mark, running)
    short = max(0, need - room(backlog, mark, running))
    return max(max(0.0, need - tokens) / share, short * running / rate)


def held(pending: int, backlog: int, mark: int, running: int = 1) -> bool:
    """The mark, not the tokens, keeps the destination's next portion back."""
    return room(backlog, mark, running) < least(pending, mark, running)


def next_run_in(last_started: float | None, period_s: float | None, now: float) -> float | None:
    """How long until a scheduled drain's next run is due, from when its last run started (its run
    note, written as the run ends) and the time between runs: 0 while a run due since is not in the
    note yet (under way, or starting late) for `run_grace`; None when that cannot be told (no run
    yet, or no schedule)."""
    if last_started is None or not period_s:
        return None
    since = (now - last_started) % period_s
    if now - last_started >= period_s and since < run_grace(period_s):
        return 0.0
    return period_s - since


def run_grace(period_s: float) -> float:
    """How long after a run is due a held part keeps looking in short steps: a run may start late
    (Lambda's cold start) and takes its budget over seconds; RUN_GRACE_S, a quarter period at most."""
    return min(RUN_GRACE_S, period_s * RUN_GRACE_SHARE)


def look_again(
    wait: float, held_s: float | None, next_run_s: float | None = None, mid_page: bool = False
) -> float | None:
    """How long a part waits before it looks at the queues again, or None: it hands its task on,
    delayed (`pace`). Not held by the mark (`held_s` None), a short step. Held: between a scheduled
    drain's runs (`next_run_s`: the next is due in that long, `next_run_in`), it sleeps until the
    run is due if that is within HOLD_S, or within MID_PAGE_WAIT_S when it holds the rest of a page
    it read (`mid_page`: handed on, it would read the page again); else it hands on at once, its
    task coming back when the run is due. Otherwise (a run under way, or none known) it looks in
    short steps for HOLD_S, or hands on at once if room is further off than that."""
    if held_s is not None and next_run_s:
        if held_s + next_run_s <= HOLD_S or (mid_page and next_run_s <= MID_PAGE_WAIT_S):
            return max(STEP_MIN_S, next_run_s)
        return None
    if held_s is not None and (held_s >= HOLD_S or wait > HOLD_S):
        return None
    return min(STEP_MAX_S, max(STEP_MIN_S, wait))


def resume_at(ids: Sequence[str], last: str | None) -> int:
    """Where a page's messages for a destination start: after the last one a part handed on
    mid-page had queued (by id: the page read again may hold other items than it did), from the
    start if none was or it is not there (the queue's deduplication drops a message sent again)."""
    if last is None or last not in ids:
        return 0
    return ids.index(last) + 1


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
