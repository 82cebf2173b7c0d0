"""Freshness at delivery (issue #26), end to end over HTTP on the emulator and the stand-in API: a
backfill queues the table as it stands; items then change or are deleted, their stream records
ingested behind it; the drain sends the newest state of a changed item exactly as the stream
delivers it, nothing of a deleted one, and an unchanged item once. Through a route of inserts only
(the suite's `orders`), a changed item is sent as scanned: no change of it ever reaches that API.
The first test queues the backfill's messages as the engine builds them; the second runs the engine
(`POST /backfills`, the `jobs` function) while items change and go."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.freshness import key_text
from chalicelib.records import build_messages, message_id_for
from chalicelib.settings import load_settings
from tests.integration.conftest import TABLE, Stack

CUSTOMERS = 8
CHANGED = {"c1", "c4", "c6"}
DELETED = {"c2", "c5"}


def customer(pk: str, name: str) -> dict[str, Any]:
    return Stack.item(pk, "profile", type={"S": "customer"}, name={"S": name})


def crm_bodies(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """What crm's API applied, per customer, in arrival order."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for request in stack.crm_api.applied():
        body: dict[str, Any] = request.json()  # type: ignore[assignment]
        seen.setdefault(body["customer"], []).append(body)
    return seen


def test_items_changed_or_deleted_during_a_backfill_end_with_their_newest_state(stack: Stack) -> None:
    # The table already holds the customers when crm is added: their own stream records are old news.
    stack.put_items([customer(f"c{n}", f"name {n} v1") for n in range(CUSTOMERS)])
    stack.ingest_new()
    for queue in ("TRICKLE_DEST_ORDERS_QUEUE_URL", "TRICKLE_DEST_CRM_QUEUE_URL"):
        stack.take_messages(queue)

    backfilled = stack.queue_backfill("crm")
    assert len(backfilled) == CUSTOMERS
    stack.queue_backfill("orders")  # its route takes inserts only: no change of an item reaches it

    # While it waits in the queue: some items change, others go; the stream carries both.
    stack.put_items([customer(pk, f"name {pk[1:]} v2") for pk in sorted(CHANGED)])
    for pk in sorted(DELETED):
        stack.aws["dynamodb"].delete_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "profile"}})
    stack.ingest_new()
    changes = [r for r in stack.stream_event()["Records"] if r["eventName"] == "MODIFY"]
    streamed = {  # the bodies the changes' records give crm, built as ingest builds them
        json.loads(m.body)["customer"]: m.body
        for m in build_messages(changes, load_settings(stack.env)).messages
        if m.destination == "crm"
    }
    assert {pk: json.loads(body)["name"] for pk, body in streamed.items()} == {
        pk: f"name {pk[1:]} v2" for pk in CHANGED
    }

    reports = stack.drain_until(lambda r: r["stopped_by"] == "empty", destination="crm")

    applied = crm_bodies(stack)
    unchanged = {f"c{n}" for n in range(CUSTOMERS)} - CHANGED - DELETED
    assert set(applied) == unchanged | CHANGED  # nothing for the deleted ones
    for pk in sorted(unchanged):
        assert [b["name"] for b in applied[pk]] == [f"name {pk[1:]} v1"]  # once
    sent_raw = {r.json()["customer"]: r.body for r in stack.crm_api.applied()}  # type: ignore[index]
    for pk in sorted(CHANGED):
        assert [b["name"] for b in applied[pk]] == [f"name {pk[1:]} v2"]  # never the older state
        assert sent_raw[pk] == streamed[pk]  # exactly as the stream delivers it
    assert sum(r["superseded"] for r in reports) == len(CHANGED | DELETED)
    assert sum(r["delivered"] for r in reports) == len(unchanged | CHANGED)
    assert stack.queue_depth("TRICKLE_DEST_CRM_QUEUE_URL") == 0

    # orders: a changed item as scanned (the only state it would ever get), a deleted one never
    orders = stack.drain_until(lambda r: r["stopped_by"] == "empty")
    assert stack.delivered_by_group() == {pk: ["profile"] for pk in sorted(unchanged | CHANGED)}
    assert (
        {r.json()["item"]["name"] for r in stack.api.applied()}
        == {  # type: ignore[index]
            f"name {pk[1:]} v1" for pk in unchanged | CHANGED
        }
    )
    assert sum(r["superseded"] for r in orders) == len(DELETED)

    by_key = {json.loads(m.body)["customer"]: m.message_id for m in backfilled}
    for pk, reason in [("c1", "superseded: item changed since backfill"), ("c2", "deleted since backfill")]:
        answer = json.loads(stack.http("GET", f"/messages/{by_key[pk]}").body)
        assert (answer["status"], answer["last_error"], answer["attempts"]) == ("superseded", reason, 0)


def test_a_real_backfill_while_items_change_and_go_ends_with_their_newest_state(stack: Stack) -> None:
    """POST /backfills and the `jobs` function: items change or go between its two segments' tasks
    (scanned before or after, as the segments fall) and after it has queued everything (scanned
    before, for sure). Nothing older reaches crm's API after a newer state, nothing of a deleted
    item, an unchanged item once; what was scanned before its change is superseded."""
    stack.put_items([customer(f"c{n}", f"name {n} v1") for n in range(CUSTOMERS)])
    stack.ingest_new()
    for queue in ("TRICKLE_DEST_ORDERS_QUEUE_URL", "TRICKLE_DEST_CRM_QUEUE_URL"):
        stack.take_messages(queue)
    answer = stack.http("POST", "/backfills", {"destination": "crm", "segments": 2})
    assert answer.status_code == 202, answer.body
    job = json.loads(answer.body)["id"]

    def change(changed: set[str], deleted: set[str]) -> None:
        stack.put_items([customer(pk, f"name {pk[1:]} v2") for pk in sorted(changed)])
        for pk in sorted(deleted):
            stack.aws["dynamodb"].delete_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "profile"}})
        stack.ingest_new()

    assert len(stack.work_jobs(limit=1)) == 1  # one segment's task
    change({"c1"}, {"c2"})  # while the other segment is still to scan
    stack.work_jobs()
    assert json.loads(stack.http("GET", f"/backfills/{job}").body)["state"] == "done"
    late_changed, late_deleted = {"c4", "c6"}, {"c5"}
    change(late_changed, late_deleted)  # scanned before, for sure: their messages wait in the queue

    reports = stack.drain_until(lambda r: r["stopped_by"] == "empty", destination="crm")

    applied = crm_bodies(stack)
    changed, deleted = {"c1"} | late_changed, {"c2"} | late_deleted
    unchanged = {f"c{n}" for n in range(CUSTOMERS)} - changed - deleted
    assert set(applied) == unchanged | changed  # nothing for the deleted ones
    for pk in sorted(unchanged):
        assert [b["name"] for b in applied[pk]] == [f"name {pk[1:]} v1"]  # once
    for pk in sorted(changed):  # the stream's newer state, and never the older one
        assert {b["name"] for b in applied[pk]} == {f"name {pk[1:]} v2"}
    assert stack.queue_depth("TRICKLE_DEST_CRM_QUEUE_URL") == 0
    superseded = sum(r["superseded"] for r in reports)
    assert len(late_changed | late_deleted) <= superseded <= len(changed | deleted)
    settings = load_settings(stack.env)
    for pk, reason in [("c4", "superseded: item changed since backfill"), ("c5", "deleted since backfill")]:
        event_id = f"backfill:{job}:{key_text({'pk': {'S': pk}, 'sk': {'S': 'profile'}})}"
        message_id = message_id_for(settings.table_name, event_id, "crm")
        answer = json.loads(stack.http("GET", f"/messages/{message_id}").body)
        assert (answer["status"], answer["last_error"], answer["attempts"]) == ("superseded", reason, 0)
