"""The local stack for integration tests: moto's server and a stand-in API on loopback, both real
servers reached over HTTP, with the app invoked through `chalice.test.Client`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from chalice import Chalice
from chalice.test import Client

from chalicelib import wiring
from trickle_deploy.bootstrap import provision
from trickle_local import stage
from trickle_local.endpoint import MotoEndpoint, clients, use_local_credentials
from trickle_local.standin_api import Faults, StandInApi
from trickle_local.stream_poller import StreamPoller

API_KEY = "sk-test-6f1c2a9e-never-log-me"
TABLE = "trickle-local-items"

# Tighter than the local stage: the test client's Lambda context allows 3 s per invocation.
TEST_OVERRIDES = {
    "TRICKLE_DRAIN_SAFETY_MARGIN_MS": "500",
    "TRICKLE_RETRY_DELAY_SECONDS": "1",
    "TRICKLE_VISIBILITY_TIMEOUT_SECONDS": "30",
    "TRICKLE_LOG_LEVEL": "DEBUG",
}


@pytest.fixture(scope="session")
def endpoint() -> Iterator[MotoEndpoint]:
    use_local_credentials()
    server = MotoEndpoint().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def api() -> Iterator[StandInApi]:
    server = StandInApi().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app(endpoint: MotoEndpoint, api: StandInApi) -> Chalice:
    env = stage.rebase(stage.stage_env("local"), endpoint.url, api.url) | TEST_OVERRIDES
    return stage.load_app(provision(clients(endpoint.url), env, API_KEY))


@dataclass
class Stack:
    env: dict[str, str]
    aws: dict[str, Any]
    api: StandInApi
    client: Client
    invocations: list[str] = field(default_factory=list)

    @staticmethod
    def item(pk: str, sk: str, **attributes: Any) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}, **attributes}

    def put_items(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.aws["dynamodb"].put_item(TableName=TABLE, Item=item)

    def poller(self, batch_size: int = 100) -> StreamPoller:
        return StreamPoller(
            self.aws["dynamodbstreams"], self.env["TRICKLE_STREAM_ARN"], self.ingest, batch_size=batch_size
        )

    def stream_event(self) -> dict[str, Any]:
        """Every record on the table's stream so far, as one Lambda event."""
        events: list[dict[str, Any]] = []
        StreamPoller(self.aws["dynamodbstreams"], self.env["TRICKLE_STREAM_ARN"], events.append, 1000).poll()
        return {"Records": [r for e in events for r in e["Records"]]}

    def ingest(self, event: dict[str, Any]) -> Any:
        self.invocations.append("ingest")
        return self.client.lambda_.invoke("ingest", event).payload

    def drain(self) -> dict[str, Any]:
        self.invocations.append("drain")
        event = self.client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]
        )
        return dict(self.client.lambda_.invoke("drain", event).payload)

    def take_messages(self, url_var: str = "TRICKLE_QUEUE_URL") -> list[dict[str, Any]]:
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

    def queue_depth(self, url_var: str = "TRICKLE_QUEUE_URL") -> int:
        attributes = self.aws["sqs"].get_queue_attributes(
            QueueUrl=self.env[url_var],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def make_stack(
    endpoint: MotoEndpoint, api: StandInApi, app: Chalice, tmp_path: Path, overrides: dict[str, str]
) -> Iterator[Stack]:
    endpoint.reset()
    api.clear()
    api.faults = Faults(api_key=API_KEY)
    api.responder = None
    aws = clients(endpoint.url)
    base = stage.rebase(stage.stage_env("local"), endpoint.url, api.url) | TEST_OVERRIDES | overrides
    env = provision(aws, base, API_KEY)
    stage.write_project(env, tmp_path)
    wiring.reset()
    with Client(app, stage_name="local", project_dir=str(tmp_path)) as client:
        yield Stack(env, aws, api, client)
    wiring.reset()


@pytest.fixture
def stack(endpoint: MotoEndpoint, api: StandInApi, app: Chalice, tmp_path: Path) -> Iterator[Stack]:
    yield from make_stack(endpoint, api, app, tmp_path, {})


@pytest.fixture
def stack_factory(
    endpoint: MotoEndpoint, api: StandInApi, app: Chalice, tmp_path: Path
) -> Iterator[Any]:
    """For tests that need different stage settings: `stack_factory(TRICKLE_X="...")`."""
    stacks: list[Iterator[Stack]] = []

    def build(**overrides: str) -> Stack:
        generator = make_stack(endpoint, api, app, tmp_path, overrides)
        stacks.append(generator)
        return next(generator)

    yield build
    for generator in stacks:
        for _ in generator:
            pass
