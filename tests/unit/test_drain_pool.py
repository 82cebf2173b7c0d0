"""The drain's worker pool against in-memory fakes of its ports (queue, ledger, API): groups go in
parallel, each strictly in order, and one rate limit holds for every worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from conftest import MakeSettings

from chalicelib.api_client import ApiResponse
from chalicelib.drain import Drainer
from chalicelib.fifo_queue import ReceivedMessage
from chalicelib.ledger import LedgerRecord, Status


class FakeFifo:
    """SQS FIFO's contract as the drain relies on it: receive at most 10, oldest first per group,
    and no message of a group while another of that group is in flight."""

    def __init__(self, groups: int, per_group: int, one_per_group: bool = False) -> None:
        self.one_per_group = one_per_group  # per call, as when the queue interleaves its groups
        self.waiting = [
            ReceivedMessage(f"g{g}-{i}", f"g{g}", f"rh-g{g}-{i}", f"{g}:{i}", 1, copy_id=f"c-g{g}-{i}")
            for i in range(per_group)
            for g in range(groups)
        ]
        self.in_flight: list[ReceivedMessage] = []
        self.deleted: list[str] = []
        self.receives: list[tuple[int, int]] = []  # (in flight before, received) per call
        self._lock = threading.Lock()

    def receive(self, max_messages: int, visibility_s: int) -> list[ReceivedMessage]:
        with self._lock:
            busy = {m.group_id for m in self.in_flight}
            taken: list[ReceivedMessage] = []
            for message in list(self.waiting):
                if len(taken) == min(10, max_messages):
                    break
                taken_here = any(t.group_id == message.group_id for t in taken)
                if message.group_id in busy and (self.one_per_group or not taken_here):
                    continue
                taken.append(message)
                self.waiting.remove(message)
                busy.add(message.group_id)
            self.receives.append((len(self.in_flight), len(taken)))
            self.in_flight += taken
            return taken

    def change_visibility(self, changes: Sequence[tuple[ReceivedMessage, int]]) -> list[Any]:
        with self._lock:
            for message, _ in reversed(changes):
                self.in_flight.remove(message)
                self.waiting.insert(0, message)
        return []

    def delete(self, messages: Sequence[ReceivedMessage]) -> list[Any]:
        with self._lock:
            for message in messages:
                self.in_flight.remove(message)
                self.deleted.append(message.message_id)
        return []

    def depth(self) -> int:
        return len(self.waiting) + len(self.in_flight)


class FakeLedger:
    def __init__(self) -> None:
        self.records: dict[str, LedgerRecord] = {}

    def read(self, message_ids: Sequence[str]) -> dict[str, LedgerRecord]:
        return {i: self.records[i] for i in message_ids if i in self.records}

    def write(self, records: Sequence[LedgerRecord]) -> None:
        self.records.update((r.message_id, r) for r in records)

    def settle(self, message_id: str, group_id: str, status: Status, *_: Any, **__: Any) -> LedgerRecord:
        prior = self.records.get(message_id)
        record = LedgerRecord(message_id, status, (prior.attempts if prior else 0) + 1, group_id)
        self.records[message_id] = record
        return record


class SlowApi:
    """Answers 200 after `latency_s`, recording when each request started and ended and how many
    overlapped."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.started: list[tuple[float, str]] = []
        self.ended: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def post(self, body: str, idempotency_key: str) -> ApiResponse:
        with self._lock:
            self.started.append((time.monotonic(), body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.latency(body))
        with self._lock:
            self.in_flight -= 1
            self.ended.append((time.monotonic(), body))
        return ApiResponse(status=200)

    def latency(self, body: str) -> float:
        return self.latency_s

    def order_by_group(self) -> dict[str, list[int]]:
        seen: dict[str, list[int]] = {}
        for _, body in self.started:
            group, index = body.split(":")
            seen.setdefault(group, []).append(int(index))
        return seen


def drain(make_settings: MakeSettings, api: SlowApi, queue: FakeFifo, **env: str) -> tuple[Any, FakeLedger]:
    ledger = FakeLedger()
    settings = make_settings(TRICKLE_DRAIN_BUDGET="1000", **env)
    drainer = Drainer(queue, queue, ledger, api, lambda: None, settings)  # type: ignore[arg-type]
    return drainer.run(lambda: 10**9), ledger


def test_groups_are_delivered_in_parallel_each_in_order(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.01), FakeFifo(groups=8, per_group=5)

    report, ledger = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4", TRICKLE_RATE_LIMIT_PER_SECOND="1000"
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
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="1", TRICKLE_RATE_LIMIT_PER_SECOND="1000"
    )

    assert report.delivered == 12
    assert api.max_in_flight == 1
    assert api.order_by_group() == {str(g): [0, 1, 2] for g in range(4)}


def test_one_rate_limit_spaces_the_requests_of_every_worker(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.0), FakeFifo(groups=8, per_group=2)

    report, _ = drain(
        make_settings,
        api,
        queue,
        TRICKLE_DRAIN_WORKERS="8",
        TRICKLE_RATE_LIMIT_PER_SECOND="50",
        TRICKLE_RATE_LIMIT_BURST="1",
    )

    starts = sorted(t for t, _ in api.started)
    assert report.delivered == 16
    # 16 requests at 50/s with a burst of 1 span at least 15/50 s whatever the worker count; a limit
    # per worker would let eight workers send their two each within 1/50 s.
    assert starts[-1] - starts[0] >= 15 / 50 * 0.9
    assert api.order_by_group() == {str(g): [0, 1] for g in range(8)}


def test_a_spent_budget_ends_receiving_but_not_the_deliveries_under_way(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.002), FakeFifo(groups=8, per_group=5)
    ledger = FakeLedger()
    settings = make_settings(
        TRICKLE_DRAIN_BUDGET="7", TRICKLE_DRAIN_WORKERS="4", TRICKLE_RATE_LIMIT_PER_SECOND="1000"
    )
    drainer = Drainer(queue, queue, ledger, api, lambda: None, settings)  # type: ignore[arg-type]

    report = drainer.run(lambda: 10**9)

    assert (report.received, report.delivered, report.released) == (7, 7, 0)
    assert report.stopped_by == "budget"
    assert len(queue.deleted) == 7 and queue.in_flight == []


def test_a_group_longer_than_a_round_is_drained_whole_and_in_order(make_settings: MakeSettings) -> None:
    """A receive finds nothing of a group while part of it is in flight; once the round is settled
    the run receives the rest."""
    api, queue = SlowApi(0.001), FakeFifo(groups=1, per_group=35)

    report, _ = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4", TRICKLE_RATE_LIMIT_PER_SECOND="1000"
    )

    assert report.delivered == 35
    assert report.stopped_by == "empty"
    assert api.order_by_group() == {"0": list(range(35))}


def test_messages_whose_visibility_would_lapse_mid_attempt_go_back_unattempted(
    make_settings: MakeSettings,
) -> None:
    """Visibility 3 s, attempts of up to 1 s (connect + read): nothing is attempted later than 1 s
    after its receive; the rest of the group goes back, head first, and a later round sends it."""
    api, queue = SlowApi(0.3), FakeFifo(groups=1, per_group=6)

    report, _ = drain(
        make_settings,
        api,
        queue,
        TRICKLE_DRAIN_WORKERS="1",
        TRICKLE_RATE_LIMIT_PER_SECOND="1000",
        TRICKLE_VISIBILITY_TIMEOUT_SECONDS="3",
        TRICKLE_CONNECT_TIMEOUT_SECONDS="0.5",
        TRICKLE_READ_TIMEOUT_SECONDS="0.5",
    )

    assert report.released >= 1
    assert report.delivered == 6
    assert api.order_by_group() == {"0": list(range(6))}
    assert report.received == 6 + report.released


def test_a_full_round_is_received_while_the_last_one_is_delivered(make_settings: MakeSettings) -> None:
    api, queue = SlowApi(0.02), FakeFifo(groups=20, per_group=1)

    report, _ = drain(make_settings, api, queue, TRICKLE_DRAIN_WORKERS="2")

    assert report.delivered == 20
    assert queue.receives[:2] == [(0, 10), (10, 10)]


def test_a_short_round_finishes_before_the_next_receive(make_settings: MakeSettings) -> None:
    """A round that came up short found every other group in flight or the queue empty: receiving
    again before it finishes would cost a request that comes back empty."""
    api, queue = SlowApi(0.02), FakeFifo(groups=2, per_group=3)

    report, _ = drain(make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4")

    assert report.delivered == 6
    assert queue.receives == [(0, 6), (6, 0), (0, 0)]


class OneSlowGroupApi(SlowApi):
    """Group 0 answers after `slow_s`, the others after `latency_s`."""

    def __init__(self, latency_s: float, slow_s: float) -> None:
        super().__init__(latency_s)
        self.slow_s = slow_s

    def latency(self, body: str) -> float:
        return self.slow_s if body.startswith("0:") else self.latency_s


def test_groups_that_finish_are_received_again_while_a_slow_one_is_in_flight(
    make_settings: MakeSettings,
) -> None:
    api, queue = OneSlowGroupApi(0.01, slow_s=0.5), FakeFifo(groups=21, per_group=2, one_per_group=True)

    report, _ = drain(
        make_settings, api, queue, TRICKLE_DRAIN_WORKERS="4", TRICKLE_RATE_LIMIT_PER_SECOND="1000"
    )

    assert report.delivered == 42
    second_sends = [at for at, body in api.started if body.endswith(":1") and not body.startswith("0:")]
    assert len(second_sends) == 20
    slow_head_done_at = next(at for at, body in api.ended if body == "0:0")
    assert min(second_sends) < slow_head_done_at
    assert api.order_by_group() == {str(g): [0, 1] for g in range(21)}
