"""The scheduled drain through `chalice.test.Client`, against moto's SQS and SSM over HTTP and a real
HTTP server standing in for the third-party API."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chalicelib import wiring
from tests.fakes import until
from tests.integration.conftest import API_KEY, Stack, emf_lines
from trickle_local.standin_api import Reply


def test_drains_several_groups_in_order_and_empties_the_queue(stack: Stack) -> None:
    stack.fill(groups=3, per_group=12)

    report = stack.drain()

    assert report["delivered"] == 36
    assert report["stopped_by"] == "empty"
    assert stack.delivered_by_group() == {f"g{g}": [f"{i:03}" for i in range(12)] for g in range(3)}
    assert stack.queue_depth() == 0


def test_each_request_carries_json_the_key_header_and_the_idempotency_key(stack: Stack) -> None:
    stack.fill(groups=1, per_group=3)

    stack.drain()

    for request in stack.api.requests:
        body = request.json()
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-api-key"] == API_KEY
        assert request.idempotency_key == body["message_id"]  # type: ignore[index]
        assert request.path == "/orders"


def test_a_failure_mid_group_stops_that_group_only_and_the_rest_waits_for_a_later_run(stack: Stack) -> None:
    stack.fill(groups=3, per_group=6)
    failing = {"g1": "003"}

    def fail_g1_003(body: str, headers: dict[str, str]) -> Reply | None:
        keys = json.loads(body)["keys"]
        return Reply(503, '{"error":"down"}') if failing.get(keys["pk"]) == keys["sk"] else None

    stack.api.responder = fail_g1_003

    first = stack.drain()

    assert first["retried"] == 1
    assert first["blocked_groups"] == ['trickle-local-items#"g1"']
    assert stack.delivered_by_group() == {
        "g0": [f"{i:03}" for i in range(6)],
        "g1": ["000", "001", "002"],
        "g2": [f"{i:03}" for i in range(6)],
    }
    tried_g1 = [json.loads(r.body)["keys"]["sk"] for r in stack.api.requests if '"g1"' in r.body]
    assert tried_g1 == ["000", "001", "002", "003"]  # nothing after the failure was sent
    assert stack.queue_depth() == 3  # 003, 004, 005 stay queued

    failing.clear()
    (second,) = stack.drain_until(lambda r: r["received"])  # its backoff: BACKOFF_BASE_S=1 in tests

    assert second["delivered"] == 3
    assert stack.delivered_by_group()["g1"] == [f"{i:03}" for i in range(6)]
    assert stack.queue_depth() == 0


def test_nothing_is_deleted_without_a_2xx(stack: Stack) -> None:
    stack.fill(groups=2, per_group=2)
    stack.api.responder = lambda body, headers: Reply(500, "{}")

    report = stack.drain()

    assert report["delivered"] == 0
    assert report["retried"] == 2
    assert stack.queue_depth() == 4


def test_budget_limits_a_run(stack_factory: Any) -> None:
    stack = stack_factory(TRICKLE_DRAIN_BUDGET="5")
    stack.fill(groups=2, per_group=6)

    report = stack.drain()

    assert report["stopped_by"] == "budget"
    assert report["received"] == 5
    assert report["delivered"] == 5
    assert stack.queue_depth() == 7


def test_remaining_time_under_the_margin_ends_the_run(stack_factory: Any) -> None:
    # The local stage gives a drain 300 s (`lambda_timeout`): 5 s of them are left to work in. The
    # third request is answered (within its read timeout) only once 5.5 s have passed since the first:
    # whatever the machine's load, the run is then out of time, with some delivered and most not.
    stack = stack_factory(TRICKLE_DRAIN_SAFETY_MARGIN_MS="295000", TRICKLE_DEST_ORDERS_READ_TIMEOUT_S="20")
    stack.fill(groups=1, per_group=20)
    first: list[float] = []

    def answer(body: str, headers: Any) -> Reply:
        first.append(time.monotonic())
        if len(first) == 3:
            until(lambda: time.monotonic() > first[0] + 5.5, deadline_s=30)
        return Reply(200)

    stack.api.responder = answer

    report = stack.drain()

    assert report["stopped_by"] == "time"
    assert 0 < report["delivered"] < 20
    assert stack.queue_depth() == 20 - report["delivered"]


def test_api_key_is_read_from_ssm_once_for_many_messages_and_runs(stack: Stack) -> None:
    stack.fill(groups=4, per_group=10)
    wiring.reset()
    calls: list[dict[str, Any]] = []
    wiring.client("ssm").meta.events.register(
        "provide-client-params.ssm.GetParameter", lambda params, **_: calls.append(dict(params))
    )

    stack.drain()
    stack.fill(groups=1, per_group=5, prefix="h")
    stack.drain()

    assert len(stack.api.applied()) == 45
    assert calls == [{"Name": "/trickle/local/orders-api-key", "WithDecryption": True}]


def test_the_api_key_never_appears_in_logs(stack: Stack, capfd: pytest.CaptureFixture[str]) -> None:
    stack.fill(groups=2, per_group=3)
    stack.api.responder = lambda body, headers: Reply(401, json.dumps({"echo": headers.get("x-api-key")}))

    stack.drain()
    stack.api.responder = None
    stack.drain_until(lambda _: stack.queue_depth() == 0)

    captured = capfd.readouterr()
    logged = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    deliveries = [line for line in logged if line["message"] == "delivery"]
    assert {line["status"] for line in deliveries} >= {401}
    assert all(line["function_name"] == "drain_orders" and line["message_id"] for line in deliveries)
    assert API_KEY not in captured.out + captured.err


def test_runs_emit_embedded_metrics(stack: Stack, capfd: pytest.CaptureFixture[str]) -> None:
    stack.fill(groups=2, per_group=3)
    stack.api.responder = lambda body, headers: Reply(503, "{}") if '"sk":"002"' in body else None
    capfd.readouterr()

    stack.drain()

    (drain,) = emf_lines(capfd.readouterr().out)
    assert drain["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Trickle"
    assert drain["destination"] == "orders"
    assert drain["Delivered"] == 4.0 or drain["Delivered"] == [4.0]
    assert drain["Retried"] in (2.0, [2.0])
    assert len(drain["ApiLatency"]) == 6
    assert all(age >= 0 for age in drain["DeliveredAge"])
    assert drain["Backlog"] in (2.0, [2.0])


def test_ingest_emits_embedded_metrics(stack: Stack, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    stack.fill(groups=1, per_group=4)

    (ingest,) = emf_lines(capfd.readouterr().out)
    assert ingest["table"] == "trickle-local-items"
    assert ingest["IngestRecords"] in (4.0, [4.0])
    assert ingest["IngestEnqueued"] in (4.0, [4.0])
