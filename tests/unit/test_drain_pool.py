"""The drain's worker pool against in-memory fakes of its ports (queue, ledger, API): groups go in
parallel, each strictly in order, and one rate limit holds for every worker. The drain runs on a
`FakeClock`: the rate limit's waits move it instead of taking time, and no deadline lapses unless a
test's API moves it."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import pairwise
from typing import Any

import pytest

from chalicelib.drain import FINISH_MESSAGES, Drainer
from chalicelib.drain_state import (
    GroupResult,
    InFlight,
    finishes_on_worker,
    receive_size,
    visible_after,
    visible_freed,
)
from chalicelib.model import Settlement, Status
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


def bulk_queue(groups: int, per_group: int) -> FakeFifo:
    """A queue of JSON bodies (as a batch takes them) that gives one message per group per receive,
    as both emulators do with the bench's backlog written interleaved over 50 groups."""
    queue = FakeFifo(groups=groups, per_group=per_group, one_per_group=True)
    queue.waiting = [replace(m, body=json.dumps({"m": m.body})) for m in queue.waiting]
    return queue


def test_a_batched_round_in_hand_counts_every_message_of_its_jobs(make_settings: MakeSettings) -> None:
    """A job's worker takes its groups as it starts: the round counts the job's messages before
    that, so two rounds in hand (40 at one worker) stop the receiving until a finish."""
    queue = bulk_queue(groups=40, per_group=1)

    report, ledger = drain(
        make_settings,
        SlowApi(0.001),
        queue,
        TRICKLE_DRAIN_WORKERS="1",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000",
        TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="10",
    )

    assert report.delivered == 40
    assert ledger.reads == [20, 20]
    assert max(in_flight for in_flight, _ in queue.receives) < 40, queue.receives


def test_a_batched_drain_does_not_ask_again_a_queue_that_gave_all_it_had(make_settings: MakeSettings) -> None:
    """The bench's backlog (issue #25): 1,000 messages over 50 groups, one per group per receive, 4
    workers, batches of 10 (a round's target 40). Each finish frees 20 to 30 groups; a round that
    asked again once it had received them came back empty, about 0.14 receives per message against
    the single-item drain's 0.1. Counting what the queue can give, the run asks for no more: one
    empty receive when it first finds every group in flight, a few at the end as groups run out."""
    queue = bulk_queue(groups=50, per_group=20)

    report, _ = drain(
        make_settings,
        SlowApi(0.001),
        queue,
        TRICKLE_DRAIN_WORKERS="4",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1000",
        TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="10",
    )

    assert report.delivered == 1000 and queue.depth() == 0
    assert len(queue.receives) <= 1000 // 10 + 10, queue.receives


@pytest.mark.parametrize(
    ("held", "in_hand", "target", "budget_left", "visible", "asked"),
    [
        (0, 0, 40, 1000, None, 10),  # not known: ask
        (30, 0, 40, 1000, None, 10),  # short of the target
        (40, 0, 40, 1000, None, 0),  # the round holds its target
        (0, 0, 40, 7, None, 7),  # the budget's last messages
        (10, 0, 40, 0, None, 0),  # the budget is spent
        (20, 30, 40, 1000, 0, 0),  # the queue gave all it had, a round's worth in hand: done
        (0, 40, 40, 1000, 0, 0),  # the same before the round's first receive: wait for a finish
        (20, 10, 40, 1000, 0, 10),  # less than a round's worth in hand: ask all the same
        (0, 0, 40, 1000, 0, 10),  # nothing in hand: only a receive tells the queue is empty
        (20, 30, 40, 1000, 3, 10),  # some may be visible: a full receive, the queue may give more
    ],
)
def test_a_rounds_next_receive_asks_for_what_the_queue_may_still_give(
    held: int, in_hand: int, target: int, budget_left: int, visible: int | None, asked: int
) -> None:
    assert receive_size(held, in_hand, target, budget_left, visible) == asked


@pytest.mark.parametrize(
    ("visible", "asked", "got", "after"),
    [
        (None, 10, 10, None),  # still not known
        (None, 10, 4, 0),  # short: the queue gave all it could
        (25, 10, 10, 15),
        (10, 10, 10, 0),  # what was freed is received: a receive more would come back empty
        (5, 10, 10, None),  # more than counted (new messages, several of a group): not known
        (25, 7, 0, 0),
    ],
)
def test_what_the_queue_can_give_after_a_receive(
    visible: int | None, asked: int, got: int, after: int | None
) -> None:
    assert visible_after(visible, asked, got) == after


@pytest.mark.parametrize(("visible", "finished", "after"), [(None, 20, None), (0, 20, 20), (5, 0, 5)])
def test_finished_messages_let_the_queue_give_as_many_again(
    visible: int | None, finished: int, after: int | None
) -> None:
    assert visible_freed(visible, finished) == after


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


@pytest.mark.parametrize(
    ("requests", "workers", "on_worker"),
    [
        pytest.param([], 4, False, id="nothing-to-write"),
        pytest.param([10], 4, False, id="a-request-of-ten"),
        pytest.param([10, 9], 4, False, id="nineteen"),
        pytest.param([10, 10], 4, True, id="twenty-over-two-requests"),
        pytest.param([20], 2, True, id="a-request-of-twenty"),
        pytest.param([50], 4, True, id="a-request-of-fifty"),
        pytest.param([50], 1, False, id="the-only-worker"),
        pytest.param([0, 0], 4, False, id="requests-with-nothing-to-write"),
    ],
)
def test_a_batched_job_with_a_transactions_worth_to_write_finishes_on_its_worker(
    requests: list[int], workers: int, on_worker: bool
) -> None:
    """Settlements per request of the job, the run's workers -> whether the job's worker writes and
    deletes them itself: a job of fewer shares the run's thread's transactions (as many AWS requests
    per message as the single-item relay's writes); the only worker goes on to its next request
    while the run's thread finishes."""
    written = [
        [Settlement(f"m{r}-{i}", "g", Status.DELIVERED, 200, "", counted=True) for i in range(n)]
        for r, n in enumerate(requests)
    ]
    assert finishes_on_worker(written, workers) is on_worker
