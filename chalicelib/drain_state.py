"""What a drain run's groups share: the run's state (why it stopped, the breaker's streak, its
counters, the groups held), the groups in flight, and what each group's worker hands back. No I/O:
the run (`chalicelib.drain`) reads and writes the queue, the groups (`chalicelib.drain_group`) go
through their effects (`chalicelib.drain_effects`)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field

from chalicelib.bulk import Shape
from chalicelib.freshness import Check
from chalicelib.model import (
    MAX_BATCH_ENTRIES,
    ApiResponse,
    CallbackResult,
    LedgerRecord,
    ReceivedMessage,
    Settlement,
)
from chalicelib.policy import HALTED, HEAD_HOLD_S, Action, Callback, Decision, Move, Rules, Tally
from chalicelib.ports import Clock, DeliveryLog, Metrics
from chalicelib.ratelimit import RateLimiter

Releases = list[tuple[ReceivedMessage, int]]
Records = dict[str, LedgerRecord]


@dataclass
class DrainReport:
    received: int = 0
    delivered: int = 0
    already_delivered: int = 0
    retried: int = 0
    saturated: int = 0
    dead_lettered: int = 0
    halted: int = 0
    superseded: int = 0  # backfilled messages not sent: their item changed or went since (issue #26)
    released: int = 0
    delete_failures: int = 0
    callbacks: int = 0  # SendTaskSuccess / SendTaskFailure taken by Step Functions
    heartbeats: int = 0
    callbacks_rejected: int = 0  # the task no longer waited (timed out, unknown token)
    callbacks_failed: int = 0  # Step Functions unavailable: answered on a later receive
    redriven: int = 0  # dead letters its redrive jobs moved back before it delivered
    failed_attempts: int = 0  # requests that left and were not a delivery (the running totals')
    stopped_by: str = ""
    stop_reason: str = ""  # what stopped it, in words (an API's answer, a token endpoint's refusal)
    blocked_groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class RunState:
    """What every group of a run shares: why it stopped, the breaker's streak, counters, the groups
    held. Thread-safe."""

    def __init__(self, out_of_time: Callable[[], bool], breaker_failures: int, metrics: Metrics) -> None:
        self._out_of_time = out_of_time
        self._breaker_failures = breaker_failures
        self._lock = threading.Lock()
        self.stopped_by = ""
        self.stop_reason = ""
        self.resume_after_s = HEAD_HOLD_S
        self.failure_streak = 0
        self._failed_requests: set[int] = set()
        self.key_refreshed = False
        self.received = 0
        self.redriven = 0
        # copy id -> sent at (ms) of every message received, and those deleted: what the run left
        # in the queue (`chalicelib.oldest`); only the run's own thread writes them
        self.seen: dict[str, int] = {}
        self.removed: set[str] = set()
        # how many messages the queue can give now, as far as the run can tell (None: not known;
        # `receive_size`); only the run's own thread writes it
        self.visible: int | None = None
        # copy id -> task token of those that carry one, and the tokens of tasks that refused a
        # call; the groups it halted or found halted, and those that moved on (`chalicelib.health`)
        self.tokens: dict[str, str] = {}
        self.gone: set[str] = set()
        self.halted: set[str] = set()
        self.moved: set[str] = set()
        self.failed_attempts = 0
        self.tallies: Counter[Tally] = Counter()
        self.released = 0
        self.delete_failures = 0
        self.blocked: set[str] = set()
        self.callbacks: Counter[tuple[Callback, CallbackResult]] = Counter()
        self.metrics = metrics
        self.delivery_log: DeliveryLog | None = None  # what the run delivered, archived for replays

    def stop(self, reason: str, resume_after_s: int = HEAD_HOLD_S, detail: str = "") -> None:
        with self._lock:
            if not self.stopped_by:
                self.stopped_by, self.resume_after_s, self.stop_reason = reason, resume_after_s, detail

    def should_stop(self) -> bool:
        if not self.stopped_by and self._out_of_time():
            self.stop("time")
        return bool(self.stopped_by)

    def note(self, action: Action, group_id: str, request: int = 0) -> None:
        """An action's effect on the run: the breaker's streak, a held group, a stop. The breaker
        counts failed requests: the items of one batch `request` that failed count once."""
        with self._lock:
            if action.block:
                self.blocked.add(group_id)
            if action.move is Move.HALT or action.reason == HALTED:
                self.halted.add(group_id)
            elif action.group_goes_on:
                self.moved.add(group_id)
            if action.success:
                self.failure_streak = 0
            counted = action.failure and not (request and request in self._failed_requests)
            if counted:
                self.failure_streak += 1
                if request:
                    self._failed_requests.add(request)
            tripped = counted and self.failure_streak >= self._breaker_failures
        if action.stop:
            self.stop(action.stop, action.resume_after_s, action.reason)
        if tripped:
            self.stop("breaker")

    def tally(self, tally: Tally | None) -> None:
        if tally is not None:
            with self._lock:
                self.tallies[tally] += 1

    def callback(self, kind: Callback, result: CallbackResult, token: str = "") -> None:
        """A call to a waiting task (`token`: one that refused it is gone)."""
        with self._lock:
            self.callbacks[kind, result] += 1
            if token and result is CallbackResult.REJECTED:
                self.gone.add(token)

    def failed_attempt(self) -> None:
        with self._lock:
            self.failed_attempts += 1

    def claim_key_refresh(self) -> bool:
        """True for exactly one caller per run: the secrets are re-read from SSM once at most."""
        with self._lock:
            first, self.key_refreshed = not self.key_refreshed, True
        return first

    def report(self) -> DrainReport:
        t = self.tallies
        answers = (Callback.SUCCESS, Callback.FAILURE)
        c = self.callbacks
        return DrainReport(
            received=self.received,
            delivered=t[Tally.DELIVERED],
            already_delivered=t[Tally.ALREADY_DELIVERED],
            retried=t[Tally.RETRIED],
            saturated=t[Tally.SATURATED],
            dead_lettered=t[Tally.DEAD_LETTERED],
            halted=t[Tally.HALTED],
            superseded=t[Tally.SUPERSEDED],
            released=self.released,
            delete_failures=self.delete_failures,
            callbacks=sum(c[kind, CallbackResult.SENT] for kind in answers),
            heartbeats=c[Callback.HEARTBEAT, CallbackResult.SENT],
            callbacks_rejected=sum(n for (_, result), n in c.items() if result is CallbackResult.REJECTED),
            callbacks_failed=sum(n for (_, result), n in c.items() if result is CallbackResult.FAILED),
            redriven=self.redriven,
            failed_attempts=self.failed_attempts,
            stopped_by=self.stopped_by,
            stop_reason=self.stop_reason,
            blocked_groups=sorted(self.blocked),
        )


def receive_size(held: int, in_hand: int, target: int, budget_left: int, visible: int | None) -> int:
    """How many messages a round's next receive asks for; 0 ends the round: it holds `target`
    (`held` received so far), the budget is spent, or the queue has given all it can (`visible`
    0) while the earlier rounds' `in_hand` and this one's make a round's worth to deliver. Then
    another receive would come back empty, a request for nothing (with a backlog interleaved over
    many groups the emulators give one message per group per receive, so with every group in flight
    a round of ten asks once more). With less
    than that in hand it asks anyway: the estimate may be short (new messages, a short poll that
    missed some), and a run that trusted it then would starve its workers."""
    if held >= target or budget_left <= 0:
        return 0
    if visible == 0 and in_hand + held >= target:
        return 0
    return min(MAX_BATCH_ENTRIES, budget_left)


def visible_after(visible: int | None, asked: int, got: int) -> int | None:
    """The queue's visible messages after a receive: none when it gave fewer than asked (its other
    groups are in flight or it is empty), not known when it gave more than the run counted."""
    if got < asked:
        return 0
    if visible is None or got > visible:
        return None
    return visible - got


def visible_freed(visible: int | None, finished: int) -> int | None:
    """The queue's visible messages after `finished` messages were deleted or released: each may
    have let its group's next message (or itself) be received again."""
    return None if visible is None else visible + finished


@dataclass(frozen=True)
class Prefetched:
    """A message's answer from a batch request made on an earlier message's turn, waiting for its
    own turn; `record`: its ledger record as the request's write left it (None: not written then,
    being behind a failure of its group in the request; settled when its turn comes, if it does)."""

    response: ApiResponse
    answer: Decision
    record: LedgerRecord | None
    request: int = 0  # the batch request that brought it (0: none was made)


@dataclass
class Job:
    """A worker's groups of a round when its destination batches (issue #25): run in turn, each
    as a group is; a batch request made on one message's turn carries the plain candidates that
    follow it in its group and in the groups still `pending`, whose answers wait in `prefetched`."""

    pending: list[list[ReceivedMessage]]
    rules: Rules
    shape: Shape
    prefetched: dict[str, Prefetched] = field(default_factory=dict)
    written: dict[str, LedgerRecord] = field(default_factory=dict)  # deliveries a request's write recorded
    # the writes of requests whose every settled item was delivered, written with the round's
    # deliveries (`GroupResult.settlements`)
    settling: list[list[Settlement]] = field(default_factory=list)


@dataclass
class GroupRun:
    """What one group's worker shares with the rest of the run (and, batching, with its job)."""

    state: RunState
    limiter: RateLimiter
    records: Records  # the round's ledger read, kept current as the worker goes
    deadline: float  # monotonic: no attempt after this (the messages' visibility would run out)
    clock: Clock
    job: Job | None = None
    fresh: Mapping[str, Check] = field(default_factory=dict)  # the round's backfilled messages, by id


@dataclass
class GroupResult:
    """What a group's worker hands back to the run: messages to delete, visibility changes, and what
    to write to the ledger before those deletes: records (deliveries, and messages superseded) and
    batch requests' writes (each request's settlements, all or none: `bulk.transactions` packs them).
    `kept`: set once the job's own worker has finished it (`finishes_on_worker`), the copy ids its
    deletes left in the queue; None while the run's thread is to finish it."""

    delete: list[ReceivedMessage] = field(default_factory=list)
    releases: Releases = field(default_factory=list)
    delivered: list[LedgerRecord] = field(default_factory=list)
    settlements: list[list[Settlement]] = field(default_factory=list)
    kept: frozenset[str] | None = None


# A batched job whose requests leave at least this many settlements to write finishes on its own
# worker: one transaction for them (a job is at most a request's worth, so a few), then its
# deletes. Fewer are written by the run's thread with the round's others, several requests to a
# transaction: a job of 10 writing its own would cost 0.1 transactions per message where the
# single-item relay's BatchWriteItem costs 0.05 (20 records to a finish).
WORKER_FINISH_SETTLEMENTS = 20


def finishes_on_worker(settlements: Sequence[Sequence[Settlement]], workers: int) -> bool:
    """Whether a batched job's worker writes its requests' deliveries and deletes its messages
    itself, rather than the run's thread, which receives, reads the ledger and hands jobs out
    between finishes. With several workers, a transaction and its deletes were the run's longest
    calls, made one after another for every job, and the workers waited on it; with one, the run's
    thread finishing a job overlaps the worker's next request, which finishing on the worker would
    put off (10% slower at batch 50, measured: issue #25, docs/benchmarks.md)."""
    return workers > 1 and sum(map(len, settlements)) >= WORKER_FINISH_SETTLEMENTS


class InFlight:
    """The groups handed to the workers and not yet finished, with how many messages each holds.
    Each group's future reports itself done, so waiting for finished groups costs one wake-up per
    group, not a scan of every future in flight."""

    def __init__(self) -> None:
        self._sizes: dict[Future[GroupResult], int] = {}
        self._messages = 0
        self._done: list[Future[GroupResult]] = []  # in the order they finished
        self._done_messages = 0
        self._changed = threading.Condition()

    def __bool__(self) -> bool:
        return bool(self._sizes)

    def add(self, future: Future[GroupResult], messages: int) -> None:
        with self._changed:
            self._sizes[future] = messages
            self._messages += messages
        future.add_done_callback(self._finished)

    def _finished(self, future: Future[GroupResult]) -> None:
        with self._changed:
            self._done.append(future)
            self._done_messages += self._sizes[future]
            self._changed.notify()

    @property
    def messages(self) -> int:
        return self._messages

    def take_done(self, at_least: int, wait: bool) -> list[GroupResult]:
        """The results of every finished group, once they hold `at_least` messages (or all are
        finished); without `wait`, nothing until then. A group whose worker raised raises here
        (and nothing is taken, so `take_finished` still finishes the others)."""
        with self._changed:
            at_least = min(at_least, self._messages)
            if wait:
                self._changed.wait_for(lambda: self._done_messages >= at_least)
            if self._done_messages < at_least:
                return []
            done = list(self._done)
        results = [f.result() for f in done]
        with self._changed:
            del self._done[: len(done)]
            for future in done:
                size = self._sizes.pop(future)
                self._messages -= size
                self._done_messages -= size
        return results

    def take_finished(self) -> list[GroupResult]:
        """Waits for every group and returns the results of those whose worker did not raise."""
        futures.wait(list(self._sizes))
        with self._changed:
            results = [f.result() for f in self._sizes if f.exception() is None]
            self._sizes.clear()
            self._done.clear()
            self._messages = self._done_messages = 0
        return results
