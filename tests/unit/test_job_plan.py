"""The decisions of backfill and replay jobs (issue #26), as tables: a task's shape, whether a worker
works a task, how long it waits while a destination's queue is full, and a job's progress."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.job_plan import (
    CANCELLED,
    DONE,
    MAX_DELAY_S,
    MIN_DELAY_S,
    RUNNING,
    STALL_S,
    Start,
    Task,
    TaskError,
    add_counts,
    advanced,
    default_max_queued,
    finished,
    handed_on,
    new_part,
    pace,
    progress,
    start,
)

JOB = "6f1c2a9e-0000-4000-8000-000000000001"


def test_a_task_is_read_back_as_it_was_written() -> None:
    task = Task(JOB, 3, 7)
    assert task.body() == f'{{"job":"{JOB}","part":3,"step":7}}'
    assert Task.parse(task.body()) == task


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"job": "j", "part": 0}',
        '{"job": "j", "part": 0, "step": 0, "extra": 1}',
        '{"job": "", "part": 0, "step": 0}',
        '{"job": 1, "part": 0, "step": 0}',
        '{"job": "j", "part": "0", "step": 0}',
        '{"job": "j", "part": true, "step": 0}',
        '{"job": "j", "part": 64, "step": 0}',
        '{"job": "j", "part": -1, "step": 0}',
        '{"job": "j", "part": 0, "step": -1}',
        '{"job": "j", "part": 0, "step": 1.0}',
    ],
)
def test_anything_else_is_not_a_task(body: str) -> None:
    with pytest.raises(TaskError):
        Task.parse(body)


def job(state: str = RUNNING, parts: int = 2) -> dict[str, Any]:
    return {"id": JOB, "kind": "backfill", "state": state, "destinations": ["orders"], "parts": parts}


NOW = 1_767_225_600.0


def part(step: int = 0, state: str = RUNNING, idle_s: float = 1.0) -> dict[str, Any]:
    return new_part(0) | {"step": step, "state": state, "version": step + 3, "updated_at": NOW - idle_s}


@pytest.mark.parametrize(
    ("job_note", "part_note", "task_step", "expected"),
    [
        (job(), new_part(0), 0, Start.WORK),  # the first task: no checkpoint yet
        (job(), part(4), 4, Start.WORK),  # a continuation, at the step it was sent for
        (job(), part(4, idle_s=STALL_S * 9), 4, Start.WORK),  # delivered again after its worker died
        (job(), part(5), 4, Start.WATCH),  # an older task while the part moves on: kept, in case
        (job(), part(5, idle_s=STALL_S - 1), 4, Start.WATCH),
        (job(), part(5, idle_s=STALL_S), 4, Start.WORK),  # the part lost its task: taken over
        (job(), part(4), 5, Start.STALE),  # a task from no step the part had
        (job(), part(4, DONE), 4, Start.STALE),  # the part finished: a late duplicate
        (job(), part(5, DONE, idle_s=STALL_S * 9), 4, Start.STALE),
        (job(), part(4, CANCELLED), 4, Start.STALE),
        (job(CANCELLED), part(4), 4, Start.CANCEL),  # stop, and say so in the part
        (job(CANCELLED), part(5), 4, Start.CANCEL),
        (job(DONE), part(4), 4, Start.STALE),
        (None, new_part(0), 0, Start.GONE),  # expired, or never ours
    ],
)
def test_a_worker_works_a_running_part_at_the_step_its_task_names_or_one_that_stalled(
    job_note: dict[str, Any] | None, part_note: dict[str, Any], task_step: int, expected: Start
) -> None:
    assert start(job_note, part_note, Task(JOB, 0, task_step), NOW) is expected


@pytest.mark.parametrize(
    ("rate", "mark"),
    [(0.5, 300), (1.0, 300), (5.0, 300), (10.0, 600), (200.0, 12_000), (2.5, 300), (5.01, 301)],
)
def test_the_default_high_water_mark_is_a_minute_of_the_rate_limit_and_at_least_300(
    rate: float, mark: int
) -> None:
    assert default_max_queued(rate) == mark


@pytest.mark.parametrize(
    ("backlogs", "expected"),
    [
        ({"orders": 0}, None),
        ({"orders": 599}, None),  # below the mark: queue the next page now
        ({"orders": 600}, 30),  # at the mark: (600 - 300) / 10 per second
        ({"orders": 700}, 40),
        ({"orders": 301}, None),
        ({"orders": 100_000}, MAX_DELAY_S),  # SQS delays 900 s at most
        ({"orders": 600, "crm": 10}, 30),
        ({"orders": 0, "crm": 100}, 75),  # the fullest destination decides: (100 - 25) / 1
        ({"orders": 1000, "crm": 100}, 75),  # (1000 - 300) / 10 = 70 < 75
        ({"orders": 0, "crm": 52}, 27),
    ],
)
def test_pacing_waits_while_a_destination_queue_holds_its_mark(
    backlogs: dict[str, int], expected: int | None
) -> None:
    marks, rates = {"orders": 600, "crm": 50}, {"orders": 10.0, "crm": 1.0}
    assert pace(backlogs, marks, rates) == expected


def test_pacing_waits_at_least_a_few_seconds() -> None:
    """A fast destination just over its mark: the task does not spin."""
    assert pace({"orders": 300}, {"orders": 300}, {"orders": 10_000.0}) == MIN_DELAY_S


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({}, {}, {}),
        ({}, {"scanned": 3}, {"scanned": 3}),
        ({"scanned": 3}, {"scanned": 2, "filtered": 1}, {"scanned": 5, "filtered": 1}),
        ({"queued": {"orders": 2}}, {"queued": {"orders": 1, "crm": 4}}, {"queued": {"orders": 3, "crm": 4}}),
        ({"queued": {"orders": 2}}, {}, {"queued": {"orders": 2}}),
        ({"filter_error": "first"}, {"filter_error": "second"}, {"filter_error": "first"}),  # text: kept
        ({}, {"filter_error": "second"}, {"filter_error": "second"}),
    ],
)
def test_counts_add_up_name_by_name(a: dict[str, Any], b: dict[str, Any], expected: dict[str, Any]) -> None:
    assert add_counts(a, b) == expected


def test_a_page_moves_the_part_on_and_adds_its_counts_keeping_its_step_and_version() -> None:
    first = advanced(new_part(1), {"pk": {"S": "a"}}, {"scanned": 2}, False, 10.0)
    assert first == {
        "part": 1,
        "state": RUNNING,
        "step": 0,
        "version": 0,
        "position": {"pk": {"S": "a"}},
        "counts": {"scanned": 2},
        "updated_at": 10.0,
    }
    last = advanced(first | {"version": 1}, None, {"scanned": 1}, True, 11.0)
    assert (last["state"], last["version"], last["position"], last["counts"]) == (
        DONE,
        1,
        None,
        {"scanned": 3},
    )
    assert handed_on(first, 12.0) == first | {"step": 1, "updated_at": 12.0}


@pytest.mark.parametrize(
    ("states", "done"),
    [
        ({}, False),
        ({0: DONE}, False),
        ({0: DONE, 1: RUNNING}, False),
        ({0: DONE, 1: DONE}, True),
        ({0: CANCELLED, 1: DONE}, True),
    ],
)
def test_a_job_is_finished_when_every_part_has_stopped(states: dict[int, str], done: bool) -> None:
    parts = {n: part(1, state) for n, state in states.items()}
    assert finished(job(), parts) is done


def test_progress_sums_the_parts_and_shows_each() -> None:
    parts = {
        0: new_part(0) | {"step": 3, "state": DONE, "counts": {"scanned": 5, "queued": {"orders": 4}}},
        1: new_part(1) | {"step": 1, "counts": {"scanned": 2, "queued": {"orders": 1}}},
    }
    shown = progress(job(parts=3), parts)
    assert shown["counts"] == {"scanned": 7, "queued": {"orders": 5}}
    assert shown["parts_done"] == 1
    assert [(p["part"], p["state"], p["step"]) for p in shown["part_states"]] == [
        (0, DONE, 3),
        (1, RUNNING, 1),
        (2, RUNNING, 0),  # not started yet
    ]
    assert shown["state"] == RUNNING and shown["id"] == JOB
