"""Dead letters listed page by page to the end, from the ledger's dead-letter index, while a drain
runs: every one exactly once, nothing hidden from the queue, the redrive or the drain."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from chalicelib import wiring
from tests.integration.conftest import OPERATOR_TOKEN, Stack
from trickle_local.standin_api import Reply

FAST = {"TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "1000", "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": "100"}


def dead_letter_queue_depth(stack: Stack) -> tuple[int, int]:
    queued, in_flight = wiring.dead_letters("orders").counts()
    return queued, in_flight


def page(stack: Stack, query: str) -> dict[str, Any]:
    """A GET outside the IAM recorder: the drain thread's calls must not be counted against the
    routes' role (the recorder attributes calls to one function at a time)."""
    response = stack.client.http.get(
        f"/dead-letters?destination=orders&{query}", headers={"authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert response.status_code == 200, response.body
    return dict(json.loads(response.body))


def make_dead_letters(stack: Stack, groups: int, per_group: int, prefix: str) -> None:
    stack.put_items(
        [
            stack.item(f"{prefix}{g}", f"{i:03}", poison={"BOOL": True})
            for i in range(per_group)
            for g in range(groups)
        ]
    )
    while stack.ingest_new():  # a batch of at most 100 records per call
        pass


@pytest.mark.slow
def test_200_dead_letters_over_20_groups_page_by_7_exactly_once_while_a_drain_runs(
    stack_factory: Any,
) -> None:
    stack: Stack = stack_factory(**FAST)
    stack.api.faults.poison = frozenset({'"poison":true'})
    make_dead_letters(stack, groups=20, per_group=10, prefix="dead")
    deadline = time.monotonic() + 120
    while dead_letter_queue_depth(stack)[0] < 200 and time.monotonic() < deadline:
        stack.drain()
    first_200 = {r.idempotency_key for r in stack.api.requests if r.status == 400}
    assert len(first_200) == 200 and dead_letter_queue_depth(stack) == (200, 0)

    # While the pages are read, a drain delivers 60 healthy items and dead-letters 20 more; its first
    # request is held until the first half of the pages is read, so it is certainly running.
    stack.put_items([stack.item(f"live{g}", f"{i:03}") for i in range(6) for g in range(10)])
    stack.ingest_new()
    make_dead_letters(stack, groups=20, per_group=1, prefix="late")
    held, release = threading.Event(), threading.Event()

    def hold_the_first(body: str, headers: dict[str, str]) -> Reply | None:
        if not held.is_set():
            held.set()
            release.wait(60)
        return None

    stack.api.responder = hold_the_first

    def drain_until_empty() -> None:
        stop = time.monotonic() + 120
        while sum(wiring.queue("orders").counts()) and time.monotonic() < stop:
            wiring.drainer("orders").run(lambda: 60_000)

    drainer = threading.Thread(target=drain_until_empty, name="test-drain")
    drainer.start()
    assert held.wait(60)
    pages: list[list[str]] = []
    cursor: str | None = None
    try:
        while True:
            answer = page(stack, "limit=7" + (f"&next={cursor}" if cursor else ""))
            pages.append([d["message_id"] for d in answer["dead_letters"]])
            if len(pages) == 15:
                assert drainer.is_alive()
                release.set()
            cursor = answer["next"]
            if cursor is None:
                break
            assert len(pages) < 100, "the pages never end"
    finally:
        release.set()
        drainer.join(150)
    assert not drainer.is_alive()

    listed = [message_id for p in pages for message_id in p]
    assert len(listed) == len(set(listed)), "a dead letter was listed twice"
    assert first_200 <= set(listed)
    assert all(len(p) == 7 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 7
    assert len(stack.api.applied()) == 60
    dead_now = {r.idempotency_key for r in stack.api.requests if r.status == 400}
    assert len(dead_now) == 220
    assert dead_letter_queue_depth(stack) == (220, 0)  # listing consumed nothing, hid nothing
    everything = page(stack, "limit=50")
    assert len(everything["dead_letters"]) == 50 and everything["next"]

    # The listing left every group free: a redrive right after it moves all of them (the drain carries
    # it on; with the poison fixed at the API, what it moves back is delivered).
    started = stack.http("POST", "/dead-letters/redrive?destination=orders", {})
    job = json.loads(started.body)
    stack.api.faults.poison = frozenset()
    stack.drain_until(lambda _: json.loads(stack.http("GET", job["progress_url"]).body)["state"] == "done")
    assert json.loads(stack.http("GET", job["progress_url"]).body)["moved"] == 220
    assert dead_letter_queue_depth(stack) == (0, 0)


def test_a_cursor_outlives_the_letters_it_pointed_at(stack_factory: Any) -> None:
    """A redriven letter leaves the list when the drain takes it up; a cursor past it still works."""
    stack: Stack = stack_factory(**FAST)
    stack.api.faults.poison = frozenset({'"poison":true'})
    make_dead_letters(stack, groups=3, per_group=4, prefix="g")
    stack.drain()
    first = page(stack, "limit=5")
    assert len(first["dead_letters"]) == 5

    last_seen = first["dead_letters"][-1]
    stack.http("POST", "/dead-letters/redrive?destination=orders", {"message_ids": [last_seen["message_id"]]})
    stack.api.faults.poison = frozenset()
    stack.drain()

    rest = page(stack, f"limit=50&next={first['next']}")
    remaining = [d["message_id"] for d in rest["dead_letters"]]
    assert len(remaining) == 7 and rest["next"] is None
    assert last_seen["message_id"] not in remaining
    assert len(page(stack, "limit=50")["dead_letters"]) == 11
