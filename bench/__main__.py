"""`python -m bench [--quick] [--emulator moto|ministack|both] [--aws-latency [OVERRIDES]]
[--only relay|auth|bulk|archive|replay|backfill] [--items N]`:
Trickle's relay against the literal seed design it grew from, on each
emulator, in the same run: drain throughput at 1, 4 and 16 workers and at 16 under a 100/s rate limit,
each beside its bound min(rate, W / L) and the harness's own ceiling; AWS requests and dollars per
message (ingest + drain); the CPU per message of the drain, the emulator and the stand-in API (from
/proc); ingest records per second and requests per record for Lambda batches of 100 mixed stream
records; throughput as the backlog grows; `import app` time and the deployment package (the `relay`
section). The `auth` section (issue 24): token requests per 1,000 messages at 1, 4 and 16 workers with
two token lifetimes, and the drain's throughput with OAuth2 client credentials + Standard Webhooks
signing beside the plain API key at the same worker count, in the same run (goal: within 10 %). The
`bulk` section (issue 25): the drain to a bulk endpoint at up to 10 and 50 messages per request beside
the single-item relay, at 1 and 4 workers, in the same run: msg/s, API requests and items per request,
AWS requests and drain CPU per message, against the issue's goals (met or missed). The `archive`
section (issue 26): the delivered archive's cost per million delivered messages (S3 PUTs and
GB-months at the default expiry, by messages per run) and the drain's CPU per message with it
beside without it (`bench/archive.py`). The `replay` section (issue 26): 10,000 archived messages
replayed by the jobs worker (msg/s, AWS requests per message by API), then delivered
(`bench/replay.py`). The `backfill` section (issue 26, ministack only unless
`--emulator moto`): a backfill of `--items` items (default 100,000) at 1, 4 and 8 segments with
nothing pacing it, items queued per second and AWS requests per item; a table of `--delivery-items`
(default 4,000) backfilled as deployed at each segment count while live items are written, and one
under a drain on a schedule: delivered per second, the jobs function's requests per item, the live
items' delay beside the same live load alone, and what pacing did (`bench/backfill.py`).
Prints markdown
tables and writes bench/results.json (a run on one emulator, or of one section, keeps the others'
results when the inputs match). Reports figures; asserts nothing.

Everything runs on loopback: the emulator (moto in a subprocess, or ministack from .venv-ministack)
and the stand-in API with a fixed latency each in a process of their own; the relay in this one.

`--aws-latency` runs every throughput and ingest figure a second time with a model of AWS round
trips: each HTTP round trip to the emulator is drawn out to a per-service time (bench/figures.py,
DEFAULT_AWS_LATENCY_MS, with where each figure comes from; most are assumptions), so the seed design
pays its round trips per message (receive, SSM + KMS, delete) as it would on AWS.
`--aws-latency sqs=30,dynamodb=8` changes the model's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from bench.archive import archive_section, render_archive
from bench.backfill import (
    DEFAULT_ITEMS,
    DELIVERY_ITEMS,
    SCHEDULED_ITEMS,
    SEGMENTS,
    backfill_section,
    render_backfill,
)
from bench.figures import (
    AUTH_GOAL,
    AUTH_RUNS,
    BULK_BATCHES,
    BULK_GOALS,
    BULK_WORKERS,
    LatencyModel,
    add,
    auth_ratio,
    auth_throughput_rows,
    bound,
    bulk_errors,
    bulk_goal_figures,
    bulk_goal_rows,
    bulk_pooled,
    bulk_rows,
    bulk_turns,
    cost_per_million,
    goal_rows,
    per_message,
    pooled,
    requests_only,
    share,
    spread,
    token_requests_due,
    token_rows,
    within_goal,
    write_orders,
)
from bench.harness import (
    API_KEY,
    BULK_VARIABLES,
    ROOT,
    UNLIMITED,
    AuthStandIn,
    Bench,
    BulkStandIn,
    Calls,
    OAuth2Signing,
    harness_ceiling,
)
from bench.replay import render_replay, replay_section
from bench.stream import WRITE_ORDERS, WriteOrder, mixed_records, order_records
from chalicelib import wiring
from chalicelib.job_plan import MAX_PARTS
from trickle_local.emulators import EMULATORS, EmulatorName
from trickle_local.endpoint import use_local_credentials
from trickle_project import stage
from trickle_project.stage import packaging_env

RATE_LIMITED_PER_S = 100
WORKERS = (1, 4, 16)
API_LATENCY_S = 0.02
DRAIN_BUDGET_PER_INVOCATION = 500  # messages a scheduled drain takes per Lambda invocation, for the bill
VARIANTS = {"emulator": "on the emulator as is", "aws_model": "with the AWS round-trip model"}
SECTIONS = ("relay", "auth", "bulk", "archive", "replay", "backfill")
# The auth section's token lifetimes: TokenEndpoint's default (an hour, as many real endpoints issue)
# and 2 s, renewed after 1 s: shorter than the local runtime's 5 s (--token-lifetime) so that even a
# 16-worker run of two seconds sees a refresh.
TOKEN_LIFETIMES_S = {"oauth2_signing": 3600, "oauth2_signing_short": 2}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def relay_run(
    bench: Bench, inputs: Mapping[str, Any], workers: int, ceiling: float, rate: int = UNLIMITED
) -> dict[str, Any]:
    """One relay drain of a fresh backlog queued by the ingest handler, with the bound it should
    approach, min(rate, W / L), and what the harness alone reaches at that many workers."""
    count, groups = inputs["messages"], inputs["groups"]
    bench.reset(workers, rate)
    ingest = bench.ingest(order_records(count, groups, bench.stream_arn))
    run = bench.relay(count)
    delivered = max(1, run["delivered"])
    billed = add(ingest["requests"], run["requests_by_api"], run["dynamodb_batch_items"])
    run["workers"] = workers
    run["rate_limit_per_s"] = rate
    run["ingest_requests_per_message"] = round(sum(requests_only(ingest["requests"]).values()) / delivered, 3)
    run["requests_per_message"] = round(sum(requests_only(billed).values()) / delivered, 3)
    run["requests_per_message_by_api"] = per_message(billed, delivered)
    invocations = ingest["invocations"] + 1 + count // DRAIN_BUDGET_PER_INVOCATION
    run["usd_per_million"] = cost_per_million(
        billed, delivered, ingest["seconds"] + run["seconds"], invocations
    )
    run["bound_msgs_per_s"] = bound(rate, workers, API_LATENCY_S)
    run["share_of_bound"] = share(run["throughput_msgs_per_s"], run["bound_msgs_per_s"])
    run["harness_ceiling_msgs_per_s"] = min(float(rate), ceiling)
    run["share_of_ceiling"] = share(run["throughput_msgs_per_s"], run["harness_ceiling_msgs_per_s"])
    limit = f", limit {rate}/s" if rate != UNLIMITED else ""
    log(
        f"  relay, {workers:2d} workers{limit}: {run['throughput_msgs_per_s']:7.1f} msg/s"
        f" (bound {run['bound_msgs_per_s']:g}, harness ceiling {run['harness_ceiling_msgs_per_s']:g})"
    )
    return run


def seed_run(bench: Bench, inputs: Mapping[str, Any]) -> dict[str, Any]:
    count, groups = inputs["messages"], inputs["groups"]
    bench.reset(1)
    ingest = bench.ingest(order_records(count, groups, bench.stream_arn), seed=True)
    base = bench.seed(count)
    delivered = max(1, base["delivered"])
    billed = add(ingest["requests"], base["requests_by_api"])
    base["requests_per_message"] = round(sum(requests_only(billed).values()) / delivered, 3)
    base["requests_per_message_by_api"] = per_message(billed, delivered)
    # one Lambda invocation per message: the seed design's drain took one message per run
    invocations = ingest["invocations"] + delivered
    base["usd_per_million"] = cost_per_million(
        billed, delivered, ingest["seconds"] + base["seconds"], invocations
    )
    log(f"  seed design:            {base['throughput_msgs_per_s']:7.1f} msg/s")
    return base


def ingest_runs(bench: Bench, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ingest handler on Lambda batches of 100 mixed records, and the seed design's ingest (the
    same messages queued, no ledger) on the same records."""
    out: dict[str, Any] = {}
    for name, seed in (("relay", False), ("seed", True)):
        bench.reset(1)
        records = mixed_records(inputs["ingest_records"], inputs["groups"], bench.stream_arn)
        figures = bench.ingest(records, seed=seed)
        figures["requests"] = dict(sorted(requests_only(figures["requests"]).items()))
        out[name] = figures
        log(f"  ingest ({name}):{' ' * (10 - len(name))}{figures['records_per_s']:7.1f} records/s")
    return out


def suite(bench: Bench, inputs: Mapping[str, Any], ceilings: Mapping[int, float]) -> dict[str, Any]:
    relay = {f"workers_{w}": relay_run(bench, inputs, w, ceilings[w]) for w in WORKERS}
    relay["rate_limited"] = relay_run(bench, inputs, 16, ceilings[16], RATE_LIMITED_PER_S)
    base = seed_run(bench, inputs)
    for run in relay.values():
        run["ratio_vs_baseline"] = round(
            run["throughput_msgs_per_s"] / max(0.001, base["throughput_msgs_per_s"]), 2
        )
    return {"relay": relay, "baseline": base, "ingest": ingest_runs(bench, inputs)}


def scaling(bench: Bench, inputs: Mapping[str, Any]) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for size in inputs["scales"]:
        bench.reset(4)
        bench.ingest(order_records(size, inputs["groups"], bench.stream_arn))
        run = bench.relay(size)
        runs[str(size)] = run
        log(f"  backlog {size:5d}, 4 workers: {run['throughput_msgs_per_s']:7.1f} msg/s")
    return {
        "workers": 4,
        "runs": runs,
        "throughput_spread": spread(r["throughput_msgs_per_s"] for r in runs.values()),
    }


def auth_run(
    bench: Bench, inputs: Mapping[str, Any], workers: int, standin: AuthStandIn | None
) -> dict[str, Any]:
    """One drain of a fresh backlog to the API-key stand-in, or with OAuth2 + signing to `standin`
    (a fresh container: its first request fetches a token), with the token requests its endpoint
    answered and the requests it refused (401) meanwhile."""
    count = inputs["messages"]
    bench.reset(workers, auth=standin)
    bench.ingest(order_records(count, inputs["groups"], bench.stream_arn))
    before = standin.counts() if standin is not None else (0, 0)
    run = bench.relay(count)
    kept = ("delivered", "seconds", "throughput_msgs_per_s", "drain_cpu_ms_per_message")
    figures = {key: run[key] for key in kept} | {
        "standin_api_cpu_ms_per_message": run.get("standin_api_cpu_ms_per_message")
    }
    label = "API key"
    if standin is not None:
        tokens, refused = (now - then for now, then in zip(standin.counts(), before, strict=True))
        lifetime = standin.oauth2.lifetime_s
        skew = wiring.settings().destination("orders").token_refresh_skew_s
        figures |= {
            "token_requests": tokens,
            "token_requests_due": token_requests_due(run["seconds"], lifetime, skew),
            "auth_failures": refused,
        }
        label = f"OAuth2 + signing, tokens of {lifetime} s: {tokens} token requests, {refused} refused;"
    log(f"  {workers:2d} workers, {label} {figures['throughput_msgs_per_s']:7.1f} msg/s")
    return figures


def auth_section(bench: Bench, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """At each worker count: the API key and OAuth2 + signing (tokens of an hour) in turns, the
    order flipped each round so neither always runs first on a busy machine; then one run with
    short-lived tokens. Each kind's runs are pooled (messages over seconds)."""
    standins = {kind: bench.auth_standin(OAuth2Signing(s)) for kind, s in TOKEN_LIFETIMES_S.items()}
    skew = standins["oauth2_signing"].destination("orders", bench.base).token_refresh_skew_s
    out: dict[str, Any] = {
        "inputs": {
            "messages": inputs["messages"],
            "groups": inputs["groups"],
            "api_latency_ms": API_LATENCY_S * 1000,
            "rounds": inputs["auth_rounds"],
            "token_lifetime_s": dict(TOKEN_LIFETIMES_S),
            "token_refresh_skew_s": skew,
        }
    }
    for workers in WORKERS:
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in AUTH_RUNS}
        for n in range(inputs["auth_rounds"]):
            order = ("api_key", "oauth2_signing")
            for kind in order if n % 2 == 0 else reversed(order):
                runs[kind].append(auth_run(bench, inputs, workers, standins.get(kind)))
        runs["oauth2_signing_short"].append(
            auth_run(bench, inputs, workers, standins["oauth2_signing_short"])
        )
        figures: dict[str, Any] = {kind: pooled(each) for kind, each in runs.items()}
        ratio = auth_ratio(figures["api_key"], figures["oauth2_signing"])
        figures |= {
            "ratio": ratio,
            "within_goal": within_goal(ratio),
            "ratio_short": auth_ratio(figures["api_key"], figures["oauth2_signing_short"]),
        }
        out[f"workers_{workers}"] = figures
    return out


def bulk_run(
    bench: Bench,
    inputs: Mapping[str, Any],
    workers: int,
    standin: BulkStandIn,
    batch: int,
    order: WriteOrder = "interleaved",
) -> dict[str, Any]:
    """One drain of a fresh backlog, written in `order`, to `standin`: one message per request to
    its plain path (batch 1, the single-item relay), or up to `batch` per request to its bulk
    endpoint; with the requests it received and the items they carried, and the AWS requests of the
    drain and the ingest."""
    count = inputs["messages"]
    bench.reset(workers, bulk=standin, batch=batch)
    ingest = bench.ingest(order_records(count, inputs["groups"], bench.stream_arn, order))
    standin.take()
    try:
        run = bench.relay(count)
    except ClientError as exc:  # an emulator's failure is a finding too (moto's TransactWriteItems, 500)
        error = str(exc).split("\n", 1)[0][:200]  # its first line: an emulator may answer a page of HTML
        log(f"  {order}, {workers} workers, batch {batch:2d}: failed: {error}")
        return {"error": error}
    api_requests, api_items = standin.take()
    kept = ("delivered", "seconds", "throughput_msgs_per_s", "drain_cpu_ms_per_message")
    read = (
        "emulator_cpu_ms_per_message",
        "standin_api_cpu_ms_per_message",
        "cores_busy",
        "machine_busy_share",
    )
    figures = (
        {key: run[key] for key in kept}
        | {key: run.get(key) for key in read}
        | {
            "api_requests": api_requests,
            "api_items": api_items,
            "aws_requests": sum(run["requests_by_api"].values()),
            "ingest_aws_requests": sum(requests_only(ingest["requests"]).values()),
            "requests_by_api": run["requests_by_api"],
        }
    )
    log(
        f"  {order}, {workers} workers, batch {batch:2d}: {figures['throughput_msgs_per_s']:7.1f} msg/s,"
        f" {api_requests} requests, {api_items} items; CPU ms/msg drain"
        f" {_cell(figures['drain_cpu_ms_per_message'])},"
        f" emulator {_cell(figures['emulator_cpu_ms_per_message'])},"
        f" stand-in {_cell(figures['standin_api_cpu_ms_per_message'])}; {_cell(figures['cores_busy'])}"
        f" cores busy, machine {_cell(figures['machine_busy_share'])}"
    )
    return figures


def bulk_section(bench: Bench, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """At each worker count, each write order's each batch size in turns (`bulk_turns`), the order
    flipped each round so none always runs first on a busy machine; each one's runs pooled (messages
    over seconds), and the goals judged in each write order against its own single-item relay."""
    standin = bench.bulk_standin()
    orders: tuple[WriteOrder, ...] = inputs["write_orders"]
    out: dict[str, Any] = {
        "inputs": {
            "messages": inputs["messages"],
            "groups": inputs["groups"],
            "api_latency_ms": API_LATENCY_S * 1000,
            "rounds": inputs["bulk_rounds"],
            "batches": list(BULK_BATCHES),
            "write_orders": list(orders),
            "bulk_path": standin.bulk.path,
            **BULK_VARIABLES,
        },
        "orders": {order: {} for order in orders},
    }
    for workers in BULK_WORKERS:
        runs: dict[tuple[WriteOrder, int], list[dict[str, Any]]] = {
            (order, batch): [] for order in orders for batch in BULK_BATCHES
        }
        for n in range(inputs["bulk_rounds"]):
            for order, batch in bulk_turns(n, orders, BULK_BATCHES):
                runs[order, batch].append(bulk_run(bench, inputs, workers, standin, batch, order))
        for order in orders:
            out["orders"][order][f"workers_{workers}"] = {
                f"batch_{batch}": bulk_pooled(runs[order, batch]) for batch in BULK_BATCHES
            }
    for section in out["orders"].values():
        figures = bulk_goal_figures(section)
        section["goals"] = {
            goal.key: {
                "label": goal.label,
                "target": goal.text,
                "value": figures[goal.key],
                "met": goal.holds(figures[goal.key]),
            }
            for goal in BULK_GOALS
        }
    return out


def run_emulator(
    name: EmulatorName,
    inputs: Mapping[str, Any],
    calls: Calls,
    model: LatencyModel | None,
    sections: tuple[str, ...] = SECTIONS,
    quick: bool = False,
    orders: tuple[WriteOrder, ...] = WRITE_ORDERS,
) -> dict[str, Any]:
    log(f"{name}:")
    bench = Bench(name, API_LATENCY_S, calls)
    out: dict[str, Any] = {}
    try:
        if "relay" in sections:
            out |= relay_sections(bench, inputs, model)
        if "auth" in sections:
            log("  auth (API key beside OAuth2 + signing):")
            rounds = 1 if quick else 3  # on a shared machine one run at 16 workers varies by a fifth
            out["auth"] = auth_section(bench, {**inputs, "auth_rounds": rounds})
        if "bulk" in sections:
            log(
                f"  bulk (batches of 10 and 50 beside the single-item relay, written {' and '.join(orders)}):"
            )
            out["bulk"] = bulk_section(
                bench, {**inputs, "bulk_rounds": 1 if quick else 3, "write_orders": orders}
            )
        if "archive" in sections:
            log("  archive (the drain with the delivered archive beside without it):")
            passes = {"archive_rounds": 1 if quick else 3, "writer_repeat": 5 if quick else 10}
            out["archive"] = archive_section(bench, {**inputs, **passes})
        if "replay" in sections:
            log("  replay (10,000 messages from the delivered archive, then delivered):")
            out["replay"] = replay_section(bench, {**inputs, "replay_messages": 1000 if quick else 10_000})
        if "backfill" in sections:
            log("  backfill (queueing at 1, 4 and 8 segments; delivery beside live items):")
            out["backfill"] = backfill_section(bench, inputs)
    finally:
        bench.stop()
    return out


def relay_sections(bench: Bench, inputs: Mapping[str, Any], model: LatencyModel | None) -> dict[str, Any]:
    """The harness ceiling, the relay beside the seed design (and under the AWS model), the backlog."""
    probes = {
        w: harness_ceiling(bench.api_url, API_KEY, w, inputs["ceiling_requests"], bench.api_pid)
        for w in WORKERS
    }
    for w, probe in probes.items():
        log(f"  harness ceiling, {w:2d} workers: {probe['throughput_msgs_per_s']:7.1f} msg/s")
    ceilings = {w: probe["throughput_msgs_per_s"] for w, probe in probes.items()}
    out: dict[str, Any] = {
        "harness_ceiling": {f"workers_{w}": probe for w, probe in probes.items()},
        "runs": {"emulator": suite(bench, inputs, ceilings)},
    }
    if model is not None:
        log(f"  with the AWS round-trip model {model.describe()}:")
        bench.model = model
        out["runs"]["aws_model"] = suite(bench, inputs, ceilings)
        bench.model = None
        out["aws_latency_ms"] = model.describe()
    out["scaling"] = scaling(bench, inputs)
    return out


def import_times(modules: dict[str, Path], env: dict[str, str], runs: int = 11) -> dict[str, float]:
    """Median import time (ms) of each module in a fresh interpreter. Runs alternate between the
    modules so a busy or idle moment on the machine falls on both alike."""
    samples: dict[str, list[float]] = {module: [] for module in modules}
    for _ in range(runs):
        for module, module_dir in modules.items():
            code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
            result = subprocess.run(
                [sys.executable, "-c", code],
                cwd=module_dir,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            samples[module].append(float(result.stdout))
    return {module: round(statistics.median(times) * 1000, 1) for module, times in samples.items()}


def cold_start_and_package(runs: int) -> dict[str, Any]:
    # prod is a template stage: its resource names come from the stack, placeholders stand in here
    placeholders = packaging_env(stage.stage_env("prod"))
    env = {**os.environ, **placeholders, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        minimal = Path(tmp) / "minimal_app.py"
        minimal.write_text(
            "import boto3, urllib3\nfrom aws_lambda_powertools.metrics import Metrics\n"
            "from aws_lambda_powertools.logging import Logger\n"
            "from chalice import Chalice\napp = Chalice(app_name='minimal')\n"
        )
        times = import_times({"app": ROOT, "minimal_app": Path(tmp)}, env, runs)
        out = Path(tmp) / "pkg"
        subprocess.run(
            [str(Path(sys.executable).parent / "chalice"), "package", "--stage", "prod", str(out)],
            cwd=ROOT,
            env={**os.environ, **placeholders, "AWS_DEFAULT_REGION": "us-east-1"},
            check=True,
            capture_output=True,
        )
        size = (out / "deployment.zip").stat().st_size
    return {
        "import_app_ms": times["app"],
        "import_minimal_app_ms": times["minimal_app"],
        "package_bytes": size,
    }


def previous(path: Path, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """An earlier run's results if it had the same inputs: a run on one emulator, or of one section,
    keeps the others'."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("inputs") != dict(inputs):
        return {}
    if not isinstance(earlier.get("emulators"), dict):
        return {}
    return earlier


def _segment_counts(text: str) -> tuple[int, ...]:
    """`--segments`: distinct counts of 1 to MAX_PARTS, comma-separated."""
    try:
        counts = tuple(dict.fromkeys(int(part) for part in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not counts or not all(1 <= n <= MAX_PARTS for n in counts):
        raise argparse.ArgumentTypeError(f"segment counts are 1 to {MAX_PARTS}: {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller inputs, about a minute")
    parser.add_argument("--emulator", choices=[*EMULATORS, "both"], default="both")
    parser.add_argument(
        "--aws-latency",
        nargs="?",
        const="",
        default=None,
        metavar="OVERRIDES",
        help="also run the relay section with the AWS round-trip model; optional NAME=MS,... overrides",
    )
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        help="one section: relay (throughput, requests, cost, ingest, backlog, import), auth"
        " (token requests, API key beside OAuth2 + signing) or bulk (batches to a bulk endpoint beside"
        " the single-item relay) or archive (the delivered archive's cost per million, its drain CPU)"
        " or replay (10,000 messages from the archive back to the queue, then delivered) or backfill"
        " (queueing, delivery, pacing and live items' delay; on ministack only unless --emulator moto)",
    )
    parser.add_argument(
        "--write-order",
        choices=[*WRITE_ORDERS, "both"],
        default="both",
        help="the bulk section's backlog: each group's orders written interleaved with the others',"
        " grouped (each group's one after another), or both side by side (the default)",
    )
    parser.add_argument(
        "--items",
        type=int,
        default=None,
        metavar="N",
        help=f"the backfill section's table for queueing with nothing pacing it, items (default"
        f" {DEFAULT_ITEMS:,}; --quick 5,000)",
    )
    parser.add_argument(
        "--delivery-items",
        type=int,
        default=None,
        metavar="N",
        help=f"the backfill section's table for delivery beside live items at each segment count, paced"
        f" as deployed (default {DELIVERY_ITEMS:,}; --quick 1,000); the run at app.py's scheduled"
        f" default takes at most {DELIVERY_ITEMS:,}, the run under a schedule {SCHEDULED_ITEMS:,}",
    )
    parser.add_argument(
        "--segments",
        type=_segment_counts,
        default=None,
        metavar="N,N,...",
        help=f"the backfill section's segment counts for queueing and delivery (default"
        f" {','.join(map(str, SEGMENTS))})",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    try:
        model = None if args.aws_latency is None else LatencyModel().with_overrides(args.aws_latency)
    except ValueError as exc:
        parser.error(str(exc))
    sections: tuple[str, ...] = SECTIONS if args.only is None else (args.only,)
    for flag, value in (("--items", args.items), ("--delivery-items", args.delivery_items)):
        if value is not None and not 1 <= value <= 1_000_000:
            parser.error(f"{flag} must be from 1 to 1,000,000")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # the handlers' EMF lines would flood the table
    use_local_credentials()
    boto3.setup_default_session()
    calls = Calls()
    calls.register(boto3.DEFAULT_SESSION.events)  # type: ignore[union-attr]
    quick = args.quick
    orders: tuple[WriteOrder, ...] = WRITE_ORDERS if args.write_order == "both" else (args.write_order,)
    inputs = {
        "messages": 200 if quick else 1000,
        "groups": 20 if quick else 50,
        "api_latency_ms": API_LATENCY_S * 1000,
        "scales": [100, 300] if quick else [100, 1000, 5000],
        "ingest_records": 500 if quick else 1000,
        "ingest_batch": 100,
        "ceiling_requests": 25 if quick else 100,
        "import_runs": 5 if quick else 11,
        "quick": quick,
    }
    # the backfill section's own, kept apart so a section's results match the others' inputs
    backfill_inputs = {
        "backfill_items": args.items or (5_000 if quick else DEFAULT_ITEMS),
        "delivery_items": args.delivery_items or (1_000 if quick else DELIVERY_ITEMS),
        "scheduled_items": 300 if quick else SCHEDULED_ITEMS,
        "segments": list(args.segments or SEGMENTS),
    }
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    names: list[EmulatorName] = list(EMULATORS) if args.emulator == "both" else [args.emulator]
    earlier = previous(args.out, inputs)
    results: dict[str, Any] = {
        "command": command,
        "machine": machine,
        # without the relay section, its command, machine and import figures are the earlier run's
        **(
            {k: earlier[k] for k in ("command", "machine", "lambda") if k in earlier}
            if "relay" not in sections
            else {}
        ),
        "inputs": inputs,
        "emulators": dict(earlier.get("emulators", {})),
    }
    for name in names:
        # the backfill section runs on ministack (the emulator) unless moto is asked for alone
        only = tuple(s for s in sections if s != "backfill" or name == "ministack" or len(names) == 1)
        ran = run_emulator(name, {**inputs, **backfill_inputs}, calls, model, only, quick, orders)
        for section in ("auth", "bulk", "archive", "replay", "backfill"):
            if section in ran:
                ran[section] |= {"command": command, "machine": machine}
        results["emulators"][name] = {**results["emulators"].get(name, {}), **ran}
    if "relay" in sections:
        results["lambda"] = cold_start_and_package(inputs["import_runs"])
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results, sections))
    return 0


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(_cell(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows
    ]
    return lines


RUN_LABELS = {
    "workers_1": "relay, 1 worker",
    "workers_4": "relay, 4 workers",
    "workers_16": "relay, 16 workers",
    "rate_limited": f"relay, 16 workers, limit {RATE_LIMITED_PER_S}/s",
}


def render(results: Mapping[str, Any], sections: tuple[str, ...] = SECTIONS) -> str:
    """The results as markdown: the relay section (the goals for every emulator side by side, then
    each emulator's tables), then the auth section of each emulator that has one."""
    out = render_relay(results) if "relay" in sections else []
    auth = {n: em["auth"] for n, em in results["emulators"].items() if "auth" in em}
    if "auth" in sections:
        for name, section in auth.items():
            out += [*([""] if out else []), *render_auth(name, section)]
    bulk = {n: em["bulk"] for n, em in results["emulators"].items() if "bulk" in em}
    if "bulk" in sections and bulk:
        out += [*([""] if out else []), *render_bulk(bulk)]
    if "archive" in sections:
        for name, em in results["emulators"].items():
            if "archive" in em:
                out += [*([""] if out else []), *render_archive(name, em["archive"])]
    if "replay" in sections:
        for name, em in results["emulators"].items():
            if "replay" in em:
                out += [*([""] if out else []), *render_replay(name, em["replay"])]
    if "backfill" in sections:
        for name, em in results["emulators"].items():
            if "backfill" in em:
                out += [*([""] if out else []), *render_backfill(name, em["backfill"])]
    return "\n".join(out)


def render_bulk(sections: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The bulk goals for every emulator and write order side by side, then each emulator's table,
    its write orders one after the other."""
    first = next(iter(sections.values()))
    inputs, machine = first["inputs"], first.get("machine", {})
    rounds = inputs["rounds"]
    runs = (
        f"{rounds} runs of each, in turns, the order flipped each round, pooled (in brackets the slowest"
        " and fastest run)"
        if rounds > 1
        else "one run of each"
    )
    out = [
        "### Bulk delivery (issue 25): batches beside the single-item relay",
        "",
        f"`{first.get('command', 'python -m bench --only bulk')}` on {machine.get('cpus', '?')} CPUs:"
        f" {inputs['messages']:,} messages over {inputs['groups']} groups per run, API latency"
        f" {inputs['api_latency_ms']:g} ms per request; batch 1 is the single-item relay"
        f" (batch_max_items = 1, one message per request to the plain endpoint), batches of more go to"
        f" {inputs['bulk_path']} (batch_wrapper {inputs['batch_wrapper']!r}, batch_results"
        f" {inputs['batch_results']!r}); {runs}. Write order: how the backlog went into the stream,"
        " interleaved (one group after another) or grouped (each group's messages one after another);"
        " each order's ratios are to its own single-item relay.",
        "",
    ]
    columns = {
        f"{name}, {order}": runs
        for name, section in sections.items()
        for order, runs in write_orders(section).items()
    }
    out += _table(["Goal (issue 25)", "target", *columns], bulk_goal_rows(columns))
    header = [
        "write order",
        "workers",
        "batch",
        "msg/s",
        "x single-item",
        "API requests",
        "items per request",
        "AWS req/msg (drain)",
        "AWS req/msg (ingest + drain)",
        "drain CPU ms/msg",
        "emulator CPU ms/msg",
        "stand-in CPU ms/msg",
        f"cores busy (drain + emulator + stand-in, of {machine.get('cpus', '?')})",
        "machine busy (all processes)",
    ]
    for name, section in sections.items():
        orders = write_orders(section)
        rows = [[order, *row] for order, runs in orders.items() for row in bulk_rows(runs)]
        out += ["", f"{name}:", "", *_table(header, rows)]
        errors = [f"{order}, {error}" for order, runs in orders.items() for error in bulk_errors(runs)]
        if errors:
            out += ["", "Runs that failed (not pooled):", *(f"- {error}" for error in errors)]
    return out


def render_auth(name: str, section: Mapping[str, Any]) -> list[str]:
    """Token requests per 1,000 messages, then throughput with OAuth2 + signing beside the API key."""
    inputs = section["inputs"]
    machine = section.get("machine", {})
    rounds, lifetimes = inputs["rounds"], inputs["token_lifetime_s"]
    out = [
        f"### Auth ({name}): API key beside OAuth2 + signing (issue 24)",
        "",
        f"`{section.get('command', 'python -m bench --only auth')}` on {machine.get('cpus', '?')} CPUs:"
        f" {inputs['messages']:,} messages over {inputs['groups']} groups per run, API latency"
        f" {inputs['api_latency_ms']:g} ms; token_refresh_skew_s {inputs['token_refresh_skew_s']}"
        " (at most half a token's lifetime). Each run starts a fresh container, without a token.",
        "",
    ]
    out += _table(
        [
            "Token lifetime",
            "workers",
            "messages",
            "token requests",
            "per 1,000 messages",
            "at most (one per refresh)",
            "refused (401)",
        ],
        token_rows(section),
    )
    runs = (
        f"{rounds} runs of each, in turns, the order flipped each round, pooled (in brackets the slowest"
        " and fastest run)"
        if rounds > 1
        else "one run of each"
    )
    out += [
        "",
        f"Throughput, msg/s: the API key and OAuth2 + signing (tokens of {lifetimes['oauth2_signing']:g} s)"
        f" {runs}; tokens of {lifetimes['oauth2_signing_short']:g} s: one run. Goal: OAuth2 + signing"
        f" within {AUTH_GOAL:.0%} of the API key at the same worker count.",
        "",
    ]
    out += _table(
        [
            "workers",
            AUTH_RUNS["api_key"],
            AUTH_RUNS["oauth2_signing"],
            "ratio",
            AUTH_RUNS["oauth2_signing_short"],
            "ratio",
            "drain CPU ms/msg (key / OAuth2)",
            "stand-in CPU ms/msg (key / OAuth2)",
        ],
        auth_throughput_rows(section),
    )
    return out


def render_relay(results: Mapping[str, Any]) -> list[str]:
    """The goals for every emulator side by side, then each emulator's tables."""
    emulators: Mapping[str, Any] = {n: em for n, em in results["emulators"].items() if "runs" in em}
    lam = results.get("lambda")
    inputs = results["inputs"]
    out = [
        f"`{results.get('command', 'python -m bench')}` on {results['machine']['cpus']} CPUs"
        f" ({results['machine']['platform']}, Python {results['machine']['python']}):"
        f" {inputs['messages']:,} messages over {inputs['groups']} groups, API latency"
        f" {inputs['api_latency_ms']:g} ms.",
        "",
    ]
    names = list(emulators)
    rows = goal_rows(emulators, lam)
    out += _table(["Goal (issue 17)", "target", *names], rows)
    for n in names:
        em = emulators[n]
        out += ["", f"### {n}", ""]
        for variant, runs in em["runs"].items():
            relay, base = runs["relay"], runs["baseline"]
            out.append(f"Drain, {VARIANTS.get(variant, variant)}:")
            out.append("")
            rows = []
            for key, run in relay.items():
                rows.append(
                    [
                        RUN_LABELS.get(key, key),
                        f"{run['throughput_msgs_per_s']:.1f}",
                        f"{run['bound_msgs_per_s']:g}",
                        f"{run['share_of_bound']:.2f}",
                        f"{run['harness_ceiling_msgs_per_s']:.0f}",
                        f"{run['share_of_ceiling']:.2f}",
                        f"{run['ratio_vs_baseline']:.2f}",
                        f"{run['requests_per_message']:.2f}",
                        f"{run['usd_per_million']:.2f}",
                        f"{run['drain_cpu_ms_per_message']:.2f}",
                        run.get("emulator_cpu_ms_per_message"),
                        run.get("standin_api_cpu_ms_per_message"),
                        f"{run['aws_wait_share']:.2f}",
                        run.get("aws_ms_per_call"),
                    ]
                )
            rows.append(
                [
                    "seed design",
                    f"{base['throughput_msgs_per_s']:.1f}",
                    "-",
                    "-",
                    "-",
                    "-",
                    "1.00",
                    f"{base['requests_per_message']:.2f}",
                    f"{base['usd_per_million']:.2f}",
                    f"{base['drain_cpu_ms_per_message']:.2f}",
                    base.get("emulator_cpu_ms_per_message"),
                    base.get("standin_api_cpu_ms_per_message"),
                    f"{base['aws_wait_share']:.2f}",
                    base.get("aws_ms_per_call"),
                ]
            )
            header = [
                "Run",
                "msg/s",
                "bound",
                "share of bound",
                "harness ceiling",
                "share of ceiling",
                "x seed",
                "AWS req/msg (ingest + drain)",
                "USD/M",
                "drain CPU ms/msg",
                f"{n} CPU ms/msg",
                "stand-in CPU ms/msg",
                "AWS wait share",
                "ms per AWS call",
            ]
            out += [*_table(header, rows), ""]
            ingest = runs["ingest"]
            out += _table(
                ["Ingest, batches of 100 mixed records", "records/s", "AWS requests per record"],
                [
                    [
                        f"{label} ({variant})",
                        f"{ingest[k]['records_per_s']:.0f}",
                        ingest[k]["aws_requests_per_record"],
                    ]
                    for k, label in (("relay", "relay"), ("seed", "seed design"))
                ],
            )
            out += [""]
            four = relay.get("workers_4")
            if four:
                by_api = four["requests_per_message_by_api"]
                out.append(f"Requests per delivered message by API, 4 workers: {by_api};")
                out.append(f"seed design: {base['requests_per_message_by_api']}.")
                out.append("")
        ceiling = em["harness_ceiling"]
        out.append(
            "Harness ceiling (http.client workers POSTing to the stand-in, no relay, no AWS): "
            + ", ".join(
                f"{p['workers']} workers {p['throughput_msgs_per_s']:.0f} msg/s"
                f" (p50 {p['latency_ms_p50']} ms)"
                for p in ceiling.values()
            )
            + "."
        )
        scale = em["scaling"]
        out += ["", f"Backlog, {scale['workers']} workers ({n}):", ""]
        out += _table(
            ["Backlog", "msg/s", "AWS req/msg (drain)", f"{n} CPU ms/msg", "AWS wait share"],
            [
                [
                    f"{int(size):,}",
                    f"{run['throughput_msgs_per_s']:.1f}",
                    f"{run['aws_requests_per_message']:.2f}",
                    run.get("emulator_cpu_ms_per_message"),
                    f"{run['aws_wait_share']:.2f}",
                ]
                for size, run in scale["runs"].items()
            ],
        )
        out.append(
            f"Throughput spread across backlogs: {scale['throughput_spread']:.0%} (slowest below fastest)."
        )
        if "aws_latency_ms" in em:
            out.append(f"AWS round-trip model, ms per call: {em['aws_latency_ms']}.")
    if lam:
        out += [
            "",
            f"`import app`: {lam['import_app_ms']} ms; a minimal Chalice app importing the same libraries:"
            f" {lam['import_minimal_app_ms']} ms (median of {inputs.get('import_runs', 11)} each,"
            f" alternating). Deployment package: {lam['package_bytes'] / 1e6:.2f} MB.",
        ]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
