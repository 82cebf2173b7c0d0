"""The prod stage's packaged template, transformed with aws-sam-translator, created by the emulator's
CloudFormation (moto) in two accounts and regions that are not moto's defaults, from the same
packaged template. What the functions and roles ended up naming is read back from the emulator.

moto's CloudFormation lacks parts of what the template uses; those are shimmed on the copy sent to
moto (`trickle_deploy.emulator_shims`, the same shims `python -m trickle_prove` names), each
pinned by an emulator-gap test below, and checked on the transformed template instead
(test_template.py). Lambda functions are created, never run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.parsers import ResponseParserError

from chalicelib import naming, wiring
from chalicelib.model import TASK_TOKEN_ATTRIBUTE
from chalicelib.settings import JOBS_MAX_CONCURRENCY, load_settings
from tests.fakes import until
from tests.integration.conftest import API_KEY
from tests.integration.deployment import package_stage
from trickle_deploy.emulator_shims import LEFT_OUT_ON_MOTO
from trickle_deploy.iam_check import (
    CallRecorder,
    denied,
    deployed_policies,
    partition_keys,
    role_documents,
    trigger_calls,
)
from trickle_deploy.operate import stack_env
from trickle_deploy.sam import create_stack
from trickle_local.endpoint import MotoEndpoint
from trickle_local.standin_api import Faults, Reply, StandInApi

STACK = "trickle-prod"
# The second place relays a table it already has (the SourceStreamArn parameter).
PLACES = [("210987654321", "eu-west-3", None), ("345678901234", "ap-southeast-2", "orders")]

pytestmark = pytest.mark.only_on(
    "moto",
    reason=(
        "the stacks are made in accounts and regions other than the emulator's default, and ministack's "
        "CloudFormation builds several ARNs (stream, queue, parameter, log group) with its default "
        "account or region there (seen with ministack 1.5.33); moto's resolve them as AWS does"
    ),
)


@dataclass
class Account:
    """Clients of one emulated account and region (moto reads the account from a header)."""

    id: str
    region: str
    client: Callable[[str], Any]


def account(endpoint: MotoEndpoint, account_id: str, region: str) -> Account:
    session = boto3.Session(region_name=region)

    def in_account(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account_id

    session.events.register("before-send.*.*", in_account)
    return Account(account_id, region, lambda name: session.client(name, endpoint_url=endpoint.url))


def every_role_documents(iam: Any) -> dict[str, list[dict[str, Any]]]:
    """Every role's inline policy documents (roles that have some)."""
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    return {role: documents for role in roles if (documents := role_documents(iam, role))}


def arns_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.startswith("arn:") else []
    if isinstance(value, dict):
        return [a for v in value.values() for a in arns_in(v)]
    if isinstance(value, list):
        return [a for v in value for a in arns_in(v)]
    return []


def assert_only(place: Account, arn: str) -> None:
    """An ARN of this account and region (or of a global service, where ARNs carry neither)."""
    _, partition, service, region, account_id, _ = arn.split(":", 5)
    assert partition == "aws", arn
    assert region in (place.region, "") and account_id in (place.id, ""), arn
    if service not in ("s3", "iam"):
        assert region == place.region and account_id == place.id, arn


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("cfn")
    sam = package_stage("prod", out)
    return json.loads(sam.read_text()), out / "pkg" / "deployment.zip"


@pytest.fixture(scope="module")
def stacks(
    endpoint: MotoEndpoint, packaged: tuple[dict[str, Any], Path]
) -> list[tuple[Account, dict[str, Any]]]:
    """The same packaged template, transformed and created in each place; (account, transformed)."""
    endpoint.reset()
    sam, code = packaged
    made = []
    for account_id, region, existing_table in PLACES:
        place = account(endpoint, account_id, region)
        parameters = []
        if existing_table:
            stream = place.client("dynamodb").create_table(
                TableName=existing_table,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )["TableDescription"]["LatestStreamArn"]
            parameters = [{"ParameterKey": "SourceStreamArn", "ParameterValue": stream}]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_DEFAULT_REGION", region)  # the SAM transform's region
            bucket = f"artifacts-{account_id}-{region}"  # what `aws cloudformation package` uploads to
            transformed = create_stack(place.client, sam, code, STACK, "moto", bucket, parameters)
        made.append((place, transformed))
    return made


def test_the_stack_is_created_in_both_places_from_one_packaged_template(
    stacks: list[tuple[Account, dict[str, Any]]],
) -> None:
    for place, transformed in stacks:
        resources = place.client("cloudformation").list_stack_resources(StackName=STACK)[
            "StackResourceSummaries"
        ]
        created = {r["LogicalResourceId"] for r in resources if r["ResourceStatus"] == "CREATE_COMPLETE"}
        skipped = {n for n, r in transformed["Resources"].items() if r["Type"] in LEFT_OUT_ON_MOTO}
        alarms = {n for n, r in transformed["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        relays = {"SourceTable"} if place.id == PLACES[1][0] else set()  # its condition is false
        examples = {n for n, r in transformed["Resources"].items() if "Example" in r.get("Condition", "")}
        assert set(transformed["Resources"]) - skipped - alarms - relays - examples <= created, place
        assert examples and not (relays | examples) & created  # no example without ExampleDestination
        tables = place.client("dynamodb").list_tables()["TableNames"]
        assert ("orders" in tables) is bool(relays) and (f"{STACK}-items" in tables) is not bool(relays)


def test_every_function_names_only_its_own_account_and_region(
    stacks: list[tuple[Account, dict[str, Any]]],
) -> None:
    for place, _ in stacks:
        sqs, dynamodb = place.client("sqs"), place.client("dynamodb")
        functions = place.client("lambda").list_functions()["Functions"]
        assert len(functions) == 7  # ingest, jobs, four drains, API handler: no token authorizer (IAM auth)
        for function in functions:
            env = function["Environment"]["Variables"]
            settings = load_settings(env)
            for arn in [settings.stream_arn]:
                assert_only(place, arn)
            queues = [url for d in settings.destinations.values() for url in (d.queue_url, d.dlq_url)]
            for url in [*queues, env["TRICKLE_INGEST_FAILURE_QUEUE_URL"], env["TRICKLE_JOBS_QUEUE_URL"]]:
                assert url.startswith(f"https://sqs.{place.region}.amazonaws.com/{place.id}/"), url
                sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])  # and it exists
            table = dynamodb.describe_table(TableName=settings.table_name)["Table"]
            assert table["LatestStreamArn"] == settings.stream_arn
            dynamodb.describe_table(TableName=settings.ledger_table)
            notes = dynamodb.describe_table(TableName=settings.notes_table)["Table"]
            assert notes["KeySchema"] == [{"AttributeName": "note_id", "KeyType": "HASH"}]
            assert settings.archive_bucket is not None
            location = place.client("s3").get_bucket_location(Bucket=settings.archive_bucket)
            assert location["LocationConstraint"] == place.region
            for value in env.values():
                assert "123456789012" not in value and "us-east-1" not in value, value


def test_every_role_statement_names_only_its_own_account_and_region(
    stacks: list[tuple[Account, dict[str, Any]]],
) -> None:
    for place, _ in stacks:
        documents = every_role_documents(place.client("iam"))
        assert len(documents) == 7  # ingest, jobs, a drain per destination (four), the API handler
        for role, policies in documents.items():
            resources = [r for p in policies for s in p["Statement"] for r in arns_in(s.get("Resource"))]
            conditions = [
                a for p in policies for s in p["Statement"] for a in arns_in(s.get("Condition", {}))
            ]
            assert resources, role
            for arn in resources + conditions:
                assert_only(place, arn)


def test_the_queue_outlives_the_drain_and_the_stream_mapping_has_its_settings(
    stacks: list[tuple[Account, dict[str, Any]]],
) -> None:
    for place, _ in stacks:
        lambda_client = place.client("lambda")
        env = stack_env(place.client("cloudformation"), lambda_client, STACK)
        settings = load_settings(env)
        for destination in settings.destinations.values():
            visibility = place.client("sqs").get_queue_attributes(
                QueueUrl=destination.queue_url, AttributeNames=["VisibilityTimeout"]
            )["Attributes"]["VisibilityTimeout"]
            logical = naming.logical_id(destination.drain_function)  # DrainOrdersBulk
            (drain,) = [
                f for f in lambda_client.list_functions()["Functions"] if f"-{logical}-" in f["FunctionName"]
            ]
            assert int(visibility) > drain["Timeout"]
            assert "ReservedConcurrentExecutions" not in lambda_client.get_function(
                FunctionName=drain["FunctionName"]
            )
        mappings = lambda_client.list_event_source_mappings()["EventSourceMappings"]
        (mapping,) = [m for m in mappings if m["EventSourceArn"] == settings.stream_arn]
        assert mapping["BisectBatchOnFunctionError"] is True
        assert mapping["MaximumRetryAttempts"] == 10
        assert mapping["MaximumRecordAgeInSeconds"] == 86_400
        failure_arn = f"arn:aws:sqs:{place.region}:{place.id}:{STACK}-ingest-failures"
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == failure_arn
        tasks = place.client("sqs").get_queue_attributes(
            QueueUrl=settings.jobs_queue_url, AttributeNames=["All"]
        )["Attributes"]
        dead_tasks = f"arn:aws:sqs:{place.region}:{place.id}:{STACK}-jobs-dead-letters"
        assert json.loads(tasks["RedrivePolicy"]) == {"deadLetterTargetArn": dead_tasks, "maxReceiveCount": 5}


def test_the_jobs_trigger_reads_the_stack_s_tasks_queue_as_the_jobs_role_allows(
    stacks: list[tuple[Account, dict[str, Any]]],
) -> None:
    """Issue #26: the stack's one SQS event source mapping hands the tasks queue's tasks to `jobs`
    one at a time, at most TRICKLE_JOBS_MAX_CONCURRENCY at once (prod's default), and that
    function's role (which Lambda polls with) allows what the mapping does there: AWS refuses to
    create the mapping otherwise."""
    for place, _ in stacks:
        lambda_client = place.client("lambda")
        mappings = lambda_client.list_event_source_mappings()["EventSourceMappings"]
        (tasks_mapping,) = [m for m in mappings if m["EventSourceArn"].split(":")[2] == "sqs"]
        assert tasks_mapping["EventSourceArn"] == f"arn:aws:sqs:{place.region}:{place.id}:{STACK}-jobs"
        assert tasks_mapping["BatchSize"] == 1
        assert tasks_mapping["ScalingConfig"] == {"MaximumConcurrency": JOBS_MAX_CONCURRENCY}
        function = tasks_mapping["FunctionArn"].rsplit(":", 1)[1]
        policies = deployed_policies(lambda_client, place.client("iam"), [function])
        assert set(policies) == {"jobs"}
        assert denied(trigger_calls("jobs", tasks_mapping["EventSourceArn"]), policies) == []


def test_the_archive_bucket_encrypts_at_rest(stacks: list[tuple[Account, dict[str, Any]]]) -> None:
    """Issue #26: SSE-S3 by default, read back from the bucket the stack made. (Its lifecycle rules:
    the gap pinned below; test_template.py checks them in the template.)"""
    for place, _ in stacks:
        settings = load_settings(stack_env(place.client("cloudformation"), place.client("lambda"), STACK))
        assert settings.archive_bucket is not None
        encryption = place.client("s3").get_bucket_encryption(Bucket=settings.archive_bucket)
        (rule,) = encryption["ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


@pytest.mark.emulator_gap
def test_gap_moto_s_cloudformation_ignores_a_bucket_s_lifecycle_rules(
    stacks: list[tuple[Account, dict[str, Any]]],
) -> None:
    """AWS applies `LifecycleConfiguration` (the archive's expiry of `responses/` and `delivered/`);
    moto's CloudFormation makes the bucket without it."""
    place, transformed = stacks[0]
    assert transformed["Resources"]["ResponseArchive"]["Properties"]["LifecycleConfiguration"]["Rules"]
    settings = load_settings(stack_env(place.client("cloudformation"), place.client("lambda"), STACK))
    s3 = place.client("s3")
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3.get_bucket_lifecycle_configuration(Bucket=settings.archive_bucket)


def test_the_stack_outputs_tell_the_operator_how_to_store_the_key(
    stacks: list[tuple[Account, dict[str, Any]]],
) -> None:
    for place, _ in stacks:
        (described,) = place.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
        for destination in ("orders", "crm"):
            prefix = destination.capitalize()
            parameter = f"/trickle/prod/{destination}-api-key"
            assert outputs[f"{prefix}PutApiKeyCommand"] == (
                f"aws ssm put-parameter --name {parameter} --type SecureString --key-id alias/{STACK}-api-key"
                f' --value "${destination.upper()}_API_KEY" --overwrite --region {place.region}'
            )
            assert (
                outputs[f"{prefix}ApiKeyParameterArn"]
                == f"arn:aws:ssm:{place.region}:{place.id}:parameter{parameter}"
            )


# --- the optional example state machine ------------------------------------------------------------

EXAMPLE_STACK = "trickle-example"
# moto's state machine interpreter makes its SQS calls without naming an account, so they land in
# moto's default account: the example's stack is created there (in a region no other test uses).
EXAMPLE_PLACE = ("123456789012", "ca-central-1")


@contextmanager
def where_cloudformation_puts_state_machines(endpoint: MotoEndpoint) -> Iterator[None]:
    """moto keeps state machines its CloudFormation creates apart from those its interpreter runs,
    and the Step Functions API shows only the latter while executions are on (the gap test below):
    turned off for a look at the former."""
    config = f"{endpoint.url}/moto-api/config"
    requests.post(
        config, json={"stepfunctions": {"execute_state_machine": False}}, timeout=10
    ).raise_for_status()
    try:
        yield
    finally:
        MotoEndpoint.configure(endpoint.url)  # back to running them


def created_state_machines(endpoint: MotoEndpoint, place: Account) -> list[dict[str, Any]]:
    """The state machines the stacks of this place created, described."""
    sfn = place.client("stepfunctions")
    with where_cloudformation_puts_state_machines(endpoint):
        listed = sfn.list_state_machines()["stateMachines"]
        return [dict(sfn.describe_state_machine(stateMachineArn=m["stateMachineArn"])) for m in listed]


@dataclass
class Example:
    place: Account
    state_machine: dict[str, Any]  # as CloudFormation made it
    roles: dict[str, list[dict[str, Any]]]

    @property
    def arn(self) -> str:
        return str(self.state_machine["stateMachineArn"])


@pytest.fixture(scope="module")
def example(
    endpoint: MotoEndpoint,
    packaged: tuple[dict[str, Any], Path],
    stacks: list[tuple[Account, dict[str, Any]]],  # created (and the endpoint reset) first
) -> Example:
    """The packaged template created with `ExampleDestination=orders`."""
    sam, code = packaged
    place = account(endpoint, *EXAMPLE_PLACE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", place.region)
        example = [{"ParameterKey": "ExampleDestination", "ParameterValue": "orders"}]
        create_stack(
            place.client, sam, code, EXAMPLE_STACK, "moto", f"artifacts-example-{place.region}", example
        )
    cfn = place.client("cloudformation")
    (described,) = cfn.describe_stacks(StackName=EXAMPLE_STACK)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]}
    (made,) = created_state_machines(endpoint, place)
    # The shim: the state machine, exactly as CloudFormation made it, where moto runs executions.
    created = place.client("stepfunctions").create_state_machine(
        name=made["name"], definition=made["definition"], roleArn=made["roleArn"]
    )
    assert created["stateMachineArn"] == made["stateMachineArn"] == outputs["ExampleStateMachineArn"]
    return Example(place, made, every_role_documents(place.client("iam")))


def role_of(example: Example, logical_id: str) -> list[dict[str, Any]]:
    """The inline policy documents of the stack's role with this logical id."""
    (documents,) = [d for name, d in example.roles.items() if f"-{logical_id}-" in name]
    return documents


def test_without_the_parameter_a_stack_has_no_state_machine(
    endpoint: MotoEndpoint, stacks: list[tuple[Account, dict[str, Any]]]
) -> None:
    for place, _ in stacks:
        assert created_state_machines(endpoint, place) == []
        env = stack_env(place.client("cloudformation"), place.client("lambda"), STACK)
        assert load_settings(env).callback_state_machines == ()


def test_the_example_state_machine_is_named_from_the_stack_and_may_only_send_to_its_queue(
    example: Example,
) -> None:
    region, account_id = example.place.region, example.place.id
    assert example.arn == f"arn:aws:states:{region}:{account_id}:stateMachine:{EXAMPLE_STACK}-example-wait"
    orders = f"arn:aws:sqs:{region}:{account_id}:{EXAMPLE_STACK}-orders.fifo"
    (document,) = role_of(example, "ExampleStateMachineRole")
    assert document["Statement"] == [
        {
            "Sid": "SendToTheDestinationsQueue",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": orders,
        }
    ]
    assert example.state_machine["roleArn"].startswith(f"arn:aws:iam::{account_id}:role/{EXAMPLE_STACK}-")
    task = json.loads(example.state_machine["definition"])["States"]["Deliver"]
    assert task["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert (
        task["Parameters"]["QueueUrl"]
        == f"https://sqs.{region}.amazonaws.com/{account_id}/{EXAMPLE_STACK}-orders.fifo"
    )
    env = stack_env(example.place.client("cloudformation"), example.place.client("lambda"), EXAMPLE_STACK)
    assert load_settings(env).callback_state_machines == (f"{EXAMPLE_STACK}-example-wait",)


def test_only_the_examples_destination_may_answer_its_tasks(example: Example) -> None:
    answering = [
        s
        for role in ("DrainOrdersRole", "DrainCrmRole")
        for document in role_of(example, role)
        for s in document["Statement"]
        if any(str(a).startswith("states:") for a in s["Action"])
    ]
    assert answering == [
        {
            "Sid": "AnswerTheExamplesTasks",
            "Effect": "Allow",
            "Action": ["states:SendTaskFailure", "states:SendTaskHeartbeat", "states:SendTaskSuccess"],
            "Resource": example.arn,
        }
    ]


def test_the_examples_execution_succeeds_through_the_drain_with_the_apis_answer(
    example: Example,
    endpoint: MotoEndpoint,
    api: StandInApi,
    recorder: CallRecorder,  # the session's, set up on boto3's default session
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The template's definition, as the stack created it, runs: its task sends the item to the
    orders queue and waits; the drain, on the stack's resources and held to the role the stack gave
    it, delivers it to the stand-in API and answers the task."""
    place = example.place
    sfn = place.client("stepfunctions")
    env = stack_env(place.client("cloudformation"), place.client("lambda"), EXAMPLE_STACK)
    settings = load_settings(env)
    place.client("ssm").put_parameter(
        Name=settings.destination("orders").api_key_parameter,
        Value=API_KEY,
        Type="SecureString",
        Overwrite=True,
    )
    api.clear()
    api.faults = Faults(api_key=API_KEY)
    api.responder = lambda body, headers: Reply(201, '{"order":"A-17","accepted":true}')
    for name, value in (env | {"TRICKLE_DEST_ORDERS_URL": api.url, "AWS_ENDPOINT_URL": endpoint.url}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", place.region)
    monkeypatch.delenv("TRICKLE_ROUTES_FILE", raising=False)  # the packaged file, as the functions read
    calls = CallRecorder(region=place.region, account=place.id, partition_keys=partition_keys(env))
    events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    wiring.reset()
    calls.register(events)
    try:
        execution = sfn.start_execution(
            stateMachineArn=example.arn,
            name="example-1",
            input=json.dumps({"item": {"order": 17}, "group": "customer-42"}),
        )["executionArn"]
        calls.task_tokens[until(lambda: task_token(sfn, execution))] = example.arn
        until(lambda: queued(place, settings.destination("orders").queue_url))
        calls.function = "drain_orders"  # from here on: moto's interpreter sent the message, not the drain
        described = until(lambda: drained(sfn, execution), deadline_s=60)
    finally:
        calls.unregister(events)
        wiring.reset()

    output = json.loads(described["output"])
    assert described["status"] == "SUCCEEDED", described
    assert output["body"] == {"order": "A-17", "accepted": True} and output["status_code"] == 201
    assert [json.loads(r.body) for r in api.requests] == [{"order": 17}]
    assert {c.operation for c in calls.calls} >= {
        "ReceiveMessage",
        "SendTaskSuccess",
        "DeleteMessageBatch",
    }
    drain_role = {"Statement": [s for d in role_of(example, "DrainOrdersRole") for s in d["Statement"]]}
    assert denied(calls.calls, {"drain_orders": drain_role}) == []


def task_token(sfn: Any, execution: str) -> str | None:
    """The token the execution's task put on its message, from its TaskScheduled event."""
    for event in sfn.get_execution_history(executionArn=execution)["events"]:
        details = event.get("taskScheduledEventDetails")
        if details:
            attributes = json.loads(details.get("parameters") or "{}").get("MessageAttributes", {})
            return str(attributes.get(TASK_TOKEN_ATTRIBUTE, {}).get("StringValue", "")) or None
    return None


def queued(place: Account, queue_url: str) -> bool:
    attributes = place.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) > 0


def drained(sfn: Any, execution: str) -> dict[str, Any] | None:
    """One drain run; the execution's description once it has ended."""
    wiring.drainer("orders").run(lambda: 60_000)
    described = dict(sfn.describe_execution(executionArn=execution))
    return described if described["status"] != "RUNNING" else None


def test_deleting_the_stack_keeps_the_data(
    endpoint: MotoEndpoint, stacks: list[tuple[Account, dict[str, Any]]]
) -> None:
    place, _ = stacks[-1]
    settings = load_settings(stack_env(place.client("cloudformation"), place.client("lambda"), STACK))
    cfn = place.client("cloudformation")
    cfn.delete_stack(StackName=STACK)
    cfn.get_waiter("stack_delete_complete").wait(
        StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    place.client("dynamodb").describe_table(TableName=settings.ledger_table)
    place.client("dynamodb").describe_table(TableName=settings.notes_table)
    place.client("dynamodb").describe_table(TableName=settings.table_name)
    for destination in settings.destinations.values():
        for url in (destination.queue_url, destination.dlq_url):
            place.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    assert settings.archive_bucket is not None
    place.client("s3").head_bucket(Bucket=settings.archive_bucket)
    assert place.client("lambda").list_functions()["Functions"] == []  # the code goes, the data stays


@pytest.mark.emulator_gap
def test_gap_moto_needs_a_name_for_a_rest_api_and_cannot_deploy_a_body(endpoint: MotoEndpoint) -> None:
    """CloudFormation names a RestApi from its OpenAPI `Body` and imports its methods; moto needs
    `Name` and ignores `Body`, so a deployment of it has no methods."""
    place = account(endpoint, "456789012345", "eu-central-1")
    cfn = place.client("cloudformation")
    body = {"swagger": "2.0", "info": {"title": "t"}, "paths": {"/": {"get": {"responses": {"200": {}}}}}}
    api = {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Body": body}}
    with pytest.raises(ResponseParserError, match="500 Internal Server Error"):  # a KeyError in moto
        cfn.create_stack(StackName="gap-name", TemplateBody=json.dumps({"Resources": {"Api": api}}))
    named = {"Api": {**api, "Properties": {**api["Properties"], "Name": "t"}}}
    deployment = {"Type": "AWS::ApiGateway::Deployment", "Properties": {"RestApiId": {"Ref": "Api"}}}
    with pytest.raises(ResponseParserError, match="contain any methods"):  # sent as JSON
        cfn.create_stack(
            StackName="gap-body", TemplateBody=json.dumps({"Resources": named | {"D": deployment}})
        )


@pytest.mark.emulator_gap
def test_gap_moto_runs_no_state_machine_its_cloudformation_made(endpoint: MotoEndpoint) -> None:
    """AWS has one set of state machines; moto's CloudFormation puts its own where the API does not
    look while executions are on, so the example's stack is given a copy (the `example` fixture)."""
    place = account(endpoint, "678901234567", "sa-east-1")
    definition = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    machine = {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "StateMachineName": "gap-machine",
            "RoleArn": "arn:aws:iam::678901234567:role/r",
            "DefinitionString": json.dumps(definition),
        },
    }
    cfn = place.client("cloudformation")
    cfn.create_stack(StackName="gap-sfn", TemplateBody=json.dumps({"Resources": {"M": machine}}))
    cfn.get_waiter("stack_create_complete").wait(
        StackName="gap-sfn", WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )

    assert place.client("stepfunctions").list_state_machines()["stateMachines"] == []
    assert [m["name"] for m in created_state_machines(endpoint, place)] == ["gap-machine"]


@pytest.mark.emulator_gap
def test_gap_moto_returns_a_stack_roles_inline_policy_as_a_python_repr(endpoint: MotoEndpoint) -> None:
    """AWS returns the policy as URL-encoded JSON (boto3 decodes it to a dict); moto returns the
    Python repr of the document for roles CloudFormation made, so `iam_check.role_documents` reads both."""
    place = account(endpoint, "567890123456", "eu-north-1")
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}],
    }
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {},
            "Policies": [{"PolicyName": "p", "PolicyDocument": document}],
        },
    }
    cfn = place.client("cloudformation")
    cfn.create_stack(StackName="gap-repr", TemplateBody=json.dumps({"Resources": {"R": role}}))
    iam = place.client("iam")
    (name,) = [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("gap-repr")]
    returned = iam.get_role_policy(RoleName=name, PolicyName="p")["PolicyDocument"]
    assert returned == repr(document)
