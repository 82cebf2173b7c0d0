"""The bench's arithmetic, pure: requests and dollars per message, the bound a drain should approach,
ingest rates, backlog flatness, the AWS round-trip model, the issue's goals, and the auth section's
token requests and throughput ratio. No I/O here."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from chalicelib.credentials import refresh_at

T = TypeVar("T")

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
LAMBDA_GB = 0.125
BATCH_OPERATIONS = ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem")
BY_API = {
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


def batch_items(params: Mapping[str, Any]) -> int:
    """Items in a BatchGetItem or BatchWriteItem request."""
    return sum(
        len(request["Keys"]) if isinstance(request, dict) else len(request)
        for request in params.get("RequestItems", {}).values()
    )


def requests_only(counts: Mapping[str, int]) -> dict[str, int]:
    """Counted requests without the `<op>/items` counts of DynamoDB batch calls."""
    return {op: n for op, n in counts.items() if not op.endswith("/items")}


def add(*counts: Mapping[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)


def per_message(requests_by_api: Mapping[str, int], delivered: int) -> dict[str, float]:
    """Requests per delivered message, grouped by API (a batch call counts once)."""
    return {
        name: round(sum(requests_by_api.get(op, 0) for op in ops) / max(1, delivered), 3)
        for name, ops in BY_API.items()
    }


def cost_per_million(
    requests_by_api: Mapping[str, int], delivered: int, lambda_seconds: float, invocations: int
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


def bound(rate_limit_per_s: float, workers: int, api_latency_s: float) -> float:
    """The most a drain can deliver: the rate limit, or every worker always waiting on the API."""
    return round(min(rate_limit_per_s, workers / api_latency_s), 1)


def share(throughput: float, of: float) -> float:
    return round(throughput / of, 3) if of > 0 else 0.0


def ingest_figures(records: int, seconds: float, requests_by_api: Mapping[str, int]) -> dict[str, Any]:
    """Records per second through the ingest handler and the AWS requests it made per record."""
    made = requests_only(requests_by_api)
    return {
        "records": records,
        "seconds": round(seconds, 3),
        "records_per_s": round(records / seconds, 1) if seconds > 0 else 0.0,
        "aws_requests_per_record": round(sum(made.values()) / max(1, records), 3),
        "requests_per_record_by_operation": {
            op: round(n / max(1, records), 3) for op, n in sorted(made.items())
        },
    }


def spread(values: Iterable[float]) -> float:
    """How far the slowest of a set falls below the fastest, as a fraction of the fastest (0: flat)."""
    measured = [v for v in values if v > 0]
    if not measured:
        return 0.0
    return round(1 - min(measured) / max(measured), 3)


# Per-call latency of each AWS API as a Lambda in the same region sees it. With the model on, each
# HTTP round trip to the emulator is drawn out to this time in the caller's thread (a retry pays
# again); a round trip the emulator takes longer over is left as it is. AWS publishes no per-call
# latency for SQS, SSM, KMS or Step Functions, so most figures are assumptions, stated as such
# (docs/benchmarks.md); `--aws-latency sqs=30,dynamodb=8` changes them.
# - DynamoDB: AWS Knowledge Center, "How can I troubleshoot high latency on an Amazon DynamoDB
#   table?": the average service-side latency of GetItem/PutItem is single-digit milliseconds;
#   batch calls take longer with their item count. 5 ms per single-item call and 10 ms per batch
#   call (one in-region network round trip included) are our assumption within that.
# - SQS: public benchmarks from EC2 report send/receive round trips in the tens of milliseconds;
#   20 ms per call (FIFO, in region) is an assumption, not an AWS figure.
# - SSM GetParameter with decryption: SSM calls KMS Decrypt on the caller's behalf before it answers;
#   25 ms is an assumption (no AWS figure). KMS on its own: 10 ms, an assumption.
# - Step Functions SendTaskSuccess/Failure/Heartbeat: 25 ms, an assumption. S3: 30 ms, an assumption.
DEFAULT_AWS_LATENCY_MS: dict[str, float] = {
    "sqs": 20.0,
    "dynamodb": 5.0,
    "ssm": 25.0,
    "kms": 10.0,
    "sfn": 25.0,
    "s3": 30.0,
}
DEFAULT_OPERATION_LATENCY_MS: dict[str, float] = {
    "dynamodb.BatchGetItem": 10.0,
    "dynamodb.BatchWriteItem": 10.0,
}
OTHER_SERVICE_MS = 20.0


@dataclass(frozen=True)
class LatencyModel:
    """Milliseconds per call by service (botocore's event name: sqs, dynamodb, ssm, kms, sfn, s3) and
    by `service.Operation` where one differs from its service."""

    services: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_AWS_LATENCY_MS))
    operations: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_OPERATION_LATENCY_MS))
    other_ms: float = OTHER_SERVICE_MS

    def milliseconds(self, service: str, operation: str) -> float:
        specific = self.operations.get(f"{service}.{operation}")
        if specific is not None:
            return specific
        return self.services.get(service, self.other_ms)

    def with_overrides(self, text: str) -> LatencyModel:
        """`sqs=30,dynamodb.BatchWriteItem=12`: milliseconds for a service or one operation. An
        override for a whole service replaces that service's operation figures too."""
        services, operations = dict(self.services), dict(self.operations)
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip()
            try:
                ms = float(value)
            except ValueError:
                ms = -1.0
            if not sep or not name or ms < 0:
                raise ValueError(f"--aws-latency: {part!r} is not NAME=MILLISECONDS (e.g. sqs=20)")
            if "." in name:
                operations[name] = ms
            else:
                services[name] = ms
                operations = {op: v for op, v in operations.items() if not op.startswith(name + ".")}
        return replace(self, services=services, operations=operations)

    def describe(self) -> dict[str, float]:
        return dict(sorted((self.services | self.operations).items()))


@dataclass(frozen=True)
class Goal:
    key: str
    label: str
    target: float
    at_most: bool  # True: the figure must not exceed the target; False: must reach it

    def holds(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.target if self.at_most else value >= self.target

    @property
    def text(self) -> str:
        sign = "<=" if self.at_most else ">="
        return f"{sign} {self.target:g}"


GOALS = (
    Goal("vs_seed_16", "throughput, 16 workers, vs the seed design (x)", 10.0, at_most=False),
    Goal("share_4", "share of min(rate, W/L), 4 workers", 0.7, at_most=False),
    Goal("share_16", "share of min(rate, W/L), 16 workers", 0.7, at_most=False),
    Goal("drain_cpu_ms", "drain CPU per delivered message, ms (worst relay run)", 1.5, at_most=True),
    Goal("requests_per_message", "AWS requests per message, ingest + drain (worst relay run)", 0.5, True),
    Goal("usd_per_million", "USD per million delivered messages (worst relay run)", 1.0, at_most=True),
    Goal("import_overhead_ms", "`import app` over a minimal Chalice app, ms", 50.0, at_most=True),
)
RELAY_RUNS = ("workers_1", "workers_4", "workers_16", "rate_limited")


def goal_figures(suite: Mapping[str, Any], lam: Mapping[str, Any] | None) -> dict[str, float | None]:
    """The figures the issue's goals are judged on, from one emulator's runs (`relay` by run name)."""
    relay = suite["relay"]
    runs = [relay[name] for name in RELAY_RUNS if name in relay]

    def worst(key: str) -> float | None:
        values = [run[key] for run in runs if key in run]
        return max(values) if values else None

    def of(run: str, key: str) -> float | None:
        value = relay.get(run, {}).get(key)
        return None if value is None else float(value)

    overhead = None
    if lam:
        overhead = round(lam["import_app_ms"] - lam["import_minimal_app_ms"], 1)
    return {
        "vs_seed_16": of("workers_16", "ratio_vs_baseline"),
        "share_4": of("workers_4", "share_of_bound"),
        "share_16": of("workers_16", "share_of_bound"),
        "drain_cpu_ms": worst("drain_cpu_ms_per_message"),
        "requests_per_message": worst("requests_per_message"),
        "usd_per_million": worst("usd_per_million"),
        "import_overhead_ms": overhead,
    }


def verdict(goal: Goal, value: float | None) -> str:
    held = goal.holds(value)
    if value is None or held is None:
        return "-"
    return f"{value:.2f} ({'holds' if held else 'misses'})"


def goal_rows(emulators: Mapping[str, Any], lam: Mapping[str, Any] | None) -> list[list[str]]:
    """The goals table: one row per goal, a column per emulator (judged on its runs as is), and when
    the AWS round-trip model ran, the 16-worker ratio to the seed design under the model too."""
    names = list(emulators)
    figures = {n: goal_figures(emulators[n]["runs"]["emulator"], lam) for n in names}
    rows = [[goal.label, goal.text, *(verdict(goal, figures[n][goal.key]) for n in names)] for goal in GOALS]
    modelled = {n: emulators[n]["runs"].get("aws_model") for n in names}
    if any(modelled.values()):
        goal = GOALS[0]
        cells = [verdict(goal, goal_figures(m, lam)[goal.key]) if m else "-" for m in modelled.values()]
        rows.insert(1, [f"{goal.label}, with the AWS round-trip model", goal.text, *cells])
    return rows


# The auth section (issue 24): the drain with OAuth2 client credentials + Standard Webhooks signing
# beside the plain API key, at the same worker count, in the same run. Goal: within 10 %.
AUTH_GOAL = 0.10
AUTH_RUNS = {
    "api_key": "API key",
    "oauth2_signing": "OAuth2 + signing",
    "oauth2_signing_short": "OAuth2 + signing, short-lived tokens",
}


def refresh_interval(lifetime_s: float, skew_s: float) -> float:
    """How long the drain uses a token before it asks for the next (chalicelib.credentials)."""
    return refresh_at(0.0, lifetime_s, skew_s)


def token_requests_due(seconds: float, lifetime_s: float, skew_s: float) -> int:
    """The most token requests one container should make in a run of `seconds` that starts without
    a token: the first, and one per refresh interval after it, however many workers share it."""
    return 1 + math.floor(seconds / refresh_interval(lifetime_s, skew_s))


def stat_jiffies(line: str) -> tuple[int, int]:
    """(busy, total) clock ticks of the aggregate `cpu` line of /proc/stat: user, nice, system, idle,
    iowait, irq, softirq and steal make the total (guest time is already in user), idle and iowait
    the time no process ran."""
    fields = [int(f) for f in line.split()[1:9]]
    total = sum(fields)
    return total - fields[3] - (fields[4] if len(fields) > 4 else 0), total


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The whole machine's busy share between two `stat_jiffies` samples (1.0: every CPU busy, any
    process's); None when no tick passed between them."""
    ticks = after[1] - before[1]
    return round((after[0] - before[0]) / ticks, 3) if ticks > 0 else None


def per_thousand(count: int, messages: int) -> float | None:
    return round(count * 1000 / messages, 2) if messages > 0 else None


def pooled(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Runs of one kind at one worker count as one: messages and seconds summed (the throughput is
    their ratio), CPU per message weighted by messages, the cores busy and the machine's busy share
    weighted by seconds, token requests and refusals summed; each run's own throughput kept, to show
    the spread."""
    delivered = sum(int(r["delivered"]) for r in runs)
    seconds = sum(float(r["seconds"]) for r in runs)
    out: dict[str, Any] = {
        "runs": len(runs),
        "delivered": delivered,
        "seconds": round(seconds, 3),
        "throughput_msgs_per_s": round(delivered / seconds, 2) if seconds > 0 else 0.0,
        "each_msgs_per_s": [r["throughput_msgs_per_s"] for r in runs],
    }
    for key in ("drain_cpu_ms_per_message", "emulator_cpu_ms_per_message", "standin_api_cpu_ms_per_message"):
        weighed = [(float(r[key]), int(r["delivered"])) for r in runs if r.get(key) is not None]
        count = sum(n for _, n in weighed)
        if count:
            out[key] = round(sum(v * n for v, n in weighed) / count, 2)
    for key in ("cores_busy", "machine_busy_share"):  # shares of the wall: weighed by seconds
        timed = [(float(r[key]), float(r["seconds"])) for r in runs if r.get(key) is not None]
        wall = sum(s for _, s in timed)
        if wall > 0:
            out[key] = round(sum(v * s for v, s in timed) / wall, 3)
    for key in ("token_requests", "token_requests_due", "auth_failures"):
        if any(key in r for r in runs):
            out[key] = sum(int(r.get(key, 0)) for r in runs)
    if "token_requests" in out:
        out["token_requests_per_1000"] = per_thousand(out["token_requests"], delivered)
    return out


def auth_ratio(api_key: Mapping[str, Any], other: Mapping[str, Any]) -> float | None:
    """The other run's throughput as a share of the API key's (1.0: as fast)."""
    base = float(api_key["throughput_msgs_per_s"])
    return round(float(other["throughput_msgs_per_s"]) / base, 3) if base > 0 else None


def within_goal(ratio: float | None) -> bool | None:
    return None if ratio is None else ratio >= 1 - AUTH_GOAL


def ratio_cell(ratio: float | None) -> str:
    held = within_goal(ratio)
    if ratio is None or held is None:
        return "-"
    return f"{ratio:.2f} ({'within' if held else 'misses'} {AUTH_GOAL:.0%})"


def _workers(section: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    return [
        (int(k.removeprefix("workers_")), runs) for k, runs in section.items() if k.startswith("workers_")
    ]


def throughput_cell(run: Mapping[str, Any]) -> str:
    """Pooled msg/s, and the slowest and fastest run when there were several: `201.3 (168-241)`."""
    pooled_rate = f"{run['throughput_msgs_per_s']:.1f}"
    each = run.get("each_msgs_per_s") or []
    if len(each) < 2:
        return pooled_rate
    return f"{pooled_rate} ({min(each):.0f}-{max(each):.0f})"


def _pair(runs: Sequence[Mapping[str, Any]], key: str) -> str:
    """One figure of several runs, e.g. `1.20 / 1.31`."""
    return " / ".join("-" if run.get(key) is None else f"{run[key]:.2f}" for run in runs)


def token_rows(section: Mapping[str, Any]) -> list[list[str]]:
    """Token requests per 1,000 messages: a row per token lifetime and worker count."""
    inputs = section["inputs"]
    skew = inputs["token_refresh_skew_s"]
    rows = []
    for kind, lifetime in inputs["token_lifetime_s"].items():
        every = refresh_interval(lifetime, skew)
        for workers, runs in _workers(section):
            run = runs.get(kind)
            if run is None:
                continue
            rows.append(
                [
                    f"{lifetime:g} s (refreshed after {every:g} s)",
                    str(workers),
                    f"{run['delivered']:,}",
                    str(run["token_requests"]),
                    f"{run['token_requests_per_1000']:.2f}",
                    str(run["token_requests_due"]),
                    str(run["auth_failures"]),
                ]
            )
    return rows


def auth_throughput_rows(section: Mapping[str, Any]) -> list[list[str]]:
    """Throughput of each kind at each worker count, the ratios to the API key's, and CPU per message
    of the drain and of the stand-in (API key / OAuth2 + signing)."""
    rows = []
    for workers, runs in _workers(section):
        key, oauth, short = runs["api_key"], runs["oauth2_signing"], runs.get("oauth2_signing_short")
        rows.append(
            [
                str(workers),
                throughput_cell(key),
                throughput_cell(oauth),
                ratio_cell(auth_ratio(key, oauth)),
                throughput_cell(short) if short else "-",
                ratio_cell(auth_ratio(key, short)) if short else "-",
                _pair((key, oauth), "drain_cpu_ms_per_message"),
                _pair((key, oauth), "standin_api_cpu_ms_per_message"),
            ]
        )
    return rows


# The bulk section (issue 25): 1,000 messages over 50 groups to a bulk endpoint at 20 ms per request,
# up to 10 and 50 messages per request, beside the single-item relay (batch_max_items = 1, one
# message per request to the plain endpoint: batch 1), at 1 and 4 workers, in the same run.
BULK_BATCHES = (1, 10, 50)
BULK_WORKERS = (1, 4)
_AWS = "AWS requests per delivered message (drain) over the single-item relay's"
_CPU = "drain CPU per delivered message over the single-item relay's"
BULK_GOALS = (
    Goal("speedup", "msg/s, batch 50, 4 workers, over the single-item relay's at 4 workers (x)", 10.0, False),
    Goal("aws_requests_50", f"{_AWS}: batch 50, 4 workers", 1.0, at_most=True),
    Goal("aws_requests", f"{_AWS}: highest batched run (10 and 50, 1 and 4 workers)", 1.0, at_most=True),
    Goal("drain_cpu_50", f"{_CPU}: batch 50, 4 workers", 1.0, at_most=True),
    Goal("drain_cpu", f"{_CPU}: highest batched run", 1.0, at_most=True),
)


def bulk_turns(round_: int, orders: Sequence[T], batches: Sequence[int]) -> list[tuple[T, int]]:
    """A round's runs at one worker count: every write order's every batch size, in turns, the order
    flipped each round so that none always runs first (or last) on a busy machine."""
    turns = [(order, batch) for order in orders for batch in batches]
    return turns if round_ % 2 == 0 else turns[::-1]


def write_orders(section: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A bulk section's runs by write order (`bench.stream.WRITE_ORDERS`); a section measured before
    the option had its runs at the top, written interleaved."""
    orders = section.get("orders")
    if isinstance(orders, Mapping):
        return dict(orders)
    return {"interleaved": section}


def bulk_pooled(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Runs of one batch size at one worker count as one (`pooled`), with the API requests they made,
    the items those carried and the AWS requests of drain and ingest, each per delivered message,
    and the drain's by operation. A run that failed (`error`) is counted and its error kept, not
    pooled; when every run failed there are no figures."""
    failed = [str(r["error"]) for r in runs if "error" in r]
    runs = [r for r in runs if "error" not in r]
    errors = {"failed_runs": len(failed), "errors": sorted(set(failed))} if failed else {}
    if not runs:
        return {"runs": 0, **errors}
    out = pooled(runs)
    delivered = max(1, out["delivered"])
    totals = {
        key: sum(int(r[key]) for r in runs)
        for key in ("api_requests", "api_items", "aws_requests", "ingest_aws_requests")
    }
    requests = totals["api_requests"]
    by_operation = add(*(r.get("requests_by_api", {}) for r in runs))
    return out | {
        **totals,
        "items_per_request": round(totals["api_items"] / requests, 2) if requests else None,
        "aws_requests_per_message": round(totals["aws_requests"] / delivered, 3),
        "requests_per_message": round(
            (totals["aws_requests"] + totals["ingest_aws_requests"]) / delivered, 3
        ),
        "aws_requests_per_message_by_operation": {
            op: round(n / delivered, 4) for op, n in sorted(by_operation.items())
        },
        **errors,
    }


def _ratio(value: Any, base: Any) -> float | None:
    if value is None or base is None or float(base) <= 0:
        return None
    return round(float(value) / float(base), 3)


def bulk_goal_figures(section: Mapping[str, Any]) -> dict[str, float | None]:
    """What the bulk goals are judged on: batch 50's throughput at 4 workers over the single-item
    relay's at 4; its AWS requests and drain CPU per message over the single-item relay's; and the
    highest of those ratios over every batched run, each against the single-item relay at its own
    worker count (None: a run is missing)."""
    keys = {"aws_requests": "aws_requests_per_message", "drain_cpu": "drain_cpu_ms_per_message"}
    figures: dict[str, float | None] = {}
    for goal, key in keys.items():
        ratios = {
            (workers, name): _ratio(run.get(key), runs["batch_1"].get(key))
            for workers, runs in _workers(section)
            if "batch_1" in runs
            for name, run in runs.items()
            if name != "batch_1"
        }
        known = [r for r in ratios.values() if r is not None]
        figures[goal] = max(known) if known else None
        figures[f"{goal}_50"] = ratios.get((4, "batch_50"))
    four = section.get("workers_4", {})
    figures["speedup"] = _ratio(
        four.get("batch_50", {}).get("throughput_msgs_per_s"),
        four.get("batch_1", {}).get("throughput_msgs_per_s"),
    )
    return figures


def met(goal: Goal, value: float | None) -> str:
    """`12.30 (met)`, `0.80 (missed)`, or `-` when the figure is missing."""
    held = goal.holds(value)
    if value is None or held is None:
        return "-"
    return f"{value:.2f} ({'met' if held else 'missed'})"


def bulk_goal_rows(sections: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """The bulk goals: one row per goal, a column per emulator."""
    figures = {name: bulk_goal_figures(section) for name, section in sections.items()}
    return [
        [goal.label, goal.text, *(met(goal, f[goal.key]) for f in figures.values())] for goal in BULK_GOALS
    ]


def _figure(run: Mapping[str, Any], key: str, digits: int) -> str:
    value = run.get(key)
    return "-" if value is None else f"{value:,.{digits}f}"


def bulk_rows(section: Mapping[str, Any]) -> list[list[str]]:
    """A row per worker count and batch size: msg/s (with the slowest and fastest run) and its ratio
    to the single-item relay's at those workers, API requests and items per request, AWS requests
    per delivered message (drain, and ingest + drain), drain, emulator and stand-in CPU per message,
    the cores those three kept busy (their CPU seconds over the wall's) and the whole machine's busy
    share (every process's, from /proc/stat); runs that failed are said in the msg/s cell."""
    rows = []
    for workers, runs in _workers(section):
        single = runs.get("batch_1", {})
        for name, run in runs.items():
            batch = int(name.removeprefix("batch_"))
            ratio = _ratio(run.get("throughput_msgs_per_s"), single.get("throughput_msgs_per_s"))
            rate = throughput_cell(run) if run["runs"] else ""
            failed = run.get("failed_runs", 0)
            if failed:
                rate += f"{' ' if rate else ''}({failed} of {failed + run['runs']} runs failed)"
            rows.append(
                [
                    str(workers),
                    "1 (single-item relay)" if batch == 1 else str(batch),
                    rate,
                    "-" if ratio is None else f"{ratio:.2f}",
                    _figure(run, "api_requests", 0),
                    _figure(run, "items_per_request", 2),
                    _figure(run, "aws_requests_per_message", 3),
                    _figure(run, "requests_per_message", 3),
                    _figure(run, "drain_cpu_ms_per_message", 2),
                    _figure(run, "emulator_cpu_ms_per_message", 2),
                    _figure(run, "standin_api_cpu_ms_per_message", 2),
                    _figure(run, "cores_busy", 2),
                    "-" if run.get("machine_busy_share") is None else f"{run['machine_busy_share']:.0%}",
                ]
            )
    return rows


def bulk_errors(section: Mapping[str, Any]) -> list[str]:
    """What made runs fail, by worker count and batch size: `4 workers, batch 10: <error>`."""
    return [
        f"{workers} workers, batch {name.removeprefix('batch_')}: {error}"
        for workers, runs in _workers(section)
        for name, run in runs.items()
        for error in run.get("errors", [])
    ]
