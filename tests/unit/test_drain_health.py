"""A drain run's part in its destination's health (issue #27), against the in-memory fakes: a
paused destination receives nothing and keeps its waiting tasks alive from its run note and the
ledger, the run
note carries the halted groups and the circuit, and the running totals get one write a run."""

from __future__ import annotations

from dataclasses import replace

from botocore.exceptions import ClientError

from chalicelib.drain import Drainer
from chalicelib.drain_state import DrainReport
from chalicelib.health import pause_note
from chalicelib.model import ApiResponse, CallbackResult, QueuedTask, Status
from chalicelib.naming import pause_key, run_note_key, totals_key
from tests.fakes import (
    FakeCallbacks,
    FakeDeadLetters,
    FakeFifo,
    FakeLedger,
    FakeMetrics,
    FakeNotes,
    ScriptedApi,
    message,
)
from tests.unit.conftest import MakeSettings

FAST = {
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "10000",
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": "100",
    "TRICKLE_DRAIN_WORKERS": "1",
}


class Rig:
    """One destination's drain whose notes, queue and ledger outlive its runs."""

    def __init__(
        self, make_settings: MakeSettings, api: ScriptedApi, callbacks: FakeCallbacks, **env: str
    ) -> None:
        self.queue = FakeFifo(hold_delays=True)
        self.ledger = FakeLedger()
        self.notes = FakeNotes()
        self.callbacks = callbacks
        self.api = api
        self.settings = make_settings(**(FAST | env))
        self.metrics: list[FakeMetrics] = []

    def run(self) -> DrainReport:
        def metrics() -> FakeMetrics:
            self.metrics.append(FakeMetrics())
            return self.metrics[-1]

        drainer = Drainer(
            self.queue,
            FakeDeadLetters(),
            self.ledger,
            self.api,
            self.settings.destination("orders"),
            self.settings,
            self.notes,
            callbacks=self.callbacks,
            metrics=metrics,
        )
        report = drainer.run(lambda: 10**9)
        self.queue.tick()
        return report

    def pause(self) -> None:
        self.notes.save(pause_key("orders"), pause_note("operator", "maintenance", 1.0), expires=False)

    def note(self) -> dict[str, object]:
        note = self.notes.load(run_note_key("orders"))
        assert note is not None
        return note


def failing_first(*bodies: str) -> ScriptedApi:
    return ScriptedApi(lambda body, nth: ApiResponse(503 if body in bodies and nth == 0 else 200, body="{}"))


def test_a_paused_run_receives_nothing_and_heartbeats_the_tasks_left_waiting(
    make_settings: MakeSettings,
) -> None:
    """A task-token message left in the queue (its backoff) is noted with its token; while paused,
    each run heartbeats that task from the note, without a receive; a task that refuses a heartbeat
    is dropped; on resume the message is delivered and its task answered."""
    gone_after = {"t1": 2}  # t1's task times out at its third heartbeat

    def script(kind: str, token: str, nth: int) -> CallbackResult:
        late = kind == "heartbeat" and nth >= gone_after.get(token, 99)
        return CallbackResult.REJECTED if late else CallbackResult.SENT

    rig = Rig(
        make_settings,
        failing_first("g0:0", "g1:0"),
        FakeCallbacks(script),
        TRICKLE_DEST_ORDERS_HEARTBEAT_S="2",
    )
    rig.queue.put(message("g0", 0, token="t0"), message("g1", 0, token="t1"), message("g2", 0))

    rig.run()  # g2 delivered; g0 and g1 held by their backoff, their tasks told to wait
    assert sorted(rig.note()["waiting_tasks"].values()) == ["t0", "t1"]  # type: ignore[union-attr]
    rig.pause()
    receives = len(rig.queue.receives)
    requests = len(rig.api.requests)
    paused = [rig.run(), rig.run()]

    assert len(rig.queue.receives) == receives and len(rig.api.requests) == requests
    assert [r.stopped_by for r in paused] == ["paused", "paused"]
    assert [(r.heartbeats, r.callbacks_rejected) for r in paused] == [(2, 0), (1, 1)]
    assert rig.callbacks.kinds("t0") == ["heartbeat"] * 3 and rig.callbacks.kinds("t1") == ["heartbeat"] * 3
    assert list(rig.note()["waiting_tasks"].values()) == ["t0"]  # type: ignore[union-attr]
    rig.notes.saved.pop(pause_key("orders"))
    rig.ledger.records["g0-0"] = replace(rig.ledger.records["g0-0"], retry_at=None)
    rig.ledger.records["g1-0"] = replace(rig.ledger.records["g1-0"], retry_at=None)
    resumed = rig.run()
    assert resumed.delivered == 2 and rig.callbacks.kinds("t0")[-1] == "success"
    assert rig.note()["waiting_tasks"] == {}


def test_a_token_message_queued_while_paused_gets_heartbeats_from_the_ledger(
    make_settings: MakeSettings,
) -> None:
    """No run has received a message submitted while paused, so its token is not in the run note:
    paused runs find it in the ledger (`record_queued` kept it), without a receive; a task that
    refuses a heartbeat is recorded gone and never called again; on resume the message is
    delivered and its task answered."""

    def script(kind: str, token: str, nth: int) -> CallbackResult:
        return CallbackResult.REJECTED if token == "t-late" and kind == "heartbeat" else CallbackResult.SENT

    rig = Rig(make_settings, failing_first(), FakeCallbacks(script))
    rig.pause()
    for group, token in (("g0", "t0"), ("g1", "t-late"), ("g2", "")):
        rig.queue.put(message(group, 0, token=token))
        rig.ledger.record_queued(f"{group}-0", group, task_token=token)

    paused = [rig.run(), rig.run()]

    assert rig.queue.receives == [] and rig.api.requests == []
    assert [(r.heartbeats, r.callbacks_rejected) for r in paused] == [(1, 1), (1, 0)]
    assert rig.callbacks.kinds("t0") == ["heartbeat"] * 2 and rig.callbacks.kinds("t-late") == ["heartbeat"]
    assert rig.ledger.records["g1-0"].callback == "rejected" and "g1-0" not in rig.ledger.tokens
    rig.notes.saved.pop(pause_key("orders"))
    resumed = rig.run()
    assert resumed.delivered == 3 and rig.callbacks.kinds("t0")[-1] == "success"
    assert rig.callbacks.kinds("t-late") == ["heartbeat"]  # gone: no answer either
    assert rig.ledger.tokens == {}


def test_a_paused_run_that_cannot_read_the_ledger_still_heartbeats_the_run_notes_tasks(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(make_settings, failing_first("g0:0"), FakeCallbacks(), TRICKLE_DEST_ORDERS_HEARTBEAT_S="2")
    rig.queue.put(message("g0", 0, token="t0"))
    rig.run()  # g0 held by its backoff: its task noted
    rig.pause()

    def unreadable(scanned: int) -> list[QueuedTask]:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Query")

    rig.ledger.queued_tasks = unreadable  # type: ignore[method-assign]
    report = rig.run()
    assert (report.stopped_by, report.heartbeats) == ("paused", 1) and rig.callbacks.kinds("t0")[
        -1
    ] == "heartbeat"


def test_the_run_note_carries_the_halted_groups_until_they_move_on(make_settings: MakeSettings) -> None:
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: ApiResponse(400 if body in ("g0:0", "g1:0") else 200, body="{}")),
        FakeCallbacks(),
        TRICKLE_DEST_ORDERS_ORDERING="strict",
    )
    rig.queue.put(message("g0", 0), message("g0", 1), message("g1", 0), message("g2", 0))

    rig.run()
    halted = rig.note()["halted_groups"]
    rig.ledger.records["g0-0"] = replace(
        rig.ledger.records["g0-0"], status=Status.SKIP
    )  # an operator skips it
    rig.run()

    assert halted == ["g0", "g1"]
    assert rig.note()["halted_groups"] == ["g1"]


def test_each_run_adds_its_counts_to_the_totals_in_one_write(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, failing_first("g0:0"), FakeCallbacks())
    rig.queue.put(message("g0", 0), message("g1", 0), message("g1", 1))

    first = rig.run()
    rig.ledger.records["g0-0"] = replace(rig.ledger.records["g0-0"], retry_at=None)
    second = rig.run()
    third = rig.run()  # nothing left: no write

    totals = rig.notes.numbers[totals_key("orders")]
    assert (first.delivered, first.failed_attempts, second.delivered, third.received) == (2, 1, 1, 0)
    assert (totals["delivered"], totals["failed_attempts"], "dead_lettered" in totals) == (3, 1, False)
    assert rig.notes.tallies == 2


def test_a_breaker_run_opens_the_circuit_and_counts_how_long(make_settings: MakeSettings) -> None:
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: ApiResponse(503, body="{}")),
        FakeCallbacks(),
        TRICKLE_BREAKER_FAILURES="2",
    )
    rig.queue.put(*(message(f"g{n}", 0) for n in range(4)))

    report = rig.run()

    assert report.stopped_by == "breaker"
    assert rig.note()["circuit"]["state"] == "open"  # type: ignore[index]
    names = [name for name, _ in rig.metrics[-1].values]
    assert "CircuitOpened" in names and "CircuitOpenSeconds" in names


def test_a_paused_run_heartbeats_the_tasks_a_state_machine_sent_straight_to_the_queue(
    make_settings: MakeSettings,
) -> None:
    """No run has received a message a state machine sent to the queue itself, and no ledger record
    holds its token: paused runs find its task in the execution's history (`sent_tokens`), each
    token once with the ledger's; on resume the message is delivered and its task answered."""
    rig = Rig(make_settings, failing_first(), FakeCallbacks())
    rig.pause()
    rig.queue.put(message("g0", 0, token="t-sent"))
    rig.queue.put(message("g1", 0, token="t-both"))
    rig.ledger.record_queued("g1-0", "g1", task_token="t-both")
    rig.callbacks.sent[rig.settings.destination("orders").queue_url] = ["t-sent", "t-both"]

    paused = rig.run()

    assert rig.queue.receives == [] and rig.api.requests == []
    assert (paused.stopped_by, paused.heartbeats) == ("paused", 2)
    assert rig.callbacks.kinds("t-sent") == ["heartbeat"] and rig.callbacks.kinds("t-both") == ["heartbeat"]
    rig.notes.saved.pop(pause_key("orders"))
    rig.callbacks.sent.clear()
    assert rig.run().delivered == 2 and rig.callbacks.kinds("t-sent")[-1] == "success"
