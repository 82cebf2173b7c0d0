"""The packaged deployment artifact: `chalice package --merge-template` output, checked as a real
SAM template (cfn-lint) and for what Trickle promises about it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trickle_deploy.iam_check import packaged_policies
from trickle_deploy.template import drain_timeout, visibility_for
from trickle_local.stage import PROJECT_DIR, load_config

BIN = Path(sys.executable).parent


def package(stage: str, out: Path, *flags: str) -> dict[str, Any]:
    merge = out / "merge.json"
    subprocess.run(
        [sys.executable, "-m", "trickle_deploy.template", "--stage", stage, "--out", str(merge), *flags],
        cwd=PROJECT_DIR,
        check=True,
    )
    subprocess.run(
        [str(BIN / "chalice"), "package", "--stage", stage, "--merge-template", str(merge), str(out / "pkg")],
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": str(BIN)},
    )
    return dict(json.loads((out / "pkg" / "sam.json").read_text()))


@pytest.fixture(
    scope="module", params=[("prod", ("--create-source-table",)), ("dev", ())], ids=["prod", "dev"]
)
def packaged(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, dict[str, Any]]:
    stage, flags = request.param
    out = tmp_path_factory.mktemp(stage)
    return stage, out, package(stage, out, *flags)


def test_cfn_lint_passes(packaged: tuple[str, Path, dict[str, Any]]) -> None:
    _, out, _ = packaged
    done = subprocess.run(
        [str(BIN / "cfn-lint"), str(out / "pkg" / "sam.json")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_stream_event_source_has_what_chalice_cannot_set(packaged: tuple[str, Path, dict[str, Any]]) -> None:
    stage, _, template = packaged
    properties = template["Resources"]["Ingest"]["Properties"]["Events"]["IngestDynamodbEventSource"][
        "Properties"
    ]
    assert properties["BisectBatchOnFunctionError"] is True
    assert properties["MaximumRetryAttempts"] == {"Ref": "StreamRetryAttempts"}
    assert properties["MaximumRecordAgeInSeconds"] == 86_400
    destination = properties["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert (
        "FifoQueue" not in template["Resources"][destination]["Properties"]
    )  # Lambda needs a standard queue
    env = load_config()["stages"][stage]["environment_variables"]
    partial = env.get("TRICKLE_PARTIAL_BATCH_RESPONSE", "false") == "true"
    assert ("FunctionResponseTypes" in properties) is partial
    if stage == "prod":
        assert properties["Stream"] == {"Fn::GetAtt": ["SourceTable", "StreamArn"]}
    else:
        assert properties["Stream"] == env["TRICKLE_STREAM_ARN"]


def test_resources_carry_the_stage_names_and_a_derived_visibility(
    packaged: tuple[str, Path, dict[str, Any]],
) -> None:
    stage, _, template = packaged
    resources = template["Resources"]
    config = load_config()
    env = config["stages"][stage]["environment_variables"]
    outbox = resources["OutboxQueue"]["Properties"]
    assert env["TRICKLE_QUEUE_URL"].endswith("/" + outbox["QueueName"])
    assert env["TRICKLE_DLQ_URL"].endswith("/" + resources["DeadLetterQueue"]["Properties"]["QueueName"])
    assert resources["LedgerTable"]["Properties"]["TableName"] == env["TRICKLE_LEDGER_TABLE"]
    assert resources["LedgerTable"]["Properties"]["TimeToLiveSpecification"]["Enabled"] is True
    assert outbox["VisibilityTimeout"] == visibility_for(drain_timeout(config, stage))
    assert int(env["TRICKLE_VISIBILITY_TIMEOUT_SECONDS"]) == outbox["VisibilityTimeout"]
    assert outbox["RedrivePolicy"]["maxReceiveCount"] >= 100


def test_alarms_and_dashboard_are_in_the_template(packaged: tuple[str, Path, dict[str, Any]]) -> None:
    _, _, template = packaged
    alarms = {
        p["Properties"]["MetricName"]
        for p in template["Resources"].values()
        if p.get("Type") == "AWS::CloudWatch::Alarm"
    }
    assert alarms == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "Errors",
        "IteratorAge",
    }
    dashboards = [p for p in template["Resources"].values() if p.get("Type") == "AWS::CloudWatch::Dashboard"]
    assert len(dashboards) == 1


def test_the_response_archive_expires_what_it_keeps(packaged: tuple[str, Path, dict[str, Any]]) -> None:
    stage, _, template = packaged
    bucket = template["Resources"]["ResponseArchive"]["Properties"]
    assert (
        bucket["BucketName"]
        == load_config()["stages"][stage]["environment_variables"]["TRICKLE_ARCHIVE_BUCKET"]
    )
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == "responses/" and rule["ExpirationInDays"] > 0
    assert all(bucket["PublicAccessBlockConfiguration"].values())


def test_kms_decrypt_is_limited_to_the_key_and_the_parameter(
    packaged: tuple[str, Path, dict[str, Any]],
) -> None:
    stage, _, template = packaged
    policy = template["Resources"]["DrainDecryptApiKey"]["Properties"]
    assert policy["Roles"] == [{"Ref": "DrainRole"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "kms:Decrypt"
    assert statement["Resource"] == {"Fn::GetAtt": ["ApiKeyEncryptionKey", "Arn"]}
    parameter = load_config()["stages"][stage]["environment_variables"]["TRICKLE_API_KEY_PARAMETER"]
    assert statement["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"].endswith(
        ":parameter" + parameter
    )


def test_roles_name_their_resources_never_star(packaged: tuple[str, Path, dict[str, Any]]) -> None:
    _, _, template = packaged
    for function, policy in packaged_policies(template).items():
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            if any(a.split(":")[0] in ("sqs", "ssm", "dynamodb", "kms") for a in actions):
                assert all(r != "*" and ":*:" not in r for r in resources), (function, statement)
                assert all(not a.endswith("*") for a in actions), (function, statement)


def test_the_drain_runs_one_at_a_time(packaged: tuple[str, Path, dict[str, Any]]) -> None:
    """Scheduled runs may outlast their interval; overlapping runs would each hold a rate limiter
    and together exceed the destination's rate. Reserved concurrency 1 keeps one drain at a time."""
    _, _, template = packaged
    drain = template["Resources"]["Drain"]["Properties"]
    assert drain["ReservedConcurrentExecutions"] == 1
    assert [e["Type"] for e in drain["Events"].values()] == ["Schedule"]
