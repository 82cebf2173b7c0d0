"""Structured logs through Powertools' Logger (chalicelib/logs.py): JSON on stderr with the caller's
keys, the Lambda context of the invocation on every line, per thread, the drain's workers included."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chalice import Chalice
from chalice.local import LambdaContext

from chalicelib.drain import Drainer
from chalicelib.logs import LambdaContextKeys, configure_logging, context_keys
from tests.fakes import FakeDeadLetters, FakeFifo, FakeLedger, FakeMetrics, SlowApi
from tests.unit.conftest import MakeSettings

log = logging.getLogger("chalicelib.test")
CONTEXT_KEYS = {"cold_start", "function_name", "function_request_id", "function_arn", "function_memory_size"}


@pytest.fixture(autouse=True)
def debug_logs() -> Iterator[None]:
    configure_logging("DEBUG")
    yield
    configure_logging("INFO")


def lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_a_line_is_one_json_object_on_stderr_with_the_callers_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log.info("delivery", extra={"message_id": "m-1", "group_id": "g-1", "destination": "orders"})

    out, err = capsys.readouterr()
    assert out == ""  # stdout is the EMF lines' and `demo --json`'s
    (line,) = lines(err)
    assert line["message"] == "delivery"
    assert line["level"] == "INFO"
    assert line["service"] == "trickle"
    assert line["name"] == "chalicelib.test"
    assert (line["message_id"], line["group_id"], line["destination"]) == ("m-1", "g-1", "orders")
    assert line["timestamp"].endswith("+00:00")
    assert not CONTEXT_KEYS & line.keys()  # outside any invocation


def test_configuring_again_sets_the_level_without_doubling_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING")
    configure_logging("WARNING")
    log.info("dropped")
    log.warning("kept")
    logging.getLogger("trickle.local").warning("local too")

    assert [line["message"] for line in lines(capsys.readouterr().err)] == ["kept", "local too"]


def test_context_keys_are_powertools_lambda_context_fields() -> None:
    context = LambdaContext("drain_orders", memory_size=256)

    keys = context_keys(context, cold_start=True)

    assert keys == {
        "cold_start": True,
        "function_name": "drain_orders",
        "function_memory_size": 256,
        "function_arn": "",
        "function_request_id": context.aws_request_id,
    }


def app_logging_in(functions: list[str], barrier: threading.Barrier | None = None) -> Chalice:
    """An app whose handlers log one line each, after `barrier` (all of them inside at once)."""
    app = Chalice(app_name="logs")
    app.register_middleware(LambdaContextKeys(configure_logging("DEBUG")), "all")
    for name in functions:

        def handler(event: Any, context: Any, name: str = name) -> None:
            if barrier is not None:
                barrier.wait(timeout=30)
            log.info("inside", extra={"handler": name})

        app.lambda_function(name=name)(handler)
    return app


def test_every_line_of_an_invocation_carries_its_context_and_only_then(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = app_logging_in(["drain_orders"])
    first, second = LambdaContext("drain_orders", 128), LambdaContext("drain_orders", 128)

    app.handler_map["drain_orders"]({}, first)
    app.handler_map["drain_orders"]({}, second)
    log.info("after")

    inside_1, inside_2, after = lines(capsys.readouterr().err)
    assert (inside_1["function_request_id"], inside_1["cold_start"]) == (first.aws_request_id, True)
    assert (inside_2["function_request_id"], inside_2["cold_start"]) == (second.aws_request_id, False)
    assert inside_1["function_name"] == "drain_orders"
    assert not CONTEXT_KEYS & after.keys()


def test_functions_running_at_once_in_one_process_each_keep_their_own_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The local runtime runs every function in its own thread of one process."""
    names = ["ingest", "drain_orders", "drain_crm"]
    app = app_logging_in(names, threading.Barrier(len(names)))
    threads = [
        threading.Thread(target=app.handler_map[name], args=({}, LambdaContext(name, 128))) for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    found = {line["handler"]: line["function_name"] for line in lines(capsys.readouterr().err)}
    assert found == {name: name for name in names}


def test_the_drains_workers_log_with_the_invocations_context(
    make_settings: MakeSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000")
    drainer = Drainer(
        FakeFifo(groups=4, per_group=2),
        FakeDeadLetters(),
        FakeLedger(),
        SlowApi(0.01),
        settings.destination("orders"),
        settings,
        metrics=FakeMetrics,
    )
    app = Chalice(app_name="logs")
    app.register_middleware(LambdaContextKeys(configure_logging("DEBUG")), "all")
    app.lambda_function(name="drain_orders")(lambda event, context: drainer.run(lambda: 10**9))
    context = LambdaContext("drain_orders", 128)

    app.handler_map["drain_orders"]({}, context)

    deliveries = [line for line in lines(capsys.readouterr().err) if line["message"] == "delivery"]
    assert len(deliveries) == 8
    assert {line["function_request_id"] for line in deliveries} == {context.aws_request_id}
    assert {line["destination"] for line in deliveries} == {"orders"}
    assert all(line["message_id"] and line["group_id"] for line in deliveries)
