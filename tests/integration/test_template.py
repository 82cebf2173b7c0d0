"""The packaged deployment artifacts: `chalice package` output of every stage (with the merge template
for prod), and what CloudFormation's SAM transform makes of it, checked as real templates (cfn-lint
with its informational checks) and for what Trickle promises about them."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib import naming
from chalicelib.settings import JOBS_MAX_CONCURRENCY
from tests.integration.deployment import BIN, package_stage, write
from trickle_deploy import template as merge
from trickle_deploy.iam_check import packaged_policies
from trickle_deploy.policies import SQS_TRIGGER_ACTIONS, refresh
from trickle_deploy.sam import sam_transform
from trickle_deploy.template import drain_timeout, function_timeout, visibility_for
from trickle_project.secret_parameters import needed
from trickle_project.stage import (
    PACKAGING_ENV,
    copy_project,
    load_config,
    packaging_env,
    stage_env,
    stage_settings,
)
from trickle_project.workflows import wait_definition

DESTINATIONS = ("orders", "crm", "billing", "orders_bulk")  # chalicelib/routes.toml

# Only the translator's session sees this region; it must not leak into any template.
TRANSFORM_REGION = "eu-south-2"
ACCOUNT_LITERAL = re.compile(r"(?<!\d)\d{12}(?!\d)")
REGION_LITERAL = re.compile(r"\b(?:us|eu|ap|sa|ca|me|af|il|mx|cn)-[a-z]+-\d\b")
STATEFUL = ("AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::KMS::Key", "AWS::S3::Bucket")


@pytest.fixture(scope="module", params=["prod", "dev", "local"])
def artifacts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, dict[str, Any], dict[str, Any]]]:
    """(stage, directory, packaged SAM template, transformed CloudFormation template)."""
    stage = request.param
    out = tmp_path_factory.mktemp(stage)
    sam = json.loads(package_stage(stage, out).read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", TRANSFORM_REGION)
        cfn = sam_transform(sam)
    write(cfn, out / "cfn.json")
    yield stage, out, sam, cfn


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    out = tmp_path_factory.mktemp("prod-only")
    sam = json.loads(package_stage("prod", out).read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", TRANSFORM_REGION)
        return sam, sam_transform(sam)


def test_cfn_lint_with_informational_checks_passes_both_templates(
    artifacts: tuple[str, Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, out, _, _ = artifacts
    for path in (out / "pkg" / "sam.json", out / "cfn.json"):
        done = subprocess.run(
            [str(BIN / "cfn-lint"), "--include-checks", "I", "--", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, (path.name, done.stdout + done.stderr)
        assert "I3011" not in done.stdout


def test_the_prod_templates_name_no_account_no_region_and_no_packaging_placeholder(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    for template in prod:
        text = json.dumps(template)
        assert ACCOUNT_LITERAL.findall(text) == []
        assert REGION_LITERAL.findall(text) == []
        assert "arn:aws:" not in text  # the partition comes from AWS::Partition
        assert "amazonaws.com/" not in text  # queue URLs come from Ref
        for value in packaging_env(load_config()["stages"]["prod"]["environment_variables"]).values():
            assert "packaging" not in value or value not in text


def test_the_prod_stage_config_holds_no_resource_arn_or_url() -> None:
    env = load_config()["stages"]["prod"]["environment_variables"]
    assert [
        k for k, v in env.items() if "arn:" in v or "amazonaws.com" in v or ACCOUNT_LITERAL.search(v)
    ] == []
    assert not set(env) & set(PACKAGING_ENV)


def test_every_function_gets_its_resources_from_the_stack(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    sam, _ = prod
    functions = {k: r for k, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    # IAM auth: no token authorizer; a drain per destination of the routes file
    assert set(functions) == {
        "Ingest",
        "Jobs",
        "APIHandler",
        *(f"Drain{naming.logical_id(d)}" for d in DESTINATIONS),
    }
    for name, function in functions.items():
        variables = function["Properties"]["Environment"]["Variables"]
        for destination in DESTINATIONS:
            prefix = f"TRICKLE_DEST_{destination.upper()}_"
            queue = naming.logical_id(destination)
            assert variables[prefix + "QUEUE_URL"] == {"Ref": f"{queue}Queue"}, name
            assert variables[prefix + "DLQ_URL"] == {"Ref": f"{queue}DeadLetterQueue"}, name
        assert variables["TRICKLE_LEDGER_TABLE"] == {"Ref": "LedgerTable"}, name
        assert variables["TRICKLE_NOTES_TABLE"] == {"Ref": "NotesTable"}, name
        assert variables["TRICKLE_INGEST_FAILURE_QUEUE_URL"] == {"Ref": "IngestFailureQueue"}, name
        assert variables["TRICKLE_JOBS_QUEUE_URL"] == {"Ref": "JobTasks"}, name
        assert variables["TRICKLE_ARCHIVE_BUCKET"] == {"Ref": "ResponseArchive"}, name
        assert variables["TRICKLE_STREAM_ARN"]["Fn::If"][0] == "CreatesSourceTable", name
    assert sam["Parameters"]["SourceStreamArn"]["Default"] == ""
    assert re.match(sam["Parameters"]["SourceStreamArn"]["AllowedPattern"], "")
    assert re.match(
        sam["Parameters"]["SourceStreamArn"]["AllowedPattern"],
        "arn:aws-cn:dynamodb:cn-north-1:111122223333:table/orders/stream/2026-01-01T00:00:00.000",
    )
    assert sam["Resources"]["SourceTable"]["Condition"] == "CreatesSourceTable"


def test_stateful_resources_survive_the_stack(
    artifacts: tuple[str, Path, dict[str, Any], dict[str, Any]],
) -> None:
    stage, _, sam, cfn = artifacts
    for template in (sam, cfn):
        stateful = {k: r for k, r in template["Resources"].items() if r["Type"] in STATEFUL}
        if stage == "prod":
            assert set(stateful) == {
                "SourceTable",
                "LedgerTable",
                "NotesTable",
                "OrdersQueue",
                "OrdersDeadLetterQueue",
                "CrmQueue",
                "CrmDeadLetterQueue",
                "BillingQueue",
                "BillingDeadLetterQueue",
                "OrdersBulkQueue",
                "OrdersBulkDeadLetterQueue",
                "IngestFailureQueue",
                "JobTasks",
                "JobTasksDeadLetters",
                "ApiKeyEncryptionKey",
                "ResponseArchive",
            }
        for name, resource in stateful.items():
            assert resource.get("DeletionPolicy") == "Retain", name
            assert resource.get("UpdateReplacePolicy") == "Retain", name


def test_globally_named_resources_are_unique_per_account_and_region(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    sam, _ = prod
    resources = sam["Resources"]
    assert "BucketName" not in resources["ResponseArchive"]["Properties"]  # CloudFormation generates it
    assert resources["Dashboard"]["Properties"]["DashboardName"] == {
        "Fn::Sub": "${AWS::StackName}-${AWS::Region}"
    }
    for name in (
        "OrdersQueue",
        "OrdersDeadLetterQueue",
        "CrmQueue",
        "CrmDeadLetterQueue",
        "IngestFailureQueue",
        "JobTasks",
        "JobTasksDeadLetters",
    ):
        assert resources[name]["Properties"]["QueueName"]["Fn::Sub"].startswith("${AWS::StackName}-")


def test_stream_event_source_has_what_chalice_cannot_set(prod: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sam, cfn = prod
    properties = sam["Resources"]["Ingest"]["Properties"]["Events"]["IngestDynamodbEventSource"]["Properties"]
    assert properties["BisectBatchOnFunctionError"] is True
    assert properties["MaximumRetryAttempts"] == {"Ref": "StreamRetryAttempts"}
    assert properties["MaximumRecordAgeInSeconds"] == 86_400
    destination = properties["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert "FifoQueue" not in sam["Resources"][destination]["Properties"]  # Lambda needs a standard queue
    env = load_config()["stages"]["prod"]["environment_variables"]
    partial = env.get("TRICKLE_PARTIAL_BATCH_RESPONSE", "false") == "true"
    assert ("FunctionResponseTypes" in properties) is partial
    (mapping,) = [
        r
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and "BisectBatchOnFunctionError" in r["Properties"]
    ]
    assert mapping["Properties"]["EventSourceArn"]["Fn::If"][0] == "CreatesSourceTable"
    assert mapping["Properties"]["BisectBatchOnFunctionError"] is True


def test_the_queue_outlives_a_drain_holding_its_messages(prod: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sam, _ = prod
    config = load_config()
    for destination in DESTINATIONS:
        queue = sam["Resources"][f"{naming.logical_id(destination)}Queue"]["Properties"]
        drain = sam["Resources"][f"Drain{naming.logical_id(destination)}"]["Properties"]
        assert queue["VisibilityTimeout"] == visibility_for(drain_timeout(config, "prod", destination))
        assert queue["VisibilityTimeout"] > drain["Timeout"]
        assert (
            int(config["stages"]["prod"]["environment_variables"]["TRICKLE_VISIBILITY_TIMEOUT_SECONDS"])
            == queue["VisibilityTimeout"]
        )
        assert queue["RedrivePolicy"]["maxReceiveCount"] >= 100


def test_the_jobs_tasks_queue_outlives_a_task_and_dead_letters_one_that_keeps_failing(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Issue #26: a standard queue (tasks come back delayed, in no order), hidden for longer than the
    `jobs` function may hold a task (Lambda refuses the mapping otherwise), a few receives before its
    own standard dead-letter queue, whose depth alarms; their URLs are outputs. Not `JobsQueue`: a
    destination named `jobs` has that id."""
    sam, _ = prod
    resources = sam["Resources"]
    tasks, dead = resources["JobTasks"]["Properties"], resources["JobTasksDeadLetters"]["Properties"]
    assert "FifoQueue" not in tasks and "FifoQueue" not in dead
    assert tasks["QueueName"] == {"Fn::Sub": "${AWS::StackName}-jobs"}
    assert dead["QueueName"] == {"Fn::Sub": "${AWS::StackName}-jobs-dead-letters"}
    assert tasks["VisibilityTimeout"] == visibility_for(function_timeout(load_config(), "prod", "jobs"))
    assert tasks["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["JobTasksDeadLetters", "Arn"]},
        "maxReceiveCount": 5,
    }
    alarm = resources["DeadJobTasksAlarm"]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["JobTasksDeadLetters", "QueueName"]}}
    ]
    assert (alarm["MetricName"], alarm["Threshold"]) == ("ApproximateNumberOfMessagesVisible", 0)
    assert sam["Outputs"]["JobTasksUrl"] == {"Value": {"Ref": "JobTasks"}}
    assert sam["Outputs"]["JobTasksDeadLettersUrl"] == {"Value": {"Ref": "JobTasksDeadLetters"}}
    assert naming.queue_id("jobs") == "JobsQueue"  # what a destination named jobs gets


def stack_queue(expression: Any) -> str | None:
    """The logical id of the resource an ARN expression of the stack names (`GetAtt X.Arn` or
    `Sub ${X.Arn}`), else None."""
    if not isinstance(expression, dict):
        return None
    if "Fn::GetAtt" in expression and expression["Fn::GetAtt"][1] == "Arn":
        return str(expression["Fn::GetAtt"][0])
    found = re.fullmatch(r"\$\{(\w+)\.Arn\}", str(expression.get("Fn::Sub", "")))
    return found.group(1) if found else None


def test_the_jobs_function_is_triggered_by_the_stack_s_tasks_queue_one_task_at_a_time(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Issue #26: no packaging placeholder left in the `jobs` function's trigger; at most the stage's
    TRICKLE_JOBS_MAX_CONCURRENCY parts worked at once; and the `jobs` role, which Lambda polls the
    queue with, allows what the trigger does there (AWS refuses to create the mapping otherwise)."""
    sam, cfn = prod
    limit = {
        "MaximumConcurrency": stage_settings(
            load_config()["stages"]["prod"]["environment_variables"]
        ).jobs_max_concurrency
    }
    source = sam["Resources"]["Jobs"]["Properties"]["Events"]["JobsSqsEventSource"]
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::Sub": "${JobTasks.Arn}"}
    assert source["Properties"]["BatchSize"] == 1
    assert source["Properties"]["ScalingConfig"] == limit == {"MaximumConcurrency": JOBS_MAX_CONCURRENCY}
    (mapping,) = [
        r
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and "BisectBatchOnFunctionError" not in r["Properties"]
    ]
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::Sub": "${JobTasks.Arn}"}
    assert mapping["Properties"]["ScalingConfig"] == limit
    for template in (sam, cfn):
        statements = packaged_policies(template)["jobs"]["Statement"]
        polled = {
            action
            for s in statements
            if [stack_queue(r) for r in s["Resource"]] == ["JobTasks"]
            for action in s["Action"]
        }
        assert polled >= set(SQS_TRIGGER_ACTIONS)
        elsewhere = {  # receives and deletes nothing else
            stack_queue(r)
            for s in statements
            if {"sqs:ReceiveMessage", "sqs:DeleteMessage"} & set(s["Action"])
            for r in s["Resource"]
        }
        assert elsewhere == {"JobTasks"}


def test_every_stage_s_jobs_trigger_carries_its_maximum_concurrency(
    artifacts: tuple[str, Path, dict[str, Any], dict[str, Any]],
) -> None:
    stage, _, sam, cfn = artifacts
    limit = stage_settings(stage_env(stage)).jobs_max_concurrency
    source = sam["Resources"]["Jobs"]["Properties"]["Events"]["JobsSqsEventSource"]["Properties"]
    assert source["ScalingConfig"] == {"MaximumConcurrency": limit}, stage
    mappings = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert {"MaximumConcurrency": limit} in [m["Properties"].get("ScalingConfig") for m in mappings], stage


def test_the_jobs_maximum_concurrency_is_the_stage_s_setting(tmp_path: Path) -> None:
    """TRICKLE_JOBS_MAX_CONCURRENCY reaches the packaged trigger (the decorator reads it)."""
    project = copy_project(tmp_path / "project")
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["prod"]["environment_variables"]["TRICKLE_JOBS_MAX_CONCURRENCY"] = "7"
    config_path.write_text(json.dumps(config, indent=2))
    sam = json.loads(merge.package("prod", tmp_path / "package", project_dir=project).read_text())
    source = sam["Resources"]["Jobs"]["Properties"]["Events"]["JobsSqsEventSource"]["Properties"]
    assert source["ScalingConfig"] == {"MaximumConcurrency": 7}


def alarms_of(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r["Properties"] for r in template["Resources"].values() if r.get("Type") == "AWS::CloudWatch::Alarm"
    ]


def test_alarms_and_dashboard_are_in_the_template(prod: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sam, _ = prod
    alarms = {a.get("MetricName", "metric math") for a in alarms_of(sam)}
    assert alarms == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "Errors",
        "CredentialsRefused",
        "CircuitOpenSeconds",
        "IteratorAge",
        "metric math",
    }
    dashboards = [p for p in sam["Resources"].values() if p.get("Type") == "AWS::CloudWatch::Dashboard"]
    assert len(dashboards) == 1


def test_each_destination_alarms_as_soon_as_its_credentials_are_refused(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Issue #24: a 400/401 from the token endpoint (or the API refusing fresh credentials) stops the
    destination's run and leaves its messages queued; the drain counts it as `CredentialsRefused`,
    and the first one alarms, to the same actions as the destination's other alarms."""
    sam, _ = prod
    resources = sam["Resources"]
    for destination in DESTINATIONS:
        alarm = resources[f"{naming.logical_id(destination)}CredentialsRefusedAlarm"]["Properties"]
        dead_letters = resources[f"{naming.logical_id(destination)}DeadLettersAlarm"]["Properties"]
        # the drain's metrics: RunMetrics({"destination": <name>}) in the namespace Trickle, service trickle
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]) == (
            "Trickle",
            "CredentialsRefused",
            [{"Name": "destination", "Value": destination}, {"Name": "service", "Value": "trickle"}],
        )
        assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 60, 1)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == dead_letters["AlarmActions"]


def test_each_destination_alarms_when_its_circuit_stays_open_too_long(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Issue #27: each unpaused drain run writes `CircuitOpenSeconds` (how long its runs have ended on
    the breaker); the alarm fires past the stack's `CircuitOpenAlarmSeconds`."""
    sam, _ = prod
    resources = sam["Resources"]
    assert sam["Parameters"]["CircuitOpenAlarmSeconds"] | {"Description": ""} == {
        "Type": "Number",
        "Default": 900,
        "MinValue": 60,
        "Description": "",
    }
    for destination in DESTINATIONS:
        alarm = resources[f"{naming.logical_id(destination)}CircuitOpenAlarm"]["Properties"]
        dead_letters = resources[f"{naming.logical_id(destination)}DeadLettersAlarm"]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]) == (
            "Trickle",
            "CircuitOpenSeconds",
            [{"Name": "destination", "Value": destination}, {"Name": "service", "Value": "trickle"}],
        )
        assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Maximum", 300, 1)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (
            "GreaterThanThreshold",
            {"Ref": "CircuitOpenAlarmSeconds"},
        )
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == dead_letters["AlarmActions"]


def test_an_alarm_watches_the_share_of_stream_records_no_route_takes(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Issue 22: unrouted records are counted (a silent drop no more); a jump in their share alarms."""
    sam, _ = prod
    (alarm,) = [a for a in alarms_of(sam) if "Metrics" in a]
    sums = {
        m["Id"]: (m["MetricStat"]["Metric"], m["MetricStat"]["Stat"], m["MetricStat"]["Period"])
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }
    table = {"Fn::Select": [1, {"Fn::Split": ["/", sam["Outputs"]["SourceStreamArn"]["Value"]]}]}
    # ingest's metrics: RunMetrics({"table": <source table>}) in the namespace Trickle, service trickle
    dimensions = [{"Name": "table", "Value": table}, {"Name": "service", "Value": "trickle"}]
    assert sums == {
        "unrouted": (
            {"Namespace": "Trickle", "MetricName": "IngestUnrouted", "Dimensions": dimensions},
            "Sum",
            300,
        ),
        "records": (
            {"Namespace": "Trickle", "MetricName": "IngestRecords", "Dimensions": dimensions},
            "Sum",
            300,
        ),
    }
    (share,) = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    assert share["Expression"] == "100 * FILL(unrouted, 0) / records"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "GreaterThanThreshold",
        {"Ref": "UnroutedShareAlarmPercent"},
    )
    parameter = sam["Parameters"]["UnroutedShareAlarmPercent"]
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (50, 0, 100)


def test_the_archive_expires_what_it_keeps_and_encrypts_it(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Issue #26: what the drains delivered (`delivered/`) after the stage's TRICKLE_ARCHIVE_DAYS,
    beside the responses' rule; SSE-S3 by default."""
    sam, _ = prod
    bucket = sam["Resources"]["ResponseArchive"]["Properties"]
    days = stage_settings(load_config()["stages"]["prod"]["environment_variables"]).archive_days
    rules = {
        r["Prefix"]: (r["Id"], r["Status"], r["ExpirationInDays"])
        for r in bucket["LifecycleConfiguration"]["Rules"]
    }
    assert rules == {
        "responses/": ("expire-responses", "Enabled", 30),
        "delivered/": ("expire-delivered", "Enabled", days),
    }
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption == {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    assert all(bucket["PublicAccessBlockConfiguration"].values())


def test_kms_decrypt_is_limited_to_the_key_and_the_parameter(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    sam, _ = prod
    settings = stage_settings(load_config()["stages"]["prod"]["environment_variables"])
    for destination in DESTINATIONS:
        drain = f"Drain{naming.logical_id(destination)}"
        policy = sam["Resources"][f"{drain}DecryptApiKey"]["Properties"]
        assert policy["Roles"] == [{"Ref": f"{drain}Role"}]
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Action"] == "kms:Decrypt"
        assert statement["Resource"] == {"Fn::GetAtt": ["ApiKeyEncryptionKey", "Arn"]}
        parameters = [p.name for p in needed(settings.destination(destination))]  # billing's: 2
        condition = statement["Condition"]["StringEquals"]
        assert condition["kms:EncryptionContext:PARAMETER_ARN"] == [
            {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter" + parameter}
            for parameter in parameters
        ]
        assert condition["kms:ViaService"] == {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}


def test_roles_name_their_resources_never_star(
    artifacts: tuple[str, Path, dict[str, Any], dict[str, Any]],
) -> None:
    _, _, sam, _ = artifacts
    for function, policy in packaged_policies(sam).items():
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            if any(a.split(":")[0] in ("sqs", "ssm", "dynamodb", "kms") for a in actions):
                assert all(json.dumps(r) != '"*"' and ":*:" not in json.dumps(r) for r in resources), (
                    function,
                    statement,
                )
                assert all(not a.endswith("*") for a in actions), (function, statement)


def test_token_auth_exists_only_in_stages_with_token_auth(
    artifacts: tuple[str, Path, dict[str, Any], dict[str, Any]],
) -> None:
    stage, _, sam, _ = artifacts
    token = load_config()["stages"][stage]["environment_variables"].get("TRICKLE_AUTH") == "token"
    assert ("TokenAuth" in sam["Resources"]) is token
    assert ("TokenAuthRole" in sam["Resources"]) is token


def test_reserved_concurrency_is_an_option_not_a_requirement(
    artifacts: tuple[str, Path, dict[str, Any], dict[str, Any]],
) -> None:
    """New accounts may have a concurrency quota of 10, all of it unreserved: a stage that reserves
    any fails there. The run lease keeps drains from overlapping without it (test_run_lease.py)."""
    stage, _, sam, _ = artifacts
    for destination in DESTINATIONS:
        drain = sam["Resources"][f"Drain{naming.logical_id(destination)}"]["Properties"]
        functions = load_config()["stages"][stage]["lambda_functions"]
        assert "reserved_concurrency" not in functions[f"drain_{destination}"]
        assert "ReservedConcurrentExecutions" not in drain
        assert [e["Type"] for e in drain["Events"].values()] == ["Schedule"]


def test_the_example_state_machine_is_off_unless_a_destination_is_named(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    sam, cfn = prod
    parameter = sam["Parameters"]["ExampleDestination"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("none", ["none", *DESTINATIONS])
    examples = {n: r for n, r in cfn["Resources"].items() if "Example" in n}
    assert set(examples) == {
        "ExampleStateMachine",
        "ExampleStateMachineRole",
        *(f"Drain{naming.logical_id(d)}AnswerExample" for d in DESTINATIONS),
    }
    conditions = sam["Conditions"]
    assert conditions["HasExampleStateMachine"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ExampleDestination"}, "none"]}]
    }
    for d in DESTINATIONS:  # each drain may answer the example only when it goes through its queue
        answer = examples[f"Drain{naming.logical_id(d)}AnswerExample"]
        assert answer["Condition"] == f"ExampleThrough{naming.logical_id(d)}"
        assert conditions[answer["Condition"]] == {"Fn::Equals": [{"Ref": "ExampleDestination"}, d]}
        assert answer["Properties"]["Roles"] == [{"Ref": f"Drain{naming.logical_id(d)}Role"}]
    for name in ("ExampleStateMachine", "ExampleStateMachineRole"):
        assert examples[name]["Condition"] == "HasExampleStateMachine"
    for name, function in sam["Resources"].items():
        if function["Type"] == "AWS::Serverless::Function":  # the example's name, only with the example
            variable = function["Properties"]["Environment"]["Variables"]["TRICKLE_CALLBACK_STATE_MACHINES"]
            assert variable == {
                "Fn::If": ["HasExampleStateMachine", {"Fn::Sub": "${AWS::StackName}-example-wait"}, ""]
            }, name


def test_the_example_runs_the_task_the_readme_documents(prod: tuple[dict[str, Any], dict[str, Any]]) -> None:
    sam, _ = prod
    joined = sam["Resources"]["ExampleStateMachine"]["Properties"]["DefinitionString"]["Fn::Join"]
    parts = [
        "aws-cn" if part == {"Ref": "AWS::Partition"} else "<queue>" if isinstance(part, dict) else part
        for part in joined[1]
    ]
    queue = joined[1][3]
    definition = json.loads("".join(parts))
    expected = json.loads(json.dumps(wait_definition("<queue>")).replace("arn:aws:", "arn:aws-cn:"))
    assert definition == expected
    assert queue == {
        "Fn::If": [
            "ExampleThroughOrders",
            {"Ref": "OrdersQueue"},
            {
                "Fn::If": [
                    "ExampleThroughCrm",
                    {"Ref": "CrmQueue"},
                    {
                        "Fn::If": [
                            "ExampleThroughBilling",
                            {"Ref": "BillingQueue"},
                            {"Ref": "OrdersBulkQueue"},
                        ]
                    },
                ]
            },
        ]
    }  # the chosen destination's queue


def test_what_the_emulator_cannot_create_is_right_in_the_transformed_template(
    prod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """moto's CloudFormation skips alarms and API stages and cannot deploy a REST API body
    (test_cloudformation.py); here they are checked as CloudFormation would get them."""
    _, cfn = prod
    resources = cfn["Resources"]
    (api,) = [n for n, r in resources.items() if r["Type"] == "AWS::ApiGateway::RestApi"]
    (deployment,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Deployment"]
    (stage,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert deployment["Properties"]["RestApiId"] == {"Ref": api}
    assert stage["Properties"]["RestApiId"] == {"Ref": api} and stage["Properties"]["StageName"] == "api"
    paths = resources[api]["Properties"]["Body"]["paths"]
    assert {"/health", "/status", "/messages", "/dead-letters/redrive"} <= set(paths)
    for path in paths.values():
        for method in path.values():
            uri = method["x-amazon-apigateway-integration"]["uri"]
            assert "${AWS::Region}" in uri["Fn::Sub"] and "${AWS::Partition}" in uri["Fn::Sub"]
    alarms = alarms_of(cfn)
    dimensions = [d["Value"] for a in alarms for d in a.get("Dimensions", [])] + [
        d["Value"]
        for a in alarms
        for m in a.get("Metrics", [])
        if "MetricStat" in m
        for d in m["MetricStat"]["Metric"]["Dimensions"]
    ]
    source_table = {"Fn::Select": [1, {"Fn::Split": ["/", cfn["Outputs"]["SourceStreamArn"]["Value"]]}]}
    assert sorted(json.dumps(d, sort_keys=True) for d in dimensions) == sorted(
        json.dumps(d, sort_keys=True)
        for d in [
            *(
                dimension
                for name in DESTINATIONS
                for dimension in (
                    {"Fn::GetAtt": [f"{naming.logical_id(name)}DeadLetterQueue", "QueueName"]},
                    {"Fn::GetAtt": [f"{naming.logical_id(name)}Queue", "QueueName"]},
                    {"Ref": f"Drain{naming.logical_id(name)}"},
                    # CredentialsRefused and CircuitOpenSeconds: the drain's own metrics, by
                    # destination and service
                    *[name, "trickle"] * 2,
                )
            ),
            {"Ref": "Ingest"},
            *[source_table, "trickle"] * 2,  # the unrouted share: ingest's two metrics
            {"Fn::GetAtt": ["JobTasksDeadLetters", "QueueName"]},  # tasks that kept failing
        ]
    )


# Issue #24: orders takes OAuth2 client credentials, signs its requests and has a secret header;
# crm needs nothing secret at all (auth = none, unsigned).
SECRET_KINDS_ROUTES = """
[destinations.orders]
url = "https://orders.example.com/v1"
auth = "oauth2_client_credentials"
token_url = "https://orders.example.com/oauth/token"
signing = "standard_webhooks"
secret_headers = ["X-Tenant-Key"]

[destinations.crm]
url = "https://crm.example.com/v1"
auth = "none"

[destinations.billing]  # app.py drains it: a routes file of this project names it
url = "https://billing.example.com/v1"

[destinations.orders_bulk]  # and this one
url = "https://warehouse.example.com/v1/orders/bulk"

[[routes]]
name = "everything"
events = ["INSERT"]
destinations = ["orders", "crm", "billing", "orders_bulk"]
"""


@pytest.fixture(scope="module")
def secret_kinds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A copy of the project whose prod stage has SECRET_KINDS_ROUTES as its routes file, its policies
    regenerated, packaged as `python -m trickle_deploy.template --package` packages it, and transformed."""
    out = tmp_path_factory.mktemp("secret-kinds")
    project = copy_project(out / "project")
    routes = out / "routes.toml"
    routes.write_text(SECRET_KINDS_ROUTES)
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["prod"]["environment_variables"]["TRICKLE_ROUTES_FILE"] = str(routes)
    config_path.write_text(json.dumps(config, indent=2))
    refresh(project / ".chalice")  # as after any routes change: python -m trickle_deploy.policies
    sam = json.loads(merge.package("prod", out / "package", project_dir=project).read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", TRANSFORM_REGION)
        cfn = sam_transform(sam)
    return write(cfn, out / "cfn.json").parent, sam, cfn


def ssm_arn(parameter: str) -> dict[str, str]:
    return {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter" + parameter}


def test_a_destination_s_secrets_each_get_their_outputs_reads_and_decrypt_and_none_without_any(
    secret_kinds: tuple[Path, dict[str, Any], dict[str, Any]],
) -> None:
    out, sam, _ = secret_kinds
    for path in (out / "package" / "pkg" / "sam.json", out / "cfn.json"):
        done = subprocess.run(
            [str(BIN / "cfn-lint"), "--include-checks", "I", "--", str(path)], capture_output=True, text=True
        )
        assert done.returncode == 0, (path.name, done.stdout + done.stderr)
    parameters = {
        "ApiKey": ("/trickle/prod/orders-api-key", "ORDERS_API_KEY"),
        "SigningSecret": ("/trickle/prod/orders-signing-secret", "ORDERS_SIGNING_SECRET"),
        "SecretHeaders": ("/trickle/prod/orders-headers", "ORDERS_HEADERS"),
    }
    outputs = sam["Outputs"]
    for kind, (parameter, variable) in parameters.items():
        assert outputs[f"Orders{kind}ParameterArn"]["Value"] == ssm_arn(parameter)
        assert outputs[f"OrdersPut{kind}Command"]["Value"] == {
            "Fn::Sub": f"aws ssm put-parameter --name {parameter} --type SecureString"
            f' --key-id alias/${{AWS::StackName}}-api-key --value "${variable}" --overwrite'
            " --region ${AWS::Region}"
        }
    assert [name for name in outputs if name.startswith("Crm")] == ["CrmQueueUrl", "CrmDeadLetterQueueUrl"]

    arns = [ssm_arn(parameter) for parameter, _ in parameters.values()]
    decrypt = sam["Resources"]["DrainOrdersDecryptApiKey"]["Properties"]["PolicyDocument"]["Statement"]
    assert decrypt[0]["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"] == arns
    assert "DrainCrmDecryptApiKey" not in sam["Resources"]
    policies = packaged_policies(sam)
    reads = {
        function: [
            (s["Sid"], s["Resource"]) for s in policies[function]["Statement"] if s["Sid"].startswith("Read")
        ]
        for function in ("drain_orders", "drain_crm")
    }
    assert reads == {
        "drain_orders": [
            ("ReadCredentials", [arns[0]]),
            ("ReadSigningSecret", [arns[1]]),
            ("ReadSecretHeaders", [arns[2]]),
        ],
        "drain_crm": [],
    }
    for destination in ("Orders", "Crm"):  # a refusal alarms whatever the auth kind
        assert f"{destination}CredentialsRefusedAlarm" in sam["Resources"]
