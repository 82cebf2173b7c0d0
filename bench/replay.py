"""The `replay` section (issue 26): a replay of 10,000 delivered messages, from the delivered archive
back onto the destination's queue by the `jobs` function's worker, then delivered by the drain.

The archive is written as the drains write it (`DeliveredArchive`, one object per drain run of
`MESSAGES_PER_RUN`, the bodies the routes build from the bench's order records), so no drain time
is spent making it. The replay is started through `wiring.start_replay` (what `POST /replays`
does) and its tasks are worked one after another from the tasks queue, as Lambda's trigger hands
them; its messages per second and its AWS requests per message (S3 LIST and GET, SQS sends and
queue depths, the job's notes, the tasks) are counted over that. The destination's high-water mark
(`backfill_max_queued`) is set above the replay, so the figure is the worker's own pace, not the
drain's: on a stage the replay waits behind that mark (docs/runbook.md). Then the drain delivers the
replayed messages: messages per second and requests per message, as the relay section counts them.
Figures only; asserts nothing."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import figures
from bench.harness import ARCHIVE_BUCKET, Bench, LambdaContext
from bench.stream import order_records
from chalicelib import naming, wiring
from chalicelib.delivered_archive import DeliveredArchive
from chalicelib.metrics import RunMetrics
from chalicelib.model import iso_utc
from chalicelib.records import build_messages
from trickle_local.endpoint import clients

MESSAGES_PER_RUN = 500  # a drain run's most, at TRICKLE_DRAIN_BUDGET's default
WORKERS = 4


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_archive(bench: Bench, count: int, groups: int, delivered_at: float) -> int:
    """`count` order messages archived as `count / MESSAGES_PER_RUN` drain runs would archive them,
    a millisecond apart from `delivered_at`; the objects written."""
    built = build_messages(order_records(count, groups, bench.stream_arn), wiring.settings()).messages
    archive = DeliveredArchive(clients(bench.emulator.endpoint_url)["s3"], ARCHIVE_BUCKET)
    objects = 0
    for start in range(0, len(built), MESSAGES_PER_RUN):
        run = archive.open("orders", delivered_at + start / 1000, RunMetrics({"destination": "orders"}))
        for n, message in enumerate(built[start : start + MESSAGES_PER_RUN]):
            run.add(message.message_id, message.group_id, delivered_at + (start + n) / 1000, message.body)
        run.close()
        objects += len(run.keys)
    return objects


def work_tasks(bench: Bench) -> int:
    """The tasks queue's tasks, one at a time until none is left, as the trigger hands them to
    `jobs` (receive, work, delete); the tasks worked."""
    sqs, url = clients(bench.emulator.endpoint_url)["sqs"], wiring.settings().jobs_queue_url
    worked = 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=900)
        messages = got.get("Messages", [])
        if not messages:
            return worked
        wiring.work_job(messages[0]["Body"], LambdaContext())
        sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        worked += 1


def replay_section(bench: Bench, inputs: Mapping[str, Any]) -> dict[str, Any]:
    count, groups = inputs["replay_messages"], inputs["groups"]
    mark = {naming.destination_variable("orders", "backfill_max_queued"): str(count * 2)}
    bench.reset(WORKERS, archive=True, extra=mark)
    delivered_at = time.time() - 600
    objects = write_archive(bench, count, groups, delivered_at)
    window = {
        "destination": "orders",
        "since": iso_utc(delivered_at - 1),
        "until": iso_utc(datetime.now(UTC) - timedelta(seconds=1)),
    }
    bench.calls.take()
    # Powertools prints a metric's EMF line at 100 values even when disabled: off the table
    with contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        job = wiring.start_replay(json.dumps(window))
        start_requests = figures.requests_only(bench.calls.take().counts)
        tasks = work_tasks(bench)
        seconds = time.perf_counter() - started
    made = figures.requests_only(bench.calls.take().counts)
    counts = wiring.jobs().view(job["id"], "replay") or {}
    queued = int(counts.get("counts", {}).get("queued", 0))
    requests = figures.add(start_requests, made)
    per = sum(requests.values()) / max(1, queued)
    log(f"  replay: {queued:,} queued in {seconds:.1f} s, {per:.3f} AWS requests per message")
    delivery = bench.relay(queued)
    log(
        f"  delivery: {delivery['delivered']:,} in {delivery['seconds']:.1f} s,"
        f" {delivery['aws_requests_per_message']:.3f} req/msg"
    )
    return {
        "inputs": {
            "messages": count,
            "groups": groups,
            "messages_per_object": MESSAGES_PER_RUN,
            "objects": objects,
            "workers": WORKERS,
            "api_latency_ms": inputs["api_latency_ms"],
        },
        "state": counts.get("state"),
        "queued": queued,
        "tasks": tasks,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(queued / seconds, 1) if seconds else 0.0,
        "requests_by_api": dict(sorted(requests.items())),
        "requests_per_message": round(sum(requests.values()) / max(1, queued), 4),
        "delivery": {
            key: delivery[key]
            for key in ("delivered", "seconds", "throughput_msgs_per_s", "aws_requests_per_message")
        }
        | {"requests_by_api": delivery["requests_by_api"]},
    }


def render_replay(name: str, section: Mapping[str, Any]) -> list[str]:
    inputs, machine, delivery = section["inputs"], section.get("machine", {}), section["delivery"]
    queued = max(1, section["queued"])
    out = [
        f"### Replay ({name}): {inputs['messages']:,} messages from the delivered archive (issue 26)",
        "",
        f"`{section.get('command', 'python -m bench --only replay')}` on {machine.get('cpus', '?')} CPUs:"
        f" {inputs['messages']:,} archived messages over {inputs['groups']} groups in {inputs['objects']}"
        f" objects ({inputs['messages_per_object']} per drain run), replayed with new keys by the jobs"
        f" worker ({section['tasks']} task(s), state {section['state']}), its queue's high-water mark"
        " above the replay; then delivered by the drain at"
        f" {inputs['workers']} workers, API latency {inputs['api_latency_ms']:g} ms.",
        "",
        "| phase | messages | seconds | msg/s | AWS requests per message |",
        "|---|---|---|---|---|",
        f"| replay (archive -> queue) | {section['queued']:,} | {section['seconds']:.1f} |"
        f" {section['msgs_per_s']:.1f} | {section['requests_per_message']:.4f} |",
        f"| delivery (queue -> API) | {delivery['delivered']:,} | {delivery['seconds']:.1f} |"
        f" {delivery['throughput_msgs_per_s']:.1f} | {delivery['aws_requests_per_message']:.4f} |",
        "",
        "The replay's requests by API (per message): "
        + ", ".join(f"{api} {n:,} ({n / queued:.4f})" for api, n in section["requests_by_api"].items())
        + ".",
    ]
    return out
