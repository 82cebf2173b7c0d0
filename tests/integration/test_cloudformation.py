"""The prod stage's packaged template, transformed with aws-sam-translator, created by the emulator's
CloudFormation (moto) in two accounts and regions that are not moto's defaults, from the same
packaged template. What the functions and roles ended up naming is read back from the emulator.

moto's CloudFormation lacks parts of what the template uses; those are shimmed here, in the test
harness only, each pinned by an emulator-gap test below, and checked on the transformed template
instead (test_template.py):
- `AWS::ApiGateway::RestApi` needs `Name` in moto (CloudFormation takes it from `Body`'s title) and
  moto ignores `Body`, so the API has no methods and `AWS::ApiGateway::Deployment` fails; the copy
  sent to moto gets the title as `Name` and goes without the deployment and its stage.
- `AWS::CloudWatch::Alarm` and `AWS::ApiGateway::Stage` are not supported: moto skips them.
- Lambda functions are created, never run.
"""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.parsers import ResponseParserError
from deployment import package_stage, sam_transform

from chalicelib.settings import load_settings
from trickle_deploy.operate import stack_env
from trickle_local.endpoint import MotoEndpoint

STACK = "trickle-prod"
# The second place relays a table it already has (the SourceStreamArn parameter).
PLACES = [("210987654321", "eu-west-3", None), ("345678901234", "ap-southeast-2", "orders")]
UNSUPPORTED_BY_MOTO = ("AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage")

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


def for_moto(template: dict[str, Any]) -> dict[str, Any]:
    """The shims named in the module docstring, on a copy; the product's template is unchanged."""
    shimmed = copy.deepcopy(template)
    resources = shimmed["Resources"]
    for name in [n for n, r in resources.items() if r["Type"] in UNSUPPORTED_BY_MOTO]:
        del resources[name]
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGateway::RestApi":
            resource["Properties"]["Name"] = resource["Properties"]["Body"]["info"]["title"]
    shimmed["Outputs"] = {k: v for k, v in shimmed["Outputs"].items() if k != "EndpointURL"}  # the stage's
    return shimmed


def role_documents(iam: Any) -> dict[str, list[dict[str, Any]]]:
    """Every role's inline policy documents. moto hands back a CloudFormation role's inline
    policies as Python reprs rather than JSON, so both are read."""
    out: dict[str, list[dict[str, Any]]] = {}
    for role in iam.list_roles()["Roles"]:
        for policy in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=policy)["PolicyDocument"]
            if isinstance(document, str):
                document = ast.literal_eval(document)
            out.setdefault(role["RoleName"], []).append(document)
    return out


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
        bucket = f"artifacts-{account_id}-{region}"  # what `aws cloudformation package` uploads to
        place.client("s3").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
        )
        place.client("s3").upload_file(str(code), bucket, "deployment.zip")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AWS_DEFAULT_REGION", region)
            transformed = sam_transform(sam, f"s3://{bucket}/deployment.zip")
        cfn = place.client("cloudformation")
        cfn.create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(for_moto(transformed)),
            Capabilities=["CAPABILITY_IAM"],
            Parameters=parameters,
        )
        cfn.get_waiter("stack_create_complete").wait(
            StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
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
        skipped = {n for n, r in transformed["Resources"].items() if r["Type"] in UNSUPPORTED_BY_MOTO}
        alarms = {n for n, r in transformed["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        relays = {"SourceTable"} if place.id == PLACES[1][0] else set()  # its condition is false
        assert set(transformed["Resources"]) - skipped - alarms - relays <= created, place
        assert not relays & created
        tables = place.client("dynamodb").list_tables()["TableNames"]
        assert ("orders" in tables) is bool(relays) and (f"{STACK}-items" in tables) is not bool(relays)


def test_every_function_names_only_its_own_account_and_region(
    stacks: list[tuple[Account, dict[str, Any]]],
) -> None:
    for place, _ in stacks:
        sqs, dynamodb = place.client("sqs"), place.client("dynamodb")
        functions = place.client("lambda").list_functions()["Functions"]
        assert len(functions) == 4  # ingest, two drains, API handler: no token authorizer with IAM auth
        for function in functions:
            env = function["Environment"]["Variables"]
            settings = load_settings(env)
            for arn in [settings.stream_arn]:
                assert_only(place, arn)
            queues = [url for d in settings.destinations.values() for url in (d.queue_url, d.dlq_url)]
            for url in [*queues, env["TRICKLE_INGEST_FAILURE_QUEUE_URL"]]:
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
        documents = role_documents(place.client("iam"))
        assert len(documents) == 4  # ingest, a drain per destination, the API handler
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
            logical = "Drain" + destination.name.capitalize()
            (drain,) = [
                f for f in lambda_client.list_functions()["Functions"] if f"-{logical}-" in f["FunctionName"]
            ]
            assert int(visibility) > drain["Timeout"]
            assert "ReservedConcurrentExecutions" not in lambda_client.get_function(
                FunctionName=drain["FunctionName"]
            )
        (mapping,) = lambda_client.list_event_source_mappings()["EventSourceMappings"]
        assert mapping["EventSourceArn"] == settings.stream_arn
        assert mapping["BisectBatchOnFunctionError"] is True
        assert mapping["MaximumRetryAttempts"] == 10
        assert mapping["MaximumRecordAgeInSeconds"] == 86_400
        failure_arn = f"arn:aws:sqs:{place.region}:{place.id}:{STACK}-ingest-failures"
        assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == failure_arn


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
                f"aws ssm put-parameter --region {place.region} --name {parameter} --type SecureString"
                f' --key-id alias/{STACK}-api-key --value "$API_KEY" --overwrite'
            )
            assert (
                outputs[f"{prefix}ApiKeyParameterArn"]
                == f"arn:aws:ssm:{place.region}:{place.id}:parameter{parameter}"
            )


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
def test_gap_moto_returns_a_stack_roles_inline_policy_as_a_python_repr(endpoint: MotoEndpoint) -> None:
    """AWS returns the policy as URL-encoded JSON (boto3 decodes it to a dict); moto returns the
    Python repr of the document for roles CloudFormation made, so `role_documents` reads both."""
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
