"""Pins for the ways moto's SQS differs from AWS that shape Trickle's design (README, "Emulator
gaps"). Each asserts moto's current behaviour: when a moto upgrade fixes a gap, its test fails, so
the workaround and the README can be revisited."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import Stack

pytestmark = pytest.mark.emulator_gap


def send(sqs: Any, url: str, group: str, bodies: list[str]) -> None:
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(i), "MessageBody": b, "MessageGroupId": group, "MessageDeduplicationId": b}
            for i, b in enumerate(bodies)
        ],
    )


def test_group_messages_reappearing_together_come_back_out_of_order(stack: Stack) -> None:
    """AWS returns a group oldest first; moto returns the last one that timed out first."""
    sqs, url = stack.aws["sqs"], stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]
    send(sqs, url, "g", ["m1", "m2", "m3"])
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1)["Messages"]
    assert [m["Body"] for m in first] == ["m1", "m2", "m3"]
    time.sleep(1.5)

    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]

    assert [m["Body"] for m in again] != ["m1", "m2", "m3"]


def test_releasing_the_tail_while_the_head_is_held_keeps_order(stack: Stack) -> None:
    """The workaround Trickle uses (policy.release_plan): correct on AWS, and in order on moto."""
    sqs, url = stack.aws["sqs"], stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]
    send(sqs, url, "g", ["m1", "m2", "m3"])
    held = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 1 if i == 0 else 0}
            for i, m in enumerate(held)
        ],
    )
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    time.sleep(1.5)

    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]

    assert [m["Body"] for m in again] == ["m1", "m2", "m3"]


def test_deduplication_id_is_forgotten_once_the_message_is_deleted(stack: Stack) -> None:
    """AWS drops a repeated deduplication id for 5 minutes even after deletion; moto accepts it."""
    sqs, url = stack.aws["sqs"], stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]
    send(sqs, url, "g", ["once"])
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    send(sqs, url, "g", ["once"])

    assert stack.queue_depth() == 1


def test_deduplication_id_holds_while_the_message_is_queued(stack: Stack) -> None:
    """The part of deduplication moto does implement, which ingest retries rely on in tests."""
    sqs, url = stack.aws["sqs"], stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]
    send(sqs, url, "g", ["once"])
    send(sqs, url, "g", ["once"])
    assert stack.queue_depth() == 1


def test_start_message_move_task_is_not_implemented(stack: Stack) -> None:
    sqs = stack.aws["sqs"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=stack.env["TRICKLE_DEST_ORDERS_DLQ_URL"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    with pytest.raises(ClientError) as error:
        sqs.start_message_move_task(SourceArn=dlq_arn)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 400


def test_the_sqs_speed_patch_still_reaches_motos_clock_reads() -> None:
    """`speed_up_moto_sqs` swaps the clock moto's SQS reads for visibility; it only helps while
    moto's visibility checks read that module-level function, and it must read the same clock."""
    from moto.sqs import models

    from trickle_local.endpoint import speed_up_moto_sqs

    speed_up_moto_sqs()
    assert "unix_time_millis" in models.Message.visible.fget.__code__.co_names
    assert "unix_time_millis" in models.Message.delayed.fget.__code__.co_names
    assert abs(models.unix_time_millis() - time.time() * 1000) < 1000


def test_a_message_released_at_zero_stays_in_flight_for_its_millisecond(monkeypatch: Any) -> None:
    """Stock moto: ChangeMessageVisibility to 0 leaves the message invisible (its group locked) for
    the rest of the millisecond, so a group's tail released while its head is held can stay locked
    until the head reappears. `release_at_zero_at_once` makes it visible at once, as AWS does."""
    from moto.sqs import models

    from trickle_local.endpoint import release_at_zero_at_once

    release_at_zero_at_once()
    patched = models.Message.change_visibility
    stock = patched._trickle_original  # type: ignore[attr-defined]
    monkeypatch.setattr(models, "unix_time_millis", lambda dt=None: 1_000_000.0)
    message = models.Message("m1", "body")

    stock(message, 0)
    assert not message.visible
    patched(message, 0)
    assert message.visible
    patched(message, 5)
    assert not message.visible


def wait_for_token(stack: Stack, timeout_s: int) -> tuple[Any, str, str]:
    """A state machine whose task waits on the orders queue; (client, execution, its task token)."""
    import json

    sfn, url = stack.aws["stepfunctions"], stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "TimeoutSeconds": timeout_s,
        "Parameters": {
            "QueueUrl": url,
            "MessageBody": "{}",
            "MessageGroupId": "g",
            "MessageDeduplicationId": "d",
            "MessageAttributes": {"t": {"DataType": "String", "StringValue.$": "$$.Task.Token"}},
        },
        "End": True,
    }
    machine = sfn.create_state_machine(
        name="gap",
        definition=json.dumps({"StartAt": "T", "States": {"T": task}}),
        roleArn="arn:aws:iam::123456789012:role/gap",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = stack.aws["sqs"].receive_message(QueueUrl=url, MessageAttributeNames=["All"]).get("Messages")
        if got:
            return sfn, execution, got[0]["MessageAttributes"]["t"]["StringValue"]
        time.sleep(0.1)
    raise AssertionError("the task sent nothing")


def test_send_task_failure_loses_its_cause(stack: Stack) -> None:
    """AWS keeps SendTaskFailure's cause on the execution; moto's handler drops it (Trickle's
    integration test reads the cause from the call it made instead)."""
    sfn, execution, token = wait_for_token(stack, 60)
    sfn.send_task_failure(taskToken=token, error="Trickle.Rejected", cause="the reason")
    deadline = time.monotonic() + 30
    while (
        sfn.describe_execution(executionArn=execution)["status"] == "RUNNING" and time.monotonic() < deadline
    ):
        time.sleep(0.1)

    described = sfn.describe_execution(executionArn=execution)

    assert described["error"] == "Trickle.Rejected" and "cause" not in described


def test_an_answer_to_a_timed_out_task_is_an_invalid_token(stack: Stack) -> None:
    """AWS answers a late SendTask* with TaskTimedOut; moto looks only at running executions and
    answers InvalidToken. Trickle treats both alike (counted as CallbackRejected)."""
    sfn, execution, token = wait_for_token(stack, 1)
    deadline = time.monotonic() + 30
    while (
        sfn.describe_execution(executionArn=execution)["status"] == "RUNNING" and time.monotonic() < deadline
    ):
        time.sleep(0.1)

    with pytest.raises(ClientError) as refused:
        sfn.send_task_success(taskToken=token, output="{}")

    assert refused.value.response["Error"]["Code"] == "InvalidToken"


def test_executions_started_without_a_name_are_all_named_none(stack: Stack) -> None:
    """AWS names an unnamed execution with a UUID; moto's interpreter names it "None", so a second
    unnamed start with another input fails (the demo and the tests name their executions)."""
    sfn, execution, _ = wait_for_token(stack, 60)
    machine = sfn.describe_execution(executionArn=execution)["stateMachineArn"]

    with pytest.raises(ClientError) as refused:
        sfn.start_execution(stateMachineArn=machine, input='{"another": "input"}')

    assert execution.endswith(":None") and refused.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
