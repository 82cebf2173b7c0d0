"""The drain's worker pool: groups in parallel, each strictly in order, one rate limit for all."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.integration.conftest import Stack


def test_groups_go_in_parallel_and_each_stays_in_order(stack_factory: Any) -> None:
    stack: Stack = stack_factory(TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000")
    stack.fill(groups=8, per_group=6)
    stack.api.faults.latency_s = 0.03

    report = stack.drain()

    assert report["delivered"] == 48
    assert stack.delivered_by_group() == {f"g{g}": [f"{i:03}" for i in range(6)] for g in range(8)}
    assert 1 < stack.api.max_in_flight <= 4


def test_one_worker_sends_one_request_at_a_time(stack_factory: Any) -> None:
    stack: Stack = stack_factory(TRICKLE_DRAIN_WORKERS="1", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000")
    stack.fill(groups=4, per_group=3)
    stack.api.faults.latency_s = 0.02

    stack.drain()

    assert stack.api.max_in_flight == 1


def test_the_rate_limit_holds_across_all_workers(stack_factory: Any) -> None:
    stack: Stack = stack_factory(
        TRICKLE_DRAIN_WORKERS="4",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="20",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST="2",
    )
    stack.fill(groups=8, per_group=3)

    stack.drain()

    arrivals = sorted(r.arrived_at for r in stack.api.requests)
    assert len(arrivals) == 24
    assert arrivals[-1] - arrivals[0] >= (24 - 2) / 20 * 0.9


def test_a_failing_group_does_not_hold_back_the_others_under_parallelism(stack_factory: Any) -> None:
    stack: Stack = stack_factory(TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000")
    stack.fill(groups=6, per_group=4)
    stack.api.faults.poison = frozenset()
    from trickle_local.standin_api import Reply

    stack.api.responder = lambda body, headers: Reply(503, "{}") if '"pk":"g2","sk":"001"' in body else None

    stack.drain()

    delivered = stack.delivered_by_group()
    assert delivered["g2"] == ["000"]
    assert all(delivered[f"g{g}"] == [f"{i:03}" for i in range(4)] for g in range(6) if g != 2)


def test_a_round_holds_five_messages_per_worker_read_and_written_in_one_ledger_call(
    stack_factory: Any,
) -> None:
    """4 workers: a round gathers 20 messages over several receives, so 30 messages take at least two
    rounds, each with one ledger read and one ledger write, and every group still arrives in order."""
    stack: Stack = stack_factory(TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000")
    stack.fill(groups=10, per_group=3)
    first = len(stack.recorder.calls)

    report = stack.drain()

    operations = Counter(c.operation for c in stack.recorder.calls[first:])
    assert report["delivered"] == 30
    rounds = operations["BatchGetItem"]
    assert rounds >= 2
    assert operations["ReceiveMessage"] >= 2 * rounds  # receives of at most 10 gathered into rounds of 20
    assert operations["BatchWriteItem"] == rounds
    assert stack.delivered_by_group() == {f"g{g}": [f"{i:03}" for i in range(3)] for g in range(10)}
