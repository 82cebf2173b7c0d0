"""A destination's health across drain runs (issue #27), as tables: the circuit, what `/status` shows
of it, the changes logged and counted, the halted groups and the waiting tasks carried from run to
run in the run note."""

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
    waiting_tasks,
)

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
