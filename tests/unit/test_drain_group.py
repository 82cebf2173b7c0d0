"""A group's whole story through the drain's loop (`chalicelib.drain_group`): decide, carry out,
feed back, with the real effects (`chalicelib.drain_effects`) on the fakes of every port and a
clock that moves only when the test says. Each run's calls to the ports are checked in order."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from unittest.mock import ANY

from chalicelib.drain import Drainer
from chalicelib.drain_effects import Effects
from chalicelib.drain_group import deliver_group
from chalicelib.drain_state import GroupResult, GroupRun, RunState
from chalicelib.model import ApiResponse, OutboundMessage, ReceivedMessage, Settlement, Status
from chalicelib.policy import Backoff, Rules
from chalicelib.ratelimit import RateLimiter
from tests.fakes import (
    FakeArchive,
    FakeCallbacks,
    FakeClock,
    FakeDeadLetters,
    FakeFifo,
    FakeLedger,
    FakeMetrics,
    FakeNotes,
    ScriptedApi,
    message,
)
from tests.unit.conftest import MakeSettings

# Jitter at the top of its range: a first retry waits exactly the base, 10 s; a task is kept alive
# by a heartbeat every 5 s.
RULES = Rules("skip", 3, Backoff(10, 100, lambda low, high: high), wait_s=30, halt_s=900, heartbeat_s=5)
START = 1_767_225_600.0


def brief(value: Any) -> Any:
    """A call's argument as the journal shows it: a message by its id."""
    if isinstance(value, ReceivedMessage | OutboundMessage):
        return value.message_id
    if isinstance(value, list):
        return [brief(v) for v in value]
    return value


class Journal:
    """Every call made to the ports, in order, across all of them: (port, method, arguments)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []

    def watch(self, name: str, port: Any) -> Any:
        journal = self

        class Watched:
            def __getattr__(self, method: str) -> Any:
                def call(*args: Any, **kwargs: Any) -> Any:
                    journal.calls.append((name, method, tuple(brief(a) for a in (*args, *kwargs.values()))))
                    return getattr(port, method)(*args, **kwargs)

                return call

        return Watched()

    def take(self) -> list[tuple[str, str, tuple[Any, ...]]]:
        calls, self.calls = self.calls, []
        return calls


def api_script(body: str, nth: int) -> ApiResponse:
    """g0:0 fails once with a 503, g0:1 is refused, everything else is taken."""
    if body == "g0:0" and nth == 0:
        return ApiResponse(503, body_excerpt="busy")
    if body == "g0:1":
        return ApiResponse(400, body="no such item", body_excerpt="no such item")
    return ApiResponse(200, body=f'{{"took": "{body}"}}')


class Story:
    """One group of three, the first waited on by a Step Functions task, through successive runs."""

    def __init__(self) -> None:
        self.clock = FakeClock(START)
        self.ledger = FakeLedger()
        self.dead_letters = FakeDeadLetters()
        self.callbacks = FakeCallbacks()
        self.archive = FakeArchive()
        self.journal = Journal()
        watch = self.journal.watch
        self.effects = Effects(
            watch("queue", FakeFifo()),
            watch("dead_letters", self.dead_letters),
            watch("ledger", self.ledger),
            watch("api", ScriptedApi(api_script)),
            "orders",
            archive=watch("archive", self.archive),
            callbacks=watch("callbacks", self.callbacks),
        )
        sent_at_ms = int((START - 30) * 1000)
        self.messages = [
            replace(message("g0", 0, token="t0"), sent_at_ms=sent_at_ms),
            message("g0", 1),
            message("g0", 2),
        ]
        self.metrics = FakeMetrics()

    def run(self) -> tuple[GroupResult, RunState]:
        """The group's turn in one drain run, then what the run does with it: the deliveries
        written to the ledger (deleted and released messages are the run's to send to the queue)."""
        state = RunState(lambda: False, breaker_failures=5, metrics=self.metrics)
        limiter = RateLimiter(100, 10, clock=self.clock.monotonic, sleep=self.clock.sleep)
        records = self.ledger.read([m.message_id for m in self.messages])
        run = GroupRun(state, limiter, records, self.clock.monotonic() + 60, self.clock)
        result = deliver_group(self.messages, self.effects, run, RULES)
        self.ledger.write(result.delivered)
        return result, state

    def released(self, result: GroupResult) -> list[tuple[str, int]]:
        return [(m.message_id, seconds) for m, seconds in result.releases]


def test_a_group_through_a_retry_a_wait_a_delivery_and_a_poison_message() -> None:
    story = Story()

    # 1. The head fails with a 503: counted, held for its backoff (10 s), which is longer than a
    # heartbeat, so it comes back after 5 s with its retry time recorded; its task is kept alive.
    first, state = story.run()
    assert story.journal.take() == [
        ("api", "send", ("g0:0", "g0-0")),
        ("ledger", "settle", (Settlement("g0-0", "g0", Status.FAILED, 503, "HTTP 503", True, timeline=ANY),)),
        ("ledger", "hold_until", ("g0-0", "g0", START + 10)),
        ("callbacks", "heartbeat", ("t0",)),
    ]
    assert story.released(first) == [("g0-0", 5), ("g0-1", 0), ("g0-2", 0)]
    assert (first.delete, first.delivered) == ([], [])
    assert state.report().retried == 1 and state.blocked == {"g0"}

    # 2. Back 5 s later, before its retry time: no attempt, another heartbeat, held the 5 s left.
    story.clock.advance(5)
    second, _ = story.run()
    assert story.journal.take() == [("callbacks", "heartbeat", ("t0",))]
    assert story.released(second) == [("g0-0", 5), ("g0-1", 0), ("g0-2", 0)]

    # 3. Past its retry time: delivered, its answer archived and sent to its task; the next message
    # is refused (poison): counted, dead-lettered, recorded dead; the last one is delivered.
    story.clock.advance(6)
    third, state = story.run()
    refused = "HTTP 400: refused by the API"
    assert story.journal.take() == [
        ("api", "send", ("g0:0", "g0-0")),
        ("archive", "store", ("g0-0", 200, '{"took": "g0:0"}')),
        ("callbacks", "success", ("t0", ANY)),
        ("api", "send", ("g0:1", "g0-1")),
        ("ledger", "settle", (Settlement("g0-1", "g0", Status.FAILED, 400, refused, True, timeline=ANY),)),
        ("dead_letters", "send", (["g0-1"],)),
        ("ledger", "settle", (Settlement("g0-1", "g0", Status.DEAD, None, refused, False, "c-g0-1"),)),
        ("api", "send", ("g0:2", "g0-2")),
        ("archive", "store", ("g0-2", 200, '{"took": "g0:2"}')),
    ]
    assert [m.message_id for m in third.delete] == ["g0-0", "g0-1", "g0-2"]
    assert third.releases == []
    report = state.report()
    assert (report.delivered, report.dead_lettered, report.callbacks) == (2, 1, 1)

    # The ledger's story, dated by the test's clock.
    head = story.ledger.records["g0-0"]
    assert (head.status, head.attempts, head.callback) == (Status.DELIVERED, 2, "success")
    assert head.last_attempt_at == START + 11
    assert story.ledger.status("g0-1") is Status.DEAD and story.ledger.status("g0-2") is Status.DELIVERED
    assert story.metrics.named("DeliveredAge") == [41.0]  # sent 30 s before the story began
    assert [kind for kind, _, _ in story.callbacks.calls] == ["heartbeat", "heartbeat", "success"]


def test_a_drain_run_reads_only_the_clock_and_the_jitter_it_is_given(make_settings: MakeSettings) -> None:
    """The run around the loop too: its note is dated by the given clock, and a retry's hold is the
    given draw's (the lowest: half the 30 s base)."""
    clock, notes, queue = FakeClock(START), FakeNotes(), FakeFifo(hold_delays=True)
    queue.put(message("g0", 0))
    settings = make_settings(TRICKLE_DRAIN_WORKERS="1")
    drainer = Drainer(
        queue,
        FakeDeadLetters(),
        FakeLedger(),
        ScriptedApi(lambda body, nth: ApiResponse(503)),
        settings.destination("orders"),
        settings,
        notes,
        metrics=FakeMetrics,
        clock=clock,
        draw=lambda low, high: low,
    )

    report = drainer.run(lambda: 10**9)

    assert (report.retried, queue.visibility_changes) == (1, [("g0-0", 15)])
    assert notes.saved["run#orders"]["finished_at"] == START
