"""The id the API sees (issue #26), end to end: a message carrying `trickle-api-id` (a replay with the
same keys) reaches the stand-in API over real HTTP with that id as its Idempotency-Key, webhook-id
and, batched, its item id, while the ledger, SQS and the logs know the message by its own id. An
API that honours the key applies only what it missed."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook

from chalicelib import bulk, wiring
from chalicelib.fifo_queue import FifoQueue
from chalicelib.freshness import API_ID_ATTRIBUTE
from chalicelib.model import DESTINATION_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE, OutboundMessage, Status
from chalicelib.settings import load_settings
from tests.integration.conftest import API_KEY, Stack
from trickle_deploy.policies import function_policies
from trickle_local.standin_api import Faults
from trickle_local.standin_bulk import Bulk

SIGNING = "whsec_" + base64.b64encode(b"orders-signing-key-2026-0001").decode()

SIGNED_ROUTES = """
[destinations.orders]
signing = "standard_webhooks"
group_by = "partition_key"

# As in tests/routes.toml: the suite's stage sets crm's variables, so the file keeps it (unused here).
[destinations.crm]
key_header = "Authorization"
key_scheme = "Bearer"

[[routes]]
name = "everything"
events = ["INSERT"]
destinations = ["orders"]

[[routes]]
name = "customers"
events = ["INSERT"]
filter = "item.type == 'customer'"
destinations = ["crm"]
"""

BULK = {
    "TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "10",
    "TRICKLE_DEST_ORDERS_PATH": "/bulk",
    "TRICKLE_DEST_ORDERS_BATCH_WRAPPER": "{records: @}",
    "TRICKLE_DEST_ORDERS_BATCH_RESULTS": "results[].status",
}


def queue(stack: Stack, *messages: tuple[str, str, str | None]) -> None:
    """Queue (message id, group, API id or None) onto orders' queue, as a replay does: the body
    names the message, the dedup id is the message's own id."""
    FifoQueue(stack.aws["sqs"], stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]).send(
        [
            OutboundMessage(
                message_id=message_id,
                group_id=group,
                dedup_id=message_id,
                body=f'{{"order": "{message_id}"}}',
                attributes={MESSAGE_ID_ATTRIBUTE: message_id, DESTINATION_ATTRIBUTE: "orders"}
                | ({API_ID_ATTRIBUTE: api_id} if api_id is not None else {}),
                sequence_number="",
            )
            for message_id, group, api_id in messages
        ]
    )


def delivered(message_id: str) -> bool:
    record = wiring.ledger("orders").get(message_id)
    return record is not None and record.status is Status.DELIVERED


def test_a_message_reaches_the_api_under_its_api_id_signed_and_the_ledger_tracks_its_own(
    stack_factory: Any, tmp_path: Path
) -> None:
    routes = tmp_path / "signed-routes.toml"
    routes.write_text(SIGNED_ROUTES)
    stack: Stack = stack_factory(TRICKLE_ROUTES_FILE=str(routes))
    stack.policies = function_policies(stack.env)  # the drain's role may read the signing secret
    signing_parameter = load_settings(stack.env).destination("orders").signing_parameter
    stack.aws["ssm"].put_parameter(Name=signing_parameter, Value=SIGNING, Type="SecureString", Overwrite=True)
    stack.api.faults = Faults(api_key=API_KEY, signing_secret=SIGNING)
    queue(stack, ("original-1", "g0", None))
    assert stack.drain()["delivered"] == 1  # the API applied the original once

    # Replayed with the same keys: the original it had, and one it missed; and a live message.
    queue(stack, ("replay-1", "g0", "original-1"), ("replay-2", "g0", "original-2"), ("live-3", "g1", None))
    report = stack.drain()

    assert (report["delivered"], report["stopped_by"]) == (3, "empty")
    requests = stack.api.requests[1:]
    assert sorted(r.idempotency_key for r in requests) == ["live-3", "original-1", "original-2"]
    for request in requests:
        assert request.headers["webhook-id"] == request.idempotency_key
        assert request.signature_ok is True
        Webhook(SIGNING).verify(request.body.encode(), request.headers, json_parse=False)
    # the API applied only what it missed: original-1's replay was answered, not applied again
    assert sorted(r.idempotency_key for r in stack.api.applied()) == ["live-3", "original-1", "original-2"]
    assert [r.json() for r in requests if r.idempotency_key == "original-1"] == [{"order": "replay-1"}]
    assert not next(r for r in requests if r.idempotency_key == "original-1").applied
    # the ledger knows each message by its own id, never by the API's
    assert all(delivered(m) for m in ("original-1", "replay-1", "replay-2", "live-3"))
    assert wiring.ledger("orders").get("original-2") is None
    assert stack.queue_depth() == 0


def test_a_batch_carries_each_messages_api_id_as_its_item_id_and_in_its_key(stack_factory: Any) -> None:
    stack: Stack = stack_factory(**BULK)
    stack.api.bulk = Bulk("/orders/bulk", array_at=("records",))  # the stage's orders URL ends /orders
    queue(stack, ("original-1", "g0", None))
    assert stack.drain()["delivered"] == 1

    queue(stack, ("replay-1", "g0", "original-1"), ("replay-2", "g0", "original-2"), ("live-3", "g1", None))
    report = stack.drain()

    assert (report["delivered"], report["stopped_by"]) == (3, "empty")
    (request,) = stack.api.requests[1:]
    assert request.items is not None
    ids = [item.id for item in request.items]
    assert ids == ["original-1", "original-2", "live-3"]
    assert request.idempotency_key == bulk.batch_key(["original-1", "original-2", "live-3"])
    assert [(item.id, item.applied) for item in request.items] == [
        ("original-1", False),  # the API had it: answered, not applied again
        ("original-2", True),
        ("live-3", True),
    ]
    assert all(delivered(m) for m in ("replay-1", "replay-2", "live-3"))
    assert wiring.ledger("orders").get("original-2") is None
    assert stack.queue_depth() == 0
