"""The decisions of backfill and replay jobs (issue #26), as tables: a task's shape, whether a worker
works a task, how much of a page it queues now and how long it waits for the rest, and a job's
progress."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.job_plan import (
    CANCELLED,
    DONE,
    HOLD_S,
    MAX_DELAY_S,
    MID_PAGE_WAIT_S,
    MIN_DELAY_S,
    RUNNING,
    STALL_S,
    STEP_MAX_S,
    STEP_MIN_S,
    Start,
    Task,
    TaskError,
    add_counts,
    advanced,
    bucket,
    default_max_queued,
    drain_pace,
    estimate,
    finished,
    handed_on,
    held,
    least,
    look_again,
    new_part,
    next_run_in,
    pace,
    portion,
    progress,
    refill,
    resume_at,
    room,
    running_parts,
    start,
    wait_s,
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
    ("rate", "period_s", "budget", "mark"),
    [
        (100.0, None, 500, 100),  # runs back to back (or no schedule known): a second of the rate
        (100.0, 0.5, 500, 100),  # never less than a second
        (0.5, None, 500, 20),  # never less than two SendMessageBatch calls
        (10.0, None, 500, 20),
        (20.5, None, 500, 21),
        (2500.0, None, 500, 250),  # no more than half a run's budget: live items fit in the run
        (100.0, 60.0, 500, 250),  # Rate(1 minute): a run's worth, at most half its budget
        (4.0, 60.0, 500, 240),  # a minute of a slow API
        (5.0, 120.0, 100_000, 600),  # Rate(2 minutes), a large budget: the rate over the period
        (0.1, 60.0, 500, 20),
    ],
)  # fmt: skip
def test_the_default_high_water_mark_is_what_one_run_of_the_drain_takes(
    rate: float, period_s: float | None, budget: int, mark: int
) -> None:
    assert default_max_queued(rate, period_s, budget) == mark


@pytest.mark.parametrize(
    ("backlogs", "expected"),
    [
        ({"orders": 600}, 30),  # at the mark: (600 - 300) / 10 per second
        ({"orders": 700}, 40),
        ({"orders": 599}, 30),  # just below it (the room is short of a portion): 29.9 s
        ({"orders": 301}, MIN_DELAY_S),  # 0.1 s: a few seconds at least
        ({"orders": 0}, MIN_DELAY_S),
        ({"orders": 100_000}, MAX_DELAY_S),  # SQS delays 900 s at most
        ({"orders": 600, "crm": 10}, 30),
        ({"orders": 0, "crm": 100}, 75),  # the fullest destination decides: (100 - 25) / 1
        ({"orders": 1000, "crm": 100}, 75),  # (1000 - 300) / 10 = 70 < 75
        ({"orders": 0, "crm": 52}, 27),
    ],
)
def test_a_part_the_mark_holds_waits_for_the_fullest_queue_to_come_down_to_half_its_mark(
    backlogs: dict[str, int], expected: int
) -> None:
    marks, rates = {"orders": 600, "crm": 50}, {"orders": 10.0, "crm": 1.0}
    assert pace(backlogs, marks, rates) == expected


def test_pacing_waits_at_least_a_few_seconds() -> None:
    """A fast destination just over its mark: the task does not spin."""
    assert pace({"orders": 300}, {"orders": 300}, {"orders": 10_000.0}) == MIN_DELAY_S


@pytest.mark.parametrize(
    ("states", "at_once", "running"),
    [
        ({}, 10, 3),  # no part has written its note yet: all running
        ({0: DONE}, 10, 2),
        ({0: DONE, 1: CANCELLED}, 10, 1),
        ({0: DONE, 1: DONE, 2: DONE}, 10, 1),  # the part asking counts, whatever the notes say
        ({0: RUNNING, 2: RUNNING}, 10, 3),
        ({}, 2, 2),  # the jobs function works 2 at once: the third's task waits its turn
        ({0: DONE}, 2, 2),
        ({0: DONE, 1: DONE}, 2, 1),
    ],
)
def test_a_destination_s_rate_is_shared_among_the_parts_running_at_once(
    states: dict[int, str], at_once: int, running: int
) -> None:
    parts = {n: part(1, state) for n, state in states.items()}
    assert running_parts(job(parts=3), parts, at_once) == running


@pytest.mark.parametrize(
    ("tokens", "elapsed_s", "share", "expected"),
    [
        (0.0, 0.5, 100.0, 50.0),  # half a second of a 100/s share
        (150.0, 1.0, 100.0, 200.0),  # never more than two seconds' worth
        (0.0, 1.0, 12.5, 12.5),
        (15.0, 10.0, 12.5, 25.0),
        (15.0, 10.0, 5.0, 20.0),  # a small share: a portion's worth (20) at most
        (-3.0, 0.1, 10.0, -2.0),
        (5.0, 0.0, 1.0, 5.0),
    ],
)
def test_a_part_s_tokens_refill_at_its_share_up_to_a_portion_or_two_seconds_of_it(
    tokens: float, elapsed_s: float, share: float, expected: float
) -> None:
    assert refill(tokens, elapsed_s, share) == pytest.approx(expected)
    assert bucket(share) == max(20.0, 2 * share)


@pytest.mark.parametrize(
    ("pending", "mark", "expected"),
    [
        (200, 100, 20),
        (7, 100, 7),  # the page's rest
        (20, 100, 20),
        (200, 40, 20),
        (200, 39, 10),  # half the mark in whole calls
        (200, 20, 10),  # the smallest default mark: a call's worth while it still holds 10
        (200, 15, 10),
        (200, 10, 10),  # one call at least
        (5, 10, 5),
    ],
)
def test_a_portion_is_two_send_calls_or_the_page_s_rest_at_most_half_the_mark(
    pending: int, mark: int, expected: int
) -> None:
    assert least(pending, mark) == expected
    assert least(pending, mark, 1) == expected  # a part running alone has the whole mark


@pytest.mark.parametrize(
    ("pending", "mark", "running", "expected"),
    [
        (200, 100, 4, 10),  # a share of 25: half of it in whole calls, a call at least
        (200, 160, 4, 20),  # a share of 40
        (200, 20, 4, 10),  # a share below a call's worth is a call's worth
        (7, 100, 4, 7),
    ],
)
def test_parts_running_together_each_look_for_half_their_share_of_the_mark(
    pending: int, mark: int, running: int, expected: int
) -> None:
    assert least(pending, mark, running) == expected


@pytest.mark.parametrize(
    ("backlog", "mark", "running", "expected"),
    [
        (0, 100, 1, 100),
        (40, 100, 1, 60),
        (130, 100, 1, -30),
        (0, 100, 4, 25),  # four parts: a quarter of the mark each, so together they fill it, not 4x
        (60, 100, 4, 10),  # and a quarter of the backlog each
        (61, 100, 4, 9),
        (100, 100, 4, 0),
        (0, 20, 4, 10),  # a mark of fewer than a call per part: a call's worth each
        (0, 100, 3, 34),
    ],
)
def test_a_part_s_room_is_its_share_of_the_mark_less_its_share_of_the_backlog(
    backlog: int, mark: int, running: int, expected: int
) -> None:
    assert room(backlog, mark, running) == expected


def test_parts_sharing_a_queue_fill_it_to_the_mark_not_past_it() -> None:
    """Four parts reading the same depth, one after another, each queueing what its room allows:
    the queue ends at the mark, where each alone would have been allowed the whole room."""
    mark, backlog = 100, 20
    depth_read = backlog
    for _ in range(4):
        backlog += portion(200, 100.0, depth_read, mark, 4)
    assert backlog == mark


@pytest.mark.parametrize(
    ("pending", "tokens", "backlog", "mark", "expected"),
    [
        (200, 100.0, 0, 100, 100),  # a 100/s share's full bucket, an empty queue
        (200, 100.0, 40, 100, 60),  # the room below the mark
        (200, 100.0, 45, 100, 50),  # in whole SendMessageBatch calls
        (200, 100.0, 85, 100, 0),  # room for less than a portion (20): wait
        (200, 19.9, 0, 100, 0),  # tokens for less than a portion: wait
        (200, 37.5, 0, 100, 30),
        (15, 16.0, 80, 100, 15),  # the page's rest, whole
        (15, 14.0, 80, 100, 0),
        (200, 100.0, 100, 100, 0),  # at the mark
        (200, 100.0, 250, 100, 0),  # above it
        (200, 100.0, 3, 15, 10),  # a mark below a portion: a call's worth
        (200, 100.0, 0, 10_000, 100),  # a far mark: the tokens decide
    ],
)
def test_a_part_queues_what_its_tokens_and_the_room_below_the_mark_allow(
    pending: int, tokens: float, backlog: int, mark: int, expected: int
) -> None:
    assert portion(pending, tokens, backlog, mark) == expected
    assert portion(pending, tokens, backlog, mark, 1) == expected


@pytest.mark.parametrize(
    ("pending", "tokens", "backlog", "mark", "running", "expected"),
    [
        (200, 100.0, 0, 100, 4, 20),  # its room of 25 in whole calls
        (200, 100.0, 60, 100, 4, 10),  # room 10: a call (its least)
        (200, 100.0, 61, 100, 4, 0),  # room 9: wait
        (5, 100.0, 80, 100, 4, 5),  # the page's rest fits its room
        (200, 100.0, 0, 20, 4, 10),  # a small mark: a call's worth each
    ],
)
def test_a_part_running_with_others_queues_into_its_share_of_the_room(
    pending: int, tokens: float, backlog: int, mark: int, running: int, expected: int
) -> None:
    assert portion(pending, tokens, backlog, mark, running) == expected


@pytest.mark.parametrize(
    ("pending", "tokens", "share", "backlog", "mark", "rate", "expected", "mark_holds"),
    [
        (200, 10.0, 12.5, 0, 100, 100.0, 0.8, False),  # 10 tokens short at 12.5/s
        (200, 20.0, 12.5, 90, 100, 100.0, 0.1, True),  # 10 of room short, the drain takes 100/s
        (200, 5.0, 12.5, 90, 100, 100.0, 1.2, True),  # both short: the longer
        (200, 50.0, 100.0, 250, 100, 100.0, 1.7, True),  # above the mark: down to it and a portion
        (5, 0.0, 1.0, 0, 100, 1.0, 5.0, False),  # the page's last 5 at 1/s
        (200, 100.0, 100.0, 100, 100, 100.0, 0.2, True),  # at the mark: a portion of room
    ],
)
def test_a_part_looks_again_when_tokens_or_room_for_a_portion_should_be_there(
    pending: int,
    tokens: float,
    share: float,
    backlog: int,
    mark: int,
    rate: float,
    expected: float,
    mark_holds: bool,
) -> None:
    assert wait_s(pending, tokens, share, backlog, mark, rate) == pytest.approx(expected)
    assert held(pending, backlog, mark) is mark_holds


@pytest.mark.parametrize(
    ("backlog", "expected", "mark_holds"),
    [
        (0, 0.0, False),  # room of 25
        (70, 0.12, True),  # room 7 of the 10 it looks for: 3 short, 12 to be taken at 100/s (4 parts)
        (100, 0.4, True),
        (60, 0.0, False),
    ],
)
def test_a_part_running_with_others_waits_for_room_in_its_share(
    backlog: int, expected: float, mark_holds: bool
) -> None:
    assert wait_s(200, 100.0, 25.0, backlog, 100, 100.0, 4) == pytest.approx(expected)
    assert held(200, backlog, 100, 4) is mark_holds


@pytest.mark.parametrize(
    ("wait", "held_s", "expected"),
    [
        (0.8, None, 0.8),
        (0.01, None, STEP_MIN_S),  # not a spin
        (30.0, None, STEP_MAX_S),  # tokens only: a look each second (no AWS call until they are there)
        (0.1, 0.0, STEP_MIN_S),  # the mark holds it, room should come soon
        (0.1, HOLD_S - 0.5, STEP_MIN_S),
        (0.1, HOLD_S, None),  # held that long: the drain is not taking; the task waits, not the worker
        (HOLD_S + 1, 0.0, None),  # room is further off than that: at once
        (HOLD_S + 1, None, STEP_MAX_S),
    ],
)
def test_a_part_waits_short_steps_unless_the_mark_holds_it_long(
    wait: float, held_s: float | None, expected: float | None
) -> None:
    assert look_again(wait, held_s) == expected
    assert look_again(wait, held_s, None) == expected  # a drain run back to back, or not yet run


@pytest.mark.parametrize(
    ("last_started", "period_s", "now", "expected"),
    [
        (None, 60.0, 1000.0, None),  # no run yet
        (900.0, None, 1000.0, None),  # back to back
        (970.0, 60.0, 1000.0, 30.0),  # due at 1030
        (995.0, 60.0, 1000.0, 55.0),  # the run due at 995 has run (its note): asleep until the next
        (940.0, 60.0, 1000.0, 0.0),  # due now, not in the note yet
        (930.0, 60.0, 1000.0, 0.0),  # due 10 s ago: a run may start late, and takes a while
        (926.0, 60.0, 1000.0, 0.0),
        (925.0, 60.0, 1000.0, 45.0),  # 15 s: the grace is over
        (924.0, 60.0, 1000.0, 44.0),
        (700.0, 60.0, 1000.0, 0.0),  # runs since that the note does not show (each tick counts)
        (995.0, 12.0, 1000.0, 7.0),
        (988.0, 12.0, 1000.0, 0.0),
        (985.0, 12.0, 1000.0, 9.0),  # a quarter period's grace (3 s) for a short period
    ],
)
def test_a_scheduled_drain_s_next_run_is_due_a_period_after_its_last_started(
    last_started: float | None, period_s: float | None, now: float, expected: float | None
) -> None:
    assert next_run_in(last_started, period_s, now) == expected


@pytest.mark.parametrize(
    ("wait", "held_s", "next_run_s", "expected"),
    [
        (0.1, None, 30.0, STEP_MIN_S),  # not held: as ever
        (0.1, 0.0, 30.0, None),  # held, the next run 30 s off: the task comes back then (`pace`)
        (0.1, 0.0, 3.0, 3.0),  # due within HOLD_S: asleep until then
        (0.1, 1.0, 3.0, 3.0),
        (0.1, 3.0, 3.0, None),  # that would be past HOLD_S
        (0.1, 0.0, 0.01, STEP_MIN_S),
        (0.1, 0.0, 0.0, STEP_MIN_S),  # a run due or under way: short steps, HOLD_S at most
        (0.1, HOLD_S, 0.0, None),
        (0.1, 2.0, None, STEP_MIN_S),  # no run yet: as back to back
        (30.0, 0.0, 3.0, 3.0),  # the run makes room sooner than the rate says
    ],
)
def test_a_part_held_between_scheduled_runs_comes_back_when_the_next_is_due(
    wait: float, held_s: float | None, next_run_s: float | None, expected: float | None
) -> None:
    assert look_again(wait, held_s, next_run_s) == expected


@pytest.mark.parametrize(
    ("held_s", "next_run_s", "expected"),
    [
        (0.0, 30.0, 30.0),  # holding the rest of a page: asleep until the run, not its Scan again
        (50.0, 30.0, 30.0),
        (0.0, MID_PAGE_WAIT_S, MID_PAGE_WAIT_S),
        (0.0, MID_PAGE_WAIT_S + 1, None),  # the run too far off: handed on, the page read again then
        (0.0, 0.0, STEP_MIN_S),  # a run under way: short steps, HOLD_S at most
        (HOLD_S, 0.0, None),
        (HOLD_S, None, None),
    ],
)
def test_a_part_holding_the_rest_of_a_page_waits_for_the_next_run(
    held_s: float, next_run_s: float | None, expected: float | None
) -> None:
    assert look_again(0.1, held_s, next_run_s, mid_page=True) == expected


@pytest.mark.parametrize(
    ("next_run_s", "expected"),
    [
        (None, MIN_DELAY_S),
        (0.0, MIN_DELAY_S),
        (42.3, 43),  # no sooner than the run that makes the room
        (5000.0, MAX_DELAY_S),
    ],
)
def test_a_part_between_scheduled_runs_is_paced_until_the_next_is_due(
    next_run_s: float | None, expected: int
) -> None:
    assert pace({"orders": 100}, {"orders": 100}, {"orders": 100.0}, next_run_s) == expected
    assert pace({"orders": 6000}, {"orders": 100}, {"orders": 100.0}, next_run_s) == max(expected, 60)


@pytest.mark.parametrize(
    ("ids", "last", "expected"),
    [
        (["a", "b", "c"], None, 0),  # nothing of the page queued yet
        (["a", "b", "c"], "b", 2),
        (["a", "b", "c"], "c", 3),
        (["a", "c"], "b", 0),  # the page read again differs: all of it (deduplication drops the sent)
        (["x", "a", "b", "c"], "b", 3),  # an item written since, before it: the stream carries it
    ],
)
def test_a_page_resumes_after_the_last_message_a_handed_on_part_queued(
    ids: list[str], last: str | None, expected: int
) -> None:
    assert resume_at(ids, last) == expected


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
        "sent": {},
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
    midway = handed_on(first, 12.0, {"orders": "m7"})
    assert midway == first | {"step": 1, "updated_at": 12.0, "sent": {"orders": "m7"}}
    assert advanced(midway, None, {}, True, 13.0)["sent"] == {}  # the next page starts whole


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


@pytest.mark.parametrize(
    ("rate", "period_s", "budget", "expected"),
    [
        (100.0, None, 500, 100.0),  # back to back: the rate limit
        (100.0, 60.0, 500, 500 / 60),  # app.py's Rate(1 minute): 500 a minute at most
        (2.0, 60.0, 500, 2.0),  # a slow API: its rate limit still
        (100.0, 60.0, 20_000, 100.0),
    ],
)
def test_a_drain_takes_its_rate_limit_and_on_a_schedule_a_run_s_budget_a_period(
    rate: float, period_s: float | None, budget: int, expected: float
) -> None:
    assert drain_pace(rate, period_s, budget) == pytest.approx(expected)


def test_a_dry_run_s_estimate_is_its_messages_at_their_drain_s_pace() -> None:
    paces = {"orders": 500 / 60, "crm": 2.0, "idle": 0.0}
    assert estimate({"orders": 100_000, "crm": 7, "idle": 3, "gone": 5}, paces) == {
        "orders": {"messages": 100_000, "at_most_per_s": 8.33, "seconds_at_least": 12_000},  # 3 h 20 min
        "crm": {"messages": 7, "at_most_per_s": 2.0, "seconds_at_least": 4},
    }
