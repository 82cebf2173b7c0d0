"""The AWS resources a stage needs, created (or confirmed) idempotently, and removed again.

`python -m trickle_deploy.bootstrap` makes them in an account; the local runtime and the test suite
make them on their embedded endpoint with this same code, so what runs locally is what a user's
account gets.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from chalicelib import naming
from chalicelib.ledger import table_definition
from chalicelib.notes import notes_table_definition
from chalicelib.settings import Destination, load_settings, table_name_from_stream_arn
from trickle_project.secret_parameters import API_KEY, needed

# The queue's own receive limit is a backstop only; Trickle counts real attempts itself.
BACKSTOP_MAX_RECEIVE_COUNT = 1000
RETENTION_S = 14 * 24 * 3600


@dataclass(frozen=True)
class StageNames:
    """The resource names a stage's environment variables (and its routes file) point at."""

    table: str
    partition_key: str
    sort_key: str | None
    destinations: tuple[Destination, ...]
    ledger_table: str
    notes_table: str
    ingest_failure_queue: str
    archive_days: int  # what the archive bucket keeps `delivered/` for
    jobs_queue: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], sort_key: str | None = "sk") -> StageNames:
        settings = load_settings(env)
        return cls(
            table=table_name_from_stream_arn(env["TRICKLE_STREAM_ARN"]),
            partition_key=env.get("TRICKLE_PARTITION_KEY") or "pk",
            sort_key=sort_key,
            destinations=tuple(settings.destinations.values()),
            ledger_table=env["TRICKLE_LEDGER_TABLE"],
            notes_table=settings.notes_table,
            ingest_failure_queue=queue_name(env["TRICKLE_INGEST_FAILURE_QUEUE_URL"]),
            archive_days=settings.archive_days,
            jobs_queue=queue_name(settings.jobs_queue_url),
        )


def queue_name(url: str) -> str:
    return urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]


def ensure_table(dynamodb: Any, names: StageNames) -> str:
    """The source table with a NEW_AND_OLD_IMAGES stream; returns the stream ARN."""
    try:
        table = dynamodb.describe_table(TableName=names.table)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        keys = [(names.partition_key, "HASH")] + ([(names.sort_key, "RANGE")] if names.sort_key else [])
        table = dynamodb.create_table(
            TableName=names.table,
            KeySchema=[{"AttributeName": name, "KeyType": kind} for name, kind in keys],
            AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name, _ in keys],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
        dynamodb.get_waiter("table_exists").wait(TableName=names.table)
    if not table.get("LatestStreamArn"):
        raise RuntimeError(f"table {names.table} exists without a stream; enable NEW_AND_OLD_IMAGES")
    return str(table["LatestStreamArn"])


def ensure_ledger(dynamodb: Any, names: StageNames) -> None:
    """The delivery ledger: one record per message id, expiring through DynamoDB TTL, with its
    indexes (those a ledger made before them lacks are added, one at a time as DynamoDB asks).
    A record written before an index existed is not in it until its next write."""
    definition = table_definition()
    try:
        table = dynamodb.describe_table(TableName=names.ledger_table)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(TableName=names.ledger_table, BillingMode="PAY_PER_REQUEST", **definition)
        dynamodb.get_waiter("table_exists").wait(TableName=names.ledger_table)
    else:
        present = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
        for index in definition["GlobalSecondaryIndexes"]:
            if index["IndexName"] not in present:
                _wait_for_indexes(dynamodb, names.ledger_table)
                dynamodb.update_table(
                    TableName=names.ledger_table,
                    AttributeDefinitions=definition["AttributeDefinitions"],
                    GlobalSecondaryIndexUpdates=[{"Create": index}],
                )
    _ensure_ttl(dynamodb, names.ledger_table)


def _wait_for_indexes(dynamodb: Any, table: str, timeout_s: float = 1800) -> None:
    """Until no index of `table` is being built: DynamoDB builds one new index at a time."""
    deadline = time.monotonic() + timeout_s
    while any(
        index.get("IndexStatus", "ACTIVE") != "ACTIVE"
        for index in dynamodb.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"an index of {table} is still being built after {timeout_s:.0f} s; run again later"
            )
        time.sleep(5)


def _ensure_ttl(dynamodb: Any, table: str) -> None:
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )


def ensure_notes(dynamodb: Any, names: StageNames) -> None:
    """The notes table (run notes, redrive jobs, run leases), expiring through DynamoDB TTL; a
    stage made before it had one gets it on its next bootstrap."""
    try:
        dynamodb.describe_table(TableName=names.notes_table)
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(
            TableName=names.notes_table, BillingMode="PAY_PER_REQUEST", **notes_table_definition()
        )
        dynamodb.get_waiter("table_exists").wait(TableName=names.notes_table)
    _ensure_ttl(dynamodb, names.notes_table)


def ensure_queues(sqs: Any, destination: Destination, visibility_timeout_s: int) -> tuple[str, str]:
    """The FIFO queue and its FIFO dead-letter queue its URLs name, with a redrive policy; returns
    both URLs as SQS gives them."""
    dlq_url = sqs.create_queue(
        QueueName=queue_name(destination.dlq_url),
        Attributes={"FifoQueue": "true", "MessageRetentionPeriod": str(RETENTION_S)},
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": BACKSTOP_MAX_RECEIVE_COUNT})
    queue_url = sqs.create_queue(
        QueueName=queue_name(destination.queue_url),
        Attributes={"FifoQueue": "true", "MessageRetentionPeriod": str(RETENTION_S)},
    )["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={"VisibilityTimeout": str(visibility_timeout_s), "RedrivePolicy": redrive},
    )
    return queue_url, dlq_url


def ensure_ingest_failure_queue(sqs: Any, names: StageNames) -> str:
    """Where Lambda sends metadata of stream batches it gave up on (must be a standard queue)."""
    return str(
        sqs.create_queue(
            QueueName=names.ingest_failure_queue, Attributes={"MessageRetentionPeriod": str(RETENTION_S)}
        )["QueueUrl"]
    )


# A task whose worker fails or times out this many times goes to the tasks' dead-letter queue: few,
# since each try of a task resumes from its checkpoint (a paced or continued part is a new message
# with its own count), and the event source mapping's maximum concurrency means no receive is
# spent on throttling.
JOBS_MAX_RECEIVE_COUNT = 5


def ensure_jobs_queues(sqs: Any, names: StageNames, visibility_timeout_s: int) -> str:
    """The standard queue of backfill and replay tasks that triggers the `jobs` function, hidden while
    a worker holds a task for longer than the function may run (Lambda refuses the mapping
    otherwise), with its standard dead-letter queue; returns the tasks queue's URL."""
    retention = {"MessageRetentionPeriod": str(RETENTION_S)}
    dlq_url = sqs.create_queue(
        QueueName=naming.jobs_dead_letter_queue_name(names.jobs_queue), Attributes=retention
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(QueueName=names.jobs_queue, Attributes=retention)["QueueUrl"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout_s),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": JOBS_MAX_RECEIVE_COUNT}
            ),
        },
    )
    return str(queue_url)


def ensure_kms_key(kms: Any, alias: str, description: str) -> str:
    """A customer-managed key for the SecureString, found again by its alias; returns its ARN."""
    try:
        return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])
    except kms.exceptions.NotFoundException:
        key = kms.create_key(Description=description)["KeyMetadata"]
        kms.enable_key_rotation(KeyId=key["KeyId"])
        kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
        return str(key["Arn"])


def secret_stored(ssm: Any, name: str) -> bool:
    """Whether the SecureString exists (its value is not read)."""
    try:
        ssm.get_parameter(Name=name, WithDecryption=False)
    except ssm.exceptions.ParameterNotFound:
        return False
    return True


def ensure_secret(ssm: Any, name: str, value: str | None, kms_key: str | None = None) -> None:
    """Store the value as a SecureString under the stage's key; with no value given, whatever is
    stored (or not yet) is kept: the bootstrap then prints the command that stores it."""
    if value is None:
        return
    extra = {"KeyId": kms_key} if kms_key else {}
    ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True, **extra)


ARCHIVE_RETENTION_DAYS = 30  # the API's responses (`responses/`)


def archive_expiry(delivered_days: int) -> dict[str, int]:
    """Days the archive bucket keeps each prefix: the API's responses (presigned by `GET
    /messages/{id}`), and what the drains delivered (`delivered/`, read by replays) for the stage's
    TRICKLE_ARCHIVE_DAYS. The bootstrap and the template both make their lifecycle rules from it."""
    return {"responses/": ARCHIVE_RETENTION_DAYS, "delivered/": delivered_days}


def expiry_rule_id(prefix: str) -> str:
    """`delivered/` -> `expire-delivered`."""
    return "expire-" + prefix.strip("/")


def unique_bucket_name(base: str, key_arn: str) -> str:
    """S3 names are global: `<base>-<account>-<region>` (from the stage's key ARN), kept as is if
    `base` already ends so (a re-run on a stage whose config the bootstrap wrote)."""
    _, _, _, region, account, _ = key_arn.split(":", 5)
    suffix = f"-{account}-{region}"
    return base if base.endswith(suffix) else base + suffix


def ensure_archive_bucket(s3: Any, bucket: str, delivered_days: int) -> None:
    """The archive: private, encrypted at rest by default (SSE-S3), each prefix expired by a
    lifecycle rule (`archive_expiry`); a re-run sets the rules and encryption again."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise RuntimeError(
                f"bucket {bucket} exists and is not this account's; choose another name"
            ) from exc
        region = s3.meta.region_name
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **where)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": expiry_rule_id(prefix),
                    "Status": "Enabled",
                    "Filter": {"Prefix": prefix},
                    "Expiration": {"Days": days},
                }
                for prefix, days in archive_expiry(delivered_days).items()
            ]
        },
    )


def ensure_operator_token(ssm: Any, name: str, token: str | None, kms_key: str) -> None:
    """The token callers outside AWS present; kept if it exists and none is given."""
    if token is None:
        try:
            ssm.get_parameter(Name=name, WithDecryption=False)
            return
        except ssm.exceptions.ParameterNotFound:
            token = secrets.token_urlsafe(32)
    ssm.put_parameter(Name=name, Value=token, Type="SecureString", Overwrite=True, KeyId=kms_key)


def kms_alias(env: Mapping[str, str]) -> str:
    """One key per stage for its SecureStrings (every destination's API key, the operator token)."""
    return f"alias/{env['TRICKLE_LEDGER_TABLE']}-secrets"


def provision(
    clients: Mapping[str, Any],
    env: Mapping[str, str],
    api_key: str | None,
    operator_token: str | None = None,
    unique_bucket: bool = False,
    secrets: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Create every resource the stage names; returns the env with the real stream ARN and URLs.
    `secrets`: parameter name -> value, for the destinations' SecureStrings
    (`trickle_project.secret_parameters`); `api_key` (the local runtime's and the tests' one key for
    their stand-ins) goes into the key parameter of every destination with auth = api_key that
    `secrets` does not name (never into Basic or OAuth2 credentials). A parameter given neither
    keeps what it holds. `unique_bucket` makes the archive bucket's name unique to the
    account and region (the command does; an emulator of one's own has no global namespace to share)."""
    given = dict(secrets or {})
    names = StageNames.from_env(env)
    key_arn = ensure_kms_key(clients["kms"], kms_alias(env), f"Trickle secrets of {names.ledger_table}")
    stream_arn = ensure_table(clients["dynamodb"], names)
    ensure_ledger(clients["dynamodb"], names)
    ensure_notes(clients["dynamodb"], names)
    visibility = int(env.get("TRICKLE_VISIBILITY_TIMEOUT_SECONDS", "960"))
    urls: dict[str, str] = {}
    for destination in names.destinations:
        queue_url, dlq_url = ensure_queues(clients["sqs"], destination, visibility)
        urls[naming.destination_variable(destination.name, "queue_url")] = queue_url
        urls[naming.destination_variable(destination.name, "dlq_url")] = dlq_url
        for parameter in needed(destination):
            default = api_key if parameter.shape == API_KEY else None
            ensure_secret(clients["ssm"], parameter.name, given.get(parameter.name, default), key_arn)
    failure_url = ensure_ingest_failure_queue(clients["sqs"], names)
    jobs_url = ensure_jobs_queues(clients["sqs"], names, visibility)
    bucket = env.get("TRICKLE_ARCHIVE_BUCKET")
    if bucket:
        bucket = unique_bucket_name(bucket, key_arn) if unique_bucket else bucket
        ensure_archive_bucket(clients["s3"], bucket, names.archive_days)
    if env.get("TRICKLE_AUTH_TOKEN_PARAMETER"):
        ensure_operator_token(clients["ssm"], env["TRICKLE_AUTH_TOKEN_PARAMETER"], operator_token, key_arn)
    return {
        **env,
        "TRICKLE_STREAM_ARN": stream_arn,
        **urls,
        "TRICKLE_INGEST_FAILURE_QUEUE_URL": failure_url,
        "TRICKLE_JOBS_QUEUE_URL": jobs_url,
        "TRICKLE_API_KEY_KMS_KEY_ARN": key_arn,
        **({"TRICKLE_ARCHIVE_BUCKET": bucket} if bucket else {}),
    }


def teardown(clients: Mapping[str, Any], env: Mapping[str, str], source_table: bool) -> list[str]:
    """Remove what `provision` created (the source table only if asked); returns what went."""
    names = StageNames.from_env(env)
    gone: list[str] = []
    sqs, dynamodb = clients["sqs"], clients["dynamodb"]
    queues = [queue_name(url) for d in names.destinations for url in (d.queue_url, d.dlq_url)]
    jobs = [names.jobs_queue, naming.jobs_dead_letter_queue_name(names.jobs_queue)]
    for queue in [*queues, names.ingest_failure_queue, *jobs]:
        try:
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"])
            gone.append(f"queue {queue}")
        except sqs.exceptions.QueueDoesNotExist:
            pass
    for table in [names.ledger_table, names.notes_table] + ([names.table] if source_table else []):
        try:
            dynamodb.delete_table(TableName=table)
            gone.append(f"table {table}")
        except dynamodb.exceptions.ResourceNotFoundException:
            pass
    for parameter in (p for d in names.destinations for p in needed(d)):
        try:
            clients["ssm"].delete_parameter(Name=parameter.name)
            gone.append(f"parameter {parameter.name}")
        except clients["ssm"].exceptions.ParameterNotFound:
            pass
    bucket = env.get("TRICKLE_ARCHIVE_BUCKET")
    if bucket:
        s3 = clients["s3"]
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    s3.delete_object(Bucket=bucket, Key=obj["Key"])
            s3.delete_bucket(Bucket=bucket)
            gone.append(f"bucket {bucket}")
        except s3.exceptions.NoSuchBucket:
            pass
    token = env.get("TRICKLE_AUTH_TOKEN_PARAMETER")
    if token:
        try:
            clients["ssm"].delete_parameter(Name=token)
            gone.append(f"parameter {token}")
        except clients["ssm"].exceptions.ParameterNotFound:
            pass
    kms = clients["kms"]
    try:
        key_id = kms.describe_key(KeyId=kms_alias(env))["KeyMetadata"]["KeyId"]
        kms.delete_alias(AliasName=kms_alias(env))
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        gone.append(f"key {kms_alias(env)} (deletion in 7 days)")
    except kms.exceptions.NotFoundException:
        pass
    return gone
