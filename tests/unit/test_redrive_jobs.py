"""Redrive jobs (`chalicelib.redrive_jobs`): the route opens them, the destination's drain carries
them on, a slice per run; reading one changes nothing."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from chalicelib.dead_letters import RedriveFilter, RedriveReport
from chalicelib.redrive_jobs import MAX_OPEN, RedriveJobs, TooManyRedrivesError
from tests.fakes import FakeNotes

Call = tuple[RedriveFilter, bool]


class ScriptedRedriver:
    """Answers each pass with the next report of `reports` (or raises it), recording its arguments."""

    def __init__(self, *reports: RedriveReport | Exception) -> None:
        self.reports = list(reports)
        self.calls: list[Call] = []

    def __call__(self, wanted: RedriveFilter, use_move_task: bool, stop: Callable[[], bool]) -> RedriveReport:
        self.calls.append((wanted, use_move_task))
        answer = self.reports.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def jobs_of(notes: FakeNotes, destination: str = "orders") -> RedriveJobs:
    clock = itertools.count(1_000)
    ids = (f"00000000-0000-4000-8000-{n:012}" for n in itertools.count(1))
    return RedriveJobs(notes, destination, clock=lambda: float(next(clock)), new_id=lambda: next(ids))


def test_starting_a_job_moves_nothing_and_lists_it_for_the_drain() -> None:
    notes = FakeNotes()
    job = jobs_of(notes).start({"groups": ["a"], "message_ids": None})

    assert (job["state"], job["moved"], job["steps"], job["advanced_at"]) == ("running", 0, 0, None)
    assert notes.saved[f"redrive#orders#{job['id']}"] == job
    assert notes.sets == {"redrive#orders": {job["id"]}}
    assert jobs_of(notes).get(job["id"]) == job
    assert jobs_of(notes, "crm").get(job["id"]) is None  # another destination's jobs are its own


def test_the_drain_carries_the_jobs_on_oldest_first_until_they_are_done() -> None:
    notes = FakeNotes()
    jobs = jobs_of(notes)
    first = jobs.start({"groups": ["a"], "message_ids": None})
    second = jobs.start({"groups": None, "message_ids": None})
    redriver = ScriptedRedriver(
        RedriveReport(moved=3, interrupted=True),  # the first job's first slice ends the run's
        RedriveReport(moved=2, skipped_not_redrivable=1),  # the next run finishes it
        RedriveReport(method="move_task"),
    )
    stops = iter([False, True])

    assert jobs.advance(redriver, lambda: next(stops)) == 3
    assert jobs.advance(redriver, lambda: False) == 2

    assert redriver.calls == [
        (RedriveFilter(groups={"a"}), True),  # only a job's first pass may use the move task
        (RedriveFilter(groups={"a"}), False),
        (RedriveFilter(), True),
    ]
    done = jobs.get(first["id"])
    assert done is not None
    assert (done["state"], done["moved"], done["steps"], done["skipped_not_redrivable"]) == ("done", 5, 2, 1)
    assert done["advanced_at"] is not None
    moved = jobs.get(second["id"])
    assert moved is not None and (moved["state"], moved["method"]) == ("done", "move_task")
    assert notes.sets["redrive#orders"] == set()


def test_a_failed_step_is_kept_in_the_job_and_the_next_run_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notes = FakeNotes()
    jobs = jobs_of(notes)
    job = jobs.start({"groups": None, "message_ids": None})
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ReceiveMessage")
    redriver = ScriptedRedriver(refused, RedriveReport(moved=4))

    assert jobs.advance(redriver, lambda: False) == 0
    failed = jobs.get(job["id"])
    assert failed is not None and failed["state"] == "running" and "AccessDenied" in failed["last_error"]
    assert "redrive not carried on" in caplog.text

    assert jobs.advance(redriver, lambda: False) == 4
    done = jobs.get(job["id"])
    assert done is not None and done["state"] == "done" and "last_error" not in done
    assert redriver.calls[1][1] is True  # the failed pass was no step: the move task may still be tried


def test_an_id_whose_job_expired_is_taken_out() -> None:
    notes = FakeNotes()
    notes.add_member("redrive#orders", "00000000-0000-4000-8000-000000000009")

    assert jobs_of(notes).advance(ScriptedRedriver(), lambda: False) == 0
    assert notes.sets["redrive#orders"] == set()


def test_too_many_open_jobs_are_refused_with_what_to_do() -> None:
    notes = FakeNotes()
    jobs = jobs_of(notes)
    for _ in range(MAX_OPEN):
        jobs.start({"groups": None, "message_ids": None})

    with pytest.raises(TooManyRedrivesError, match="wait for one to be done"):
        jobs.start({"groups": None, "message_ids": None})
    assert len(notes.sets["redrive#orders"]) == MAX_OPEN
    jobs_of(notes, "crm").start({"groups": None, "message_ids": None})  # counted per destination
