"""Replay (issue #26) on the emulator: a drain delivers over real HTTP to the stand-in API (which
honours Idempotency-Key) and archives what it delivered; a replay of that window, worked by the
`jobs` function from the tasks queue as Lambda's trigger hands it, queues the archived messages
again in each group's order, and the drain delivers them: with new keys the API applies them again,
with the same keys it applies only what it lost; `to` another destination goes through that one's
auth. A dry run counts and queues nothing; the command previews, asks, then starts the job."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.model import iso_utc
from chalicelib.replay_plan import replayed_id
from tests.integration.conftest import API_KEY, Stack
from trickle_deploy.operate import main as operate

GROUPS = {f"g{g}": [f"{i:03}" for i in range(4)] for g in range(3)}


def delivered_window(stack: Stack) -> tuple[str, str, dict[str, str]]:
    """Twelve items (three groups of four) delivered to orders and archived: the window that holds
    their deliveries, and each one's message id by its sort key and group (`g1/002`)."""
    since = iso_utc(datetime.now(UTC) - timedelta(seconds=1))
    stack.fill(groups=3, per_group=4)
    assert stack.drain()["delivered"] == 12
    until = iso_utc(datetime.now(UTC))
    ids = {"/".join(keys(r)): r.idempotency_key for r in stack.api.requests}
    assert stack.delivered_by_group() == GROUPS
    return since, until, ids


def group_of(message_id: str) -> str:
    """A message's FIFO group id, as the archive, the ledger and the dead-letter pages give it."""
    record = wiring.ledger("orders").get(message_id)
    assert record is not None
    return record.group_id


def keys(request: Any) -> tuple[str, str]:
    document = request.json()
    return document["keys"]["pk"], document["keys"]["sk"]


def start(stack: Stack, **body: Any) -> dict[str, Any]:
    answer = stack.http("POST", "/replays", body)
    assert answer.status_code == 202, answer.body
    job = dict(json.loads(answer.body))
    assert job["progress_url"] == f"/replays/{job['id']}"
    return job


def progress(stack: Stack, job_id: str) -> dict[str, Any]:
    answer = stack.http("GET", f"/replays/{job_id}")
    assert answer.status_code == 200, answer.body
    return dict(json.loads(answer.body))


def applied_since(stack: Stack, first: int, api: Any = None) -> dict[str, list[str]]:
    """What the API applied from its `first`th request on: sort keys per group, in order."""
    seen: dict[str, list[str]] = {}
    for request in (api or stack.api).requests[first:]:
        if request.applied:
            pk, sk = keys(request)
            seen.setdefault(pk, []).append(sk)
    return seen


def test_a_replay_with_new_keys_is_applied_again_and_with_the_same_keys_only_where_the_api_lost_it(
    stack: Stack,
) -> None:
    since, until, ids = delivered_window(stack)

    # New keys (the default): every message queued again, in its group's order, and applied again.
    job = start(stack, destination="orders", since=since, until=until)
    stack.work_jobs()
    first = len(stack.api.requests)
    assert stack.drain()["delivered"] == 12

    assert applied_since(stack, first) == GROUPS
    sent = {"/".join(keys(r)): r.idempotency_key for r in stack.api.requests[first:]}
    assert sent == {where: replayed_id(job["id"], original) for where, original in ids.items()}
    done = progress(stack, job["id"])
    assert done["state"] == "done"
    assert {k: done["counts"][k] for k in ("read", "selected", "queued")} == {
        "read": 12,
        "selected": 12,
        "queued": 12,
    }

    # The same keys, after the API lost g1: every message is sent again under its original's id,
    # and the API applies only the four it lost, in order.
    stack.api.forget([ids[f"g1/{sk}"] for sk in GROUPS["g1"]])
    again = start(stack, destination="orders", since=since, until=until, same_keys=True)
    stack.work_jobs()
    first = len(stack.api.requests)
    assert stack.drain()["delivered"] == 12

    assert applied_since(stack, first) == {"g1": GROUPS["g1"]}
    sent = {"/".join(keys(r)): r.idempotency_key for r in stack.api.requests[first:]}
    assert sent == ids
    assert progress(stack, again["id"])["state"] == "done"
    assert stack.queue_depth() == 0


def test_a_replay_to_another_destination_goes_through_its_auth(stack: Stack) -> None:
    since, until, _ = delivered_window(stack)
    originals = [r.body for r in stack.api.requests]

    start(stack, destination="orders", since=since, until=until, to="crm")
    stack.work_jobs()
    report = stack.drain("crm")

    assert report["delivered"] == 12
    assert sorted(r.body for r in stack.crm_api.requests) == sorted(originals)
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in stack.crm_api.requests)
    assert applied_since(stack, 0, stack.crm_api) == GROUPS
    assert stack.queue_depth() == 0 and stack.queue_depth("TRICKLE_DEST_CRM_QUEUE_URL") == 0


def test_a_dry_run_counts_what_it_would_queue_and_queues_nothing(stack: Stack) -> None:
    since, until, ids = delivered_window(stack)

    group = group_of(ids["g2/000"])
    job = start(stack, destination="orders", since=since, until=until, group=group, dry_run=True)
    stack.work_jobs()

    counted = progress(stack, job["id"])
    assert counted["state"] == "done"
    assert {k: counted["counts"][k] for k in ("read", "selected", "queued")} == {
        "read": 12,
        "selected": 4,
        "queued": 0,
    }
    assert stack.queue_depth() == 0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"destination": "orders", "since": "2026-12-04T10:00:00Z"}, "until is required"),
        (
            {"destination": "orders"},  # both at once, not one per try
            "since is required: an ISO 8601 time in UTC, like 2026-12-04T09:30:00Z; until is required",
        ),
        ({"destination": "nope", "since": "x", "until": "y"}, "destination must be one of: crm, orders"),
        (
            {"destination": "orders", "since": "2000-01-01T00:00:00Z", "until": "2000-01-01T01:00:00Z"},
            "is older than the archive keeps deliveries (TRICKLE_ARCHIVE_DAYS=30)",
        ),
    ],
)
def test_a_replay_asked_wrongly_is_a_400_that_says_what_to_fix(
    stack: Stack, body: dict[str, Any], says: str
) -> None:
    answer = stack.http("POST", "/replays", body)
    assert answer.status_code == 400 and says in json.loads(answer.body)["Message"]


class Terminal:
    """Standard input on a terminal (the command asks there)."""

    def isatty(self) -> bool:
        return True


def test_the_command_previews_asks_then_starts_the_job(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    since, until, ids = delivered_window(stack)
    base = ["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"], "replay", "orders"]
    window = ["--since", since, "--until", until, "--group", group_of(ids["g0/000"])]
    capsys.readouterr()  # the drain's metric lines

    assert operate([*base, *window, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"4 message(s) delivered to orders from {since} until {until} would be queued")
    assert json.loads(out[-1]) == {
        "dry_run": True,
        "read": 12,
        "selected": 4,
        "objects": 1,
        "filter_errors": 0,
    }

    assert operate([*base, *window]) == 2  # not on a terminal: nothing asked, nothing started
    captured = capsys.readouterr()
    assert captured.out.startswith("4 message(s)")
    assert captured.err == "operate replay: not on a terminal, so not asked: add --yes to replay\n"
    assert operate([*base, "--since", until, "--until", since]) == 2
    assert capsys.readouterr().err.startswith("operate replay: until (")

    # On a terminal it asks: anything but "y" starts nothing. --yes asks nothing.
    monkeypatch.setattr("sys.stdin", Terminal())
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda question: asked.append(question) or "n")
    assert operate([*base, *window]) == 1
    assert asked == ["Queue 4 message(s) for orders? [y/N] "]
    assert capsys.readouterr().out.splitlines()[-1] == "not replayed"
    assert stack.work_jobs() == []  # no job, no task
    assert operate([*base, *window, "--yes"]) == 0
    assert len(asked) == 1
    job = json.loads(capsys.readouterr().out.splitlines()[-1])
    stack.work_jobs()
    first = len(stack.api.requests)
    assert stack.drain()["delivered"] == 4
    assert applied_since(stack, first) == {"g0": GROUPS["g0"]}
    endpoint = ["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"]]
    capsys.readouterr()
    assert operate([*endpoint, "replay-status", job["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "done"


def test_a_cancelled_replay_queues_nothing_more(stack: Stack) -> None:
    since, until, _ = delivered_window(stack)
    job = start(stack, destination="orders", since=since, until=until)

    cancelled = stack.http("POST", f"/replays/{job['id']}/cancel")
    assert cancelled.status_code == 200 and json.loads(cancelled.body)["state"] == "cancelled"
    stack.work_jobs()

    assert progress(stack, job["id"])["state"] == "cancelled"
    assert stack.queue_depth() == 0
    assert stack.http("POST", "/replays/5f0c7d3e-0000-4000-8000-000000000000/cancel").status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/backfills", {"destination": "orders"}),
        (
            "/replays",
            {
                "destination": "orders",
                "since": iso_utc(datetime.now(UTC) - timedelta(minutes=5)),
                "until": iso_utc(datetime.now(UTC) - timedelta(minutes=1)),
            },
        ),
    ],
)
def test_a_job_whose_first_task_the_tasks_queue_refuses_is_a_503_never_a_500(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, path: str, body: dict[str, Any]
) -> None:
    from chalicelib.task_queue import TaskQueue, TaskQueueError

    def refuse(self: TaskQueue, tasks: Any, delay_s: int = 0) -> None:
        raise TaskQueueError("1 task(s) not queued; first: ServiceUnavailable: injected")

    monkeypatch.setattr(TaskQueue, "send", refuse)
    answer = stack.http("POST", path, body)
    assert answer.status_code == 503, answer.body
    assert "not queued" in json.loads(answer.body)["Message"]
