"""Job notes (issue #26): a job and its parts are written only at the step they were read at, the
running ones are listed, a cancel and a finish never undo each other."""

from __future__ import annotations

import itertools

import pytest

from chalicelib.job_plan import CANCELLED, DONE, MAX_ACTIVE, RUNNING, advanced, new_part
from chalicelib.jobs import Jobs, TooManyJobsError
from chalicelib.naming import active_jobs_key, job_key, job_part_key
from tests.fakes import FakeClock, FakeNotes


def ids() -> itertools.count[int]:
    return itertools.count(1)


@pytest.fixture
def notes() -> FakeNotes:
    return FakeNotes()


@pytest.fixture
def jobs(notes: FakeNotes) -> Jobs:
    counter = ids()
    return Jobs(notes, FakeClock().time, lambda: f"00000000-0000-4000-8000-{next(counter):012}")


def test_a_new_job_is_running_listed_and_none_of_its_parts_started(jobs: Jobs, notes: FakeNotes) -> None:
    job = jobs.create("backfill", ["orders", "crm"], 3, {"filter": None, "dry_run": False})
    assert job["state"] == RUNNING and job["parts"] == 3 and job["version"] == 1
    assert notes.members(active_jobs_key()) == {job["id"]}
    assert jobs.get(job["id"]) == job
    assert jobs.part(job["id"], 2) == new_part(2)
    assert [j["id"] for j in jobs.active()] == [job["id"]]
    assert not any(key.startswith(job_part_key(job["id"], 0)) for key in notes.saved)


def test_ids_that_are_not_job_ids_find_nothing(jobs: Jobs) -> None:
    assert jobs.get("job#../x") is None
    assert jobs.view("not-an-id", "backfill") is None


def test_a_job_is_viewed_only_as_its_own_kind(jobs: Jobs) -> None:
    job = jobs.create("backfill", ["orders"], 1, {})
    assert jobs.view(job["id"], "replay") is None
    view = jobs.view(job["id"], "backfill")
    assert view is not None and view["parts_done"] == 0


def test_only_so_many_jobs_run_at_once(jobs: Jobs) -> None:
    for _ in range(MAX_ACTIVE):
        jobs.create("backfill", ["orders"], 1, {})
    with pytest.raises(TooManyJobsError, match="cancel one"):
        jobs.create("backfill", ["orders"], 1, {})


def test_a_checkpoint_is_written_once_per_version(jobs: Jobs) -> None:
    job = jobs.create("backfill", ["orders"], 1, {})
    read = jobs.part(job["id"], 0)
    twin = jobs.part(job["id"], 0)  # a duplicate task read the same version
    written = jobs.checkpoint(job["id"], advanced(read, {"k": 1}, {"scanned": 1}, False, 1.0))
    assert written is not None and written == jobs.part(job["id"], 0)
    assert jobs.checkpoint(job["id"], advanced(twin, {"k": 9}, {"scanned": 9}, False, 1.0)) is None
    now = jobs.part(job["id"], 0)
    assert (now["version"], now["position"], now["counts"]) == (1, {"k": 1}, {"scanned": 1})
    assert jobs.checkpoint(job["id"], advanced(written, {"k": 2}, {"scanned": 1}, False, 2.0)) is not None
    assert jobs.part(job["id"], 0)["counts"] == {"scanned": 2}


def test_the_last_part_to_stop_finishes_the_job(jobs: Jobs, notes: FakeNotes) -> None:
    job = jobs.create("backfill", ["orders"], 2, {})
    jobs.checkpoint(job["id"], advanced(jobs.part(job["id"], 0), None, {}, True, 1.0))
    assert not jobs.finish_if_done(job["id"])
    assert jobs.get(job["id"])["state"] == RUNNING  # type: ignore[index]
    jobs.checkpoint(job["id"], advanced(jobs.part(job["id"], 1), None, {}, True, 2.0))
    assert jobs.finish_if_done(job["id"])
    finished = jobs.get(job["id"])
    assert finished is not None and finished["state"] == DONE and finished["finished_at"] is not None
    assert notes.members(active_jobs_key()) == set()
    assert jobs.active() == []


def test_a_cancel_stops_a_running_job_and_never_undoes_a_finish(jobs: Jobs, notes: FakeNotes) -> None:
    running = jobs.create("backfill", ["orders"], 1, {})
    cancelled = jobs.cancel(running["id"])
    assert cancelled is not None and cancelled["state"] == CANCELLED
    assert notes.members(active_jobs_key()) == set()
    assert jobs.cancel(running["id"]) == cancelled  # again: as it is
    done = jobs.create("backfill", ["orders"], 1, {})
    jobs.checkpoint(done["id"], advanced(jobs.part(done["id"], 0), None, {}, True, 1.0))
    jobs.finish_if_done(done["id"])
    assert jobs.cancel(done["id"])["state"] == DONE  # type: ignore[index]
    assert jobs.cancel("00000000-0000-4000-8000-999999999999") is None


def test_a_finish_after_a_cancel_leaves_the_job_cancelled(jobs: Jobs) -> None:
    job = jobs.create("backfill", ["orders"], 1, {})
    jobs.cancel(job["id"])
    jobs.checkpoint(job["id"], jobs.part(job["id"], 0) | {"state": CANCELLED})
    assert jobs.finish_if_done(job["id"])
    assert jobs.get(job["id"])["state"] == CANCELLED  # type: ignore[index]


def test_the_active_list_shows_running_jobs_only_oldest_first(jobs: Jobs, notes: FakeNotes) -> None:
    first = jobs.create("backfill", ["orders"], 1, {})
    second = jobs.create("replay", ["crm"], 2, {})
    notes.add_member(active_jobs_key(), "00000000-0000-4000-8000-999999999999")  # expired: no note
    notes.saved[job_key(first["id"])]["state"] = DONE  # finished, not yet unlisted
    assert [j["id"] for j in jobs.active()] == [second["id"]]
