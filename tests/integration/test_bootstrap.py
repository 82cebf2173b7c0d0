"""The bootstrap: creates a stage's resources through boto3, safe to re-run; teardown removes them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from trickle_deploy.bootstrap import main as bootstrap_main
from trickle_deploy.policies import function_policies, refresh
from trickle_local.endpoint import SERVICES, MotoEndpoint, clients
from trickle_project import stage
from trickle_project.resources import provision, teardown


def test_bootstrap_is_idempotent_and_teardown_removes_what_it_made(endpoint: MotoEndpoint) -> None:
    endpoint.reset()
    aws = clients(endpoint.url)
    env = stage.rebase(stage.stage_env("dev"), endpoint.url, None)

    first = provision(aws, env, "secret-1")
    second = provision(aws, env, None)  # re-run without a key keeps the stored one

    assert first == second
    assert first["TRICKLE_DEST_ORDERS_QUEUE_URL"].endswith("/trickle-dev-orders.fifo")
    assert first["TRICKLE_DEST_CRM_DLQ_URL"].endswith("/trickle-dev-crm-dead-letters.fifo")
    assert first["TRICKLE_STREAM_ARN"].startswith(
        "arn:aws:dynamodb:us-east-1:123456789012:table/trickle-dev-items/stream/"
    )
    for name in ("/trickle/dev/orders-api-key", "/trickle/dev/crm-api-key"):
        parameter = aws["ssm"].get_parameter(Name=name, WithDecryption=True)["Parameter"]
        assert (parameter["Type"], parameter["Value"]) == ("SecureString", "secret-1")
    key = aws["kms"].describe_key(KeyId="alias/trickle-dev-ledger-secrets")["KeyMetadata"]
    assert key["Arn"] == first["TRICKLE_API_KEY_KMS_KEY_ARN"]
    for table in ("trickle-dev-ledger", "trickle-dev-notes"):
        ttl = aws["dynamodb"].describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at"
    notes = aws["dynamodb"].describe_table(TableName="trickle-dev-notes")["Table"]
    assert notes["KeySchema"] == [{"AttributeName": "note_id", "KeyType": "HASH"}]
    attributes = aws["sqs"].get_queue_attributes(
        QueueUrl=first["TRICKLE_DEST_ORDERS_QUEUE_URL"], AttributeNames=["All"]
    )
    assert attributes["Attributes"]["VisibilityTimeout"] == env["TRICKLE_VISIBILITY_TIMEOUT_SECONDS"]
    assert '"maxReceiveCount": 1000' in attributes["Attributes"]["RedrivePolicy"]
    failure_queue = aws["sqs"].get_queue_attributes(
        QueueUrl=first["TRICKLE_INGEST_FAILURE_QUEUE_URL"], AttributeNames=["All"]
    )["Attributes"]
    assert "FifoQueue" not in failure_queue
    tasks = aws["sqs"].get_queue_attributes(QueueUrl=first["TRICKLE_JOBS_QUEUE_URL"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert first["TRICKLE_JOBS_QUEUE_URL"].endswith("/trickle-dev-jobs") and "FifoQueue" not in tasks
    assert tasks["VisibilityTimeout"] == env["TRICKLE_VISIBILITY_TIMEOUT_SECONDS"]  # more than a jobs run
    dead_tasks = aws["sqs"].get_queue_url(QueueName="trickle-dev-jobs-dead-letters")["QueueUrl"]
    dead_arn = aws["sqs"].get_queue_attributes(QueueUrl=dead_tasks, AttributeNames=["QueueArn"])["Attributes"]
    assert json.loads(tasks["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_arn["QueueArn"],
        "maxReceiveCount": 5,
    }

    drain = function_policies(first)["drain_orders"]
    (decrypt,) = [s for s in drain["Statement"] if s["Sid"] == "DecryptThroughSsm"]
    assert decrypt["Resource"] == [key["Arn"]]

    removed = teardown(aws, env, source_table=False)

    # two queues per destination (four) and three more (ingest failures, jobs' tasks and their dead
    # letters), the ledger and notes tables, the API keys stored (orders, crm, orders_bulk), bucket,
    # KMS key
    assert len(removed) == 18
    assert {"queue trickle-dev-jobs", "queue trickle-dev-jobs-dead-letters"} <= set(removed)
    assert "table trickle-dev-notes" in removed
    assert aws["sqs"].list_queues().get("QueueUrls", []) == []
    assert [t for t in aws["dynamodb"].list_tables()["TableNames"] if t.startswith("trickle-dev")] == [
        "trickle-dev-items"
    ]
    assert teardown(aws, env, source_table=True) == ["table trickle-dev-items"]


def archive_rules(s3: Any, bucket: str) -> dict[str, tuple[str, str, int]]:
    """The bucket's lifecycle rules as the emulator holds them: id -> (status, prefix, days)."""
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return {r["ID"]: (r["Status"], r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules}


def test_the_archive_bucket_expires_delivered_after_the_stage_s_days_and_encrypts_at_rest(
    endpoint: MotoEndpoint,
) -> None:
    """Issue #26: `delivered/` (what replays read) after TRICKLE_ARCHIVE_DAYS, beside the responses'
    rule; SSE-S3 by default. A re-run with another value changes the rule in place."""
    endpoint.reset()
    aws = clients(endpoint.url)
    env = stage.rebase(stage.stage_env("dev"), endpoint.url, None)
    bucket = env["TRICKLE_ARCHIVE_BUCKET"]

    provision(aws, env | {"TRICKLE_ARCHIVE_DAYS": "9"}, "k")

    assert archive_rules(aws["s3"], bucket) == {
        "expire-responses": ("Enabled", "responses/", 30),
        "expire-delivered": ("Enabled", "delivered/", 9),
    }
    (encryption,) = aws["s3"].get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
        "Rules"
    ]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    provision(aws, env, None)  # the default, 30 days

    assert archive_rules(aws["s3"], bucket)["expire-delivered"] == ("Enabled", "delivered/", 30)
    teardown(aws, env, source_table=True)


REGION = "eu-west-3"


def written_files(chalice_dir: Path) -> dict[str, bytes]:
    """The config and policy files (not Chalice's package cache)."""
    return {path.name: path.read_bytes() for path in chalice_dir.iterdir() if path.is_file()}


@pytest.mark.parametrize("teardown_stage", ["dev", "dev-emulator"])
def test_an_emulator_bootstrap_leaves_the_real_stages_alone_and_its_teardown_leaves_no_trace(
    endpoint: MotoEndpoint, tmp_path: Path, teardown_stage: str
) -> None:
    """`--endpoint` records what it made in stage `dev-emulator`: `dev` keeps naming the account's
    resources (a later real bootstrap or deploy of dev goes to AWS), and the teardown takes the
    record away with the resources."""
    endpoint.reset()
    chalice_dir = stage.copy_project(tmp_path) / ".chalice"
    before = written_files(chalice_dir)
    project = ["--project-dir", str(tmp_path)]
    args = ["--stage", "dev", "--endpoint", endpoint.url, *project]

    assert bootstrap_main(args) == 0

    config = json.loads((chalice_dir / "config.json").read_text())
    emulated = config["stages"].pop("dev-emulator")
    assert (json.dumps(config, indent=2) + "\n").encode() == before["config.json"]  # dev, prod, local
    assert emulated["environment_variables"]["AWS_ENDPOINT_URL"] == endpoint.url
    assert emulated["environment_variables"]["TRICKLE_DEST_ORDERS_QUEUE_URL"].startswith(endpoint.url)
    assert emulated["lambda_functions"]["ingest"]["iam_policy_file"] == "policy-dev-emulator-ingest.json"
    assert {p.name: p.read_bytes() for p in chalice_dir.glob("policy-*.json") if p.name in before} == {
        name: text for name, text in before.items() if name.startswith("policy-")
    }
    assert refresh(chalice_dir, check=True) == []  # both stages' policy files are current

    # As bootstrapped, or the record by name (it names its endpoint):
    teardown = args if teardown_stage == "dev" else ["--stage", "dev-emulator", *project]
    assert bootstrap_main([*teardown, "--teardown"]) == 0

    assert written_files(chalice_dir) == before


def test_bootstrap_in_another_region_without_a_key_finishes_with_the_command_to_store_it(
    endpoint: MotoEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As on AWS: the emulator is reached through botocore's own AWS_ENDPOINT_URL, which the bootstrap
    does not see, so it records in `dev` itself."""
    endpoint.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    project = stage.copy_project(tmp_path)
    args = ["--stage", "dev", "--region", REGION, "--project-dir", str(project)]

    assert bootstrap_main(args) == 0
    first = capsys.readouterr().out
    env = stage.stage_env("dev", project)
    assert bootstrap_main(args) == 0  # idempotent: same resources, same config
    assert stage.stage_env("dev", project) == env
    assert "put-parameter" in capsys.readouterr().out  # still no key: still told how to finish

    key = env["TRICKLE_API_KEY_KMS_KEY_ARN"]
    assert key.startswith(f"arn:aws:kms:{REGION}:123456789012:key/")
    for destination in ("orders", "crm"):  # each from a variable of its own
        assert (
            f"aws ssm put-parameter --region {REGION} --name /trickle/dev/{destination}-api-key"
            f' --type SecureString --key-id {key} --value "${destination.upper()}_API_KEY" --overwrite'
        ) in first
    assert env["TRICKLE_STREAM_ARN"].startswith(
        f"arn:aws:dynamodb:{REGION}:123456789012:table/trickle-dev-items/"
    )
    bucket = env["TRICKLE_ARCHIVE_BUCKET"]
    assert bucket == f"trickle-dev-responses-123456789012-{REGION}"
    aws = {name: boto3.client(name, endpoint_url=endpoint.url, region_name=REGION) for name in SERVICES}
    assert aws["s3"].get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
    drain = json.loads((project / ".chalice" / "policy-dev-drain_orders.json").read_text())
    (archive,) = [s for s in drain["Statement"] if s["Sid"] == "ArchiveResponses"]
    assert archive["Resource"] == [f"arn:aws:s3:::{bucket}/responses/*"]
    assert not (project / ".chalice" / "policy-dev-token_auth.json").exists()  # IAM auth: no authorizer

    assert (  # billing's OAuth2 client and its signing secret, each from its own variable
        f"aws ssm put-parameter --region {REGION} --name /trickle/dev/billing-signing-secret"
        f' --type SecureString --key-id {key} --value "$BILLING_SIGNING_SECRET" --overwrite'
    ) in first

    # The operator stores the secrets as told; the drain's role may decrypt them through SSM.
    stored = {
        "/trickle/dev/orders-api-key": "k",
        "/trickle/dev/crm-api-key": "k",
        "/trickle/dev/billing-api-key": '{"client_id": "c", "client_secret": "s"}',
        "/trickle/dev/billing-signing-secret": "whsec_" + "a" * 32,
        "/trickle/dev/orders_bulk-api-key": "k",
    }
    for name, value in stored.items():
        aws["ssm"].put_parameter(Name=name, Value=value, Type="SecureString", KeyId=key)
    assert bootstrap_main(args) == 0
    assert "put-parameter" not in capsys.readouterr().out

    assert len(aws["sqs"].list_queues()["QueueUrls"]) == 11  # two per destination, ingest failures, jobs (2)
    assert bootstrap_main([*args, "--teardown"]) == 0
    said = capsys.readouterr().out
    assert "removed bucket " + bucket in said
    assert "left: chalice delete --stage dev removes" in said
    assert "left: table trickle-dev-items" in said
    after = stage.stage_env("dev", project)
    assert "TRICKLE_API_KEY_KMS_KEY_ARN" not in after  # nothing names the deleted key
    drain = json.loads((project / ".chalice" / "policy-dev-drain_orders.json").read_text())
    assert [s for s in drain["Statement"] if s["Sid"] == "DecryptThroughSsm"] == []
    assert aws["sqs"].list_queues().get("QueueUrls", []) == []


def test_each_destination_s_key_comes_from_its_own_variable_and_a_missing_one_gets_its_command(
    endpoint: MotoEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue #24: one value per destination (the orders key never lands in crm's parameter); what
    is not given is printed as the command that stores it, never with a value."""
    endpoint.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    monkeypatch.setenv("ORDERS_KEY", "sk-orders-only-4c1d")
    project = stage.copy_project(tmp_path)
    args = ["--stage", "dev", "--region", REGION, "--project-dir", str(project)]

    assert bootstrap_main([*args, "--secret-env", "orders=ORDERS_KEY"]) == 0

    said = capsys.readouterr().out
    ssm = boto3.client("ssm", endpoint_url=endpoint.url, region_name=REGION)
    stored = ssm.get_parameter(Name="/trickle/dev/orders-api-key", WithDecryption=True)["Parameter"]
    assert stored["Value"] == "sk-orders-only-4c1d"
    stored_names = [p["Name"] for p in ssm.describe_parameters()["Parameters"]]
    assert stored_names == ["/trickle/dev/orders-api-key"]  # crm's: not stored, not guessed
    assert "--name /trickle/dev/crm-api-key" in said and '--value "$CRM_API_KEY"' in said
    assert "/trickle/dev/orders-api-key" not in said  # stored: nothing to do
    assert "sk-orders-only-4c1d" not in said
    assert bootstrap_main([*args, "--teardown"]) == 0


def test_a_template_stage_is_not_bootstrapped(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        bootstrap_main(["--stage", "prod", "--project-dir", str(stage.copy_project(tmp_path))])


# Issue #24: orders takes Basic credentials, signs and has a secret header; crm takes none at all.
SECRET_KINDS_ROUTES = """
[destinations.orders]
url = "https://orders.example.com/v1"
auth = "basic"
signing = "standard_webhooks"
secret_headers = ["X-Tenant-Key"]

[destinations.crm]
url = "https://crm.example.com/v1"
auth = "none"

[destinations.billing]  # the dev stage names its queues (and app.py drains it): here it reads no secret
url = "https://billing.example.com/v1"
auth = "none"

[destinations.orders_bulk]  # and this one's
url = "https://warehouse.example.com/v1/orders/bulk"
auth = "none"

[[routes]]
name = "everything"
events = ["INSERT"]
destinations = ["orders", "crm", "billing", "orders_bulk"]
"""
SIGNING_SECRET = "whsec_" + base64.b64encode(b"s" * 24).decode()


def test_each_kind_of_secret_goes_into_its_own_parameter_and_what_is_missing_is_said_per_kind(
    endpoint: MotoEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    credentials = json.dumps({"username": "shop", "password": "pw-7b1e-never-say-me"})
    monkeypatch.setenv("ORDERS_BASIC", credentials)
    monkeypatch.setenv("ORDERS_SIGNING", SIGNING_SECRET)
    project = stage.copy_project(tmp_path / "project")
    routes = tmp_path / "routes.toml"
    routes.write_text(SECRET_KINDS_ROUTES)
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["dev"]["environment_variables"]["TRICKLE_ROUTES_FILE"] = str(routes)
    config_path.write_text(json.dumps(config, indent=2))
    args = ["--stage", "dev", "--region", REGION, "--project-dir", str(project)]

    given = ["--secret-env", "orders=ORDERS_BASIC", "--signing-secret-env", "orders=ORDERS_SIGNING"]
    assert bootstrap_main([*args, *given]) == 0

    said = capsys.readouterr().out
    ssm = boto3.client("ssm", endpoint_url=endpoint.url, region_name=REGION)
    stored = {
        name: ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        for name in sorted(p["Name"] for p in ssm.describe_parameters()["Parameters"])
    }
    assert stored == {
        "/trickle/dev/orders-api-key": credentials,
        "/trickle/dev/orders-signing-secret": SIGNING_SECRET,
    }  # crm's: none at all (auth = none, unsigned, no secret headers)
    key = stage.stage_env("dev", project)["TRICKLE_API_KEY_KMS_KEY_ARN"]
    assert (
        '  # ORDERS_HEADERS: the secret headers\' values of orders, JSON {"X-Tenant-Key": "..."}\n'
        f"  aws ssm put-parameter --region {REGION} --name /trickle/dev/orders-headers --type SecureString"
        f' --key-id {key} --value "$ORDERS_HEADERS" --overwrite\n'
    ) in said
    assert said.count("put-parameter") == 1
    assert "pw-7b1e-never-say-me" not in said and SIGNING_SECRET not in said
    drain = json.loads((project / ".chalice" / "policy-dev-drain_orders.json").read_text())
    assert [s["Sid"] for s in drain["Statement"] if s["Sid"].startswith("Read")] == [
        "ReadCredentials",
        "ReadSigningSecret",
        "ReadSecretHeaders",
    ]

    assert bootstrap_main([*args, "--teardown"]) == 0
    assert ssm.describe_parameters()["Parameters"] == []
    assert "removed parameter /trickle/dev/orders-signing-secret" in capsys.readouterr().out
