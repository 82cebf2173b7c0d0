"""The shipped routes file end to end on the emulator: a single-table design whose customers, orders
and invoices go to orders and crm, each with its own queue, drain, body shape, key header and
enrichment, and a role that allows exactly what its drain does (checked on every invocation);
invoices also queue for billing (OAuth2 and signed) and orders for orders_bulk (in batches): both in
tests/integration/test_local_demo.py."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import wiring
from chalicelib.settings import ROUTES_FILE
from tests.integration.conftest import API_KEY, TABLE, Stack


def shipped(stack_factory: Any) -> Stack:
    stack: Stack = stack_factory(TRICKLE_ROUTES_FILE=str(ROUTES_FILE))
    return stack


def bodies(requests: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in requests]


@pytest.mark.smoke
def test_each_item_type_reaches_its_destinations_in_their_shapes(stack_factory: Any) -> None:
    stack = shipped(stack_factory)
    customer = {"type": {"S": "customer"}, "name": {"S": "Ada"}, "email": {"S": "ada@example.com"}}
    stack.put_items(
        [
            stack.item("CUSTOMER#1", "PROFILE", **customer),
            stack.item("CUSTOMER#1", "ORDER#1", type={"S": "order"}, total={"N": "12.50"}),
            stack.item("CUSTOMER#1", "INVOICE#1", type={"S": "invoice"}, amount={"N": "12.50"}),
            stack.item("CUSTOMER#2", "ORDER#2", type={"S": "order"}, total={"N": "1"}),
            stack.item("NOTE#1", "X", type={"S": "note"}),
        ]
    )

    ingested = stack.ingest(stack.stream_event())
    orders_report, crm_report = stack.drain("orders"), stack.drain("crm")

    # 2 orders x2 (orders, orders_bulk) + invoice x3 (orders, crm, billing) + profile
    assert (ingested["enqueued"], ingested["unrouted"]) == (8, 1)
    assert (orders_report["delivered"], crm_report["delivered"]) == (3, 2)
    orders = {b["keys"]["sk"]: b for b in bodies(stack.api.applied())}
    first_customer = [b["keys"]["sk"] for b in bodies(stack.api.applied()) if b["keys"]["pk"] == "CUSTOMER#1"]
    assert first_customer == ["ORDER#1", "INVOICE#1"] and set(orders) == {"ORDER#1", "INVOICE#1", "ORDER#2"}
    assert orders["ORDER#1"]["customer"] == {
        "name": "Ada",
        "email": "ada@example.com",
    }  # enriched at delivery
    assert orders["ORDER#2"]["customer"] is None  # no profile for CUSTOMER#2
    assert "customer" not in orders["INVOICE#1"]  # invoices are not enriched
    stored = stack.aws["dynamodb"].get_item(
        TableName=TABLE, Key={"pk": {"S": "CUSTOMER#1"}, "sk": {"S": "ORDER#1"}}
    )["Item"]["total"]["N"]  # "12.5" on AWS, which trims the zero ("12.50" on moto)
    exactly = re.compile(f'"total":{re.escape(stored)}(?![0-9])')  # the number as stored, not via float
    assert any(exactly.search(r.body) for r in stack.api.applied())
    crm = bodies(stack.crm_api.applied())
    assert crm[0] == {
        "customer": "CUSTOMER#1",
        "change": "INSERT",
        "name": "Ada",
        "email": "ada@example.com",
        "before": None,
        "keys": {"pk": "CUSTOMER#1", "sk": "PROFILE"},
        "sequence_number": crm[0]["sequence_number"],
    }
    assert crm[1]["keys"]["sk"] == "INVOICE#1" and crm[1]["event_name"] == "INSERT"
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in stack.crm_api.requests)
    assert all(r.headers["x-api-key"] == API_KEY for r in stack.api.requests)
    invoice_ids = {orders["INVOICE#1"]["message_id"], crm[1]["message_id"]}
    assert len(invoice_ids) == 2  # one message per destination


def test_a_failing_enrichment_is_retried_like_a_5xx_without_calling_the_api(stack_factory: Any) -> None:
    stack = shipped(stack_factory)
    stack.put_items([stack.item("CUSTOMER#1", "ORDER#1", type={"S": "order"})])
    stack.ingest_new()
    wiring.reset()

    def throttled(params: dict[str, Any], **_: Any) -> None:
        """The enrichment's reads of the item table only (the drain reads its own notes too)."""
        if params.get("TableName") == TABLE:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "GetItem")

    wiring.client("dynamodb").meta.events.register("before-parameter-build.dynamodb.GetItem", throttled)
    first = stack.drain("orders")
    wiring.client("dynamodb").meta.events.unregister("before-parameter-build.dynamodb.GetItem", throttled)

    assert (first["retried"], first["delivered"]) == (1, 0)
    assert stack.api.requests == []
    deadline = time.monotonic() + 30
    while not stack.api.applied() and time.monotonic() < deadline:  # after the 1 s backoff
        stack.drain("orders")
    assert [json.loads(r.body)["customer"] for r in stack.api.applied()] == [None]


def test_status_and_dead_letters_are_per_destination(stack: Stack) -> None:
    stack.fill(groups=1, per_group=2)
    stack.drain("orders")

    status = json.loads(stack.http("GET", "/status").body)["destinations"]
    unnamed = stack.http("GET", "/dead-letters")
    unknown = stack.http("GET", "/dead-letters?destination=nowhere")

    assert set(status) == {"orders", "crm"}
    assert status["orders"]["last_run"]["delivered"] == 2 and status["crm"]["last_run"] is None
    assert unnamed.status_code == unknown.status_code == 400
    assert "one of: orders, crm" in json.loads(unknown.body)["Message"]
