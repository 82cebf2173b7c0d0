"""Halted groups (strict ordering) through the routes (issue #27): `GET /halted` lists each halted
group with its head message from the ledger, `POST /halted/{id}/retry|skip` releases it as
`operate retry|skip` does, and the drain then delivers the group in order (or dead-letters the
skipped head and goes on). The stand-in API answers over real HTTP, the emulator holds the rest."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.integration.conftest import Stack

POISON = '"pk":"g0","sk":"001"'


def get(stack: Stack, path: str) -> Any:
    response = stack.http("GET", path)
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def halted_stack(stack_factory: Any) -> tuple[Stack, str]:
    """Two groups of three; g0's second item is refused (400), which halts g0 behind it."""
    stack: Stack = stack_factory(TRICKLE_DEST_ORDERS_ORDERING="strict", TRICKLE_DEST_ORDERS_BACKOFF_CAP_S="1")
    assert get(stack, "/halted?destination=orders") == {"destination": "orders", "halted": [], "next": None}
    stack.fill(groups=2, per_group=3)
    stack.api.faults.poison = frozenset({POISON})
    assert stack.drain()["halted"] == 1
    stack.api.faults.poison = frozenset()
    halted_id = next(r.idempotency_key for r in stack.api.requests if r.status == 400)
    assert halted_id is not None
    return stack, halted_id


def test_a_halted_group_is_listed_released_by_the_route_and_then_delivered_in_order(
    stack_factory: Any,
) -> None:
    stack, halted_id = halted_stack(stack_factory)

    (group,) = get(stack, "/halted?destination=orders")["halted"]
    assert group["message_id"] == halted_id
    assert group["group_id"].endswith('"g0"')
    assert "400" in group["reason"] and group["attempts"] == 1 and group["last_status_code"] == 400
    assert group["since"].endswith("Z")
    assert group["retry_url"] == f"/halted/{halted_id}/retry?destination=orders"
    assert stack.delivered_by_group() == {"g0": ["000"], "g1": ["000", "001", "002"]}

    released = stack.http("POST", group["retry_url"], {})
    assert released.status_code == 200, released.body
    assert json.loads(released.body) == {"message_id": halted_id, "destination": "orders", "status": "failed"}
    assert get(stack, "/halted?destination=orders")["halted"] == []
    again = stack.http("POST", group["retry_url"], {})
    assert again.status_code == 409 and "its status is failed" in again.body.decode()

    stack.drain_until(lambda _: len(stack.delivered_by_group()["g0"]) == 3)
    assert stack.delivered_by_group()["g0"] == ["000", "001", "002"]
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 0


def test_a_skip_by_the_route_dead_letters_the_head_and_its_group_goes_on(stack_factory: Any) -> None:
    stack, halted_id = halted_stack(stack_factory)

    skipped = stack.http("POST", f"/halted/{halted_id}/skip?destination=orders", {})
    assert skipped.status_code == 200, skipped.body
    assert json.loads(skipped.body)["status"] == "skip"
    stack.drain_until(lambda _: len(stack.delivered_by_group()["g0"]) == 2)

    assert stack.delivered_by_group()["g0"] == ["000", "002"]
    (dead,) = get(stack, "/dead-letters?destination=orders")["dead_letters"]
    assert (dead["message_id"], dead["reason"]) == (halted_id, "skipped by an operator")
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 1
    assert get(stack, "/halted?destination=orders")["halted"] == []


def test_a_release_of_what_is_not_a_halted_message_is_a_clear_4xx(stack_factory: Any) -> None:
    stack, halted_id = halted_stack(stack_factory)
    delivered_id = next(r.idempotency_key for r in stack.api.requests if r.status == 200)

    answers = {
        f"/halted/{uuid.uuid4()}/retry?destination=orders": (404, "no message"),
        "/halted/not-an-id/skip?destination=orders": (404, "no message not-an-id of destination orders"),
        f"/halted/{halted_id}/retry?destination=crm": (404, "of destination crm"),
        f"/halted/{delivered_id}/skip?destination=orders": (409, "its status is delivered"),
        f"/halted/{halted_id}/retry?destination=nowhere": (400, "destination must be one of"),
        f"/halted/{halted_id}/retry": (400, "destination must be one of"),
    }
    for path, (status, says) in answers.items():
        answer = stack.http("POST", path, {})
        assert (answer.status_code, says in answer.body.decode()) == (status, True), (path, answer.body)
    for query in ("destination=orders&limit=0", "destination=orders&next=abc", "destination=orders&x=1"):
        assert stack.http("GET", f"/halted?{query}").status_code == 400
    assert [g["message_id"] for g in get(stack, "/halted?destination=orders")["halted"]] == [halted_id]
