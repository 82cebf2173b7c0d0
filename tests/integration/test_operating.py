"""Operating a destination (issue #27), through the routes and the drains on the emulator, the
stand-in API answering over real HTTP: the running totals after a few runs, pause and resume, a
410 Gone pausing its destination, the circuit, all as `GET /status` shows them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import environment_outside_the_suite
from tests.integration.conftest import Stack
from trickle_deploy.operate import main as operate
from trickle_local.standin_api import Reply
from trickle_project.stage import PROJECT_DIR


def submit(stack: Stack, n: int, group: str = "g", **extra: Any) -> str:
    answer = stack.http(
        "POST", "/messages", {"item": {"n": n, **extra}, "group": group, "destination": "orders"}
    )
    assert answer.status_code == 202, answer.body
    return str(json.loads(answer.body)["message_id"])


def orders(stack: Stack) -> dict[str, Any]:
    response = stack.http("GET", "/status")
    assert response.status_code == 200, response.body
    return dict(json.loads(response.body)["destinations"]["orders"])


def test_status_keeps_running_totals_written_once_a_run(stack: Stack) -> None:
    """Three runs: a delivery, a 503 then its delivery, a poison dead-lettered. The totals add every
    run's counts, each run with one write to its totals note."""
    fresh = orders(stack)
    zeros = {"delivered": 0, "failed_attempts": 0, "dead_lettered": 0}
    assert (fresh["totals"]["since_start"], fresh["totals"]["since"]) == (zeros, None)
    assert (fresh["next_run"], fresh["schedule"], fresh["circuit"]) == (
        None,
        "rate(1 minute)",
        {"state": "closed", "since": None},
    )
    assert (fresh["paused"], fresh["halted_groups"]) == (None, 0)
    failed_once: set[str] = set()

    def answer(body: str, headers: dict[str, str]) -> Reply | None:
        if '"n":2' in body and not failed_once:
            failed_once.add(body)
            return Reply(503, "{}")
        return None

    stack.api.responder = answer
    stack.api.faults.poison = frozenset({'"poison":true'})
    submit(stack, 1, "a")
    submit(stack, 2, "b")
    submit(stack, 3, "c", poison=True)
    first = len(stack.recorder.calls)
    reports = stack.drain_until(lambda _: stack.queue_depth() == 0)

    assert len(stack.api.applied()) == 2
    writes = [
        c
        for c in stack.recorder.calls[first:]
        if c.function == "drain_orders"
        and c.operation == "UpdateItem"
        and c.leading_keys == ("totals#orders",)
    ]
    counted = [r for r in reports if r["delivered"] + r["failed_attempts"] + r["dead_lettered"]]
    assert len(writes) == len(counted) >= 2  # one write a run that counted anything
    status = orders(stack)
    expected = {"delivered": 2, "failed_attempts": 2, "dead_lettered": 1}
    assert status["totals"]["since_start"] == expected
    assert status["totals"]["last_hour"] == status["totals"]["last_day"] == expected
    assert status["totals"]["since"] <= time.time()
    last = status["last_run"]
    ticks = (status["next_run"] - last["started_at"]) / 60  # rate(1 minute) from the last run's start
    assert ticks >= 1 and ticks == pytest.approx(round(ticks))
    assert status["circuit"] == {"state": "closed", "since": status["circuit"]["since"]}
    assert {"circuit", "halted_groups", "waiting_tasks", "left_in_queue"}.isdisjoint(last)


def test_a_paused_destination_receives_nothing_and_resumes_in_order(stack: Stack) -> None:
    for n in range(3):
        submit(stack, n)
    paused = stack.http("POST", "/destinations/orders/pause", {"reason": "the API's maintenance window"})
    assert paused.status_code == 200, paused.body
    assert json.loads(paused.body)["paused"]["reason"] == "the API's maintenance window"

    first = len(stack.recorder.calls)
    report = stack.drain()

    assert (report["stopped_by"], report["stop_reason"], report["received"]) == (
        "paused",
        "the API's maintenance window",
        0,
    )
    drain_calls = [c.operation for c in stack.recorder.calls[first:] if c.function == "drain_orders"]
    assert "ReceiveMessage" not in drain_calls and stack.api.requests == []
    status = orders(stack)
    assert status["queue"]["queued"] == 3  # they wait, counted
    assert status["paused"]["reason"] == "the API's maintenance window"
    assert status["paused"]["by"] == "operator" and status["paused"]["at"] <= time.time()

    resumed = stack.http("POST", "/destinations/orders/resume")
    assert resumed.status_code == 200, resumed.body
    assert orders(stack)["paused"] is None
    stack.drain_until(lambda _: stack.queue_depth() == 0)
    assert [r.json()["item"]["n"] for r in stack.api.applied()] == [0, 1, 2]  # type: ignore[index]


def test_pause_routes_refuse_what_they_cannot_do(stack: Stack) -> None:
    cases = [
        ("/destinations/nowhere/pause", {}, 404, "no destination nowhere"),
        ("/destinations/orders/pause", {"reason": 5}, 400, '"reason" must be a string'),
        ("/destinations/orders/pause", {"why": "x"}, 400, 'one field, "reason"'),
        ("/destinations/orders/pause", b"{not json", 400, "the body must be JSON"),
        ("/destinations/nowhere/resume", None, 404, "no destination nowhere"),
    ]
    for path, body, code, message in cases:
        response = stack.http("POST", path, body)
        assert response.status_code == code, (path, response.body)
        assert message in json.loads(response.body)["Message"]
    assert orders(stack)["paused"] is None


def test_a_410_pauses_the_destination_with_its_reason(stack: Stack) -> None:
    """Standard Webhooks: a 410 Gone asks the sender to stop. The run stops, the destination is
    paused with the reason, the messages wait unattempted until an operator resumes it."""
    stack.api.responder = lambda body, headers: Reply(410, '{"error": "endpoint removed"}')
    submit(stack, 1)
    submit(stack, 2)

    report = stack.drain()

    assert (report["stopped_by"], report["delivered"], report["dead_lettered"]) == ("gone", 0, 0)
    assert len(stack.api.requests) == 1
    status = orders(stack)
    assert status["paused"]["by"] == "the API (HTTP 410 Gone)"
    assert "410 Gone" in status["paused"]["reason"]
    assert status["queue"]["queued"] + status["queue"]["in_flight"] == 2
    assert stack.drain()["stopped_by"] == "paused" and len(stack.api.requests) == 1

    stack.api.responder = None
    stack.http("POST", "/destinations/orders/resume")
    stack.drain_until(lambda _: stack.queue_depth() == 0)
    assert [r.json()["item"]["n"] for r in stack.api.applied()] == [1, 2]  # type: ignore[index]
    assert orders(stack)["totals"]["since_start"]["dead_lettered"] == 0


def test_the_circuit_opens_on_the_breaker_and_closes_on_a_delivery(stack: Stack) -> None:
    stack.api.responder = lambda body, headers: Reply(503, "{}")
    for n in range(8):
        submit(stack, n, f"g{n}")

    stack.drain_until(lambda report: report["stopped_by"] == "breaker")

    opened = orders(stack)["circuit"]
    assert opened["state"] in ("open", "half-open") and opened["since"] <= time.time()
    stack.api.responder = None
    stack.drain_until(lambda _: stack.queue_depth() == 0)
    closed = orders(stack)["circuit"]
    assert closed["state"] == "closed" and closed["since"] >= opened["since"]


def test_operate_pauses_and_resumes_as_the_routes_do(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"]]
    submit(stack, 1)

    assert operate([*endpoint, "pause", "orders", "--reason", "maintenance"]) == 0
    printed = json.loads(capsys.readouterr().out)
    paused = orders(stack)["paused"]
    assert printed["paused"] == paused and paused["reason"] == "maintenance"
    assert paused["by"].startswith("operate (")
    assert stack.drain()["stopped_by"] == "paused" and stack.api.requests == []
    capsys.readouterr()  # the drain's log lines

    assert operate([*endpoint, "resume", "orders"]) == 0
    assert json.loads(capsys.readouterr().out) == {"destination": "orders", "paused": None}
    assert orders(stack)["paused"] is None
    stack.drain_until(lambda _: stack.queue_depth() == 0)
    with pytest.raises(SystemExit):
        operate([*endpoint, "pause", "nowhere"])
    assert "no destination nowhere; destinations: orders, crm" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [["--stage", "local"], ["--stage", "local", "--region", "us-east-1"], []],
    ids=["local", "region", "default-stage"],
)
def test_operate_on_a_local_endpoint_needs_no_aws_configuration(
    stack: Stack, tmp_path: Path, options: list[str]
) -> None:
    """A new user's shell (no AWS_* variables, no AWS configuration): the emulator's test credentials
    and us-east-1, as `./dev run` has, not a botocore traceback."""
    env = {k: v for k, v in environment_outside_the_suite().items() if not k.startswith("AWS_")}
    endpoint = ["--endpoint", stack.env["AWS_ENDPOINT_URL"]]
    for command, code, shown in (
        (["resume", "orders"], 0, '{"destination": "orders", "paused": null}\n'),
        (["backfill-status", "6f1c2a9e-0000-4000-8000-000000000001"], 1, ""),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "trickle_deploy.operate", *options, *endpoint, *command],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=120,
            env=env | {"HOME": str(tmp_path)},
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert (done.returncode, done.stdout) == (code, shown), done.stderr
    assert done.stderr == "no backfill 6f1c2a9e-0000-4000-8000-000000000001\n"
