"""`operate replay`, `operate replay-status` and `operate replay-cancel` (issue #26): the replay's
request checked as `POST /replays` checks it, its preview counted from the delivered archive with
the operator's own reads, a question on a terminal (or `--yes`), then the job started on the stage's
tasks queue, where the `jobs` function works it as it works one `POST /replays` started."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from chalicelib.delivered_archive import DeliveredReader
from chalicelib.job_plan import filter_warnings
from chalicelib.jobs import Jobs, TooManyJobsError
from chalicelib.notes import Notes
from chalicelib.replay_pages import preview
from chalicelib.replay_plan import KIND, ReplayError, parse_body, shown
from chalicelib.settings import Settings
from chalicelib.task_queue import TaskQueue

YES = ("y", "yes")


def add_commands(commands: Any) -> None:
    """The three commands, on `operate`'s sub-command parsers."""
    cmd = commands.add_parser("replay", help="queue again what was delivered to a destination in a window")
    cmd.add_argument("destination", help="whose deliveries (a destination of the routes file)")
    cmd.add_argument("--since", required=True, help="ISO 8601 with its zone, e.g. 2026-12-04T09:30:00Z")
    cmd.add_argument("--until", required=True, help="the window's end (not included), as --since")
    cmd.add_argument("--filter", help="JMESPath over {id, group, delivered_at, body}: true replays it")
    cmd.add_argument("--group", help="only this message group")
    cmd.add_argument("--to", help="deliver to this destination instead (its auth and request shape)")
    cmd.add_argument(
        "--same-keys",
        action="store_true",
        help="the originals' ids for the API: it applies only what it missed",
    )
    cmd.add_argument("--dry-run", action="store_true", help="count what would be queued, queue nothing")
    cmd.add_argument("--yes", action="store_true", help="do not ask (needed when not on a terminal)")
    for name, text in (("replay-status", "a replay's progress"), ("replay-cancel", "stop a replay")):
        commands.add_parser(name, help=text).add_argument("job_id")


def replay(
    settings: Settings,
    clients: Callable[[str], Any],
    args: argparse.Namespace,
    now: datetime,
    ask: Callable[[str], str] | None,
) -> int:
    """`operate replay`: prints the preview, then asks (`ask`; None: not a terminal, so `--yes` is
    needed) and starts the job. 0: started, or a dry run counted; 1: declined, or nothing to
    replay; 2: a request to fix (one line on stderr says what)."""
    asked = {
        "destination": args.destination,
        "since": args.since,
        "until": args.until,
        "filter": args.filter,
        "group": args.group,
        "to": args.to,
        "same_keys": args.same_keys,
        "dry_run": args.dry_run,
    }
    body = json.dumps({name: value for name, value in asked.items() if value is not None})
    try:
        chosen = parse_body(
            body, settings.destinations, now, settings.archive_days, bool(settings.archive_bucket)
        )
    except ReplayError as exc:
        print(f"operate replay: {exc}", file=sys.stderr)
        return 2
    assert settings.archive_bucket is not None  # parse_body refuses a stage without one
    reader = DeliveredReader(clients("s3"), settings.archive_bucket)
    counted = preview(reader, chosen)
    keys = "the same keys (the API applies only what it missed)" if chosen.same_keys else "new keys"
    unreadable = f", {len(reader.skipped)} unreadable" if reader.skipped else ""
    print(
        f"{counted['selected']} message(s) delivered to {chosen.destination} from {args.since} until"
        f" {args.until} would be queued for {chosen.target} with {keys}; {counted['read']} read in"
        f" {counted['objects']} archive object(s){unreadable}"
    )
    for warning in filter_warnings(counted, "read", "archived deliveries read"):
        print(f"warning: {warning}")
    if chosen.dry_run:
        print(json.dumps({"dry_run": True} | counted))
        return 0
    if not counted["selected"]:
        print("nothing to replay")
        return 1
    if not args.yes:
        if ask is None:
            print("operate replay: not on a terminal, so not asked: add --yes to replay", file=sys.stderr)
            return 2
        if (
            ask(f"Queue {counted['selected']} message(s) for {chosen.target}? [y/N] ").strip().lower()
            not in YES
        ):
            print("not replayed")
            return 1
    tasks = TaskQueue(clients("sqs"), settings.jobs_queue_url, attempts=settings.send_attempts)
    try:
        job = jobs(settings, clients).start(KIND, [chosen.target], 1, chosen.spec(), tasks)
    except TooManyJobsError as exc:
        print(f"operate replay: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(job | {"progress_url": f"/replays/{job['id']}"}))
    return 0


def replay_job(settings: Settings, clients: Callable[[str], Any], command: str, job_id: str) -> int:
    """`replay-status ID` and `replay-cancel ID`: the job as `GET /replays/{id}` shows it (after the
    cancel: its worker stops at its next page, what it queued stays queued)."""
    found = jobs(settings, clients)
    job = found.view(job_id, KIND)
    if job is not None and command == "replay-cancel":
        found.cancel(job_id)
        job = found.view(job_id, KIND)
    if job is None:
        print(f"operate {command}: no replay {job_id}", file=sys.stderr)
        return 1
    print(json.dumps(shown(job)))  # with its warnings, if any
    return 0


def jobs(settings: Settings, clients: Callable[[str], Any]) -> Jobs:
    return Jobs(Notes(clients("dynamodb"), settings.notes_table, settings.ledger_ttl_s))
