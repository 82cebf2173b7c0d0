"""Message search over the ledger (issue #27): `GET /messages?key=&sort_key=` finds the messages of
one item across destinations, `GET /messages?destination=&status=&since=&until=` a destination's
messages of a status in a time window, both paged with a cursor that stays stable while the drains
write; and each message, there and at `GET /messages/{id}`, carries its attempts timeline and its
archived answer's link. Over the routes, the drains on the emulator and the stand-in APIs' HTTP."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import requests

from tests.fakes import until
from tests.integration.conftest import Stack
from trickle_local.standin_api import Reply


def get(stack: Stack, path: str, **query: str) -> Any:
    response = stack.http("GET", f"{path}?{urlencode(query)}" if query else path)
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def every_page(stack: Stack, between: Any = None, **query: str) -> list[list[dict[str, Any]]]:
    """Every page of a search, following `next`; `between(n)` runs after page n."""
    pages: list[list[dict[str, Any]]] = []
    while True:
        page = get(stack, "/messages", **query)
        pages.append(page["messages"])
        if between is not None:
            between(len(pages))
        if page["next"] is None:
            return pages
        query = query | {"next": page["next"]}


def submit(stack: Stack, item: dict[str, Any], group: str = "g") -> str:
    answer = stack.http("POST", "/messages", {"item": item, "group": group, "destination": "orders"})
    assert answer.status_code == 202, answer.body
    return str(json.loads(answer.body)["message_id"])


def customer(pk: str, sk: str, name: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}, "type": {"S": "customer"}, "name": {"S": name}}


def drain_all(stack: Stack) -> None:
    for destination, queue in (
        ("orders", "TRICKLE_DEST_ORDERS_QUEUE_URL"),
        ("crm", "TRICKLE_DEST_CRM_QUEUE_URL"),
    ):
        stack.drain_until(lambda _, q=queue: stack.queue_depth(q) == 0, destination)


def test_an_item_s_messages_are_found_by_its_key_across_destinations_and_pages(stack: Stack) -> None:
    """c1's profile goes to orders (every insert) and crm (customers), its change to crm again; its
    order to orders; c2's profile to both. A submission of an item holding pk "c1" is found too,
    from its acceptance."""
    stack.put_items([customer("c1", "PROFILE", "Ann"), customer("c2", "PROFILE", "Bob")])
    stack.put_items([{"pk": {"S": "c1"}, "sk": {"S": "ORDER#1"}, "type": {"S": "order"}}])
    stack.put_items([customer("c1", "PROFILE", "Ann B.")])  # a MODIFY: crm only
    stack.ingest_new()
    drain_all(stack)
    submitted = submit(stack, {"pk": "c1", "note": "by hand"})

    pages = every_page(stack, key="c1", sort_key="PROFILE", limit="1")
    assert [len(p) for p in pages] == [1, 1, 1]
    profile = [m for page in pages for m in page]
    assert sorted(m["destination"] for m in profile) == ["crm", "crm", "orders"]
    assert len({m["message_id"] for m in profile}) == 3
    assert all(m["item"] == {"key": "c1", "sort_key": "PROFILE"} for m in profile)
    assert all(m["status"] == "delivered" and len(m["timeline"]) == 1 for m in profile)
    assert [
        m["destination"]
        for page in every_page(stack, key="c1", sort_key="PROFILE", destination="crm")
        for m in page
    ] == ["crm", "crm"]

    everything = [m for page in every_page(stack, key="c1", limit="2") for m in page]
    # by sort key (a submission has none: last), then by time
    assert [m["item"]["sort_key"] for m in everything] == ["ORDER#1", "PROFILE", "PROFILE", "PROFILE", None]
    assert (everything[-1]["message_id"], everything[-1]["status"]) == (submitted, "queued")
    assert get(stack, "/messages", key="c3") == {"messages": [], "next": None}
    assert len(get(stack, "/messages", key="c2")["messages"]) == 2


def test_a_status_window_pages_newest_first_with_a_cursor_stable_under_writes(stack: Stack) -> None:
    """Seven delivered; while their pages are read, five more are delivered (newer: above the
    cursor) and one message fails: each of the seven is listed once, and a window gives either
    batch alone."""
    first = [submit(stack, {"n": n}, f"g{n}") for n in range(7)]
    stack.drain_until(lambda _: stack.queue_depth() == 0)
    cut = time.time()
    until(lambda: time.time() > cut + 0.01)
    later: list[str] = []

    def deliver_more(page: int) -> None:
        if page == 1:
            later.extend(submit(stack, {"n": 100 + n}, f"h{n}") for n in range(5))
            stack.drain_until(lambda _: stack.queue_depth() == 0)

    pages = every_page(stack, deliver_more, destination="orders", status="delivered", limit="3")
    listed = [m["message_id"] for page in pages for m in page]
    assert sorted(listed) == sorted(first) and len(listed) == 7
    assert [len(p) for p in pages] == [3, 3, 1]
    times = [m["status_since"] for page in pages for m in page]
    assert times == sorted(times, reverse=True)

    window = {"destination": "orders", "status": "delivered", "limit": "50"}
    before = get(stack, "/messages", **window, until=str(cut))["messages"]
    assert sorted(m["message_id"] for m in before) == sorted(first)
    after = get(stack, "/messages", **window, since=str(cut))["messages"]
    assert sorted(m["message_id"] for m in after) == sorted(later)
    assert get(stack, "/messages", destination="orders", status="failed") == {"messages": [], "next": None}


def test_a_message_s_timeline_after_a_503_then_a_200_and_its_archived_answer(stack: Stack) -> None:
    tried: list[str] = []

    def once_unavailable(body: str, headers: dict[str, str]) -> Reply | None:
        tried.append(body)
        return Reply(503, "{}") if len(tried) == 1 else None

    stack.api.responder = once_unavailable
    message_id = submit(stack, {"order": 7})
    stack.drain_until(lambda _: stack.queue_depth() == 0)

    record = get(stack, f"/messages/{message_id}")
    assert record["status"] == "delivered" and record["attempts"] == 2
    failed, delivered = record["timeline"]
    assert (failed["status_code"], failed["reason"]) == (503, "HTTP 503")
    assert (delivered["status_code"], delivered["reason"]) == (200, "HTTP 200")
    assert failed["at"] < delivered["at"] and failed["duration_ms"] >= 0 and delivered["duration_ms"] >= 0
    assert requests.get(record["response_url"], timeout=5).json()["body"] == '{"ok":true}'
    (found,) = get(stack, "/messages", destination="orders", status="delivered")["messages"]
    assert found["timeline"] == record["timeline"] and found["response_url"].startswith("http")


def test_a_search_it_cannot_answer_is_a_400_that_says_what_to_fix(stack: Stack) -> None:
    submit(stack, {"pk": "c1"})
    submit(stack, {"pk": "c1"})
    page = get(stack, "/messages", key="c1", limit="1")
    assert page["next"]
    refusals = {
        "": "give key",
        "key=c1&status=queued": "not both",
        "status=queued&destination=nowhere": "destination must be one of",
        "status=lost&destination=orders": "status must be one of",
        "status=queued&destination=orders&since=yesterday": "since must be an ISO 8601 time",
        f"key=c2&next={page['next']}": "next is not a cursor this API issued",
        f"status=queued&destination=orders&next={page['next']}": "next is not a cursor this API issued",
        "key=c1&next=" + "A" * 3000: "next is not a cursor this API issued",
        "key=c1&limit=99": "limit must be a whole number from 1 to 50",
    }
    for query, says in refusals.items():
        answer = stack.http("GET", f"/messages?{query}")
        assert (answer.status_code, says in answer.body.decode()) == (400, True), (query, answer.body)
    follow = get(stack, "/messages", key="c1", limit="1", next=page["next"])
    assert len(follow["messages"]) == 1 and follow["next"] is None
