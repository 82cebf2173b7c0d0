"""The scheduled drain run: receive in rounds, hand each group to a worker of the pool (its turn is
`chalicelib.drain_group`'s loop), finish the groups done (releases, ledger, deletes; a batched job
that settled a transaction's worth finishes on its own worker), report. Delete
only after a 2xx (or once the ledger shows the message delivered). Every call to a port goes
through the run's `Effects` (`chalicelib.drain_effects`); the clock and the backoff's jitter are
injected, so a test can hold both still."""

from __future__ import annotations

import contextvars
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from chalicelib import bulk, drain_group
from chalicelib.bulk import Shape
from chalicelib.drain_effects import Effects
from chalicelib.drain_state import (
    DrainReport,
    GroupResult,
    GroupRun,
    InFlight,
    Job,
    RunState,
    finishes_on_worker,
    receive_size,
    visible_after,
    visible_freed,
)
from chalicelib.health import PAUSED
from chalicelib.model import MAX_BATCH_ENTRIES, ReceivedMessage
from chalicelib.policy import Backoff, Rules
from chalicelib.ports import (
    Api,
    Archive,
    Callbacks,
    Clock,
    DeadLetterQueue,
    DeliveryArchive,
    DeliveryLedger,
    Enrich,
    Metrics,
    Redrive,
    RunNotes,
    SourceItems,
    SourceQueue,
)
from chalicelib.ratelimit import RateLimiter
from chalicelib.settings import Destination, Settings

log = logging.getLogger(__name__)

# A round's size trades per-round overhead (its receives and one ledger read) against how long
# received messages wait for a worker; measured with `python -m bench`.
ROUND_MESSAGES_PER_WORKER = 5
ROUND_MAX_MESSAGES = 100
# Finished groups are written and deleted this many messages at a time (or all that are left): two
# DeleteMessageBatch calls and one BatchWriteItem (25 at most) per finish.
FINISH_MESSAGES = 2 * MAX_BATCH_ENTRIES
ROUND_MIN_MESSAGES = FINISH_MESSAGES  # a few workers still read the ledger for a finish's worth at once
# Of each run, at most, carrying the destination's open redrive jobs on before it delivers.
REDRIVE_SLICE_S = 20.0

Draw = Callable[[float, float], float]


class Drainer:
    def __init__(
        self,
        queue: SourceQueue,
        dead_letters: DeadLetterQueue,
        ledger: DeliveryLedger,
        api: Api,
        destination: Destination,
        settings: Settings,
        notes: RunNotes | None = None,
        archive: Archive | None = None,
        enrich: Enrich | None = None,
        callbacks: Callbacks | None = None,
        *,
        metrics: Callable[[], Metrics],
        clock: Clock = time,
        draw: Draw = random.uniform,
        redrive: Redrive | None = None,
        delivered: DeliveryArchive | None = None,
        source: SourceItems | None = None,
    ) -> None:
        """`metrics`: makes each run's figures (`chalicelib.wiring` gives the EMF writer for the
        destination); `clock`: the `time` module, or a test's; `draw`: the backoff's jitter,
        uniform in [a, b]; `redrive`: carries the destination's open redrive jobs on; `delivered`:
        archives what each run delivered, for replays; `source`: the table a backfilled message's
        item is read back from before it is sent (issue #26)."""
        self._effects = Effects(
            queue,
            dead_letters,
            ledger,
            api,
            destination.name,
            notes,
            archive,
            enrich,
            callbacks,
            delivered,
            source,
            settings.partition_key,
            destination.queue_url,
        )
        self._settings = settings
        self._destination = destination
        self._inserts_only = inserts_only(settings, destination.name)
        self._rules = rules_for(destination, draw)
        self._shape = shape_of(destination)
        self._metrics = metrics
        self._clock = clock
        self._redrive = redrive

    def run(self, remaining_ms: Callable[[], int]) -> DrainReport:
        """Carry the open redrive jobs on for a slice (what they move back is delivered in this run),
        then drain until the queue is empty, the budget is spent, time runs short or the API says stop."""
        margin = self._settings.drain_safety_margin_ms
        state = RunState(lambda: remaining_ms() < margin, self._settings.breaker_failures, self._metrics())
        started_at = self._clock.time()
        pause = self._effects.pause()
        if pause is not None:  # nothing received, nothing redriven: its waiting tasks get heartbeats
            state.stop(PAUSED, detail=str(pause.get("reason", "")))
            self._effects.keep_waiting(state)
            report = state.report()
            self._effects.report(state, report, started_at, finished_at=self._clock.time())
            return report
        self._effects.open_archive(state, started_at)
        if self._redrive is not None:
            slice_ends = self._clock.monotonic() + REDRIVE_SLICE_S
            state.redriven = self._redrive(
                lambda: self._clock.monotonic() > slice_ends or remaining_ms() < margin
            )
        workers = self._settings.drain_workers
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver") as pool:
            in_flight = InFlight()
            try:
                ending = self._rounds(state, pool, in_flight)
                self._effects.finish(in_flight.take_done(in_flight.messages, wait=True), state)
            except Exception:
                self._salvage(in_flight, state)
                raise
            finally:  # every group is finished by now; before the report, which flushes the metrics
                self._effects.close_archive(state)
        if ending:  # budget and empty end the receiving, not the deliveries already under way
            state.stop(ending)
        report = state.report()
        self._effects.report(state, report, started_at, finished_at=self._clock.time())
        return report

    def _rounds(self, state: RunState, pool: ThreadPoolExecutor, in_flight: InFlight) -> str:
        """Receive rounds and hand their groups out until the run stops; "budget" or "empty" when
        that is why the receiving ended."""
        limiter = RateLimiter(
            self._destination.rate_limit_per_s,
            self._destination.rate_limit_burst,
            clock=self._clock.monotonic,
            sleep=self._clock.sleep,
        )
        workers = self._settings.drain_workers
        # batching, a round holds a full request per worker if it can
        per_worker = max(ROUND_MESSAGES_PER_WORKER, self._destination.batch_max_items)
        target = min(ROUND_MAX_MESSAGES, max(ROUND_MIN_MESSAGES, workers * per_worker))
        while not state.should_stop():
            if state.received >= self._settings.drain_budget:
                return "budget"
            full = False
            if in_flight.messages < 2 * target:  # at most two rounds in hand
                received_at = self._clock.monotonic()
                batch = self._receive_round(state, target, in_flight.messages)
                if batch:
                    records = self._effects.read({m.message_id for m in batch})
                    fresh = self._effects.check(batch, records, state, self._inserts_only)
                    deadline = received_at + self._settings.attempt_window_s(self._destination)
                    run = GroupRun(state, limiter, records, deadline, self._clock, fresh=fresh)
                    self._hand_out(batch, run, pool, in_flight)
                elif not in_flight:
                    return "empty"
                full = len(batch) >= target
            # A full round: the next is received while it is delivered. A short one found the other
            # groups in flight or the queue empty, and two rounds in hand are enough: wait for
            # groups to finish, a finish's worth, so they can be received again.
            finished = in_flight.take_done(FINISH_MESSAGES, wait=not full)
            self._effects.finish(finished, state)
            state.visible = visible_freed(
                state.visible, sum(len(r.delete) + len(r.releases) for r in finished)
            )
        return ""

    def _hand_out(
        self, batch: list[ReceivedMessage], run: GroupRun, pool: ThreadPoolExecutor, in_flight: InFlight
    ) -> None:
        """A round's groups to the workers, each in order on one worker; batching, in jobs of whole
        groups of up to a request's worth of messages (`bulk.jobs`), each job on one worker."""
        groups = list(group_in_order(batch).values())
        # in a copy of this thread's context: log lines keep the invocation's keys
        if self._shape is None:
            for group in groups:
                task = contextvars.copy_context().run
                in_flight.add(
                    pool.submit(task, drain_group.deliver_group, group, self._effects, run, self._rules),
                    len(group),
                )
            return
        workers = self._settings.drain_workers
        for job in bulk.jobs(groups, self._shape.max_items):
            task = contextvars.copy_context().run
            size = sum(map(len, job))  # before the worker takes its groups from `job`
            work = Job(job, self._rules, self._shape)
            in_flight.add(pool.submit(task, deliver_job, work, self._effects, run, workers), size)

    def _receive_round(self, state: RunState, target: int, in_hand: int) -> list[ReceivedMessage]:
        """Enough messages to keep every worker busy for a while: receives (10 at a time) until the
        round holds `target` (ROUND_MESSAGES_PER_WORKER per worker, one ledger read), the budget is
        spent or the queue has no more to give now (`receive_size`): asking again would cost a
        request for nothing. A group's later messages cannot arrive while its earlier ones are in
        flight, so each group is one worker's, in order."""
        batch: list[ReceivedMessage] = []
        while True:
            budget_left = self._settings.drain_budget - state.received
            asked = receive_size(len(batch), in_hand, target, budget_left, state.visible)
            if not asked:
                break
            received = self._effects.receive(asked, self._settings.visibility_timeout_s)
            state.visible = visible_after(state.visible, asked, len(received))
            state.received += len(received)
            state.seen.update((m.copy_id, m.sent_at_ms) for m in received)
            state.tokens.update((m.copy_id, token) for m in received if (token := self._effects.token(m)))
            batch += received
            if len(received) < asked:
                break
        return batch

    def _salvage(self, in_flight: InFlight, state: RunState) -> None:
        """The run hit an AWS error: stop it and still finish the groups already handed to the
        workers, so their messages go back released, head first, instead of all at once when their
        visibility ends (which moto would return out of order)."""
        state.stop("error")
        try:
            self._effects.finish(in_flight.take_finished(), state)
        except Exception as exc:  # the original error is the one to raise
            log.error("groups in flight could not be finished", extra={"error": str(exc)})


def deliver_job(job: Job, effects: Effects, run: GroupRun, workers: int) -> GroupResult:
    """A batched job on its worker (`drain_group.deliver_job`), finished there when its requests
    settled enough items and the run has other workers (`finishes_on_worker`), else by the run's
    thread."""
    result = drain_group.deliver_job(job, effects, run)
    if finishes_on_worker(result.settlements, workers):
        effects.finish_own(result)
    return result


def group_in_order(batch: list[ReceivedMessage]) -> dict[str, list[ReceivedMessage]]:
    """Split a receive batch by group; SQS returns each group's messages oldest first."""
    groups: dict[str, list[ReceivedMessage]] = {}
    for message in batch:
        groups.setdefault(message.group_id, []).append(message)
    return groups


def inserts_only(settings: Settings, destination: str) -> frozenset[str]:
    """The routes to `destination` that take no MODIFY record: an item's changes never reach it
    through them, so a backfilled item changed since is still sent (`freshness.judge`)."""
    return frozenset(
        r.name for r in settings.routes if destination in r.destinations and "MODIFY" not in r.events
    )


def shape_of(destination: Destination) -> Shape | None:
    """A destination's batching; None when it sends one message per request."""
    if destination.batch_max_items <= 1:
        return None
    return Shape(
        destination.batch_max_items,
        destination.batch_max_bytes,
        destination.batch_wrapper,
        destination.batch_id_field,
    )


def rules_for(destination: Destination, draw: Draw) -> Rules:
    """A destination's failure rules, with the backoff's jitter drawn by `draw`."""
    return Rules(
        ordering=destination.ordering,
        max_attempts=destination.max_attempts,
        backoff=Backoff(destination.backoff_base_s, destination.backoff_cap_s, draw),
        wait_s=destination.backoff_base_s,
        halt_s=destination.backoff_cap_s,
        heartbeat_s=destination.heartbeat_s,
    )
