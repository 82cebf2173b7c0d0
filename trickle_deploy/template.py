"""The CloudFormation resources `chalice package --merge-template` adds beside Chalice's functions.

    python -m trickle_deploy.template --stage prod --package build/prod

writes `build/prod/merge.json` and runs `chalice package --stage prod --merge-template` into
`build/prod/pkg`. The template names no account and no region: every name, ARN and URL comes from
the stack (`AWS::StackName`, `AWS::AccountId`, `AWS::Region`, `AWS::Partition`, `Ref`, `GetAtt`),
and the functions get their resources' names from it, so the stage's config holds none and the
same template deploys unchanged into any account and region. Leave the `SourceStreamArn`
parameter empty to create the source table, or give an existing table's stream ARN; name a
destination in `ExampleDestination` to add a state machine that waits for Trickle. Stateful
resources are retained when the stack goes away or replaces them. The stream event source gets
what Chalice's decorator cannot set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chalicelib import naming
from chalicelib.ledger import STATUS_INDEX, table_definition
from chalicelib.notes import notes_table_definition
from chalicelib.settings import Destination, Settings
from trickle_deploy.policies import (
    CALLBACK_ACTIONS,
    DestinationArns,
    template_resources,
)
from trickle_deploy.stream_settings import MAX_RECORD_AGE_S, STREAM_RETRY_ATTEMPTS
from trickle_project.resources import (
    BACKSTOP_MAX_RECEIVE_COUNT,
    JOBS_MAX_RECEIVE_COUNT,
    RETENTION_S,
    archive_expiry,
    expiry_rule_id,
)
from trickle_project.secret_parameters import CREDENTIALS, HEADERS, SIGNING
from trickle_project.stage import PROJECT_DIR, is_template_stage, load_config, packaging_env, stage_settings
from trickle_project.workflows import wait_definition

METRICS_NAMESPACE = "Trickle"


def visibility_for(timeout_s: int) -> int:
    """A received message must stay hidden for the longest a function can hold it (a drain, or the
    `jobs` function holding its task), plus slack for the releases and deletes at the end of a run."""
    return timeout_s + 60


def function_timeout(config: Mapping[str, Any], stage: str, function: str) -> int:
    stage_config = config["stages"][stage]
    configured = stage_config.get("lambda_functions", {}).get(function, {})
    return int(configured.get("lambda_timeout") or stage_config.get("lambda_timeout") or 60)


def drain_timeout(config: Mapping[str, Any], stage: str, destination: str) -> int:
    return function_timeout(config, stage, naming.drain_function(destination))


# Kept when the stack is deleted or a change replaces them: they hold data (docs/deploying.md, "Data
# survives the stack").
RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
STREAM_ARN_PATTERN = (
    r"^$|^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]{3,255}/stream/.+$"
)


STACK_NAME = "${AWS::StackName}"


def _named(suffix: str) -> dict[str, str]:
    """A name unique per stack, account and region (queue, table and alias names are regional)."""
    return {"Fn::Sub": f"{STACK_NAME}-{suffix}"}


def _table(suffix: str, definition: dict[str, Any]) -> dict[str, Any]:
    """A retained on-demand table with TTL on `expires_at` and point-in-time recovery."""
    return {
        "Type": "AWS::DynamoDB::Table",
        **RETAIN,
        "Properties": {
            "TableName": _named(suffix),
            "BillingMode": "PAY_PER_REQUEST",
            **definition,
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    }


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
    description: str,
    namespace: str,
    metric: str,
    dimensions: dict[str, Any],
    statistic: str,
    threshold: Any,
    comparison: str = "GreaterThanThreshold",
    period_s: int = 60,
) -> dict[str, Any]:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace,
            "MetricName": metric,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            "Statistic": statistic,
            "Period": period_s,
            "EvaluationPeriods": 1,
            "Threshold": threshold,
            "ComparisonOperator": comparison,
            "TreatMissingData": "notBreaching",
            "AlarmActions": {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            },
        },
    }


def drain_metric_dimensions(destination: str) -> dict[str, str]:
    """The dimensions of a drain's own metrics (`metrics.RunMetrics` for the destination)."""
    return {"destination": destination, "service": "trickle"}


UNROUTED_SHARE_PERIOD_S = 300


def _unrouted_share_alarm() -> dict[str, Any]:
    """Fires when the share of stream records no route takes, over five minutes of batches, exceeds
    the `UnroutedShareAlarmPercent` parameter: a routes change or new items that stop matching show
    up at once, not as silence. IngestUnrouted has no data point for a batch without any (FILL)."""

    def total(name: str) -> dict[str, Any]:
        dimensions = {"table": _source_table_name(), "service": "trickle"}
        return {
            "Id": name.removeprefix("Ingest").lower(),
            "ReturnData": False,
            "MetricStat": {
                "Metric": {
                    "Namespace": METRICS_NAMESPACE,
                    "MetricName": name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                },
                "Period": UNROUTED_SHARE_PERIOD_S,
                "Stat": "Sum",
            },
        }

    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": "Trickle: a jump in the share of stream records no route takes",
            "Metrics": [
                total("IngestUnrouted"),
                total("IngestRecords"),
                {
                    "Id": "share",
                    "Label": "Unrouted share of stream records (%)",
                    "Expression": "100 * FILL(unrouted, 0) / records",
                    "ReturnData": True,
                },
            ],
            "EvaluationPeriods": 1,
            "Threshold": {"Ref": "UnroutedShareAlarmPercent"},
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            },
        },
    }


def _source_table_name() -> dict[str, Any]:
    """The source table's name, from its stream ARN (`arn:...:table/NAME/stream/LABEL`)."""
    return {"Fn::Select": [1, {"Fn::Split": ["/", _stream_arn()]}]}


def _dashboard(destinations: Sequence[Destination]) -> dict[str, Any]:
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

    def drain_metric(name: str, destination: str) -> list[str]:
        dimensions = drain_metric_dimensions(destination).items()
        return [METRICS_NAMESPACE, name, *(part for dimension in dimensions for part in dimension)]

    def ingest_metric(name: str) -> list[str]:
        return [METRICS_NAMESPACE, name, "table", "${SourceTableName}", "service", "trickle"]

    widgets = []
    for d in destinations:
        queue, dead = (
            f"${{{naming.queue_id(d.name)}.QueueName}}",
            f"${{{naming.dead_letter_queue_id(d.name)}.QueueName}}",
        )
        widgets += [
            widget(
                f"{d.name}: deliveries",
                [drain_metric(m, d.name) for m in ("Delivered", "Retried", "DeadLettered", "RateLimited")],
            ),
            widget(f"{d.name}: API latency (ms)", [drain_metric("ApiLatency", d.name)], "p90"),
            widget(f"{d.name}: age when delivered (s)", [drain_metric("DeliveredAge", d.name)], "Maximum"),
            widget(
                f"{d.name}: backlog",
                [
                    ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue],
                    ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dead],
                ],
                "Maximum",
            ),
            widget(
                f"{d.name}: oldest message (s)",
                [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue]],
                "Maximum",
            ),
            widget(
                f"{d.name}: drain errors",
                [["AWS/Lambda", "Errors", "FunctionName", f"${{{naming.logical_id(d.drain_function)}}}"]],
            ),
        ]
    widgets += [
        widget(
            "Ingest",
            [
                ingest_metric(m)
                for m in ("IngestRecords", "IngestUnrouted", "IngestRejected", "IngestFailures")
            ],
        ),
        widget(
            "Backfill and replay tasks",
            [
                ["AWS/SQS", m, "QueueName", f"${{{queue}.QueueName}}"]
                for queue in (JOB_TASKS, JOB_TASKS_DEAD_LETTERS)
                for m in ("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible")
            ],
            "Maximum",
        ),
        widget(
            "Ingest iterator age (ms)",
            [["AWS/Lambda", "IteratorAge", "FunctionName", "${Ingest}"]],
            "Maximum",
        ),
    ]
    body = {"widgets": widgets}
    table_name = _source_table_name()
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            # Dashboards are global per account: the region keeps two regions' stacks apart.
            "DashboardName": _named("${AWS::Region}"),
            "DashboardBody": {"Fn::Sub": [json.dumps(body), {"SourceTableName": table_name}]},
        },
    }


def _decrypt_policy(name: str, role: str, parameter: Any, ssm_service: Any) -> dict[str, Any]:
    """kms:Decrypt on the stage's key for one role, only through SSM and only for its parameter(s)."""
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


def _archive_bucket(delivered_days: int) -> dict[str, Any]:
    """The archive of the API's responses and of what the drains delivered: private, encrypted at
    rest (SSE-S3), each prefix expired by its rule (`archive_expiry`, as the bootstrap sets them). S3
    names are global, so CloudFormation generates this one (unique, lowercase) and the functions get it."""
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
                        "Id": expiry_rule_id(prefix),
                        "Status": "Enabled",
                        "Prefix": prefix,
                        "ExpirationInDays": days,
                    }
                    for prefix, days in archive_expiry(delivered_days).items()
                ]
            },
        },
    }


# The jobs' tasks queue and its dead-letter queue. Not `JobsQueue`: that is the id of the queue of a
# destination named `jobs` (naming.queue_id); no destination's ids end like these.
JOB_TASKS = "JobTasks"
JOB_TASKS_DEAD_LETTERS = "JobTasksDeadLetters"


def _job_tasks_resources(visibility: int) -> dict[str, Any]:
    """The standard queue of backfill and replay tasks that triggers the `jobs` function (hidden
    while the function may hold a task: Lambda refuses a mapping otherwise), its standard
    dead-letter queue for tasks that kept failing, and an alarm on that one."""
    tasks = naming.jobs_queue_name(STACK_NAME)
    return {
        JOB_TASKS_DEAD_LETTERS: _queue({"Fn::Sub": naming.jobs_dead_letter_queue_name(tasks)}, fifo=False),
        JOB_TASKS: _queue(
            {"Fn::Sub": tasks},
            fifo=False,
            extra={
                "VisibilityTimeout": visibility,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [JOB_TASKS_DEAD_LETTERS, "Arn"]},
                    "maxReceiveCount": JOBS_MAX_RECEIVE_COUNT,
                },
            },
        ),
        "DeadJobTasksAlarm": _alarm(
            "Trickle: a backfill or replay task kept failing (in the jobs' dead-letter queue)",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": {"Fn::GetAtt": [JOB_TASKS_DEAD_LETTERS, "QueueName"]}},
            "Maximum",
            0,
        ),
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


def _destination_resources(arns: DestinationArns, ssm_service: Any, visibility: int) -> dict[str, Any]:
    """What one destination needs: its FIFO queue and FIFO dead-letter queue, their alarms, its
    drain's alarms, and the drain's right to decrypt its own secrets (if it reads any)."""
    d = arns.destination
    queue, dead, decrypt = (
        naming.queue_id(d.name),
        naming.dead_letter_queue_id(d.name),
        naming.decrypt_key_policy_id(d.name),
    )
    parameters = [arn for _, arn in arns.secrets]
    decrypts = (
        {decrypt: _decrypt_policy(decrypt, naming.role_id(d.drain_function), parameters, ssm_service)}
        if parameters
        else {}
    )
    return {
        dead: _queue({"Fn::Sub": naming.dead_letter_queue_name(STACK_NAME, d.name)}, fifo=True),
        queue: _queue(
            {"Fn::Sub": naming.queue_name(STACK_NAME, d.name)},
            fifo=True,
            extra={
                "VisibilityTimeout": visibility,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [dead, "Arn"]},
                    "maxReceiveCount": BACKSTOP_MAX_RECEIVE_COUNT,
                },
            },
        ),
        **decrypts,
        naming.dead_letters_alarm_id(d.name): _alarm(
            f"Trickle: messages in {d.name}'s dead-letter queue",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": {"Fn::GetAtt": [dead, "QueueName"]}},
            "Maximum",
            0,
        ),
        naming.oldest_message_alarm_id(d.name): _alarm(
            f"Trickle: the oldest message queued for {d.name} is too old",
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}},
            "Maximum",
            {"Ref": "OldestMessageAlarmSeconds"},
        ),
        naming.drain_errors_alarm_id(d.name): _alarm(
            f"Trickle: {d.name}'s drain failed",
            "AWS/Lambda",
            "Errors",
            {"FunctionName": {"Ref": naming.logical_id(d.drain_function)}},
            "Sum",
            0,
        ),
        # Its API or token endpoint refused its credentials: the run stopped, every message is
        # still queued, and nothing goes out until an operator stores the right ones.
        naming.credentials_refused_alarm_id(d.name): _alarm(
            f"Trickle: {d.name} refused its credentials; its messages wait in the queue",
            METRICS_NAMESPACE,
            "CredentialsRefused",
            drain_metric_dimensions(d.name),
            "Sum",
            1,
            "GreaterThanOrEqualToThreshold",
        ),
        # Its runs keep ending on the breaker: each unpaused run writes how long the circuit has
        # been open (`chalicelib.health`), 0 once a run's requests no longer trip it.
        naming.circuit_open_alarm_id(d.name): _alarm(
            f"Trickle: {d.name}'s circuit has stayed open; its API keeps failing",
            METRICS_NAMESPACE,
            "CircuitOpenSeconds",
            drain_metric_dimensions(d.name),
            "Maximum",
            {"Ref": "CircuitOpenAlarmSeconds"},
            period_s=300,  # a run every five minutes at most keeps the alarm from flapping between runs
        ),
    }


EXAMPLE_NONE = "none"
EXAMPLE_NAME = f"{STACK_NAME}-example-wait"  # the example state machine's name


def _through_example(destinations: Sequence[Destination], value: Any) -> Any:
    """`value(d)` for the destination the ExampleDestination parameter names (one of them, when
    the example exists at all)."""
    *others, last = destinations
    chosen: Any = value(last)
    for d in reversed(others):
        chosen = {"Fn::If": [naming.example_condition(d.name), value(d), chosen]}
    return chosen


_QUEUE_URL_MARK = "<queue-url>"


def example_definition(queue_url: Any) -> dict[str, Any]:
    """The example's state machine: the task docs/step-functions.md documents
    (`trickle_project.workflows`), on the chosen destination's queue, its Resource in the stack's
    partition. Joined, not `Fn::Sub`, so no template engine touches the definition's own `$` paths
    (moto's makes `$$.Task.Token` `$.Task.Token`)."""
    text = json.dumps(wait_definition(_QUEUE_URL_MARK), indent=2)
    head, tail = text.replace('"arn:aws:states:', '"arn:<partition>:states:').split(_QUEUE_URL_MARK)
    before, after = head.split("<partition>")
    return {"Fn::Join": ["", [before, {"Ref": "AWS::Partition"}, after, queue_url, tail]]}


def _example_resources(destinations: Sequence[Destination]) -> dict[str, Any]:
    """The optional example (parameter ExampleDestination): a state machine that sends an item
    through one destination's queue and waits for the API's answer, with a role that may only send
    to that queue (SQS-managed encryption needs no KMS permission), and the right for that
    destination's drain to answer its tasks and presign answers too large for them."""
    queue_arn = _through_example(destinations, lambda d: {"Fn::GetAtt": [naming.queue_id(d.name), "Arn"]})
    queue_url = _through_example(destinations, lambda d: {"Ref": naming.queue_id(d.name)})
    resources: dict[str, Any] = {
        "ExampleStateMachineRole": {
            "Type": "AWS::IAM::Role",
            "Condition": "HasExampleStateMachine",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "states.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": "SendThroughTrickle",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Sid": "SendToTheDestinationsQueue",
                                    "Effect": "Allow",
                                    "Action": "sqs:SendMessage",
                                    "Resource": queue_arn,
                                }
                            ],
                        },
                    }
                ],
            },
        },
        "ExampleStateMachine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Condition": "HasExampleStateMachine",
            "Properties": {
                "StateMachineName": {"Fn::Sub": EXAMPLE_NAME},
                "RoleArn": {"Fn::GetAtt": ["ExampleStateMachineRole", "Arn"]},
                "DefinitionString": example_definition(queue_url),
            },
        },
    }
    for d in destinations:
        answer = naming.answer_example_policy_id(d.name)
        resources[answer] = {
            "Type": "AWS::IAM::Policy",
            "Condition": naming.example_condition(d.name),
            "Properties": {
                "PolicyName": answer,
                "Roles": [{"Ref": naming.role_id(d.drain_function)}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AnswerTheExamplesTasks",
                            "Effect": "Allow",
                            "Action": CALLBACK_ACTIONS,
                            "Resource": {"Ref": "ExampleStateMachine"},
                        },
                        {
                            "Sid": "PresignLargeAnswers",
                            "Effect": "Allow",
                            "Action": "s3:GetObject",
                            "Resource": {"Fn::Sub": "${ResponseArchive.Arn}/responses/*"},
                        },
                        {  # a paused run finds the tasks of messages submitted since (`Ledger.queued_tasks`)
                            "Sid": "FindQueuedTasks",
                            "Effect": "Allow",
                            "Action": "dynamodb:Query",
                            "Resource": {"Fn::Sub": f"${{LedgerTable.Arn}}/index/{STATUS_INDEX}"},
                        },
                        {  # and those of the example's tasks (`StepFunctionsCallbacks.sent_tokens`)
                            "Sid": "FindTheExamplesRunningTasks",
                            "Effect": "Allow",
                            "Action": "states:ListExecutions",
                            "Resource": {"Ref": "ExampleStateMachine"},
                        },
                        {
                            "Sid": "ReadTheExamplesRunningTasks",
                            "Effect": "Allow",
                            "Action": "states:GetExecutionHistory",
                            "Resource": {
                                "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
                                f":execution:{EXAMPLE_NAME}:*"
                            },
                        },
                    ],
                },
            },
        }
    return resources


def _callback_state_machines(settings: Settings) -> dict[str, Any]:
    """The stage's own state machines, and the example's when the stack has it."""
    own = ",".join(settings.callback_state_machines)
    with_example = ",".join([*settings.callback_state_machines, EXAMPLE_NAME])
    return {"Fn::If": ["HasExampleStateMachine", {"Fn::Sub": with_example}, own]}


def function_environment(destinations: Sequence[Destination]) -> dict[str, Any]:
    """The variables naming the stack's resources, set on every function (each imports `app.py`,
    which reads them all)."""
    queues: dict[str, Any] = {}
    for d in destinations:
        queues[naming.destination_variable(d.name, "queue_url")] = {"Ref": naming.queue_id(d.name)}
        queues[naming.destination_variable(d.name, "dlq_url")] = {"Ref": naming.dead_letter_queue_id(d.name)}
    return {
        "TRICKLE_STREAM_ARN": _stream_arn(),
        **queues,
        "TRICKLE_INGEST_FAILURE_QUEUE_URL": {"Ref": "IngestFailureQueue"},
        "TRICKLE_JOBS_QUEUE_URL": {"Ref": JOB_TASKS},
        "TRICKLE_LEDGER_TABLE": {"Ref": "LedgerTable"},
        "TRICKLE_NOTES_TABLE": {"Ref": "NotesTable"},
        "TRICKLE_ARCHIVE_BUCKET": {"Ref": "ResponseArchive"},
    }


def stage_functions(settings: Settings) -> list[str]:
    """The logical ids Chalice gives the stage's functions."""
    drains = [naming.logical_id(d.drain_function) for d in settings.destinations.values()]
    return ["Ingest", "Jobs", *drains, "APIHandler"] + (["TokenAuth"] if settings.auth == "token" else [])


def merge_template(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    config = load_config(project_dir)
    env = config["stages"][stage]["environment_variables"]
    if not is_template_stage(env):
        raise SystemExit(
            f"stage {stage!r} names its resources (its {naming.destination_variable('*', 'queue_url')} are"
            " set): deploy it with the bootstrap and chalice deploy, or remove its resource variables to"
            " deploy it with this template"
        )
    settings = stage_settings(env)
    resources = template_resources(env)
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
    destinations = list(settings.destinations.values())
    variables = function_environment(destinations)
    variables["TRICKLE_CALLBACK_STATE_MACHINES"] = _callback_state_machines(settings)
    environment = {"Environment": {"Variables": variables}}
    functions: dict[str, Any] = {name: {"Properties": environment} for name in stage_functions(settings)}
    functions["Ingest"] = {
        "Properties": environment | {"Events": {"IngestDynamodbEventSource": {"Properties": event_source}}}
    }
    # The stack's queue, not the packaging name: Chalice writes an Fn::Sub, which the merge replaces
    # only with another (a merge adds the keys of a map to the ones there are).
    tasks_source = {"Queue": {"Fn::Sub": f"${{{JOB_TASKS}.Arn}}"}}
    functions["Jobs"] = {
        "Properties": environment | {"Events": {"JobsSqsEventSource": {"Properties": tasks_source}}}
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
            "CircuitOpenAlarmSeconds": {
                "Type": "Number",
                "Default": 900,
                "MinValue": 60,
                "Description": "Alarm when a destination's circuit has stayed open longer than this",
            },
            "IteratorAgeAlarmMilliseconds": {"Type": "Number", "Default": 600000, "MinValue": 1000},
            "UnroutedShareAlarmPercent": {
                "Type": "Number",
                "Default": 50,
                "MinValue": 0,
                "MaxValue": 100,
                "Description": "Alarm when more than this share of five minutes' stream records goes to"
                " no route (100: never)",
            },
            "StreamRetryAttempts": {
                "Type": "Number",
                "Default": STREAM_RETRY_ATTEMPTS,
                "MinValue": 0,
                "MaxValue": 10000,
            },
            "ExampleDestination": {
                "Type": "String",
                "Default": EXAMPLE_NONE,
                "AllowedValues": [EXAMPLE_NONE, *settings.destinations],
                "Description": "Add an example state machine that sends an item through this destination"
                " and waits for the API's answer (none: no example state machine)",
            },
        },
        "Conditions": {
            "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]},
            "CreatesSourceTable": {"Fn::Equals": [{"Ref": "SourceStreamArn"}, ""]},
            "HasExampleStateMachine": {
                "Fn::Not": [{"Fn::Equals": [{"Ref": "ExampleDestination"}, EXAMPLE_NONE]}]
            },
            **{
                naming.example_condition(name): {"Fn::Equals": [{"Ref": "ExampleDestination"}, name]}
                for name in settings.destinations
            },
        },
        "Resources": {
            **functions,
            "SourceTable": _source_table(settings),
            **{
                name: resource
                for d in resources.destinations
                for name, resource in _destination_resources(
                    d, resources.ssm_service, visibility_for(drain_timeout(config, stage, d.destination.name))
                ).items()
            },
            "IngestFailureQueue": _queue(_named("ingest-failures"), fifo=False),
            **_job_tasks_resources(visibility_for(function_timeout(config, stage, naming.JOBS_FUNCTION))),
            "LedgerTable": _table("ledger", table_definition()),
            "NotesTable": _table("notes", notes_table_definition()),
            "ApiKeyEncryptionKey": {
                "Type": "AWS::KMS::Key",
                **RETAIN,
                "Properties": {
                    "Description": f"Encrypts Trickle's {stage} secrets in SSM Parameter Store",
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
                    "AliasName": {"Fn::Sub": naming.key_alias(STACK_NAME)},
                    "TargetKeyId": {"Ref": "ApiKeyEncryptionKey"},
                },
            },
            **token_decrypt,
            "IngestIteratorAgeAlarm": _alarm(
                "Trickle: the stream handler is falling behind",
                "AWS/Lambda",
                "IteratorAge",
                {"FunctionName": {"Ref": "Ingest"}},
                "Maximum",
                {"Ref": "IteratorAgeAlarmMilliseconds"},
            ),
            "IngestUnroutedShareAlarm": _unrouted_share_alarm(),
            "Dashboard": _dashboard(destinations),
            "ResponseArchive": _archive_bucket(settings.archive_days),
            **_example_resources(destinations),
        },
        "Outputs": {
            "ApiKeyEncryptionKeyArn": {"Value": {"Fn::GetAtt": ["ApiKeyEncryptionKey", "Arn"]}},
            **{
                name: output
                for d in resources.destinations
                for name, output in _destination_outputs(d).items()
            },
            "LedgerTableName": {"Value": {"Ref": "LedgerTable"}},
            "NotesTableName": {"Value": {"Ref": "NotesTable"}},
            "SourceStreamArn": {"Value": _stream_arn()},
            "ResponseArchiveBucket": {"Value": {"Ref": "ResponseArchive"}},
            "JobTasksUrl": {"Value": {"Ref": JOB_TASKS}},
            "JobTasksDeadLettersUrl": {"Value": {"Ref": JOB_TASKS_DEAD_LETTERS}},
            "ExampleStateMachineArn": {
                "Condition": "HasExampleStateMachine",
                "Value": {"Ref": "ExampleStateMachine"},
            },
            "ExampleStartExecutionCommand": {
                "Condition": "HasExampleStateMachine",
                "Description": "Starts the example, which ends with the API's answer",
                "Value": {
                    "Fn::Sub": "aws stepfunctions start-execution --region ${AWS::Region}"
                    " --state-machine-arn ${ExampleStateMachine}"
                    ' --input \'{"item": {"order": 17}, "group": "customer-42"}\''
                },
            },
        },
    }


def put_parameter_command(parameter: str, key_id: str, variable: str, region: str | None = None) -> str:
    """Stores a SecureString under a KMS key, its value read from a shell variable (so no key is
    ever written on a command line); the stack's outputs, the guide and the bootstrap print it."""
    where = f" --region {region}" if region else ""
    return (
        f"aws ssm put-parameter{where} --name {parameter} --type SecureString --key-id {key_id}"
        f' --value "${variable}" --overwrite'
    )


# A secret's stack outputs by its kind: its parameter's ARN, and the command that stores it.
SECRET_OUTPUTS = {
    CREDENTIALS: (naming.key_parameter_arn_output, naming.put_key_command_output),
    SIGNING: (naming.signing_parameter_arn_output, naming.put_signing_secret_command_output),
    HEADERS: (naming.headers_parameter_arn_output, naming.put_headers_command_output),
}


def _destination_outputs(arns: DestinationArns) -> dict[str, Any]:
    """Its queues' URLs and, per SecureString its drain reads, the parameter's ARN and the command
    that stores it from the destination's own variable."""
    name = arns.destination.name
    outputs: dict[str, Any] = {}
    for parameter, arn in arns.secrets:
        arn_output, command_output = SECRET_OUTPUTS[parameter.kind]
        command = put_parameter_command(parameter.name, naming.key_alias(STACK_NAME), parameter.variable)
        outputs[arn_output(name)] = {"Value": arn}
        outputs[command_output(name)] = {
            "Description": f"Stores {parameter.what} of {name} from ${parameter.variable}"
            " (run once after the first deploy)",
            "Value": {"Fn::Sub": command + " --region ${AWS::Region}"},
        }
    return {
        **outputs,
        naming.queue_url_output(name): {"Value": {"Ref": naming.queue_id(name)}},
        naming.dead_letter_queue_url_output(name): {"Value": {"Ref": naming.dead_letter_queue_id(name)}},
    }


def package(stage: str, out: Path, region: str = "us-east-1", project_dir: Path = PROJECT_DIR) -> Path:
    """Write `out/merge.json` and run `chalice package` with it; returns the packaged template.
    (`region` only fills botocore's need for one: nothing regional reaches the template.)"""
    out.mkdir(parents=True, exist_ok=True)
    merge = out / "merge.json"
    merge.write_text(json.dumps(merge_template(stage, project_dir), indent=2) + "\n")
    chalice = Path(sys.executable).parent / "chalice"
    env = {"AWS_DEFAULT_REGION": region} | packaging_env(
        dict(os.environ) | load_config(project_dir)["stages"][stage]["environment_variables"]
    )
    subprocess.run(
        [str(chalice), "package", "--stage", stage, "--merge-template", str(merge), str(out / "pkg")],
        cwd=project_dir,
        check=True,
        capture_output=True,
        env=env,
    )
    return out / "pkg" / "sam.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trickle_deploy.template",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples on their lines
    )
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
