"""Trickle: DynamoDB stream -> SQS FIFO -> scheduled, rate-kept delivery to a third-party API."""

import os
from collections.abc import Callable
from typing import Any

from chalice import (
    BadRequestError,
    Chalice,
    ConflictError,
    IAMAuthorizer,
    NotFoundError,
    Rate,
    Response,
)

# For the schedules you write (docs/routes.md, "Schedules"). "as Cron" marks it a re-export, so ruff
# takes it as intended whether or not a schedule uses it: no noqa to go stale.
from chalice import Cron as Cron
from chalice.app import AuthRequest, AuthResponse, CloudWatchEvent, DynamoDBEvent, Request, SQSEvent

from chalicelib import wiring
from chalicelib.auth import token_matches
from chalicelib.logs import LambdaContextKeys, configure_logging
from chalicelib.settings import SettingsError, settings_error_message

# What the routes do is imported by the route that does it (and by `wiring` on first use): every
# function imports this file at its cold start, and only the API handler needs those modules.

try:
    settings = wiring.settings()
except SettingsError as error:
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        raise  # in Lambda the import error and its message go to the function's log
    # `chalice package/deploy/local`: one message, not a traceback
    raise SystemExit(settings_error_message(error, os.environ)) from None
app = Chalice(app_name="trickle")
app.register_middleware(LambdaContextKeys(configure_logging(settings.log_level)), "all")


operator: Any = IAMAuthorizer()
if settings.auth == "token":  # Chalice deploys every registered authorizer: only token stages get one

    @app.authorizer()
    def token_auth(auth_request: AuthRequest) -> AuthResponse:
        allowed = token_matches(auth_request.token, wiring.auth_token().get)
        return AuthResponse(routes=["*"] if allowed else [], principal_id="operator" if allowed else "denied")

    operator = token_auth


JSON = ["application/json"]


def _request() -> Request:
    request = app.current_request
    assert request is not None  # Chalice sets it for every route call
    return request


@app.on_dynamodb_record(
    stream_arn=settings.stream_arn,
    batch_size=settings.ingest_batch_size,
    maximum_batching_window_in_seconds=settings.ingest_batch_window_s,
    name="ingest",
)
def ingest(event: DynamoDBEvent) -> dict[str, Any]:
    return wiring.ingestor().handle(event.to_dict()["Records"]).as_dict()


# Backfill and replay jobs: one task (a part of a job) per invocation, from the stage's tasks queue
# (chalicelib.job_plan says why a queue of tasks); at most TRICKLE_JOBS_MAX_CONCURRENCY parts worked
# at once, whatever the number of jobs and segments (each part also waits while its destinations'
# queues are full).
@app.on_sqs_message(
    queue=settings.jobs_queue_name,
    batch_size=1,
    name="jobs",
    maximum_concurrency=settings.jobs_max_concurrency,
)
def jobs(event: SQSEvent) -> None:
    schedules = _schedules()  # read once per batch, not per record
    for record in event:
        wiring.work_job(record.body, event.context, schedules)


# One drain per destination of chalicelib/routes.toml, named drain_<destination>: change a
# destination's schedule here (Rate or Cron), or add one (docs/routes.md, "Adding a destination").
@app.schedule(Rate(1, unit=Rate.MINUTES), name="drain_orders")
def drain_orders(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.drain("orders", event.context)


@app.schedule(Rate(2, unit=Rate.MINUTES), name="drain_crm")
def drain_crm(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.drain("crm", event.context)


@app.route("/health", methods=["GET"])
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.route("/console", methods=["GET"])
def console() -> Response:
    """The operator console's page: static, no data, so no authorizer; its calls carry the operator's."""
    from chalicelib import console as files

    request = app.current_request
    if request is not None and str(request.context.get("path", "")).endswith("/"):  # /console/
        return Response(body="", status_code=302, headers=files.FROM_SLASH)
    return Response(body=files.page(settings.auth), headers=files.page_headers())


@app.route("/console/{asset}", methods=["GET"])
def console_asset(asset: str) -> Response:
    from chalicelib import console as files

    found = files.asset(asset)
    if found is None:
        raise NotFoundError(f"no console file {asset[:60]!r}; the console is at /console")
    body, headers = found
    return Response(body=body, headers=headers)


@app.route("/status", methods=["GET"], authorizer=operator)
def status() -> dict[str, Any]:
    return wiring.operations().status(_schedules())


def _schedules() -> dict[str, str]:
    """Each destination's drain schedule as declared in this file (`/status`, the jobs' marks)."""
    from chalicelib.schedules import drain_schedules

    return drain_schedules(app.event_sources, settings.destinations)


@app.route(
    "/destinations/{name}/pause", methods=["POST"], authorizer=operator, content_types=["application/json"]
)
def pause(name: str) -> dict[str, Any]:
    """From its drain's next run: nothing received (its messages wait), waiting tasks kept alive.
    Body: optional {"reason": "..."}."""
    from chalicelib.operations import pause_reason

    try:
        reason = pause_reason(_request().raw_body)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    return wiring.operations().pause(_known(name), _caller(), reason)


@app.route(
    "/destinations/{name}/resume", methods=["POST"], authorizer=operator, content_types=["application/json"]
)
def resume(name: str) -> dict[str, Any]:
    return wiring.operations().resume(_known(name))


def _known(name: str) -> str:
    if name not in settings.destinations:
        raise NotFoundError(f"no destination {name[:80]}; destinations: {', '.join(settings.destinations)}")
    return name


def _caller() -> str:
    """Who asked: the IAM identity's ARN, or the token authorizer's principal."""
    context = _request().context or {}
    arn = (context.get("identity") or {}).get("userArn")
    principal = (context.get("authorizer") or {}).get("principalId")
    return str(arn or principal or "an operator")


@app.route("/messages", methods=["POST"], authorizer=operator, content_types=["application/json"])
def submit() -> Response:
    from chalicelib.submissions import SubmissionError, parse_submission

    try:
        submission = parse_submission(_request().raw_body, settings)
    except SubmissionError as exc:
        raise BadRequestError(str(exc)) from None
    return Response(body=wiring.operations().submit(submission), status_code=202)


@app.route("/messages", methods=["GET"], authorizer=operator)
def search_messages() -> dict[str, Any]:
    """The messages of one item (`?key=&sort_key=`), or of a status in a time window
    (`?status=&since=&until=`), from the ledger's indexes, paged (`next`)."""
    from chalicelib.operations import search_query

    try:
        return wiring.operations().search(search_query(_request().query_params or {}))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


@app.route("/messages/{message_id}", methods=["GET"], authorizer=operator)
def message(message_id: str) -> dict[str, Any]:
    from chalicelib.operations import missing_message

    found = wiring.operations().lookup(message_id)
    if found is None:
        raise NotFoundError(missing_message(message_id))
    return found


def _query() -> dict[str, str]:
    return dict(_request().query_params or {})


def _destination(query: dict[str, str]) -> str:
    try:
        return wiring.operations().pick(query.get("destination"))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


@app.route("/dead-letters", methods=["GET"], authorizer=operator)
def dead_letters() -> dict[str, Any]:
    from chalicelib.operations import page_query

    try:
        return wiring.operations().dead_letters(*page_query(_request().query_params or {}))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


@app.route("/halted", methods=["GET"], authorizer=operator)
def halted() -> dict[str, Any]:
    """A destination's groups halted in strict ordering, each with its head message (from the ledger)."""
    from chalicelib.operations import page_query

    try:
        return wiring.operations().halted(*page_query(_request().query_params or {}))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


@app.route(
    "/halted/{message_id}/retry", methods=["POST"], authorizer=operator, content_types=["application/json"]
)
def retry_halted(message_id: str) -> dict[str, Any]:
    """Try the halted head again, attempts reset: `operate retry`."""
    return _release(message_id, "retry")


@app.route(
    "/halted/{message_id}/skip", methods=["POST"], authorizer=operator, content_types=["application/json"]
)
def skip_halted(message_id: str) -> dict[str, Any]:
    """Dead-letter the halted head at its drain's next look; its group goes on: `operate skip`."""
    return _release(message_id, "skip")


def _release(message_id: str, choice: str) -> dict[str, Any]:
    from chalicelib.operations import NoLongerHaltedError, NotHaltedError

    destination = _destination(_query())
    try:
        return wiring.operations().release(destination, message_id, choice, _caller())
    except NotHaltedError as exc:
        raise NotFoundError(str(exc)) from None
    except NoLongerHaltedError as exc:
        raise ConflictError(str(exc)) from None


@app.route("/dead-letters/redrive", methods=["POST"], authorizer=operator, content_types=["application/json"])
def start_redrive() -> Response:
    """Opens a job that the destination's drain carries on from its next run; moves nothing itself."""
    from chalicelib.dead_letters import RedriveFilter
    from chalicelib.redrive_jobs import TooManyRedrivesError

    try:
        _, description = RedriveFilter.from_request(_request().raw_body)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    destination = _destination(_query())
    try:
        job = wiring.operations().start_redrive(destination, description)
    except TooManyRedrivesError as exc:
        raise ConflictError(str(exc)) from None
    progress_url = f"/dead-letters/redrive/{job['id']}?destination={destination}"
    return Response(body=job | {"progress_url": progress_url}, status_code=202)


@app.route("/dead-letters/redrive/{job_id}", methods=["GET"], authorizer=operator)
def redrive_progress(job_id: str) -> dict[str, Any]:
    """The job as its drain last left it: reading it moves nothing."""
    job = wiring.operations().redrive(_destination(_query()), job_id)
    if job is None:
        raise NotFoundError(f"no redrive {job_id}")
    return job


def _job_started(start: Callable[[], dict[str, Any]], refused: type[Exception], path: str) -> Response:
    """202 with the job and where to follow it; the request's mistakes are a 400, an eleventh job a
    409, a tasks queue that would not take its first task a 503 (the job is cancelled)."""
    from chalicelib.jobs import TooManyJobsError
    from chalicelib.task_queue import TaskQueueError

    try:
        job = start()
    except refused as exc:
        raise BadRequestError(str(exc)) from None
    except TooManyJobsError as exc:
        raise ConflictError(str(exc)) from None
    except TaskQueueError as exc:
        return Response(body={"Code": "ServiceUnavailable", "Message": str(exc)}, status_code=503)
    return Response(body=job | {"progress_url": f"/{path}/{job['id']}"}, status_code=202)


def _job(job_id: str, kind: str, cancel: bool = False) -> dict[str, Any]:
    """A backfill or replay as its workers last left it (reading it moves nothing), or cancelled:
    its workers stop at their next page, and what they queued stays queued."""
    job = wiring.cancel_job(job_id, kind) if cancel else wiring.jobs().view(job_id, kind)
    if job is None:
        raise NotFoundError(f"no {kind} {job_id}")
    return job


@app.route("/backfills", methods=["POST"], authorizer=operator, content_types=["application/json"])
def start_backfill() -> Response:
    """Starts a backfill job (its parts are worked by `jobs`); queues nothing itself."""
    from chalicelib.backfill import BackfillError

    return _job_started(lambda: wiring.start_backfill(_request().raw_body), BackfillError, "backfills")


@app.route("/backfills/{backfill_id}", methods=["GET"], authorizer=operator)
def backfill_progress(backfill_id: str) -> dict[str, Any]:
    return wiring.shown_backfill(_job(backfill_id, "backfill"), _schedules())  # warnings, estimate


@app.route("/backfills/{backfill_id}/cancel", methods=["POST"], authorizer=operator)
def cancel_backfill(backfill_id: str) -> dict[str, Any]:
    return wiring.shown_backfill(_job(backfill_id, "backfill", cancel=True), _schedules())


@app.route("/replays", methods=["POST"], authorizer=operator, content_types=["application/json"])
def start_replay() -> Response:
    """Starts a replay job (the `jobs` function reads the archive and queues); queues nothing itself."""
    from chalicelib.replay_plan import ReplayError

    return _job_started(lambda: wiring.start_replay(_request().raw_body), ReplayError, "replays")


@app.route("/replays/{replay_id}", methods=["GET"], authorizer=operator)
def replay_progress(replay_id: str) -> dict[str, Any]:
    from chalicelib.replay_plan import shown

    return shown(_job(replay_id, "replay"))  # with its warnings, if any


@app.route("/replays/{replay_id}/cancel", methods=["POST"], authorizer=operator)
def cancel_replay(replay_id: str) -> dict[str, Any]:
    from chalicelib.replay_plan import shown

    return shown(_job(replay_id, "replay", cancel=True))


@app.schedule(Rate(1, unit=Rate.MINUTES), name="drain_billing")
def drain_billing(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.drain("billing", event.context)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="drain_orders_bulk")
def drain_orders_bulk(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.drain("orders_bulk", event.context)
