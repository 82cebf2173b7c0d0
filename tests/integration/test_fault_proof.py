"""The delivery guarantees under seeded faults, on the local stack (moto server, stand-in API,
handlers through chalice.test.Client): 2,000 items over 25 groups, an API that answers 5xx, 429
with Retry-After, times out after recording, resets connections and refuses poison items, a drain
killed between its 2xx and its delete, and SendMessageBatch entries failing on ingest; and the same
to a bulk endpoint (issue #25), whose faults are per request and per item."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from chalicelib import wiring
from chalicelib.dead_letters import RedriveFilter
from chalicelib.model import Status
from chalicelib.settings import load_settings
from tests.integration.conftest import API_KEY, Stack
from trickle_deploy.operate import main as operate
from trickle_deploy.operate import redrive
from trickle_local.demo import Summary, demo_items, summarize
from trickle_local.standin_api import Reply
from trickle_local.standin_bulk import MAX_BODY_BYTES, endpoint_for

SEED = 20261123
FAULT_ENV = {
    "TRICKLE_VISIBILITY_TIMEOUT_SECONDS": "4",
    "TRICKLE_DEST_ORDERS_READ_TIMEOUT_S": "0.5",
    "TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S": "0.5",
    "TRICKLE_DEST_CRM_READ_TIMEOUT_S": "0.5",
    "TRICKLE_DEST_CRM_CONNECT_TIMEOUT_S": "0.5",
    "TRICKLE_DEST_ORDERS_BACKOFF_BASE_S": "1",
    "TRICKLE_DEST_ORDERS_BACKOFF_CAP_S": "2",
    "TRICKLE_DEST_ORDERS_MAX_ATTEMPTS": "8",
    "TRICKLE_BREAKER_FAILURES": "25",
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "1000",
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": "50",
    "TRICKLE_LOG_LEVEL": "WARNING",
    "TRICKLE_DRAIN_WORKERS": "4",
}


class FlakyIngest:
    """SendMessageBatch entries fail now and then, as SQS may report them. FIFO model: when an entry
    fails, the same group's later entries in that call fail with it (they cannot overtake it)."""

    def __init__(self, sqs: Any, rate: float, rng: random.Random) -> None:
        self.rate = rate
        self.rng = rng
        self.failed = 0
        self._held: list[dict[str, Any]] = []
        sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", self.before)
        sqs.meta.events.register("after-call.sqs.SendMessageBatch", self.after)

    def before(self, params: dict[str, Any], **_: Any) -> None:
        held, sent, stopped = [], [], set()
        for entry in params["Entries"]:
            if entry["MessageGroupId"] in stopped or (
                len(params["Entries"]) > 1 and self.rng.random() < self.rate
            ):
                stopped.add(entry["MessageGroupId"])
                held.append(entry)
            else:
                sent.append(entry)
        if not sent:  # SQS refuses an empty batch; let this call through whole
            sent, held = params["Entries"], []
        params["Entries"] = sent
        self._held = held

    def after(self, parsed: dict[str, Any], **_: Any) -> None:
        self.failed += len(self._held)
        parsed.setdefault("Failed", []).extend(
            {"Id": e["Id"], "SenderFault": False, "Code": "ServiceUnavailable", "Message": "injected"}
            for e in self._held
        )


class KilledDrains:
    """Now and then a drain dies right before DeleteMessageBatch: its 2xx are in, its deletes are not.
    The third call dies if none has yet: a bulk destination makes few delete calls, and a proof
    whose fault never happened proves nothing (how many calls there are depends on timing)."""

    SURE_KILL_AT = 3

    def __init__(self, sqs: Any, rate: float, rng: random.Random) -> None:
        self.rate = rate
        self.rng = rng
        self.kills = 0
        self.calls = 0
        sqs.meta.events.register("before-call.sqs.DeleteMessageBatch", self.maybe_die)

    def maybe_die(self, **_: Any) -> None:
        self.calls += 1
        if self.rng.random() < self.rate or (self.kills == 0 and self.calls == self.SURE_KILL_AT):
            self.kills += 1
            raise RuntimeError("drain killed between the 2xx and the delete")


def run_until_settled(stack: Stack, total: int, deadline_s: float) -> dict[str, int]:
    """Poll the stream and drain until every item is delivered or dead-lettered and the queue is empty."""
    counts = {"drains": 0, "ingest_failures": 0, "drain_crashes": 0}
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            stack.ingest_new()
        except Exception:
            counts["ingest_failures"] += 1
        try:
            stack.drain()
        except RuntimeError:
            counts["drain_crashes"] += 1
        counts["drains"] += 1
        applied = {item.id for item in stack.api.applied_items()}  # a request's key, or a batch item's id
        if (
            len(applied) + stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") >= total
            and stack.queue_depth() == 0
        ):
            break
        time.sleep(0.05)
    return counts


@pytest.mark.slow
def test_2000_items_under_faults_are_each_applied_once_in_order_or_dead_lettered(stack_factory: Any) -> None:
    rng = random.Random(SEED)
    stack: Stack = stack_factory(**FAULT_ENV)
    items = demo_items(2000, 25)
    poison = {items[i]["sk"]["S"] for i in rng.sample(range(len(items)), 12)}
    faults = stack.api.faults
    faults.error_rate, faults.throttle_rate, faults.retry_after_s = 0.04, 0.01, 1
    faults.timeout_rate, faults.timeout_s, faults.reset_rate = 0.004, 0.8, 0.01
    faults.poison = frozenset(f'"sk":"{sk}"' for sk in poison)
    stack.api.reseed(SEED)
    wiring.reset()
    flaky = FlakyIngest(wiring.client("sqs"), 0.03, rng)
    killed = KilledDrains(wiring.client("sqs"), 0.02, rng)
    stack.put_items(items)

    counts = run_until_settled(stack, len(items), deadline_s=420)

    keys = [(i["pk"]["S"], i["sk"]["S"]) for i in items]
    dead = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    before = summarize(keys, stack.api.requests, len(dead), 0.0)
    statuses: dict[int, int] = {}
    for request in stack.api.requests:
        statuses[request.status] = statuses.get(request.status, 0) + 1
    print(
        f"\nfault proof: {before.inserted} items, {before.delivered} delivered, {len(dead)} dead-lettered, "
        f"{before.lost} lost, {before.duplicates} duplicates, {before.out_of_order} out of order; "
        f"{before.requests} API requests by status {dict(sorted(statuses.items()))}; "
        f"{flaky.failed} SendMessageBatch entries failed, {killed.kills} drains killed before deleting, "
        f"{counts}"
    )
    assert before.duplicates == 0
    assert before.out_of_order == 0
    assert before.lost == 0
    assert {json.loads(m["Body"])["keys"]["sk"] for m in dead} == poison
    assert all(m["MessageAttributes"]["trickle-status-code"]["StringValue"] == "400" for m in dead)
    assert all(m["MessageAttributes"]["trickle-reason"]["StringValue"] for m in dead)
    assert flaky.failed > 0 and killed.kills > 0
    assert statuses.get(429, 0) > 0 and statuses.get(503, 0) > 0 and statuses.get(0, 0) > 0

    # The poison items are fixed at the API; the dead letters are put back and redriven.
    stack.api.faults.poison = frozenset()
    for message in dead:
        stack.aws["sqs"].send_message(
            QueueUrl=stack.env["TRICKLE_DEST_ORDERS_DLQ_URL"],
            MessageBody=message["Body"],
            MessageGroupId=message["Attributes"]["MessageGroupId"],
            MessageDeduplicationId=message["MessageId"],
            MessageAttributes=message["MessageAttributes"],
        )
    report = redrive(stack.aws["sqs"], stack.env, "orders", RedriveFilter())
    run_until_settled(stack, len(items), deadline_s=120)

    after = summarize(keys, stack.api.requests, stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL"), 0.0)
    print(f"after redrive: moved {report.moved}, {after.delivered} delivered, {after.duplicates} duplicates")
    assert report.moved == len(poison)
    assert after.delivered == len(items)
    assert after.duplicates == 0


@pytest.mark.slow
def test_strict_ordering_under_faults_never_applies_a_group_out_of_order(stack_factory: Any) -> None:
    rng = random.Random(SEED + 1)
    stack: Stack = stack_factory(**FAULT_ENV, TRICKLE_DEST_ORDERS_ORDERING="strict")
    items = demo_items(300, 20)
    poison = {items[i]["sk"]["S"] for i in rng.sample(range(len(items)), 3)}
    faults = stack.api.faults
    faults.error_rate, faults.throttle_rate, faults.reset_rate = 0.05, 0.01, 0.01
    faults.poison = frozenset(f'"sk":"{sk}"' for sk in poison)
    stack.put_items(items)
    keys = [(i["pk"]["S"], i["sk"]["S"]) for i in items]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stack.ingest_new()
        stack.drain()
        halted = [r.idempotency_key for r in stack.api.requests if r.status == 400]
        if len(set(halted)) == len(poison) and stack.queue_depth() <= len(items) - len(stack.api.applied()):
            held_back = len(items) - len({r.idempotency_key for r in stack.api.applied()})
            if stack.queue_depth() == held_back:
                break
        time.sleep(0.05)
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 0  # strict: nothing dead-lettered, groups wait

    stack.api.faults.poison = frozenset()
    for message_id in set(halted):
        assert (
            operate(["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"], "retry", message_id])
            == 0
        )
    deadline = time.monotonic() + 120
    while stack.queue_depth() and time.monotonic() < deadline:
        stack.drain()
        time.sleep(0.2)

    summary = summarize(keys, stack.api.requests, 0, 0.0)
    print(
        f"\nstrict: {summary.delivered} delivered, {summary.out_of_order} out of order,"
        f" {summary.duplicates} duplicates"
    )
    assert summary.delivered == len(items)
    assert summary.out_of_order == 0
    assert summary.duplicates == 0


def test_two_destinations_one_failing_hard_the_other_delivers_at_its_own_pace(stack_factory: Any) -> None:
    """Customer items go to both destinations (tests/routes.toml). The CRM answers 503 to everything
    for a stretch; meanwhile the orders API gets every item, in order; then the CRM recovers and gets
    every item too, nothing lost or duplicated in either."""
    stack: Stack = stack_factory(
        TRICKLE_DEST_CRM_BACKOFF_BASE_S="1",
        TRICKLE_DEST_CRM_BACKOFF_CAP_S="1",
        TRICKLE_DEST_CRM_MAX_ATTEMPTS="100",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST="50",
        TRICKLE_DEST_CRM_RATE_LIMIT_PER_S="1000",
        TRICKLE_DEST_CRM_RATE_LIMIT_BURST="50",
        TRICKLE_BREAKER_FAILURES="1000",
        TRICKLE_LOG_LEVEL="WARNING",
    )
    items = [
        stack.item(f"c{i % 20:02d}", f"{i:04d}", type={"S": "customer"}, name={"S": f"n{i}"})
        for i in range(300)
    ]
    keys = [(i["pk"]["S"], i["sk"]["S"]) for i in items]
    stack.put_items(items)
    failing = True
    stack.crm_api.responder = lambda body, headers: Reply(503, "{}") if failing else None

    deadline = time.monotonic() + 180
    orders_done_at = crm_done_at = None
    crm_delivered_while_failing = 0
    while time.monotonic() < deadline and crm_done_at is None:
        stack.ingest_new()
        stack.drain("orders")
        stack.drain("crm")
        if orders_done_at is None and stack.queue_depth() == 0 and len(stack.api.applied()) >= len(items):
            orders_done_at = time.monotonic()
            crm_delivered_while_failing = len(stack.crm_api.applied())
            failing = False  # the CRM comes back once the orders API has everything
        if not failing and stack.queue_depth("TRICKLE_DEST_CRM_QUEUE_URL") == 0:
            crm_done_at = time.monotonic()

    orders = summarize(keys, stack.api.requests, stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL"), 0.0)
    crm = summarize(keys, stack.crm_api.requests, stack.queue_depth("TRICKLE_DEST_CRM_DLQ_URL"), 0.0)
    refused = sum(1 for r in stack.crm_api.requests if r.status == 503)
    print(
        f"\ntwo destinations: orders {orders.delivered}/{len(items)} delivered while the CRM failed"
        f" ({refused} CRM requests answered 503, {crm_delivered_while_failing} delivered meanwhile);"
        f" then CRM {crm.delivered}/{len(items)}; lost {orders.lost}/{crm.lost},"
        f" duplicates {orders.duplicates}/{crm.duplicates},"
        f" out of order {orders.out_of_order}/{crm.out_of_order}"
    )
    assert orders_done_at is not None and crm_done_at is not None
    assert crm_delivered_while_failing == 0 and refused > 0
    for summary in (orders, crm):
        assert (summary.delivered, summary.lost, summary.duplicates, summary.out_of_order) == (
            len(items),
            0,
            0,
            0,
        )
    assert all(r.headers.get("authorization") == f"Bearer {API_KEY}" for r in stack.crm_api.applied())


# The orders destination batched as the shipped orders_bulk is (chalicelib/routes.toml), its stand-in
# a bulk endpoint (`trickle_local.standin_bulk`) at the path its batches go to.
BULK_ENV = FAULT_ENV | {
    "TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "25",
    "TRICKLE_DEST_ORDERS_PATH": "/bulk",
    "TRICKLE_DEST_ORDERS_BATCH_WRAPPER": "{records: @}",
    "TRICKLE_DEST_ORDERS_BATCH_RESULTS": "results[].status",
}


# Its stand-in's draws, request by request (none per item without an item error rate): a 429, a
# timeout, a reset and a 503 among the first 11 requests, of the 40 the 1,000 items take at least.
BULK_SEED = 20261204


def bulk_stack(stack_factory: Any) -> Stack:
    stack: Stack = stack_factory(**BULK_ENV)
    stack.api.bulk = endpoint_for(load_settings(stack.env).destination("orders"), MAX_BODY_BYTES)
    assert stack.api.bulk is not None and stack.api.bulk.array_at == ("records",)
    return stack


def sent_ids(stack: Stack) -> dict[str, str]:
    """Each item's message id by its sort key, as the bulk requests carried them."""
    return {
        json.loads(item.body)["keys"]["sk"]: str(item.id)
        for request in stack.api.requests
        for item in request.items or ()
    }


def audit(stack: Stack, items: list[dict[str, Any]], dead: int) -> tuple[Summary, dict[int, int]]:
    keys = [(i["pk"]["S"], i["sk"]["S"]) for i in items]
    statuses: dict[int, int] = {}
    for request in stack.api.requests:
        statuses[request.status] = statuses.get(request.status, 0) + 1
    return summarize(keys, stack.api.requests, dead, 0.0), statuses


@pytest.mark.slow
def test_a_bulk_destination_under_request_faults_and_poison_items_loses_and_reorders_nothing(
    stack_factory: Any,
) -> None:
    """1,000 items over 25 groups in batches of up to 25, skip ordering: requests answered 503, 429,
    too late (applied) or not at all (reset), 12 poison items each refused alone in its batch's
    per-item results, SendMessageBatch entries failing, drains killed before their deletes. Every
    item is applied once, each group in stream order, and exactly the poison is dead-lettered."""
    rng = random.Random(SEED + 2)
    stack = bulk_stack(stack_factory)
    items = demo_items(1000, 25)
    poison = {items[i]["sk"]["S"] for i in rng.sample(range(len(items)), 12)}
    faults = stack.api.faults
    faults.error_rate, faults.throttle_rate, faults.retry_after_s = 0.05, 0.02, 1
    faults.timeout_rate, faults.timeout_s, faults.reset_rate = 0.02, 0.8, 0.02
    faults.poison = frozenset(f'"sk":"{sk}"' for sk in poison)
    stack.api.reseed(BULK_SEED)
    wiring.reset()
    flaky = FlakyIngest(wiring.client("sqs"), 0.03, rng)
    killed = KilledDrains(wiring.client("sqs"), 0.02, rng)
    stack.put_items(items)

    counts = run_until_settled(stack, len(items), deadline_s=420)

    dead = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    summary, statuses = audit(stack, items, len(dead))
    print(
        f"\nbulk fault proof: {summary.delivered} delivered, {len(dead)} dead-lettered, {summary.lost} lost,"
        f" {summary.duplicates} duplicates, {summary.out_of_order} out of order; {summary.requests}"
        f" requests ({summary.items_per_request} items each) by status {dict(sorted(statuses.items()))};"
        f" {flaky.failed} SendMessageBatch entries failed, {killed.kills} drains killed, {counts}"
    )
    assert (summary.lost, summary.duplicates, summary.out_of_order) == (0, 0, 0)
    assert summary.delivered == len(items) - len(poison)
    assert {json.loads(m["Body"])["keys"]["sk"] for m in dead} == poison
    assert all(m["MessageAttributes"]["trickle-status-code"]["StringValue"] == "400" for m in dead)
    assert summary.items_per_request > 1
    assert all(statuses.get(status, 0) > 0 for status in (207, 429, 503, 0))  # every fault happened
    replayed = [i for r in stack.api.requests for i in r.items or () if i.note == "replayed"]
    assert replayed  # a batch applied but answered too late was sent again: applied once all the same
    assert flaky.failed > 0 and killed.kills > 0


@pytest.mark.slow
def test_with_item_errors_a_bulk_destination_applies_every_item_once_and_the_ledger_agrees(
    stack_factory: Any,
) -> None:
    """A tenth of the items answered 503 on their own inside 207 answers, besides 503s for whole
    requests and 4 poison items: every item is applied exactly once or dead-lettered, and the
    ledger says so of each. A group's items after a failed one may be applied by the API before it
    (the order rule of docs/guarantees.md, Bulk delivery): counted, not asserted."""
    rng = random.Random(SEED + 3)
    stack = bulk_stack(stack_factory)
    items = demo_items(400, 10)
    poison = {items[i]["sk"]["S"] for i in rng.sample(range(len(items)), 4)}
    faults = stack.api.faults
    faults.error_rate, faults.item_error_rate = 0.03, 0.1
    faults.poison = frozenset(f'"sk":"{sk}"' for sk in poison)
    stack.api.reseed(SEED + 3)
    stack.put_items(items)

    run_until_settled(stack, len(items), deadline_s=300)

    dead = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    summary, statuses = audit(stack, items, len(dead))
    alone = sum(1 for r in stack.api.requests if r.status == 207 for i in r.items or () if i.status == 503)
    print(
        f"\nbulk item errors: {summary.delivered} delivered, {len(dead)} dead-lettered,"
        f" {summary.duplicates} duplicates, {summary.out_of_order} applied before an earlier item;"
        f" {summary.requests} requests by status {dict(sorted(statuses.items()))}, {alone} items answered"
        " 503 alone"
    )
    assert (summary.lost, summary.duplicates) == (0, 0)
    assert summary.delivered == len(items) - len(poison)
    assert {json.loads(m["Body"])["keys"]["sk"] for m in dead} == poison
    assert alone > 0  # items failed alone, the others of their request going on
    ids = sent_ids(stack)
    records = wiring.ledger("orders").read(list(ids.values()))
    assert {sk: records[i].status for sk, i in ids.items()} == {
        i["sk"]["S"]: Status.DEAD if i["sk"]["S"] in poison else Status.DELIVERED for i in items
    }
