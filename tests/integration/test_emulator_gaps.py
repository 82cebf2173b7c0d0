"""Where the emulators differ from AWS in ways that shape Trickle (docs/emulators.md).

Every test runs on both emulators, whatever TRICKLE_EMULATOR says (each in a process of its own, reset
before each test), names the AWS behaviour Trickle relies on, and states per emulator what it does,
as `AWS` (matches) or a description of the gap. When an upgrade changes an emulator, its case fails:
revisit the workaround and the gap table in docs/emulators.md. The moto patches' own pins are at the end."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.fakes import until
from trickle_local.emulators import Emulator, EmulatorName, start_emulator
from trickle_project.aws import use_local_credentials

pytestmark = pytest.mark.emulator_gap

AWS = "AWS"  # the emulator behaves as AWS does here


@pytest.fixture(scope="module", params=["moto", "ministack"])
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    use_local_credentials()
    started = start_emulator(request.param, own_process=True)  # moto with Trickle's patches, as run
    yield started
    started.stop()


class Aws:
    def __init__(self, emulator: Emulator) -> None:
        self.name: EmulatorName = emulator.name
        make: Any = boto3.client
        self.client: Callable[[str], Any] = lambda service: make(service, endpoint_url=emulator.endpoint_url)
        self.sqs = self.client("sqs")

    def fifo(self, name: str = "gap") -> str:
        return str(
            self.sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        )

    def send(self, url: str, group: str, bodies: list[str]) -> None:
        self.sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": b, "MessageGroupId": group, "MessageDeduplicationId": b}
                for i, b in enumerate(bodies)
            ],
        )

    def receive(self, url: str, visibility: int = 30) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility, MessageAttributeNames=["All"]
        )
        return list(got.get("Messages", []))

    def visible(self, url: str) -> int:
        asked = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(asked["Attributes"]["ApproximateNumberOfMessages"])

    def depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


@pytest.fixture
def aws(emulator: Emulator) -> Aws:
    emulator.reset()
    return Aws(emulator)


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    return [m["Body"] for m in messages]


# --- SQS FIFO -------------------------------------------------------------------------------------


def test_a_group_reappearing_together_comes_back_oldest_first(aws: Aws) -> None:
    """AWS returns a group oldest first after its messages' visibility lapses together. moto hands
    out the one that timed out last (so Trickle never lets a group's messages reappear together:
    `policy.release_plan` hides the head for the retry delay and releases the tail at once)."""
    url = aws.fifo()
    aws.send(url, "g", ["m1", "m2", "m3"])
    assert bodies(aws.receive(url, visibility=1)) == ["m1", "m2", "m3"]

    until(lambda: aws.visible(url) == 3)  # all three, once their visibility lapses
    again = bodies(aws.receive(url))

    expected = {"moto": "the last one first", "ministack": AWS}[aws.name]
    assert (again == ["m1", "m2", "m3"]) is (expected == AWS), again


def test_releasing_the_tail_while_the_head_is_held_keeps_order(aws: Aws) -> None:
    """Trickle's answer to the gap above (`policy.release_plan`): correct on AWS and on both."""
    url = aws.fifo()
    aws.send(url, "g", ["m1", "m2", "m3"])
    held = aws.receive(url)
    aws.sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 1 if i == 0 else 0}
            for i, m in enumerate(held)
        ],
    )
    assert aws.receive(url) == []  # the group is blocked while its head is in flight

    assert until(lambda: bodies(aws.receive(url))) == ["m1", "m2", "m3"]  # once the head's lapses


def test_a_message_released_at_zero_is_visible_at_once(aws: Aws) -> None:
    """AWS: ChangeMessageVisibility to 0 makes the message (and its group) available at once. Stock
    moto keeps it in flight for the rest of that millisecond (pinned in-process below); the moto run
    here carries `release_at_zero_at_once`. ministack tests `visible_at <= now`, as AWS behaves."""
    url = aws.fifo()
    aws.send(url, "g", ["m1"])
    (message,) = aws.receive(url)
    for _ in range(30):
        aws.sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
        again = aws.receive(url)
        assert bodies(again) == ["m1"], "released at 0 but still in flight"
        message = again[0]


def test_a_deduplication_id_is_kept_after_the_message_is_deleted(aws: Aws) -> None:
    """AWS drops a repeated deduplication id for 5 minutes, even once the first message is deleted.
    moto forgets it at delete, so the suite never relies on it: its stream poller keeps a checkpoint
    and feeds each record once, and the replay test expects the ledger to catch what moto requeues."""
    url = aws.fifo()
    aws.send(url, "g", ["once"])
    (message,) = aws.receive(url)
    aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    aws.send(url, "g", ["once"])

    expected = {"moto": "queued again", "ministack": AWS}[aws.name]
    assert aws.depth(url) == (0 if expected == AWS else 1)


def test_a_deduplication_id_holds_while_the_message_is_queued(aws: Aws) -> None:
    """The part both implement, which ingest retries rely on."""
    url = aws.fifo()
    aws.send(url, "g", ["once"])
    aws.send(url, "g", ["once"])
    assert aws.depth(url) == 1


def test_start_message_move_task_is_missing_on_both(aws: Aws) -> None:
    """AWS redrives a FIFO dead-letter queue with StartMessageMoveTask; neither emulator has it, so
    Trickle's redrive falls back to an ordered copy (`chalicelib.dead_letters.Redriver`), which the
    delivery tests exercise on both."""
    dlq_arn = aws.sqs.get_queue_attributes(QueueUrl=aws.fifo("dlq"), AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    with pytest.raises(ClientError) as refused:
        aws.sqs.start_message_move_task(SourceArn=dlq_arn)
    answer = (
        refused.value.response["ResponseMetadata"]["HTTPStatusCode"],
        refused.value.response["Error"]["Code"],
    )
    assert answer == {"moto": (500, "500"), "ministack": (400, "InvalidAction")}[aws.name]


# --- DynamoDB -------------------------------------------------------------------------------------


def test_a_number_comes_back_without_trailing_zeros(aws: Aws) -> None:
    """AWS DynamoDB stores numbers normalised ("12.50" is returned as "12.5", in items and stream
    records); moto returns the text as sent. Trickle passes the number on exactly as DynamoDB hands it
    over, either way (the destinations test compares with what the table returns)."""
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="gap-numbers",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="gap-numbers", Item={"pk": {"S": "a"}, "n": {"N": "12.50"}})

    stored = dynamodb.get_item(TableName="gap-numbers", Key={"pk": {"S": "a"}})["Item"]["n"]["N"]

    assert stored == {"moto": "12.50", "ministack": "12.5"}[aws.name]


# --- Step Functions -------------------------------------------------------------------------------


def waiting_task(
    aws: Aws, name: str, timeout_s: int = 60, heartbeat_s: int | None = None
) -> tuple[Any, str, str]:
    """A state machine whose task waits on a queue; (client, execution ARN, its task token)."""
    sfn, url = aws.client("stepfunctions"), aws.fifo("tasks")
    task: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "TimeoutSeconds": timeout_s,
        "Parameters": {
            "QueueUrl": url,
            "MessageBody": "{}",
            "MessageGroupId": "g",
            "MessageDeduplicationId.$": "$$.Execution.Name",
            "MessageAttributes": {"t": {"DataType": "String", "StringValue.$": "$$.Task.Token"}},
        },
        "End": True,
    }
    if heartbeat_s is not None:
        task["HeartbeatSeconds"] = heartbeat_s
    machine = sfn.create_state_machine(
        name=name,
        definition=json.dumps({"StartAt": "T", "States": {"T": task}}),
        roleArn="arn:aws:iam::123456789012:role/gap",
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name=f"{name}-1")["executionArn"]
    message = until(lambda: aws.receive(url))[0]
    return sfn, execution, message["MessageAttributes"]["t"]["StringValue"]


def ended(sfn: Any, execution: str, deadline_s: float = 30.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        described = dict(sfn.describe_execution(executionArn=execution))
        return described if described["status"] != "RUNNING" else None

    return dict(until(done, deadline_s))


def test_send_task_failure_keeps_its_cause(aws: Aws) -> None:
    """AWS keeps SendTaskFailure's cause on the execution; moto drops it (Trickle's Step Functions
    test reads the cause from the call the drain made instead)."""
    sfn, execution, token = waiting_task(aws, "cause")
    sfn.send_task_failure(taskToken=token, error="Trickle.Rejected", cause="the reason")

    described = ended(sfn, execution)

    assert described["error"] == "Trickle.Rejected"
    assert described.get("cause") == {"moto": None, "ministack": "the reason"}[aws.name]


def test_an_answer_after_the_task_timed_out_is_refused_as_timed_out(aws: Aws) -> None:
    """AWS answers a late SendTask* with TaskTimedOut. moto answers InvalidToken, ministack
    TaskDoesNotExist. Trickle treats every refusal alike (counted as CallbackRejected, never retried)."""
    sfn, execution, token = waiting_task(aws, "late", timeout_s=1)
    assert ended(sfn, execution)["error"] == "States.Timeout"

    try:
        sfn.send_task_success(taskToken=token, output="{}")
        answer = "accepted"
    except ClientError as refused:
        answer = refused.response["Error"]["Code"]

    assert answer == {"moto": "InvalidToken", "ministack": "TaskDoesNotExist"}[aws.name]


@pytest.mark.slow
def test_a_lapsed_heartbeat_times_the_task_out(aws: Aws) -> None:
    """AWS fails a task with States.Timeout once HeartbeatSeconds pass without a heartbeat (why the
    drain sends heartbeats through a backoff). moto does; ministack 1.5.33 enforces TimeoutSeconds
    only, so the Step Functions test of a lapsed heartbeat runs on moto alone."""
    sfn, execution, _ = waiting_task(aws, "heartbeat", timeout_s=300, heartbeat_s=1)

    try:
        described = ended(sfn, execution, deadline_s=10)
    except AssertionError:
        described = {"status": "RUNNING"}  # still waiting 10 s after its heartbeat lapsed

    assert (described["status"], described.get("error")) == {
        "moto": ("FAILED", "States.Timeout"),
        "ministack": ("RUNNING", None),
    }[aws.name]


def test_an_execution_started_without_a_name_gets_a_unique_one(aws: Aws) -> None:
    """AWS names an unnamed execution with a UUID. moto names every one "None", so a second unnamed
    start with another input fails with ExecutionAlreadyExists (the demo and the tests name theirs)."""
    sfn = aws.client("stepfunctions")
    machine = sfn.create_state_machine(
        name="unnamed",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/gap",
    )["stateMachineArn"]
    first = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    try:
        second = sfn.start_execution(stateMachineArn=machine, input='{"another": "input"}')["executionArn"]
    except ClientError as refused:
        second = refused.response["Error"]["Code"]

    if aws.name == "moto":
        assert first.endswith(":None") and second == "ExecutionAlreadyExists"
    else:
        assert second.startswith(machine.replace(":stateMachine:", ":execution:")) and second != first


def test_the_execution_history_carries_the_tasks_parameters(aws: Aws) -> None:
    """AWS's TaskScheduled event carries the task's parameters (its token among them). ministack's
    names the resource only, so the Step Functions test registers tokens as the drain receives them."""
    sfn, execution, token = waiting_task(aws, "history")

    events = sfn.get_execution_history(executionArn=execution)["events"]
    scheduled = next(e["taskScheduledEventDetails"] for e in events if "taskScheduledEventDetails" in e)

    has_token = token in scheduled.get("parameters", "")
    assert has_token is {"moto": True, "ministack": False}[aws.name]


# --- Deploying ------------------------------------------------------------------------------------


def test_api_gateway_imports_swagger_2(aws: Aws) -> None:
    """AWS imports Swagger 2.0, which Chalice sends. moto 5.2 accepts only OpenAPI 3 (so `chalice`
    runs through `trickle_deploy.emulator_shims`, which relabels the document); ministack imports it."""
    document = {"swagger": "2.0", "info": {"title": "gap", "version": "1"}, "paths": {}}
    try:
        aws.client("apigateway").import_rest_api(body=json.dumps(document).encode())
        answer = AWS
    except ClientError:
        answer = "refused"

    assert answer == {"moto": "refused", "ministack": AWS}[aws.name]


def test_update_rest_api_turns_compression_off_with_an_empty_value(aws: Aws) -> None:
    """AWS takes Chalice's `replace /minimumCompressionSize ""` as compression off and answers no size.
    ministack 1.5.33 keeps "" and answers it where botocore reads a number, so `chalice deploy` fails
    reading the answer (`trickle_deploy.emulator_shims` sends a remove there); moto answers as AWS."""
    apigateway = aws.client("apigateway")
    api = apigateway.create_rest_api(name="gap")["id"]
    off = [{"op": "replace", "path": "/minimumCompressionSize", "value": ""}]
    try:
        answer = apigateway.update_rest_api(restApiId=api, patchOperations=off).get(
            "minimumCompressionSize", AWS
        )
    except ValueError as exc:
        answer = str(exc)

    assert answer == {"moto": AWS, "ministack": "invalid literal for int() with base 10: ''"}[aws.name]


def test_cloudformation_creates_an_alarm_on_metric_math(aws: Aws) -> None:
    """AWS creates an alarm whose `Metrics` is metric math (the template's unrouted-share alarm).
    moto skips every alarm (not supported); ministack 1.5.33 refuses this one and rolls the stack back,
    so `python -m trickle_prove` leaves such alarms out of the copy it sends ministack."""
    metric = {"Metric": {"Namespace": "N", "MetricName": "M"}, "Period": 60, "Stat": "Sum"}
    alarm = {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "Metrics": [
                {"Id": "share", "Expression": "m * 100", "ReturnData": True},
                {"Id": "m", "MetricStat": metric, "ReturnData": False},
            ],
        },
    }
    cloudformation = aws.client("cloudformation")
    cloudformation.create_stack(StackName="gap-math", TemplateBody=json.dumps({"Resources": {"A": alarm}}))

    def ended() -> str | None:
        status = str(cloudformation.describe_stacks(StackName="gap-math")["Stacks"][0]["StackStatus"])
        return None if status.endswith("IN_PROGRESS") else status

    status = until(ended)
    alarms = len(aws.client("cloudwatch").describe_alarms()["MetricAlarms"])
    answer = AWS if (status, alarms) == ("CREATE_COMPLETE", 1) else f"{status}, {alarms} alarms"

    assert (
        answer == {"moto": "CREATE_COMPLETE, 0 alarms", "ministack": "ROLLBACK_COMPLETE, 0 alarms"}[aws.name]
    )


def mapped_stream(aws: Aws, starting_position: str = "LATEST") -> tuple[str, str]:
    """A function (never run: its code is an empty zip) mapped to a table's stream; (function ARN,
    stream ARN)."""
    iam, lambda_client, dynamodb = aws.client("iam"), aws.client("lambda"), aws.client("dynamodb")
    role = iam.create_role(RoleName="gap", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    function = lambda_client.create_function(
        FunctionName="gap",
        Runtime="python3.11",
        Role=role,
        Handler="app.f",
        Code={"ZipFile": b"PK\x05\x06" + bytes(18)},
    )["FunctionArn"]
    stream = dynamodb.create_table(
        TableName="gap-stream",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    lambda_client.create_event_source_mapping(
        FunctionName=function, EventSourceArn=stream, StartingPosition=starting_position
    )
    return function, stream


def test_a_mapped_streams_records_stay_for_every_reader(aws: Aws) -> None:
    """AWS keeps a stream's records 24 hours, whoever else reads them. moto 5.2 hands each new record
    of a stream with an event source mapping to the function (in Docker) and drops it from the stream,
    so `python -m trickle_prove`, whose poller reads the stream, keeps them in moto
    (`emulator_shims.functions_run_here`); ministack keeps them."""
    _, stream = mapped_stream(aws, "TRIM_HORIZON")
    aws.client("dynamodb").put_item(TableName="gap-stream", Item={"pk": {"S": "a"}})
    streams = aws.client("dynamodbstreams")
    (shard,) = streams.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]

    kept = len(streams.get_records(ShardIterator=iterator)["Records"])

    assert kept == {"moto": 0, "ministack": 1}[aws.name]


def test_event_source_mappings_are_listed_by_function_name_or_arn(aws: Aws) -> None:
    """AWS's ListEventSourceMappings takes a function's name or ARN. moto matches only the string the
    mapping was created with (Chalice creates it with the ARN); `stream_settings` lists by stream and
    compares function ARNs, which means the same everywhere."""
    function, _ = mapped_stream(aws)
    lambda_client = aws.client("lambda")

    by_name = len(lambda_client.list_event_source_mappings(FunctionName="gap")["EventSourceMappings"])
    by_arn = len(lambda_client.list_event_source_mappings(FunctionName=function)["EventSourceMappings"])

    assert (by_name, by_arn) == {"moto": (0, 1), "ministack": (1, 1)}[aws.name]


# --- The moto patches (trickle_local.endpoint), in this process ---------------------------------


def test_the_sqs_speed_patch_still_reaches_motos_clock_reads() -> None:
    """`speed_up_moto_sqs` swaps the clock moto's SQS reads for every message on every call (stock:
    datetime arithmetic). It only helps while moto's visibility checks read that module-level
    function, and it must read the same clock. (ministack needs nothing like it: docs/emulators.md, "Two
    emulators", has the figures.)"""
    from moto.core import utils
    from moto.sqs import models

    from trickle_local.endpoint import speed_up_moto_sqs

    assert "unix_time" in utils.unix_time_millis.__code__.co_names  # stock: through datetime
    speed_up_moto_sqs()
    assert "unix_time_millis" in models.Message.visible.fget.__code__.co_names
    assert "unix_time_millis" in models.Message.delayed.fget.__code__.co_names
    assert abs(models.unix_time_millis() - time.time() * 1000) < 1000


def test_stock_moto_keeps_a_message_released_at_zero_in_flight_for_its_millisecond(monkeypatch: Any) -> None:
    """Stock moto: ChangeMessageVisibility to 0 leaves the message invisible (its group locked) for
    the rest of the millisecond, so a group's tail released while its head is held can stay locked
    until the head reappears. `release_at_zero_at_once` makes it visible at once, as AWS does (and
    ministack, above)."""
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
