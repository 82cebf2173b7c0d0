"""The packaged roles allow every AWS call the handlers make (Chalice's generator cannot see them).

Every integration test already fails on a denied call (see `Stack.invoke`); these tests make the
coverage explicit and prove the check itself can fail."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

from chalicelib import wiring
from chalicelib.credentials import RequestCredentials
from chalicelib.model import Authorization, Settlement, Status, iso_utc
from chalicelib.secrets import SecretCache
from chalicelib.settings import ROUTES_FILE, load_settings
from chalicelib.submissions import parse_submission
from tests.fakes import until
from tests.integration.conftest import API_KEY, Stack
from trickle_deploy.iam_check import AwsCall, CallRecorder, allows, denied, trigger_calls
from trickle_deploy.policies import function_policies, queue_arn
from trickle_local.emulators import Emulator
from trickle_local.standin_api import Faults, Reply, StandInApi
from trickle_local.standin_bulk import Bulk
from trickle_local.token_endpoint import TokenEndpoint
from trickle_project import stage
from trickle_project.aws import clients
from trickle_project.resources import provision


@pytest.mark.smoke
def test_every_call_of_a_full_cycle_is_allowed_by_the_function_that_made_it(stack_factory: Any) -> None:
    stack: Stack = stack_factory(TRICKLE_MAX_MESSAGE_BYTES="4096")
    stack.put_items(
        [stack.item("a", str(i)) for i in range(12)] + [stack.item("b", "1", big={"S": "x" * 5000})]
    )
    start = len(stack.recorder.calls)
    stack.ingest_new()
    stack.api.responder = lambda body, headers: Reply(503, "{}") if '"sk":"3"' in body else None
    stack.drain()
    stack.api.responder = None
    stack.drain_until(lambda _: stack.queue_depth() == 0)

    calls = stack.recorder.calls[start:]
    made = {(c.function, c.operation) for c in calls}
    assert {
        ("ingest", "SendMessageBatch"),
        ("drain_orders", "GetParameter"),
        ("drain_orders", "ReceiveMessage"),
        ("drain_orders", "DeleteMessageBatch"),
        ("drain_orders", "ChangeMessageVisibilityBatch"),
    } <= made
    assert denied(calls, stack.policies) == []


def test_a_call_outside_the_packaged_policy_is_reported(stack: Stack) -> None:
    queue = "arn:aws:sqs:us-east-1:123456789012:trickle-local-orders.fifo"
    other = "arn:aws:sqs:us-east-1:123456789012:someone-elses-queue.fifo"
    calls = [
        AwsCall("ingest", "sqs", "SendMessageBatch", "sqs:SendMessage", queue),
        AwsCall("ingest", "sqs", "ReceiveMessage", "sqs:ReceiveMessage", queue),
        AwsCall("drain_orders", "sqs", "ReceiveMessage", "sqs:ReceiveMessage", other),
        AwsCall(
            "drain_orders",
            "ssm",
            "GetParameter",
            "ssm:GetParameter",
            "arn:aws:ssm:us-east-1:123456789012:parameter/x",
        ),
    ]
    assert denied(calls, stack.policies) == calls[1:]


def test_the_jobs_role_lets_its_trigger_poll_the_tasks_queue_and_no_other_queue(stack: Stack) -> None:
    """Issue #26: Lambda's SQS event source mapping receives, deletes and reads the attributes of
    the `jobs` function's tasks with that function's role (AWS refuses to create the mapping
    otherwise); the role takes or deletes messages of the tasks queue only (it reads the
    destinations' depths to pace itself)."""
    settings = load_settings(stack.env)
    orders = settings.destination("orders")
    tasks, queue, dead = (
        queue_arn(url, "aws", "us-east-1")
        for url in (settings.jobs_queue_url, orders.queue_url, orders.dlq_url)
    )
    assert denied(trigger_calls("jobs", tasks), stack.policies) == []
    for other in (queue, dead):
        refused = {c.operation for c in denied(trigger_calls("jobs", other), stack.policies)}
        assert refused >= {"ReceiveMessage", "DeleteMessage"}, other
    assert len(denied(trigger_calls("ingest", tasks), stack.policies)) == 3  # nor any other function's


WAITING_STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:trickle-local-wait"


def test_drains_answer_only_the_tasks_of_the_state_machines_the_stage_names(stack: Stack) -> None:
    other = "arn:aws:states:us-east-1:123456789012:stateMachine:someone-elses"
    calls = [
        AwsCall(f"drain_{d}", "stepfunctions", op, f"states:{op}", arn)
        for d in ("orders", "crm")
        for arn in (WAITING_STATE_MACHINE, other)
        for op in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat")
    ] + [
        AwsCall("ingest", "stepfunctions", "SendTaskSuccess", "states:SendTaskSuccess", WAITING_STATE_MACHINE)
    ]
    refused = denied(calls, stack.policies)
    assert refused == [c for c in calls if c.resource == other or c.function == "ingest"]


def test_policy_matching_follows_iam_wildcards_and_case() -> None:
    policy = {
        "Statement": [{"Effect": "Allow", "Action": ["SQS:Send*"], "Resource": "arn:aws:sqs:*:1:q.fifo"}]
    }
    assert allows(policy, "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q.fifo")
    assert not allows(policy, "sqs:ReceiveMessage", "arn:aws:sqs:us-east-1:1:q.fifo")
    assert not allows(policy, "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:other.fifo")
    assert not allows(
        json.loads(json.dumps(policy).replace("Allow", "Deny")),
        "sqs:SendMessage",
        "arn:aws:sqs:us-east-1:1:q.fifo",
    )


def test_policy_files_match_the_stage_configuration() -> None:
    from trickle_deploy.policies import main

    assert main(["--check"]) == 0


# Statements the Lambda service uses on the function's behalf, not the code: CloudWatch Logs, the
# stream reads of the event source mapping, and its on-failure destination; the jobs' trigger's reads
# of their tasks queue.
# PresignResponses: the API function signs S3 URLs with its credentials and never calls S3 itself.
SERVICE_USED = {"Logs", "ReadStream", "ReadTasks", "OnFailureDestination", "PresignResponses"}


SIGNING = "whsec_" + base64.b64encode(b"billing-signing-secret-32-bytes!").decode()
BILLING_CLIENT = '{"client_id": "billing-client", "client_secret": "billing-secret"}'


@pytest.fixture
def bulk_api() -> Iterator[StandInApi]:
    """The shipped orders_bulk destination's stand-in: `{"records": [...]}` at its bulk path."""
    api = StandInApi(
        Faults(api_key=API_KEY),
        base_path="/v1/orders/bulk",
        bulk=Bulk("/v1/orders/bulk", ("records",)),
    ).start()
    yield api
    api.stop()


def per_record(reply: Callable[[str], Reply | None]) -> Callable[[str, dict[str, str]], Reply]:
    """A bulk endpoint's answer to `{"records": [...]}`: each record's status as `reply` answers its
    JSON alone (200 for None), and the largest of those bodies added (so a task's answer is as big)."""

    def answer(body: str, headers: dict[str, str]) -> Reply:
        replies = [reply(json.dumps(r, separators=(",", ":"))) for r in json.loads(body)["records"]]
        results = [{"status": 200 if r is None else r.status} for r in replies]
        padding = max((r.body for r in replies if r is not None), key=len, default="")
        return Reply(200, json.dumps({"results": results, "padding": padding}))

    return answer


@pytest.fixture
def billing_api() -> Iterator[StandInApi]:
    """The shipped billing destination's stand-in: its own OAuth2 token endpoint (the client in
    BILLING_CLIENT), whose tokens it requires, and requests signed with SIGNING."""
    api = StandInApi(
        Faults(signing_secret=SIGNING),
        base_path="/v1",
        tokens=TokenEndpoint("billing-client", "billing-secret"),
    ).start()
    yield api
    api.stop()


def test_no_statement_grants_an_action_the_code_never_uses(
    stack_factory: Any, billing_api: StandInApi, bulk_api: StandInApi
) -> None:
    """With the shipped routes: invoices go to orders, crm and billing (billing refuses those without
    an invoice id: dead letters), one order is enriched (GetItem) and also sent to orders_bulk in a
    batch, a note no route takes is counted; billing reads its OAuth2 client and its signing secret;
    a backfill of every destination is checked against the table; a replay (a dry run) reads orders'
    delivered archive."""
    stack: Stack = stack_factory(
        TRICKLE_MAX_MESSAGE_BYTES="4096",
        TRICKLE_ROUTES_FILE=str(ROUTES_FILE),
        TRICKLE_DEST_CRM_ORDERING="skip",  # so its poison is dead-lettered too (strict would halt it)
        TRICKLE_DEST_BILLING_URL=f"{billing_api.url}/v1",
        TRICKLE_DEST_BILLING_TOKEN_URL=f"{billing_api.url}/oauth/token",
        TRICKLE_DEST_BILLING_BACKOFF_BASE_S="1",
        TRICKLE_DEST_BILLING_BACKOFF_CAP_S="2",
        TRICKLE_DEST_ORDERS_BULK_URL=f"{bulk_api.url}/v1/orders/bulk",
        TRICKLE_DEST_ORDERS_BULK_BACKOFF_BASE_S="1",
        TRICKLE_DEST_ORDERS_BULK_BACKOFF_CAP_S="2",
        TRICKLE_DEST_ORDERS_BACKFILL_MAX_QUEUED="10",  # a backfill waits while orders holds 10
    )
    billing = load_settings(stack.env).destination("billing")
    for name, value in ((billing.api_key_parameter, BILLING_CLIENT), (billing.signing_parameter, SIGNING)):
        stack.aws["ssm"].put_parameter(  # as the bootstrap stores them
            Name=name,
            Value=value,
            Type="SecureString",
            Overwrite=True,
            KeyId=stack.env["TRICKLE_API_KEY_KMS_KEY_ARN"],
        )
    invoice = {"type": {"S": "invoice"}}
    stack.put_items(
        [stack.item("a", "0", **invoice)]  # no invoice_id: billing refuses it, unsent
        + [stack.item("a", str(i), invoice_id={"S": f"INV/{i}"}, **invoice) for i in range(1, 6)]
        + [stack.item("a", "9", type={"S": "order"}), stack.item("b", "1", big={"S": "x" * 5000}, **invoice)]
        + [stack.item("b", "2", big={"S": "x" * 5000}, type={"S": "order"})]  # rejected for orders_bulk too
        + [stack.item("a", "10", type={"S": "note"})]
    )
    start = len(stack.recorder.calls)
    began = datetime.now(UTC)
    stack.ingest_new()
    destinations = ("orders", "crm", "billing", "orders_bulk")
    for destination in destinations:  # tasks waiting: answered (success, failure, a URL), kept alive
        for n, item in enumerate(({"sk": "3"}, {"sk": "5"}, {"n": 2})):
            token = f"token-{destination}-{n}"
            stack.recorder.task_tokens[token] = WAITING_STATE_MACHINE
            body = {
                "item": item | {"invoice_id": f"i-{n}"},  # billing's path needs it
                "destination": destination,
                "group": f"t{n}",
                "task_token": token,
            }
            if destination in ("billing", "orders_bulk"):  # the session's routes know orders and crm
                wiring.operations().submit(parse_submission(json.dumps(body), wiring.settings()))
            else:
                stack.http("POST", "/messages", body)
    backfill = json.loads(stack.http("POST", "/backfills", {"segments": 2}).body)  # every destination
    stack.work_jobs()  # orders holds 10 or more: each part waits, its task sent again delayed
    big = Reply(200, json.dumps({"rows": ["x" * 1000] * 300}))  # over 256 KB: its task gets a URL

    def reply(body: str, headers: dict[str, str] | None = None) -> Reply | None:
        return (
            Reply(400, "{}")
            if '"sk":"3"' in body
            else Reply(503, "{}")
            if '"sk":"5"' in body
            else big
            if '"n":2' in body
            else None
        )

    for api in (stack.api, stack.crm_api, billing_api):
        api.responder = reply
    bulk_api.responder = per_record(reply)
    for destination in destinations:  # deliveries, a dead letter, a release, an enrichment
        stack.drain(destination)
    stack.api.responder = stack.crm_api.responder = billing_api.responder = bulk_api.responder = None
    stack.ingest(stack.stream_event())  # a replay: the ledger answers "already delivered"

    def backfilled() -> bool:  # once its delay is over, it goes on: queued, rejected items dead-lettered
        stack.work_jobs()
        stack.drain("orders")  # what one part queued for orders makes the other wait again
        return bool(json.loads(stack.http("GET", backfill["progress_url"]).body)["state"] == "done")

    until(backfilled, 30)
    for destination in destinations:  # a backfill's: each drain reads their items back (BatchGetItem)
        stack.queue_backfill(destination)
    # drain until the released message's backoff (2 s at most in tests) has passed and it is delivered
    queues = [f"TRICKLE_DEST_{d.upper()}_QUEUE_URL" for d in destinations]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(stack.queue_depth(queue) for queue in queues):
        for destination in destinations:
            stack.drain(destination)
    window = {"since": iso_utc(began), "until": iso_utc(datetime.now(UTC))}
    replay = json.loads(
        stack.http("POST", "/replays", {"destination": "orders", "dry_run": True} | window).body
    )
    stack.work_jobs()  # the jobs function lists and reads orders' archive
    assert json.loads(stack.http("GET", replay["progress_url"]).body)["counts"]["selected"] > 0
    submitted = json.loads(stack.http("POST", "/messages", {"item": {"n": 1}, "destination": "orders"}).body)
    stack.http("GET", "/status")
    stack.http("GET", submitted["status_url"])
    stack.http("GET", "/dead-letters?destination=orders")
    # a halted head (orders skips poison here: its record is set halted), listed and skipped
    halted = str(uuid.uuid4())
    wiring.ledgers()["orders"].settle(Settlement(halted, "g", Status.HALTED, None, "poison", counted=False))
    assert json.loads(stack.http("GET", "/halted?destination=orders").body)["halted"]
    assert stack.http("POST", f"/halted/{halted}/skip?destination=orders", {}).status_code == 200
    # message search: by item key (every destination's), by status in a window
    assert json.loads(stack.http("GET", "/messages?key=a&sort_key=1").body)["messages"]
    assert json.loads(stack.http("GET", "/messages?destination=orders&status=delivered").body)["messages"]
    for destination in destinations:  # each drain carries its redrive on (its ingest rejections stay)
        redrive = json.loads(stack.http("POST", f"/dead-letters/redrive?destination={destination}", {}).body)
        stack.http("GET", redrive["progress_url"])
        stack.drain(destination)
    # a task waiting on a paused destination: its execution is read for the token (no receive)
    waiting = stack.aws["stepfunctions"].create_state_machine(
        name=WAITING_STATE_MACHINE.rsplit(":", 1)[1],
        definition=json.dumps(
            {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/trickle-local-wait",
    )["stateMachineArn"]
    stack.aws["stepfunctions"].start_execution(stateMachineArn=waiting, input="{}")
    gone = Reply(410, "{}")
    for api in (stack.api, stack.crm_api, billing_api, bulk_api):
        api.responder = lambda body, headers: gone
    for destination in destinations:  # a 410 pauses its destination; an operator resumes and pauses it
        body = {"item": {"n": 9, "invoice_id": "i-9"}, "destination": destination, "group": "gone"}
        wiring.operations().submit(parse_submission(json.dumps(body), wiring.settings()))
        assert stack.drain(destination)["stopped_by"] == "gone"
        stack.http("POST", f"/destinations/{destination}/resume")
        stack.http("POST", f"/destinations/{destination}/pause", {"reason": "maintenance"})
        assert stack.drain(destination)["stopped_by"] == "paused"
    stack.http("GET", "/status")
    assert billing_api.applied() and billing_api.auth_failures == 0  # the checks of billing's stand-in held
    assert max(r.item_count for r in bulk_api.applied()) > 1  # orders_bulk's items went in batches

    calls = stack.recorder.calls[start:]
    unused = [
        (function, statement["Sid"], action)
        for function, policy in stack.policies.items()
        for statement in policy["Statement"]
        if statement.get("Sid") not in SERVICE_USED
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        # some call of that function needs this statement's action on this statement's resources
        if not any(
            c.function == function
            and c.action == action
            and allows({"Statement": [statement]}, c.action, c.resource, c.leading_keys, c.prefix)
            for c in calls
        )
    ]
    assert unused == []


NOTES = "arn:aws:dynamodb:us-east-1:123456789012:table/trickle-local-notes"


def note_call(function: str, operation: str, key: str) -> AwsCall:
    return AwsCall(function, "dynamodb", operation, f"dynamodb:{operation}", NOTES, (key,))


def test_each_drain_reaches_only_its_own_lease_run_note_and_redrive_jobs(stack: Stack) -> None:
    cases = [
        (note_call(f"drain_{drain}", operation, key), drain == whose)
        for drain in ("orders", "crm")
        for whose in ("orders", "crm")
        for operation, key in (
            ("PutItem", f"lease#{whose}"),
            ("DeleteItem", f"lease#{whose}"),
            ("PutItem", f"run#{whose}"),
            ("DeleteItem", f"run#{whose}"),
            ("GetItem", f"run#{whose}"),  # what the last run left in the queue
            ("GetItem", f"redrive#{whose}"),  # its open redrive jobs
            ("UpdateItem", f"redrive#{whose}"),
            ("GetItem", f"redrive#{whose}#6f1c"),
            ("PutItem", f"redrive#{whose}#6f1c"),
        )
    ]
    calls = [call for call, _ in cases]
    assert denied(calls, stack.policies) == [call for call, own in cases if not own]
    for refused in (
        note_call("drain_orders", "GetItem", "lease#orders"),
        note_call("drain_orders", "PutItem", "redrive#orders"),
        note_call("drain_orders", "DeleteItem", "redrive#orders#6f1c"),
        note_call("drain_orders", "PutItem", "redrive#1"),
        note_call("drain_orders", "GetItem", "ingest#unrouted"),
    ):
        assert denied([refused], stack.policies) == [refused]
    unknown = AwsCall("drain_orders", "dynamodb", "PutItem", "dynamodb:PutItem", NOTES, None)
    assert denied([unknown], stack.policies) == [unknown]  # keys not known: not taken as allowed


def test_each_drain_archives_what_it_delivered_under_its_own_prefix_only(stack: Stack) -> None:
    """`delivered/orders/` is not a prefix of `delivered/orders_bulk/`: the prefix ends with its slash."""
    bucket = stack.env["TRICKLE_ARCHIVE_BUCKET"]

    def put(function: str, key: str) -> AwsCall:
        return AwsCall(function, "s3", "PutObject", "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", None)

    own = [
        put("drain_orders", "delivered/orders/2026/01/01/10/20260101T100000.000Z-r-000001.jsonl.gz"),
        put("drain_orders_bulk", "delivered/orders_bulk/2026/01/01/10/x.jsonl.gz"),
    ]
    refused = [
        put("drain_orders", "delivered/orders_bulk/2026/01/01/10/x.jsonl.gz"),
        put("drain_orders", "delivered/crm/2026/01/01/10/x.jsonl.gz"),
        put("drain_orders", "delivered/x.jsonl.gz"),
        put("drain_crm", "delivered/orders/2026/01/01/10/x.jsonl.gz"),
        put("api_handler", "delivered/orders/2026/01/01/10/x.jsonl.gz"),
        put("ingest", "delivered/orders/2026/01/01/10/x.jsonl.gz"),
    ]
    assert denied(own + refused, stack.policies) == refused


def test_the_routes_read_run_notes_and_open_redrive_jobs_only(stack: Stack) -> None:
    status_notes = (
        "ingest#unrouted",
        "jobs#active",
        "run#orders",
        "totals#orders",
        "pause#orders",
        "run#crm",
    )
    allowed = [
        # `/status`: every note it shows in one BatchGetItem, which one statement must allow whole
        AwsCall("api_handler", "dynamodb", "BatchGetItem", "dynamodb:BatchGetItem", NOTES, status_notes),
        note_call("api_handler", "GetItem", "redrive#orders#6f1c"),
        note_call("api_handler", "PutItem", "redrive#crm#6f1c"),
        note_call("api_handler", "GetItem", "redrive#orders"),
        note_call("api_handler", "UpdateItem", "redrive#crm"),
    ]
    refused = [
        AwsCall(
            "api_handler",
            "dynamodb",
            "BatchGetItem",
            "dynamodb:BatchGetItem",
            NOTES,
            (*status_notes, "lease#orders"),
        ),
        note_call("api_handler", "GetItem", "run#orders"),
        note_call("api_handler", "PutItem", "run#orders"),
        note_call("api_handler", "PutItem", "lease#orders"),
        note_call("api_handler", "DeleteItem", "lease#orders"),
        note_call("api_handler", "GetItem", "lease#orders"),
        note_call("api_handler", "PutItem", "redrive#orders"),
        note_call("api_handler", "UpdateItem", "redrive#orders#6f1c"),
        note_call("api_handler", "PutItem", "redrive#elsewhere#6f1c"),
        note_call("ingest", "GetItem", "run#orders"),
    ]
    assert denied(allowed + refused, stack.policies) == refused


def test_the_routes_may_read_queue_depths_and_submit_but_never_take_or_move_a_message(stack: Stack) -> None:
    """Issue #27: no route receives, deletes, hides or moves a message (the drains carry redrives on)."""
    queue = "arn:aws:sqs:us-east-1:123456789012:trickle-local-orders.fifo"
    dlq = "arn:aws:sqs:us-east-1:123456789012:trickle-local-orders-dead-letters.fifo"
    allowed = [
        AwsCall("api_handler", "sqs", "GetQueueAttributes", "sqs:GetQueueAttributes", queue),
        AwsCall("api_handler", "sqs", "GetQueueAttributes", "sqs:GetQueueAttributes", dlq),
        AwsCall("api_handler", "sqs", "SendMessageBatch", "sqs:SendMessage", queue),
        AwsCall("drain_orders", "sqs", "ReceiveMessage", "sqs:ReceiveMessage", dlq),
        AwsCall("drain_orders", "sqs", "SendMessageBatch", "sqs:SendMessage", queue),
    ]
    refused = [
        AwsCall("api_handler", "sqs", op, f"sqs:{op.removesuffix('Batch')}", arn)
        for op in ("ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch")
        for arn in (queue, dlq)
    ] + [
        AwsCall("api_handler", "sqs", "StartMessageMoveTask", "sqs:StartMessageMoveTask", dlq),
        AwsCall("api_handler", "sqs", "SendMessageBatch", "sqs:SendMessage", dlq),
    ]
    assert denied(allowed + refused, stack.policies) == refused


def test_ingest_adds_only_to_its_unrouted_count_which_the_routes_only_read(stack: Stack) -> None:
    allowed = [
        note_call("ingest", "UpdateItem", "ingest#unrouted"),
        note_call("api_handler", "BatchGetItem", "ingest#unrouted"),
    ]
    refused = [
        note_call("ingest", "UpdateItem", "run#orders"),
        note_call("ingest", "PutItem", "ingest#unrouted"),
        note_call("ingest", "GetItem", "ingest#unrouted"),
        note_call("api_handler", "UpdateItem", "ingest#unrouted"),
        note_call("drain_orders", "UpdateItem", "ingest#unrouted"),
    ]
    assert denied(allowed + refused, stack.policies) == refused


# Issue #24: orders signs its requests and has a secret header; crm has only its key.
SIGNING_ROUTES = """
[destinations.orders]
signing = "standard_webhooks"
secret_headers = ["X-Tenant-Key"]

[destinations.crm]
key_header = "Authorization"
key_scheme = "Bearer"

[[routes]]
name = "everything"
events = ["INSERT"]
destinations = ["orders", "crm"]
"""


def test_a_drain_whose_destination_signs_may_read_its_signing_secret_and_nothing_of_another_s(
    endpoint: Emulator, recorder: CallRecorder, tmp_path: Path
) -> None:
    """The calls the drain's credentials (chalicelib.credentials, as the drain builds them from the
    routes file) really make, recorded and checked against the drain's generated policy: its key,
    its signing secret and its secret headers are read, all allowed; the same check refuses them
    with the signing statement taken out (so it can fail), and another drain may read none."""
    endpoint.reset()
    routes = tmp_path / "routes.toml"
    routes.write_text(SIGNING_ROUTES)
    env = stage.rebase(stage.stage_env("local", routes_file=routes), endpoint.url, None)
    orders = load_settings(env).destination("orders")
    signing_secret = "whsec_" + base64.b64encode(b"s" * 24).decode()
    given = {orders.signing_parameter: signing_secret, orders.headers_parameter: '{"X-Tenant-Key": "t-1"}'}
    env = provision(clients(endpoint.url), env, API_KEY, secrets=given)
    provider = SSMProvider(boto3_client=clients(endpoint.url)["ssm"])  # recorded: the default session's
    credentials = RequestCredentials.from_destination(orders, lambda name: SecretCache(provider, name, 0))

    recorder.function = "drain_orders"
    start = len(recorder.calls)
    try:
        authorization = credentials.current()
    finally:
        recorder.function = None

    assert isinstance(authorization, Authorization) and len(authorization.signing_keys) == 1
    calls = recorder.calls[start:]
    parameter = "arn:aws:ssm:us-east-1:123456789012:parameter"
    assert sorted(c.resource for c in calls if c.operation == "GetParameter") == [
        f"{parameter}/trickle/local/orders-api-key",
        f"{parameter}/trickle/local/orders-headers",
        f"{parameter}/trickle/local/orders-signing-secret",
    ]
    policies = function_policies(env)
    assert denied(calls, policies) == []
    policy = policies["drain_orders"]
    lacking = {**policy, "Statement": [s for s in policy["Statement"] if s["Sid"] != "ReadSigningSecret"]}
    assert [c.resource for c in denied(calls, {"drain_orders": lacking})] == [
        f"{parameter}/trickle/local/orders-signing-secret"
    ]
    assert denied([replace(c, function="drain_crm") for c in calls], policies) == [
        replace(c, function="drain_crm") for c in calls
    ]
