"""The `jobs` function's work (issue #26): one task, one part of a backfill or a replay, carried on
from its checkpoint for a slice of the invocation's remaining time, then handed on to the next task.

Page by page: unless a dry run, the destinations' queues are read first (GetQueueAttributes: depths,
no message received) and above a destination's high-water mark the part waits, its task sent again
with a delay (`job_plan.pace`); the page's messages are queued (FIFO deduplication by their stable
ids makes a page queued again harmless); the checkpoint is written, conditional on the version read,
so of two workers on one part the later stops; and the job is read again, so a cancel stops the part
at its next page. A worker that dies anywhere leaves its task to come back (SQS's visibility
timeout) and resume from the last checkpoint. The decisions are `chalicelib.job_plan`'s."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.job_plan import (
    CANCELLED,
    MAX_DELAY_S,
    RUNNING,
    Start,
    Task,
    advanced,
    handed_on,
    pace,
    start,
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
class JobWorker:
    jobs: Jobs
    tasks: Tasks
    queues: Mapping[str, DestinationQueue]
    marks: Mapping[str, int]  # each destination's high-water mark (`backfill_max_queued`)
    rates: Mapping[str, float]  # and its rate limit, per second
    pages: Callable[[dict[str, Any], int], Pages]  # the part's pages, by the job's kind
    metrics: Callable[[str], Metrics]  # a destination's metrics for this invocation
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

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
                delay = None if dry_run else self._pace(job["destinations"])
                if delay is not None:
                    return self._hand_on(task, part, report, delay)
                began = self.clock()
                page = pages.next(part["position"])
                queued = self._queue(page.messages, context)
                written = self.jobs.checkpoint(
                    task.job, advanced(part, page.position, page.counts, page.finished, self.wall())
                )
                report["pages"] += 1
                report["queued"] += sum(queued.values())
                for destination, count in queued.items():
                    metrics.setdefault(destination, self.metrics(destination)).count(
                        f"{job['kind'].capitalize()}Queued", count
                    )
                longest_s = max(longest_s, self.clock() - began)
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

    def _pace(self, destinations: Sequence[str]) -> int | None:
        backlogs = {d: self.queues[d].depth() for d in destinations}
        return pace(
            backlogs, {d: self.marks[d] for d in destinations}, {d: self.rates[d] for d in destinations}
        )

    def _queue(self, messages: Sequence[OutboundMessage], context: dict[str, Any]) -> dict[str, int]:
        """Each destination's messages, in order; a failure fails the page (JobError)."""
        queued: dict[str, int] = {}
        for destination in dict.fromkeys(m.destination for m in messages):
            mine = [m for m in messages if m.destination == destination]
            failures = self.queues[destination].send(mine)
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
            queued[destination] = len(mine)
            log.info("job page queued", extra=context | {"destination": destination, "queued": len(mine)})
        return queued

    def _hand_on(
        self, task: Task, part: dict[str, Any], report: dict[str, Any], delay: int
    ) -> dict[str, Any]:
        """Leave the part for its next task (after `delay` seconds when paced): written first, then
        sent, so a task whose worker dies in between is taken over by the older one (`start`)."""
        written = self.jobs.checkpoint(task.job, handed_on(part, self.wall()))
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
