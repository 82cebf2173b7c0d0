"""Operator commands for a stage: redrive dead letters, steer a group halted in strict mode, pause
and resume a destination.

    python -m trickle_deploy.operate --stage prod redrive DESTINATION [--group G ...] [--message-id ID ...]
    python -m trickle_deploy.operate --stage prod retry MESSAGE_ID   # try a halted message again
    python -m trickle_deploy.operate --stage prod skip MESSAGE_ID    # dead-letter it, let its group go on
    python -m trickle_deploy.operate --stage prod replay DESTINATION --since T --until T [--filter F]
        [--group G] [--to D] [--same-keys] [--dry-run] [--yes]   # deliver again what was delivered
    python -m trickle_deploy.operate --stage prod replay-status ID   # and replay-cancel ID
    python -m trickle_deploy.operate --stage prod console            # the console, calls signed by you
    python -m trickle_deploy.operate --stage prod pause DESTINATION [--reason TEXT]  # receive nothing
    python -m trickle_deploy.operate --stage prod resume DESTINATION  # deliver again, in order
    python -m trickle_deploy.operate --stage prod backfill DESTINATION|--all [--filter F] [--segments N]
        [--dry-run] [--wait S]   # a dry run waits for its counts and how long they take, per destination
    python -m trickle_deploy.operate --stage prod backfill-status ID  # its progress, per part
    python -m trickle_deploy.operate --stage prod backfill-cancel ID  # its parts stop at their next page

`--endpoint URL` points at a local endpoint (the local stage's is used by default for `--stage local`).
A stage deployed with the merge template names no resources in its config: `--stack-name NAME` reads
them from the stack's drain function, so the commands act on exactly what the functions use.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import EndpointConnectionError

from chalicelib import naming
from chalicelib.dead_letters import RedriveFilter, Redriver, RedriveReport
from chalicelib.fifo_queue import FifoQueue
from chalicelib.health import pause_note
from chalicelib.job_plan import RUNNING
from chalicelib.ledger import Ledger
from chalicelib.notes import Notes
from chalicelib.operations import MAX_REASON_CHARS, ReleaseError, release
from chalicelib.settings import Settings, load_settings
from trickle_deploy import replay_command
from trickle_deploy.session import configured_session, local_session
from trickle_project import stage

DRY_RUN_WAIT_S = 600  # a dry run's counts are its answer: the command waits for them this long
FOLLOW_EVERY_S = 2.0  # between looks at a followed job (a GetItem and a BatchGetItem each)


def redrive(
    sqs: Any, env: dict[str, str], destination: str, wanted: RedriveFilter, use_move_task: bool = True
) -> RedriveReport:
    settings = load_settings(env)
    target = settings.destination(destination)
    redriver = Redriver(
        sqs,
        FifoQueue(sqs, target.dlq_url, attempts=settings.send_attempts),
        FifoQueue(sqs, target.queue_url, attempts=settings.send_attempts),
    )
    return redriver.redrive(wanted, use_move_task=use_move_task)


def pause_or_resume(dynamodb: Any, settings: Settings, destination: str, pause: bool, reason: str) -> int:
    """The pause note its drain reads at each run's start (`chalicelib.health`), as the routes write it."""
    notes = Notes(dynamodb, settings.notes_table, settings.ledger_ttl_s)
    key = naming.pause_key(destination)
    if len(reason) > MAX_REASON_CHARS:
        print(f"--reason: at most {MAX_REASON_CHARS} characters", file=sys.stderr)
        return 2
    if pause:
        note: dict[str, Any] | None = pause_note(f"operate ({getpass.getuser()})", reason, time.time())
        notes.save(key, note or {}, expires=False)
    else:
        note = None
        notes.remove(key)
    print(json.dumps({"destination": destination, "paused": note}))
    return 0


def backfill(sqs: Any, dynamodb: Any, settings: Settings, args: argparse.Namespace) -> int:
    """`backfill`, `backfill-status` and `backfill-cancel`, with the same code as the routes."""
    from chalicelib import backfill as backfills
    from chalicelib.jobs import Jobs, TooManyJobsError
    from chalicelib.task_queue import TaskQueue, TaskQueueError

    jobs = Jobs(Notes(dynamodb, settings.notes_table, settings.ledger_ttl_s))
    paces = backfill_paces(settings)
    if args.command == "backfill":
        body: dict[str, Any] = {"segments": args.segments, "dry_run": args.dry_run}
        body |= {"destination": args.destination} if args.destination else {}
        body |= {"filter": args.filter} if args.filter is not None else {}
        tasks = TaskQueue(sqs, settings.jobs_queue_url, attempts=settings.send_attempts)
        try:
            started = backfills.start(body, settings, jobs, tasks)
        except (backfills.BackfillError, TooManyJobsError, TaskQueueError) as exc:
            print(f"backfill not started: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, backfills.BackfillError) else 1
        wait_s = args.wait if args.wait is not None else (DRY_RUN_WAIT_S if args.dry_run else 0)
        if wait_s <= 0:
            print(json.dumps(started, default=str))
            return 0
        job_id = started["id"]
        print(
            f"backfill {job_id} started{' (dry run)' if args.dry_run else ''}: following it until it"
            f" ends, at most {wait_s:g} s (Ctrl-C stops following, not the job)",
            file=sys.stderr,
        )
        try:
            followed = follow(lambda: jobs.view(job_id, backfills.KIND), wait_s)
        except KeyboardInterrupt:
            print(f"not followed further; the job goes on: backfill-status {job_id}", file=sys.stderr)
            return 130
        print_backfill(followed, paces)
        if followed["state"] == RUNNING:
            print(
                f"backfill {job_id} still running after {wait_s:g} s ({followed['parts_done']} of"
                f" {followed['parts']} parts done): follow it with backfill-status {job_id}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.command == "backfill-cancel" and jobs.view(args.id, backfills.KIND) is not None:
        jobs.cancel(args.id)
    job = jobs.view(args.id, backfills.KIND)
    if job is None:
        print(f"no backfill {args.id}", file=sys.stderr)
        return 1
    print_backfill(job, paces)
    return 0


def print_backfill(job: dict[str, Any], paces: Mapping[str, float]) -> None:
    """A backfill's progress as `GET /backfills/{id}` shows it; its warnings on stderr too, and a
    dry run's estimate of how long delivering it takes."""
    from chalicelib.backfill import shown

    with_warnings = shown(job, paces)
    print(json.dumps(with_warnings, default=str))
    for warning in with_warnings.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    for destination, figures in with_warnings.get("estimate", {}).items():
        print(
            f"{destination}: {figures['messages']:,} messages take at least"
            f" {spoken_duration(figures['seconds_at_least'])} to deliver, at most"
            f" {figures['at_most_per_s']:g}/s (its rate limit, and a run's budget under its schedule),"
            " shared with its live items",
            file=sys.stderr,
        )


def backfill_paces(settings: Settings) -> dict[str, float]:
    """Each destination's drain's pace under its schedule as app.py declares it (read from its
    source: importing it would need the stage's settings in this process's environment)."""
    from chalicelib.schedules import destination_schedules
    from chalicelib.wiring import drain_paces
    from trickle_project.declared import app_schedules

    schedules = destination_schedules(app_schedules(), settings.destinations)
    return drain_paces(settings, schedules, time.time())


def spoken_duration(seconds: int) -> str:
    """`3 h 20 min`, `2 d 19 h`, `45 s`: the largest unit and the next (down to the next unit)."""
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    for (name, size), (smaller, smaller_size) in zip(units, [*units[1:], ("", 1)], strict=True):
        if seconds >= size or name == "s":
            rest = seconds % size // smaller_size if smaller else 0
            return f"{seconds // size} {name}" + (f" {rest} {smaller}" if rest else "")
    raise AssertionError("the last unit always answers")


def follow(
    view: Callable[[], dict[str, Any] | None],
    wait_s: float,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
    every_s: float = FOLLOW_EVERY_S,
) -> dict[str, Any]:
    """The job as `view` shows it once it is no longer running, or as it is after `wait_s`."""
    deadline = clock() + wait_s
    while True:
        job = view()
        if job is None:
            raise RuntimeError("the job's note is gone")  # notes expire after days, not seconds
        left = deadline - clock()
        if job["state"] != RUNNING or left <= 0:
            return job
        pause(min(every_s, left))


def stack_env(cloudformation: Any, lambda_client: Any, stack: str) -> dict[str, str]:
    """The environment the stack gave its stream handler (every function gets the same)."""
    pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack)
    (name,) = [
        r["PhysicalResourceId"]
        for page in pages
        for r in page["StackResourceSummaries"]
        if r["LogicalResourceId"] == "Ingest"
    ]
    variables = lambda_client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    return dict(variables)


def console(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`console`: the stage's API URL (given, the stack's output, or chalice deploy's record), then
    the signing proxy until Ctrl-C (`trickle_deploy.console_proxy`)."""
    from trickle_deploy.console_proxy import deployed_url, region_of, serve, stack_url

    env = stage.stage_env(args.stage) if args.stage in stage.load_config()["stages"] else {}
    if env.get("TRICKLE_AUTH") == "token":
        parser.error(
            f"stage {args.stage} uses token auth: open <its API URL>/console and paste the operator token"
        )
    url = args.url
    session = configured_session(args.region or (region_of(url) if url else None))
    if url is None and args.stack_name:
        url = stack_url(session.client("cloudformation", endpoint_url=args.endpoint), args.stack_name)
    if url is None:
        url = deployed_url(stage.PROJECT_DIR, args.stage)
    if url is None:
        parser.error(
            f"no API URL for stage {args.stage}: give --url (the stack's EndpointURL output, or what"
            " chalice deploy printed as Rest API URL), or --stack-name"
        )
    credentials = session.get_credentials()
    assert credentials is not None  # configured_session checked
    return serve(url, credentials.get_frozen_credentials, session.region_name, args.port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trickle_deploy.operate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples on their lines
    )
    parser.add_argument("--stage", default="local")
    parser.add_argument("--endpoint", help="AWS endpoint URL (default: the stage's AWS_ENDPOINT_URL, if any)")
    parser.add_argument("--stack-name", help="the stack of a stage deployed with the merge template")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION or your profile's)")
    commands = parser.add_subparsers(dest="command", required=True)
    redrive_cmd = commands.add_parser("redrive", help="move dead letters back to the queue, in group order")
    redrive_cmd.add_argument("destination", help="whose dead letters (a destination of the routes file)")
    redrive_cmd.add_argument("--group", action="append", help="only this message group (repeatable)")
    redrive_cmd.add_argument("--message-id", action="append", help="only this message id (repeatable)")
    redrive_cmd.add_argument(
        "--copy", action="store_true", help="copy in order even if StartMessageMoveTask exists"
    )
    for name, text in (("retry", "try a halted message again, attempts reset"), ("skip", "dead-letter it")):
        command = commands.add_parser(name, help=text)
        command.add_argument("message_id")
    console_cmd = commands.add_parser(
        "console",
        help="the operator console of an IAM stage on 127.0.0.1, its calls signed with your AWS credentials",
    )
    console_cmd.add_argument(
        "--url",
        help="the stage's API URL (default: its stack's EndpointURL with --stack-name, or chalice deploy's)",
    )
    console_cmd.add_argument(
        "--port", type=int, default=8001, help="where it listens on 127.0.0.1 (default 8001)"
    )
    pause_cmd = commands.add_parser("pause", help="its drain receives nothing from its next run on")
    pause_cmd.add_argument("destination", help="a destination of the routes file")
    pause_cmd.add_argument("--reason", default="", help="why, shown by /status")
    resume_cmd = commands.add_parser("resume", help="its drain receives and delivers again")
    resume_cmd.add_argument("destination", help="a destination of the routes file")
    backfill_cmd = commands.add_parser(
        "backfill", help="queue what the table holds through the routes, as a job of parallel Scan segments"
    )
    backfill_cmd.add_argument("destination", nargs="?", help="a destination a route sends to (or --all)")
    backfill_cmd.add_argument("--all", action="store_true", help="every destination a route sends to")
    backfill_cmd.add_argument("--filter", help="JMESPath over the item, as a route's filter sees it")
    backfill_cmd.add_argument(
        "--segments", type=int, default=4, help="parallel Scan segments, 1 to 64 (default 4)"
    )
    backfill_cmd.add_argument(
        "--dry-run",
        action="store_true",
        help=f"count what it would queue; queue nothing (follows the job: --wait {DRY_RUN_WAIT_S})",
    )
    backfill_cmd.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="follow the job until it ends, at most this long, and print it with its counts"
        f" (default: {DRY_RUN_WAIT_S} for a dry run, 0 otherwise: print the started job)",
    )
    for name, text in (("backfill-status", "a backfill's progress"), ("backfill-cancel", "stop a backfill")):
        commands.add_parser(name, help=text).add_argument("id", help="the backfill's id")
    replay_command.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "backfill" and bool(args.destination) == args.all:
        parser.error("backfill: give a DESTINATION or --all (every destination a route sends to)")
    if args.command == "console":
        return console(parser, args)

    env = stage.stage_env(args.stage)
    endpoint = args.endpoint or env.get("AWS_ENDPOINT_URL")
    # A local endpoint: the emulator's credentials and region, as `./dev run` has. Real AWS: a region
    # and credentials, or one message saying what to set (no botocore traceback).
    make: Any = (local_session if endpoint else configured_session)(args.region).client
    try:
        return act(parser, args, env, endpoint, make)
    except EndpointConnectionError as exc:
        local = " (is the local stack running? ./dev run)" if endpoint else ""
        print(f"cannot reach {exc.kwargs['endpoint_url']}{local}", file=sys.stderr)
        return 1


def act(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    env: dict[str, str],
    endpoint: str | None,
    make: Any,
) -> int:
    """The command, with clients from `make` (the stage's endpoint's, or AWS's)."""
    if args.stack_name:
        env = stack_env(
            make("cloudformation", endpoint_url=endpoint),
            make("lambda", endpoint_url=endpoint),
            args.stack_name,
        )
    elif stage.is_template_stage(env):
        parser.error(f"stage {args.stage} is deployed with the merge template: give its --stack-name")
    elif args.endpoint:
        env = stage.rebase(env, args.endpoint, None)
    sqs, dynamodb = make("sqs", endpoint_url=endpoint), make("dynamodb", endpoint_url=endpoint)
    if args.command == "redrive":
        wanted = RedriveFilter(
            groups=set(args.group) if args.group else None,
            message_ids=set(args.message_id) if args.message_id else None,
        )
        print(json.dumps(redrive(sqs, env, args.destination, wanted, use_move_task=not args.copy).as_dict()))
        return 0
    settings = load_settings(env)
    if args.command.startswith("backfill"):
        return backfill(sqs, dynamodb, settings, args)
    if args.command.startswith("replay"):
        clients = {"sqs": sqs, "dynamodb": dynamodb, "s3": make("s3", endpoint_url=endpoint)}
        if args.command == "replay":
            ask = input if sys.stdin.isatty() else None
            return replay_command.replay(settings, clients.__getitem__, args, datetime.now(UTC), ask)
        return replay_command.replay_job(settings, clients.__getitem__, args.command, args.job_id)
    if args.command in ("pause", "resume"):
        if args.destination not in settings.destinations:
            parser.error(
                f"no destination {args.destination}; destinations: {', '.join(settings.destinations)}"
            )
        reason = getattr(args, "reason", "")  # resume takes none
        return pause_or_resume(dynamodb, settings, args.destination, args.command == "pause", reason)
    # retry and skip as the routes do (`operations.release`): the message's own destination is read
    # from its record, under which the ledger files its new status
    ledger = Ledger(dynamodb, settings.ledger_table, settings.ledger_ttl_s, destination="")
    try:
        released = release(ledger, args.message_id, args.command, None)
    except ReleaseError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(released))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
