"""Operator and submit routes through `chalice.test.Client` (handlers only; authorization is
exercised through chalice local in test_chalice_local.py)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import pytest
import requests

from chalicelib.records import message_id_for
from chalicelib.redrive_jobs import MAX_OPEN
from tests.integration.conftest import Stack
from trickle_local.standin_api import Reply


def submit(stack: Stack, body: Any) -> Any:
    """POST /messages; a JSON object without a destination is sent to `orders`."""
    if isinstance(body, dict) and "destination" not in body:
        body = body | {"destination": "orders"}
    return stack.http("POST", "/messages", body)


def test_health_needs_no_aws(stack: Stack) -> None:
    stack.http("GET", "/health")  # the first call also warms the authorizer
    start = len(stack.recorder.calls)
    response = stack.http("GET", "/health")
    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok"}
    assert stack.recorder.calls[start:] == []


@pytest.mark.smoke
def test_a_submitted_message_is_delivered_and_its_response_archived(stack: Stack) -> None:
    response = submit(
        stack, b'{"item": {"order": 7, "price": 12.50}, "group": "orders", "destination": "orders"}'
    )

    assert response.status_code == 202
    answer = json.loads(response.body)
    message_id = answer["message_id"]
    assert answer["status_url"] == f"/messages/{message_id}"
    assert json.loads(stack.http("GET", answer["status_url"]).body)["status"] == "queued"

    stack.drain()

    (request,) = stack.api.requests
    assert request.idempotency_key == message_id
    assert json.loads(request.body)["item"] == {"order": 7, "price": 12.50}
    assert '"price":12.50' in request.body  # decimals travel exactly
    record = json.loads(stack.http("GET", answer["status_url"]).body)
    assert record["status"] == "delivered"
    assert record["attempts"] == 1
    assert record["last_status_code"] == 200
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in record["response_url"]  # SigV4, never SigV2
    assert "Signature=" not in record["response_url"].replace("X-Amz-Signature=", "")
    archived = requests.get(record["response_url"], timeout=5)
    assert archived.status_code == 200
    assert archived.json()["body"] == '{"ok":true}'


def test_a_client_idempotency_key_makes_a_repeat_the_same_message(stack: Stack) -> None:
    first = json.loads(submit(stack, {"item": {"a": 1}, "idempotency_key": "order-7"}).body)
    second = json.loads(submit(stack, {"item": {"a": 1}, "idempotency_key": "order-7"}).body)

    stack.drain()

    assert first["message_id"] == second["message_id"]
    assert len(stack.api.applied()) == 1


def test_bad_submissions_get_a_clear_400(stack: Stack) -> None:
    cases = {
        b"{not json": "not valid JSON",
        b"[1, 2]": "must be a JSON object",
        b'{"item": {}}': "'item' must be a non-empty JSON object",
        b'{"item": {"a": 1}, "colour": "red"}': "unknown field(s): colour",
        b'{"item": {"a": 1}, "group": 5}': "'group' must be a non-empty string",
        json.dumps({"item": {"blob": "x" * 300_000}}).encode(): "the limit is 262144",
    }
    for body, expected in cases.items():
        response = stack.http("POST", "/messages", body)
        assert response.status_code == 400, body[:40]
        message = json.loads(response.body)["Message"]
        assert expected in message
        assert "Traceback" not in response.body.decode()
    assert stack.queue_depth() == 0


def test_unknown_messages_are_404(stack: Stack) -> None:
    assert stack.http("GET", f"/messages/{uuid.uuid4()}").status_code == 404
    response = stack.http("GET", "/messages/run%23orders")
    assert response.status_code == 404
    assert "message ids are UUIDs" in json.loads(response.body)["Message"]


def test_a_stream_item_is_recorded_at_its_first_attempt_and_looked_up_before_that(stack: Stack) -> None:
    """Ingest writes no ledger record per message (it would be most of the relay's requests): until
    the drain attempts it, a lookup is a 404 that says no attempt is recorded yet and what that means."""
    stack.put_items([stack.item("a", "1")])
    event = stack.stream_event()
    first = len(stack.recorder.calls)
    stack.ingest(event)
    assert [c.operation for c in stack.recorder.calls[first:] if c.service == "dynamodb"] == []
    message_id = message_id_for("trickle-local-items", event["Records"][0]["eventID"], "orders")

    before = stack.http("GET", f"/messages/{message_id}")

    assert before.status_code == 404
    message = json.loads(before.body)["Message"]
    assert "no delivery attempt is recorded for it yet" in message and "GET /status" in message
    stack.drain()
    after = json.loads(stack.http("GET", f"/messages/{message_id}").body)
    assert (after["status"], after["attempts"]) == ("delivered", 1)


@pytest.mark.smoke
def test_status_reports_depths_and_the_last_run(stack: Stack) -> None:
    for n in range(3):
        submit(stack, {"item": {"n": n}})
    before = json.loads(stack.http("GET", "/status").body)["destinations"]["orders"]
    assert before["queue"]["queued"] == 3
    # no run has looked yet: the oldest message's age is unknown (the route never receives)
    assert (before["queue"]["oldest_message_age_s"], before["queue"]["oldest_seen_at"]) == (None, None)
    assert before["last_run"] is None

    stack.drain()

    after = json.loads(stack.http("GET", "/status").body)["destinations"]["orders"]
    assert after["queue"] == {
        "queued": 0,
        "in_flight": 0,
        "oldest_message_age_s": None,
        "oldest_seen_at": after["last_run"]["finished_at"],
        "oldest_complete": True,
    }
    assert after["dead_letters"] == {"queued": 0, "in_flight": 0}
    assert after["last_run"]["delivered"] == 3
    assert "left_in_queue" not in after["last_run"]


def test_status_shows_the_age_of_the_oldest_message_the_last_run_left(stack: Stack) -> None:
    """A message the API keeps failing is held back by its backoff; the runs that never see it still
    say it is the oldest, its age counted from when it was queued."""
    queued_from = time.time()
    submit(stack, {"item": {"n": 1}, "group": "a"})
    queued_by = time.time()
    submit(stack, {"item": {"n": 2}, "group": "b"})
    stack.api.responder = lambda body, headers: Reply(503, "{}") if '"n":1' in body else None
    stack.drain()
    stack.drain()  # held back (or, on a slow machine, received and failed again): still the oldest

    asked_from = time.time()
    status = json.loads(stack.http("GET", "/status").body)["destinations"]["orders"]
    asked_by = time.time()

    assert status["queue"]["in_flight"] + status["queue"]["queued"] == 1
    assert status["queue"]["oldest_seen_at"] == status["last_run"]["finished_at"]
    assert status["queue"]["oldest_complete"] is True
    age = status["queue"]["oldest_message_age_s"]
    assert asked_from - queued_by - 0.01 <= age <= asked_by - queued_from + 0.01


def poison_two(stack: Stack) -> None:
    submit(stack, {"item": {"n": 1, "poison": True}, "group": "a"})
    submit(stack, {"item": {"n": 2, "poison": True}, "group": "b"})
    submit(stack, {"item": {"n": 3}, "group": "a"})
    stack.api.faults.poison = frozenset({'"poison":true'})
    stack.drain()
    stack.api.faults.poison = frozenset()


@pytest.mark.smoke
def test_dead_letters_are_listed_page_by_page_without_consuming_them(stack: Stack) -> None:
    poison_two(stack)

    first = json.loads(stack.http("GET", "/dead-letters?destination=orders&limit=1").body)
    second = json.loads(
        stack.http("GET", f"/dead-letters?destination=orders&limit=1&next={first['next']}").body
    )

    assert len(first["dead_letters"]) == 1 and len(second["dead_letters"]) == 1
    letter = first["dead_letters"][0]
    assert letter["message_id"] != second["dead_letters"][0]["message_id"]
    assert "refused by the API" in letter["reason"]
    assert (letter["attempts"], letter["last_status_code"], letter["redrivable"]) == (1, 400, True)
    assert letter["dead_at"].endswith("Z") and letter["status_url"] == f"/messages/{letter['message_id']}"
    assert first["destination"] == "orders"
    assert second["next"] is None
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 2
    assert json.loads(stack.http("GET", "/dead-letters?destination=orders").body)["dead_letters"]
    for query, message in (
        ("limit=x", "limit must be a whole number from 1 to 50"),
        ("limit=0", "limit must be a whole number from 1 to 50"),
        ("destination=orders&next=abc", "next is not a cursor this API issued"),
        ("destination=other", "destination must be one of: orders, crm"),
        ("limit=5", "destination must be one of: orders, crm"),
        ("colour=red", "unknown parameter(s)"),
    ):
        refused = stack.http("GET", f"/dead-letters?{query}")
        assert refused.status_code == 400, query
        assert message in json.loads(refused.body)["Message"], query


def test_a_redrive_started_by_route_is_carried_on_by_the_drain_and_delivered(stack: Stack) -> None:
    poison_two(stack)

    started = stack.http("POST", "/dead-letters/redrive?destination=orders", {"groups": ["submit#a"]})

    assert started.status_code == 202
    job = json.loads(started.body)
    assert job["progress_url"] == f"/dead-letters/redrive/{job['id']}?destination=orders"
    waiting = json.loads(stack.http("GET", job["progress_url"]).body)
    assert (waiting["state"], waiting["moved"], waiting["steps"], waiting["advanced_at"]) == (
        "running",
        0,
        0,
        None,
    )
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 2  # the request moved nothing

    report = stack.drain()  # carries the job on, then delivers what it moved back

    assert report["redriven"] == 1
    progress = json.loads(stack.http("GET", job["progress_url"]).body)
    assert (progress["state"], progress["moved"], progress["steps"]) == ("done", 1, 1)
    assert progress["advanced_at"] >= progress["started_at"]
    assert any('"n":1' in r.body and r.status == 200 for r in stack.api.requests)
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 1
    assert stack.http("POST", "/dead-letters/redrive?destination=orders", {"groups": "a"}).status_code == 400
    assert stack.http("GET", f"/dead-letters/redrive/{uuid.uuid4()}?destination=orders").status_code == 404
    other = stack.http("GET", f"/dead-letters/redrive/{job['id']}?destination=crm")
    assert other.status_code == 404  # a job is its destination's
    unnamed = stack.http("GET", f"/dead-letters/redrive/{job['id']}")
    assert unnamed.status_code == 400
    assert "destination must be one of: orders, crm" in json.loads(unnamed.body)["Message"]


def test_a_destination_takes_only_so_many_open_redrives(stack: Stack) -> None:
    for _ in range(MAX_OPEN):
        assert stack.http("POST", "/dead-letters/redrive?destination=orders", {}).status_code == 202

    refused = stack.http("POST", "/dead-letters/redrive?destination=orders", {})

    assert refused.status_code == 409
    assert "wait for one to be done" in json.loads(refused.body)["Message"]
    stack.drain()  # nothing to move: every job is done
    assert stack.http("POST", "/dead-letters/redrive?destination=orders", {}).status_code == 202


def test_the_emulators_missing_move_task_is_one_debug_line_not_a_traceback(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    poison_two(stack)

    started = json.loads(stack.http("POST", "/dead-letters/redrive?destination=orders", {}).body)
    with caplog.at_level(logging.DEBUG):
        stack.drain()

    assert json.loads(stack.http("GET", started["progress_url"]).body)["method"] == "copy"
    about_it = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if not r.name.startswith("botocore")  # botocore's own debug lines name every operation
        and ("MessageMoveTask" in r.getMessage() or "Traceback" in r.getMessage())
    ]
    assert about_it == [("DEBUG", "StartMessageMoveTask unavailable; copying in order")]
