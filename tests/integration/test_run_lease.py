"""The drain's run lease on the emulator's DynamoDB: one run at a time per destination, with no
reserved concurrency to rely on."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from chalicelib.naming import lease_key, totals_key
from chalicelib.notes import NOTE_KEY
from chalicelib.operations import is_message_id
from chalicelib.run_lease import LEASE_MARGIN_S, OVERLAP, RunLease
from tests.integration.conftest import Stack
from trickle_local.standin_api import Reply

DEADLINE_S = 30


def test_two_drains_started_together_deliver_once(stack: Stack) -> None:
    stack.fill(groups=3, per_group=2)
    overlapped = threading.Event()

    def hold_until_the_other_drain_returns(body: str, headers: dict[str, str]) -> Reply | None:
        overlapped.wait(DEADLINE_S)  # the winner stays inside its run until the loser has returned
        return None

    stack.api.responder = hold_until_the_other_drain_returns
    barrier = threading.Barrier(2)
    reports: list[dict[str, Any]] = []

    def drain() -> None:
        barrier.wait(DEADLINE_S)
        report = stack.drain()
        reports.append(report)
        if report["stopped_by"] == OVERLAP:
            overlapped.set()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S * 2)

    assert overlapped.is_set(), reports
    (loser,) = [r for r in reports if r["stopped_by"] == OVERLAP]
    (winner,) = [r for r in reports if r["stopped_by"] != OVERLAP]
    assert loser["received"] == 0 and loser["delivered"] == 0
    assert winner["delivered"] == 6
    assert Counter(r.idempotency_key for r in stack.api.applied()).most_common(1)[0][1] == 1
    stack.api.responder = None
    stack.fill(groups=1, per_group=1, prefix="later")
    assert stack.drain()["delivered"] == 1  # the winner released the lease


def test_a_held_lease_stops_a_run_before_any_other_call(stack: Stack) -> None:
    stack.fill(groups=1, per_group=2)
    table = stack.env["TRICKLE_NOTES_TABLE"]
    other = RunLease(stack.aws["dynamodb"], table, "orders")
    holder = other.acquire(60)
    assert holder is not None
    start = len(stack.recorder.calls)

    report = stack.drain()

    assert report["stopped_by"] == OVERLAP and report["received"] == 0
    assert [c.operation for c in stack.recorder.calls[start:]] == ["PutItem"]
    assert stack.api.requests == []
    assert other.release(holder)
    assert stack.drain()["delivered"] == 2


def test_an_expired_lease_is_taken_over_and_its_late_holder_cannot_release_it(stack: Stack) -> None:
    table = stack.env["TRICKLE_NOTES_TABLE"]
    now = [1_000_000.0]
    first = RunLease(stack.aws["dynamodb"], table, "orders", clock=lambda: now[0])
    second = RunLease(stack.aws["dynamodb"], table, "orders", clock=lambda: now[0])

    old = first.acquire(300 + LEASE_MARGIN_S)
    assert old is not None
    now[0] += 300 + LEASE_MARGIN_S - 1
    assert second.acquire(300) is None  # still held a second before it expires
    now[0] += 2
    new = second.acquire(300)
    assert new is not None and new != old

    assert first.release(old) is False  # the late holder leaves the new lease alone
    assert second.acquire(300) is None
    assert second.release(new) is True
    assert second.acquire(300) is not None


def test_the_lease_lives_in_the_notes_table_per_destination(stack: Stack) -> None:
    table = stack.env["TRICKLE_NOTES_TABLE"]
    dynamodb = stack.aws["dynamodb"]
    assert RunLease(dynamodb, table, "orders").acquire(60) is not None
    assert RunLease(dynamodb, table, "invoices").acquire(60) is not None  # another destination's own
    item = dynamodb.get_item(TableName=table, Key={NOTE_KEY: {"S": lease_key("orders")}})["Item"]
    assert float(item["lease_until"]["N"]) < int(item["expires_at"]["N"])  # TTL only cleans up later
    assert stack.http("GET", f"/messages/{lease_key('orders')}").status_code == 404  # not a message


def test_the_ledger_holds_only_message_records(stack: Stack) -> None:
    """Leases, run notes, redrive jobs and running totals all go to the notes table."""
    stack.fill(groups=2, per_group=2)
    stack.api.faults.poison = frozenset({'"sk":"001"'})
    stack.drain()
    stack.drain("crm")
    started = stack.http("POST", "/dead-letters/redrive?destination=orders", {})
    assert started.status_code == 202
    assert stack.http("GET", "/status").status_code == 200

    dynamodb = stack.aws["dynamodb"]
    ledger = dynamodb.scan(TableName=stack.env["TRICKLE_LEDGER_TABLE"], ConsistentRead=True)["Items"]
    assert len(ledger) == 4
    assert all(is_message_id(item["message_id"]["S"]) for item in ledger)
    notes = dynamodb.scan(TableName=stack.env["TRICKLE_NOTES_TABLE"], ConsistentRead=True)["Items"]
    job = json.loads(started.body)["id"]
    assert sorted(item[NOTE_KEY]["S"] for item in notes) == sorted(
        ["run#orders", "run#crm", f"redrive#orders#{job}", "redrive#orders", totals_key("orders")]
    )  # the leases were released; crm counted nothing, so it has no totals
