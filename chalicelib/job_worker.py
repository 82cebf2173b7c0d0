"""The `jobs` function's work (issue #26): one task, one part of a backfill or a replay, carried on
from its checkpoint for a slice of the invocation's remaining time, then handed on to the next task.

Page by page: the page is read, then queued for each destination in portions (`job_plan.portion`):
no faster than the part's share of the destination's rate limit (a token bucket, so a depth read
that lags cannot let it flood the queue), and only into its share of the room below the
destination's high-water mark (`job_plan.room`: the mark over the job's parts running, against the
queue's depth from GetQueueAttributes: waiting and in flight, no message received), waiting short
steps in between. The mark holding it for a while (a drain not taking: paused), or between a
scheduled drain's runs until the next is due (from the drain's run note), the part hands its task on
delayed (`job_plan.pace`), as it does undelayed when its slice ends, mid-page with the last message
queued for each destination kept in its note. FIFO deduplication by the messages' stable ids makes a
page queued again after a worker died harmless. Once the whole page is queued, the checkpoint is
written, conditional on the version read, so of two workers on one part the later stops; and the job
is read again, so a cancel stops the part at its next page. A worker that dies anywhere leaves its
task to come back (SQS's visibility timeout) and resume from the last checkpoint. The decisions are
`chalicelib.job_plan`'s."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.job_plan import (
    CANCELLED,
    MAX_DELAY_S,
    MAX_PARTS,
    MIN_PORTION,
    PARTS_READ_S,
    RUNNING,
    Start,
    Task,
    advanced,
    bucket,
    handed_on,
    held,
    least,
    look_again,
    next_run_in,
    pace,
    portion,
    refill,
    resume_at,
    running_parts,
    start,
    wait_s,
)
from chalicelib.jobs import Jobs, Tasks
from chalicelib.model import OutboundMessage, SendFailure

log = logging.getLogger(__name__)

# A worker hands its part on after at most this long, or half the invocation's remaining time: a
# cancel, a pace and a new deploy reach it within that, and its last page never meets the timeout.
SLICE_S = 300


class Page(Protocol):
    """One page of a part (`backfill.Page`, `replay_pages.Page`)."""

    @property
    def messages(self) -> Sequence[OutboundMessage]: ...

    @property
    def position(self) -> Any: ...

    @property
    def counts(self) -> Mapping[str, Any]: ...

    @property
    def finished(self) -> bool: ...


class Pages(Protocol):
    """A part read page by page from a position (None: its start)."""

    def next(self, position: Any) -> Page: ...


class DestinationQueue(Protocol):
    """A destination's queue (`chalicelib.fifo_queue.FifoQueue`)."""

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendFailure]: ...

    def depth(self) -> int: ...


class Metrics(Protocol):
    def count(self, name: str, value: int = 1) -> None: ...

    def flush(self) -> None: ...


class JobError(RuntimeError):
    """A page not wholly queued: the invocation fails, its task comes back and resumes the page."""


@dataclass
class Queued:
    """What a page's queueing did: each destination's messages queued, and, when it stopped short of
    the page's end, the last one queued for each (`sent`) and how long the part's task waits (`delay`:
    0 when the slice ended, else the mark held it)."""

    counts: dict[str, int]
    sent: dict[str, str]
    delay: int | None = None


@dataclass
class Allowance:
    """A part's tokens for each destination (`job_plan.refill`), as of `at`; how many of the job's
    parts share the destinations' rates (`running`), as read at `read_at`."""

    tokens: dict[str, float]
    at: float
    running: int = 1
    read_at: float | None = None

    def refill(self, now: float, shares: Mapping[str, float]) -> None:
        for destination, share in shares.items():
            self.tokens[destination] = refill(
                self.tokens.get(destination, bucket(share)), now - self.at, share
            )
        self.at = now


@dataclass
class JobWorker:
    jobs: Jobs
    tasks: Tasks
    queues: Mapping[str, DestinationQueue]
    marks: Mapping[str, int]  # each destination's high-water mark (`backfill_max_queued`)
    rates: Mapping[str, float]  # and its rate limit, per second
    pages: Callable[[dict[str, Any], int], Pages]  # the part's pages, by the job's kind
    metrics: Callable[[str], Metrics]  # a destination's metrics for this invocation
    at_once: int = MAX_PARTS  # parts the `jobs` function works at once (its maximum concurrency)
    # the time between runs of each destination's drain (None or absent: back to back), its schedule's
    periods: Mapping[str, float | None] = field(default_factory=dict)
    # when a destination's drain last started a run (its run note; None: no run yet, or not known)
    last_run: Callable[[str], float | None] = lambda destination: None
    _last_runs: dict[str, float | None] = field(default_factory=dict, init=False)  # as last read
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def work(self, task: Task, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """Work the task's part for a slice of `remaining_ms()`; a report of what was done."""
        started = self.clock()
        deadline = started + min(SLICE_S, remaining_ms() / 2000)
        job = self.jobs.get(task.job)
        part = self.jobs.part(task.job, task.part)
        context = {"job": task.job, "part": task.part, "step": task.step}
        decision = start(job, part, task, self.wall())
        report: dict[str, Any] = context | {"outcome": decision.value, "pages": 0, "queued": 0}
        if decision is Start.WATCH:  # looks again later: if the part stalls meanwhile, it takes it over
            self.tasks.send([task], delay_s=MAX_DELAY_S)
        if decision is Start.CANCEL:
            self._stop(task.job, part | {"state": CANCELLED, "updated_at": self.wall()})
        if decision is not Start.WORK or job is None:
            log.info("job task not worked", extra=report)
            return report
        pages = self.pages(job, task.part)
        dry_run = bool(job["spec"].get("dry_run"))
        allowance = Allowance({}, started)
        longest_s = 0.0
        metrics: dict[str, Metrics] = {}
        try:
            while True:
                if report["pages"]:
                    job = self.jobs.get(task.job)
                    if job is None or job["state"] != RUNNING:
                        report["outcome"] = "cancelled"
                        self._stop(task.job, part | {"state": CANCELLED, "updated_at": self.wall()})
                        return report
                    if self.clock() + longest_s > deadline:
                        return self._hand_on(task, part, report, 0)
                backlogs = None
                if not dry_run:  # room first: a part the mark holds reads no page (a Scan) for nothing
                    ahead = dict.fromkeys(job["destinations"], MIN_PORTION)
                    room = self._room(job, ahead, allowance, deadline, room_only=True)
                    if isinstance(room, int):
                        return self._hand_on(task, part, report, room)
                    backlogs = room
                began = self.clock()
                page = pages.next(part["position"])
                longest_s = max(longest_s, self.clock() - began)
                queued = self._queue_page(job, part, page.messages, allowance, deadline, context, backlogs)
                report["queued"] += sum(queued.counts.values())
                for destination, count in queued.counts.items():
                    metrics.setdefault(destination, self.metrics(destination)).count(
                        f"{job['kind'].capitalize()}Queued", count
                    )
                if queued.delay is not None:
                    return self._hand_on(task, part | {"sent": queued.sent}, report, queued.delay)
                written = self.jobs.checkpoint(
                    task.job, advanced(part, page.position, page.counts, page.finished, self.wall())
                )
                report["pages"] += 1
                if written is None:
                    report["outcome"] = "stale"  # another task's worker holds the part now
                    return report
                part = written
                if page.finished:
                    report["outcome"] = "done"
                    self.jobs.finish_if_done(task.job)
                    return report
        finally:
            for each in metrics.values():
                each.flush()
            log.info("job task worked", extra=report)

    def _queue_page(
        self,
        job: dict[str, Any],
        part: dict[str, Any],
        messages: Sequence[OutboundMessage],
        allowance: Allowance,
        deadline: float,
        context: dict[str, Any],
        backlogs: dict[str, int] | None,
    ) -> Queued:
        """The page's messages for each destination, in order, from where a part handed on mid-page
        left them (`resume_at`), in portions (`portion`: the part's tokens, the room below the mark)
        as `_room` finds room for them (`backlogs`: the depths read before the page, for the first);
        stopped short when the slice ends or the mark holds the part."""
        sent: dict[str, str] = dict(part.get("sent") or {})
        pending: dict[str, list[OutboundMessage]] = {}
        for destination in dict.fromkeys(m.destination for m in messages):
            mine = [m for m in messages if m.destination == destination]
            rest = mine[resume_at([m.message_id for m in mine], sent.get(destination)) :]
            if rest:
                pending[destination] = rest
        counts: dict[str, int] = {}
        while pending:
            room = (
                backlogs
                if backlogs is not None
                else self._room(job, {d: len(r) for d, r in pending.items()}, allowance, deadline)
            )
            backlogs = None
            if isinstance(room, int):
                return Queued(counts, sent, room)
            for destination, backlog in room.items():
                rest = pending.get(destination, [])
                n = portion(
                    len(rest),
                    allowance.tokens.get(destination, 0.0),
                    backlog,
                    self.marks[destination],
                    allowance.running,
                )
                if not n:
                    continue
                self._send(destination, rest[:n], context)
                allowance.tokens[destination] -= n
                counts[destination] = counts.get(destination, 0) + n
                sent[destination] = rest[n - 1].message_id
                if n == len(rest):
                    del pending[destination]
                else:
                    pending[destination] = rest[n:]
        return Queued(counts, sent)

    def _room(
        self,
        job: dict[str, Any],
        pending: Mapping[str, int],
        allowance: Allowance,
        deadline: float,
        room_only: bool = False,
    ) -> dict[str, int] | int:
        """Waits in short steps (`look_again`) until the part's tokens and the room below the mark
        let a portion of some destination's `pending` messages go (`room_only`: the room, before a
        page is read, while the tokens fill), then gives the depths read; or the delay its task
        should wait instead: `pace`'s when the mark held it, 0 when the slice ends."""
        held_since: float | None = None
        waited = False  # for a run, since the mark last let a portion go
        while True:
            now = self.clock()
            if job["parts"] > 1 and (allowance.read_at is None or now - allowance.read_at >= PARTS_READ_S):
                allowance.running, allowance.read_at = (
                    running_parts(job, self.jobs.parts(job), self.at_once),
                    now,
                )
            allowance.refill(
                now, {d: self.rates[d] / allowance.running for d in [*job["destinations"], *pending]}
            )
            tokens = {d: float(n) for d, n in pending.items()} if room_only else allowance.tokens
            running = allowance.running
            backlogs: dict[str, int] = {}
            for destination, count in pending.items():
                if tokens[destination] >= least(count, self.marks[destination], running):
                    backlogs[destination] = self.queues[destination].depth()  # none for too few tokens
            if any(portion(pending[d], tokens[d], b, self.marks[d], running) for d, b in backlogs.items()):
                return backlogs
            waits = [
                wait_s(
                    count,
                    tokens[d],
                    self.rates[d] / running,
                    backlogs.get(d, 0),
                    self.marks[d],
                    self.rates[d],
                    running,
                )
                for d, count in pending.items()
            ]
            marks = self.marks
            if all(d in backlogs and held(n, backlogs[d], marks[d], running) for d, n in pending.items()):
                held_since = now if held_since is None else held_since
            else:
                held_since, waited = None, False
            next_run = self._next_run(pending) if held_since is not None else None
            held_s = None if held_since is None else now - held_since
            # a run waited for that made no room: the drain is not taking, the part waits no more
            step = look_again(min(waits), held_s, next_run, mid_page=not (room_only or waited))
            if step is None:
                return pace(backlogs, self.marks, self.rates, next_run)
            if self.clock() + step > deadline:  # held, the task waits for the drain as above
                return 0 if held_since is None else pace(backlogs, self.marks, self.rates, next_run)
            self.sleep(step)
            if next_run:  # asleep until a run was due: held from then on, if it makes no room
                held_since, waited = self.clock(), True

    def _next_run(self, destinations: Mapping[str, int]) -> float | None:
        """How long until the first of the destinations' scheduled drains is due to run (from their
        run notes, `next_run_in`); None when one runs back to back, or has not run yet."""
        now = self.wall()
        due: list[float | None] = []
        for destination in destinations:
            period = self.periods.get(destination)
            if not period:
                due.append(None)
                continue
            last = self._last_runs.get(destination)
            if last is None or now - last >= period:  # a run due since may have written its note
                last = self._last_runs[destination] = self.last_run(destination)
            due.append(next_run_in(last, period, now))
        return None if None in due else min(d for d in due if d is not None)

    def _send(self, destination: str, messages: Sequence[OutboundMessage], context: dict[str, Any]) -> None:
        """A portion of a destination's messages, in order; a failure fails the page (JobError)."""
        failures = self.queues[destination].send(messages)
        if failures:
            log.error(
                "job page not queued",
                extra=context | {"destination": destination, "failed": len(failures)},
            )
            first = failures[0]
            raise JobError(
                f"{len(failures)} message(s) for {destination} not queued; first"
                f" {first.message.message_id}: {first.reason}"
            )
        log.info("job page queued", extra=context | {"destination": destination, "queued": len(messages)})

    def _hand_on(
        self, task: Task, part: dict[str, Any], report: dict[str, Any], delay: int
    ) -> dict[str, Any]:
        """Leave the part for its next task (after `delay` seconds when the mark held it): written
        first, then sent, so a task whose worker dies in between is taken over by the older one
        (`start`)."""
        written = self.jobs.checkpoint(task.job, handed_on(part, self.wall(), part.get("sent")))
        if written is None:
            report["outcome"] = "stale"
            return report
        self.tasks.send([Task(task.job, task.part, written["step"])], delay_s=delay)
        report["outcome"] = "paced" if delay else "continued"
        report["delay_s"] = delay
        return report

    def _stop(self, job_id: str, part: dict[str, Any]) -> None:
        if self.jobs.checkpoint(job_id, part) is not None:
            self.jobs.finish_if_done(job_id)
