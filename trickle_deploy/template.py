"""The CloudFormation resources `chalice package --merge-template` adds beside Chalice's functions.

    python -m trickle_deploy.template --stage prod --package build/prod

writes `build/prod/merge.json` and runs `chalice package --stage prod --merge-template` into
`build/prod/pkg`. The template names no account and no region: every name, ARN and URL comes from
the stack (`AWS::StackName`, `AWS::AccountId`, `AWS::Region`, `AWS::Partition`, `Ref`, `GetAtt`),
and the functions get their resources' names from it, so the stage's config holds none and the
same template deploys unchanged into any account and region. Leave the `SourceStreamArn`
parameter empty to create the source table, or give an existing table's stream ARN. Stateful
resources are retained when the stack goes away or replaces them. The stream event source gets
what Chalice's decorator cannot set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chalicelib.ledger import table_definition
from chalicelib.settings import Settings, load_settings
from trickle_deploy.bootstrap import ARCHIVE_RETENTION_DAYS, BACKSTOP_MAX_RECEIVE_COUNT, RETENTION_S
from trickle_deploy.policies import is_template_stage, template_resources
from trickle_deploy.stream_settings import MAX_RECORD_AGE_S, STREAM_RETRY_ATTEMPTS
from trickle_local.stage import PROJECT_DIR, load_config

METRICS_NAMESPACE = "Trickle"


def visibility_for(drain_timeout_s: int) -> int:
    """A received message must stay hidden for the longest a drain can hold it, plus slack for the
    releases and deletes at the end of a run."""
    return drain_timeout_s + 60


def drain_timeout(config: Mapping[str, Any], stage: str) -> int:
    stage_config = config["stages"][stage]
    functions = stage_config.get("lambda_functions", {})
    return int(functions.get("drain", {}).get("lambda_timeout") or stage_config.get("lambda_timeout") or 60)


# Kept when the stack is deleted or a change replaces them: they hold data (README, "Deleting a stage").
RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
# What `chalice package` imports `app.py` with for a template stage: the settings need values, the
# merge template replaces every one of them in the functions and the stream event source, and a
# test checks that none of them is left in the packaged template.
PACKAGING_ENV = {
    "TRICKLE_STREAM_ARN": "arn:aws:dynamodb:packaging:000000000000:table/packaging/stream/packaging",
    "TRICKLE_QUEUE_URL": "https://sqs.packaging.invalid/000000000000/packaging-outbox.fifo",
    "TRICKLE_DLQ_URL": "https://sqs.packaging.invalid/000000000000/packaging-dead-letters.fifo",
    "TRICKLE_INGEST_FAILURE_QUEUE_URL": "https://sqs.packaging.invalid/000000000000/packaging-failures",
    "TRICKLE_LEDGER_TABLE": "packaging-ledger",
    "TRICKLE_ARCHIVE_BUCKET": "packaging-archive",
}
STREAM_ARN_PATTERN = (
    r"^$|^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]{3,255}/stream/.+$"
)


def _named(suffix: str) -> dict[str, str]:
    """A name unique per stack, account and region (queue, table and alias names are regional)."""
    return {"Fn::Sub": "${AWS::StackName}-" + suffix}


def _stream_arn() -> dict[str, Any]:
    return {
        "Fn::If": [
            "CreatesSourceTable",
            {"Fn::GetAtt": ["SourceTable", "StreamArn"]},
            {"Ref": "SourceStreamArn"},
        ]
    }


def _queue(name: dict[str, str], fifo: bool, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "QueueName": name,
        "MessageRetentionPeriod": RETENTION_S,
        "SqsManagedSseEnabled": True,
    }
    if fifo:
        properties["FifoQueue"] = True
    return {"Type": "AWS::SQS::Queue", **RETAIN, "Properties": properties | dict(extra or {})}


def _alarm(
    description: str, namespace: str, metric: str, dimensions: dict[str, Any], statistic: str, threshold: Any
) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            "Statistic": statistic,
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            },
        },
    }


def _dashboard(destination: str) -> dict[str, Any]:
    def widget(title: str, metrics: list[list[Any]], stat: str = "Sum") -> dict[str, Any]:
        return {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "metrics": metrics,
                "stat": stat,
                "period": 60,
                "region": "${AWS::Region}",
            },
        }

    def drain_metric(name: str) -> list[str]:
        return [METRICS_NAMESPACE, name, "destination", destination, "service", "trickle"]

    def ingest_metric(name: str) -> list[str]:
        return [METRICS_NAMESPACE, name, "table", "${SourceTableName}", "service", "trickle"]

    body = {
        "widgets": [
            widget(
                "Deliveries",
                [drain_metric(m) for m in ("Delivered", "Retried", "DeadLettered", "RateLimited")],
            ),
            widget("API latency (ms)", [drain_metric("ApiLatency")], "p90"),
            widget(
                "Age of a message when delivered (s)",
                [drain_metric("DeliveredAge")],
                "Maximum",
            ),
            widget(
                "Backlog",
                [
                    [
                        "AWS/SQS",
                        "ApproximateNumberOfMessagesVisible",
                        "QueueName",
                        "${OutboxQueue.QueueName}",
                    ],
                    [
                        "AWS/SQS",
                        "ApproximateNumberOfMessagesVisible",
                        "QueueName",
                        "${DeadLetterQueue.QueueName}",
                    ],
                ],
                "Maximum",
            ),
            widget(
                "Oldest message (s)",
                [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "${OutboxQueue.QueueName}"]],
                "Maximum",
            ),
            widget(
                "Ingest", [ingest_metric(m) for m in ("IngestRecords", "IngestRejected", "IngestFailures")]
            ),
            widget("Drain errors", [["AWS/Lambda", "Errors", "FunctionName", "${Drain}"]]),
            widget(
                "Ingest iterator age (ms)",
                [["AWS/Lambda", "IteratorAge", "FunctionName", "${Ingest}"]],
                "Maximum",
            ),
        ]
    }
    table_name = {"Fn::Select": [1, {"Fn::Split": ["/", _stream_arn()]}]}
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            # Dashboards are global per account: the region keeps two regions' stacks apart.
            "DashboardName": {"Fn::Sub": "${AWS::StackName}-${AWS::Region}"},
            "DashboardBody": {"Fn::Sub": [json.dumps(body), {"SourceTableName": table_name}]},
        },
    }


def _decrypt_policy(name: str, role: str, parameter: Any, ssm_service: Any) -> dict[str, Any]:
    """kms:Decrypt on the stage's key for one role, only through SSM and only for one parameter."""
    return {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": name,
            "Roles": [{"Ref": role}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DecryptThroughSsm",
                        "Effect": "Allow",
                        "Action": "kms:Decrypt",
                        "Resource": {"Fn::GetAtt": ["ApiKeyEncryptionKey", "Arn"]},
                        "Condition": {
                            "StringEquals": {
                                "kms:EncryptionContext:PARAMETER_ARN": parameter,
                                "kms:ViaService": ssm_service,
                            }
                        },
                    }
                ],
            },
        },
    }


def _archive_bucket() -> dict[str, Any]:
    """The response archive: private, encrypted, expiring what the drain stores. S3 names are
    global, so CloudFormation generates this one (unique, lowercase) and the functions get it."""
    return {
        "Type": "AWS::S3::Bucket",
        **RETAIN,
        "Properties": {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "expire-responses",
                        "Status": "Enabled",
                        "Prefix": "responses/",
                        "ExpirationInDays": ARCHIVE_RETENTION_DAYS,
                    }
                ]
            },
        },
    }


def _source_table(settings: Settings) -> dict[str, Any]:
    keys = [(settings.partition_key or "pk", "HASH"), ("sk", "RANGE")]
    return {
        "Type": "AWS::DynamoDB::Table",
        **RETAIN,
        "Condition": "CreatesSourceTable",
        "Properties": {
            "TableName": _named("items"),
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": n, "KeyType": k} for n, k in keys],
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n, _ in keys],
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    }


def _destination_resources(settings: Settings, visibility: int) -> dict[str, Any]:
    """What one destination needs: its FIFO queue and FIFO dead-letter queue, their alarms, and
    the drain's right to decrypt its key (one destination today; several later)."""
    resources = template_resources({"TRICKLE_API_KEY_PARAMETER": settings.destination.api_key_parameter})
    return {
        "DeadLetterQueue": _queue(_named("dead-letters.fifo"), fifo=True),
        "OutboxQueue": _queue(
            _named("outbox.fifo"),
            fifo=True,
            extra={
                "VisibilityTimeout": visibility,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                    "maxReceiveCount": BACKSTOP_MAX_RECEIVE_COUNT,
                },
            },
        ),
        "DrainDecryptApiKey": _decrypt_policy(
            "DecryptApiKey", "DrainRole", resources.parameter_arn, resources.ssm_service
        ),
        "DeadLettersAlarm": _alarm(
            "Trickle: messages in the dead-letter queue",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}},
            "Maximum",
            0,
        ),
        "OldestMessageAlarm": _alarm(
            "Trickle: the oldest queued message is too old",
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            {"QueueName": {"Fn::GetAtt": ["OutboxQueue", "QueueName"]}},
            "Maximum",
            {"Ref": "OldestMessageAlarmSeconds"},
        ),
    }


def function_environment() -> dict[str, Any]:
    """The variables naming the stack's resources, set on every function (each imports `app.py`,
    which reads them all)."""
    return {
        "TRICKLE_STREAM_ARN": _stream_arn(),
        "TRICKLE_QUEUE_URL": {"Ref": "OutboxQueue"},
        "TRICKLE_DLQ_URL": {"Ref": "DeadLetterQueue"},
        "TRICKLE_INGEST_FAILURE_QUEUE_URL": {"Ref": "IngestFailureQueue"},
        "TRICKLE_LEDGER_TABLE": {"Ref": "LedgerTable"},
        "TRICKLE_ARCHIVE_BUCKET": {"Ref": "ResponseArchive"},
    }


def stage_functions(settings: Settings) -> list[str]:
    """The logical ids Chalice gives the stage's functions."""
    return ["Ingest", "Drain", "APIHandler"] + (["TokenAuth"] if settings.auth == "token" else [])


def merge_template(stage: str) -> dict[str, Any]:
    config = load_config()
    env = config["stages"][stage]["environment_variables"]
    if not is_template_stage(env):
        raise SystemExit(
            f"stage {stage!r} names its resources (TRICKLE_QUEUE_URL is set): deploy it with the"
            " bootstrap and chalice deploy, or remove its resource variables to deploy it with this template"
        )
    settings = load_settings(env | PACKAGING_ENV)
    resources = template_resources(env)
    visibility = visibility_for(drain_timeout(config, stage))
    event_source: dict[str, Any] = {
        "Stream": _stream_arn(),
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": {"Ref": "StreamRetryAttempts"},
        "MaximumRecordAgeInSeconds": MAX_RECORD_AGE_S,
        "DestinationConfig": {
            "OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["IngestFailureQueue", "Arn"]}}
        },
    }
    if settings.partial_batch_response:
        event_source["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
    environment = {"Environment": {"Variables": function_environment()}}
    functions: dict[str, Any] = {name: {"Properties": environment} for name in stage_functions(settings)}
    functions["Ingest"] = {
        "Properties": environment | {"Events": {"IngestDynamodbEventSource": {"Properties": event_source}}}
    }
    token_decrypt = (
        {
            "TokenAuthDecryptToken": _decrypt_policy(
                "DecryptOperatorToken", "TokenAuthRole", resources.token_parameter_arn, resources.ssm_service
            )
        }
        if settings.auth == "token" and resources.token_parameter_arn
        else {}
    )
    return {
        "Parameters": {
            "SourceStreamArn": {
                "Type": "String",
                "Default": "",
                "AllowedPattern": STREAM_ARN_PATTERN,
                "Description": "Stream ARN of an existing table to relay; empty: create the table",
            },
            "AlarmTopicArn": {
                "Type": "String",
                "Default": "",
                "Description": "SNS topic for alarms (optional)",
            },
            "OldestMessageAlarmSeconds": {"Type": "Number", "Default": 900, "MinValue": 60},
            "IteratorAgeAlarmMilliseconds": {"Type": "Number", "Default": 600000, "MinValue": 1000},
            "StreamRetryAttempts": {
                "Type": "Number",
                "Default": STREAM_RETRY_ATTEMPTS,
                "MinValue": 0,
                "MaxValue": 10000,
            },
        },
        "Conditions": {
            "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]},
            "CreatesSourceTable": {"Fn::Equals": [{"Ref": "SourceStreamArn"}, ""]},
        },
        "Resources": {
            **functions,
            "SourceTable": _source_table(settings),
            **_destination_resources(settings, visibility),
            "IngestFailureQueue": _queue(_named("ingest-failures"), fifo=False),
            "LedgerTable": {
                "Type": "AWS::DynamoDB::Table",
                **RETAIN,
                "Properties": {
                    "TableName": _named("ledger"),
                    "BillingMode": "PAY_PER_REQUEST",
                    **table_definition(),
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                },
            },
            "ApiKeyEncryptionKey": {
                "Type": "AWS::KMS::Key",
                **RETAIN,
                "Properties": {
                    "Description": f"Encrypts Trickle's {stage} API key in SSM Parameter Store",
                    "EnableKeyRotation": True,
                    "KeyPolicy": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "AccountAdministers",
                                "Effect": "Allow",
                                "Principal": {
                                    "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
                                },
                                "Action": "kms:*",
                                "Resource": "*",
                            }
                        ],
                    },
                },
            },
            "ApiKeyEncryptionKeyAlias": {
                "Type": "AWS::KMS::Alias",
                "Properties": {
                    "AliasName": {"Fn::Sub": "alias/${AWS::StackName}-api-key"},
                    "TargetKeyId": {"Ref": "ApiKeyEncryptionKey"},
                },
            },
            **token_decrypt,
            "DrainErrorsAlarm": _alarm(
                "Trickle: the drain failed",
                "AWS/Lambda",
                "Errors",
                {"FunctionName": {"Ref": "Drain"}},
                "Sum",
                0,
            ),
            "IngestIteratorAgeAlarm": _alarm(
                "Trickle: the stream handler is falling behind",
                "AWS/Lambda",
                "IteratorAge",
                {"FunctionName": {"Ref": "Ingest"}},
                "Maximum",
                {"Ref": "IteratorAgeAlarmMilliseconds"},
            ),
            "Dashboard": _dashboard(settings.destination.name),
            "ResponseArchive": _archive_bucket(),
        },
        "Outputs": {
            "ApiKeyEncryptionKeyArn": {"Value": {"Fn::GetAtt": ["ApiKeyEncryptionKey", "Arn"]}},
            "ApiKeyParameterArn": {"Value": resources.parameter_arn},
            "PutApiKeyCommand": {
                "Description": "Stores the destination's API key (run once after the first deploy)",
                "Value": {
                    "Fn::Sub": "aws ssm put-parameter --region ${AWS::Region} --name "
                    + settings.destination.api_key_parameter
                    + " --type SecureString --key-id alias/${AWS::StackName}-api-key"
                    ' --value "$API_KEY" --overwrite'
                },
            },
            "QueueUrl": {"Value": {"Ref": "OutboxQueue"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "LedgerTableName": {"Value": {"Ref": "LedgerTable"}},
            "SourceStreamArn": {"Value": _stream_arn()},
            "ResponseArchiveBucket": {"Value": {"Ref": "ResponseArchive"}},
        },
    }


def package(stage: str, out: Path, region: str = "us-east-1") -> Path:
    """Write `out/merge.json` and run `chalice package` with it; returns the packaged template.
    (`region` only fills botocore's need for one: nothing regional reaches the template.)"""
    out.mkdir(parents=True, exist_ok=True)
    merge = out / "merge.json"
    merge.write_text(json.dumps(merge_template(stage), indent=2) + "\n")
    chalice = Path(sys.executable).parent / "chalice"
    env = {"AWS_DEFAULT_REGION": region} | dict(os.environ) | PACKAGING_ENV
    subprocess.run(
        [str(chalice), "package", "--stage", stage, "--merge-template", str(merge), str(out / "pkg")],
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
        env=env,
    )
    return out / "pkg" / "sam.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trickle_deploy.template", description=__doc__)
    parser.add_argument("--stage", required=True)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="only write the merge template here")
    target.add_argument(
        "--package", type=Path, metavar="DIR", help="write DIR/merge.json, package into DIR/pkg"
    )
    args = parser.parse_args(argv)
    if args.package:
        print(package(args.stage, args.package))
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merge_template(args.stage), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
