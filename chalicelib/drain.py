"""The scheduled drain: receive in rounds, deliver each group in order on a worker pool, delete only
after a 2xx (or once the ledger shows the message delivered). What happens to each message is
decided by `policy.decide`; this module carries the actions out."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.callbacks import BODY_URL_EXPIRES_S, failure_cause, success_output
from chalicelib.dead_letters import dead_letter
from chalicelib.fifo_queue import MAX_BATCH_ENTRIES
from chalicelib.metrics import RunMetrics
from chalicelib.model import (
    ROUTE_ATTRIBUTE,
    TASK_TOKEN_ATTRIBUTE,
    ApiResponse,
    CallbackResult,
    EnrichmentError,
    LedgerRecord,
    ReceivedMessage,
    Status,
    Verdict,
    delivered,
    verdict,
)
from chalicelib.notes import run_note_key
from chalicelib.policy import (
    HEAD_HOLD_S,
    Action,
    Backoff,
    Callback,
    Decision,
    Move,
    Outcome,
    Rules,
    Situation,
    Tally,
    classify,
    decide,
    release_plan,
)
from chalicelib.ports import (
    Api,
    ApiKey,
    Archive,
    Callbacks,
    DeadLetterQueue,
    DeliveryLedger,
    RunNotes,
    SourceQueue,
)
from chalicelib.ratelimit import RateLimiter
from chalicelib.settings import Destination, Settings

log = logging.getLogger(__name__)

Releases = list[tuple[ReceivedMessage, int]]
TASK_GONE = "rejected"  # the ledger's callback state for a task that refused a call
# A round's size trades per-round overhead (its receives and one ledger read) against how long
# received messages wait for a worker; measured with `python -m bench`.
ROUND_MESSAGES_PER_WORKER = 5
ROUND_MAX_MESSAGES = 100
# Finished groups are written and deleted this many messages at a time (or all that are left): two
# DeleteMessageBatch calls and one BatchWriteItem (25 at most) per finish.
FINISH_MESSAGES = 2 * MAX_BATCH_ENTRIES
ROUND_MIN_MESSAGES = FINISH_MESSAGES  # a few workers still read the ledger for a finish's worth at once


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
    callbacks: int = 0  # SendTaskSuccess / SendTaskFailure taken by Step Functions
    heartbeats: int = 0
    callbacks_rejected: int = 0  # the task no longer waited (timed out, unknown token)
    callbacks_failed: int = 0  # Step Functions unavailable: answered on a later receive
    stopped_by: str = ""
    blocked_groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class RunState:
    """What every group of a run shares: why it stopped, the breaker's streak, counters, the groups
    held. Thread-safe."""

    def __init__(self, out_of_time: Callable[[], bool], breaker_failures: int, destination: str) -> None:
        self._out_of_time = out_of_time
        self._breaker_failures = breaker_failures
        self._lock = threading.Lock()
        self.stopped_by = ""
        self.resume_after_s = HEAD_HOLD_S
        self.failure_streak = 0
        self.key_refreshed = False
        self.received = 0
        self.tallies: Counter[Tally] = Counter()
        self.released = 0
        self.delete_failures = 0
        self.blocked: set[str] = set()
        self.callbacks: Counter[tuple[Callback, CallbackResult]] = Counter()
        self.metrics = RunMetrics({"destination": destination})

    def stop(self, reason: str, resume_after_s: int = HEAD_HOLD_S) -> None:
        with self._lock:
            if not self.stopped_by:
                self.stopped_by, self.resume_after_s = reason, resume_after_s

    def should_stop(self) -> bool:
        if not self.stopped_by and self._out_of_time():
            self.stop("time")
        return bool(self.stopped_by)

    def note(self, action: Action, group_id: str) -> None:
        """An action's effect on the run: the breaker's streak, a held group, a stop."""
        with self._lock:
            if action.block:
                self.blocked.add(group_id)
            if action.success:
                self.failure_streak = 0
            if action.failure:
                self.failure_streak += 1
            tripped = action.failure and self.failure_streak >= self._breaker_failures
        if action.stop:
            self.stop(action.stop, action.resume_after_s)
        if tripped:
            self.stop("breaker")

    def tally(self, tally: Tally | None) -> None:
        if tally is not None:
            with self._lock:
                self.tallies[tally] += 1

    def callback(self, kind: Callback, result: CallbackResult) -> None:
        with self._lock:
            self.callbacks[kind, result] += 1

    def claim_key_refresh(self) -> bool:
        """True for exactly one caller per run: the key is re-read from SSM once at most."""
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
            released=self.released,
            delete_failures=self.delete_failures,
            callbacks=sum(c[kind, CallbackResult.SENT] for kind in answers),
            heartbeats=c[Callback.HEARTBEAT, CallbackResult.SENT],
            callbacks_rejected=sum(n for (_, result), n in c.items() if result is CallbackResult.REJECTED),
            callbacks_failed=sum(n for (_, result), n in c.items() if result is CallbackResult.FAILED),
            stopped_by=self.stopped_by,
            blocked_groups=sorted(self.blocked),
        )


@dataclass
class GroupResult:
    delete: list[ReceivedMessage] = field(default_factory=list)
    releases: Releases = field(default_factory=list)
    delivered: list[LedgerRecord] = field(default_factory=list)


Records = dict[str, LedgerRecord]


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


def group_in_order(batch: list[ReceivedMessage]) -> dict[str, list[ReceivedMessage]]:
    """Split a receive batch by group; SQS returns each group's messages oldest first."""
    groups: dict[str, list[ReceivedMessage]] = {}
    for message in batch:
        groups.setdefault(message.group_id, []).append(message)
    return groups


@dataclass
class GroupRun:
    """What one group's worker shares with the rest of the run."""

    state: RunState
    limiter: RateLimiter
    records: Records  # the round's ledger read, kept current as the worker goes
    deadline: float  # monotonic: no attempt after this (the messages' visibility would run out)


class Drainer:
    def __init__(
        self,
        queue: SourceQueue,
        dead_letters: DeadLetterQueue,
        ledger: DeliveryLedger,
        api: Api,
        key: ApiKey,
        destination: Destination,
        settings: Settings,
        notes: RunNotes | None = None,
        archive: Archive | None = None,
        enrich: Callable[[str, str], str] | None = None,
        callbacks: Callbacks | None = None,
    ) -> None:
        self._callbacks = callbacks
        self._notes = notes
        self._archive = archive
        self._queue = queue
        self._dead_letters = dead_letters
        self._ledger = ledger
        self._api = api
        self._key = key
        self._settings = settings
        self._destination = destination
        self._rules = rules_for(destination)
        self._enrich = enrich

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
            target = min(ROUND_MAX_MESSAGES, max(ROUND_MIN_MESSAGES, workers * ROUND_MESSAGES_PER_WORKER))
            in_flight = InFlight()
            try:
                while not state.should_stop():
                    if state.received >= self._settings.drain_budget:
                        ending = "budget"
                        break
                    full = False
                    if in_flight.messages < 2 * target:  # at most two rounds in hand
                        received_at = time.monotonic()
                        batch = self._receive_round(state, target)
                        if batch:
                            run = GroupRun(
                                state,
                                limiter,
                                self._ledger.read({m.message_id for m in batch}),
                                received_at + self._settings.attempt_window_s(self._destination),
                            )
                            for group in group_in_order(batch).values():
                                # in a copy of this thread's context: log lines keep the invocation's keys
                                task = contextvars.copy_context().run
                                in_flight.add(pool.submit(task, self._deliver_group, group, run), len(group))
                        elif not in_flight:
                            ending = "empty"
                            break
                        full = len(batch) >= target
                    # A full round: the next is received while it is delivered. A short one found
                    # the other groups in flight or the queue empty, and two rounds in hand are
                    # enough: wait for groups to finish, a finish's worth, so they can be received
                    # again.
                    self._finish(in_flight.take_done(FINISH_MESSAGES, wait=not full), state)
                self._finish(in_flight.take_done(in_flight.messages, wait=True), state)
            except Exception:
                self._salvage(in_flight, state)
                raise
        if ending:
            state.stop(ending)
        report = state.report()
        self._emit(state, report)
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
        round holds `target` (ROUND_MESSAGES_PER_WORKER per worker, one ledger read), the budget is
        spent or a receive comes back short: the queue's other groups are in flight or it is empty,
        and asking again now would cost a request for nothing. A group's later messages cannot
        arrive while its earlier ones are in flight, so each group is one worker's, in order."""
        batch: list[ReceivedMessage] = []
        while len(batch) < target:
            asked = min(MAX_BATCH_ENTRIES, self._settings.drain_budget - state.received)
            if asked <= 0:
                break
            received = self._queue.receive(asked, self._settings.visibility_timeout_s)
            state.received += len(received)
            batch += received
            if len(received) < asked:
                break
        return batch

    def _emit(self, state: RunState, report: DrainReport) -> None:
        metrics = state.metrics
        metrics.count("Delivered", report.delivered)
        metrics.count("AlreadyDelivered", report.already_delivered)
        metrics.count("Retried", report.retried)
        metrics.count("DeadLettered", report.dead_lettered)
        metrics.count("RateLimited", report.saturated)
        metrics.count("Halted", report.halted)
        metrics.count("Callbacks", report.callbacks)
        metrics.count("Heartbeats", report.heartbeats)
        metrics.count("CallbackRejected", report.callbacks_rejected)
        metrics.count("CallbackFailed", report.callbacks_failed)
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
        state.released += len(releases)
        self._queue.change_visibility(releases)
        self._ledger.write([record for r in results for record in r.delivered])
        state.delete_failures += len(self._queue.delete(deletes))

    def _deliver_group(self, messages: list[ReceivedMessage], run: GroupRun) -> GroupResult:
        """One group, strictly in order: decide, then carry the action out, message by message,
        until an action holds the group."""
        result = GroupResult()
        for index, message in enumerate(messages):
            record = run.records.get(message.message_id)
            action = self._decide(message, record, run.state)
            if action.move is Move.RESTART:
                record = self._ledger.restart(message.message_id)
                if record is not None:
                    run.records[message.message_id] = record
                action = self._decide(message, record, run.state)
            response = None
            if action.move is Move.ATTEMPT:
                action, record, response = self._attempt(message, record, run)
            if not self._apply(action, messages[index:], record, response, run, result):
                break
        return result

    def _decide(self, message: ReceivedMessage, record: LedgerRecord | None, state: RunState) -> Action:
        token = self._token(message)
        retry_at = record.retry_at if record and record.retry_at else 0.0
        situation = Situation(
            verdict(record, message.copy_id),
            attempts=record.attempts if record else 0,
            blocked=message.group_id in state.blocked,
            stopped=state.stopped_by if state.should_stop() else "",
            resume_after_s=state.resume_after_s,
            token=bool(token),
            task_closed=bool(token) and bool(record and record.callback),
            last_error=record.last_error if record else "",
            wait_left_s=max(0, int(retry_at - time.time() + 0.999)) if token else 0,
        )
        return decide(situation, self._rules)

    def _token(self, message: ReceivedMessage) -> str:
        """The task token a message carries, when there is a Step Functions client to answer it."""
        return message.attributes.get(TASK_TOKEN_ATTRIBUTE, "") if self._callbacks is not None else ""

    def _attempt(
        self, message: ReceivedMessage, record: LedgerRecord | None, run: GroupRun
    ) -> tuple[Action, LedgerRecord | None, ApiResponse | None]:
        """Wait for the rate limit, POST once (on 401/403 re-read the key once per run and POST
        again), write a failure to the ledger, and decide on the answer."""
        run.limiter.acquire()
        token, closed = bool(self._token(message)), bool(record and record.callback)
        if time.monotonic() > run.deadline:
            late = Situation(Verdict.DELIVER, late=True, token=token, task_closed=closed)
            return decide(late, self._rules), record, None
        attempts = record.attempts if record else 0
        response, answer = self._call(message, attempts, run.state)
        self._log(message, attempts + 1, answer.outcome.value, response)
        if answer.outcome is Outcome.DELIVERED:
            done = delivered(record, message.message_id, message.group_id, response.status, time.time())
        else:
            done = self._ledger.settle(
                message.message_id,
                message.group_id,
                Status.FAILED,
                response.status,
                answer.reason,
                counted=answer.counted,
            )
        run.records[message.message_id] = done
        situation = Situation(
            Verdict.DELIVER, answer=answer, attempts=done.attempts, token=token, task_closed=closed
        )
        return decide(situation, self._rules), done, response

    def _call(self, message: ReceivedMessage, attempts: int, state: RunState) -> tuple[ApiResponse, Decision]:
        """Enrich the body if its route says so, POST it, and on 401/403 re-read the key (once per
        run) and POST again. A failed enrichment is answered like the API would have: retryable
        or refused."""
        body = message.body
        if self._enrich is not None:
            try:
                body = self._enrich(message.attributes.get(ROUTE_ATTRIBUTE, ""), body)
            except EnrichmentError as exc:
                outcome = Outcome.RETRY if exc.retryable else Outcome.PERMANENT
                return ApiResponse(None, error=str(exc)), Decision(outcome, f"enrichment failed: {exc}")
        response = self._api.post(body, idempotency_key=message.message_id)
        answer = classify(response)
        if answer.outcome is Outcome.AUTH and state.claim_key_refresh():
            self._key.refresh()
            self._log(message, attempts + 1, "auth-retry", response)
            response = self._api.post(body, idempotency_key=message.message_id)
            answer = classify(response)
        state.metrics.milliseconds("ApiLatency", response.elapsed_ms)
        return response, answer

    def _apply(
        self,
        action: Action,
        rest: list[ReceivedMessage],
        record: LedgerRecord | None,
        response: ApiResponse | None,
        run: GroupRun,
        result: GroupResult,
    ) -> bool:
        """Carry out one action for `rest[0]`, the effects of every decision in one place; True
        when the group goes on to its next message."""
        message = rest[0]
        attempts = record.attempts if record else 0
        answered: CallbackResult | None = None
        if action.move is Move.DEAD_LETTER:
            excerpt = response.body_excerpt if response else ""
            if self._dead_letters.send([dead_letter(message, action.reason, excerpt, record)]):
                has_task = action.callback is not None
                refused = Situation(Verdict.DELIVER, dead_letter_refused=True, token=has_task)
                return self._apply(decide(refused, self._rules), rest, record, response, run, result)
            record = self._ledger.settle(
                message.message_id,
                message.group_id,
                Status.DEAD,
                None,
                action.reason,
                counted=False,
                dead_copy=message.copy_id,
            )
            log.error("message dead-lettered", extra=self._fields(message, attempts, action.reason))
            answered = self._answer(action, message, record, None, run.state)[0]
        elif action.move is Move.HALT:
            self._ledger.settle(
                message.message_id, message.group_id, Status.HALTED, None, action.reason, counted=False
            )
            fields = self._fields(message, attempts, action.reason)
            log.error("group halted by a poison message", extra=fields)
        elif action.move is Move.DELIVERED:
            assert record is not None and response is not None  # an attempt was made and recorded
            if self._archive is not None:
                self._archive.store(message.message_id, response.status, response.body)
            if message.sent_at_ms:
                age = max(0.0, time.time() - message.sent_at_ms / 1000)
                run.state.metrics.seconds("DeliveredAge", age)
            answered, output = self._answer(action, message, record, response, run.state)
            if answered is CallbackResult.FAILED:  # the ledger keeps the output until it is taken
                record = replace(record, callback_output=output)
            elif answered is not None:
                record = replace(record, callback=_state(action, answered))
            result.delivered.append(record)
        elif action.move is Move.DELETE or response is None:  # nothing logged yet for this step
            self._log(message, attempts, action.reason, None)
            if action.move is Move.DELETE:
                answered = self._answer(action, message, record, None, run.state)[0]
        if answered is CallbackResult.FAILED:
            if action.move is not Move.DELETE:  # delivered or dead-lettered all the same: counted so
                run.state.note(action, message.group_id)
                run.state.tally(action.tally)
            return self._unanswered(rest, record, run, result)
        if answered is not None and action.move is not Move.DELIVERED:
            self._ledger.note_callback(message.message_id, message.group_id, _state(action, answered))
        if action.holds:
            self._keep_alive(action, rest, run)
        if action.move in (Move.HALT, Move.RELEASE):
            result.releases += release_plan(rest, action.hold_s)
        else:
            result.delete.append(message)
        run.state.note(action, message.group_id)
        run.state.tally(action.tally)
        if action.stop == "auth":
            log.error(
                "the API refused the key even after re-reading it from SSM this run; stopping the run",
                extra=self._fields(message, attempts, action.reason),
            )
        return action.group_goes_on

    def _answer(
        self,
        action: Action,
        message: ReceivedMessage,
        record: LedgerRecord | None,
        response: ApiResponse | None,
        state: RunState,
    ) -> tuple[CallbackResult | None, str]:
        """Answer the message's waiting task as the action says (success or failure), after the
        action's effect; the result and, for a success, the output sent."""
        token = self._token(message)
        kind = action.callback
        if not token or kind not in (Callback.SUCCESS, Callback.FAILURE):
            return None, ""
        assert self._callbacks is not None  # a token is only read when there are callbacks
        attempts = record.attempts if record else 0
        status_code = response.status if response else (record.last_status_code if record else None)
        name = self._destination.name
        if kind is Callback.SUCCESS:
            archive = self._archive if response is not None else None  # holds the answer just stored
            output = (record.callback_output if record and response is None else "") or success_output(
                message.message_id,
                name,
                status_code,
                response.body if response else None,
                attempts,
                record.last_attempt_at if record else None,
                (lambda: archive.url(message.message_id, BODY_URL_EXPIRES_S)) if archive else None,
            )
            result = self._callbacks.success(token, output)
        else:
            output = ""
            reason = record.last_error if record and record.last_error else action.reason
            cause = failure_cause(message.message_id, name, reason, status_code, attempts)
            result = self._callbacks.failure(token, action.error, cause)
        state.callback(kind, result)
        fields = self._fields(message, attempts, f"callback {kind.value}: {result.value}")
        log.log(logging.INFO if result is CallbackResult.SENT else logging.WARNING, "callback", extra=fields)
        return result, output

    def _unanswered(
        self, rest: list[ReceivedMessage], record: LedgerRecord | None, run: GroupRun, result: GroupResult
    ) -> bool:
        """Step Functions did not take the answer: keep the message (and its token) to answer
        when it comes back, without posting it again."""
        kept = decide(Situation(Verdict.DELIVERED, token=True, callback_failed=True), self._rules)
        return self._apply(kept, rest, record, None, run, result)

    def _keep_alive(self, action: Action, rest: list[ReceivedMessage], run: GroupRun) -> None:
        """A held group: the tasks still waiting for its messages get a heartbeat, and one that
        refuses it is recorded as gone (never called again); a head held short of its retry time
        is not attempted before then."""
        head = rest[0]
        if action.wait_s:
            self._ledger.hold_until(head.message_id, head.group_id, time.time() + action.wait_s)
        if action.callback is not Callback.HEARTBEAT and self._waiting(head, run.records):
            return  # Step Functions did not take the head's answer: no heartbeats either
        for message in rest:
            token = self._waiting(message, run.records)
            if not token or self._callbacks is None:
                continue
            result = self._callbacks.heartbeat(token)
            run.state.callback(Callback.HEARTBEAT, result)
            if result is CallbackResult.REJECTED:
                self._ledger.note_callback(message.message_id, message.group_id, TASK_GONE)

    def _waiting(self, message: ReceivedMessage, records: Records) -> str:
        """The token of the task waiting for a message: none once the ledger shows it answered or gone."""
        record = records.get(message.message_id)
        return "" if record and record.callback else self._token(message)

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
        """One line per step, but a plain delivery only at DEBUG: at INFO that line cost about 0.3 ms
        of the drain's CPU per message (README, "Where the drain's time goes"), and the ledger and
        the Delivered metric already say it."""
        level = logging.DEBUG if outcome == Outcome.DELIVERED.value else logging.INFO
        if not log.isEnabledFor(level):
            return
        fields = self._fields(message, attempt, outcome)
        if response is not None:
            fields |= {"status": response.status, "error": response.error, "elapsed_ms": response.elapsed_ms}
        log.log(level, "delivery", extra=fields)


def _state(action: Action, result: CallbackResult) -> str:
    """What the ledger keeps about an answer Step Functions took or refused."""
    if result is CallbackResult.REJECTED:
        return TASK_GONE
    return "success" if action.callback is Callback.SUCCESS else "failure"


def rules_for(destination: Destination) -> Rules:
    """A destination's failure rules."""
    return Rules(
        ordering=destination.ordering,
        max_attempts=destination.max_attempts,
        backoff=Backoff(destination.backoff_base_s, destination.backoff_cap_s),
        wait_s=destination.backoff_base_s,
        halt_s=destination.backoff_cap_s,
        heartbeat_s=destination.heartbeat_s,
    )
