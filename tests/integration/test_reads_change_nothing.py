"""A GET changes nothing (issue #27): no route read receives a message, moves a dead letter back or
writes a note. A receive, even one that hides nothing, adds to the head message's receive count,
and the queue's redrive backstop moves a message to the dead-letter queue after 1,000 of them: a
dashboard polling `/status` must never bring a message nearer to it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from chalice import Chalice

from chalicelib.model import iso_utc
from tests.integration.conftest import Stack

# The calls that take, hide, move or send a message, and every DynamoDB write.
CHANGES = {
    "sqs": {
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "SendMessage",
        "SendMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "StartMessageMoveTask",
        "PurgeQueue",
    },
    "dynamodb": {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"},
}
# What a GET route asks besides ?destination=orders (the search: by status).
QUERIES = {"/messages": "&status=queued"}
ORDERS_QUEUE = "TRICKLE_DEST_ORDERS_QUEUE_URL"
ORDERS_DLQ = "TRICKLE_DEST_ORDERS_DLQ_URL"


def submit(stack: Stack, item: dict[str, Any], group: str) -> str:
    answer = stack.http("POST", "/messages", {"item": item, "group": group, "destination": "orders"})
    assert answer.status_code == 202, answer.body
    return str(json.loads(answer.body)["message_id"])


def get_routes(app: Chalice) -> list[str]:
    return sorted(path for path, methods in app.routes.items() if "GET" in methods)


def test_no_get_route_receives_moves_or_writes_anything(stack: Stack, app: Chalice) -> None:
    """Every GET route of app.py (a new one is called too), with messages queued, dead letters and
    an open redrive job: none of its calls takes or moves a message or writes to DynamoDB, and the
    queues, the dead letters and the job are as they were."""
    poisoned = submit(stack, {"n": 1, "poison": True}, "a")
    stack.api.faults.poison = frozenset({'"poison":true'})
    stack.drain()  # a run note; a dead letter
    stack.api.faults.poison = frozenset()
    submit(stack, {"n": 2}, "a")
    submit(stack, {"n": 3}, "b")
    started = stack.http("POST", "/dead-letters/redrive?destination=orders", {})
    job = json.loads(started.body)
    backfill = json.loads(stack.http("POST", "/backfills", {"destination": "orders", "dry_run": True}).body)
    now = datetime.now(UTC)
    window = {"since": iso_utc(now - timedelta(hours=1)), "until": iso_utc(now)}
    replay = json.loads(
        stack.http("POST", "/replays", {"destination": "orders", "dry_run": True} | window).body
    )
    values = {
        "message_id": poisoned,
        "job_id": job["id"],
        "asset": "console.js",
        "backfill_id": backfill["id"],
        "replay_id": replay["id"],
    }
    before = (stack.queue_depth(ORDERS_QUEUE), stack.queue_depth(ORDERS_DLQ))
    assert before == (2, 1)

    called = []
    for route in get_routes(app):
        params = re.findall(r"\{(\w+)\}", route)
        assert set(params) <= set(values), f"a value for {route}'s parameters: add it to `values`"
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route) + "?destination=orders"
        path += QUERIES.get(route, "")
        first = len(stack.recorder.calls)
        response = stack.http("GET", path)
        assert response.status_code == 200, (route, response.body)
        calls = [c for c in stack.recorder.calls[first:] if c.function == "api_handler"]
        called.append(route)
        changes = [c.operation for c in calls if c.operation in CHANGES.get(c.service, ())]
        assert changes == [], f"GET {route} changed something: {changes}"

    expected = {
        "/status",
        "/dead-letters/redrive/{job_id}",
        "/console",
        "/console/{asset}",
        "/halted",
        "/backfills/{backfill_id}",
        "/messages",
        "/replays/{replay_id}",
    }
    assert expected <= set(called)
    assert (stack.queue_depth(ORDERS_QUEUE), stack.queue_depth(ORDERS_DLQ)) == before
    progress = json.loads(stack.http("GET", job["progress_url"]).body)
    assert (progress["state"], progress["moved"], progress["steps"]) == ("running", 0, 0)


def test_polling_status_leaves_the_head_message_s_receive_count_alone(stack: Stack) -> None:
    submit(stack, {"n": 1}, "a")

    for _ in range(50):
        status = stack.http("GET", "/status")
        assert status.status_code == 200
    assert json.loads(status.body)["destinations"]["orders"]["queue"]["queued"] == 1

    (head,) = stack.aws["sqs"].receive_message(
        QueueUrl=stack.env[ORDERS_QUEUE],
        MaxNumberOfMessages=1,
        VisibilityTimeout=0,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    assert head["Attributes"]["ApproximateReceiveCount"] == "1"  # this receive, the first
