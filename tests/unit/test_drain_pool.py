"""The drain's worker pool against in-memory fakes of its ports (queue, ledger, API): groups go in
parallel, each strictly in order, and one rate limit holds for every worker. The drain runs on a
`FakeClock`: the rate limit's waits move it instead of taking time, and no deadline lapses unless a
test's API moves it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import pytest

from chalicelib.drain import FINISH_MESSAGES, Drainer
from chalicelib.drain_state import GroupResult, InFlight
from chalicelib.model import Status
from tests.fakes import FakeClock, FakeDeadLetters, FakeFifo, FakeLedger, FakeMetrics, SlowApi
from tests.unit.conftest import MakeSettings


def drain(
    make_settings: MakeSettings, api: SlowApi, queue: FakeFifo, clock: FakeClock | None = None, **env: str
) -> tuple[Any, FakeLedger]:
    ledger = FakeLedger()
    settings = make_settings(TRICKLE_DRAIN_BUDGET="1000", **env)
    drainer = Drainer(
        queue,
        FakeDeadLetters(),
        ledger,
        api,
        settings.destination("orders"),
        settings,
        metrics=FakeMetrics,
        clock=clock or FakeClock(),
    )
    return drainer.run(lambda: 10**9), ledger


def test_groups_are_delivered_in_parallel_each_in_order(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.001, overlap=2), FakeFifo(groups=8, per_group=5)

    report, ledger = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000"
    )

    assert report.delivered == 40
    assert api.order_by_group() == {str(g): list(range(5)) for g in range(8)}
    assert 1 < api.max_in_flight <= 4
    assert sorted(queue.deleted) == sorted(ledger.records)
    assert {r.status for r in ledger.records.values()} == {Status.DELIVERED}
    assert queue.depth() == 0


def test_one_worker_sends_one_request_at_a_time(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.005), FakeFifo(groups=4, per_group=3)

    report, _ = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="1", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000"
    )

    assert report.delivered == 12
    assert api.max_in_flight == 1
    assert api.order_by_group() == {str(g): [0, 1, 2] for g in range(4)}


def test_one_rate_limit_spaces_the_requests_of_every_worker(make_settings: MakeSettings) -> None:
    clock = FakeClock()
    began = clock.monotonic()
    api, queue = SlowApi(0.0), FakeFifo(groups=8, per_group=2)

    report, _ = drain(
        make_settings,
        api,
        queue,
        clock,
        TRICKLE_DRAIN_WORKERS="8",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="50",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST="1",
    )

    assert report.delivered == 16
    # 16 requests at 50/s with a burst of 1 wait the clock on by at least 15/50 s whatever the worker
    # count; a limit per worker would let eight workers send their two each after 1/50 s (8/50 s).
    assert clock.monotonic() - began >= 15 / 50 - 1e-6
    assert api.order_by_group() == {str(g): [0, 1] for g in range(8)}


def test_a_spent_budget_ends_receiving_but_not_the_deliveries_under_way(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.002), FakeFifo(groups=8, per_group=5)
    ledger = FakeLedger()
    settings = make_settings(
        TRICKLE_DRAIN_BUDGET="7", TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000"
    )
    drainer = Drainer(
        queue,
        FakeDeadLetters(),
        ledger,
        api,
        settings.destination("orders"),
        settings,
        metrics=FakeMetrics,
    )

    report = drainer.run(lambda: 10**9)

    assert (report.received, report.delivered, report.released) == (7, 7, 0)
    assert report.stopped_by == "budget"
    assert len(queue.deleted) == 7 and queue.in_flight == []


def test_a_group_longer_than_a_round_is_drained_whole_and_in_order(make_settings: MakeSettings) -> None:
    """A receive finds nothing of a group while part of it is in flight; once the round is settled
    the run receives the rest."""
    api, queue = SlowApi(0.001), FakeFifo(groups=1, per_group=35)

    report, _ = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000"
    )

    assert report.delivered == 35
    assert report.stopped_by == "empty"
    assert api.order_by_group() == {"0": list(range(35))}


def test_messages_whose_visibility_would_lapse_mid_attempt_go_back_unattempted(
    make_settings: MakeSettings,
) -> None:
    """Visibility 3 s, attempts of up to 1 s (connect + read): nothing is attempted later than 1 s
    after its receive; the rest of the group goes back, head first, and a later round sends it.
    Each request takes 0.3 s on the clock: the fifth would start 1.2 s after the receive."""
    clock = FakeClock()
    api, queue = SlowApi(0.3, clock), FakeFifo(groups=1, per_group=6)

    report, _ = drain(
        make_settings,
        api,
        queue,
        clock,
        TRICKLE_DRAIN_WORKERS="1",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000",
        TRICKLE_VISIBILITY_TIMEOUT_SECONDS="3",
        TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S="0.5",
        TRICKLE_DEST_ORDERS_READ_TIMEOUT_S="0.5",
        TRICKLE_DEST_CRM_CONNECT_TIMEOUT_S="0.5",
        TRICKLE_DEST_CRM_READ_TIMEOUT_S="0.5",
    )

    assert (report.received, report.delivered, report.released) == (8, 6, 2)
    assert api.order_by_group() == {"0": list(range(6))}
    assert [at - api.started[0][0] for at, _ in api.started] == pytest.approx([0, 0.3, 0.6, 0.9, 1.2, 1.5])


def test_a_full_round_is_received_while_the_last_one_is_delivered(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.02), FakeFifo(groups=20, per_group=1)

    report, _ = drain(make_settings, api, queue, TRICKLE_DRAIN_WORKERS="2")

    assert report.delivered == 20
    assert queue.receives[:2] == [(0, 10), (10, 10)]


def test_a_short_round_finishes_before_the_next_receive(make_settings: MakeSettings) -> None:
    """A receive that came back short found every other group in flight or the queue empty: it ends
    the round, and receiving again before the round finishes would cost a request that comes back
    empty."""
    api, queue = SlowApi(0.02), FakeFifo(groups=2, per_group=3)

    report, _ = drain(make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4")

    assert report.delivered == 6
    assert queue.receives == [(0, 6), (0, 0)]


class OneSlowGroupApi(SlowApi):
    """Group 0's head answers once `others` second messages (`g<n>:1`) have been sent, or after
    `wait_s`; every other request at once."""

    def __init__(self, others: int, wait_s: float = 10.0) -> None:
        super().__init__(0.0)
        self.others = others
        self.wait_s = wait_s
        self._others_sent_again = threading.Event()

    def wait(self, body: str) -> None:
        if body == "g0:0":
            self._others_sent_again.wait(self.wait_s)
        elif body.endswith(":1"):
            with self._lock:
                if len([b for _, b in self.started if b.endswith(":1")]) == self.others:
                    self._others_sent_again.set()


def test_groups_that_finish_are_received_again_while_a_slow_one_is_in_flight(
    make_settings: MakeSettings,
) -> None:
    api, queue = OneSlowGroupApi(others=20), FakeFifo(groups=21, per_group=2, one_per_group=True)

    report, _ = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000"
    )

    assert report.delivered == 42
    second_sends = [at for at, body in api.started if body.endswith(":1") and not body.startswith("g0:")]
    assert len(second_sends) == 20
    slow_head_done_at = next(at for at, body in api.ended if body == "g0:0")
    assert min(second_sends) < slow_head_done_at
    assert api.order_by_group() == {str(g): [0, 1] for g in range(21)}


def receive_rounds(receives: list[tuple[int, int]], target: int) -> list[list[tuple[int, int]]]:
    """`FakeFifo.receives` split into the drain's rounds: receives of ten until the round holds
    `target` messages or one comes back short."""
    rounds: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for receive in receives:
        current.append(receive)
        if receive[1] < 10 or sum(got for _, got in current) >= target:
            rounds.append(current)
            current = []
    assert not current, "the run ended within a round"
    return rounds


def test_a_backlog_costs_a_ledger_read_per_round_and_a_write_per_finish(make_settings: MakeSettings) -> None:
    """What a clean backlog costs besides its POSTs: one ledger read per round of five messages per
    worker and one write per FINISH_MESSAGES finished (one BatchWriteItem, two delete batches).

    How many rounds come back short depends on thread timing: a finish takes every group done by
    then (twenty messages or more), and after a larger one a third round fits under two in hand,
    finding most groups in flight. So the receives are checked against the drain's rules, not
    counted against a figure that holds only when the workers finish in step."""
    api, queue = SlowApi(0.001), FakeFifo(groups=50, per_group=4)

    report, ledger = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000"
    )

    assert report.delivered == 200
    target = 4 * 5
    rounds = receive_rounds(queue.receives, target)
    sizes = [sum(got for _, got in receives) for receives in rounds]
    # one consistent ledger read per round, of exactly the round's messages
    assert ledger.reads == [size for size in sizes if size]
    for index, receives in enumerate(rounds):
        # a round is received in one go (nothing finished between its receives), and only while
        # fewer than two rounds are in hand
        assert all(later[0] == earlier[0] + earlier[1] for earlier, later in pairwise(receives))
        assert receives[0][0] < 2 * target
        if sizes[index] < target and index + 1 < len(rounds):
            # it came back short, so the queue had nothing more to give: the next round waits for
            # a finish rather than cost a receive that comes back empty
            last, following = receives[-1], rounds[index + 1][0]
            assert following[0] < last[0] + last[1], (index, queue.receives)
    assert rounds[-1] == [(0, 0)]  # the run ends on an empty queue, nothing in flight
    # so the receives are what the rounds read cost: a full round two, a short one a receive more
    # than its tens, a round that found nothing one
    assert len(queue.receives) == sum(n // 10 + (n < target) for n in ledger.reads) + sizes.count(0)
    assert FINISH_MESSAGES == 20
    assert sum(ledger.writes) == 200 and len(ledger.writes) <= 200 // 20 + 2


def test_even_one_worker_takes_a_rounds_worth_per_ledger_read(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.001), FakeFifo(groups=40, per_group=1)

    report, ledger = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="1", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000"
    )

    assert report.delivered == 40
    assert ledger.reads == [20, 20]
    assert api.max_in_flight == 1


def test_finished_groups_are_taken_once_they_hold_enough_messages() -> None:
    """`take_done` hands over finished groups a finish's worth at a time (or all that are left), in
    the order they finished, without scanning every future in flight."""
    gates = [threading.Event() for _ in range(3)]
    in_flight = InFlight()
    with ThreadPoolExecutor(max_workers=3) as pool:
        for gate, size in zip(gates, (10, 10, 5), strict=True):
            result = GroupResult(delivered=[])
            in_flight.add(pool.submit(lambda g=gate, r=result: (g.wait(5), r)[1]), size)
        gates[1].set()
        assert in_flight.take_done(20, wait=False) == []  # 10 finished: not a finish's worth yet
        gates[0].set()
        assert len(in_flight.take_done(20, wait=True)) == 2
        assert in_flight.messages == 5 and in_flight
        gates[2].set()
        assert len(in_flight.take_done(20, wait=True)) == 1  # all that are left
        assert in_flight.messages == 0 and not in_flight


def test_a_group_whose_worker_raised_raises_and_the_others_are_still_finished() -> None:
    def fails() -> GroupResult:
        raise RuntimeError("DynamoDB unavailable")

    in_flight = InFlight()
    with ThreadPoolExecutor(max_workers=2) as pool:
        in_flight.add(pool.submit(GroupResult), 3)
        in_flight.add(pool.submit(fails), 2)
        with pytest.raises(RuntimeError, match="unavailable"):
            in_flight.take_done(5, wait=True)
        assert in_flight.messages == 5  # nothing was taken
        assert len(in_flight.take_finished()) == 1
        assert in_flight.messages == 0 and not in_flight
