"""The jobs worker's loop (issue #26) on fakes: page by page it queues in portions (its share of the
rate limit, the room below the mark), checkpoints and reads the job again; it hands the part on when
its slice ends (mid-page too, resumed where it stopped) or the mark holds it; a twin task, a cancel
and an older task each stop it where they should."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.job_plan import CANCELLED, DONE, HOLD_S, MAX_DELAY_S, RUNNING, STALL_S, Task
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
    """Pages of `size` messages each (none in a dry run, as a backfill's and a replay's pages),
    `pages` of them; `took` records the positions asked for."""

    pages: int
    clock: FakeClock
    page_s: float = 1.0
    took: list[Any] = field(default_factory=list)
    hook: Any = None
    size: int = 3
    dry_run: bool = False

    def next(self, position: Any) -> Page:
        self.took.append(position)
        self.clock.advance(self.page_s)
        n = (position or 0) + 1
        if self.hook:
            self.hook(n)
        messages = [] if self.dry_run else [message(self.size * n + i) for i in range(self.size)]
        return Page(messages, n, {"scanned": self.size, "queued": {"orders": len(messages)}}, n == self.pages)


@dataclass
class Queue:
    """A destination's queue: `backlog` more than what was sent to it, taken at `drain_per_s` by a
    drain on `clock` (none: nothing taken); `sent_at` when each message was sent, `peak` the most it
    held right after a send."""

    backlog: int = 0
    refuse: bool = False
    sent: list[OutboundMessage] = field(default_factory=list)
    depth_reads: int = 0
    clock: FakeClock | None = None
    drain_per_s: float = 0.0
    sent_at: list[float] = field(default_factory=list)
    peak: float = 0.0
    stale: bool = False  # the depth read says the queue is empty, whatever it holds
    on_send: Any = None
    _level: float = 0.0
    _at: float = 0.0

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendFailure]:
        if self.refuse:
            return [SendFailure(m, "throttled") for m in messages]
        if self.on_send:
            self.on_send()
        self.sent += messages
        now = self._drained()
        self.sent_at += [now] * len(messages)
        self._level += len(messages)
        self.peak = max(self.peak, self.backlog + self._level)
        return []

    def depth(self) -> int:
        self.depth_reads += 1
        self._drained()
        return 0 if self.stale else self.backlog + round(self._level)

    def _drained(self) -> float:
        now = self.clock.now if self.clock else 0.0
        self._level = max(0.0, self._level - (now - self._at) * self.drain_per_s)
        self._at = now
        return now


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

    def worker(
        self,
        pages: Pages,
        mark: int = 300,
        rate: float = 10.0,
        at_once: int = 10,
        period_s: float | None = None,
        last_run: Callable[[str], float | None] = lambda destination: None,
    ) -> JobWorker:
        return JobWorker(
            self.jobs,
            self.tasks,
            {"orders": self.queue},
            marks={"orders": mark},
            rates={"orders": rate},
            pages=lambda job, part: pages,
            metrics=lambda destination: self.metrics,
            at_once=at_once,
            periods={"orders": period_s},
            last_run=last_run,
            clock=self.clock.monotonic,
            wall=self.clock.time,
            sleep=self.clock.sleep,
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


@pytest.mark.parametrize(
    ("backlog", "delay_s", "held_s"),
    [
        (700, 55, 0.0),  # room 42 s off at 10/s: the task waits (700 - 150) / 10, at once
        (300, 15, HOLD_S),  # room 2 s off: short looks until HOLD_S has passed with none
    ],
)
def test_a_full_queue_holds_the_part_then_its_task_is_sent_again_delayed(
    world: World, backlog: int, delay_s: int, held_s: float
) -> None:
    """No drain takes from a queue at its mark (300): the part reads no page (a Scan for nothing)
    and sends its task again delayed by the time the rate takes to halve the backlog; only when
    room should come soon does the invocation wait for it, HOLD_S at most."""
    job = world.job()
    world.queue.backlog = backlog
    pages = Pages(3, world.clock)
    report = world.worker(pages).work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["pages"], report["delay_s"]) == ("paced", 0, delay_s)
    assert pages.took == [] and world.queue.sent == []
    assert world.tasks.sent == [(Task(job["id"], 0, 1), delay_s)]
    part = world.jobs.part(job["id"], 0)
    assert (part["step"], part["state"], part["updated_at"]) == (1, RUNNING, NOW + held_s)


def test_a_drain_stopping_mid_page_holds_the_part_there(world: World) -> None:
    """The drain takes 100/s, then stops after 1.5 s: the part queues 150 or so of a 300-message
    page up to the mark, is held HOLD_S, and leaves the page's progress to its delayed task."""
    job = world.job()
    world.queue.clock, world.queue.drain_per_s = world.clock, 100.0

    def drain_stops() -> None:
        if world.clock.now - NOW >= 1.5:
            world.queue.drain_per_s = 0.0

    world.queue.on_send = drain_stops
    pages = Pages(1, world.clock, page_s=0.0, size=300)
    report = world.worker(pages, mark=100, rate=100.0).work(Task(job["id"], 0, 0), plenty)
    assert report["outcome"] == "paced" and report["delay_s"] >= HOLD_S
    assert 100 <= report["queued"] < 300 and world.queue.peak <= 100
    part = world.jobs.part(job["id"], 0)
    assert (part["position"], part["sent"]) == (None, {"orders": world.queue.sent[-1].message_id})


class Runs:
    """A drain on a schedule: a run every `period_s` from `first` takes up to `budget` of the queue;
    its run note says when the last one started (`last`)."""

    def __init__(self, world: World, period_s: float, budget: int, first: float) -> None:
        self.queue, self.clock = world.queue, world.clock
        self.period_s, self.budget, self.first = period_s, budget, first
        self.ran = 0
        depth = world.queue.depth

        def read() -> int:  # the runs due by now have taken before the depth is read
            while self.clock.now >= self.first + self.ran * self.period_s:
                self.ran += 1
                self.queue._level = max(0.0, self.queue._level - self.budget)
            return depth()

        world.queue.depth = read  # type: ignore[method-assign]

    def last(self, destination: str) -> float | None:
        done = (self.clock.now - self.first) // self.period_s
        return self.first + done * self.period_s if done >= 0 else self.first - self.period_s


def test_between_a_scheduled_drain_s_runs_a_part_holding_a_page_waits_for_the_next_run(world: World) -> None:
    """A run every 12 s (the last 1 s ago, as its run note says) takes 100, the mark is 100: the part
    queues a 300-message page a mark at a time, one run after another, in one invocation: handed
    on, it would read the page again (a Scan); it reads the depth when a run is due, not between."""
    job = world.job()
    runs = Runs(world, 12.0, 100, first=NOW - 1.0)
    pages = Pages(1, world.clock, page_s=0.0, size=300)
    notes_read: list[float] = []

    def last_run(destination: str) -> float | None:
        notes_read.append(world.clock.now)
        return runs.last(destination)

    worker = world.worker(pages, mark=100, rate=100.0, period_s=12.0, last_run=last_run)
    report = worker.work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["pages"], report["queued"]) == ("done", 1, 300)
    assert pages.took == [None] and world.tasks.sent == [] and runs.ran == 3
    assert world.queue.peak <= 100 and world.queue.depth_reads <= 6
    assert len(notes_read) == 2  # the run note once a run: it changes no more often
    assert 23.0 <= world.clock.now - NOW < 24.0  # the runs at 11 s and 23 s


def test_between_a_scheduled_drain_s_runs_a_part_with_no_page_comes_back_when_the_next_is_due(
    world: World,
) -> None:
    """The queue is at the mark before the part reads a page: it reads none and hands its task on at
    once, delayed until the next run is due (11 s), rather than wait in its invocation."""
    job = world.job()
    world.queue.backlog = 100
    runs = Runs(world, 12.0, 100, first=NOW - 1.0)
    pages = Pages(1, world.clock, page_s=0.0, size=300)
    worker = world.worker(pages, mark=100, rate=100.0, period_s=12.0, last_run=runs.last)
    report = worker.work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["pages"], report["delay_s"]) == ("paced", 0, 11)
    assert pages.took == [] and world.tasks.sent == [(Task(job["id"], 0, 1), 11)]
    assert world.clock.now - NOW < 1.0


def test_a_scheduled_run_due_within_the_hold_is_waited_for_in_the_invocation(world: World) -> None:
    """The next run is due in 3 s: the part sleeps until then and queues the rest as it takes."""
    job = world.job()
    runs = Runs(world, 12.0, 100, first=NOW - 9.0)
    pages = Pages(1, world.clock, page_s=0.0, size=200)
    worker = world.worker(pages, mark=100, rate=100.0, period_s=12.0, last_run=runs.last)
    report = worker.work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["queued"]) == ("done", 200)
    assert world.tasks.sent == [] and runs.ran == 2  # the one 9 s ago, and the one it waited for
    assert 3.0 <= world.clock.now - NOW < 4.0


def test_a_scheduled_drain_not_taking_leaves_the_part_to_its_delayed_task(world: World) -> None:
    """Paused: its runs take nothing (the note says the last started long ago); the part waits for
    the next run due (8 s) and while it may be under way (3 s, a quarter period), then hands its
    task on until the one after: no invocation held longer."""
    job = world.job()
    pages = Pages(1, world.clock, page_s=0.0, size=300)
    worker = world.worker(
        pages, mark=100, rate=100.0, period_s=12.0, last_run=lambda destination: NOW - 100.0
    )
    report = worker.work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["queued"], report["delay_s"]) == ("paced", 100, 9)
    assert 11.0 <= world.clock.now - NOW < 12.0


def test_a_part_of_several_queues_into_its_share_of_the_room(world: World) -> None:
    """Four parts running: one alone at an untaken queue stops short of the mark (70 of 100), so the
    four reading the same depth together would not push it past the mark."""
    job = world.job(parts=4)
    pages = Pages(1, world.clock, page_s=0.0, size=300)
    report = world.worker(pages, mark=100, rate=100.0).work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["queued"]) == ("paced", 70)
    assert world.queue.peak == 70


def test_a_page_is_queued_in_portions_as_the_drain_makes_room(world: World) -> None:
    """A 200-message page, a mark of 100, a drain taking 100/s: the backlog never passes the mark,
    the page is queued whole in about the time the drain takes the rest, and checkpointed once."""
    job = world.job()
    world.queue.clock, world.queue.drain_per_s = world.clock, 100.0
    pages = Pages(1, world.clock, page_s=0.0, size=200)
    report = world.worker(pages, mark=100, rate=100.0).work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["pages"], report["queued"]) == ("done", 1, 200)
    assert [m.message_id for m in world.queue.sent] == [f"m{n}" for n in range(200, 400)]
    assert world.queue.peak <= 100
    assert 1.0 <= world.clock.now - NOW <= 1.5  # 100 at once, the other 100 as the drain took them
    assert world.jobs.part(job["id"], 0)["version"] == 1  # one checkpoint, after the whole page


def test_a_stale_depth_lets_a_part_queue_no_faster_than_its_share_of_the_rate(world: World) -> None:
    """The depth read says empty (SQS's approximate count lagging): the tokens still hold the part
    to the rate (10/s, its bucket a portion: 20), so the queue grows at the rate, not at once."""
    job = world.job()
    world.queue.clock, world.queue.stale = world.clock, True
    report = world.worker(Pages(1, world.clock, page_s=0.0, size=120)).work(Task(job["id"], 0, 0), plenty)
    assert (report["outcome"], report["queued"]) == ("done", 120)
    for n, at in enumerate(world.queue.sent_at):
        assert n < 20 + (at - NOW) * 10.0 + 1e-9  # by then: the bucket, and 10 a second since
    assert world.clock.now - NOW >= 10.0  # (120 - 20) / 10


@pytest.mark.parametrize(
    ("done", "at_once"),
    [
        ((1, 3), 10),  # of 4 parts, 2 done: 2 running
        ((), 2),  # none done, but the jobs function works 2 at once: the others wait their turn
    ],
)
def test_the_rate_is_shared_among_the_job_s_parts_running_at_once(
    world: World, done: tuple[int, ...], at_once: int
) -> None:
    """This part queues at half the rate (10/s over 2: 5/s)."""
    job = world.job(parts=4)
    for n in done:
        world.jobs.checkpoint(job["id"], world.jobs.part(job["id"], n) | {"state": DONE})
    world.queue.clock, world.queue.stale = world.clock, True
    pages = Pages(1, world.clock, page_s=0.0, size=70)
    world.worker(pages, at_once=at_once).work(Task(job["id"], 0, 0), plenty)
    assert world.clock.now - NOW == pytest.approx(10.0, abs=STEP_TOLERANCE_S)  # (70 - 20) / 5


STEP_TOLERANCE_S = 1.0  # a part looks again in steps of up to a second


def test_a_part_takes_up_the_rate_another_leaves_when_it_finishes(world: World) -> None:
    """Of 2 parts, the other finishes as this one starts a 100-message page at 10/s: 5/s until it
    reads the parts again (PARTS_READ_S), then 10/s; not 5/s to the page's end (16 s)."""
    job = world.job(parts=2)

    def other_finishes() -> None:
        world.jobs.checkpoint(job["id"], world.jobs.part(job["id"], 1) | {"state": DONE})

    world.queue.clock, world.queue.stale, world.queue.on_send = world.clock, True, other_finishes
    world.worker(Pages(1, world.clock, page_s=0.0, size=100)).work(Task(job["id"], 0, 0), plenty)
    # 20 at once, 25 in 5 s at 5/s, the other 55 at 10/s
    assert world.clock.now - NOW == pytest.approx(10.5, abs=STEP_TOLERANCE_S)


def test_a_slice_ending_mid_page_hands_on_and_the_next_task_resumes_after_what_was_queued(
    world: World,
) -> None:
    """At 10/s a 200-message page takes 18 s; the slice is 5 s (half of 10 s remaining): the part
    is handed on mid-page with the last id queued in its note, not its position; the next task reads
    the page again and queues only the rest, then checkpoints."""
    job = world.job()
    world.queue.clock, world.queue.drain_per_s = world.clock, 10.0
    pages = Pages(1, world.clock, page_s=0.0, size=200)
    first = world.worker(pages).work(Task(job["id"], 0, 0), lambda: 10_000)
    assert (first["outcome"], first["pages"], first["delay_s"]) == ("continued", 0, 0)
    assert 20 <= first["queued"] < 200
    part = world.jobs.part(job["id"], 0)
    assert (part["position"], part["sent"]) == (None, {"orders": world.queue.sent[-1].message_id})
    (next_task, _), *_ = world.tasks.sent
    second = world.worker(pages).work(next_task, plenty)
    assert (second["outcome"], first["queued"] + second["queued"]) == ("done", 200)
    assert [m.message_id for m in world.queue.sent] == [f"m{n}" for n in range(200, 400)]  # once each
    assert pages.took == [None, None]
    assert world.jobs.part(job["id"], 0)["sent"] == {}


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
