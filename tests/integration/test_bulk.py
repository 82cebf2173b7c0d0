"""Bulk delivery end to end (issue #25): the real drain on the emulator, batches over real HTTP to a
bulk endpoint that answers per item and honours item ids, as the order rule in docs/guarantees.md
says a partly failed batch is settled."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chalicelib import bulk, wiring
from chalicelib.model import LedgerRecord, Status
from tests.integration.conftest import Stack
from trickle_deploy.operate import main as operate
from trickle_local.standin_api import Reply

BULK = {
    "TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "10",
    "TRICKLE_DEST_ORDERS_PATH": "/bulk",
    "TRICKLE_DEST_ORDERS_BATCH_WRAPPER": "{records: @}",
    "TRICKLE_DEST_ORDERS_BATCH_RESULTS": "results[].status",
    "TRICKLE_DEST_ORDERS_BACKOFF_CAP_S": "1",
}

Key = tuple[str, str]  # (pk, sk) of a stream item


@dataclass
class BulkEndpoint:
    """The API's bulk path, as the stand-in's responder: takes `{"records": [...]}`, applies each
    item once by its id (an id seen before is answered 200 and not applied again), answers
    `{"results": [{"id", "status"}, ...]}`. `fail(key, nth)` gives an item's status on its nth
    arrival (None: applied, 200); `shape(nth request, results)` may spoil the answer and
    `delay_s(nth request)` hold it (after applying, so a client's timeout leaves it applied)."""

    fail: Callable[[Key, int], int | None] = lambda key, nth: None
    shape: Callable[[int, list[dict[str, Any]]], object] = lambda nth, results: {"results": results}
    delay_s: Callable[[int], float] = lambda nth: 0.0
    applied: list[Key] = field(default_factory=list)  # in the order applied
    applied_ids: set[str] = field(default_factory=set)
    batches: list[tuple[str, list[Key]]] = field(default_factory=list)  # (Idempotency-Key, items) per request
    sizes: list[int] = field(default_factory=list)  # body bytes per request
    ids: dict[Key, str] = field(default_factory=dict)  # each item's id (its message id)
    _arrivals: dict[Key, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, body: str, headers: dict[str, str]) -> Reply:
        records = json.loads(body)["records"]
        with self._lock:
            nth = len(self.batches)
            keys = [(r["keys"]["pk"], r["keys"]["sk"]) for r in records]
            self.batches.append((headers.get("idempotency-key", ""), keys))
            self.sizes.append(len(body.encode()))
            results = []
            for record, key in zip(records, keys, strict=True):
                self.ids[key] = record["id"]
                arrival = self._arrivals.get(key, 0)
                self._arrivals[key] = arrival + 1
                status = self.fail(key, arrival)
                if status is None:
                    status = 200
                    if record["id"] not in self.applied_ids:
                        self.applied_ids.add(record["id"])
                        self.applied.append(key)
                results.append({"id": record["id"], "status": status})
        return Reply(200, json.dumps(self.shape(nth, results)), delay_s=self.delay_s(nth))

    def by_group(self) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for pk, sk in self.applied:
            seen.setdefault(pk, []).append(sk)
        return seen


def bulk_stack(stack_factory: Any, endpoint: BulkEndpoint, **overrides: str) -> Stack:
    stack: Stack = stack_factory(**BULK | overrides)
    stack.api.responder = endpoint
    return stack


def records(endpoint: BulkEndpoint) -> dict[Key, LedgerRecord]:
    """The ledger's record of each item the API was sent, by (pk, sk); none for an item unsettled."""
    found = wiring.ledger("orders").read(list(endpoint.ids.values()))
    return {key: found[i] for key, i in endpoint.ids.items() if i in found}


def sks(n: int) -> list[str]:
    return [f"{i:03}" for i in range(n)]


def dead_letters(stack: Stack) -> list[tuple[str, str]]:
    """Each dead letter's sort key and reason."""
    taken = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    return [
        (json.loads(m["Body"])["keys"]["sk"], m["MessageAttributes"]["trickle-reason"]["StringValue"])
        for m in taken
    ]


def test_item_3_of_10_poison_is_dead_lettered_and_the_rest_delivered_in_one_request(
    stack_factory: Any,
) -> None:
    """Skip ordering: the request's write settles items 1-3; 4-10 stand on their own 200s once 3 is
    dead-lettered."""
    endpoint = BulkEndpoint(fail=lambda key, nth: 400 if key[1] == "002" else None)
    stack = bulk_stack(stack_factory, endpoint)
    stack.fill(groups=1, per_group=10)

    report = stack.drain()

    assert (report["delivered"], report["dead_lettered"], report["stopped_by"]) == (9, 1, "empty")
    assert [keys for _, keys in endpoint.batches] == [[("g0", sk) for sk in sks(10)]]
    assert endpoint.by_group() == {"g0": [sk for sk in sks(10) if sk != "002"]}
    assert dead_letters(stack) == [("002", "HTTP 400: refused by the API")]
    settled = records(endpoint)
    assert settled[("g0", "002")].status is Status.DEAD
    assert {k: (r.status, r.attempts) for k, r in settled.items() if k[1] != "002"} == {
        ("g0", sk): (Status.DELIVERED, 1) for sk in sks(10) if sk != "002"
    }
    assert stack.queue_depth() == 0


def test_item_3_of_10_poison_in_strict_order_halts_and_the_items_after_it_wait_unsettled(
    stack_factory: Any,
) -> None:
    """Strict ordering: 3 halts its group; 4-10, which the API applied, go back behind it with no
    attempt counted and are not delivered until the operator acts; sent again then with the same
    item ids, the API applies none of them twice."""
    endpoint = BulkEndpoint(fail=lambda key, nth: 400 if key[1] == "002" else None)
    stack = bulk_stack(stack_factory, endpoint, TRICKLE_DEST_ORDERS_ORDERING="strict")
    stack.fill(groups=1, per_group=10)

    report = stack.drain()

    assert (report["delivered"], report["halted"]) == (2, 1)
    settled = records(endpoint)
    assert settled[("g0", "002")].status is Status.HALTED
    assert all(("g0", sk) not in settled for sk in sks(10)[3:])  # unsettled, though applied
    assert endpoint.by_group() == {"g0": ["000", "001", *sks(10)[3:]]}

    halted = endpoint.ids[("g0", "002")]
    assert operate(["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"], "skip", halted]) == 0
    stack.drain_until(lambda _: stack.queue_depth() == 0)

    first_ids = [endpoint.ids[("g0", sk)] for sk in sks(10)[3:]]
    assert [keys for _, keys in endpoint.batches[1:]] == [[("g0", sk) for sk in sks(10)[3:]]]
    assert all(endpoint.ids[("g0", sk)] == i for sk, i in zip(sks(10)[3:], first_ids, strict=True))
    assert endpoint.by_group() == {"g0": [sk for sk in sks(10) if sk != "002"]}  # none applied twice
    assert {(r.status, r.attempts) for k, r in records(endpoint).items() if k[1] != "002"} == {
        (Status.DELIVERED, 1)
    }
    assert dead_letters(stack) == [("002", "skipped by an operator")]


def test_a_503_for_one_groups_second_item_while_other_groups_succeed(stack_factory: Any) -> None:
    """g1's second item gets a 503 once: g1's first and the other groups are delivered by that
    request; g1's third, applied by the API, goes back unsettled behind the second and is sent
    again with it, applied once."""
    endpoint = BulkEndpoint(fail=lambda key, nth: 503 if key == ("g1", "001") and nth == 0 else None)
    stack = bulk_stack(stack_factory, endpoint)
    stack.fill(groups=3, per_group=3)

    report = stack.drain()

    assert (report["delivered"], report["retried"], report["blocked_groups"]) == (
        7,
        1,
        ['trickle-local-items#"g1"'],
    )
    assert len(endpoint.batches) == 1 and len(endpoint.batches[0][1]) == 9
    settled = records(endpoint)
    assert (settled[("g1", "001")].status, settled[("g1", "001")].attempts) == (Status.FAILED, 1)
    assert ("g1", "002") not in settled
    assert ("g1", "002") in endpoint.applied  # applied by the API all the same

    stack.drain_until(lambda _: stack.queue_depth() == 0)

    assert [keys for _, keys in endpoint.batches[1:]] == [[("g1", "001"), ("g1", "002")]]
    assert endpoint.batches[1][0] != endpoint.batches[0][0]  # another batch, another key
    # applied once each; g1's third was applied by the API before its second (its own doing, inside
    # the first request), but never counted delivered before it
    assert endpoint.by_group() == {"g0": sks(3), "g1": ["000", "002", "001"], "g2": sks(3)}
    final = records(endpoint)
    assert (final[("g1", "001")].attempts, final[("g1", "002")].attempts) == (2, 1)
    assert final[("g1", "002")].first_attempt_at == final[("g1", "001")].last_attempt_at  # one write


def test_an_answer_of_the_wrong_length_fails_the_whole_request_and_is_never_a_success(
    stack_factory: Any,
) -> None:
    """The first answer lists one result fewer than the items: nothing is delivered on it (each
    group's first item counts a failed attempt), and the retried batch is delivered."""
    endpoint = BulkEndpoint(shape=lambda nth, results: {"results": results[:-1] if nth == 0 else results})
    stack = bulk_stack(stack_factory, endpoint)
    stack.fill(groups=2, per_group=3)

    report = stack.drain()

    assert (report["delivered"], report["retried"]) == (0, 2)
    assert stack.queue_depth() == 6
    settled = records(endpoint)
    assert {k: (r.status, r.attempts) for k, r in settled.items()} == {
        ("g0", "000"): (Status.FAILED, 1),
        ("g1", "000"): (Status.FAILED, 1),
    }
    assert settled[("g0", "000")].last_error == (
        "the answer could not be mapped to the items:"
        " batch_results 'results[].status' gave 5 statuses for 6 items"
    )

    reports = stack.drain_until(lambda _: stack.queue_depth() == 0)

    assert sum(r["delivered"] for r in reports) == 6
    assert endpoint.by_group() == {"g0": sks(3), "g1": sks(3)}  # applied once: the ids were honoured


def test_a_batch_that_timed_out_after_the_api_applied_it_is_sent_again_and_applied_once(
    stack_factory: Any,
) -> None:
    """The first request is applied but answered too late: the drain counts a failed attempt for
    the group's head and keeps the rest unsettled; the retried batch is the same batch (same items,
    same Idempotency-Key), and the API, knowing the item ids, applies nothing twice."""
    endpoint = BulkEndpoint(delay_s=lambda nth: 2.0 if nth == 0 else 0.0)
    stack = bulk_stack(
        stack_factory,
        endpoint,
        TRICKLE_DEST_ORDERS_READ_TIMEOUT_S="0.5",
        TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S="0.5",
    )
    stack.fill(groups=1, per_group=5)

    report = stack.drain()

    assert (report["delivered"], report["retried"]) == (0, 1)
    assert endpoint.by_group() == {"g0": sks(5)}  # applied before the answer came
    settled = records(endpoint)
    assert list(settled) == [("g0", "000")] and settled[("g0", "000")].last_error == "timeout"

    stack.drain_until(lambda _: stack.queue_depth() == 0)

    (first_key, first), (again_key, again) = endpoint.batches
    assert again == first and again_key == first_key == bulk.batch_key(endpoint.ids[k] for k in first)
    assert endpoint.by_group() == {"g0": sks(5)}  # nothing applied twice
    assert [r.status for r in records(endpoint).values()] == [Status.DELIVERED] * 5
    assert records(endpoint)[("g0", "000")].attempts == 2


def test_a_batch_is_cut_by_batch_max_bytes(stack_factory: Any) -> None:
    """Envelopes of about 400 bytes, 1,024 bytes a request: two items each, in order, never over."""
    endpoint = BulkEndpoint()
    stack = bulk_stack(
        stack_factory,
        endpoint,
        TRICKLE_MAX_MESSAGE_BYTES="1024",
        TRICKLE_DEST_ORDERS_BATCH_MAX_BYTES="1024",
    )
    stack.fill(groups=1, per_group=6)

    reports = stack.drain_until(lambda _: stack.queue_depth() == 0)

    assert sum(r["delivered"] for r in reports) == 6
    assert [keys for _, keys in endpoint.batches] == [
        [("g0", a), ("g0", b)] for a, b in zip(sks(6)[::2], sks(6)[1::2], strict=True)
    ]
    assert all(size <= 1024 for size in endpoint.sizes)
    assert min(endpoint.sizes) > 1024 / 2  # so a third item could never have fit
    assert endpoint.by_group() == {"g0": sks(6)}


def test_a_clean_batched_run_writes_the_ledger_once_per_request_and_not_again(stack_factory: Any) -> None:
    """Ten messages, one request: one read of the round, one transaction of ten updates, and no
    BatchWriteItem of the same deliveries when the group finishes."""
    endpoint = BulkEndpoint()
    stack = bulk_stack(stack_factory, endpoint, TRICKLE_DRAIN_WORKERS="1")
    stack.fill(groups=2, per_group=5)
    first = len(stack.recorder.calls)

    report = stack.drain()

    calls = Counter(c.operation for c in stack.recorder.calls[first:] if c.service == "dynamodb")
    assert report["delivered"] == 10 and len(endpoint.batches) == 1
    # PutItem: the run lease and the run note; DeleteItem: the lease given back; GetItem: the pause
    # note, the open redrive jobs and the last run's note; UpdateItem: the running totals; the
    # transaction recorded as the ten writes IAM authorises it by
    assert calls == {
        "BatchGetItem": 1,
        "TransactWriteItems": 10,
        "PutItem": 2,
        "DeleteItem": 1,
        "GetItem": 3,
        "UpdateItem": 1,
    }
