"""Job notes and the tasks queue on the emulator (issue #26): a note written only at the version it
was read at, notes read many at a time, tasks queued with a delay on the stage's standard queue."""

from __future__ import annotations

from chalicelib.job_plan import Task
from chalicelib.notes import Notes
from chalicelib.task_queue import TaskQueue
from tests.integration.conftest import Stack


def notes(stack: Stack) -> Notes:
    return Notes(stack.aws["dynamodb"], stack.env["TRICKLE_NOTES_TABLE"], 3600)


def test_a_note_is_replaced_only_at_the_version_it_was_read_at(stack: Stack) -> None:
    kept = notes(stack)
    assert kept.replace("job#a", {"n": 1}, 0)
    assert not kept.replace("job#a", {"n": 2}, 0)  # a second writer from version 0 loses
    assert kept.load("job#a") == {"n": 1, "version": 1}
    assert kept.replace("job#a", {"n": 3}, 1)
    assert not kept.replace("job#a", {"n": 4}, 1)
    assert not kept.replace("job#a", {"n": 5}, 7)
    assert kept.load("job#a") == {"n": 3, "version": 2}


def test_notes_are_read_many_at_a_time(stack: Stack) -> None:
    kept = notes(stack)
    for n in range(0, 150, 2):
        kept.save(f"job#b#{n}", {"n": n})
    found = kept.load_many([f"job#b#{n}" for n in range(150)] + ["job#b#0"])
    assert found == {f"job#b#{n}": {"n": n} for n in range(0, 150, 2)}


def test_tasks_go_to_the_stage_s_standard_queue_delayed_if_asked(stack: Stack) -> None:
    url = stack.env["TRICKLE_JOBS_QUEUE_URL"]
    TaskQueue(stack.aws["sqs"], url).send([Task("j", n, 0) for n in range(12)])
    TaskQueue(stack.aws["sqs"], url).send([Task("j", 0, 1)], delay_s=900)
    sqs = stack.aws["sqs"]
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        bodies += [m["Body"] for m in got]
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    assert sorted(Task.parse(b).part for b in bodies) == list(range(12))  # the delayed one is not visible yet
