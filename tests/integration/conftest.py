"""The local stack for integration tests: an AWS emulator and a stand-in API on loopback, both real
servers reached over HTTP, with the app invoked through `chalice.test.Client`.

The emulator is moto unless `TRICKLE_EMULATOR=ministack` (docs/emulators.md); a test that
needs one emulator is marked `only_on("moto", reason=...)` and skipped on the other with that reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice import Chalice
from chalice.constants import DEFAULT_LAMBDA_TIMEOUT
from chalice.local import LambdaContext
from chalice.test import Client, InvokeResponse, TestLambdaClient

from chalicelib import wiring
from chalicelib.fifo_queue import FifoQueue
from chalicelib.freshness import (
    FINGERPRINT_ATTRIBUTE,
    JOB_ATTRIBUTE,
    SOURCE_KEY_ATTRIBUTE,
    fingerprint,
    key_text,
)
from chalicelib.model import OutboundMessage
from chalicelib.records import build_messages
from chalicelib.settings import load_settings
from tests.fakes import environment_outside_the_suite, until
from trickle_deploy.iam_check import CallRecorder, denied, load_template, packaged_policies, partition_keys
from trickle_local.emulators import Emulator, emulator_from_env, start_emulator
from trickle_local.standin_api import Faults, StandInApi
from trickle_local.stream_poller import StreamPoller, to_lambda_record
from trickle_project import stage
from trickle_project.aws import clients, use_local_credentials
from trickle_project.resources import provision

API_KEY = "sk-test-6f1c2a9e-never-log-me"
OPERATOR_TOKEN = "op-test-token-1b2c"
CRM_FAULTS = Faults(api_key=API_KEY, api_key_header="Authorization", api_key_scheme="Bearer")
TABLE = "trickle-local-items"

# Tighter than the local stage: the test client's Lambda context allows 3 s per invocation.
ROUTES_FILE = Path(__file__).resolve().parent.parent / "routes.toml"
TEST_OVERRIDES = {
    "TRICKLE_ROUTES_FILE": str(ROUTES_FILE),
    "TRICKLE_DRAIN_SAFETY_MARGIN_MS": "500",
    "TRICKLE_DEST_ORDERS_BACKOFF_BASE_S": "1",
    "TRICKLE_DEST_CRM_BACKOFF_BASE_S": "1",
    "TRICKLE_VISIBILITY_TIMEOUT_SECONDS": "30",
    "TRICKLE_DEST_ORDERS_BACKOFF_CAP_S": "2",
    "TRICKLE_DEST_CRM_BACKOFF_CAP_S": "2",
    "TRICKLE_LOG_LEVEL": "DEBUG",
    "TRICKLE_DRAIN_WORKERS": "2",  # "once per run" and "across workers" promises hold only with several
}


EMULATOR = emulator_from_env()


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: `./dev test --fast` picks "not integration or smoke"
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is marked `integration`; `only_on(name, reason=...)`: skip where the suite's
    emulator is another, saying why."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)
        for mark in item.iter_markers("only_on"):
            if EMULATOR not in mark.args:
                reason = mark.kwargs.get("reason", "")
                item.add_marker(pytest.mark.skip(reason=f"not on {EMULATOR}: {reason}"))


@pytest.fixture(scope="session")
def endpoint() -> Iterator[Emulator]:
    use_local_credentials()
    server = start_emulator(EMULATOR)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def api() -> Iterator[StandInApi]:
    """The `orders` destination's API."""
    server = StandInApi().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def crm_api() -> Iterator[StandInApi]:
    """The `crm` destination's API (Authorization: Bearer <key>)."""
    server = StandInApi().start()
    yield server
    server.stop()


class ConfiguredTimeoutLambda(TestLambdaClient):
    """Runs a function with the time its stage configures (`lambda_timeout`), as Lambda does.

    Chalice's test client gives every function LambdaContext's default 3 s, whatever the stage says;
    a drain that must stop a safety margin before its end then stops with "time" on a loaded 2-core
    machine before it has done what a test asks of it."""

    def invoke(self, function_name: str, payload: Any | None = None) -> InvokeResponse:
        scoped = self._config.scope(self._config.chalice_stage, function_name)
        timeout_s = scoped.lambda_timeout or DEFAULT_LAMBDA_TIMEOUT
        context = LambdaContext(
            function_name, memory_size=scoped.lambda_memory_size, max_runtime_ms=timeout_s * 1000
        )
        with self._patched_env_vars(scoped.environment_variables):  # type: ignore[no-untyped-call]
            return InvokeResponse(payload=self._app.handler_map[function_name](payload or {}, context))


@pytest.fixture(scope="session")
def recorder() -> CallRecorder:
    """Every AWS call a handler makes in any integration test, attributed to its function."""
    boto3.setup_default_session()
    calls = CallRecorder(partition_keys=partition_keys(stage.stage_env("local")))
    calls.register(boto3.DEFAULT_SESSION.events)  # type: ignore[union-attr]
    return calls


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The roles `chalice package --stage local` really produces, per function (as a user runs it:
    without the suite's TRICKLE_* variables, which name the suite's routes file)."""
    out = tmp_path_factory.mktemp("package")
    env = environment_outside_the_suite() | {"AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run(
        [str(Path(sys.executable).parent / "chalice"), "package", "--stage", "local", str(out)],
        cwd=stage.PROJECT_DIR,
        env=env,
        check=True,
        capture_output=True,
    )
    return packaged_policies(load_template(out))


@pytest.fixture(scope="session")
def app(endpoint: Emulator, api: StandInApi, crm_api: StandInApi, recorder: CallRecorder) -> Chalice:
    env = (
        stage.rebase(stage.stage_env("local", routes_file=ROUTES_FILE), endpoint.url, api_urls(api, crm_api))
        | TEST_OVERRIDES
    )
    return stage.load_app(provision(clients(endpoint.url), env, API_KEY, OPERATOR_TOKEN))


def api_urls(orders: StandInApi, crm: StandInApi) -> dict[str, str]:
    return {"orders": orders.url, "crm": crm.url}


def emf_lines(out: str) -> list[dict[str, Any]]:
    """The Embedded Metric Format lines among a handler's stdout."""
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


@dataclass
class Stack:
    env: dict[str, str]
    aws: dict[str, Any]
    api: StandInApi  # orders
    crm_api: StandInApi
    client: Client
    recorder: CallRecorder
    policies: dict[str, dict[str, Any]]
    invocations: list[str] = field(default_factory=list)
    _poller: StreamPoller | None = None
    _authorizer_warm: bool = False
    cleanups: list[Callable[[], object]] = field(default_factory=list)  # run at the test's end

    @staticmethod
    def authorizer_event(token: str) -> dict[str, Any]:
        return {
            "type": "TOKEN",
            "authorizationToken": f"Bearer {token}",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:api/api/GET/status",
        }

    @staticmethod
    def item(pk: str, sk: str, **attributes: Any) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}, **attributes}

    def fill(self, groups: int, per_group: int, prefix: str = "g") -> None:
        """Interleaved inserts across groups (`g0`..), ingested through the handler."""
        self.put_items(
            [self.item(f"{prefix}{g}", f"{i:03}") for i in range(per_group) for g in range(groups)]
        )
        self.ingest_new()

    def delivered_by_group(self) -> dict[str, list[str]]:
        """What the API applied, as sort keys per partition key, in arrival order."""
        seen: dict[str, list[str]] = {}
        for request in self.api.applied():
            keys = request.json()["keys"]  # type: ignore[index]
            seen.setdefault(keys["pk"], []).append(keys["sk"])
        return seen

    def put_items(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.aws["dynamodb"].put_item(TableName=TABLE, Item=item)

    def work_jobs(
        self, on_error: Callable[[BaseException], None] | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Hand the tasks queue's visible tasks to `jobs` one by one until none is left (or `limit`
        were worked), as its trigger would (issue #26): a task whose invocation fails stays (visible
        again at once, as after its visibility timeout; `on_error` hears why, or the error is
        raised), one that succeeds is deleted. Returns the tasks worked."""
        sqs, url = self.aws["sqs"], self.env["TRICKLE_JOBS_QUEUE_URL"]
        worked: list[dict[str, Any]] = []
        while limit is None or len(worked) < limit:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60).get(
                "Messages"
            )
            if not got:
                return worked
            (message,) = got
            event = self.client.events.generate_sqs_event(
                [message["Body"]], queue_name=url.rsplit("/", 1)[-1]
            )
            try:
                self.invoke("jobs", event)
            except Exception as exc:  # the worker died: its task comes back
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
                if on_error is None:
                    raise
                on_error(exc)
                continue
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            worked.append(json.loads(message["Body"]))
        return worked

    def queue_backfill(self, destination: str, job: str = "job-1") -> list[OutboundMessage]:
        """What a backfill of `destination` queues for the table as it stands (issue #26), built as
        the backfill builds it: each scanned item as a synthetic INSERT through the routes, its
        message carrying the item's key, fingerprint and the job."""
        settings = load_settings(self.env)
        scanned = self.aws["dynamodb"].scan(TableName=TABLE, ConsistentRead=True)["Items"]
        messages: list[OutboundMessage] = []
        for item in sorted(scanned, key=lambda i: key_text({"pk": i["pk"], "sk": i["sk"]})):
            keys = {"pk": item["pk"], "sk": item["sk"]}
            record = {
                "eventID": f"backfill:{job}:{key_text(keys)}",
                "eventName": "INSERT",
                "dynamodb": {"Keys": keys, "NewImage": item, "SequenceNumber": "0" * 21},
            }
            built = build_messages([to_lambda_record(record, self.env["TRICKLE_STREAM_ARN"])], settings)
            marks = {
                SOURCE_KEY_ATTRIBUTE: key_text(keys),
                FINGERPRINT_ATTRIBUTE: fingerprint(item),
                JOB_ATTRIBUTE: job,
            }
            messages += [
                replace(m, attributes={**m.attributes, **marks})
                for m in built.messages
                if m.destination == destination
            ]
        url = settings.destination(destination).queue_url
        assert FifoQueue(self.aws["sqs"], url).send(messages) == []
        return messages

    def ingest_new(self) -> int:
        """Hand every record not yet ingested to the handler, as Lambda's event source mapping would."""
        if self._poller is None:
            self._poller = StreamPoller(
                self.aws["dynamodbstreams"], self.env["TRICKLE_STREAM_ARN"], self.ingest
            )
        return self._poller.poll()

    def stream_event(self) -> dict[str, Any]:
        """Every record on the table's stream so far, as one Lambda event."""
        events: list[dict[str, Any]] = []
        StreamPoller(self.aws["dynamodbstreams"], self.env["TRICKLE_STREAM_ARN"], events.append, 1000).poll()
        return {"Records": [r for e in events for r in e["Records"]]}

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Run a handler as Lambda would; fail the test if it made a call its packaged role denies."""
        self.invocations.append(function)
        self.recorder.function = function
        first = len(self.recorder.calls)
        try:
            return self.client.lambda_.invoke(function, event).payload
        finally:
            self.recorder.function = None
            refused = denied(self.recorder.calls[first:], self.policies)
            if refused:
                pytest.fail(f"packaged IAM policy denies calls the code made: {refused}")

    def ingest(self, event: dict[str, Any]) -> Any:
        return self.invoke("ingest", event)

    def http(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """A route call through the test client (which runs the token authorizer), recorded against
        the API function's role; the authorizer runs once first as its own function, so its SSM
        read is checked against its own role (the key is cached after that)."""
        if not self._authorizer_warm:
            self.invoke("token_auth", self.authorizer_event(OPERATOR_TOKEN))
            self._authorizer_warm = True
        headers = {"authorization": f"Bearer {OPERATOR_TOKEN}"} | (headers or {})
        self.recorder.function = "api_handler"
        first = len(self.recorder.calls)
        try:
            payload = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
            sent_headers = {"content-type": "application/json"} | (headers or {})
            return getattr(self.client.http, method.lower())(path, body=payload, headers=sent_headers)
        finally:
            self.recorder.function = None
            refused = denied(self.recorder.calls[first:], self.policies)
            if refused:
                pytest.fail(f"packaged IAM policy denies calls the code made: {refused}")

    def drain(self, destination: str = "orders") -> dict[str, Any]:
        event = self.client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
        )
        return dict(self.invoke(f"drain_{destination}", event))

    def drain_until(
        self, done: Callable[[dict[str, Any]], object], destination: str = "orders", deadline_s: float = 30.0
    ) -> list[dict[str, Any]]:
        """Drain again and again until `done(report)`: a message held back (a retry's backoff, a
        Retry-After, a lapsing visibility) is waited for, not slept for. Returns the reports of the
        runs that received anything, in order."""
        reports: list[dict[str, Any]] = []

        def drained() -> bool:
            report = self.drain(destination)
            if report["received"]:
                reports.append(report)
            return bool(done(report))

        until(drained, deadline_s)
        return reports

    def take_messages(self, url_var: str = "TRICKLE_DEST_ORDERS_QUEUE_URL") -> list[dict[str, Any]]:
        """Receive and delete everything in a queue, each group's messages oldest first."""
        sqs = self.aws["sqs"]
        url = self.env[url_var]
        taken: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=30,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                return taken
            taken += batch
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)

    def queue_depth(self, url_var: str = "TRICKLE_DEST_ORDERS_QUEUE_URL") -> int:
        attributes = self.aws["sqs"].get_queue_attributes(
            QueueUrl=self.env[url_var],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


@dataclass
class Servers:
    endpoint: Emulator
    api: StandInApi
    crm_api: StandInApi
    app: Chalice
    recorder: CallRecorder
    policies: dict[str, dict[str, Any]]


@pytest.fixture(scope="session")
def servers(
    endpoint: Emulator,
    api: StandInApi,
    crm_api: StandInApi,
    app: Chalice,
    recorder: CallRecorder,
    packaged: dict[str, dict[str, Any]],
) -> Servers:
    return Servers(endpoint, api, crm_api, app, recorder, packaged)


def make_stack(servers: Servers, tmp_path: Path, overrides: dict[str, str]) -> Iterator[Stack]:
    endpoint, api, crm_api, app = servers.endpoint, servers.api, servers.crm_api, servers.app
    endpoint.reset()
    for server, faults in ((api, Faults(api_key=API_KEY)), (crm_api, CRM_FAULTS)):
        server.clear()
        server.faults = faults
        server.reseed(0)
        server.responder = None
        server.bulk = None  # a test that batches gives its stand-in a bulk endpoint
    aws = clients(endpoint.url)
    routes_file = Path(overrides.get("TRICKLE_ROUTES_FILE", ROUTES_FILE))  # the stage's variables for it
    base = (
        stage.rebase(stage.stage_env("local", routes_file=routes_file), endpoint.url, api_urls(api, crm_api))
        | TEST_OVERRIDES
        | overrides
    )
    env = provision(aws, base, API_KEY, OPERATOR_TOKEN)
    stage.write_project(env, tmp_path)
    wiring.reset()
    with Client(app, stage_name="local", project_dir=str(tmp_path)) as client:
        client._lambda_client = ConfiguredTimeoutLambda(app, client._chalice_config)
        stack = Stack(env, aws, api, crm_api, client, servers.recorder, servers.policies)
        try:
            yield stack
        finally:
            for cleanup in stack.cleanups:
                cleanup()
    wiring.reset()


@pytest.fixture
def stack(servers: Servers, tmp_path: Path) -> Iterator[Stack]:
    yield from make_stack(servers, tmp_path, {})


@pytest.fixture
def stack_factory(servers: Servers, tmp_path: Path) -> Iterator[Any]:
    """For tests that need different stage settings: `stack_factory(TRICKLE_X="...")`."""
    stacks: list[Iterator[Stack]] = []

    def build(**overrides: str) -> Stack:
        generator = make_stack(servers, tmp_path, overrides)
        stacks.append(generator)
        return next(generator)

    yield build
    for generator in stacks:
        for _ in generator:
            pass
