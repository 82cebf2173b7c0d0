"""Backfill (issue #26) on the emulator: the table's items through the routes, a parallel Scan in
segments worked by the `jobs` function from the tasks queue, as Lambda's trigger would hand them.
A worker killed midway resumes from its checkpoint: nothing missed, nothing queued twice. A dry run
counts; a cancel stops the parts; a full destination queue makes the part wait."""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.freshness import (
    FINGERPRINT_ATTRIBUTE,
    JOB_ATTRIBUTE,
    SOURCE_KEY_ATTRIBUTE,
    fingerprint,
    key_text,
)
from chalicelib.job_plan import Task
from chalicelib.jobs import Jobs
from chalicelib.settings import load_settings
from tests.fakes import until
from tests.integration.conftest import TABLE, Stack
from trickle_deploy.operate import main as operate
from trickle_deploy.operate import spoken_duration

JOBS_QUEUE = "TRICKLE_JOBS_QUEUE_URL"
ORDERS_QUEUE = "TRICKLE_DEST_ORDERS_QUEUE_URL"
CRM_QUEUE = "TRICKLE_DEST_CRM_QUEUE_URL"
# No drain takes what these tests queue (but one's): the destinations' rate limits and high-water
# marks are far above it, so pacing (the last test, and tests/unit/test_job_worker.py) holds nothing.
FAST = {"TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "1000", "TRICKLE_DEST_CRM_RATE_LIMIT_PER_S": "1000"}
UNPACED = FAST | {
    "TRICKLE_DEST_ORDERS_BACKFILL_MAX_QUEUED": "100000",
    "TRICKLE_DEST_CRM_BACKFILL_MAX_QUEUED": "100000",
}


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory(**UNPACED)


def item(n: int, kind: str = "order", **extra: Any) -> dict[str, Any]:
    """Items of 50 partition keys (the `orders` groups); every seventh a customer (`crm` takes it)."""
    return {
        "pk": {"S": f"p{n % 50}"},
        "sk": {"S": f"{n:05}"},
        "type": {"S": kind},
        "n": {"N": str(n)},
        **extra,
    }


def items(count: int) -> list[dict[str, Any]]:
    return [item(n, "customer" if n % 7 == 0 else "order") for n in range(count)]


def put_all(stack: Stack, batch: list[dict[str, Any]]) -> None:
    """Straight into the table (BatchWriteItem): what a backfill finds there already."""
    dynamodb = stack.aws["dynamodb"]
    for start in range(0, len(batch), 25):
        request = {TABLE: [{"PutRequest": {"Item": i}} for i in batch[start : start + 25]]}
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or None


def start(stack: Stack, **body: Any) -> dict[str, Any]:
    answer = stack.http("POST", "/backfills", body)
    assert answer.status_code == 202, answer.body
    job = json.loads(answer.body)
    assert job["progress_url"] == f"/backfills/{job['id']}"
    return dict(job)


def progress(stack: Stack, job_id: str) -> dict[str, Any]:
    answer = stack.http("GET", f"/backfills/{job_id}")
    assert answer.status_code == 200, answer.body
    return dict(json.loads(answer.body))


def test_a_segment_killed_midway_resumes_nothing_missed_nothing_queued_twice(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 items over 4 segments (2 or 3 pages each); segment 2's worker dies after it queued its
    second page but before that page's checkpoint. Its task comes back, resumes from the first
    page's checkpoint and queues the second page again: the queue's deduplication (same ids) drops it."""
    put_all(stack, items(2000))
    checkpoint = Jobs.checkpoint
    calls: Counter[int] = Counter()

    def dies_once(self: Jobs, job_id: str, part: dict[str, Any]) -> dict[str, Any] | None:
        calls[part["part"]] += 1
        if part["part"] == 2 and calls[2] == 2:
            raise RuntimeError("worker killed before its checkpoint")
        return checkpoint(self, job_id, part)

    monkeypatch.setattr(Jobs, "checkpoint", dies_once)
    job = start(stack, destination="orders", segments=4)
    killed: list[BaseException] = []
    first = len(stack.recorder.calls)
    stack.work_jobs(killed.append)
    calls = Counter(c.operation for c in stack.recorder.calls[first:] if c.function == "jobs")

    assert [str(k) for k in killed] == ["worker killed before its checkpoint"]
    # The queue keeps one message per deduplication id, and every id is one item's: 2,000 messages
    # are every item once (the resent page was dropped; without deduplication there would be more).
    assert stack.queue_depth(ORDERS_QUEUE) == 2000
    # The goal: at most 0.15 AWS requests per item for the scan and the queueing (a resent page too)
    assert (calls["Scan"] + calls["SendMessageBatch"]) / 2000 <= 0.15, calls
    shown = progress(stack, job["id"])
    assert shown["state"] == "done" and shown["parts_done"] == 4
    assert shown["counts"]["scanned"] == 2000 and shown["counts"]["queued"] == {"orders": 2000}
    assert all(part["counts"]["scanned"] > 0 for part in shown["part_states"])  # a real parallel Scan


def test_items_go_through_the_routes_as_inserts_with_their_origin(stack: Stack) -> None:
    """Every destination a route sends to: `everything` takes each item to orders, `customers` only
    customers to crm (its filter keeps the rest out) with its transform; each message carries the
    item's key, fingerprint and the job; the drain delivers them like live ones."""
    batch = items(40)
    put_all(stack, batch)
    job = start(stack, segments=2)
    stack.work_jobs()

    orders, crm = stack.take_messages(ORDERS_QUEUE), stack.take_messages(CRM_QUEUE)
    customers = [i for i in batch if i["type"]["S"] == "customer"]
    assert len(orders) == 40 and len(crm) == len(customers) == 6
    by_key = {key_text({"pk": i["pk"], "sk": i["sk"]}): i for i in batch}
    for message in orders + crm:
        attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
        assert attributes[JOB_ATTRIBUTE] == job["id"]
        assert attributes[FINGERPRINT_ATTRIBUTE] == fingerprint(by_key[attributes[SOURCE_KEY_ATTRIBUTE]])
    bodies = [json.loads(m["Body"]) for m in crm]
    assert sorted(b["customer"] for b in bodies) == sorted(c["pk"]["S"] for c in customers)  # transformed
    assert {m["Attributes"]["MessageGroupId"] for m in crm} == {
        f'{TABLE}#"{c["pk"]["S"]}"' for c in customers
    }
    shown = progress(stack, job["id"])
    assert shown["destinations"] == ["orders", "crm"]
    assert shown["counts"]["queued"] == {"orders": 40, "crm": 6}


def test_a_backfill_for_one_destination_queues_only_what_its_routes_take(stack: Stack) -> None:
    """crm alone, and a backfill filter on top: non-customers are not queued (the route's filter),
    nor are customers the backfill's filter leaves out."""
    put_all(stack, items(70))
    job = start(stack, destination="crm", segments=1, filter="item.n < `35`")
    stack.work_jobs()

    assert stack.queue_depth(ORDERS_QUEUE) == 0
    crm = stack.take_messages(CRM_QUEUE)
    assert sorted(json.loads(m["Body"])["name"] is None for m in crm) == [True] * 5  # n 0, 7, 14, 21, 28
    counts = progress(stack, job["id"])["counts"]
    assert counts == {
        "scanned": 70,
        "skipped": 35,
        "unrouted": 30,
        "filter_errors": 0,
        "queued": {"crm": 5},
        "rejected": {},
    }


def test_the_drain_delivers_backfilled_items_as_it_delivers_live_ones(stack: Stack) -> None:
    put_all(stack, [item(n) for n in range(12)])
    start(stack, destination="orders", segments=3)
    stack.work_jobs()
    stack.drain_until(lambda report: len(stack.api.applied()) >= 12)
    applied = [r.json() for r in stack.api.applied()]
    assert sorted(int(a["item"]["n"]) for a in applied) == list(range(12))  # type: ignore[index]
    assert {a["event_name"] for a in applied} == {"INSERT"}  # type: ignore[index]


def test_a_dry_run_counts_what_it_would_queue_and_queues_nothing(stack: Stack) -> None:
    put_all(stack, items(300))
    job = start(stack, segments=3, dry_run=True)
    stack.work_jobs()

    assert stack.queue_depth(ORDERS_QUEUE) == 0 and stack.queue_depth(CRM_QUEUE) == 0
    shown = progress(stack, job["id"])
    assert shown["state"] == "done" and shown["spec"]["dry_run"] is True
    assert shown["counts"]["would_queue"] == {"orders": 300, "crm": 43}
    assert "queued" not in shown["counts"]
    assert shown["estimate"] == expected_estimate(stack, {"orders": 300, "crm": 43})


def expected_estimate(stack: Stack, messages: dict[str, int]) -> dict[str, dict[str, Any]]:
    """At least: each destination's messages at its rate limit, or its drain's budget over its
    schedule in app.py (orders every minute, crm every two) if that is less."""
    settings = load_settings(stack.env)
    periods = {"orders": 60.0, "crm": 120.0}
    out = {}
    for name, count in messages.items():
        pace = min(settings.destination(name).rate_limit_per_s, settings.drain_budget / periods[name])
        out[name] = {
            "messages": count,
            "at_most_per_s": round(pace, 2),
            "seconds_at_least": math.ceil(count / pace),
        }
    return out


def test_a_cancel_stops_every_part_at_its_next_page(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled while segment 0's worker is between its first and second page: it stops there, the
    part not yet started never queues; what was queued stays queued."""
    put_all(stack, items(1200))
    job = start(stack, destination="orders", segments=2)
    checkpoint = Jobs.checkpoint

    def cancel_after_the_first_page(self: Jobs, job_id: str, part: dict[str, Any]) -> dict[str, Any] | None:
        written = checkpoint(self, job_id, part)
        if part["part"] == 0 and part["version"] == 0:
            answer = stack.http("POST", f"/backfills/{job_id}/cancel")
            assert answer.status_code == 200 and json.loads(answer.body)["state"] == "cancelled"
        return written

    monkeypatch.setattr(Jobs, "checkpoint", cancel_after_the_first_page)
    sqs, url = stack.aws["sqs"], stack.env[JOBS_QUEUE]
    first = until(lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"))
    for message in sorted(first, key=lambda m: Task.parse(m["Body"]).part):  # segment 0 first
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    stack.work_jobs()

    shown = progress(stack, job["id"])
    assert shown["state"] == "cancelled"
    assert [p["state"] for p in shown["part_states"]] == ["cancelled", "cancelled"]
    assert stack.queue_depth(ORDERS_QUEUE) == shown["counts"]["queued"]["orders"] == 200
    status = json.loads(stack.http("GET", "/status").body)
    assert status["jobs"] == []


def test_a_full_destination_queue_makes_the_part_wait(stack_factory: Callable[..., Stack]) -> None:
    """orders' high-water mark at 150: the worker queues until its queue holds that many (its first
    page of 200 in part), waits for room, and with no drain taking any sends its task again with a
    delay, the page's progress in its note; once the drain has taken the queue down, the part goes
    on from there."""
    stack = stack_factory(**FAST, TRICKLE_DEST_ORDERS_BACKFILL_MAX_QUEUED="150")
    put_all(stack, [item(n) for n in range(300)])
    job = start(stack, destination="orders", segments=1)
    stack.work_jobs()

    assert stack.queue_depth(ORDERS_QUEUE) == 150  # the mark; the rest waits
    paced = progress(stack, job["id"])
    assert paced["state"] == "running" and paced["part_states"][0]["step"] == 1
    assert json.loads(stack.http("GET", "/status").body)["jobs"][0]["id"] == job["id"]
    stack.drain_until(lambda report: stack.queue_depth(ORDERS_QUEUE) == 0, deadline_s=60)
    sqs, url = stack.aws["sqs"], stack.env[JOBS_QUEUE]
    (delayed,) = until(lambda: sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages"), 30)
    assert Task.parse(delayed["Body"]).step == 1
    stack.work_jobs()
    assert progress(stack, job["id"])["state"] == "done"
    stack.drain_until(lambda report: len(stack.api.applied()) >= 300, deadline_s=60)
    assert len(stack.api.applied()) == 300  # each item once


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"destination": "nowhere"}, "destination must be one of: orders, crm (or left out: all of them)"),
        ({"segments": 0}, "segments must be a whole number from 1 to 64"),
        ({"segments": 65}, "segments must be a whole number from 1 to 64"),
        ({"dry_run": "yes"}, "dry_run must be true or false"),
        ({"filter": "item.["}, "filter 'item.[' is not a JMESPath expression"),
        (
            {"segment": 2},
            'unknown field(s) "segment"; a backfill takes destination, filter, segments, dry_run',
        ),
    ],
)
def test_a_request_that_cannot_start_a_backfill_is_a_400_saying_why(
    stack: Stack, body: dict[str, Any], problem: str
) -> None:
    answer = stack.http("POST", "/backfills", body)
    assert answer.status_code == 400
    assert problem in json.loads(answer.body)["Message"]
    assert stack.queue_depth(JOBS_QUEUE) == 0


def test_an_unknown_backfill_is_a_404(stack: Stack) -> None:
    for method, path in (("GET", "/backfills/{}"), ("POST", "/backfills/{}/cancel")):
        answer = stack.http(method, path.format("6f1c2a9e-0000-4000-8000-000000000001"))
        assert answer.status_code == 404, answer.body


def test_the_operate_commands_start_follow_and_cancel_a_backfill(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """`operate backfill`, `backfill-status` and `backfill-cancel` act as the routes do (the local
    stage on the suite's emulator)."""
    put_all(stack, items(30))
    base = ["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"]]
    assert operate([*base, "backfill", "orders", "--dry-run", "--segments", "2", "--wait", "0"]) == 0
    job = json.loads(capsys.readouterr().out)  # started, not followed
    assert (job["destinations"], job["parts"], job["spec"]["dry_run"]) == (["orders"], 2, True)
    stack.work_jobs()
    assert operate([*base, "backfill-status", job["id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "done" and shown["counts"]["would_queue"] == {"orders": 30}
    assert operate([*base, "backfill-cancel", job["id"]]) == 0  # done already: shown as it is
    assert json.loads(capsys.readouterr().out)["state"] == "done"

    assert operate([*base, "backfill", "orders", "--segments", "0"]) == 2
    assert capsys.readouterr().err == "backfill not started: segments must be a whole number from 1 to 64\n"
    assert operate([*base, "backfill-status", "6f1c2a9e-0000-4000-8000-000000000001"]) == 1
    assert "no backfill 6f1c2a9e" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        operate([*base, "backfill"])
    assert "give a DESTINATION or --all" in capsys.readouterr().err


def test_the_operate_dry_run_waits_for_its_counts_per_destination(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dry run's counts are its answer: the command follows its job (as the jobs function works
    it, here by this test) and prints it done, with what it would queue per destination."""
    put_all(stack, items(30))
    base = ["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"]]
    code: list[int] = []
    command = threading.Thread(target=lambda: code.append(operate([*base, "backfill", "--all", "--dry-run"])))
    command.start()

    def worked_until_it_ends() -> bool:
        stack.work_jobs()
        return not command.is_alive()

    until(worked_until_it_ends, deadline_s=120)
    command.join()
    out, err = capsys.readouterr()
    job = json.loads(out.strip().splitlines()[-1])
    assert code == [0]
    assert (job["state"], job["counts"]["would_queue"]) == ("done", {"orders": 30, "crm": 5})
    assert f"backfill {job['id']} started (dry run): following it until it ends, at most 600 s" in err
    estimated = expected_estimate(stack, {"orders": 30, "crm": 5})
    assert job["estimate"] == estimated  # as the route shows it, app.py's schedules read from its source
    orders = estimated["orders"]
    assert (
        f"orders: 30 messages take at least {spoken_duration(orders['seconds_at_least'])} to deliver, at"
        f" most {orders['at_most_per_s']:g}/s"
    ) in err
    assert stack.queue_depth(ORDERS_QUEUE) == stack.queue_depth(CRM_QUEUE) == 0


def test_the_operate_command_says_when_its_wait_ends_before_the_job(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing works the job here: after --wait, the job as it stands and how to follow it (exit 1)."""
    base = ["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"]]
    assert operate([*base, "backfill", "orders", "--dry-run", "--segments", "2", "--wait", "0.1"]) == 1
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert (job["state"], job["parts_done"]) == ("running", 0)
    assert err.splitlines()[-1] == (
        f"backfill {job['id']} still running after 0.1 s (0 of 2 parts done): follow it with"
        f" backfill-status {job['id']}"
    )


@pytest.mark.parametrize(
    ("wrong", "counts", "warning"),
    [
        (
            "abs(item.type)",
            {"filter_errors": 20, "skipped": 0},
            "the filter failed on 20 of 20 items scanned, left out (first: JMESPathTypeError: In function"
            " abs(), invalid type for value:",
        ),
        ('item.type == "order"', {"filter_errors": 0, "skipped": 20}, "the filter took none of the 20"),
    ],
    ids=["fails-on-every-item", "double-quoted-string"],
)
def test_a_filter_that_fails_or_takes_nothing_is_counted_and_warned_of(
    stack: Stack, capsys: pytest.CaptureFixture[str], wrong: str, counts: dict[str, int], warning: str
) -> None:
    """Not a quiet `done` with everything skipped: the route's progress and the command say why."""
    put_all(stack, items(20))
    job = start(stack, destination="orders", filter=wrong, dry_run=True)
    stack.work_jobs()
    done = progress(stack, job["id"])
    assert done["state"] == "done"
    assert {k: done["counts"][k] for k in counts} == counts
    assert [w[: len(warning)] for w in done["warnings"]] == [warning]
    base = ["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"]]
    capsys.readouterr()  # the workers' log lines
    assert operate([*base, "backfill-status", job["id"]]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["warnings"] == done["warnings"]
    assert err.startswith(f"warning: {warning}")
