"""`python -m bench [--quick] [--emulator moto|ministack|both] [--aws-latency [OVERRIDES]]`: Trickle's
relay against the literal seed design it grew from, on each emulator, in the same run: drain
throughput at 1, 4 and 16 workers and at 16 under a 100/s rate limit, each beside its bound
min(rate, W / L) and the harness's own ceiling; AWS requests and dollars per message (ingest + drain);
the CPU per message of the drain, the emulator and the stand-in API (from /proc); ingest records per
second and requests per record for Lambda batches of 100 mixed stream records; throughput as the
backlog grows; `import app` time and the deployment package. Prints markdown tables and writes
bench/results.json (a run on one emulator keeps the other's results). Reports figures; asserts nothing.

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

from bench.figures import (
    LatencyModel,
    add,
    bound,
    cost_per_million,
    goal_rows,
    per_message,
    requests_only,
    share,
    spread,
)
from bench.harness import API_KEY, ROOT, UNLIMITED, Bench, Calls, harness_ceiling
from bench.stream import mixed_records, order_records
from trickle_local.emulators import EMULATORS, EmulatorName
from trickle_local.endpoint import use_local_credentials
from trickle_project import stage
from trickle_project.stage import packaging_env

RATE_LIMITED_PER_S = 100
WORKERS = (1, 4, 16)
API_LATENCY_S = 0.02
DRAIN_BUDGET_PER_INVOCATION = 500  # messages a scheduled drain takes per Lambda invocation, for the bill
VARIANTS = {"emulator": "on the emulator as is", "aws_model": "with the AWS round-trip model"}


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


def run_emulator(
    name: EmulatorName, inputs: Mapping[str, Any], calls: Calls, model: LatencyModel | None
) -> dict[str, Any]:
    log(f"{name}:")
    bench = Bench(name, API_LATENCY_S, calls)
    try:
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
    finally:
        bench.stop()
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
    """The other emulators' results of an earlier run with the same inputs (a run on one keeps them)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("inputs") != dict(inputs):
        return {}
    emulators = earlier.get("emulators")
    return dict(emulators) if isinstance(emulators, dict) else {}


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
        help="also run with the AWS round-trip model; optional NAME=MS,... overrides (sqs=30)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    try:
        model = None if args.aws_latency is None else LatencyModel().with_overrides(args.aws_latency)
    except ValueError as exc:
        parser.error(str(exc))
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # the handlers' EMF lines would flood the table
    use_local_credentials()
    boto3.setup_default_session()
    calls = Calls()
    calls.register(boto3.DEFAULT_SESSION.events)  # type: ignore[union-attr]
    quick = args.quick
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
    names: list[EmulatorName] = list(EMULATORS) if args.emulator == "both" else [args.emulator]
    results: dict[str, Any] = {
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "inputs": inputs,
        "emulators": previous(args.out, inputs),
    }
    for name in names:
        results["emulators"][name] = run_emulator(name, inputs, calls, model)
    results["lambda"] = cold_start_and_package(inputs["import_runs"])
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
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


def render(results: Mapping[str, Any]) -> str:
    """The run as markdown: the goals for every emulator side by side, then each emulator's tables."""
    emulators: Mapping[str, Any] = results["emulators"]
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
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
