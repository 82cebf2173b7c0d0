"""A destination's health across drain runs (issue #27), as tables: the circuit, what `/status` shows
of it, the changes logged and counted, the halted groups and the waiting tasks carried from run to
run in the run note, and the tasks a paused run heartbeats."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.health import (
    CLOSED,
    HALF_OPEN,
    MAX_TASKS_KEPT,
    OPEN,
    changes,
    circuit_view,
    halted_groups,
    next_circuit,
    open_for_s,
    paused_heartbeats,
    waiting_tasks,
)
from chalicelib.model import QueuedTask, Status

NOW = 1_000.0
WAS_OPEN = {"state": OPEN, "since": 400.0}
WAS_CLOSED = {"state": CLOSED, "since": 100.0}

CIRCUIT: list[tuple[str, dict[str, Any] | None, str, bool, dict[str, Any]]] = [
    ("first run trips the breaker", None, "breaker", True, {"state": OPEN, "since": NOW}),
    ("closed, trips", WAS_CLOSED, "breaker", True, {"state": OPEN, "since": NOW}),
    ("open, trips again: open since the first", WAS_OPEN, "breaker", True, WAS_OPEN),
    ("open, the trial delivers", WAS_OPEN, "empty", True, {"state": CLOSED, "since": NOW}),
    ("open, the trial fails below the breaker", WAS_OPEN, "empty", True, {"state": CLOSED, "since": NOW}),
    ("open, no request made (paused, all held)", WAS_OPEN, "paused", False, WAS_OPEN),
    ("closed, no request made", WAS_CLOSED, "empty", False, WAS_CLOSED),
    ("first run, nothing to send", None, "empty", False, {"state": CLOSED, "since": None}),
    ("closed stays closed since it closed", WAS_CLOSED, "budget", True, WAS_CLOSED),
    ("saturated is not the breaker", WAS_CLOSED, "saturated", True, WAS_CLOSED),
]


@pytest.mark.parametrize(
    ("was", "stopped_by", "attempted", "after"), [r[1:] for r in CIRCUIT], ids=[r[0] for r in CIRCUIT]
)
def test_next_circuit(
    was: dict[str, Any] | None, stopped_by: str, attempted: bool, after: dict[str, Any]
) -> None:
    assert next_circuit(was, stopped_by, attempted, NOW) == after


@pytest.mark.parametrize(
    ("circuit", "next_run", "shown"),
    [
        (None, 1060.0, {"state": CLOSED, "since": None}),
        (WAS_OPEN, 1060.0, WAS_OPEN),
        (WAS_OPEN, NOW, {"state": HALF_OPEN, "since": 400.0}),
        (WAS_OPEN, 990.0, {"state": HALF_OPEN, "since": 400.0}),
        (WAS_OPEN, None, WAS_OPEN),
        (WAS_CLOSED, 990.0, WAS_CLOSED),
    ],
    ids=[
        "never ran",
        "open, next run to come",
        "open, next run due",
        "open, run overdue",
        "no schedule",
        "closed",
    ],
)
def test_circuit_view_is_half_open_once_the_trial_run_is_due(
    circuit: dict[str, Any] | None, next_run: float | None, shown: dict[str, Any]
) -> None:
    assert circuit_view(circuit, next_run, NOW) == shown


def test_open_for_counts_only_an_open_circuit() -> None:
    assert (open_for_s(WAS_OPEN, NOW), open_for_s(WAS_CLOSED, NOW), open_for_s({}, NOW)) == (600.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("was", "circuit", "gone", "found"),
    [
        (None, {"state": OPEN}, False, ["CircuitOpened"]),
        (WAS_CLOSED, {"state": OPEN}, False, ["CircuitOpened"]),
        (WAS_OPEN, {"state": OPEN}, False, []),
        (WAS_OPEN, {"state": CLOSED}, False, ["CircuitClosed"]),
        (WAS_CLOSED, {"state": CLOSED}, True, ["PausedByApi"]),
        (None, {"state": CLOSED}, False, []),
    ],
    ids=["opens", "closed opens", "stays open", "closes", "410", "nothing"],
)
def test_changes(was: dict[str, Any] | None, circuit: dict[str, Any], gone: bool, found: list[str]) -> None:
    assert changes(was, circuit, gone) == found


@pytest.mark.parametrize(
    ("carried", "halted", "moved", "depth", "left"),
    [
        ([], {"a"}, set(), 3, ["a"]),
        (["a"], set(), set(), 3, ["a"]),  # held between looks: still halted
        (["a", "b"], set(), {"a"}, 3, ["b"]),  # retried or skipped: a's head moved on
        (["a"], {"a"}, {"a"}, 3, ["a"]),  # moved, then halted again in the same run
        (["a"], {"b"}, set(), 0, []),  # the queue is empty
        (["a"], set(), set(), None, ["a"]),  # depth unknown
    ],
    ids=["halted now", "carried", "moved on", "halted again", "empty queue", "depth unknown"],
)
def test_halted_groups(
    carried: list[str], halted: set[str], moved: set[str], depth: int | None, left: list[str]
) -> None:
    assert halted_groups(carried, halted, moved, depth) == left


@pytest.mark.parametrize(
    ("carried", "seen", "removed", "gone", "depth", "left"),
    [
        ({}, {"c1": "t1"}, set(), set(), 1, {"c1": "t1"}),  # received, left in the queue
        ({}, {"c1": "t1"}, {"c1"}, set(), 0, {}),  # deleted
        ({"c1": "t1"}, {}, set(), set(), 1, {"c1": "t1"}),  # held: not received this run
        ({"c1": "t1"}, {"c2": "t2"}, {"c2"}, set(), 1, {"c1": "t1"}),
        ({"c1": "t1"}, {}, set(), {"t1"}, 1, {}),  # its task refused a heartbeat
        ({"c1": "t1"}, {}, set(), set(), 0, {}),  # the queue is empty
    ],
    ids=["left", "deleted", "carried", "another deleted", "task gone", "empty queue"],
)
def test_waiting_tasks(
    carried: dict[str, str],
    seen: dict[str, str],
    removed: set[str],
    gone: set[str],
    depth: int,
    left: dict[str, str],
) -> None:
    assert waiting_tasks(carried, seen, removed, gone, depth) == left


def test_waiting_tasks_are_capped_to_fit_the_run_note() -> None:
    seen = {f"c{n}": f"t{n}" for n in range(MAX_TASKS_KEPT + 5)}
    assert len(waiting_tasks({}, seen, set(), set(), None)) == MAX_TASKS_KEPT


def queued(message_id: str, token: str, status: Status = Status.QUEUED, callback: str = "") -> QueuedTask:
    return QueuedTask(message_id, "g", token, status, callback)


@pytest.mark.parametrize(
    ("carried", "found", "heartbeats"),
    [
        ({"c1": "t1"}, [], [("", "t1")]),  # left waiting by a run: from the note
        ({}, [queued("m2", "t2")], [("m2", "t2")]),  # queued with a token since: from the ledger
        ({"c1": "t1"}, [queued("m1", "t1"), queued("m2", "t2")], [("", "t1"), ("m2", "t2")]),  # each once
        ({}, [queued("m2", "t2", callback="rejected")], []),  # its task refused a heartbeat before
        ({}, [queued("m2", "t2", callback="success")], []),  # answered
        ({}, [queued("m2", "t2", Status.DELIVERED)], []),  # delivered since the index was read
        ({}, [queued("m2", "t2", Status.FAILED)], []),  # attempted: a run received it (the note has it)
        ({}, [queued("m2", ""), queued("m3", "t3")], [("m3", "t3")]),  # no token
        ({}, [queued("m2", "t2"), queued("m3", "t2")], [("m2", "t2")]),  # one token, two records
    ],
    ids=["note", "ledger", "both", "gone", "answered", "delivered", "attempted", "no token", "same token"],
)
def test_paused_heartbeats(
    carried: dict[str, str], found: list[QueuedTask], heartbeats: list[tuple[str, str]]
) -> None:
    assert [(t.message_id, t.token) for t in paused_heartbeats(carried, found)] == heartbeats


@pytest.mark.parametrize(
    ("carried", "found", "sent", "heartbeats"),
    [
        ({}, [], ["t3"], [("", "t3")]),  # sent straight to the queue: from the execution's history
        (
            {"c1": "t1"},
            [queued("m2", "t2")],
            ["t2", "t1", "t3", "t3", ""],
            [("", "t1"), ("m2", "t2"), ("", "t3")],
        ),
    ],
    ids=["history", "each token once"],
)
def test_paused_heartbeats_of_tasks_sent_straight_to_the_queue(
    carried: dict[str, str], found: list[QueuedTask], sent: list[str], heartbeats: list[tuple[str, str]]
) -> None:
    assert [(t.message_id, t.token) for t in paused_heartbeats(carried, found, sent)] == heartbeats


def test_paused_heartbeats_take_at_most_the_cap_from_the_note_and_from_the_ledger() -> None:
    carried = {f"c{n}": f"t{n}" for n in range(MAX_TASKS_KEPT + 5)}
    found = [queued(f"m{n}", f"q{n}") for n in range(MAX_TASKS_KEPT + 5)]
    sent = [f"s{n}" for n in range(MAX_TASKS_KEPT + 5)]
    tasks = paused_heartbeats(carried, found, sent)
    assert len(tasks) == 3 * MAX_TASKS_KEPT and tasks[-1].token == f"s{MAX_TASKS_KEPT - 1}"
    tasks = paused_heartbeats(carried, found)
    assert len(tasks) == 2 * MAX_TASKS_KEPT
    assert tasks[-1].token == f"q{MAX_TASKS_KEPT - 1}"  # the newest first, as the ledger lists them


def test_a_queued_task_never_shows_its_token() -> None:
    assert "secret-token" not in repr(queued("m1", "secret-token"))
