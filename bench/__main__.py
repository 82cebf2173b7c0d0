"""`python -m bench [--quick]`: throughput, AWS requests per message, parallel groups, cold start,
package size and cost, for Trickle's drain against the seed design it grew from. Prints a table and
writes bench/results.json. Reports figures; asserts nothing.

Everything runs on loopback: moto's server (with the local runtime's clock patch) and the stand-in
API with a fixed latency. Absolute figures are the emulator's; the ratios are the point.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import requests

from chalicelib import wiring
from chalicelib.records import build_messages
from trickle_deploy.bootstrap import provision
from trickle_deploy.policies import packaging_env
from trickle_local import stage
from trickle_local.endpoint import clients, free_port, use_local_credentials

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
ROUTES_FILE = Path(__file__).with_name("routes.toml")
# Public us-east-1 prices (USD), checked 2026: SQS FIFO $0.50 per million requests; DynamoDB on-demand
# $0.625 per million write units and $0.125 per million read units (items here are under 1 KB, and
# the ledger's reads are strongly consistent: one unit each, batched or not); Lambda $0.20 per million
# requests and $0.0000166667 per GB-second; SSM standard-throughput GetParameter has no charge, but
# reading a SecureString makes SSM call KMS Decrypt on the account's behalf at $0.03 per 10,000.
PRICE = {
    "sqs": 0.50e-6,
    "ddb_write": 0.625e-6,
    "ddb_read": 0.125e-6,
    "kms_request": 0.03e-4,
    "lambda_request": 0.20e-6,
    "gb_s": 0.0000166667,
}
BATCH_OPERATIONS = ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem")
LAMBDA_GB = 0.125
UNLIMITED = 10_000  # requests per second: no rate limit within reach of the stand-in
RATE_LIMITED_PER_S = 100


class Calls:
    """Every AWS request the process makes, by operation, the items its DynamoDB batch calls carry
    (they are billed per item, not per call), and the time spent waiting on them."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.seconds = 0.0
        self._local = threading.local()
        self._lock = threading.Lock()

    def register(self, events: Any) -> None:
        events.register("before-call.*.*", self._before)
        for operation in BATCH_OPERATIONS:
            events.register(f"provide-client-params.{operation.replace(':', '.')}", self._items)
        events.register("after-call.*.*", self._after)

    def _before(self, model: Any, **_: Any) -> None:
        self._local.started = time.perf_counter()
        with self._lock:
            self.counts[f"{model.service_model.service_name}:{model.name}"] += 1

    def _items(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[f"dynamodb:{model.name}/items"] += batch_items(params)

    def _after(self, **_: Any) -> None:
        elapsed = time.perf_counter() - getattr(self._local, "started", time.perf_counter())
        with self._lock:
            self.seconds += elapsed

    def take(self) -> tuple[Counter[str], float]:
        with self._lock:
            counts, seconds = self.counts, self.seconds
            self.counts, self.seconds = Counter(), 0.0
        return counts, seconds


def batch_items(params: dict[str, Any]) -> int:
    """Items in a BatchGetItem or BatchWriteItem request."""
    return sum(
        len(request["Keys"]) if isinstance(request, dict) else len(request)
        for request in params.get("RequestItems", {}).values()
    )


def requests_only(counts: dict[str, int]) -> dict[str, int]:
    return {op: n for op, n in counts.items() if not op.endswith("/items")}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of another process (Linux /proc), to separate the emulator's own cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SERVE = {
    "aws": "from trickle_local.endpoint import MotoEndpoint\nMotoEndpoint(port={port}).start()\n",
    "api": (
        "from trickle_local.standin_api import Faults, StandInApi\n"
        "StandInApi(Faults(latency_s={latency}, api_key='{key}'), port={port}).start()\n"
    ),
}


def serve(kind: str, **values: Any) -> tuple[subprocess.Popen[bytes], str]:
    """Each server in a process of its own, so neither competes with the drain for the GIL."""
    port = free_port()
    code = SERVE[kind].format(port=port, **values) + "import time\nwhile True: time.sleep(3600)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url, timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"the {kind} server did not start")


class Bench:
    def __init__(self, latency_s: float) -> None:
        use_local_credentials()
        boto3.setup_default_session()
        self.calls = Calls()
        self.calls.register(boto3.DEFAULT_SESSION.events)  # type: ignore[union-attr]
        self._aws, self.aws_url = serve("aws")
        self._api, self.api_url = serve("api", latency=latency_s, key=API_KEY)
        self.base = stage.rebase(
            stage.stage_env("local"), self.aws_url, {"orders": self.api_url + "/items"}
        ) | {
            "TRICKLE_ROUTES_FILE": str(ROUTES_FILE),
            "TRICKLE_LOG_LEVEL": "ERROR",
            "TRICKLE_DRAIN_BUDGET": "100000",
            "TRICKLE_AUTH": "iam",
            "TRICKLE_ARCHIVE_BUCKET": "",
        }
        self.env: dict[str, str] = {}

    def reset(self, workers: int = 1, rate_limit_per_s: int = UNLIMITED) -> None:
        """A fresh account; a rate-limited run gets a burst of 10 so the limit, not the burst, shows."""
        requests.post(f"{self.aws_url}/moto-api/reset", timeout=10).raise_for_status()
        self.env = provision(clients(self.aws_url), self.base, API_KEY) | {
            "TRICKLE_DRAIN_WORKERS": str(workers),
            "TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": str(rate_limit_per_s),
            "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": str(min(100, rate_limit_per_s // 10)),
        }
        os.environ.update(self.env)
        wiring.reset()
        self.calls.take()

    def fill(self, count: int, groups: int, ledger: bool = True) -> dict[str, Any]:
        """The backlog from Lambda-shaped records: the relay's own ingest, or for the baseline the
        same messages queued without the ledger the seed design does not have."""
        records = [
            {
                "eventID": f"ev-{i}",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "dynamodb": {
                    "ApproximateCreationDateTime": time.time(),
                    "Keys": {"pk": {"S": f"g{i % groups:03d}"}, "sk": {"S": f"{i:06d}"}},
                    "NewImage": {
                        "pk": {"S": f"g{i % groups:03d}"},
                        "sk": {"S": f"{i:06d}"},
                        "n": {"N": str(i)},
                    },
                    "SequenceNumber": str(10**20 + i),
                },
            }
            for i in range(count)
        ]
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # see `relay`
            for start in range(0, count, 100):
                chunk = records[start : start + 100]
                if ledger:
                    wiring.ingestor().handle(chunk)
                else:
                    wiring.queue("orders").send(build_messages(chunk, wiring.settings()).messages)
        counts, aws_s = self.calls.take()
        return {"seconds": time.perf_counter() - started, "requests": dict(counts), "aws_seconds": aws_s}

    def relay(self, count: int) -> dict[str, Any]:
        self._mark()
        started = time.perf_counter()
        delivered = 0
        # Powertools prints an EMF line whenever a metric reaches 100 values, even with
        # POWERTOOLS_METRICS_DISABLED set (its overflow path skips the check): keep them off the table.
        with contextlib.redirect_stdout(io.StringIO()):
            while delivered < count:
                report = wiring.drainer("orders").run(lambda: 10**9)
                delivered += report.delivered
                if report.stopped_by == "empty" and not report.delivered:
                    break
        return self._result(delivered, time.perf_counter() - started)

    def baseline(self, count: int) -> dict[str, Any]:
        """The seed design, literally: receive one, read SSM, new connection, POST, delete one."""
        sqs = boto3.client("sqs", endpoint_url=self.aws_url)
        ssm = boto3.client("ssm", endpoint_url=self.aws_url)
        url, queue = self.env["TRICKLE_DEST_ORDERS_URL"], self.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]
        self.calls.take()
        self._mark()
        started = time.perf_counter()
        delivered = 0
        while True:
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1).get("Messages", [])
            if not messages:
                break
            key = ssm.get_parameter(Name=self.env["TRICKLE_DEST_ORDERS_KEY_PARAMETER"], WithDecryption=True)[
                "Parameter"
            ]["Value"]
            response = requests.post(url, data=messages[0]["Body"], headers={"x-api-key": key}, timeout=10)
            if response.status_code == 200:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=messages[0]["ReceiptHandle"])
                delivered += 1
        return self._result(delivered, time.perf_counter() - started)

    def _mark(self) -> None:
        self._cpu_marks = (time.process_time(), cpu_seconds(self._aws.pid), cpu_seconds(self._api.pid))

    def _result(self, delivered: int, seconds: float) -> dict[str, Any]:
        """Besides throughput and requests: CPU seconds spent by this process (the drain), by the
        emulator and by the stand-in API while it ran, so the emulator's own cost can be read apart."""
        counts, aws_s = self.calls.take()
        own, emulator, api = self._cpu_marks
        emulator_now, api_now = cpu_seconds(self._aws.pid), cpu_seconds(self._api.pid)
        per = 1000 / max(1, delivered)
        result: dict[str, Any] = {
            "delivered": delivered,
            "seconds": round(seconds, 3),
            "throughput_msgs_per_s": round(delivered / seconds, 2) if seconds else 0.0,
            "requests_by_api": dict(sorted(requests_only(counts).items())),
            "dynamodb_batch_items": {op: n for op, n in sorted(counts.items()) if op.endswith("/items")},
            "aws_requests_per_message": round(sum(requests_only(counts).values()) / max(1, delivered), 3),
            "aws_wait_seconds": round(aws_s, 3),
            # AWS calls are made by the run's main thread between rounds (the workers only POST), so
            # this is about the share of the run during which the workers had nothing to do.
            "aws_wait_share": round(aws_s / max(0.001, seconds), 3),
            "drain_cpu_ms_per_message": round((time.process_time() - own) * per, 2),
        }
        if emulator is not None and emulator_now is not None:
            result["emulator_cpu_ms_per_message"] = round((emulator_now - emulator) * per, 2)
            result["emulator_busy_share"] = round((emulator_now - emulator) / max(0.001, seconds), 3)
        if api is not None and api_now is not None:
            result["standin_api_cpu_ms_per_message"] = round((api_now - api) * per, 2)
        return result

    def stop(self) -> None:
        self._api.terminate()
        self._aws.terminate()


def per_message(requests_by_api: dict[str, int], delivered: int) -> dict[str, float]:
    groups = {
        "SendMessageBatch": ("sqs:SendMessageBatch", "sqs:SendMessage"),
        "ReceiveMessage": ("sqs:ReceiveMessage",),
        "DeleteMessageBatch": ("sqs:DeleteMessageBatch", "sqs:DeleteMessage"),
        "ChangeMessageVisibility": ("sqs:ChangeMessageVisibilityBatch", "sqs:ChangeMessageVisibility"),
        "GetQueueAttributes": ("sqs:GetQueueAttributes",),
        "SSM": ("ssm:GetParameter",),
        "DynamoDB": (
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
        ),
    }
    return {
        name: round(sum(requests_by_api.get(op, 0) for op in ops) / max(1, delivered), 3)
        for name, ops in groups.items()
    }


def cost_per_million(
    requests_by_api: dict[str, int], delivered: int, lambda_seconds: float, invocations: int
) -> float:
    """`requests_by_api` may carry `<op>/items` counts for DynamoDB batch calls, billed per item."""
    per = 1_000_000 / max(1, delivered)
    count = requests_by_api.get
    sqs = sum(n for op, n in requests_by_api.items() if op.startswith("sqs:")) * PRICE["sqs"]
    write_units = count("dynamodb:PutItem", 0) + count("dynamodb:UpdateItem", 0)
    write_units += count("dynamodb:BatchWriteItem/items", 0)
    read_units = count("dynamodb:GetItem", 0) + count("dynamodb:BatchGetItem/items", 0)
    dynamodb = write_units * PRICE["ddb_write"] + read_units * PRICE["ddb_read"]
    kms = count("ssm:GetParameter", 0) * PRICE["kms_request"]
    compute = lambda_seconds * LAMBDA_GB * PRICE["gb_s"] + invocations * PRICE["lambda_request"]
    return round((sqs + dynamodb + kms + compute) * per, 2)


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


def cold_start_and_package() -> dict[str, Any]:
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
        times = import_times({"app": ROOT, "minimal_app": Path(tmp)}, env)
        app_ms, minimal_ms = times["app"], times["minimal_app"]
        out = Path(tmp) / "pkg"
        subprocess.run(
            [str(Path(sys.executable).parent / "chalice"), "package", "--stage", "prod", str(out)],
            cwd=ROOT,
            env={**os.environ, **placeholders, "AWS_DEFAULT_REGION": "us-east-1"},
            check=True,
            capture_output=True,
        )
        size = (out / "deployment.zip").stat().st_size
    return {"import_app_ms": app_ms, "import_minimal_app_ms": minimal_ms, "package_bytes": size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, about a minute")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # the handlers' EMF lines would flood the table
    count, groups = (200, 20) if args.quick else (1000, 50)
    scales = (100, 300) if args.quick else (100, 1000, 5000)
    latency = 0.02
    bench = Bench(latency)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "inputs": {
            "messages": count,
            "groups": groups,
            "api_latency_ms": latency * 1000,
            "quick": args.quick,
        },
        "relay": {},
    }
    try:
        for workers in (1, 4, 16):
            results["relay"][f"workers_{workers}"] = relay_run(bench, count, groups, workers, latency)
        rate = RATE_LIMITED_PER_S
        results["rate_limited"] = relay_run(bench, count, groups, 16, latency, rate)
        bench.reset(1)
        ingest = bench.fill(count, groups, ledger=False)
        base = bench.baseline(count)
        billed = _add(ingest["requests"], base["requests_by_api"])
        base["requests_per_message_by_api"] = per_message(billed, count)
        base["usd_per_million"] = cost_per_million(billed, count, base["seconds"], count)
        results["baseline"] = base
        print(f"baseline:              {base['throughput_msgs_per_s']:8.1f} msg/s", file=sys.stderr)
        for run in [*results["relay"].values(), results["rate_limited"]]:
            run["ratio_vs_baseline"] = round(
                run["throughput_msgs_per_s"] / max(0.001, base["throughput_msgs_per_s"]), 2
            )
        results["scaling"] = {}
        for size in scales:
            bench.reset(4)
            bench.fill(size, groups)
            run = bench.relay(size)
            results["scaling"][str(size)] = run
            print(f"scaling {size:5d}:         {run['throughput_msgs_per_s']:8.1f} msg/s", file=sys.stderr)
    finally:
        bench.stop()
    results["lambda"] = cold_start_and_package()
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


def relay_run(
    bench: Bench, count: int, groups: int, workers: int, latency_s: float, rate: int = UNLIMITED
) -> dict[str, Any]:
    """One relay drain of a fresh backlog, with the bound it should approach: min(rate, W / L)."""
    bench.reset(workers, rate)
    ingest = bench.fill(count, groups)
    run = bench.relay(count)
    billed = _add(ingest["requests"], run["requests_by_api"], run["dynamodb_batch_items"])
    run["workers"] = workers
    run["rate_limit_per_s"] = rate
    run["ingest_requests_per_message"] = round(sum(requests_only(ingest["requests"]).values()) / count, 3)
    run["requests_per_message_by_api"] = per_message(billed, count)
    run["usd_per_million"] = cost_per_million(billed, count, run["seconds"], 1 + count // 500)
    run["bound_msgs_per_s"] = round(min(rate, workers / latency_s), 1)
    run["share_of_bound"] = round(run["throughput_msgs_per_s"] / run["bound_msgs_per_s"], 3)
    limit = f", rate limit {rate}/s" if rate != UNLIMITED else ""
    print(
        f"relay, {workers:2d} workers{limit}: {run['throughput_msgs_per_s']:8.1f} msg/s"
        f" (bound {run['bound_msgs_per_s']})",
        file=sys.stderr,
    )
    return run


def _add(*counts: dict[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)


def print_table(results: dict[str, Any]) -> None:
    base = results["baseline"]
    runs = [*results["relay"].items(), ("rate_limited", results["rate_limited"])]
    header = f"\n{'run':<14}{'msg/s':>9}{'bound':>8}{'x base':>8}{'AWS req/msg':>13}{'$/M msgs':>10}"
    print(header + f"{'AWS wait':>10}{'drain CPU ms/msg':>18}{'moto CPU ms/msg':>17}{'moto busy':>11}")
    for name, run in [*runs, ("baseline", base)]:
        bound = f"{run['bound_msgs_per_s']:>8.0f}" if "bound_msgs_per_s" in run else f"{'-':>8}"
        print(
            f"{name:<14}{run['throughput_msgs_per_s']:>9.1f}{bound}{run.get('ratio_vs_baseline', 1):>8.2f}"
            f"{sum(run['requests_per_message_by_api'].values()):>13.2f}{run['usd_per_million']:>10.2f}"
            f"{run['aws_wait_share']:>10.2f}{run['drain_cpu_ms_per_message']:>18.2f}"
            f"{run.get('emulator_cpu_ms_per_message', 0):>17.2f}{run.get('emulator_busy_share', 0):>11.2f}"
        )
    print("\nrequests per delivered message, by API (ingest + drain):")
    for name, run in [*runs, ("baseline", base)]:
        print(f"  {name:<12} {run['requests_per_message_by_api']}")
    print("\nscaling (4 workers):")
    for size, run in results["scaling"].items():
        print(
            f"  {size:>6} msgs: {run['throughput_msgs_per_s']:.1f} msg/s,"
            f" {run['aws_requests_per_message']:.2f} AWS req/msg (drain),"
            f" AWS wait share {run['aws_wait_share']:.2f},"
            f" moto CPU {run.get('emulator_cpu_ms_per_message', 0):.2f} ms/msg"
        )
    lam = results["lambda"]
    print(
        f"\nimport app.py: {lam['import_app_ms']} ms;"
        f" minimal Chalice app, same libraries: {lam['import_minimal_app_ms']} ms"
    )
    print(f"deployment package: {lam['package_bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    raise SystemExit(main())
