"""Shared unit-test helpers: settings built through `load_settings`, as a deployed stage builds them.

Helpers are handed out as fixtures; a type a test needs is imported as `tests.unit.conftest`, never
as a bare `conftest` (with `tests/integration/conftest.py` in the same run, that name is whichever
conftest pytest loaded last: tests/, tests/unit/ and tests/integration/ are packages for this).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chalicelib import naming
from chalicelib.settings import Settings, destination_names, load_settings

ROUTES_FILE = Path(__file__).resolve().parent.parent / "routes.toml"
PROJECT_DIR = Path(__file__).resolve().parents[2]
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/items/stream/2026-01-01T00:00:00.000"
TABLE = "items"

BASE_ENV: Mapping[str, str] = {
    "TRICKLE_STREAM_ARN": STREAM_ARN,
    "TRICKLE_DEST_ORDERS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo",
    "TRICKLE_DEST_ORDERS_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq.fifo",
    "TRICKLE_DEST_ORDERS_URL": "https://api.example.com/items",
    "TRICKLE_DEST_ORDERS_KEY_PARAMETER": "/trickle/test/api-key",
    "TRICKLE_DEST_CRM_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/crm.fifo",
    "TRICKLE_DEST_CRM_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/crm-dlq.fifo",
    "TRICKLE_DEST_CRM_URL": "https://crm.example.com/contacts",
    "TRICKLE_DEST_CRM_KEY_PARAMETER": "/trickle/test/crm-key",
    "TRICKLE_ROUTES_FILE": str(ROUTES_FILE),
    "TRICKLE_LEDGER_TABLE": "trickle-test-ledger",
    "TRICKLE_NOTES_TABLE": "trickle-test-notes",
    "TRICKLE_JOBS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/trickle-test-jobs",
    "TRICKLE_PARTITION_KEY": "pk",
}

# What the shipped routes file (chalicelib/routes.toml, TRICKLE_ROUTES_FILE unset) needs beyond
# BASE_ENV, which is made for the suite's file: the resources of its other destinations, `billing`
# and `orders_bulk`.
SHIPPED_ENV: Mapping[str, str] = {
    "TRICKLE_DEST_BILLING_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/billing.fifo",
    "TRICKLE_DEST_BILLING_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/billing-dlq.fifo",
    "TRICKLE_DEST_BILLING_KEY_PARAMETER": "/trickle/test/billing-credentials",
    "TRICKLE_DEST_BILLING_SIGNING_PARAMETER": "/trickle/test/billing-signing-secret",
    "TRICKLE_DEST_ORDERS_BULK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bulk.fifo",
    "TRICKLE_DEST_ORDERS_BULK_DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bulk-dlq.fifo",
    "TRICKLE_DEST_ORDERS_BULK_KEY_PARAMETER": "/trickle/test/orders-bulk-api-key",
}

MakeSettings = Callable[..., Settings]
MakeRecord = Callable[..., dict[str, Any]]


def docs_layout() -> ModuleType:
    """docs/layout.py: the layering rule as data (which chalicelib module is core, drain, adapter),
    the import reader, and the generator of the architecture page's tree and graph."""
    spec = importlib.util.spec_from_file_location("docs_layout", PROJECT_DIR / "docs" / "layout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def env_with(**overrides: str | None) -> dict[str, str]:
    """BASE_ENV with overrides applied; an override of None removes the variable."""
    env = dict(BASE_ENV)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def routes_env(path: Path) -> dict[str, str | None]:
    """The overrides that point BASE_ENV at the routes file `path`: its TRICKLE_ROUTES_FILE, and
    None (removed) for BASE_ENV's variables of a destination that file lacks, which a stage may
    not set."""
    prefixes = tuple(
        naming.destination_variable(d, "") for d in destination_names({"TRICKLE_ROUTES_FILE": str(path)})
    )
    absent = [
        name
        for name in BASE_ENV
        if name.startswith(naming.DESTINATION_VARIABLE_PREFIX) and not name.startswith(prefixes)
    ]
    return {"TRICKLE_ROUTES_FILE": str(path), **dict.fromkeys(absent)}


@pytest.fixture
def base_env() -> dict[str, str]:
    return dict(BASE_ENV)


@pytest.fixture
def make_settings() -> MakeSettings:
    """`make_settings(TRICKLE_DEST_ORDERS_GROUP_BY="table", TRICKLE_PARTITION_KEY=None)` -> Settings."""

    def _make(**overrides: str | None) -> Settings:
        return load_settings(env_with(**overrides))

    return _make


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


def stream_record(
    *,
    event_name: str = "INSERT",
    event_id: str | None = "event-1",
    sequence: str | None = "100000000000000000001",
    keys: Mapping[str, Any] | None = None,
    new_image: Mapping[str, Any] | None = None,
    old_image: Mapping[str, Any] | None = None,
    created: float | None = 1767225600,
) -> dict[str, Any]:
    """A record as Lambda delivers it from a DynamoDB stream (binary values as base64 text)."""
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "1"}} if keys is None else keys
    ddb: dict[str, Any] = {"Keys": dict(keys), "StreamViewType": "NEW_AND_OLD_IMAGES", "SizeBytes": 64}
    if sequence is not None:
        ddb["SequenceNumber"] = sequence
    if created is not None:
        ddb["ApproximateCreationDateTime"] = created
    if new_image is None and event_name != "REMOVE":
        new_image = {**keys, "name": {"S": "widget"}}
    if new_image is not None:
        ddb["NewImage"] = dict(new_image)
    if old_image is not None:
        ddb["OldImage"] = dict(old_image)
    record: dict[str, Any] = {
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM_ARN,
        "dynamodb": ddb,
    }
    if event_id is not None:
        record["eventID"] = event_id
    return record


@pytest.fixture
def make_record() -> MakeRecord:
    """`make_record(event_name="MODIFY", keys=..., new_image=...)` -> a Lambda stream record."""
    return stream_record


ONE_ROUTE = """
[destinations.orders]
group_by = "{group_by}"

[[routes]]
name = "only"
events = {events}
destinations = ["orders"]
{extra}
"""


@pytest.fixture
def routes(tmp_path: Path) -> Callable[..., dict[str, str | None]]:
    """`make_settings(**routes(events='["MODIFY"]', extra='filter = "..."'))`: a routes file with
    one destination, `orders`, and one route to it."""

    def _write(
        events: str = '["INSERT"]', extra: str = "", group_by: str = "partition_key"
    ) -> dict[str, str | None]:
        path = tmp_path / "routes.toml"
        path.write_text(ONE_ROUTE.format(events=events, extra=extra, group_by=group_by))
        return routes_env(path)

    return _write


# A destination of every kind of secret (issue #24): orders an API key, a signing secret and secret
# headers; crm OAuth2 client credentials; billing Basic; hooks no credentials but a signing secret;
# open none at all.
SECRET_KINDS_ROUTES = """
[destinations.orders]
signing = "standard_webhooks"
secret_headers = ["X-Tenant-Key", "X-Region"]

[destinations.crm]
auth = "oauth2_client_credentials"
token_url = "https://crm.example.com/oauth/token"

[destinations.billing]
auth = "basic"
url = "https://billing.example.com/v1"

[destinations.hooks]
auth = "none"
url = "https://hooks.example.com/in"
signing = "standard_webhooks"

[destinations.open]
auth = "none"
url = "https://open.example.com/in"

[[routes]]
name = "everything"
events = ["INSERT"]
destinations = ["orders", "crm", "billing", "hooks", "open"]
"""


def secret_kinds_env(tmp_path: Path) -> dict[str, str]:
    """BASE_ENV for stage `test` with SECRET_KINDS_ROUTES as its routes file (and queues for all)."""
    path = tmp_path / "secret-kinds.toml"
    path.write_text(SECRET_KINDS_ROUTES)
    queues = {
        naming.destination_variable(
            name, field
        ): f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}-{field}.fifo"
        for name in ("billing", "hooks", "open")
        for field in ("queue_url", "dlq_url")
    }
    return env_with(**routes_env(path), **queues, TRICKLE_STAGE="test")


@pytest.fixture
def secret_kinds(tmp_path: Path) -> Settings:
    """Settings whose destinations have every kind of secret (SECRET_KINDS_ROUTES)."""
    return load_settings(secret_kinds_env(tmp_path))
