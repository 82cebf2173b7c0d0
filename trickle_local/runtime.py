"""Runs the app's own handlers as Lambda and EventBridge would: stream batches to each
`on_dynamodb_record` handler, each queue's batches to its `on_sqs_message` handler (several at once,
up to the mapping's maximum concurrency), every `@app.schedule` handler at its times, each with a
Lambda-like context whose remaining time counts down from the function's configured timeout."""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalice import Chalice
from chalice.app import CloudWatchEventConfig, DynamoDBEventConfig, ScheduledEventConfig, SQSEventConfig
from chalice.config import Config
from chalice.constants import DEFAULT_LAMBDA_TIMEOUT
from chalice.local import LambdaContext

from trickle_local.schedules import Schedule, parse
from trickle_local.sqs_poller import SqsPoller, queue_name
from trickle_local.stream_poller import StreamPoller

log = logging.getLogger("trickle.local")


# An SQS-triggered function whose mapping sets no maximum concurrency: Lambda starts with five
# batches at once (and scales up from there on AWS).
UNCAPPED_SQS_CONCURRENCY = 5


def sqs_sources(app: Chalice) -> list[SQSEventConfig]:
    return [s for s in app.event_sources if isinstance(s, SQSEventConfig)]


def sqs_concurrency(source: SQSEventConfig) -> int:
    return source.maximum_concurrency or UNCAPPED_SQS_CONCURRENCY


class Invoker:
    """Calls a handler the way the Lambda runtime does: one invocation per function at a time, but
    an SQS-triggered one up to its mapping's maximum concurrency, as Lambda runs it."""

    def __init__(self, app: Chalice, config: dict[str, Any], stage: str) -> None:
        self._app = app
        self._config = Config(chalice_stage=stage, config_from_disk=config)
        self._stage = stage
        self._concurrency = {source.name: sqs_concurrency(source) for source in sqs_sources(app)}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._guard = threading.Lock()  # the counts below, updated from several invocations at once
        self.invocations: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self._busy_s: dict[str, float] = {}
        self._running: dict[str, list[float]] = {}  # when each invocation running now started
        self._totals: dict[str, Counter[str]] = {}

    def total(self, function: str, field: str) -> int:
        """`field` summed over the reports `function` returned: what a drain's runs delivered, as
        the drain itself counted it (the progress line reads it; a real API lists nothing to count)."""
        return self._totals.get(function, Counter())[field]

    def timeout_s(self, function: str) -> int:
        return int(self._config.scope(self._stage, function).lambda_timeout or DEFAULT_LAMBDA_TIMEOUT)

    def concurrency(self, function: str) -> int:
        """How many invocations of `function` may run at once."""
        return self._concurrency.get(function, 1)

    def busy(self, function: str) -> bool:
        with self._guard:
            return bool(self._running.get(function))

    def active_s(self, function: str) -> float:
        """Seconds `function` has spent running so far, the current invocations included (rates over
        this time say how fast it works, not how long it waited for its schedule)."""
        now = time.monotonic()
        with self._guard:
            running = sum(now - started for started in self._running.get(function, []))
            return self._busy_s.get(function, 0.0) + running

    def _slot(self, function: str) -> threading.BoundedSemaphore:
        with self._guard:
            return self._slots.setdefault(function, threading.BoundedSemaphore(self.concurrency(function)))

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        context = LambdaContext(function, memory_size=128, max_runtime_ms=self.timeout_s(function) * 1000)
        with self._slot(function):
            with self._guard:
                self.invocations[function] = self.invocations.get(function, 0) + 1
                started = time.monotonic()
                self._running.setdefault(function, []).append(started)
            try:
                result = self._app.handler_map[function](event, context)
            except Exception:
                with self._guard:
                    self.errors[function] = self.errors.get(function, 0) + 1
                raise
            else:
                if isinstance(result, dict):
                    counts = {
                        k: v for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)
                    }
                    with self._guard:
                        self._totals.setdefault(function, Counter()).update(counts)
                return result
            finally:
                with self._guard:
                    self._busy_s[function] = self._busy_s.get(function, 0.0) + time.monotonic() - started
                    self._running[function].remove(started)


def scheduled_event(rule: str, moment: datetime, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:123456789012:rule/{rule}"],
        "detail": {},
    }


@dataclass
class ScheduledFunction:
    name: str
    schedule: Schedule
    due: datetime | None


@dataclass
class Clock:
    """Virtual time for schedules: `speed` compresses it; handlers still run in real time.
    `monotonic` is the real one unless a test gives its own."""

    speed: float = 1.0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic
    started_real: float = field(init=False)

    def __post_init__(self) -> None:
        self.started_real = self.monotonic()

    def now(self) -> datetime:
        return self.started_at + timedelta(seconds=(self.monotonic() - self.started_real) * self.speed)

    def real_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self.speed)

    def wait_until(self, moment: datetime, stop: threading.Event) -> bool:
        """Blocks until schedule time reaches `moment` (False) or `stop` is set (True)."""
        while self.now() < moment:
            if stop.wait(self.real_seconds_until(moment)):
                return True
        return stop.is_set()

    def wall_time(self, moment: datetime) -> datetime:
        """The real time at which schedule time reaches `moment` (schedule time runs `speed` times
        as fast, from the same start)."""
        return self.started_at + (moment - self.started_at) / self.speed


def schedule_expressions(app: Chalice) -> dict[str, str]:
    return {
        source.name: source.schedule_expression
        if isinstance(source.schedule_expression, str)
        else source.schedule_expression.to_string()
        for source in app.event_sources
        if isinstance(source, ScheduledEventConfig | CloudWatchEventConfig)
        and hasattr(source, "schedule_expression")
    }


def stream_sources(app: Chalice) -> list[DynamoDBEventConfig]:
    return [s for s in app.event_sources if isinstance(s, DynamoDBEventConfig)]


class LocalRuntime:
    """Start with `start()`; `stop()` waits for running handlers to return."""

    def __init__(
        self,
        app: Chalice,
        invoker: Invoker,
        streams: Any,
        stream_arn: str,
        region: str = "us-east-1",
        speed: float = 1.0,
        drain_every_s: float | None = None,
        poll_interval_s: float = 0.25,
        starting_position: str = "TRIM_HORIZON",
        clock: Clock | None = None,
        sqs: Any = None,
    ) -> None:
        """`clock`: schedule time, by default the real time at `speed` (a test gives one it moves).
        `sqs`: the client the app's `on_sqs_message` queues are read with (required if it has any)."""
        self.invoker = invoker
        self.clock = clock or Clock(speed)
        self._region = region
        self._drain_every_s = drain_every_s
        self._poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.pollers = [
            StreamPoller(
                streams,
                stream_arn,
                self._invoker_for(source.name),
                batch_size=source.batch_size,
                window_s=source.maximum_batching_window_in_seconds or 0,
                starting_position=starting_position,
            )
            for source in stream_sources(app)
        ]
        sources = sqs_sources(app)
        if sources and sqs is None:
            raise ValueError(
                f"the app reads queues ({', '.join(s.name for s in sources)}): give an SQS client"
            )
        self.sqs_pollers = {source.name: self._sqs_poller(sqs, source) for source in sources}
        now = self.clock.now()
        self.schedules = [
            ScheduledFunction(name, parse(expression, now), None)
            for name, expression in schedule_expressions(app).items()
        ]

    def seconds_to_next(self, function: str) -> float | None:
        """Real seconds until `function`'s schedule fires next (None: not scheduled, or not yet)."""
        for scheduled in self.schedules:
            if scheduled.name == function and scheduled.due is not None:
                return self.clock.real_seconds_until(scheduled.due)
        return None

    def _sqs_poller(self, sqs: Any, source: SQSEventConfig) -> SqsPoller:
        """The queue must exist (the stage's resources are provisioned first)."""
        url = sqs.get_queue_url(QueueName=queue_name(source))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return SqsPoller(
            sqs,
            url,
            arn,
            self._invoker_for(source.name),
            batch_size=source.batch_size,
            window_s=source.maximum_batching_window_in_seconds or 0,
        )

    def _invoker_for(self, function: str) -> Callable[[dict[str, Any]], Any]:
        return lambda event: self.invoker.invoke(function, event)

    def _next(self, scheduled: ScheduledFunction, after: datetime) -> datetime | None:
        if self._drain_every_s is not None:
            return after + timedelta(seconds=self._drain_every_s * self.clock.speed)
        return scheduled.schedule.next_after(after)

    def start(self, schedules: bool = True) -> LocalRuntime:
        self._spawn("stream-poller", self._poll_loop)
        for function, poller in self.sqs_pollers.items():
            self._spawn(f"sqs-{function}", functools.partial(self._sqs_loop, function, poller))
        if schedules:
            self.start_schedules()
        return self

    def start_schedules(self) -> None:
        """Schedules count from now (a backlog run starts them once the queue is filled)."""
        now = self.clock.now()
        for scheduled in self.schedules:
            scheduled.due = self._next(scheduled, now)
            self._spawn(f"schedule-{scheduled.name}", functools.partial(self._schedule_loop, scheduled))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            for poller in self.pollers:
                try:
                    poller.poll()
                except Exception as exc:  # the endpoint hiccuped: keep the checkpoint, try again
                    log.warning("stream poll failed", extra={"error": str(exc)})
            self._stop.wait(self._poll_interval_s)

    def _sqs_loop(self, function: str, poller: SqsPoller) -> None:
        """Receives a batch whenever an invocation slot is free and hands it to a worker thread, so
        up to the function's concurrency batches run at once; waits between receives that find none.
        On stop, the batches running are awaited (their messages then deleted or left)."""
        concurrency = self.invoker.concurrency(function)
        slots = threading.BoundedSemaphore(concurrency)
        with ThreadPoolExecutor(concurrency, thread_name_prefix=f"sqs-{function}") as pool:
            while not self._stop.is_set():
                if not slots.acquire(timeout=self._poll_interval_s):
                    continue
                try:
                    batch = poller.receive()
                except Exception as exc:  # the endpoint hiccuped: the messages stay queued
                    log.warning("sqs receive failed", extra={"function": function, "error": str(exc)})
                    batch = []
                if not batch:
                    slots.release()
                    self._stop.wait(self._poll_interval_s)
                    continue
                pool.submit(self._handle, poller, batch, slots)

    @staticmethod
    def _handle(poller: SqsPoller, batch: list[dict[str, Any]], slots: threading.BoundedSemaphore) -> None:
        try:
            poller.handle(batch)
        except Exception as exc:  # deleting failed: the batch comes back after its visibility timeout
            log.warning("sqs delete failed", extra={"queue": poller.queue_arn, "error": str(exc)})
        finally:
            slots.release()

    def _schedule_loop(self, scheduled: ScheduledFunction) -> None:
        while not self._stop.is_set() and scheduled.due is not None:
            if self.clock.wait_until(scheduled.due, self._stop):
                return
            fired_at = scheduled.due
            scheduled.due = self._next(scheduled, self.clock.now())
            try:
                result = self.invoker.invoke(
                    scheduled.name, scheduled_event(scheduled.name, fired_at, self._region)
                )
                log.debug("scheduled run", extra={"function": scheduled.name, "result": result})
            except Exception as exc:
                log.error("scheduled handler failed", extra={"function": scheduled.name, "error": str(exc)})
