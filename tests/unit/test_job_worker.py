"""The jobs worker's loop (issue #26) on fakes: page by page it paces, queues, checkpoints and reads
the job again; it hands the part on when its slice ends or a destination's queue is full; a twin
task, a cancel and an older task each stop it where they should."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.job_plan import CANCELLED, DONE, MAX_DELAY_S, RUNNING, STALL_S, Task
from chalicelib.job_worker import SLICE_S, JobError, JobWorker
from chalicelib.jobs import Jobs
from chalicelib.model import OutboundMessage, SendFailure
from chalicelib.naming import job_part_key
from tests.fakes import FakeClock, FakeNotes

NOW = 1_767_225_600.0


def message(n: int, destination: str = "orders") -> OutboundMessage:
    return OutboundMessage(f"m{n}", f"g{n % 3}", f"m{n}", f"body {n}", {}, "0", destination=destination)


@dataclass(frozen=True)
class Page:
    messages: list[OutboundMessage]
    position: Any
    counts: dict[str, Any]
    finished: bool


@dataclass
class Pages:
    """Pages of three messages each, `pages` of them; `took` records the positions asked for."""

    pages: int
    clock: FakeClock
    page_s: float = 1.0
    took: list[Any] = field(default_factory=list)
    hook: Any = None

    def next(self, position: Any) -> Page:
        self.took.append(position)
        self.clock.advance(self.page_s)
        n = (position or 0) + 1
        if self.hook:
            self.hook(n)
        return Page(
            [message(3 * n + i) for i in range(3)],
            n,
            {"scanned": 3, "queued": {"orders": 3}},
            n == self.pages,
        )


@dataclass
class Queue:
    backlog: int = 0
    refuse: bool = False
    sent: list[OutboundMessage] = field(default_factory=list)
    depth_reads: int = 0

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendFailure]:
        if self.refuse:
            return [SendFailure(m, "throttled") for m in messages]
        self.sent += messages
        return []

    def depth(self) -> int:
        self.depth_reads += 1
        return self.backlog


@dataclass
class TaskLog:
    sent: list[tuple[Task, int]] = field(default_factory=list)

    def send(self, tasks: Sequence[Task], delay_s: int = 0) -> None:
        self.sent += [(t, delay_s) for t in tasks]


class Counted:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value

    def flush(self) -> None:
        pass


@dataclass
class World:
    notes: FakeNotes
    jobs: Jobs
    clock: FakeClock
    tasks: TaskLog
    queue: Queue
    metrics: Counted

    def worker(self, pages: Pages) -> JobWorker:
        return JobWorker(
            self.jobs,
            self.tasks,
            {"orders": self.queue},
            marks={"orders": 300},
            rates={"orders": 10.0},
            pages=lambda job, part: pages,
            metrics=lambda destination: self.metrics,
            clock=self.clock.monotonic,
            wall=self.clock.time,
        )

    def job(self, dry_run: bool = False, parts: int = 1) -> dict[str, Any]:
        return self.jobs.create("backfill", ["orders"], parts, {"filter": None, "dry_run": dry_run})


@pytest.fixture
def world() -> World:
    notes, clock = FakeNotes(), FakeClock(NOW)
    return World(notes, Jobs(notes, clock.time), clock, TaskLog(), Queue(), Counted())


def plenty() -> int:
    return 900_000


def test_a_part_is_worked_page_by_page_to_its_end_and_the_job_finishes(world: World) -> None:
    job = world.job()
    pages = Pages(3, world.clock)
    report = world.worker(pages).work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["pages"], report["queued"]) == ("done", 3, 9)
    assert pages.took == [None, 1, 2]  # each page from the last checkpoint
    assert [m.message_id for m in world.queue.sent] == [f"m{n}" for n in range(3, 12)]
    part = world.jobs.part(job["id"], 0)
    assert (part["state"], part["version"], part["step"], part["counts"]) == (
        DONE,
        3,
        0,
        {"scanned": 9, "queued": {"orders": 9}},
    )
    assert world.jobs.get(job["id"])["state"] == DONE  # type: ignore[index]
    assert world.tasks.sent == [] and world.queue.depth_reads == 3
    assert world.metrics.counts == {"BackfillQueued": 9}


def test_a_full_queue_makes_the_part_wait_its_task_sent_again_delayed(world: World) -> None:
    job = world.job()
    world.queue.backlog = 700
    pages = Pages(3, world.clock)
    report = world.worker(pages).work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["pages"], report["delay_s"]) == ("paced", 0, 55)  # (700 - 150) / 10
    assert pages.took == [] and world.queue.sent == []
    assert world.tasks.sent == [(Task(job["id"], 0, 1), 55)]
    part = world.jobs.part(job["id"], 0)
    assert (part["step"], part["state"], part["updated_at"]) == (1, RUNNING, NOW)


def test_a_dry_run_reads_no_queue_depth(world: World) -> None:
    job = world.job(dry_run=True)
    world.queue.backlog = 10_000
    assert world.worker(Pages(2, world.clock)).work(Task(job["id"], 0, 0), plenty)["outcome"] == "done"
    assert world.queue.depth_reads == 0


@pytest.mark.parametrize(
    ("remaining_ms", "page_s", "pages_worked"),
    [
        (900_000, SLICE_S / 2.5, 2),  # the slice (SLICE_S) ends: no page that would run past it
        (20_000, 4.0, 2),  # half the remaining 20 s: 10 s, two pages of 4 s
        (20_000, 11.0, 1),  # the first page is always taken
    ],
)
def test_the_part_is_handed_on_before_its_slice_ends(
    world: World, remaining_ms: int, page_s: float, pages_worked: int
) -> None:
    job = world.job()
    report = world.worker(Pages(10, world.clock, page_s)).work(Task(job["id"], 0, 0), lambda: remaining_ms)
    assert (report["outcome"], report["pages"]) == ("continued", pages_worked)
    assert world.tasks.sent == [(Task(job["id"], 0, 1), 0)]
    assert world.jobs.part(job["id"], 0)["step"] == 1


def test_a_continued_part_resumes_from_its_checkpoint(world: World) -> None:
    job = world.job()
    pages = Pages(4, world.clock, SLICE_S / 2.5)
    world.worker(pages).work(Task(job["id"], 0, 0), plenty)
    (next_task, _), *_ = world.tasks.sent
    report = world.worker(pages).work(next_task, plenty)
    assert report["outcome"] == "done" and pages.took == [None, 1, 2, 3]


def test_a_twin_task_that_wrote_first_stops_the_other(world: World) -> None:
    """Two deliveries of one task work one part: the second to write its checkpoint stops."""
    job = world.job()

    def twin_writes(n: int) -> None:
        if n == 2:
            part = world.jobs.part(job["id"], 0)
            world.jobs.checkpoint(job["id"], part | {"position": 2})

    report = world.worker(Pages(5, world.clock, hook=twin_writes)).work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["pages"]) == ("stale", 2)
    assert world.jobs.part(job["id"], 0)["position"] == 2  # the twin's


def test_a_cancel_stops_the_part_at_its_next_page(world: World) -> None:
    job = world.job(parts=2)
    world.jobs.checkpoint(job["id"], world.jobs.part(job["id"], 1) | {"state": DONE})

    def cancel_after_the_first(n: int) -> None:
        if n == 1:
            world.jobs.cancel(job["id"])

    report = world.worker(Pages(5, world.clock, hook=cancel_after_the_first)).work(
        Task(job["id"], 0, 0), plenty
    )
    assert (report["outcome"], report["pages"]) == ("cancelled", 1)
    assert world.jobs.part(job["id"], 0)["state"] == CANCELLED
    assert world.jobs.get(job["id"])["state"] == CANCELLED  # type: ignore[index]
    assert world.tasks.sent == []


def test_a_task_of_a_cancelled_job_marks_its_part_and_queues_nothing(world: World) -> None:
    job = world.job()
    world.jobs.cancel(job["id"])
    pages = Pages(2, world.clock)
    assert world.worker(pages).work(Task(job["id"], 0, 0), plenty)["outcome"] == "cancel"
    assert pages.took == [] and world.jobs.part(job["id"], 0)["state"] == CANCELLED


def test_an_older_task_watches_and_takes_a_stalled_part_over(world: World) -> None:
    job = world.job()
    world.jobs.checkpoint(
        job["id"], world.jobs.part(job["id"], 0) | {"step": 3, "position": 7, "updated_at": NOW}
    )
    pages = Pages(9, world.clock)
    old = Task(job["id"], 0, 1)
    assert world.worker(pages).work(old, plenty)["outcome"] == "watch"
    assert world.tasks.sent == [(old, MAX_DELAY_S)] and pages.took == []
    world.clock.advance(STALL_S)
    assert world.worker(pages).work(old, plenty)["outcome"] == "done"
    assert pages.took == [7, 8]  # from the part's checkpoint


def test_a_page_not_wholly_queued_fails_the_task_before_its_checkpoint(world: World) -> None:
    job = world.job()
    world.queue.refuse = True
    with pytest.raises(JobError, match="3 message\\(s\\) for orders not queued; first m3: throttled"):
        world.worker(Pages(2, world.clock)).work(Task(job["id"], 0, 0), plenty)
    assert world.notes.load(job_part_key(job["id"], 0)) is None  # the task comes back, from the start


@pytest.mark.parametrize("step", [1, 5])
def test_a_task_for_a_step_the_part_never_had_does_nothing(world: World, step: int) -> None:
    job = world.job()
    pages = Pages(2, world.clock)
    assert world.worker(pages).work(Task(job["id"], 0, step), plenty)["outcome"] == "stale"
    assert pages.took == [] and world.tasks.sent == []


def test_a_task_of_no_job_does_nothing(world: World) -> None:
    pages = Pages(2, world.clock)
    assert (
        world.worker(pages).work(Task("6f1c2a9e-0000-4000-8000-000000000009", 0, 0), plenty)["outcome"]
        == "gone"
    )
    assert pages.took == []
