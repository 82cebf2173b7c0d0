"""Give a `chalice deploy`ed stream event source what Chalice's decorator cannot set.

    python -m trickle_deploy.stream_settings --stage dev [--endpoint URL]

Chalice's `on_dynamodb_record` sets only the batch size, batching window and starting position, so
with Lambda's defaults one failing batch is retried until its records expire (24 hours) and blocks
its shard. After every `chalice deploy` of a bootstrapped stage this sets, with
UpdateEventSourceMapping, what the merge template sets for a template stage: bisect on error, a
retry limit, a record age limit, the on-failure queue, and partial batch responses when the stage
enables them. Idempotent: a mapping that already has them is left alone.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chalicelib.settings import load_settings
from trickle_deploy.session import configured_session

# Stream records live 24 hours; retries beyond that only meet expired records.
MAX_RECORD_AGE_S = 86_400
STREAM_RETRY_ATTEMPTS = 10
# Lambda refuses updates while a mapping is being created or updated.
SETTLED = ("Enabled", "Disabled")


def wanted_settings(env: Mapping[str, str], failure_queue_arn: str) -> dict[str, Any]:
    """The mapping's settings for a stage (the same values the merge template gives)."""
    partial = load_settings(env).partial_batch_response
    return {
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": STREAM_RETRY_ATTEMPTS,
        "MaximumRecordAgeInSeconds": MAX_RECORD_AGE_S,
        "DestinationConfig": {"OnFailure": {"Destination": failure_queue_arn}},
        "FunctionResponseTypes": ["ReportBatchItemFailures"] if partial else [],
    }


def differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The wanted settings the mapping does not have yet (absent lists count as empty)."""
    changed = {}
    for key, value in wanted.items():
        have = current.get(key)
        if key == "DestinationConfig":
            have = {"OnFailure": {"Destination": (have or {}).get("OnFailure", {}).get("Destination")}}
        elif key == "FunctionResponseTypes":
            have = list(have or [])
        if have != value:
            changed[key] = value
    return changed


def _settled(lambda_client: Any, uuid: str, deadline_s: float) -> dict[str, Any]:
    end = time.monotonic() + deadline_s
    while True:
        mapping: dict[str, Any] = lambda_client.get_event_source_mapping(UUID=uuid)
        if mapping.get("State") in SETTLED or time.monotonic() > end:
            return mapping
        time.sleep(1.0)


def apply(
    lambda_client: Any,
    function_name: str,
    stream_arn: str,
    wanted: Mapping[str, Any],
    deadline_s: float = 120,
) -> list[dict[str, Any]]:
    """Update every mapping of the function on the stream; returns what changed per mapping."""
    function_arn = lambda_client.get_function(FunctionName=function_name)["Configuration"]["FunctionArn"]
    pages = lambda_client.get_paginator("list_event_source_mappings").paginate(EventSourceArn=stream_arn)
    mappings = [m for page in pages for m in page["EventSourceMappings"] if m["FunctionArn"] == function_arn]
    if not mappings:
        raise SystemExit(
            f"no event source mapping of {function_name} on {stream_arn}: chalice deploy the stage first"
        )
    report = []
    for mapping in mappings:
        current = _settled(lambda_client, mapping["UUID"], deadline_s)
        changed = differences(current, wanted)
        if changed:
            lambda_client.update_event_source_mapping(UUID=mapping["UUID"], **changed)
        report.append({"uuid": mapping["UUID"], "changed": sorted(changed)})
    return report


def function_name(config: Mapping[str, Any], stage: str) -> str:
    """Chalice names a stage's functions `<app>-<stage>-<handler>`."""
    return f"{config['app_name']}-{stage}-ingest"


def main(argv: list[str] | None = None) -> int:
    from trickle_project import stage as stages

    parser = argparse.ArgumentParser(
        prog="python -m trickle_deploy.stream_settings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples on their lines
    )
    parser.add_argument("--stage", required=True)
    parser.add_argument(
        "--endpoint", help="AWS endpoint URL (default: real AWS, or the stage's AWS_ENDPOINT_URL)"
    )
    parser.add_argument("--region", help="AWS region (default: the one your AWS configuration names)")
    parser.add_argument("--project-dir", default=str(stages.PROJECT_DIR), help="the Chalice project")
    args = parser.parse_args(argv)
    project = Path(args.project_dir)
    env = stages.stage_env(args.stage, project)
    endpoint = args.endpoint or env.get("AWS_ENDPOINT_URL")
    session = configured_session(args.region)
    sqs = session.client("sqs", endpoint_url=endpoint)
    failure_queue = sqs.get_queue_attributes(
        QueueUrl=env["TRICKLE_INGEST_FAILURE_QUEUE_URL"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    report = apply(
        session.client("lambda", endpoint_url=endpoint),
        function_name(stages.load_config(project), args.stage),
        env["TRICKLE_STREAM_ARN"],
        wanted_settings(env, failure_queue),
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
