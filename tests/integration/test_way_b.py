"""Way B as on AWS, on the emulator (docs/deploying.md): the bootstrap in an account and a
region that are not moto's defaults, `chalice deploy --stage dev` against the endpoint, the
stream-settings command, then `chalice delete` and the teardown, in a copy of the project. The
endpoint is botocore's own `AWS_ENDPOINT_URL`, which the commands do not see: they act as on AWS and
record in `dev` itself (`python -m trickle_prove` runs way B with `--endpoint` instead).

moto lacks one AWS behaviour `chalice deploy` needs: `ImportRestApi`/`PutRestApi` refuse Swagger 2.0,
which Chalice sends and AWS accepts. `chalice` runs through `trickle_deploy.emulator_shims`, the shim
that relabels the document; `test_emulator_gaps.py` pins the gap on both emulators.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from trickle_deploy.bootstrap import main as bootstrap
from trickle_deploy.emulator_shims import run_chalice
from trickle_deploy.stream_settings import main as stream_settings
from trickle_local.endpoint import MotoEndpoint
from trickle_project.stage import copy_project, stage_env

REGION = "eu-west-3"
ACCOUNT = "456789012345"  # not moto's default: the emulator serves every request as this account

pytestmark = pytest.mark.only_on(
    "moto",
    reason=(
        "the bootstrap runs in a non-default account, where ministack's stream ARNs name its default "
        "account (seen with ministack 1.5.33)"
    ),
)


def chalice(project: Path, endpoint: MotoEndpoint, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_chalice("moto", endpoint.url, project, *args, region=REGION)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def aws(endpoint: MotoEndpoint, service: str) -> Any:
    make: Any = boto3.client
    return make(service, endpoint_url=endpoint.url, region_name=REGION)


def test_bootstrap_deploy_stream_settings_delete_teardown(
    endpoint: MotoEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint.reset()
    monkeypatch.setenv("WAY_B_API_KEY", "sk-way-b")
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)  # botocore's own: the commands see AWS
    project = copy_project(tmp_path)
    where = ["--stage", "dev", "--region", REGION, "--project-dir", str(project)]

    keys = ["--secret-env", "orders=WAY_B_API_KEY", "--secret-env", "crm=WAY_B_API_KEY"]
    assert bootstrap([*where, *keys]) == 0
    env = stage_env("dev", project)
    assert env["TRICKLE_STREAM_ARN"].startswith(
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/trickle-dev-items/"
    )
    written = [
        project / ".chalice" / "config.json",
        *sorted((project / ".chalice").glob("policy-dev-*.json")),
    ]
    for path in written:  # the placeholders the repository ships are all replaced
        dev = json.loads(path.read_text())
        text = json.dumps(dev["stages"]["dev"] if "stages" in dev else dev)
        assert "123456789012" not in text and "us-east-1" not in text, path.name
    deployed = chalice(project, endpoint, "deploy", "--stage", "dev")
    assert "trickle-dev-ingest" in deployed.stdout + deployed.stderr

    lambda_client = aws(endpoint, "lambda")
    (mapping,) = lambda_client.list_event_source_mappings(EventSourceArn=env["TRICKLE_STREAM_ARN"])[
        "EventSourceMappings"
    ]
    assert mapping["FunctionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:trickle-dev-ingest"
    assert "BisectBatchOnFunctionError" not in mapping  # what chalice deploy leaves: Lambda's defaults

    capsys.readouterr()
    assert stream_settings(where) == 0
    (applied,) = json.loads(capsys.readouterr().out)
    assert applied["changed"] == [
        "BisectBatchOnFunctionError",
        "DestinationConfig",
        "MaximumRecordAgeInSeconds",
        "MaximumRetryAttempts",
    ]
    mapping = lambda_client.get_event_source_mapping(UUID=mapping["UUID"])
    failure_queue = aws(endpoint, "sqs").get_queue_attributes(
        QueueUrl=env["TRICKLE_INGEST_FAILURE_QUEUE_URL"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == 10
    assert mapping["MaximumRecordAgeInSeconds"] == 86_400
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == failure_queue
    assert stream_settings(where) == 0  # idempotent: nothing left to change
    assert json.loads(capsys.readouterr().out)[0]["changed"] == []

    functions = {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]}
    # a drain per destination; no token_auth: IAM auth
    assert functions == {
        "trickle-dev-ingest",
        "trickle-dev-jobs",
        "trickle-dev-drain_orders",
        "trickle-dev-drain_crm",
        "trickle-dev-drain_billing",
        "trickle-dev-drain_orders_bulk",
        "trickle-dev",
    }
    drain = lambda_client.get_function(FunctionName="trickle-dev-drain_orders")
    assert "Concurrency" not in drain  # reserved concurrency is optional, and off
    assert (
        drain["Configuration"]["Environment"]["Variables"]["TRICKLE_DEST_ORDERS_QUEUE_URL"]
        == env["TRICKLE_DEST_ORDERS_QUEUE_URL"]
    )

    queues = aws(endpoint, "sqs").list_queues()["QueueUrls"]
    assert len(queues) == 11  # two per destination, ingest failures, jobs' tasks and their dead letters
    chalice(project, endpoint, "delete", "--stage", "dev")
    assert bootstrap([*where, "--teardown"]) == 0
    said = capsys.readouterr().out

    assert lambda_client.list_functions()["Functions"] == []
    assert lambda_client.list_event_source_mappings()["EventSourceMappings"] == []
    assert aws(endpoint, "apigateway").get_rest_apis()["items"] == []
    assert aws(endpoint, "iam").list_roles()["Roles"] == []
    assert aws(endpoint, "events").list_rules()["Rules"] == []
    assert aws(endpoint, "sqs").list_queues().get("QueueUrls", []) == []
    assert aws(endpoint, "ssm").describe_parameters()["Parameters"] == []
    assert aws(endpoint, "s3").list_buckets()["Buckets"] == []
    # What the teardown says it leaves, and nothing else:
    assert aws(endpoint, "dynamodb").list_tables()["TableNames"] == ["trickle-dev-items"]
    assert "left: table trickle-dev-items" in said
    keys = aws(endpoint, "kms").list_keys()["Keys"]
    assert [aws(endpoint, "kms").describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] for k in keys] == [
        "PendingDeletion"
    ]
    assert "left: key alias/trickle-dev-ledger-secrets: pending deletion" in said
    assert "TRICKLE_API_KEY_KMS_KEY_ARN" not in stage_env("dev", project)
