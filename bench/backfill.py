"""The `backfill` section (issue 26): a backfill of the table's items on the emulator, through
`POST /backfills`' code and the `jobs` function as its trigger hands it tasks, at 1, 4 and 8 segments.

Queueing (`--items`, default 100,000): a fresh account's table holds that many new orders; the
backfill queues them for the orders destination with no drain running and no rate limit (its
high-water mark set above them: nothing paces it), so the figure is the Scan and the queueing
alone: items queued per second and AWS requests per item, the Scan and the SendMessageBatch calls
(the issue's goal: at most 0.15) and every call the `jobs` function made. On ministack a large
table is slow here for the emulator's sake: each message sent prunes its whole five-minute
deduplication window, so queueing n items at once costs it in proportion to n squared.

Delivery beside live items (`--delivery-items`, default `DELIVERY_ITEMS`; the issue's 100,000 takes
17 minutes per segment count at the rate at least, 26 to 30 on ministack): a table of that many,
backfilled at each segment count as deployed, paced by the mark and the rate, while the drain runs
back to back (again at once after a run that delivered, a second after one that found the queue
empty) at `RATE_PER_S` with `DRAIN_WORKERS` workers and live orders are written at `LIVE_PER_S`
(PutItem, then the ingest handler with the stream record the write makes, as the stream would hand
it: the stream's own lag is not in the figure). Each live item's delay is from its write to its
arrival at the stand-in API; beside it the same live load without a backfill. The jobs function's
own requests per item are counted by its threads. Pacing: each part's hand-ons that waited on the
high-water mark (`backfill_max_queued`), and the seconds they asked to wait. The default high-water
mark is a run of the drain's worth (`job_plan.default_max_queued`): here the drain runs back to
back, so its runs' worth is a second of the rate (`BACK_TO_BACK_MARK`, set as the routes file
would); one run at the mark app.py's once-a-minute schedule gives by default (half a run's budget,
`SCHEDULED_MARK`) shows what that costs live items with this drain.

Under a schedule (`SCHEDULE`, `SCHEDULED_ITEMS`): the drain run every 12 s, each run taking at most
200 messages (app.py's once a minute with its default budget of 500, scaled down in time), the
mark its default for that schedule (half a run's budget); the live load alone under the same
schedule beside it.

The `jobs` trigger is played as Lambda's event source mapping plays it (`trickle_local.sqs_poller`,
up to the function's maximum concurrency at once), in threads of this process: the segments share its
two CPUs with the emulator and the stand-in, where on AWS each would have a Lambda of its own.
Figures; asserts nothing."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import requests

from bench.harness import Bench, LambdaContext, cpu_seconds
from bench.stream import customer, insert_record, order_image
from chalicelib import naming, wiring
from chalicelib.job_plan import Task, default_max_queued
from chalicelib.job_worker import JobWorker
from trickle_local.runtime import sqs_concurrency, sqs_sources
from trickle_local.sqs_poller import SqsPoller


@dataclass(frozen=True)
class Schedule:
    """A drain on a schedule: a run every `period_s`, each taking at most `budget` messages
    (`TRICKLE_DRAIN_BUDGET`), so at most `budget / period_s` messages a second move."""

    period_s: float
    budget: int

    def env(self) -> dict[str, str]:
        return {"TRICKLE_DRAIN_BUDGET": str(self.budget)}


SEGMENTS = (1, 4, 8)
DEFAULT_ITEMS = 100_000
DELIVERY_ITEMS = 4_000  # delivered with the live load, per segment count (at most --items)
RATE_PER_S = 100  # the orders destination's rate limit while delivering (burst 10)
DRAIN_WORKERS = 4  # W / L = 4 / 20 ms = 200/s: the rate limit, not the workers, bounds the drain
DRAIN_IDLE_S = 1.0  # the drain runs again this long after a run that found the queue empty
LIVE_PER_S = 4.0  # live orders written per second, with and without a backfill
BASELINE_S = 20.0  # the live load alone
# The default mark for this drain, which runs back to back (no time between runs): a second of the rate.
DRAIN_BUDGET = 500  # TRICKLE_DRAIN_BUDGET's default: messages a drain run takes at most
BACK_TO_BACK_MARK = default_max_queued(RATE_PER_S, None, DRAIN_BUDGET)
# What app.py's drain_orders, Rate(1 minute), gives by default: a run's worth, half its budget.
SCHEDULED_MARK = default_max_queued(RATE_PER_S, 60.0, DRAIN_BUDGET)
TUNED_SEGMENTS = 4
# A drain on a schedule, as app.py's Rate(1 minute) with TRICKLE_DRAIN_BUDGET's default 500 (at most
# 500 a minute, 8.3/s), scaled so the section stays within minutes: a run every 12 s of at most 200
# (16.7/s). Its default mark is half a run's budget (100): more than the live load writes between
# two runs (48), so the live items queued behind it fit in the same run.
SCHEDULE = Schedule(12.0, 200)
SCHEDULE_MARK = default_max_queued(RATE_PER_S, SCHEDULE.period_s, SCHEDULE.budget)
SCHEDULED_ITEMS = 1_000  # backfilled under that schedule (85 s on ministack, at what its runs leave)
GOAL_REQUESTS_PER_ITEM = 0.15
GOAL_DELAY_RATIO = 2.0
SCAN_AND_QUEUE = ("dynamodb:Scan", "sqs:SendMessageBatch")
# The table's customers (partition keys, FIFO groups): enough that a Scan's segments, split by the
# partition key's hash, get about even shares.
CUSTOMERS = 1000
# Live items' numbers: their keys and event ids never meet the table's, nor an earlier run's (the
# stand-in outlives the runs and applies an Idempotency-Key once; message ids derive from event ids).
LIVE_OFFSET = 10_000_000
LIVE_RUN_SPAN = 1_000_000
MARK_VARIABLE = naming.destination_variable("orders", "backfill_max_queued")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the arithmetic (pure) -------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p95 and max (nearest rank) of `values`, in seconds rounded to ms, and how many."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50_s": None, "p95_s": None, "max_s": None}

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 3)

    return {"count": len(ordered), "p50_s": rank(0.5), "p95_s": rank(0.95), "max_s": round(ordered[-1], 3)}


def per_item(counts: Mapping[str, int], items: int, operations: Sequence[str] | None = None) -> float:
    """AWS requests per item: of `operations` only, or of every operation counted."""
    made = sum(n for op, n in counts.items() if operations is None or op in operations)
    return round(made / max(1, items), 4)


def pacing(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the parts' tasks did: pages worked, hand-ons that waited on the high-water mark and the
    seconds they asked to wait, per part too."""
    paced = [r for r in reports if r.get("outcome") == "paced"]
    parts = sorted({int(r["part"]) for r in reports})
    return {
        "tasks": len(reports),
        "pages": sum(int(r.get("pages", 0)) for r in reports),
        "paced": len(paced),
        "paced_seconds": sum(int(r.get("delay_s", 0)) for r in paced),
        "paced_by_part": {str(p): sum(1 for r in paced if int(r["part"]) == p) for p in parts},
    }


def delay_ratio(with_backfill: Mapping[str, Any], without: Mapping[str, Any], key: str) -> float | None:
    """A live-delay percentile with a backfill over the same without one."""
    value, base = with_backfill.get(key), without.get(key)
    if value is None or base is None or base <= 0:
        return None
    return round(float(value) / float(base), 2)


def goals(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's two goals, each against its worst run; the live delay at this drain's default
    mark, at app.py's scheduled default drained back to back, and under a schedule apart."""
    delivery = section["delivery"]
    timed = section.get("scheduled", {}).get("run")
    runs = [*section["queueing"].values(), *delivery.values(), *([timed] if timed else [])]
    worst_requests = max(r["scan_and_queue_per_item"] for r in runs if "scan_and_queue_per_item" in r)
    default = [run["ratio_p95"] for key, run in delivery.items() if key != "tuned"]
    worst = None if None in default or not default else max(default)
    tuned = delivery["tuned"]["ratio_p95"] if "tuned" in delivery else None
    scheduled = delivery["tuned"]["backfill_max_queued"] if "tuned" in delivery else None

    def goal(label: str, target: str, value: float | None, limit: float) -> dict[str, Any]:
        met = None if value is None else value <= limit
        return {"goal": label, "target": target, "value": value, "met": met}

    return [
        goal(
            "AWS requests per item, Scan + SendMessageBatch (worst run)",
            f"<= {GOAL_REQUESTS_PER_ITEM}",
            worst_requests,
            GOAL_REQUESTS_PER_ITEM,
        ),
        goal(
            f"live items' p95 delay, with a backfill over without (worst; default mark for a drain run"
            f" back to back, {BACK_TO_BACK_MARK})",
            f"<= {GOAL_DELAY_RATIO:g}x",
            worst,
            GOAL_DELAY_RATIO,
        ),
        goal(
            f"the same, at app.py's Rate(1 minute) default ({scheduled}), drained back to back",
            f"<= {GOAL_DELAY_RATIO:g}x",
            tuned,
            GOAL_DELAY_RATIO,
        ),
        goal(
            "the same, the drain on a schedule, at its default mark"
            + (
                f" (a run every {timed['schedule']['period_s']:g} s of at most"
                f" {timed['schedule']['budget']}, mark {timed['backfill_max_queued']})"
                if timed
                else ""
            ),
            f"<= {GOAL_DELAY_RATIO:g}x",
            timed["ratio_p95"] if timed else None,
            GOAL_DELAY_RATIO,
        ),
    ]


# --- the moving parts ------------------------------------------------------------------------------


def order_item(n: int, groups: int) -> dict[str, Any]:
    return order_image(n, customer(n, groups))


def seed(endpoint: str, table: str, count: int, groups: int) -> float:
    """`count` new orders straight into the table (BatchWriteItem, four threads, with a client the
    bench does not count): what a backfill finds there already. Returns the seconds it took."""
    started = time.perf_counter()
    client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint)

    def write(first: int) -> None:
        batch = [order_item(n, groups) for n in range(first, min(count, first + 25))]
        request: Any = {table: [{"PutRequest": {"Item": item}} for item in batch]}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or None

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(0, count, 25)))
    return time.perf_counter() - started


class JobsTrigger:
    """The `jobs` function's trigger, as Lambda's event source mapping plays it: tasks received from
    the tasks queue (with a client the bench does not count: the mapping's calls are not the
    function's) and handed to `app.jobs`, up to its maximum concurrency at once. Every report the
    worker returns is kept: the parts' outcomes, without reading the notes."""

    def __init__(self, bench: Bench) -> None:
        app = sys.modules["app"]
        (source,) = [s for s in sqs_sources(app.app) if s.name == "jobs"]
        self.concurrency = sqs_concurrency(source)
        sqs = boto3.session.Session().client("sqs", endpoint_url=bench.emulator.endpoint_url)
        url = bench.env["TRICKLE_JOBS_QUEUE_URL"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        context = LambdaContext()
        self._poller = SqsPoller(sqs, url, arn, lambda event: app.jobs(event, context), batch_size=1)
        self.reports: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def done(self, job_id: str, parts: int) -> bool:
        with self._lock:
            finished = {r["part"] for r in self.reports if r["job"] == job_id and r["outcome"] == "done"}
        return len(finished) == parts

    def run(
        self, job_id: str, parts: int, stop: threading.Event | None = None, period_s: float | None = None
    ) -> None:
        """Work tasks until every part of the job is done (or `stop` is set). The worker holds by
        the bench's drain (`period_s`: a run that often, None: back to back), not app.py's schedule."""
        work = JobWorker.work
        reports, lock = self.reports, self._lock

        def recorded(worker: JobWorker, task: Task, remaining_ms: Callable[[], int]) -> dict[str, Any]:
            worker.periods = dict.fromkeys(worker.marks, period_s)
            report = work(worker, task, remaining_ms)
            with lock:
                reports.append(report)
            return report

        slots = threading.BoundedSemaphore(self.concurrency)

        def handle(batch: list[dict[str, Any]]) -> None:
            try:
                self._poller.handle(batch)
            finally:
                slots.release()

        with (
            mock.patch.object(JobWorker, "work", recorded),
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="jobs") as pool,
        ):
            while not self.done(job_id, parts) and not (stop and stop.is_set()):
                if not slots.acquire(timeout=0.2):
                    continue
                batch = self._poller.receive()
                if not batch:
                    slots.release()
                    time.sleep(0.2)
                    continue
                pool.submit(handle, batch)


class LiveLoad:
    """Live orders written at `per_s` while it runs: each put in the table, then handed to the ingest
    handler as its stream record (one record per event); their write times kept by sort key."""

    def __init__(self, bench: Bench, groups: int, per_s: float, first: int) -> None:
        self._bench, self._groups, self._per_s, self._next = bench, groups, per_s, first
        self.written: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live", daemon=True)

    def start(self) -> LiveLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        app, context = sys.modules["app"], LambdaContext()
        dynamodb = wiring.client("dynamodb")
        table, arn = wiring.settings().table_name, self._bench.stream_arn
        interval = 1 / self._per_s
        due = time.monotonic()
        while not self._stop.is_set():
            n = self._next
            self._next += 1
            image = order_item(n, self._groups)
            record = insert_record(n, image, arn)
            written = time.time()
            dynamodb.put_item(TableName=table, Item=image)
            app.ingest({"Records": [record]}, context)
            self.written[image["sk"]["S"]] = written
            due += interval
            self._stop.wait(max(0.0, due - time.monotonic()))


class DrainLoop:
    """The orders drain, run again at once after a run that received anything, `DRAIN_IDLE_S`
    after one that found the queue empty; with `period_s`, on a schedule instead: a run every
    `period_s` (each taking at most `TRICKLE_DRAIN_BUDGET` messages), as EventBridge starts them."""

    def __init__(self, period_s: float | None = None) -> None:
        with mock.patch.object(wiring, "archive", lambda: None):
            self._drainer = wiring.drainer("orders")
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drain", daemon=True)
        self.errors: list[str] = []

    def start(self) -> DrainLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                report = self._drainer.run(lambda: 10**9)
            except Exception as exc:  # an emulator's hiccup: a finding, and the loop goes on
                self.errors.append(str(exc).split("\n", 1)[0][:200])
                report = None
            if self._period_s is not None:
                due += self._period_s  # the next tick; a run longer than the period starts the next at once
                self._stop.wait(max(0.0, due - time.monotonic()))
            elif report is None or not report.received:
                self._stop.wait(DRAIN_IDLE_S)


class Arrivals:
    """What reached the stand-in's orders path: each order's sort key and arrival time."""

    def __init__(self, base: str) -> None:
        path = urlsplit(wiring.settings().destination("orders").url).path
        self._url, self._seen = base + path, 0
        self.at: dict[str, float] = {}

    def skip(self) -> None:
        """From now on: what earlier runs sent is not this run's."""
        answer = requests.get(f"{self._url}?since={self._seen}", timeout=60)
        answer.raise_for_status()
        self._seen += int(answer.json()["received"])

    def read(self) -> int:
        answer = requests.get(f"{self._url}?since={self._seen}", timeout=60)
        answer.raise_for_status()
        document = answer.json()
        for entry in document["requests"]:
            body = entry["body"]
            if entry["applied"] and isinstance(body, dict) and isinstance(body.get("item"), dict):
                self.at.setdefault(str(body["item"].get("sk")), float(entry["arrived_at"]))
        self._seen += int(document["received"])
        return len(self.at)


# --- the runs --------------------------------------------------------------------------------------


def start_backfill(segments: int) -> str:
    body = json.dumps({"destination": "orders", "segments": segments})
    return str(wiring.start_backfill(body)["id"])


def queueing_runs(bench: Bench, items: int, groups: int, counts: Sequence[int]) -> dict[str, Any]:
    """One table of `items` orders; at each segment count, a backfill of all of it onto an empty
    orders queue (emptied with a client the bench does not count; each job's ids are its own)."""
    bench.reset(1, extra={MARK_VARIABLE: str(2 * items)})  # above every item: nothing paces it
    seeded = seed(bench.emulator.endpoint_url, wiring.settings().table_name, items, groups)
    log(f"  {items:,} items written to the table in {seeded:.0f} s")
    sqs = boto3.session.Session().client("sqs", endpoint_url=bench.emulator.endpoint_url)
    out: dict[str, Any] = {}
    for segments in counts:
        sqs.purge_queue(QueueUrl=wiring.settings().destination("orders").queue_url)
        run = queueing_run(bench, items, segments)
        out[f"segments_{segments}"] = run | {"seed_seconds": round(seeded, 1)}
    return out


def queueing_run(bench: Bench, items: int, segments: int) -> dict[str, Any]:
    """Every item queued, no drain, no rate limit (nothing paces it): items per second, requests."""
    trigger = JobsTrigger(bench)
    bench.calls.take()
    own, emulator = time.process_time(), cpu_seconds(bench.emulator.pid)
    with contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        job = start_backfill(segments)
        trigger.run(job, segments)
        seconds = time.perf_counter() - started
    taken = bench.calls.take()
    counts = taken.counts
    emulator_now = cpu_seconds(bench.emulator.pid)
    queued = wiring.queues()["orders"].depth()
    made = {op: n for op, n in sorted(counts.items()) if not op.endswith("/items")}
    out = {
        "segments": segments,
        "items": items,
        "queued": queued,
        "seconds": round(seconds, 2),
        "queued_per_s": round(queued / seconds, 1),
        "scan_and_queue_per_item": per_item(made, items, SCAN_AND_QUEUE),
        "all_calls_per_item": per_item(made, items),
        "requests": made,
        "pacing": pacing([r for r in trigger.reports if r["job"] == job]),
        "concurrency": trigger.concurrency,
        # where the time went: the jobs function's CPU (this process), the emulator's, waiting on AWS
        "jobs_cpu_ms_per_item": round((time.process_time() - own) * 1000 / max(1, items), 3),
        "emulator_cpu_ms_per_item": (
            round((emulator_now - emulator) * 1000 / max(1, items), 3)
            if emulator is not None and emulator_now is not None
            else None
        ),
        "aws_wait_ms_per_item": round(taken.seconds * 1000 / max(1, items), 3),
    }
    log(
        f"  queueing, {segments} segment(s): {out['queued_per_s']:7.1f} items/s queued"
        f" ({queued:,} in {seconds:.1f} s), {out['scan_and_queue_per_item']} Scan + SendMessageBatch"
        f" per item, {out['all_calls_per_item']} every call; CPU ms/item: jobs"
        f" {out['jobs_cpu_ms_per_item']}, emulator {out['emulator_cpu_ms_per_item']}"
    )
    return out


def live_delays(live: LiveLoad, arrivals: Arrivals, deadline_s: float) -> dict[str, Any]:
    """Each live item's delay from its write to its arrival, once all arrived (or the deadline)."""
    deadline = time.monotonic() + deadline_s
    while not set(live.written) <= set(arrivals.at) and time.monotonic() < deadline:
        arrivals.read()
        time.sleep(0.5)
    delays = [arrivals.at[sk] - at for sk, at in live.written.items() if sk in arrivals.at]
    return percentiles(delays) | {"written": len(live.written), "missing": len(live.written) - len(delays)}


def baseline_run(
    bench: Bench, inputs: Mapping[str, Any], live_first: int, schedule: Schedule | None = None
) -> dict[str, Any]:
    """The live load alone, for `BASELINE_S` (under a schedule, three of its periods)."""
    bench.reset(DRAIN_WORKERS, RATE_PER_S, extra=schedule.env() if schedule else None)
    arrivals = Arrivals(bench.api_url)
    arrivals.skip()
    seconds = BASELINE_S if schedule is None else 3 * schedule.period_s
    with contextlib.redirect_stdout(io.StringIO()):
        drain = DrainLoop(schedule.period_s if schedule else None).start()
        live = LiveLoad(bench, inputs["groups"], LIVE_PER_S, live_first).start()
        time.sleep(seconds)
        live.stop()
        out = live_delays(live, arrivals, 120 + (schedule.period_s if schedule else 0))
        drain.stop()
    label = "alone" if schedule is None else f"alone, a drain run every {schedule.period_s:g} s"
    log(f"  live load {label}: p50 {out['p50_s']} s, p95 {out['p95_s']} s, max {out['max_s']} s")
    return {"live": out, "drain_errors": drain.errors, "seconds": seconds}


def delivery_run(
    bench: Bench,
    inputs: Mapping[str, Any],
    run: tuple[int, int, int],
    baseline: Mapping[str, Any],
    live_first: int,
    schedule: Schedule | None = None,
) -> dict[str, Any]:
    """A backfill of `items` (`run`: segments, mark, items), delivered while the live load runs, by
    the drain back to back at the rate limit or on `schedule`. The jobs function's own requests
    are counted apart (its threads'): the live items' ingest queues with SendMessageBatch too."""
    segments, mark, items = run
    extra = {MARK_VARIABLE: str(mark)} | (schedule.env() if schedule else {})
    bench.reset(DRAIN_WORKERS, RATE_PER_S, extra=extra)
    seed(bench.emulator.endpoint_url, wiring.settings().table_name, items, inputs["groups"])
    trigger = JobsTrigger(bench)
    arrivals = Arrivals(bench.api_url)
    arrivals.skip()
    backfilled = {order_item(n, inputs["groups"])["sk"]["S"] for n in range(items)}
    per_s = RATE_PER_S if schedule is None else min(RATE_PER_S, schedule.budget / schedule.period_s)
    bench.calls.take()
    with contextlib.redirect_stdout(io.StringIO()):
        drain = DrainLoop(schedule.period_s if schedule else None).start()
        live = LiveLoad(bench, inputs["groups"], LIVE_PER_S, live_first).start()
        started, started_at = time.perf_counter(), time.time()
        job = start_backfill(segments)
        trigger.run(job, segments, period_s=schedule.period_s if schedule else None)
        queued_s = time.perf_counter() - started
        deadline = time.monotonic() + 10 * items / per_s + 120
        while not backfilled <= set(arrivals.at) and time.monotonic() < deadline:
            arrivals.read()
            time.sleep(0.5)
        delivered_s = max(arrivals.at.get(sk, started_at) for sk in backfilled) - started_at
        live.stop()
        out_live = live_delays(live, arrivals, 120 + (schedule.period_s if schedule else 0))
        drain.stop()
    jobs_calls = bench.calls.take().by_thread.get("jobs", {})
    delivered = len(backfilled & set(arrivals.at))
    out: dict[str, Any] = {
        "segments": segments,
        "items": items,
        "backfill_max_queued": mark,
        "schedule": None if schedule is None else {"period_s": schedule.period_s, "budget": schedule.budget},
        "queued_seconds": round(queued_s, 2),
        "queued_per_s": round(items / queued_s, 1),
        "delivered": delivered,
        "delivered_seconds": round(delivered_s, 2),
        "delivered_per_s": round(delivered / delivered_s, 1),
        "scan_and_queue_per_item": per_item(jobs_calls, items, SCAN_AND_QUEUE),
        "jobs_calls_per_item": per_item(jobs_calls, items),
        "jobs_requests": dict(sorted(jobs_calls.items())),
        "pacing": pacing([r for r in trigger.reports if r["job"] == job]),
        "live": out_live,
        "drain_errors": drain.errors,
    }
    out["ratio_p50"] = delay_ratio(out_live, baseline["live"], "p50_s")
    out["ratio_p95"] = delay_ratio(out_live, baseline["live"], "p95_s")
    p = out["pacing"]
    drained = (
        "back to back" if schedule is None else f"a run every {schedule.period_s:g} s of {schedule.budget}"
    )
    log(
        f"  delivery, {segments} segment(s), {items:,} items, mark {mark}, drain {drained}:"
        f" {out['queued_per_s']:.1f} items/s queued, {out['delivered_per_s']:.1f} delivered,"
        f" {out['scan_and_queue_per_item']} Scan + SendMessageBatch per item;"
        f" paced {p['paced']} times ({p['paced_seconds']} s asked); live p50 {out_live['p50_s']} s,"
        f" p95 {out_live['p95_s']} s, max {out_live['max_s']} s (x{out['ratio_p95']} at p95)"
    )
    return out


def backfill_section(bench: Bench, inputs: Mapping[str, Any]) -> dict[str, Any]:
    items, delivery_items = inputs["backfill_items"], inputs["delivery_items"]
    tuned_items = min(delivery_items, DELIVERY_ITEMS)
    scheduled_items = inputs["scheduled_items"]
    counts = tuple(inputs.get("segments") or SEGMENTS)
    run_inputs = {**inputs, "groups": CUSTOMERS}
    out: dict[str, Any] = {
        "inputs": {
            "items": items,
            "delivery_items": delivery_items,
            "tuned_items": tuned_items,
            "scheduled_items": scheduled_items,
            "groups": CUSTOMERS,
            "segments": list(counts),
            "api_latency_ms": inputs["api_latency_ms"],
            "rate_limit_per_s": RATE_PER_S,
            "drain_workers": DRAIN_WORKERS,
            "drain_idle_s": DRAIN_IDLE_S,
            "live_per_s": LIVE_PER_S,
            "baseline_s": BASELINE_S,
            "default_mark": BACK_TO_BACK_MARK,
            "scheduled_mark": SCHEDULED_MARK,
            "schedule": {"period_s": SCHEDULE.period_s, "budget": SCHEDULE.budget, "mark": SCHEDULE_MARK},
        }
    }
    out["queueing"] = queueing_runs(bench, items, CUSTOMERS, counts)
    firsts = (LIVE_OFFSET + n * LIVE_RUN_SPAN for n in range(len(counts) + 4))
    baseline = baseline_run(bench, run_inputs, next(firsts))
    out["baseline"] = baseline
    delivery = {
        f"segments_{s}": delivery_run(
            bench, run_inputs, (s, BACK_TO_BACK_MARK, delivery_items), baseline, next(firsts)
        )
        for s in counts
    }  # the default app.py's schedule gives with TRICKLE_DRAIN_BUDGET's default (the bench sets its own)
    delivery["tuned"] = delivery_run(
        bench, run_inputs, (TUNED_SEGMENTS, SCHEDULED_MARK, tuned_items), baseline, next(firsts)
    )
    out["delivery"] = delivery
    scheduled_baseline = baseline_run(bench, run_inputs, next(firsts), SCHEDULE)
    out["scheduled"] = {
        "baseline": scheduled_baseline,
        "run": delivery_run(
            bench,
            run_inputs,
            (TUNED_SEGMENTS, SCHEDULE_MARK, scheduled_items),
            scheduled_baseline,
            next(firsts),
            SCHEDULE,
        ),
    }
    out["goals"] = goals(out)
    return out


# --- the table -------------------------------------------------------------------------------------


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _verdict(met: bool | None) -> str:
    return "-" if met is None else "met" if met else "missed"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def render_backfill(name: str, section: Mapping[str, Any]) -> list[str]:
    inputs, machine = section["inputs"], section.get("machine", {})
    out = [
        f"### Backfill ({name}): queueing, delivery, pacing, live items' delay (issue 26)",
        "",
        f"`{section.get('command', 'python -m bench --only backfill')}` on {machine.get('cpus', '?')}"
        f" CPUs: {inputs['items']:,} new orders over {inputs['groups']} customers queued at each"
        f" segment count with no drain and no rate limit; a table of {inputs['delivery_items']:,}"
        f" backfilled and delivered at {inputs['rate_limit_per_s']}/s ({inputs['drain_workers']} drain"
        f" workers, API latency {inputs['api_latency_ms']:g} ms, the drain run again at once, or"
        f" {inputs['drain_idle_s']:g} s after a run that found the queue empty) while live orders are"
        f" written at {inputs['live_per_s']:g}/s; the live load alone for {inputs['baseline_s']:g} s.",
        "",
    ]
    out += table(
        ["Goal (issue 26)", "target", "value", ""],
        [[g["goal"], g["target"], _cell(g["value"], 3), _verdict(g["met"])] for g in section["goals"]],
    )
    out += ["", "Queueing every item:", ""]
    out += table(
        [
            "segments",
            "items queued",
            "seconds",
            "items/s queued",
            "Scan + SendMessageBatch per item",
            "every call per item",
            "paced",
        ],
        [
            [
                str(run["segments"]),
                _cell(run["queued"]),
                _cell(run["seconds"], 1),
                _cell(run["queued_per_s"], 0),
                _cell(run["scan_and_queue_per_item"], 4),
                _cell(run["all_calls_per_item"], 4),
                _cell(run["pacing"]["paced"]),
            ]
            for run in section["queueing"].values()
        ],
    )
    first = next(iter(section["queueing"].values()))
    out += ["", f"Calls at {first['segments']} segment(s): {first['requests']}."]
    out += ["", "Delivery beside live items, the drain run back to back:", ""]
    out += _delivery_table(section["baseline"]["live"], section["delivery"].values())
    scheduled = section.get("scheduled")
    if scheduled:
        plan = scheduled["run"]["schedule"]
        out += [
            "",
            f"The drain on a schedule, a run every {plan['period_s']:g} s of at most {plan['budget']}:",
            "",
        ]
        out += _delivery_table(scheduled["baseline"]["live"], [scheduled["run"]])
    return out


def _delivery_table(base: Mapping[str, Any], runs: Iterable[Mapping[str, Any]]) -> list[str]:
    rows = [
        [
            "live load alone",
            *["-"] * 7,
            f"{base['count']:,} / {base['written']:,}",
            _cell(base["p50_s"], 3),
            _cell(base["p95_s"], 3),
            _cell(base["max_s"], 3),
            "-",
        ]
    ]
    for run in runs:
        live, p = run["live"], run["pacing"]
        rows.append(
            [
                f"{run['segments']} segment(s), mark {run['backfill_max_queued']:,}",
                _cell(run["queued_per_s"], 0),
                f"{run['delivered']:,} in {run['delivered_seconds']:.0f} s",
                _cell(run["delivered_per_s"], 1),
                _cell(run.get("scan_and_queue_per_item"), 4),
                _cell(run.get("jobs_calls_per_item"), 4),
                f"{p['paced']} ({p['paced_seconds']} s)",
                f"{p['pages']} / {p['tasks']}",
                f"{live['count']:,} / {live['written']:,}",
                _cell(live["p50_s"], 3),
                _cell(live["p95_s"], 3),
                _cell(live["max_s"], 3),
                f"{_cell(run['ratio_p50'])} / {_cell(run['ratio_p95'])}",
            ]
        )
    return table(
        [
            "run",
            "items/s queued",
            "backfill delivered",
            "items/s delivered",
            "Scan + SendMessageBatch per item",
            "every call per item",
            "paced (s asked)",
            "pages / tasks",
            "live items arrived / written",
            "live p50 s",
            "live p95 s",
            "live max s",
            "x alone (p50 / p95)",
        ],
        rows,
    )
