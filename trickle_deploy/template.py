"""The CloudFormation resources `chalice package --merge-template` adds beside Chalice's functions.

    python -m trickle_deploy.template --stage prod [--create-source-table] --out build/merge-prod.json
    chalice package --stage prod --merge-template build/merge-prod.json build/prod

Names come from the stage's environment variables, so the functions' settings and the resources
agree. The stream event source gets what Chalice's decorator cannot set.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chalicelib.settings import load_settings
from trickle_deploy.bootstrap import (
    ARCHIVE_RETENTION_DAYS,
    BACKSTOP_MAX_RECEIVE_COUNT,
    RETENTION_S,
    StageNames,
)
from trickle_deploy.policies import parameter_arn, stage_resources
from trickle_local.stage import load_config

METRICS_NAMESPACE = "Trickle"
# Stream records live 24 hours; retries beyond that only meet expired records.
MAX_RECORD_AGE_S = 86_400
STREAM_RETRY_ATTEMPTS = 10


def visibility_for(drain_timeout_s: int) -> int:
    """A received message must stay hidden for the longest a drain can hold it, plus slack for the
    releases and deletes at the end of a run."""
    return drain_timeout_s + 60


def drain_timeout(config: Mapping[str, Any], stage: str) -> int:
    stage_config = config["stages"][stage]
    functions = stage_config.get("lambda_functions", {})
    return int(functions.get("drain", {}).get("lambda_timeout") or stage_config.get("lambda_timeout") or 60)


def _queue(name: str, fifo: bool, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "QueueName": name,
        "MessageRetentionPeriod": RETENTION_S,
        "SqsManagedSseEnabled": True,
    }
    if fifo:
        properties["FifoQueue"] = True
    return {"Type": "AWS::SQS::Queue", "Properties": properties | dict(extra or {})}


def _alarm(
    description: str, namespace: str, metric: str, dimensions: dict[str, Any], statistic: str, threshold: int
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


def _dashboard(stage: str, names: StageNames, destination: str) -> dict[str, Any]:
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
        return [METRICS_NAMESPACE, name, "table", names.table, "service", "trickle"]

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
                    ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", names.queue],
                    ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", names.dead_letter_queue],
                ],
                "Maximum",
            ),
            widget(
                "Oldest message (s)",
                [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", names.queue]],
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
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {"DashboardName": f"trickle-{stage}", "DashboardBody": {"Fn::Sub": json.dumps(body)}},
    }


def _decrypt_policy(name: str, role: str, parameter: str) -> dict[str, Any]:
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
                                "kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"},
                            }
                        },
                    }
                ],
            },
        },
    }


def _archive_bucket(bucket: str | None) -> dict[str, Any]:
    """The response archive: private, encrypted, expiring what the drain stores."""
    if not bucket:
        return {}
    return {
        "ResponseArchive": {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "BucketName": bucket,
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
    }


def merge_template(stage: str, create_source_table: bool = False) -> dict[str, Any]:
    config = load_config()
    env = config["stages"][stage]["environment_variables"]
    settings = load_settings(env)
    names = StageNames.from_env(env)
    resources = stage_resources(env)
    visibility = visibility_for(drain_timeout(config, stage))
    event_source: dict[str, Any] = {
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": {"Ref": "StreamRetryAttempts"},
        "MaximumRecordAgeInSeconds": MAX_RECORD_AGE_S,
        "DestinationConfig": {
            "OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": ["IngestFailureQueue", "Arn"]}}
        },
    }
    if settings.partial_batch_response:
        event_source["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
    if create_source_table:
        event_source["Stream"] = {"Fn::GetAtt": ["SourceTable", "StreamArn"]}
    template: dict[str, Any] = {
        "Parameters": {
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
        "Conditions": {"HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}},
        "Resources": {
            "Ingest": {"Properties": {"Events": {"IngestDynamodbEventSource": {"Properties": event_source}}}},
            "DeadLetterQueue": _queue(names.dead_letter_queue, fifo=True),
            "OutboxQueue": _queue(
                names.queue,
                fifo=True,
                extra={
                    "VisibilityTimeout": visibility,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                        "maxReceiveCount": BACKSTOP_MAX_RECEIVE_COUNT,
                    },
                },
            ),
            "IngestFailureQueue": _queue(names.ingest_failure_queue, fifo=False),
            "LedgerTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": names.ledger_table,
                    "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "message_id", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "message_id", "AttributeType": "S"}],
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                },
            },
            "ApiKeyEncryptionKey": {
                "Type": "AWS::KMS::Key",
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
                    "AliasName": f"alias/trickle-{stage}-api-key",
                    "TargetKeyId": {"Ref": "ApiKeyEncryptionKey"},
                },
            },
            "DrainDecryptApiKey": _decrypt_policy("DecryptApiKey", "DrainRole", resources.parameter_arn),
            **(
                {
                    "TokenAuthDecryptToken": _decrypt_policy(
                        "DecryptOperatorToken", "TokenAuthRole", resources.token_parameter_arn
                    )
                }
                if resources.token_parameter_arn
                else {}
            ),
            "DeadLettersAlarm": _alarm(
                "Trickle: messages in the dead-letter queue",
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                {"QueueName": names.dead_letter_queue},
                "Maximum",
                0,
            ),
            "OldestMessageAlarm": _alarm(
                "Trickle: the oldest queued message is too old",
                "AWS/SQS",
                "ApproximateAgeOfOldestMessage",
                {"QueueName": names.queue},
                "Maximum",
                0,
            ),
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
                0,
            ),
            "Dashboard": _dashboard(stage, names, settings.destination.name),
            **_archive_bucket(settings.archive_bucket),
        },
        "Outputs": {
            "ApiKeyEncryptionKeyArn": {"Value": {"Fn::GetAtt": ["ApiKeyEncryptionKey", "Arn"]}},
            "ApiKeyParameterArn": {
                "Value": parameter_arn(
                    names.api_key_parameter, resources.partition, resources.region, resources.account
                )
            },
        },
    }
    alarms = template["Resources"]
    alarms["OldestMessageAlarm"]["Properties"]["Threshold"] = {"Ref": "OldestMessageAlarmSeconds"}
    alarms["IngestIteratorAgeAlarm"]["Properties"]["Threshold"] = {"Ref": "IteratorAgeAlarmMilliseconds"}
    if create_source_table:
        keys = [(names.partition_key, "HASH")] + ([(names.sort_key, "RANGE")] if names.sort_key else [])
        alarms["SourceTable"] = {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": names.table,
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [{"AttributeName": n, "KeyType": k} for n, k in keys],
                "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n, _ in keys],
                "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            },
        }
    return template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trickle_deploy.template", description=__doc__)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--create-source-table", action="store_true", help="also create the source table")
    parser.add_argument("--out", type=Path, help="write here (default: stdout)")
    args = parser.parse_args(argv)
    text = json.dumps(merge_template(args.stage, args.create_source_table), indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
