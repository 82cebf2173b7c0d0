"""Step Functions waits for Trickle, on the emulator (moto runs state machines with its
`stepfunctions.execute_state_machine` configuration, set by `MotoEndpoint`; ministack runs them as
is): the task sends the item to the destination's queue with `sqs:sendMessage.waitForTaskToken` and
waits; the drain, run as Lambda would run it and checked against its packaged role, answers the task."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import boto3
import pytest
import requests

from chalicelib.callbacks import open_sent_tokens
from chalicelib.model import TASK_TOKEN_ATTRIBUTE
from chalicelib.task_answers import MAX_OUTPUT_BYTES
from tests.fakes import until
from tests.integration.conftest import Stack
from trickle_local.standin_api import Reply
from trickle_project.workflows import wait_definition

STATE_MACHINE = "trickle-local-wait"  # named in the local stage's TRICKLE_CALLBACK_STATE_MACHINES
TOKENS_HOOK = "test-step-functions-task-tokens"


class Workflow:
    def __init__(
        self, stack: Stack, heartbeat_s: int = 60, timeout_s: int = 120, queue_url: str = ""
    ) -> None:
        """`queue_url`: where the task sends its item and token (the orders queue by default)."""
        self.stack = stack
        self.sfn = stack.aws["stepfunctions"]
        queue_url = queue_url or stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]
        definition = wait_definition(queue_url, heartbeat_s, timeout_s)
        self.arn = self.sfn.create_state_machine(
            name=STATE_MACHINE,
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/trickle-local-wait",
        )["stateMachineArn"]
        events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
        hook = "after-call.sqs.ReceiveMessage"
        events.register(hook, self.register_tokens, unique_id=TOKENS_HOOK)
        stack.cleanups.append(lambda: events.unregister(hook, unique_id=TOKENS_HOOK))

    def register_tokens(self, parsed: dict[str, Any], **_: Any) -> None:
        """Tokens as the drain receives them (on every emulator; moto's execution history also has
        them, ministack's records the task without its parameters)."""
        for message in parsed.get("Messages", []):
            token = message.get("MessageAttributes", {}).get(TASK_TOKEN_ATTRIBUTE, {}).get("StringValue")
            if token:
                self.stack.recorder.task_tokens[token] = self.arn

    def start(self, item: dict[str, Any], group: str = "g1") -> str:
        """Starts an execution and waits until its message is queued; the token it carries is
        registered as this state machine's when a drain receives it (`register_tokens`), so the IAM
        check judges the drain's SendTask* calls."""
        run = self.sfn.start_execution(
            stateMachineArn=self.arn, input=json.dumps({"item": item, "group": group})
        )
        until(lambda: self.stack.queue_depth() > 0)
        return str(run["executionArn"])

    def describe(self, execution: str) -> dict[str, Any]:
        return dict(self.sfn.describe_execution(executionArn=execution))

    def finish(self, execution: str, deadline_s: float = 60.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Drains until the execution has ended; its description and the drains' reports."""
        reports: list[dict[str, Any]] = []

        def ended() -> dict[str, Any] | None:
            reports.append(self.stack.drain())
            described = self.describe(execution)
            return described if described["status"] != "RUNNING" else None

        return until(ended, deadline_s, every_s=0.2), reports


def test_a_2xx_resumes_the_execution_with_the_apis_answer(stack: Stack) -> None:
    flow = Workflow(stack)
    stack.api.responder = lambda body, headers: Reply(201, '{"order":"A-17","accepted":true}')

    execution = flow.start({"order": 17, "total": "9.90"})
    described, reports = flow.finish(execution)

    output = json.loads(described["output"])
    assert described["status"] == "SUCCEEDED"
    assert output["status_code"] == 201 and output["body"] == {"order": "A-17", "accepted": True}
    assert (output["destination"], output["attempts"], output["body_truncated"]) == ("orders", 1, False)
    assert [json.loads(r.body) for r in stack.api.requests] == [{"order": 17, "total": "9.90"}]
    assert sum(r["callbacks"] for r in reports) == 1 and stack.queue_depth() == 0


def test_an_answer_over_the_output_limit_resumes_the_execution_with_a_url_of_the_whole_answer(
    stack: Stack,
) -> None:
    answer = json.dumps({"rows": [f"row {i:06} " + "x" * 990 for i in range(300)]})  # about 300 KB
    flow = Workflow(stack)
    stack.api.responder = lambda body, headers: Reply(200, answer)

    execution = flow.start({"order": 21})
    described, _ = flow.finish(execution)

    output = json.loads(described["output"])
    fetched = requests.get(output["body_url"], timeout=10)
    assert len(answer.encode()) > MAX_OUTPUT_BYTES >= len(described["output"].encode())
    assert described["status"] == "SUCCEEDED" and output["body_truncated"] is True and output["body"] is None
    assert "X-Amz-Expires=3600" in output["body_url"]
    assert fetched.status_code == 200 and fetched.json()["body"] == answer
    assert fetched.json()["status"] == 200 and fetched.json()["message_id"] == output["message_id"]


def test_a_poison_item_fails_the_execution_as_rejected_with_its_reason(stack: Stack) -> None:
    flow = Workflow(stack)
    stack.api.responder = lambda body, headers: Reply(400, '{"error":"bad total 4242"}')
    sent: list[dict[str, Any]] = []  # moto drops SendTaskFailure's cause (test_emulator_gaps): read it here

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    events.register("provide-client-params.stepfunctions.SendTaskFailure", capture)
    try:
        execution = flow.start({"order": 18, "total": "4242"})
        described, _ = flow.finish(execution)
    finally:
        events.unregister("provide-client-params.stepfunctions.SendTaskFailure", capture)

    (failure,) = sent
    cause = json.loads(failure["cause"])
    assert (described["status"], described["error"]) == ("FAILED", "Trickle.Rejected")
    assert cause["status_code"] == 400 and "refused by the API" in cause["reason"]
    assert "4242" not in failure["cause"]  # neither the payload nor the API's echo of it
    dead = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    assert len(dead) == 1 and TASK_TOKEN_ATTRIBUTE not in dead[0]["MessageAttributes"]
    assert stack.queue_depth() == 0


@pytest.mark.slow
def test_heartbeats_keep_a_task_alive_through_a_backoff_longer_than_its_heartbeat(stack_factory: Any) -> None:
    # A backoff of 4-8 s (8 with equal jitter) against HeartbeatSeconds 3: heartbeats keep it alive.
    stack: Stack = stack_factory(
        TRICKLE_DEST_ORDERS_BACKOFF_BASE_S="8",
        TRICKLE_DEST_ORDERS_BACKOFF_CAP_S="8",
        TRICKLE_DEST_ORDERS_HEARTBEAT_S="1",
    )
    flow = Workflow(stack, heartbeat_s=3)
    answers = iter([Reply(503, '{"error":"down"}'), Reply(503, '{"error":"down"}')])
    stack.api.responder = lambda body, headers: next(answers, Reply(200, '{"ok":true}'))

    execution = flow.start({"order": 19})
    described, reports = flow.finish(execution, deadline_s=90)

    times = [r.arrived_at for r in stack.api.requests]
    assert described["status"] == "SUCCEEDED", described
    assert [r.status for r in stack.api.requests] == [503, 503, 200]
    assert min(b - a for a, b in itertools.pairwise(times)) > 3  # each wait outlived HeartbeatSeconds
    assert sum(r["heartbeats"] for r in reports) >= 4 and sum(r["callbacks"] for r in reports) == 1


@pytest.mark.only_on(
    "moto", reason="ministack does not time out a task whose HeartbeatSeconds lapsed (test_emulator_gaps)"
)
def test_a_callback_to_a_timed_out_execution_is_counted_and_the_message_deleted(stack: Stack) -> None:
    flow = Workflow(stack, heartbeat_s=1, timeout_s=60)

    execution = flow.start({"order": 20})
    described = until(lambda: flow.describe(execution)["status"] != "RUNNING" and flow.describe(execution))
    report = stack.drain()

    assert (described["status"], described["error"]) == ("FAILED", "States.Timeout")  # its heartbeat lapsed
    assert (report["delivered"], report["callbacks_rejected"], report["callbacks"]) == (1, 1, 0)
    assert stack.queue_depth() == 0 and len(stack.api.requests) == 1


@pytest.mark.slow
def test_a_task_submitted_while_paused_is_kept_alive_and_answered_after_resume(stack: Stack) -> None:
    """A workflow hands its token to `POST /messages` while the destination is paused: no run has
    received the message, so paused runs find its task in the ledger and keep it alive well past
    its HeartbeatSeconds, without a receive; resumed, the message is delivered and the execution
    resumes with the API's answer."""
    heartbeat_s = 6
    sqs = stack.aws["sqs"]
    handoff = sqs.create_queue(QueueName="trickle-local-handoff.fifo", Attributes={"FifoQueue": "true"})
    flow = Workflow(stack, heartbeat_s=heartbeat_s, queue_url=handoff["QueueUrl"])
    stack.api.responder = lambda body, headers: Reply(200, '{"order":"A-23"}')
    assert stack.http("POST", "/destinations/orders/pause", {"reason": "maintenance"}).status_code == 200

    execution = flow.sfn.start_execution(
        stateMachineArn=flow.arn, input=json.dumps({"item": {"order": 23}, "group": "g1"})
    )["executionArn"]

    def handed_over() -> str | None:
        got = sqs.receive_message(
            QueueUrl=handoff["QueueUrl"], MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", [])
        attributes = got[0]["MessageAttributes"] if got else {}
        return str(attributes[TASK_TOKEN_ATTRIBUTE]["StringValue"]) if attributes else None

    token = until(handed_over)
    stack.recorder.task_tokens[token] = flow.arn
    submitted = stack.http(
        "POST", "/messages", {"item": {"order": 23}, "destination": "orders", "task_token": token}
    )
    assert submitted.status_code == 202, submitted.body
    first = len(stack.recorder.calls)
    began = time.monotonic()
    paused: list[dict[str, Any]] = []

    def outlived_heartbeats() -> bool:  # runs back to back, each sooner than HeartbeatSeconds
        paused.append(stack.drain())
        assert flow.describe(execution)["status"] == "RUNNING"
        return time.monotonic() - began > 2 * heartbeat_s + 1

    until(outlived_heartbeats, 60, every_s=0.5)

    drain_calls = [c.operation for c in stack.recorder.calls[first:] if c.function == "drain_orders"]
    assert {r["stopped_by"] for r in paused} == {"paused"} and stack.api.requests == []
    assert "ReceiveMessage" not in drain_calls and "SendTaskHeartbeat" in drain_calls
    assert sum(r["heartbeats"] for r in paused) >= len(paused) and not any(
        r["callbacks_rejected"] for r in paused
    )
    assert stack.http("POST", "/destinations/orders/resume").status_code == 200
    described, reports = flow.finish(execution)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["body"] == {"order": "A-23"}
    assert [json.loads(r.body)["item"] for r in stack.api.requests] == [{"order": 23}]  # the envelope
    assert sum(r["callbacks"] for r in reports) == 1 and stack.queue_depth() == 0


@pytest.mark.slow
@pytest.mark.only_on("moto", reason="ministack's execution history records a task without its parameters")
def test_a_task_that_sent_its_message_straight_to_the_paused_queue_is_kept_alive_and_answered_after_resume(
    stack: Stack,
) -> None:
    """A state machine sends its token message straight to the paused destination's queue (entry
    point 1): no run receives it, so paused runs find its task in the execution's history and keep
    it alive well past its HeartbeatSeconds, without a receive; resumed, the message is delivered and
    the execution resumes with the API's answer."""
    heartbeat_s = 6
    flow = Workflow(stack, heartbeat_s=heartbeat_s)
    stack.api.responder = lambda body, headers: Reply(200, '{"order":"A-24"}')
    assert stack.http("POST", "/destinations/orders/pause", {"reason": "maintenance"}).status_code == 200
    execution = flow.start({"order": 24})
    history = flow.sfn.get_execution_history(executionArn=execution)["events"]
    (token,) = open_sent_tokens(history, stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"])
    stack.recorder.task_tokens[token] = flow.arn  # no run receives it: the IAM check's, from the history
    first = len(stack.recorder.calls)
    began = time.monotonic()
    paused: list[dict[str, Any]] = []

    def outlived_heartbeats() -> bool:  # runs back to back, each sooner than HeartbeatSeconds
        paused.append(stack.drain())
        assert flow.describe(execution)["status"] == "RUNNING"
        return time.monotonic() - began > 2 * heartbeat_s + 1

    until(outlived_heartbeats, 60, every_s=0.5)

    drain_calls = [c.operation for c in stack.recorder.calls[first:] if c.function == "drain_orders"]
    assert {r["stopped_by"] for r in paused} == {"paused"} and stack.api.requests == []
    assert "ReceiveMessage" not in drain_calls
    assert {"ListExecutions", "GetExecutionHistory", "SendTaskHeartbeat"} <= set(drain_calls)
    assert sum(r["heartbeats"] for r in paused) >= len(paused) and not any(
        r["callbacks_rejected"] for r in paused
    )
    assert stack.http("POST", "/destinations/orders/resume").status_code == 200
    described, reports = flow.finish(execution)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["body"] == {"order": "A-24"}
    assert sum(r["callbacks"] for r in reports) == 1 and stack.queue_depth() == 0
