"""Least-privilege IAM policy files per function, generated from a stage's environment variables.

Chalice's policy generator reads only `app.py` and skips `on_dynamodb_record` handlers, so Trickle
turns it off (`autogen_policy: false`) and writes `.chalice/policy-<stage>-<function>.json` here.
Run `python -m trickle_deploy.policies` after changing a stage; `--check` fails on stale files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from chalicelib import naming
from chalicelib.ledger import INDEXES, STATUS_INDEX
from chalicelib.notes import UNROUTED_NOTE_KEY
from chalicelib.settings import Destination, Settings, SettingsError, load_settings
from trickle_project.secret_parameters import CREDENTIALS, HEADERS, SIGNING, SecretParameter, needed
from trickle_project.stage import is_template_stage, stage_settings, with_bootstrap_queues

CHALICE_DIR = Path(__file__).resolve().parent.parent / ".chalice"

# botocore operation -> the IAM action that authorises it (only those Trickle calls).
ACTIONS: dict[tuple[str, str], str] = {
    ("sqs", "SendMessage"): "sqs:SendMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "ReceiveMessage"): "sqs:ReceiveMessage",
    ("sqs", "DeleteMessage"): "sqs:DeleteMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibility"): "sqs:ChangeMessageVisibility",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sqs", "GetQueueAttributes"): "sqs:GetQueueAttributes",
    ("ssm", "GetParameter"): "ssm:GetParameter",
    ("dynamodb", "GetItem"): "dynamodb:GetItem",
    ("dynamodb", "PutItem"): "dynamodb:PutItem",
    ("dynamodb", "UpdateItem"): "dynamodb:UpdateItem",
    ("dynamodb", "DeleteItem"): "dynamodb:DeleteItem",
    ("dynamodb", "BatchGetItem"): "dynamodb:BatchGetItem",
    ("dynamodb", "BatchWriteItem"): "dynamodb:BatchWriteItem",
    ("dynamodb", "Query"): "dynamodb:Query",
    ("dynamodb", "Scan"): "dynamodb:Scan",
    ("dynamodb", "DescribeTable"): "dynamodb:DescribeTable",
    ("s3", "PutObject"): "s3:PutObject",
    ("s3", "GetObject"): "s3:GetObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("sqs", "StartMessageMoveTask"): "sqs:StartMessageMoveTask",
    ("stepfunctions", "SendTaskSuccess"): "states:SendTaskSuccess",
    ("stepfunctions", "SendTaskFailure"): "states:SendTaskFailure",
    ("stepfunctions", "SendTaskHeartbeat"): "states:SendTaskHeartbeat",
    ("stepfunctions", "ListExecutions"): "states:ListExecutions",
    ("stepfunctions", "GetExecutionHistory"): "states:GetExecutionHistory",
}
# What Lambda's SQS event source mapping does with the role of the function it triggers
# (AWSLambdaSQSQueueExecutionRole grants these, and nothing more on the queue).
SQS_TRIGGER_ACTIONS = ("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage")
CALLBACK_ACTIONS = ["states:SendTaskFailure", "states:SendTaskHeartbeat", "states:SendTaskSuccess"]


# An ARN, or (in a stage deployed with the merge template) a CloudFormation expression giving one.
Arn = str | dict[str, Any]


@dataclass(frozen=True)
class DestinationArns:
    """What a destination's statements name: the ARNs of its queues and of the SecureStrings its
    drain reads (or, in a template stage, the CloudFormation expressions giving them). The
    destination itself is the settings' one type."""

    destination: Destination
    queue_arn: Arn
    dlq_arn: Arn
    # Each SecureString its drain reads (`secret_parameters.needed`), with its ARN: none for a
    # destination that reads no credentials, signs nothing and has no secret headers.
    secrets: tuple[tuple[SecretParameter, Arn], ...]
    enriches: bool  # a route to it names an enricher: its drain reads the source table
    # Where its drain archives what it delivered (`naming.delivered_prefix`); None: no archive.
    delivered_arn: Arn | None = None


@dataclass(frozen=True)
class StageResources:
    stream_arns: Arn
    log_arns: Arn
    table_arn: Arn
    destinations: tuple[DestinationArns, ...]
    ledger_arn: Arn
    notes_arn: Arn
    ledger_index_arns: tuple[Arn, ...]  # the ledger's indexes (the routes list pages of them)
    ingest_failure_queue_arn: Arn
    jobs_queue_arn: Arn
    ssm_service: Arn
    token_parameter_arn: Arn | None
    archive_objects_arn: Arn | None
    archive_bucket_arn: Arn | None  # the bucket itself (a replay lists its delivered archive)
    state_machine_arns: tuple[Arn, ...]  # whose tasks the drains may answer
    execution_arns: tuple[Arn, ...] = ()  # their executions (a paused drain reads their histories)

    @property
    def status_index_arn(self) -> Arn:
        return self.ledger_index_arns[list(INDEXES).index(STATUS_INDEX)]

    @property
    def queue_arns(self) -> list[Arn]:
        return [d.queue_arn for d in self.destinations]

    @property
    def dlq_arns(self) -> list[Arn]:
        return [d.dlq_arn for d in self.destinations]


def queue_arn(url: str, partition: str, region: str) -> str:
    """`https://sqs.R.amazonaws.com/ACCOUNT/NAME` -> `arn:aws:sqs:R:ACCOUNT:NAME`."""
    parsed = urlparse(url)
    account, name = parsed.path.strip("/").split("/")[-2:]
    host = parsed.hostname or ""
    if host.startswith("sqs.") and host.count(".") >= 3:
        region = host.split(".")[1]
    return f"arn:{partition}:sqs:{region}:{account}:{name}"


def parameter_arn(name: str, partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _arn(service: str, resource: str) -> dict[str, str]:
    return _sub(f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}")


def _enriches(settings: Settings, destination: str) -> bool:
    return any(r.enrich and destination in r.destinations for r in settings.routes)


def template_resources(env: Mapping[str, str]) -> StageResources:
    """The stage's resources as the merge template names them (`trickle_deploy.template`)."""
    settings = stage_settings(env)
    token = settings.auth_token_parameter
    return StageResources(
        stream_arns={
            "Fn::If": [
                "CreatesSourceTable",
                {"Fn::GetAtt": ["SourceTable", "StreamArn"]},
                {"Ref": "SourceStreamArn"},
            ]
        },
        log_arns=_arn("logs", "*"),
        table_arn={
            "Fn::If": [
                "CreatesSourceTable",
                {"Fn::GetAtt": ["SourceTable", "Arn"]},
                {"Fn::Select": [0, {"Fn::Split": ["/stream/", {"Ref": "SourceStreamArn"}]}]},
            ]
        },
        destinations=tuple(
            DestinationArns(
                destination=d,
                queue_arn={"Fn::GetAtt": [naming.queue_id(d.name), "Arn"]},
                dlq_arn={"Fn::GetAtt": [naming.dead_letter_queue_id(d.name), "Arn"]},
                secrets=tuple((p, _arn("ssm", "parameter/" + p.name.lstrip("/"))) for p in needed(d)),
                enriches=_enriches(settings, d.name),
                delivered_arn=_sub(f"${{ResponseArchive.Arn}}/{naming.delivered_prefix(d.name)}*"),
            )
            for d in settings.destinations.values()
        ),
        ledger_arn={"Fn::GetAtt": ["LedgerTable", "Arn"]},
        notes_arn={"Fn::GetAtt": ["NotesTable", "Arn"]},
        ledger_index_arns=tuple(_sub(f"${{LedgerTable.Arn}}/index/{index}") for index in INDEXES),
        ingest_failure_queue_arn={"Fn::GetAtt": ["IngestFailureQueue", "Arn"]},
        jobs_queue_arn={"Fn::GetAtt": ["JobTasks", "Arn"]},
        ssm_service=_sub("ssm.${AWS::Region}.amazonaws.com"),
        token_parameter_arn=_arn("ssm", "parameter/" + token.lstrip("/")) if token else None,
        archive_objects_arn=_sub("${ResponseArchive.Arn}/responses/*"),
        archive_bucket_arn={"Fn::GetAtt": ["ResponseArchive", "Arn"]},
        state_machine_arns=tuple(
            _arn("states", f"stateMachine:{name}") for name in settings.callback_state_machines
        ),
        execution_arns=tuple(
            _arn("states", f"execution:{name}:*") for name in settings.callback_state_machines
        ),
    )


def stage_resources(env: Mapping[str, str]) -> StageResources:
    """The resources a stage's environment names (bootstrapped stages and the local stage)."""
    if is_template_stage(env):
        return template_resources(env)
    settings = load_settings(env)
    failure_queue = env.get("TRICKLE_INGEST_FAILURE_QUEUE_URL", "").strip()
    if not failure_queue:
        stage = env.get("TRICKLE_STAGE", "").strip()
        raise SettingsError(
            f"invalid Trickle settings{f' for stage {stage!r}' if stage else ''}:"
            " TRICKLE_INGEST_FAILURE_QUEUE_URL is required (the bootstrap sets it)"
        )
    _, partition, _, region, account, resource = settings.stream_arn.split(":", 5)
    table = resource.split("/")[1]
    return StageResources(
        # Any stream of the table: a re-enabled stream gets a new label.
        stream_arns=f"arn:{partition}:dynamodb:{region}:{account}:table/{table}/stream/*",
        log_arns=f"arn:{partition}:logs:{region}:{account}:*",
        table_arn=f"arn:{partition}:dynamodb:{region}:{account}:table/{table}",
        destinations=tuple(
            DestinationArns(
                destination=d,
                queue_arn=queue_arn(d.queue_url, partition, region),
                dlq_arn=queue_arn(d.dlq_url, partition, region),
                secrets=tuple((p, parameter_arn(p.name, partition, region, account)) for p in needed(d)),
                enriches=_enriches(settings, d.name),
                delivered_arn=(
                    f"arn:{partition}:s3:::{settings.archive_bucket}/{naming.delivered_prefix(d.name)}*"
                    if settings.archive_bucket
                    else None
                ),
            )
            for d in settings.destinations.values()
        ),
        ledger_arn=f"arn:{partition}:dynamodb:{region}:{account}:table/{settings.ledger_table}",
        notes_arn=f"arn:{partition}:dynamodb:{region}:{account}:table/{settings.notes_table}",
        ledger_index_arns=tuple(
            f"arn:{partition}:dynamodb:{region}:{account}:table/{settings.ledger_table}/index/{index}"
            for index in INDEXES
        ),
        ingest_failure_queue_arn=queue_arn(failure_queue, partition, region),
        jobs_queue_arn=queue_arn(settings.jobs_queue_url, partition, region),
        ssm_service=f"ssm.{region}.amazonaws.com",
        token_parameter_arn=(
            parameter_arn(settings.auth_token_parameter, partition, region, account)
            if settings.auth_token_parameter
            else None
        ),
        archive_objects_arn=(
            f"arn:{partition}:s3:::{settings.archive_bucket}/responses/*" if settings.archive_bucket else None
        ),
        archive_bucket_arn=f"arn:{partition}:s3:::{settings.archive_bucket}"
        if settings.archive_bucket
        else None,
        state_machine_arns=tuple(
            f"arn:{partition}:states:{region}:{account}:stateMachine:{name}"
            for name in settings.callback_state_machines
        ),
        execution_arns=tuple(
            f"arn:{partition}:states:{region}:{account}:execution:{name}:*"
            for name in settings.callback_state_machines
        ),
    )


def _statement(
    sid: str, actions: list[str], resources: list[Arn], condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    return statement | ({"Condition": condition} if condition else {})


def _decrypt(env: Mapping[str, str], r: StageResources, parameters: list[Arn]) -> list[dict[str, Any]]:
    """kms:Decrypt on the bootstrap's key, only through SSM and only for the function's own
    parameters. (A stage deployed with the merge template gets the same statement from the template.)"""
    key = env.get("TRICKLE_API_KEY_KMS_KEY_ARN")
    if not key or not parameters:
        return []
    condition = {
        "StringEquals": {"kms:EncryptionContext:PARAMETER_ARN": parameters, "kms:ViaService": r.ssm_service}
    }
    return [_statement("DecryptThroughSsm", ["kms:Decrypt"], [key], condition)]


# The statement that lets a drain read one kind of its destination's SecureStrings.
READ_SECRET_SIDS = {
    CREDENTIALS: "ReadCredentials",
    SIGNING: "ReadSigningSecret",
    HEADERS: "ReadSecretHeaders",
}


def _leading_keys(operator: str, keys: list[str]) -> dict[str, Any]:
    """Only items whose partition key is one of `keys` (every key the call names, for batch calls)."""
    return {f"ForAllValues:{operator}": {"dynamodb:LeadingKeys": keys}}


def _drain_policy(
    env: Mapping[str, str], r: StageResources, d: DestinationArns, logs: dict[str, Any]
) -> dict[str, Any]:
    """A destination's drain reaches its own queue, dead-letter queue, secrets, lease, run note and
    redrive jobs, and nothing of the other destinations' (the notes by leading key: one table holds
    every drain's). It reads only the secrets its destination needs, a statement per kind. Its
    redrive jobs move its dead letters back (`chalicelib.redrive_jobs`): the routes only open them.
    Every drain may read the source table's items (BatchGetItem only): any destination can be
    backfilled, and a backfilled message is checked against its item before it is sent."""
    name = d.destination.name
    return {
        "Version": "2012-10-17",
        "Statement": [
            logs,
            _statement(
                "Drain",
                [
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                ],
                [d.queue_arn],
            ),
            _statement("DeadLetter", ["sqs:SendMessage"], [d.dlq_arn]),
            _statement(
                "Redrive",
                [
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                    "sqs:StartMessageMoveTask",
                ],
                [d.dlq_arn],
            ),
            _statement("RedriveBack", ["sqs:SendMessage"], [d.queue_arn]),
            _statement(
                "Ledger",
                ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem"],
                [r.ledger_arn],
            ),
            _statement(
                "OwnLeaseAndRunNote",
                ["dynamodb:DeleteItem", "dynamodb:PutItem"],
                [r.notes_arn],
                _leading_keys("StringEquals", [naming.lease_key(name), naming.run_note_key(name)]),
            ),
            # read at each run's start; written when the API answers 410 Gone (`chalicelib.health`)
            _statement(
                "OwnPause",
                ["dynamodb:GetItem", "dynamodb:PutItem"],
                [r.notes_arn],
                _leading_keys("StringEquals", [naming.pause_key(name)]),
            ),
            # its running totals, one write a run (`chalicelib.totals`)
            _statement(
                "OwnTotals",
                ["dynamodb:UpdateItem"],
                [r.notes_arn],
                _leading_keys("StringEquals", [naming.totals_key(name)]),
            ),
            # the last run's note: what it left in the queue (`chalicelib.oldest`)
            _statement(
                "LastRunNote",
                ["dynamodb:GetItem"],
                [r.notes_arn],
                _leading_keys("StringEquals", [naming.run_note_key(name)]),
            ),
            _statement(
                "OwnRedriveJobs",
                ["dynamodb:GetItem", "dynamodb:PutItem"],
                [r.notes_arn],
                _leading_keys("StringLike", [naming.redrive_job_key(name, "*")]),
            ),
            _statement(
                "OwnOpenRedrives",
                ["dynamodb:GetItem", "dynamodb:UpdateItem"],
                [r.notes_arn],
                _leading_keys("StringEquals", [naming.open_redrives_key(name)]),
            ),
            *(
                _statement(READ_SECRET_SIDS[parameter.kind], ["ssm:GetParameter"], [arn])
                for parameter, arn in d.secrets
            ),
            *_decrypt(env, r, [arn for _, arn in d.secrets]),
            *([_statement("Enrich", ["dynamodb:GetItem"], [r.table_arn])] if d.enriches else []),
            # a backfilled message's item, read back before it is sent (`chalicelib.source_items`)
            _statement("CheckBackfilledItems", ["dynamodb:BatchGetItem"], [r.table_arn]),
            *(
                [_statement("ArchiveResponses", ["s3:PutObject"], [r.archive_objects_arn])]
                if r.archive_objects_arn
                else []
            ),
            # what it delivered, for replays (`chalicelib.delivered_archive`): under its own prefix only
            *(
                [_statement("ArchiveDelivered", ["s3:PutObject"], [d.delivered_arn])]
                if d.delivered_arn
                else []
            ),
            *(
                [_statement("AnswerWaitingTasks", CALLBACK_ACTIONS, list(r.state_machine_arns))]
                if r.state_machine_arns
                else []
            ),
            *(
                # a paused run finds the tasks of messages queued with a token since its last run
                # (`Ledger.queued_tasks`: its queued records' keys; the index holds keys only)
                [_statement("FindQueuedTasks", ["dynamodb:Query"], [r.status_index_arn])]
                if r.state_machine_arns
                else []
            ),
            *(
                # and those of messages a state machine sent straight to its queue, from the
                # histories of their running executions (`StepFunctionsCallbacks.sent_tokens`)
                [
                    _statement("FindRunningTasks", ["states:ListExecutions"], list(r.state_machine_arns)),
                    _statement("ReadRunningTasks", ["states:GetExecutionHistory"], list(r.execution_arns)),
                ]
                if r.state_machine_arns
                else []
            ),
            *(
                # A task's answer over 256 KB goes as a presigned URL, which works only if its signer may GET.
                [_statement("PresignLargeAnswers", ["s3:GetObject"], [r.archive_objects_arn])]
                if r.state_machine_arns and r.archive_objects_arn
                else []
            ),
        ],
    }


def _jobs_policy(r: StageResources, logs: dict[str, Any]) -> dict[str, Any]:
    """The `jobs` function works backfill and replay tasks: it scans the source table, queues on the
    destinations' queues (reading their depths to pace itself), dead-letters what the routes reject
    as ingest does (its dead-letter queue and the ledger's record), keeps its job notes, reads when
    each drain last ran (its run note) and hands a part on to its next task. Nothing else: its code
    receives no message and calls no API. `ReadTasks` is its trigger's: Lambda's SQS event source
    mapping polls the tasks queue with the function's own role, and AWS refuses to create the
    mapping unless the role allows it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            logs,
            _statement("ReadTasks", list(SQS_TRIGGER_ACTIONS), [r.jobs_queue_arn]),
            _statement("ScanSource", ["dynamodb:DescribeTable", "dynamodb:Scan"], [r.table_arn]),
            _statement("Enqueue", ["sqs:GetQueueAttributes", "sqs:SendMessage"], r.queue_arns),
            _statement("DeadLetter", ["sqs:SendMessage"], r.dlq_arns),
            _statement("RecordRejected", ["dynamodb:PutItem"], [r.ledger_arn]),
            *_job_notes(r, ["dynamodb:UpdateItem"]),
            # when each drain last ran (its run note), so a part held between runs sleeps until the next
            _statement(
                "DrainRuns",
                ["dynamodb:GetItem"],
                [r.notes_arn],
                _leading_keys("StringLike", [naming.run_note_key("*")]),
            ),
            _statement("HandOn", ["sqs:SendMessage"], [r.jobs_queue_arn]),
            *_read_delivered(r),
        ],
    }


def _job_notes(r: StageResources, active: list[str]) -> list[dict[str, Any]]:
    """Backfill and replay jobs' notes (`job#...`), which the routes start and read and the `jobs`
    function works, and the set of active jobs (`active`: what the function may do with it)."""
    return [
        _statement(
            "Jobs",
            ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem"],
            [r.notes_arn],
            _leading_keys("StringLike", [naming.job_key("*")]),
        ),
        _statement(
            "ActiveJobs", active, [r.notes_arn], _leading_keys("StringEquals", [naming.active_jobs_key()])
        ),
    ]


def _read_delivered(r: StageResources) -> list[dict[str, Any]]:
    """A replay reads the delivered archive (`chalicelib.delivered_archive.DeliveredReader`): lists
    and gets objects under `delivered/` only, none of the response archive's."""
    if r.archive_bucket_arn is None:
        return []
    bucket = r.archive_bucket_arn
    objects = (
        f"{bucket}/{naming.DELIVERED_PREFIX}*"
        if isinstance(bucket, str)
        else _sub(f"${{ResponseArchive.Arn}}/{naming.DELIVERED_PREFIX}*")
    )
    return [
        _statement(
            "ListDelivered",
            ["s3:ListBucket"],
            [bucket],
            {"StringLike": {"s3:prefix": [f"{naming.DELIVERED_PREFIX}*"]}},
        ),
        _statement("ReadDelivered", ["s3:GetObject"], [objects]),
    ]


def function_policies(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """One policy per function of the stage; `token_auth` exists only in stages with token auth."""
    r = stage_resources(env)
    logs = _statement(
        "Logs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], [r.log_arns]
    )
    policies: dict[str, dict[str, Any]] = {
        "ingest": {
            "Version": "2012-10-17",
            "Statement": [
                logs,
                _statement(
                    "ReadStream",
                    [
                        "dynamodb:DescribeStream",
                        "dynamodb:GetRecords",
                        "dynamodb:GetShardIterator",
                        "dynamodb:ListStreams",
                    ],
                    [r.stream_arns],
                ),
                _statement("Enqueue", ["sqs:SendMessage"], [*r.queue_arns, *r.dlq_arns]),
                _statement("OnFailureDestination", ["sqs:SendMessage"], [r.ingest_failure_queue_arn]),
                _statement("RecordQueued", ["dynamodb:PutItem"], [r.ledger_arn]),
                _statement(
                    "CountUnrouted",
                    ["dynamodb:UpdateItem"],
                    [r.notes_arn],
                    _leading_keys("StringEquals", [UNROUTED_NOTE_KEY]),
                ),
            ],
        },
        **{d.destination.drain_function: _drain_policy(env, r, d, logs) for d in r.destinations},
        "jobs": _jobs_policy(r, logs),
        "api_handler": {
            "Version": "2012-10-17",
            "Statement": [
                logs,
                # depths only: no route receives, deletes or moves a message
                _statement("QueueStatus", ["sqs:GetQueueAttributes"], [*r.queue_arns, *r.dlq_arns]),
                _statement("Submit", ["sqs:SendMessage"], r.queue_arns),
                # lookups, submissions, halted messages released, the records of a listed page
                _statement(
                    "Ledger",
                    ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                    [r.ledger_arn],
                ),
                # `/status` reads every note it shows in one BatchGetItem: one statement allows all its keys
                _statement(
                    "ReadStatusNotes",
                    ["dynamodb:BatchGetItem"],
                    [r.notes_arn],
                    _leading_keys(
                        "StringLike",
                        [
                            naming.run_note_key("*"),
                            naming.totals_key("*"),
                            *(naming.pause_key(d.destination.name) for d in r.destinations),
                            UNROUTED_NOTE_KEY,
                            naming.active_jobs_key(),
                        ],
                    ),
                ),
                # pause and resume a destination (its drain reads the note at each run)
                _statement(
                    "Pauses",
                    ["dynamodb:DeleteItem", "dynamodb:PutItem"],
                    [r.notes_arn],
                    _leading_keys(
                        "StringEquals", [naming.pause_key(d.destination.name) for d in r.destinations]
                    ),
                ),
                # open and read redrive jobs (the drains carry them on)
                _statement(
                    "RedriveJobs",
                    ["dynamodb:GetItem", "dynamodb:PutItem"],
                    [r.notes_arn],
                    _leading_keys(
                        "StringLike",
                        [naming.redrive_job_key(d.destination.name, "*") for d in r.destinations],
                    ),
                ),
                _statement(
                    "OpenRedrives",
                    ["dynamodb:GetItem", "dynamodb:UpdateItem"],
                    [r.notes_arn],
                    _leading_keys(
                        "StringEquals", [naming.open_redrives_key(d.destination.name) for d in r.destinations]
                    ),
                ),
                # dead letters, halted groups, messages by status (the ledger's indexes)
                _statement("ListLedgerIndexes", ["dynamodb:Query"], list(r.ledger_index_arns)),
                # start, read and cancel backfill and replay jobs (the `jobs` function works them)
                _statement("StartJobs", ["sqs:SendMessage"], [r.jobs_queue_arn]),
                *_job_notes(r, ["dynamodb:GetItem", "dynamodb:UpdateItem"]),
                *(
                    [_statement("PresignResponses", ["s3:GetObject"], [r.archive_objects_arn])]
                    if r.archive_objects_arn
                    else []
                ),
            ],
        },
    }
    if env.get("TRICKLE_AUTH") == "token":
        policies["token_auth"] = {
            "Version": "2012-10-17",
            "Statement": [
                logs,
                *(
                    [_statement("ReadOperatorToken", ["ssm:GetParameter"], [r.token_parameter_arn])]
                    if r.token_parameter_arn
                    else []
                ),
                *_decrypt(env, r, [r.token_parameter_arn] if r.token_parameter_arn else []),
            ],
        }
    return policies


def policy_path(stage: str, function: str) -> Path:
    return CHALICE_DIR / naming.policy_file(stage, function)


def stage_policy_files(chalice_dir: Path, stage: str) -> list[Path]:
    """The stage's own policy files (`naming.policy_file_function` says whose a file is)."""
    return [
        path
        for path in sorted(chalice_dir.glob("policy-*.json"))
        if naming.policy_file_function(stage, path.name)
    ]


def render(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, indent=2) + "\n"


DRAIN_TIMEOUT_S = 300  # a new drain's lambda_timeout, as the shipped drains have


def stage_policies(config: Mapping[str, Any], stage: str) -> dict[str, dict[str, Any]]:
    """The stage's policies, by function; a SettingsError names the stage."""
    env = with_bootstrap_queues(
        config["stages"][stage].get("environment_variables", {}), config["app_name"], stage
    )
    try:
        return function_policies(env)
    except SettingsError as exc:
        raise SettingsError(
            str(exc) if env.get("TRICKLE_STAGE") == stage else f"stage {stage!r}: {exc}"
        ) from None


def refresh(chalice_dir: Path = CHALICE_DIR, check: bool = False) -> list[str]:
    """Write every stage's policy files and the `lambda_functions` entries that name them (or, with
    `check`, list what is stale); a file no function of its stage needs any more is removed (or
    listed), with its entry. Writes nothing when a stage is invalid: raises SettingsError, a line
    per stage."""
    config_path = chalice_dir / "config.json"
    config = json.loads(config_path.read_text())
    wanted: dict[str, dict[str, dict[str, Any]]] = {}
    errors = []
    for stage in config["stages"]:
        try:
            wanted[stage] = stage_policies(config, stage)
        except SettingsError as exc:
            errors.append(str(exc))
    if errors:
        raise SettingsError("\n".join(errors))
    stale = []
    entries = []
    for stage, policies in wanted.items():
        functions = config["stages"][stage].setdefault("lambda_functions", {})
        for function, policy in policies.items():
            path = chalice_dir / policy_path(stage, function).name
            if "iam_policy_file" not in functions.get(function, {}):
                timeout = {"lambda_timeout": DRAIN_TIMEOUT_S} if naming.is_drain_function(function) else {}
                functions[function] = {"iam_policy_file": path.name, **timeout, **functions.get(function, {})}
                entries.append(f"{stage}: lambda_functions.{function}")
            text = render(policy)
            if path.exists() and path.read_text() == text:
                continue
            stale.append(path.name)
            if not check:
                path.write_text(text)
        for path in stage_policy_files(chalice_dir, stage):
            owner = naming.policy_file_function(stage, path.name)
            if owner and owner not in policies:
                stale.append(path.name)
                if functions.get(owner, {}).get("iam_policy_file") == path.name:
                    del functions[owner]
                    entries.append(f"{stage}: lambda_functions.{owner}")
                if not check:
                    path.unlink()
    if entries:
        stale.append(f"config.json ({', '.join(entries)})")
        if not check:
            config_path.write_text(json.dumps(config, indent=2) + "\n")
    return stale


def main(argv: list[str] | None = None, chalice_dir: Path = CHALICE_DIR) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if a policy file is stale")
    args = parser.parse_args(argv)
    try:
        stale = refresh(chalice_dir, check=args.check)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.check and stale:
        print(
            f"stale policy files: {', '.join(stale)}; run python -m trickle_deploy.policies", file=sys.stderr
        )
        return 1
    for name in stale:
        print(f"updated .chalice/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
