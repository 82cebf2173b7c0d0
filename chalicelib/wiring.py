"""Cached clients and services, built once per Lambda container (Chalice sample style)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from chalicelib.settings import Settings, load_settings

# Everything else is imported by the factory that needs it, on first use: `import app` (every
# function's cold start) compiles and runs only what decorating the handlers takes, and each
# function loads the modules of its own work (docs/benchmarks.md, "Import time").
if TYPE_CHECKING:
    from collections.abc import Mapping

    from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

    from chalicelib.archive import ResponseArchive
    from chalicelib.callbacks import StepFunctionsCallbacks
    from chalicelib.credentials import RequestCredentials
    from chalicelib.delivered_archive import DeliveredArchive
    from chalicelib.drain import Drainer
    from chalicelib.fifo_queue import FifoQueue
    from chalicelib.ingest import Ingestor
    from chalicelib.job_worker import JobWorker, Pages
    from chalicelib.jobs import Jobs
    from chalicelib.ledger import Ledger
    from chalicelib.notes import Notes
    from chalicelib.operations import Operations
    from chalicelib.run_lease import RunLease
    from chalicelib.secrets import SecretCache
    from chalicelib.task_queue import TaskQueue

# No client-side parameter validation: every request is built by Trickle's own code (and AWS
# validates it again), and walking every batch's items was a sixth of the drain's botocore CPU.
_BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=30,
    parameter_validation=False,
)
# Presigned archive URLs: SigV4 (SigV2 URLs are refused in newer regions and deprecated everywhere).
_SERVICE_CONFIG = {"s3": Config(signature_version="s3v4")}


@functools.cache
def settings() -> Settings:
    return load_settings()


@functools.cache
def client(service: str) -> Any:
    config = _BOTO_CONFIG.merge(_SERVICE_CONFIG[service]) if service in _SERVICE_CONFIG else _BOTO_CONFIG
    return boto3.client(service, config=config)  # type: ignore[call-overload]


@functools.cache
def parameters() -> SSMProvider:
    """Powertools' SSM provider on our client (its retries and timeouts), shared by every key;
    imported on first use, so only functions that read a key pay for it (`chalicelib.secrets`)."""
    from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

    return SSMProvider(boto3_client=client("ssm"))


@functools.cache
def secret(parameter: str) -> SecretCache:
    """One SecureString, read at most once per `TRICKLE_SECRET_MAX_AGE_SECONDS` by all workers."""
    from chalicelib.secrets import SecretCache

    return SecretCache(parameters(), parameter, settings().secret_max_age_s)


@functools.cache
def credentials(destination: str) -> RequestCredentials:
    """What the destination's requests carry, shared by every worker of every run in the container
    (one OAuth2 token request per expiry, whatever the number of workers)."""
    from chalicelib.api_client import connect
    from chalicelib.credentials import RequestCredentials

    d = settings().destination(destination)
    # One token request at a time (the fetch is under the credentials' lock): one connection.
    token_endpoint = connect(d.token_url, 1) if d.auth == "oauth2_client_credentials" else None
    return RequestCredentials.from_destination(d, secret, token_endpoint)


@functools.cache
def queue(destination: str) -> FifoQueue:
    from chalicelib.fifo_queue import FifoQueue

    s = settings()
    return FifoQueue(client("sqs"), s.destination(destination).queue_url, attempts=s.send_attempts)


@functools.cache
def dead_letters(destination: str) -> FifoQueue:
    from chalicelib.fifo_queue import FifoQueue

    s = settings()
    return FifoQueue(client("sqs"), s.destination(destination).dlq_url, attempts=s.send_attempts)


def queues() -> dict[str, FifoQueue]:
    return {name: queue(name) for name in settings().destinations}


def dead_letter_queues() -> dict[str, FifoQueue]:
    return {name: dead_letters(name) for name in settings().destinations}


@functools.cache
def ledger(destination: str) -> Ledger:
    """The ledger as one destination's drain and ingest write it (its dead records are indexed
    under that destination); every destination's records share the table."""
    from chalicelib.ledger import Ledger

    s = settings()
    return Ledger(
        client("dynamodb"), s.ledger_table, s.ledger_ttl_s, destination=s.destination(destination).name
    )


def ledgers() -> dict[str, Ledger]:
    return {name: ledger(name) for name in settings().destinations}


@functools.cache
def notes() -> Notes:
    from chalicelib.notes import Notes

    s = settings()
    return Notes(client("dynamodb"), s.notes_table, s.ledger_ttl_s)


@functools.cache
def jobs() -> Jobs:
    """Backfill and replay jobs, in the notes table (`chalicelib.jobs`)."""
    from chalicelib.jobs import Jobs

    return Jobs(notes())


@functools.cache
def tasks() -> TaskQueue:
    """The tasks queue the `jobs` function works (`TRICKLE_JOBS_QUEUE_URL`)."""
    from chalicelib.task_queue import TaskQueue

    s = settings()
    return TaskQueue(client("sqs"), s.jobs_queue_url, attempts=s.send_attempts)


@functools.cache
def job_worker(schedules: tuple[tuple[str, str], ...] = ()) -> JobWorker:
    """The `jobs` function's worker: every destination's queue, mark and rate (a job paces by those
    it queues for), each kind's pages (`job_pages`), and how many parts run at once. `schedules`:
    each destination's drain schedule as app.py declares it (a mark not set is a run's worth)."""
    import time

    from chalicelib.job_worker import JobWorker
    from chalicelib.metrics import RunMetrics

    s = settings()
    periods = drain_periods(s, dict(schedules), time.time())
    return JobWorker(
        jobs(),
        tasks(),
        queues(),
        marks=backfill_marks(s, periods),
        rates={name: d.rate_limit_per_s for name, d in s.destinations.items()},
        periods=periods,
        last_run=last_run_started,
        pages=job_pages,
        metrics=lambda destination: RunMetrics({"destination": destination}),
        at_once=s.jobs_max_concurrency,
    )


def last_run_started(destination: str) -> float | None:
    """When the destination's drain last started a run, as its run note says (None: no run yet)."""
    from chalicelib.naming import run_note_key

    started = (notes().load(run_note_key(destination)) or {}).get("started_at")
    return float(started) if isinstance(started, int | float) else None


def drain_paces(s: Settings, schedules: Mapping[str, str], now: float) -> dict[str, float]:
    """The most messages a second each destination's drain takes (`job_plan.drain_pace`): its rate
    limit, and on its schedule in `schedules` a run's budget over the time between runs."""
    from chalicelib.job_plan import drain_pace

    periods = drain_periods(s, schedules, now)
    return {
        name: drain_pace(d.rate_limit_per_s, periods[name], s.drain_budget)
        for name, d in s.destinations.items()
    }


def shown_backfill(job: dict[str, Any], schedules: Mapping[str, str]) -> dict[str, Any]:
    """A backfill as `GET /backfills/{id}` shows it: its warnings, and a dry run's estimate at the
    drains' paces under their `schedules` (app.py's)."""
    import time

    from chalicelib.backfill import shown

    return shown(job, drain_paces(settings(), schedules, time.time()))


def drain_periods(s: Settings, schedules: Mapping[str, str], now: float) -> dict[str, float | None]:
    """The time between runs of each destination's drain, from its schedule in `schedules` (None:
    not there, or a cron whose next runs cannot be told)."""
    from chalicelib.schedules import period_s

    return {name: period_s(schedules[name], now) if name in schedules else None for name in s.destinations}


def backfill_marks(s: Settings, periods: Mapping[str, float | None]) -> dict[str, int]:
    """Each destination's high-water mark for jobs: its `backfill_max_queued` if set, else what one
    run of its drain takes (`job_plan.default_max_queued`), from the time between its runs."""
    from chalicelib.job_plan import default_max_queued

    return {
        name: d.backfill_max_queued
        or default_max_queued(d.rate_limit_per_s, periods.get(name), s.drain_budget)
        for name, d in s.destinations.items()
    }


def job_pages(job: dict[str, Any], part: int) -> Pages:
    """A part of a job, read page by page, by the job's kind."""
    import time

    from chalicelib import backfill, replay_plan

    s = settings()
    if job["kind"] == backfill.KIND:

        def dead_letter(rejected: Any) -> None:
            backfill.dead_letter(rejected, dead_letter_queues(), ledgers(), s)

        return backfill.ScanPages(client("dynamodb"), s, job, part, dead_letter, time.time)
    if job["kind"] == replay_plan.KIND and s.archive_bucket:  # one part: the archive's order
        from chalicelib.delivered_archive import DeliveredReader
        from chalicelib.replay_pages import ReplayPages

        reader = DeliveredReader(client("s3"), s.archive_bucket)
        return ReplayPages(reader, replay_plan.Replay.from_spec(job["spec"]), job["id"])
    raise ValueError(f"no worker for jobs of kind {job['kind']!r}")


def start_backfill(raw_body: str | bytes | None) -> dict[str, Any]:
    """`POST /backfills` and `operate backfill`: a job of the request's segments, their first tasks
    queued (BackfillError names what is wrong with the request)."""
    from chalicelib import backfill

    return backfill.start(backfill.parse_body(raw_body), settings(), jobs(), tasks())


def start_replay(raw_body: str | bytes | None) -> dict[str, Any]:
    """`POST /replays`: a job of one part (a replay keeps the archive's order, so one worker reads
    it), its first task queued (ReplayError names what is wrong with the request)."""
    from datetime import UTC, datetime

    from chalicelib import replay_plan

    s = settings()
    asked = replay_plan.parse_body(
        raw_body, s.destinations, datetime.now(UTC), s.archive_days, bool(s.archive_bucket)
    )
    return jobs().start(replay_plan.KIND, [asked.target], 1, asked.spec(), tasks())


def cancel_job(job_id: str, kind: str) -> dict[str, Any] | None:
    """Cancel a job of that kind (its workers stop at their next page); None: no such job."""
    if jobs().view(job_id, kind) is None:
        return None
    jobs().cancel(job_id)
    return jobs().view(job_id, kind)


def work_job(body: str, context: Any, schedules: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One task of the tasks queue, within the Lambda's remaining time; a task that is not one is
    logged and dropped (sent again, it would fail again). `schedules`: the drains' (`job_worker`)."""
    import logging

    from chalicelib.job_plan import Task, TaskError

    try:
        task = Task.parse(body)
    except TaskError as exc:
        logging.getLogger(__name__).error("task dropped", extra={"error": str(exc)})
        return {"outcome": "malformed"}
    worker = job_worker(tuple(sorted((schedules or {}).items())))
    return worker.work(task, context.get_remaining_time_in_millis)


@functools.cache
def archive() -> ResponseArchive | None:
    from chalicelib.archive import ResponseArchive

    bucket = settings().archive_bucket
    return ResponseArchive(client("s3"), bucket) if bucket else None


@functools.cache
def delivered_archive() -> DeliveredArchive | None:
    """What the drains delivered, archived for replays in the stage's bucket (none without one)."""
    from chalicelib.delivered_archive import DeliveredArchive

    bucket = settings().archive_bucket
    return DeliveredArchive(client("s3"), bucket) if bucket else None


@functools.cache
def auth_token() -> SecretCache:
    from chalicelib.secrets import SecretCache

    s = settings()
    if s.auth_token_parameter is None:
        raise RuntimeError("token authorization needs TRICKLE_AUTH_TOKEN_PARAMETER")
    return SecretCache(parameters(), s.auth_token_parameter, s.secret_max_age_s)


@functools.cache
def operations() -> Operations:
    from chalicelib.operations import Operations

    return Operations(
        queues(), dead_letter_queues(), ledgers(), notes(), archive(), settings().unrouted, jobs=jobs()
    )


@functools.cache
def ingestor() -> Ingestor:
    from chalicelib.ingest import Ingestor

    return Ingestor(queues(), dead_letter_queues(), ledgers(), settings(), notes())


@functools.cache
def drainer(destination: str) -> Drainer:
    from chalicelib.api_client import ApiClient, connect
    from chalicelib.dead_letters import Redriver
    from chalicelib.drain import Drainer
    from chalicelib.enrichers import EnrichContext, Enrichment
    from chalicelib.metrics import RunMetrics
    from chalicelib.redrive_jobs import RedriveJobs
    from chalicelib.source_items import SourceTable

    s = settings()
    target = s.destination(destination)
    api = ApiClient(connect(target.url, s.drain_workers), target, credentials(destination))
    by_route = {r.name: r.enrich for r in s.routes if r.enrich and destination in r.destinations}
    enrich = Enrichment(by_route, EnrichContext(client("dynamodb"), s.table_name, s.partition_key))
    redriver = Redriver(client("sqs"), dead_letters(destination), queue(destination))
    return Drainer(
        queue(destination),
        dead_letters(destination),
        ledger(destination),
        api,
        target,
        s,
        notes(),
        archive(),
        enrich if enrich else None,
        callbacks(),
        metrics=functools.partial(RunMetrics, {"destination": target.name}),
        redrive=functools.partial(RedriveJobs(notes(), target.name).advance, redriver.redrive),
        delivered=delivered_archive(),
        source=SourceTable(client("dynamodb"), s.table_name),
    )


@functools.cache
def callbacks() -> StepFunctionsCallbacks | None:
    """Answers to waiting Step Functions tasks, in stages that name the state machines allowed to wait."""
    from chalicelib.callbacks import StepFunctionsCallbacks, state_machine_arns

    s = settings()
    machines = state_machine_arns(s.stream_arn, s.callback_state_machines)
    return StepFunctionsCallbacks(client("stepfunctions"), machines) if machines else None


def drain(destination: str, context: Any) -> dict[str, Any]:
    """One scheduled run of a destination's drain, within the Lambda's remaining time, under that
    destination's run lease (a run that finds the previous one still going does nothing)."""
    remaining = context.get_remaining_time_in_millis
    return run_lease(destination).run(remaining, drainer(destination).run).as_dict()


@functools.cache
def run_lease(destination: str) -> RunLease:
    from chalicelib.run_lease import RunLease

    return RunLease(client("dynamodb"), settings().notes_table, destination)


def reset() -> None:
    """Forget every cached object, as a new container would (used by tests and the local runtime)."""
    for cached in (
        settings,
        client,
        parameters,
        secret,
        credentials,
        queue,
        dead_letters,
        ledger,
        notes,
        jobs,
        tasks,
        job_worker,
        archive,
        delivered_archive,
        auth_token,
        operations,
        ingestor,
        drainer,
        callbacks,
        run_lease,
    ):
        cached.cache_clear()
