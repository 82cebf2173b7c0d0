"""The `archive` section (issue 26): what the delivered archive costs per million delivered messages,
and what it does to the drain's CPU.

Cost: S3 PUT requests (one object per drain run and hour, more past `FLUSH_BYTES`) and storage in
GB-months until the bucket's lifecycle rule expires the objects (`TRICKLE_ARCHIVE_DAYS`, default 30),
from the archive's own objects (their gzip bytes per message, measured) at the prices below, for
several numbers of messages per run, since that sets the objects per message. CPU: the drain with
the archive beside the drain without it (no bucket), same backlog and workers, in turns; and the
writer alone (lines, gzip, PutObject) on the bodies the runs archived. Figures and ratios; asserts
nothing."""

from __future__ import annotations

import gzip
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bench import figures
from bench.harness import ARCHIVE_BUCKET, Bench
from bench.stream import order_records
from chalicelib import naming, wiring
from chalicelib.delivered_archive import COMPRESS_LEVEL, FLUSH_BYTES, DeliveredArchive, line, parse
from chalicelib.metrics import RunMetrics
from trickle_local.endpoint import clients

# S3 Standard, US East (N. Virginia), https://aws.amazon.com/s3/pricing/ as published in 2026 (these
# figures unchanged since 2017; not re-read from this machine): PUT, COPY, POST and LIST requests
# $0.005 per 1,000; GET $0.0004 per 1,000; storage (first 50 TB a month) $0.023 per GB-month.
# Expiring objects under a lifecycle rule is not charged. A GB-month: 2^30 bytes kept 730 hours
# (the AWS Pricing Calculator's month).
S3_PUT_USD = 0.005 / 1000
S3_GET_USD = 0.0004 / 1000
S3_GB_MONTH_USD = 0.023
GIB = 2**30
HOURS_PER_MONTH = 730
# Messages one drain run delivers (its objects: one per run and hour): a quiet destination's run may
# deliver one; TRICKLE_DRAIN_BUDGET's default caps a run at 500.
MESSAGES_PER_RUN = (1, 10, 100, 500)
# The shipped drains run once a minute (app.py): at most this many runs, so objects below FLUSH_BYTES,
# a month, whatever the traffic.
RUNS_PER_MONTH_AT_ONE_A_MINUTE = HOURS_PER_MONTH * 60
WORKERS = 4


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the arithmetic (pure) -------------------------------------------------------------------------


def archive_cost(bytes_per_message: float, messages_per_object: float, days: float) -> dict[str, float]:
    """The archive's bill per million delivered messages, USD: a PUT per object, and the messages'
    stored bytes kept `days` (GB-months, in steady state); and reading them back once (GETs)."""
    puts = 1_000_000 / messages_per_object
    gb_months = bytes_per_message * 1_000_000 / GIB * days * 24 / HOURS_PER_MONTH
    put_usd, storage_usd = puts * S3_PUT_USD, gb_months * S3_GB_MONTH_USD
    return {
        "puts": round(puts, 1),
        "put_usd": round(put_usd, 4),
        "gb_months": round(gb_months, 4),
        "storage_usd": round(storage_usd, 4),
        "usd": round(put_usd + storage_usd, 4),
        "replay_get_usd": round(puts * S3_GET_USD, 4),
    }


def cost_rows(line_bytes: float, gzip_bytes: float, days: float) -> list[dict[str, Any]]:
    """The bill per million at each of `MESSAGES_PER_RUN` (an object holds `FLUSH_BYTES` of lines at most)."""
    per_object = max(1, FLUSH_BYTES // max(1, round(line_bytes)))
    return [
        {"messages_per_run": n, **archive_cost(gzip_bytes, min(n, per_object), days)}
        for n in MESSAGES_PER_RUN
    ]


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return round(value / base, 3)


def summary(runs: Mapping[str, Sequence[Mapping[str, Any]]], days: int) -> dict[str, Any]:
    """The runs without and with the archive pooled (`figures.pooled`), the CPU ratio, and from the
    archive's objects: bytes per message stored and as lines, objects and PUTs per message, and the
    bill per million at each of `MESSAGES_PER_RUN`, beside the relay's own."""
    off, on = figures.pooled(runs["off"]), figures.pooled(runs["on"])
    delivered = max(1, on["delivered"])
    lines = sum(int(r["lines"]) for r in runs["on"])
    line_bytes = sum(int(r["line_bytes"]) for r in runs["on"]) / max(1, lines)
    gzip_bytes = sum(int(r["gzip_bytes"]) for r in runs["on"]) / max(1, lines)
    relay_usd = max(float(r["relay_usd_per_million"]) for r in runs["off"])
    costs = cost_rows(line_bytes, gzip_bytes, days)
    return {
        "without": off,
        "with": on,
        "drain_cpu_ratio": ratio(on.get("drain_cpu_ms_per_message"), off.get("drain_cpu_ms_per_message")),
        "throughput_ratio": ratio(on["throughput_msgs_per_s"], off["throughput_msgs_per_s"]),
        "archived_share": round(lines / delivered, 3),  # 1.0: every delivered message, once
        "objects": sum(int(r["objects"]) for r in runs["on"]),
        "puts_per_message": round(sum(int(r["puts"]) for r in runs["on"]) / delivered, 4),
        "line_bytes_per_message": round(line_bytes, 1),
        "gzip_bytes_per_message": round(gzip_bytes, 1),
        "compression": ratio(line_bytes, gzip_bytes),
        "days": days,
        "usd_per_million": costs,
        "relay_usd_per_million": relay_usd,
        "share_of_relay_at_500": ratio(costs[-1]["usd"], relay_usd),
        "response_archive_usd_per_million": round(1_000_000 * S3_PUT_USD, 2),  # its PUT per message
        # the storage if the bodies did not compress at all
        "uncompressed_storage_usd": archive_cost(line_bytes, 1, days)["storage_usd"],
        "put_usd_per_month_at_most": round(RUNS_PER_MONTH_AT_ONE_A_MINUTE * S3_PUT_USD, 2),
    }


# --- the runs --------------------------------------------------------------------------------------


def archive_run(bench: Bench, inputs: Mapping[str, Any], on: bool) -> dict[str, Any]:
    """One drain of a fresh backlog at `WORKERS` workers, with the archive (a bucket) or without;
    with it, what it stored."""
    count = inputs["messages"]
    bench.reset(WORKERS, archive=on)
    ingest = bench.ingest(order_records(count, inputs["groups"], bench.stream_arn))
    run = bench.relay(count)
    billed = figures.add(ingest["requests"], run["requests_by_api"], run["dynamodb_batch_items"])
    out = {
        key: run[key] for key in ("delivered", "seconds", "throughput_msgs_per_s", "drain_cpu_ms_per_message")
    }
    out["puts"] = run["requests_by_api"].get("s3:PutObject", 0)
    out["relay_usd_per_million"] = figures.cost_per_million(
        billed, run["delivered"], ingest["seconds"] + run["seconds"], ingest["invocations"] + 1
    )
    if on:
        out |= stored(clients(bench.emulator.endpoint_url)["s3"])
    label = "with the archive" if on else "without it      "
    log(
        f"  {label}: {out['throughput_msgs_per_s']:7.1f} msg/s, drain CPU"
        f" {out['drain_cpu_ms_per_message']:.2f} ms/msg, {out['puts']} PutObject"
    )
    return out


def stored(s3: Any) -> dict[str, Any]:
    """What the archive holds: objects, lines, bytes as stored (gzip) and as lines, and the records."""
    keys = [
        listed["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=ARCHIVE_BUCKET, Prefix=naming.DELIVERED_PREFIX
        )
        for listed in page.get("Contents", [])
    ]
    records: list[tuple[str, str, float, str]] = []
    gzip_bytes = line_bytes = 0
    for key in keys:
        data = s3.get_object(Bucket=ARCHIVE_BUCKET, Key=key)["Body"].read()
        gzip_bytes += len(data)
        line_bytes += len(gzip.decompress(data))
        records += [(r.message_id, r.group_id, r.delivered_at.timestamp(), r.body) for r in parse(data)]
    return {
        "objects": len(keys),
        "lines": len(records),
        "gzip_bytes": gzip_bytes,
        "line_bytes": line_bytes,
        "records": records,
    }


def writer_cpu(s3: Any, records: Sequence[tuple[str, str, float, str]], repeat: int) -> dict[str, Any]:
    """The writer alone, in this process: `records` added `repeat` times to one run's archive and put
    (lines, gzip, PutObject), CPU per message; and its lines and their gzip alone, without S3."""
    every = [record for _ in range(repeat) for record in records]
    messages = max(1, len(every))
    started = time.process_time()
    lines = [line(*record) for record in every]
    encoded = time.process_time()
    gzip.compress(b"".join(lines), compresslevel=COMPRESS_LEVEL, mtime=0)
    compressed = time.process_time()
    run = DeliveredArchive(s3, ARCHIVE_BUCKET).open(
        "bench_writer", time.time(), RunMetrics({"destination": "bench_writer"})
    )
    for record in every:
        run.add(*record)
    run.close()
    done = time.process_time()
    return {
        "messages": messages,
        "objects": len(run.keys),
        "cpu_ms_per_message": round((done - compressed) * 1000 / messages, 4),
        "lines_cpu_ms_per_message": round((encoded - started) * 1000 / messages, 4),
        "gzip_cpu_ms_per_message": round((compressed - encoded) * 1000 / messages, 4),
    }


def archive_section(bench: Bench, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Without and with the archive in turns, the order flipped each round; then the writer alone."""
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for n in range(inputs["archive_rounds"]):
        order = ("off", "on") if n % 2 == 0 else ("on", "off")
        for kind in order:
            runs[kind].append(archive_run(bench, inputs, kind == "on"))
    records = [r for run in runs["on"] for r in run.pop("records")]
    out = summary(runs, wiring.settings().archive_days)
    out["writer"] = writer_cpu(clients(bench.emulator.endpoint_url)["s3"], records, inputs["writer_repeat"])
    out["inputs"] = {
        "messages": inputs["messages"],
        "groups": inputs["groups"],
        "workers": WORKERS,
        "rounds": inputs["archive_rounds"],
        "api_latency_ms": inputs["api_latency_ms"],
    }
    return out


# --- the table -------------------------------------------------------------------------------------


def render_archive(name: str, section: Mapping[str, Any]) -> list[str]:
    inputs, machine = section["inputs"], section.get("machine", {})
    off, on, writer = section["without"], section["with"], section["writer"]
    rounds = inputs["rounds"]
    out = [
        f"### Delivered archive ({name}): cost per million delivered messages, drain CPU (issue 26)",
        "",
        f"`{section.get('command', 'python -m bench --only archive')}` on {machine.get('cpus', '?')} CPUs:"
        f" {inputs['messages']:,} messages over {inputs['groups']} groups per run, {inputs['workers']}"
        f" workers, API latency {inputs['api_latency_ms']:g} ms; {rounds} run(s) with and without the"
        " archive, in turns, pooled. Each run delivers its whole backlog in one drain run: one object.",
        "",
        f"Archived {section['archived_share']:.0%} of the delivered messages, in {section['objects']}"
        f" object(s); {section['line_bytes_per_message']:g} bytes per message as lines,"
        f" {section['gzip_bytes_per_message']:g} stored (gzip, {section['compression']:.1f}x smaller: the"
        " bench's bodies are much alike; bodies that did not compress at all would cost"
        f" ${section['uncompressed_storage_usd']:.4f} per million in storage)."
        f" Prices: S3 Standard us-east-1, PUT ${S3_PUT_USD * 1000:g} per 1,000, ${S3_GB_MONTH_USD} per"
        f" GB-month, kept {section['days']} days (TRICKLE_ARCHIVE_DAYS).",
        "",
    ]
    out += table(
        [
            "messages per run",
            "PUTs per million",
            "PUT USD/M",
            "GB-months per million",
            "storage USD/M",
            "archive USD/M",
            "x relay's USD/M",
            "replay GETs USD/M",
        ],
        [
            [
                str(row["messages_per_run"]),
                f"{row['puts']:,.0f}",
                f"{row['put_usd']:.4f}",
                f"{row['gb_months']:.4f}",
                f"{row['storage_usd']:.4f}",
                f"{row['usd']:.4f}",
                cell(ratio(row["usd"], section["relay_usd_per_million"])),
                f"{row['replay_get_usd']:.4f}",
            ]
            for row in section["usd_per_million"]
        ],
    )
    out += [
        "",
        f"The relay's own bill (SQS, DynamoDB, KMS, Lambda; the worst run without the archive):"
        f" ${section['relay_usd_per_million']:.2f} per million. The response archive, on with the same"
        f" bucket, PUTs an object per message: ${section['response_archive_usd_per_million']:.2f} per"
        " million in PUTs alone. A destination's drain running once a minute puts one archive object"
        " per run below 4 MB of lines (one more when a run spans an hour): about"
        f" {RUNS_PER_MONTH_AT_ONE_A_MINUTE:,} a month, ${section['put_usd_per_month_at_most']:.2f},"
        " however few messages each run delivers.",
        "",
    ]
    out += table(
        ["drain", "msg/s", "drain CPU ms/msg", "PutObject per message"],
        [
            [
                "without the archive",
                f"{off['throughput_msgs_per_s']:.1f}",
                cell(off.get("drain_cpu_ms_per_message")),
                "0",
            ],
            [
                "with the archive",
                f"{on['throughput_msgs_per_s']:.1f}",
                cell(on.get("drain_cpu_ms_per_message")),
                f"{section['puts_per_message']:.4f}",
            ],
            [
                "with / without",
                cell(section["throughput_ratio"], 3),
                cell(section["drain_cpu_ratio"], 3),
                "-",
            ],
        ],
    )
    out += [
        "",
        f"The writer alone, in process ({writer['messages']:,} messages, {writer['objects']} objects):"
        f" {writer['cpu_ms_per_message']:.4f} ms CPU per message (lines, gzip, PutObject); of that, the"
        f" lines {writer['lines_cpu_ms_per_message']:.4f} and their gzip"
        f" {writer['gzip_cpu_ms_per_message']:.4f}.",
    ]
    return out


def cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
