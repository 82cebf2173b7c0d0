"""A destination's health as its drain runs leave it in their run note, and what `/status` shows of
it: the circuit (open while runs end on the breaker), the groups halted in strict ordering, the
Step Functions tasks waiting on messages left in the queue (a paused drain keeps them alive with
heartbeats without receiving a message, and the tasks of messages queued since, from the ledger),
and a pause. No I/O: the drain and the routes read and write the notes."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from chalicelib.model import QueuedTask, Status

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
CIRCUIT_FIELD = "circuit"
HALTED_FIELD = "halted_groups"
TASKS_FIELD = "waiting_tasks"  # never shown by /status: a task token answers for its task
# A run note is one DynamoDB item (400 KB at most): the groups and tasks it carries are capped.
MAX_HALTED_KEPT = 500
MAX_TASKS_KEPT = 100  # a token is up to 2 KB
PAUSED_BY_API = "the API (HTTP 410 Gone)"
PAUSED = "paused"  # what stopped a paused destination's run (before it received anything)


def next_circuit(
    previous: Mapping[str, Any] | None, stopped_by: str, attempted: bool, now: float
) -> dict[str, Any]:
    """The circuit after a run: open when the run ended on the breaker (since the first such run of
    a row), closed when it made a request and did not (since the first of those), as it was when it
    made none (an empty queue, a pause, every group waiting)."""
    state = (previous or {}).get("state", CLOSED)
    since = (previous or {}).get("since")
    if stopped_by == "breaker":
        return {"state": OPEN, "since": since if state == OPEN else now}
    if attempted:
        return {"state": CLOSED, "since": since if state == CLOSED else now}
    return {"state": state, "since": since}


def circuit_view(circuit: Mapping[str, Any] | None, next_run: float | None, now: float) -> dict[str, Any]:
    """`/status`'s circuit: half-open once an open circuit's next run is due (that run is the trial:
    its requests close it, or it trips the breaker again and stays open)."""
    state = (circuit or {}).get("state", CLOSED)
    since = (circuit or {}).get("since")
    if state == OPEN and next_run is not None and next_run <= now:
        state = HALF_OPEN
    return {"state": state, "since": since}


def open_for_s(circuit: Mapping[str, Any], now: float) -> float:
    """How long the circuit has been open (0 when closed): the drain's `CircuitOpenSeconds`."""
    if circuit.get("state") != OPEN or circuit.get("since") is None:
        return 0.0
    return max(0.0, now - float(circuit["since"]))


def changes(previous: Mapping[str, Any] | None, circuit: Mapping[str, Any], paused_by_api: bool) -> list[str]:
    """The health changes a run made, each logged with its reason and counted as a metric of its
    own name: `CircuitOpened`, `CircuitClosed`, `PausedByApi`."""
    was = (previous or {}).get("state", CLOSED)
    found = []
    if was != OPEN and circuit["state"] == OPEN:
        found.append("CircuitOpened")
    if was == OPEN and circuit["state"] == CLOSED:
        found.append("CircuitClosed")
    if paused_by_api:
        found.append("PausedByApi")
    return found


def halted_groups(
    carried: Iterable[str], halted: Collection[str], moved: Collection[str], depth: int | None
) -> list[str]:
    """The groups halted after a run: those it halted or found halted, and those an earlier run left
    halted that it did not see move on (their head is held between looks); none if the queue is
    empty (`depth` 0)."""
    if depth == 0:
        return []
    return sorted({g for g in carried if g not in moved} | set(halted))[:MAX_HALTED_KEPT]


def waiting_tasks(
    carried: Mapping[str, str],
    seen: Mapping[str, str],
    removed: Collection[str],
    gone: Collection[str],
    depth: int | None,
) -> dict[str, str]:
    """copy id -> task token of the messages with a waiting task left in the queue after a run: those
    it received (`seen`) and did not delete, and those an earlier run left that it did not receive;
    without the tasks that refused a call (`gone` tokens); none if the queue is empty."""
    if depth == 0:
        return {}
    left = {copy: token for copy, token in carried.items() if copy not in seen}
    left |= {copy: token for copy, token in seen.items() if copy not in removed}
    kept = [(copy, token) for copy, token in left.items() if token not in gone]
    return dict(kept[:MAX_TASKS_KEPT])


def paused_heartbeats(
    carried: Mapping[str, str], queued: Iterable[QueuedTask], sent: Iterable[str] = ()
) -> list[QueuedTask]:
    """The tasks a paused run heartbeats, each token once: those its runs left waiting (the run
    note's, `waiting_tasks`; no message id: a refusal only drops them from the note), then those
    the ledger holds for messages queued with a token (`Ledger.queued_tasks`: none received yet,
    e.g. submitted while paused) that are still queued and whose task was neither answered nor is
    gone, then those of messages a state machine sent straight to the queue, from its executions'
    histories (`callbacks.open_sent_tokens`; no message id either); at most `MAX_TASKS_KEPT` of each."""
    tasks = [QueuedTask("", "", token) for token in dict.fromkeys(carried.values())][:MAX_TASKS_KEPT]
    known = {task.token for task in tasks}
    waiting = [
        task
        for task in queued
        if task.status is Status.QUEUED and not task.callback and task.token and task.token not in known
    ]
    unique = {task.token: task for task in reversed(waiting)}  # the first of a token's records
    tasks += [task for task in waiting if unique[task.token] is task][:MAX_TASKS_KEPT]
    known = {task.token for task in tasks}
    fresh = [token for token in dict.fromkeys(sent) if token and token not in known]
    return tasks + [QueuedTask("", "", token) for token in fresh[:MAX_TASKS_KEPT]]


def carried_tasks(note: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(copy): str(token) for copy, token in ((note or {}).get(TASKS_FIELD) or {}).items()}


def carried_halted(note: Mapping[str, Any] | None) -> list[str]:
    return [str(group) for group in (note or {}).get(HALTED_FIELD) or []]


def pause_note(by: str, reason: str, at: float) -> dict[str, Any]:
    """What a pause note holds (`naming.pause_key`), as `/status` shows it."""
    return {"by": by, "reason": reason, "at": at}
