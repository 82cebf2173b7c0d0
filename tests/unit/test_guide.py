"""`python -m trickle_deploy.guide`: the key and clean-up commands of a template stage's stack,
generated from its merge template (docs/deploying.md prints them; issue #22)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.settings import Settings
from trickle_deploy.guide import cleanup_commands, key_commands, resolve, secure_parameters
from trickle_deploy.template import merge_template

STACK = "shop-eu"
RETAIN = {"DeletionPolicy": "Retain"}


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("plain", "plain"),
        ({"Fn::Sub": "${AWS::StackName}-ledger"}, "shop-eu-ledger"),
        ({"Fn::Sub": "alias/${AWS::StackName}-api-key"}, "alias/shop-eu-api-key"),
    ],
)
def test_a_name_is_resolved_with_the_stack_name(value: Any, name: str) -> None:
    assert resolve(value, STACK) == name


@pytest.mark.parametrize(
    "value",
    [
        {"Fn::Sub": "${AWS::StackName}-${AWS::Region}"},  # not known before the deploy
        {"Ref": "LedgerTable"},
        {"Fn::Sub": "x", "Other": 1},
        7,
    ],
)
def test_a_name_the_stack_name_does_not_give_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="not a name the stack name alone gives"):
        resolve(value, STACK)


def template(**resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "Resources": {
            "Alias": {
                "Type": "AWS::KMS::Alias",
                "Properties": {"AliasName": {"Fn::Sub": "alias/${AWS::StackName}-k"}},
            },
            **resources,
        },
        "Outputs": {
            "BucketName": {"Value": {"Ref": "Bucket"}},
            "KeyArn": {"Value": {"Fn::GetAtt": ["Key", "Arn"]}},
        },
    }


def test_every_secure_string_gets_a_put_command_with_its_own_variable(
    make_settings: Callable[..., Settings],
) -> None:
    parameters = secure_parameters(
        make_settings(TRICKLE_AUTH="token", TRICKLE_AUTH_TOKEN_PARAMETER="/trickle/test/operator-token")
    )
    assert parameters == [
        ("ORDERS_API_KEY", "/trickle/test/api-key", "the API key of orders"),
        ("CRM_API_KEY", "/trickle/test/crm-key", "the API key of crm"),
        ("OPERATOR_TOKEN", "/trickle/test/operator-token", "the operator token"),
    ]
    assert key_commands(template(), parameters[2:], STACK) == [
        "# OPERATOR_TOKEN: the operator token",
        "aws ssm put-parameter --name /trickle/test/operator-token --type SecureString"
        ' --key-id alias/shop-eu-k --value "$OPERATOR_TOKEN" --overwrite',
    ]
    assert secure_parameters(make_settings())[-1][0] == "CRM_API_KEY"  # IAM auth: no token


def test_each_destination_gets_a_command_per_secret_it_reads_saying_what_its_variable_holds(
    secret_kinds: Settings,
) -> None:
    """Issue #24: credentials unless auth = none, a signing secret if it signs, the secret headers'
    values if it has any; each from a variable of its own."""
    commands = key_commands(template(), secure_parameters(secret_kinds), STACK)
    put = "aws ssm put-parameter --name {} --type SecureString --key-id alias/shop-eu-k"
    assert commands == [
        "# ORDERS_API_KEY: the API key of orders",
        put.format("/trickle/test/api-key") + ' --value "$ORDERS_API_KEY" --overwrite',
        "# ORDERS_SIGNING_SECRET: the signing secret of orders, whsec_<base64> (two, space-separated,"
        " during a rotation)",
        put.format("/trickle/test/orders-signing-secret") + ' --value "$ORDERS_SIGNING_SECRET" --overwrite',
        "# ORDERS_HEADERS: the secret headers' values of orders,"
        ' JSON {"X-Tenant-Key": "...", "X-Region": "..."}',
        put.format("/trickle/test/orders-headers") + ' --value "$ORDERS_HEADERS" --overwrite',
        "# CRM_API_KEY: the OAuth2 client credentials of crm,"
        ' JSON {"client_id": "...", "client_secret": "..."}',
        put.format("/trickle/test/crm-key") + ' --value "$CRM_API_KEY" --overwrite',
        '# BILLING_API_KEY: the Basic credentials of billing, JSON {"username": "...", "password": "..."}',
        put.format("/trickle/test/billing-api-key") + ' --value "$BILLING_API_KEY" --overwrite',
        "# HOOKS_SIGNING_SECRET: the signing secret of hooks, whsec_<base64> (two, space-separated,"
        " during a rotation)",
        put.format("/trickle/test/hooks-signing-secret") + ' --value "$HOOKS_SIGNING_SECRET" --overwrite',
    ]  # open: auth = none, unsigned, no secret headers: nothing to store


def test_the_clean_up_reads_what_goes_with_the_stack_first_and_removes_every_retained_resource() -> None:
    commands = cleanup_commands(
        template(
            Table={
                "Type": "AWS::DynamoDB::Table",
                **RETAIN,
                "Condition": "CreatesSourceTable",
                "Properties": {"TableName": {"Fn::Sub": "${AWS::StackName}-items"}},
            },
            Queue={
                "Type": "AWS::SQS::Queue",
                **RETAIN,
                "Properties": {"QueueName": {"Fn::Sub": "${AWS::StackName}-q.fifo"}},
            },
            Bucket={"Type": "AWS::S3::Bucket", **RETAIN},
            Key={"Type": "AWS::KMS::Key", **RETAIN},
            Alarm={"Type": "AWS::CloudWatch::Alarm", "Properties": {}},  # goes with the stack
        ),
        ["/p/one"],
        STACK,
    )
    describe = "aws cloudformation describe-stacks --stack-name shop-eu --query"
    output = "Stacks[0].Outputs[?OutputKey=={!r}].OutputValue"
    functions = "StackResources[?ResourceType=='AWS::Lambda::Function'].PhysicalResourceId"
    assert commands == [
        f'BUCKET_NAME=$({describe} "{output.format("BucketName")}" --output text)',
        f'KEY_ARN=$({describe} "{output.format("KeyArn")}" --output text)',
        f'FUNCTIONS=$(aws cloudformation describe-stack-resources --stack-name shop-eu --query "{functions}"'
        " --output text)",
        "aws cloudformation delete-stack --stack-name shop-eu",
        "aws cloudformation wait stack-delete-complete --stack-name shop-eu",
        "aws dynamodb delete-table --table-name shop-eu-items"
        "  # only if the stack created it (SourceStreamArn was empty)",
        'aws sqs delete-queue --queue-url "$(aws sqs get-queue-url --queue-name shop-eu-q.fifo'
        ' --query QueueUrl --output text)"',
        'aws s3 rb "s3://$BUCKET_NAME" --force',
        'aws kms schedule-key-deletion --key-id "$KEY_ARN" --pending-window-in-days 7',
        "aws ssm delete-parameter --name /p/one",
        'for name in $FUNCTIONS; do aws logs delete-log-group --log-group-name "/aws/lambda/$name"; done',
    ]


@pytest.mark.parametrize(
    ("resource", "refusal"),
    [
        ({"Type": "AWS::Logs::LogGroup", **RETAIN}, "does not know how to remove it"),
        ({"Type": "AWS::S3::Bucket", **RETAIN}, "no output gives Orphan's"),
    ],
)
def test_a_retained_resource_the_clean_up_cannot_remove_is_an_error(
    resource: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        cleanup_commands(template(Orphan=resource), [], STACK)


def test_the_prod_clean_up_names_every_resource_its_stack_retains() -> None:
    prod = merge_template("prod")
    text = "\n".join(cleanup_commands(prod, [], "trickle-prod"))
    retained = {k: r for k, r in prod["Resources"].items() if r.get("DeletionPolicy") == "Retain"}
    assert len(retained) == 16  # 8 of the stage, and a queue and its dead-letter queue per destination
    for logical_id, resource in retained.items():
        properties = resource.get("Properties", {})
        name = properties.get("TableName") or properties.get("QueueName")
        if name:
            assert f" {resolve(name, 'trickle-prod')}" in text, logical_id
        else:
            (output,) = [o for o, v in prod["Outputs"].items() if logical_id in str(v["Value"])]
            assert f"OutputKey=='{output}'" in text, logical_id
