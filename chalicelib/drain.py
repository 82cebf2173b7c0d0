"""The scheduled drain: receive in batches, deliver each group in order, delete only after a 2xx
(or once the ledger shows the message delivered), and decide per response what happens next."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.api_client import ApiClient, ApiResponse
from chalicelib.archive import ResponseArchive
from chalicelib.dead_letters import dead_letter
from chalicelib.fifo_queue import MAX_BATCH_ENTRIES, FifoQueue, ReceivedMessage
from chalicelib.ledger import Ledger, LedgerRecord, Notes, Status, Verdict, delivered, verdict
from chalicelib.metrics import RunMetrics
from chalicelib.operations import run_note_key
from chalicelib.policy import HEAD_HOLD_S, Decision, Outcome, backoff_s, classify, release_plan
from chalicelib.ratelimit import RateLimiter
from chalicelib.settings import Settings

log = logging.getLogger(__name__)

Releases = list[tuple[ReceivedMessage, int]]
# A round's size trades per-round overhead (its receives and one ledger read) against how long
# received messages wait for a worker; measured with `python -m bench`.
ROUND_MESSAGES_PER_WORKER = 5
ROUND_MAX_MESSAGES = 100


@dataclass
class DrainReport:
    received: int = 0
    delivered: int = 0
    already_delivered: int = 0
    retried: int = 0
    saturated: int = 0
    dead_lettered: int = 0
    halted: int = 0
    released: int = 0
    delete_failures: int = 0
    stopped_by: str = ""
    blocked_groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class RunState:
    """What every group of a run shares: why it stopped, failure streaks, counters. Thread-safe."""

    def __init__(self, out_of_time: Callable[[], bool], breaker_failures: int, destination: str) -> None:
        self._out_of_time = out_of_time
        self._breaker_failures = breaker_failures
        self._lock = threading.Lock()
        self.stopped_by = ""
        self.resume_after_s = HEAD_HOLD_S
        self.failure_streak = 0
        self.key_refreshed = False
        self.report = DrainReport()
        self.blocked: set[str] = set()
        self.metrics = RunMetrics({"destination": destination})

    def stop(self, reason: str, resume_after_s: int = HEAD_HOLD_S) -> None:
        with self._lock:
            if not self.stopped_by:
                self.stopped_by, self.resume_after_s = reason, resume_after_s

    def should_stop(self) -> bool:
        if not self.stopped_by and self._out_of_time():
            self.stop("time")
        return bool(self.stopped_by)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.report, name, getattr(self.report, name) + n)

    def block(self, group_id: str) -> None:
        with self._lock:
            self.blocked.add(group_id)

    def failed_retryably(self) -> None:
        with self._lock:
            self.failure_streak += 1
            tripped = self.failure_streak >= self._breaker_failures
        if tripped:
            self.stop("breaker")

    def first_key_refresh(self) -> bool:
        """True for exactly one caller per run: the key is re-read from SSM once at most."""
        with self._lock:
            first, self.key_refreshed = not self.key_refreshed, True
        return first

    def succeeded(self) -> None:
        with self._lock:
            self.failure_streak = 0


@dataclass
class GroupResult:
    delete: list[ReceivedMessage] = field(default_factory=list)
    releases: Releases = field(default_factory=list)
    delivered: list[LedgerRecord] = field(default_factory=list)


Records = dict[str, LedgerRecord]


class InFlight:
    """The groups handed to the workers and not yet finished, with how many messages each holds."""

    def __init__(self) -> None:
        self._sizes: dict[Future[GroupResult], int] = {}

    def __bool__(self) -> bool:
        return bool(self._sizes)

    def add(self, future: Future[GroupResult], messages: int) -> None:
        self._sizes[future] = messages

    @property
    def messages(self) -> int:
        return sum(self._sizes.values())

    def take_done(self, at_least: int, wait: bool) -> list[GroupResult]:
        """The results of every finished group, once they hold `at_least` messages (or all are
        finished); without `wait`, nothing until then. A group whose worker raised raises here."""
        at_least = min(at_least, self.messages)
        while True:
            done = [f for f in self._sizes if f.done()]
            if sum(self._sizes[f] for f in done) >= at_least:
                break
            if not wait:
                return []
            futures.wait([f for f in self._sizes if not f.done()], return_when=futures.FIRST_COMPLETED)
        results = [f.result() for f in done]
        for future in done:
            del self._sizes[future]
        return results

    def take_finished(self) -> list[GroupResult]:
        """Waits for every group and returns the results of those whose worker did not raise."""
        futures.wait(self._sizes)
        results = [f.result() for f in self._sizes if f.exception() is None]
        self._sizes.clear()
        return results


def group_in_order(batch: list[ReceivedMessage]) -> dict[str, list[ReceivedMessage]]:
    """Split a receive batch by group; SQS returns each group's messages oldest first."""
    groups: dict[str, list[ReceivedMessage]] = {}
    for message in batch:
        groups.setdefault(message.group_id, []).append(message)
    return groups


class Drainer:
    def __init__(
        self,
        queue: FifoQueue,
        dead_letters: FifoQueue,
        ledger: Ledger,
        api: ApiClient,
        refresh_key: Callable[[], object],
        settings: Settings,
        notes: Notes | None = None,
        archive: ResponseArchive | None = None,
    ) -> None:
        self._notes = notes
        self._archive = archive
        self._queue = queue
        self._dead_letters = dead_letters
        self._ledger = ledger
        self._api = api
        self._refresh_key = refresh_key
        self._settings = settings
        self._destination = settings.destination

    def run(self, remaining_ms: Callable[[], int]) -> DrainReport:
        """Drain until the queue is empty, the budget is spent, time runs short or the API says stop."""
        margin = self._settings.drain_safety_margin_ms
        state = RunState(
            lambda: remaining_ms() < margin, self._settings.breaker_failures, self._destination.name
        )
        limiter = RateLimiter(self._destination.rate_limit_per_s, self._destination.rate_limit_burst)
        workers = self._settings.drain_workers
        ending = ""  # budget and empty end the receiving, not the deliveries already under way
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver") as pool:
            target = min(ROUND_MAX_MESSAGES, workers * ROUND_MESSAGES_PER_WORKER)
            in_flight = InFlight()
            try:
                while not state.should_stop():
                    if state.report.received >= self._settings.drain_budget:
                        ending = "budget"
                        break
                    received_at = time.monotonic()
                    batch = self._receive_round(state, target)
                    if batch:
                        records = self._ledger.read({m.message_id for m in batch})
                        deliver = functools.partial(
                            self._deliver_group,
                            state=state,
                            limiter=limiter,
                            records=records,
                            deadline=received_at + self._settings.attempt_window_s,
                        )
                        for group in group_in_order(batch).values():
                            in_flight.add(pool.submit(deliver, group), len(group))
                    elif not in_flight:
                        ending = "empty"
                        break
                    # A full round: the next is received while it is delivered, up to two in hand.
                    # A short one found the other groups in flight or the queue empty: wait for
                    # groups to finish, a delete batch's worth, so they can be received again.
                    short = len(batch) < target or in_flight.messages > 2 * target
                    self._finish(in_flight.take_done(MAX_BATCH_ENTRIES, wait=short), state)
                self._finish(in_flight.take_done(in_flight.messages, wait=True), state)
            except Exception:
                self._salvage(in_flight, state)
                raise
        if ending:
            state.stop(ending)
        report = state.report
        report.stopped_by = state.stopped_by
        report.blocked_groups = sorted(state.blocked)
        self._emit(state)
        if self._notes is not None:
            self._notes.save(
                run_note_key(self._destination.name), report.as_dict() | {"finished_at": time.time()}
            )
        log.info(
            "drain run finished", extra={"destination": self._destination.name, "report": report.as_dict()}
        )
        return report

    def _receive_round(self, state: RunState, target: int) -> list[ReceivedMessage]:
        """Enough messages to keep every worker busy for a while: receives (10 at a time) until the
        round holds ROUND_MESSAGES_PER_WORKER per worker (at most ROUND_MAX_MESSAGES, one ledger
        read), the budget is spent or nothing more comes. A group's later messages cannot arrive
        while its earlier ones are in flight, so each group is one worker's, in order."""
        batch: list[ReceivedMessage] = []
        while len(batch) < target:
            budget_left = self._settings.drain_budget - state.report.received
            if budget_left <= 0:
                break
            received = self._queue.receive(budget_left, self._settings.visibility_timeout_s)
            if not received:
                break
            state.count("received", len(received))
            batch += received
        return batch

    def _emit(self, state: RunState) -> None:
        report, metrics = state.report, state.metrics
        metrics.count("Delivered", report.delivered)
        metrics.count("AlreadyDelivered", report.already_delivered)
        metrics.count("Retried", report.retried)
        metrics.count("DeadLettered", report.dead_lettered)
        metrics.count("RateLimited", report.saturated)
        metrics.count("Halted", report.halted)
        try:
            metrics.count("Backlog", self._queue.depth())
        except (ClientError, BotoCoreError) as exc:
            log.warning("backlog unknown", extra={"error": str(exc)})
        metrics.flush()

    def _salvage(self, in_flight: InFlight, state: RunState) -> None:
        """The run hit an AWS error: stop it and still finish the groups already handed to the
        workers, so their messages go back released, head first, instead of all at once when their
        visibility ends (which moto would return out of order)."""
        state.stop("error")
        try:
            self._finish(in_flight.take_finished(), state)
        except Exception as exc:  # the original error is the one to raise
            log.error("groups in flight could not be finished", extra={"error": str(exc)})

    def _finish(self, results: list[GroupResult], state: RunState) -> None:
        """Releases, then the finished groups' deliveries into the ledger, then deletes: a message is deleted
        only once the ledger says delivered, so if the run dies before the deletes, the ledger turns
        the return of a delivered message into a delete without a second delivery."""
        deletes = [m for r in results for m in r.delete]
        releases = [change for r in results for change in r.releases]
        state.count("released", len(releases))
        self._queue.change_visibility(releases)
        self._ledger.write([record for r in results for record in r.delivered])
        state.count("delete_failures", len(self._queue.delete(deletes)))

    def _deliver_group(
        self,
        messages: list[ReceivedMessage],
        *,
        state: RunState,
        limiter: RateLimiter,
        records: Records,
        deadline: float,
    ) -> GroupResult:
        """One group, strictly in order; returns what to delete, what goes back and when, and the
        ledger records of what was delivered. `records` is the round's ledger read, kept current;
        past `deadline` (monotonic) nothing more is attempted and the rest goes back."""
        result = GroupResult()
        group = messages[0].group_id
        for index, message in enumerate(messages):
            rest = messages[index:]
            if group in state.blocked:
                result.releases += release_plan(rest, self._settings.retry_delay_s)
                return result
            if state.should_stop():
                result.releases += release_plan(rest, state.resume_after_s)
                return result
            record = records.get(message.message_id)
            seen = verdict(record, message.copy_id)
            if seen is Verdict.REDRIVEN:
                record = self._ledger.restart(message.message_id)
                seen = verdict(record, message.copy_id)
            attempts = record.attempts if record else 0
            if seen in (Verdict.DELIVERED, Verdict.DEAD):
                self._log(message, attempts, f"already {seen.value}", None)
                if seen is Verdict.DELIVERED:
                    state.count("already_delivered")
                result.delete.append(message)
                continue
            if seen is Verdict.SKIP:
                if self._poison(rest, "skipped by an operator", "", record, state, result, skipped=True):
                    continue
                return result
            if seen is Verdict.HALTED:
                self._log(message, attempts, seen.value, None)
                state.block(group)
                result.releases += release_plan(rest, self._settings.retry_max_delay_s)
                return result
            limiter.acquire()
            if time.monotonic() > deadline:
                self._log(message, attempts, "visibility running out: released", None)
                result.releases += release_plan(rest, HEAD_HOLD_S)
                return result
            response, decision = self._attempt(message, attempts, state)
            if decision.outcome is Outcome.DELIVERED:
                done = delivered(record, message.message_id, group, response.status, time.time())
                records[message.message_id] = done
                result.delivered.append(done)
                if self._archive is not None:
                    self._archive.store(message.message_id, response.status, response.body)
                if message.sent_at_ms:
                    state.metrics.seconds("DeliveredAge", max(0.0, time.time() - message.sent_at_ms / 1000))
                state.succeeded()
                state.count("delivered")
                result.delete.append(message)
                continue
            record = records[message.message_id] = self._ledger.settle(
                message.message_id,
                group,
                Status.FAILED,
                response.status,
                decision.reason,
                counted=decision.counted,
            )
            if decision.outcome is Outcome.PERMANENT or (
                decision.outcome is Outcome.RETRY and record.attempts >= self._destination.max_attempts
            ):
                reason = (
                    decision.reason
                    if decision.outcome is Outcome.PERMANENT
                    else (f"gave up after {record.attempts} attempts; last: {decision.reason}")
                )
                if decision.outcome is Outcome.RETRY:
                    state.failed_retryably()
                if self._poison(rest, reason, response.body_excerpt, record, state, result):
                    continue
                return result
            state.block(group)
            if decision.outcome is Outcome.SATURATED:
                state.count("saturated")
                state.stop("saturated", decision.retry_after_s or HEAD_HOLD_S)
                result.releases += release_plan(rest, decision.retry_after_s or HEAD_HOLD_S)
            elif decision.outcome is Outcome.AUTH:
                result.releases += release_plan(rest, HEAD_HOLD_S)
            else:
                state.count("retried")
                state.failed_retryably()
                delay = backoff_s(
                    record.attempts, self._settings.retry_delay_s, self._settings.retry_max_delay_s
                )
                result.releases += release_plan(rest, delay)
            return result
        return result

    def _attempt(
        self, message: ReceivedMessage, attempts: int, state: RunState
    ) -> tuple[ApiResponse, Decision]:
        """POST once; on 401/403 re-read the key from SSM once per run and try again."""
        response = self._api.post(message.body, idempotency_key=message.message_id)
        state.metrics.milliseconds("ApiLatency", response.elapsed_ms)
        decision = classify(response)
        if decision.outcome is Outcome.AUTH and state.first_key_refresh():
            self._refresh_key()
            self._log(message, attempts + 1, "auth-retry", response)
            response = self._api.post(message.body, idempotency_key=message.message_id)
            decision = classify(response)
        if decision.outcome is Outcome.AUTH:
            log.error(
                "the API refused the key even after re-reading it from SSM; stopping the run",
                extra={"destination": self._destination.name, "status": response.status},
            )
            state.stop("auth")
        self._log(message, attempts + 1, decision.outcome.value, response)
        return response, decision

    def _poison(
        self,
        rest: list[ReceivedMessage],
        reason: str,
        excerpt: str,
        record: LedgerRecord | None,
        state: RunState,
        result: GroupResult,
        skipped: bool = False,
    ) -> bool:
        """Dead-letter `rest[0]` (skip) or halt its group (strict); True when the group may go on."""
        message = rest[0]
        attempts = record.attempts if record else 0
        if self._destination.ordering == "strict" and not skipped:
            self._ledger.settle(
                message.message_id, message.group_id, Status.HALTED, None, reason, counted=False
            )
            log.error("group halted by a poison message", extra=self._fields(message, attempts, reason))
            state.count("halted")
            state.block(message.group_id)
            result.releases += release_plan(rest, self._settings.retry_max_delay_s)
            return False
        if self._dead_letters.send([dead_letter(message, reason, excerpt, record)]):
            state.block(message.group_id)
            result.releases += release_plan(rest, self._settings.retry_delay_s)
            return False
        self._ledger.settle(
            message.message_id,
            message.group_id,
            Status.DEAD,
            None,
            reason,
            counted=False,
            dead_copy=message.copy_id,
        )
        log.error("message dead-lettered", extra=self._fields(message, attempts, reason))
        state.count("dead_lettered")
        result.delete.append(message)
        return True

    def _fields(self, message: ReceivedMessage, attempt: int, outcome: str) -> dict[str, object]:
        return {
            "message_id": message.message_id,
            "group_id": message.group_id,
            "destination": self._destination.name,
            "attempt": attempt,
            "receive_count": message.receive_count,
            "outcome": outcome,
        }

    def _log(
        self, message: ReceivedMessage, attempt: int, outcome: str, response: ApiResponse | None
    ) -> None:
        fields = self._fields(message, attempt, outcome)
        if response is not None:
            fields |= {"status": response.status, "error": response.error, "elapsed_ms": response.elapsed_ms}
        log.info("delivery", extra=fields)
