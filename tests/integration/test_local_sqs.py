"""The local runtime reads the app's queues as Lambda's SQS event source mapping does (issue #26: the
`jobs` function works backfill and replay tasks from one, locally with the same code): Lambda-shaped
batches, deleted once handled, left for the visibility timeout when the handler raises (and
dead-lettered by the queue's redrive policy), delayed messages only after their delay, and several
batches at once up to the mapping's maximum concurrency. A tiny app of its own, on the emulator."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from chalice import Chalice
from chalice.app import SQSEvent

from chalicelib import wiring
from tests.fakes import until
from trickle_local.emulators import Emulator
from trickle_local.runtime import Invoker, LocalRuntime
from trickle_project.aws import clients
from trickle_project.stage import load_config

QUEUE = "local-tasks"
CONFIG = {
    "version": "2.0",
    "app_name": "t",
    "stages": {"local": {"lambda_functions": {"work": {"lambda_timeout": 42}}}},
}


class Worker:
    """The handler's side: what it saw, and a switch that holds every batch until released."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.running = 0
        self.most_at_once = 0
        self.hold = threading.Event()
        self.hold.set()  # not holding
        self._lock = threading.Lock()

    def app(self, **decorator: Any) -> Chalice:
        app = Chalice(app_name="t")

        @app.on_sqs_message(queue=QUEUE, name="work", **decorator)
        def work(event: SQSEvent) -> None:
            with self._lock:
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            try:
                self.hold.wait(30)
                for record in event:
                    raw = record.to_dict()
                    self.seen.append(
                        raw
                        | {
                            "remaining_ms": event.context.get_remaining_time_in_millis(),
                            "at": time.monotonic(),
                        }
                    )
                    if json.loads(raw["body"]).get("fail"):
                        raise RuntimeError("the task failed")
            finally:
                with self._lock:
                    self.running -= 1

        return app


@pytest.fixture
def sqs(endpoint: Emulator) -> Any:
    endpoint.reset()
    return clients(endpoint.url)["sqs"]


def start(app: Chalice, sqs: Any) -> LocalRuntime:
    return LocalRuntime(
        app, Invoker(app, CONFIG, "local"), streams=None, stream_arn="", poll_interval_s=0.05, sqs=sqs
    ).start(schedules=False)


@pytest.fixture
def running() -> Iterator[list[LocalRuntime]]:
    runtimes: list[LocalRuntime] = []
    yield runtimes
    for runtime in runtimes:
        runtime.stop()


def visible(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def in_flight(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


def test_each_message_reaches_the_handler_shaped_as_lambda_shapes_it_and_is_deleted_once_handled(
    sqs: Any, running: list[LocalRuntime]
) -> None:
    worker = Worker()
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for n in range(3):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"job": "j1", "part": n, "step": 0}),
            MessageAttributes={"trickle-job": {"DataType": "String", "StringValue": "j1"}},
        )

    running.append(start(worker.app(batch_size=1), sqs))

    until(lambda: len(worker.seen) == 3 and visible(sqs, url) + in_flight(sqs, url) == 0)
    assert sorted(json.loads(r["body"])["part"] for r in worker.seen) == [0, 1, 2]
    for record in worker.seen:
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == arn
        assert record["awsRegion"] == arn.split(":")[3]
        assert record["receiptHandle"] and record["messageId"] and record["md5OfBody"]
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert record["messageAttributes"]["trickle-job"] == {
            "stringValue": "j1",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
        assert 39_000 < record["remaining_ms"] <= 42_000  # the function's configured timeout
    assert running[0].invoker.invocations == {"work": 3}


def test_a_failed_task_comes_back_after_the_visibility_timeout_and_is_dead_lettered_in_the_end(
    sqs: Any, running: list[LocalRuntime]
) -> None:
    worker = Worker()
    dead = sqs.create_queue(QueueName=f"{QUEUE}-dead")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "1", "RedrivePolicy": redrive})[
        "QueueUrl"
    ]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"fail": True}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"fail": False}))

    running.append(start(worker.app(batch_size=1), sqs))

    until(lambda: visible(sqs, dead) == 1)
    failed = [r for r in worker.seen if json.loads(r["body"])["fail"]]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in failed] == ["1", "2"]
    assert failed[1]["at"] - failed[0]["at"] >= 0.9  # hidden for the queue's visibility timeout
    assert len({r["messageId"] for r in failed}) == 1  # the same message, never deleted
    assert len(worker.seen) == 3  # the good one once
    until(lambda: visible(sqs, url) + in_flight(sqs, url) == 0)
    assert running[0].invoker.errors == {"work": 2}


def test_a_delayed_task_reaches_the_handler_only_after_its_delay(
    sqs: Any, running: list[LocalRuntime]
) -> None:
    worker = Worker()
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    running.append(start(worker.app(batch_size=1), sqs))

    sent = time.monotonic()
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"step": 1}), DelaySeconds=2)

    until(lambda: worker.seen)
    assert worker.seen[0]["at"] - sent >= 1.9


def test_batches_run_at_once_up_to_the_mappings_maximum_concurrency(
    sqs: Any, running: list[LocalRuntime]
) -> None:
    worker = Worker()
    worker.hold.clear()
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    for n in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"part": n}))

    running.append(start(worker.app(batch_size=1, maximum_concurrency=2), sqs))

    # Two held at once; the others not even received while no slot is free.
    until(lambda: worker.running == 2 and in_flight(sqs, url) == 2 and visible(sqs, url) == 3)
    assert running[0].invoker.busy("work")
    worker.hold.set()
    until(lambda: len(worker.seen) == 5)
    assert worker.most_at_once == 2


def test_the_app_s_jobs_run_up_to_the_stage_s_jobs_maximum_concurrency(app: Chalice) -> None:
    """The local runtime takes the `jobs` function's limit from its decorator, which reads
    TRICKLE_JOBS_MAX_CONCURRENCY, as Lambda's mapping does from the packaged ScalingConfig."""
    assert Invoker(app, load_config(), "local").concurrency("jobs") == wiring.settings().jobs_max_concurrency


def test_a_batch_of_several_messages_is_one_invocation(sqs: Any, running: list[LocalRuntime]) -> None:
    worker = Worker()
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": json.dumps({"part": n})} for n in range(4)]
    )

    running.append(start(worker.app(batch_size=4, maximum_batching_window_in_seconds=2), sqs))

    until(lambda: len(worker.seen) == 4)
    assert running[0].invoker.invocations == {"work": 1}


def test_an_app_that_reads_a_queue_needs_an_sqs_client() -> None:
    app = Worker().app()
    with pytest.raises(ValueError, match="the app reads queues \\(work\\): give an SQS client"):
        LocalRuntime(app, Invoker(app, CONFIG, "local"), streams=None, stream_arn="")
