"""The bench's arithmetic: requests per message by API, dollars per million messages (DynamoDB batch
calls billed per item, SecureString reads billed a KMS request), the bound and shares, ingest rates,
backlog spread, the AWS round-trip model, the goals, the bench's stream records, the CPU reading
of a process, the auth section's token requests, pooled runs, ratios and tables, and the bulk
section's pooled runs, goals, table and stage variables."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import render
from bench.figures import (
    BULK_GOALS,
    GOALS,
    PRICE,
    LatencyModel,
    add,
    auth_ratio,
    auth_throughput_rows,
    batch_items,
    bound,
    bulk_errors,
    bulk_goal_figures,
    bulk_goal_rows,
    bulk_pooled,
    bulk_rows,
    bulk_turns,
    busy_share,
    cost_per_million,
    goal_figures,
    goal_rows,
    ingest_figures,
    met,
    per_message,
    per_thousand,
    pooled,
    ratio_cell,
    refresh_interval,
    requests_only,
    share,
    spread,
    stat_jiffies,
    throughput_cell,
    token_requests_due,
    token_rows,
    within_goal,
    write_orders,
)
from bench.harness import (
    BULK_FIELDS,
    Calls,
    bench_env,
    bulk_endpoint,
    bulk_variables,
    cpu_seconds,
    machine_jiffies,
)
from bench.stream import WRITE_ORDERS, WriteOrder, batches, group_of, mixed_records, order_records
from chalicelib import naming
from chalicelib.records import build_messages
from chalicelib.request_shape import with_path
from chalicelib.settings import Settings, load_settings
from tests.unit.conftest import env_with

BENCH_ROUTES = Path(__file__).resolve().parents[2] / "bench" / "routes.toml"
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/items/stream/2026-01-01T00:00:00.000"


def test_requests_are_grouped_by_api_per_delivered_message() -> None:
    counted = {
        "sqs:SendMessageBatch": 10,
        "sqs:ReceiveMessage": 12,
        "sqs:DeleteMessageBatch": 10,
        "sqs:ChangeMessageVisibilityBatch": 2,
        "ssm:GetParameter": 1,
        "dynamodb:PutItem": 100,
        "dynamodb:UpdateItem": 2,
        "dynamodb:GetItem": 4,
        "dynamodb:BatchGetItem": 12,
        "dynamodb:BatchWriteItem": 10,
        "dynamodb:BatchWriteItem/items": 100,
    }
    figures = per_message(counted, 100)
    assert figures["SendMessageBatch"] == 0.1
    assert figures["ReceiveMessage"] == 0.12
    assert figures["ChangeMessageVisibility"] == 0.02
    assert figures["SSM"] == 0.01
    assert figures["DynamoDB"] == 1.28  # requests, not the items they carry


def test_cost_counts_each_priced_request_and_lambda_time() -> None:
    counted = {
        "sqs:ReceiveMessage": 1000,
        "sqs:DeleteMessage": 1000,
        "dynamodb:UpdateItem": 2000,
        "dynamodb:GetItem": 1000,
    }
    cost = cost_per_million(counted, delivered=1000, lambda_seconds=10.0, invocations=1000)
    expected_per_1000 = (
        2000 * PRICE["sqs"]
        + 2000 * PRICE["ddb_write"]
        + 1000 * PRICE["ddb_read"]
        + 10.0 * 0.125 * PRICE["gb_s"]
        + 1000 * PRICE["lambda_request"]
    )
    assert cost == pytest.approx(round(expected_per_1000 * 1000, 2))


def test_batch_calls_are_billed_per_item_and_secure_string_reads_per_kms_request() -> None:
    counted = {
        "dynamodb:BatchGetItem": 10,
        "dynamodb:BatchGetItem/items": 1000,
        "dynamodb:BatchWriteItem": 40,
        "dynamodb:BatchWriteItem/items": 1000,
        "ssm:GetParameter": 1000,
    }
    cost = cost_per_million(counted, delivered=1000, lambda_seconds=0.0, invocations=0)
    expected_per_1000 = 1000 * PRICE["ddb_read"] + 1000 * PRICE["ddb_write"] + 1000 * PRICE["kms_request"]
    assert cost == pytest.approx(round(expected_per_1000 * 1000, 2))
    assert PRICE["kms_request"] == pytest.approx(0.03 / 10_000)


def test_batch_items_counts_keys_and_write_requests() -> None:
    assert batch_items({"RequestItems": {"t": {"Keys": [{}, {}, {}], "ConsistentRead": True}}}) == 3
    assert batch_items({"RequestItems": {"t": [{"PutRequest": {}}] * 25}}) == 25
    assert batch_items({}) == 0


def test_requests_only_drops_item_counts_and_add_sums_counters() -> None:
    assert requests_only({"dynamodb:BatchGetItem": 2, "dynamodb:BatchGetItem/items": 150}) == {
        "dynamodb:BatchGetItem": 2
    }
    assert add({"a": 1, "b": 2}, {"b": 3}, {}) == {"a": 1, "b": 5}


@pytest.mark.parametrize(
    ("rate", "workers", "latency_s", "expected"),
    [
        (10_000, 1, 0.02, 50.0),  # one worker always waiting on a 20 ms API
        (10_000, 16, 0.02, 800.0),
        (100, 16, 0.02, 100.0),  # the rate limit is the lower of the two
        (100, 1, 0.02, 50.0),
    ],
)
def test_bound_is_the_rate_limit_or_workers_over_latency(
    rate: int, workers: int, latency_s: float, expected: float
) -> None:
    assert bound(rate, workers, latency_s) == expected


def test_share_of_a_bound_and_of_nothing() -> None:
    assert share(560.0, 800.0) == 0.7
    assert share(101.9, 100.0) == 1.019
    assert share(5.0, 0.0) == 0.0


def test_ingest_figures_are_per_record_and_ignore_batch_item_counts() -> None:
    counted = {
        "sqs:SendMessageBatch": 11,
        "dynamodb:BatchWriteItem": 4,
        "dynamodb:BatchWriteItem/items": 100,
    }
    figures = ingest_figures(records=100, seconds=0.5, requests_by_api=counted)
    assert figures["records_per_s"] == 200.0
    assert figures["aws_requests_per_record"] == 0.15
    assert figures["requests_per_record_by_operation"] == {
        "dynamodb:BatchWriteItem": 0.04,
        "sqs:SendMessageBatch": 0.11,
    }
    assert ingest_figures(0, 0.0, {})["records_per_s"] == 0.0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([150.0, 150.0, 150.0], 0.0),
        ([150.0, 135.0, 120.0], 0.2),  # the slowest 20% below the fastest: the edge of "flat"
        ([135.1, 150.6, 73.8], 0.51),
        ([0.0, 100.0], 0.0),  # a run that delivered nothing has no rate to compare
        ([], 0.0),
    ],
)
def test_spread_is_the_slowest_below_the_fastest(values: list[float], expected: float) -> None:
    assert spread(values) == pytest.approx(expected, abs=0.001)


def test_latency_model_by_service_and_operation() -> None:
    model = LatencyModel()
    assert model.milliseconds("sqs", "ReceiveMessage") == 20.0
    assert model.milliseconds("dynamodb", "PutItem") == 5.0
    assert model.milliseconds("dynamodb", "BatchWriteItem") == 10.0
    assert model.milliseconds("ssm", "GetParameter") == 25.0
    assert model.milliseconds("cloudwatch", "PutMetricData") == model.other_ms


def test_latency_overrides_name_a_service_or_one_operation() -> None:
    model = LatencyModel().with_overrides("sqs=30, dynamodb.GetItem=2.5")
    assert model.milliseconds("sqs", "DeleteMessageBatch") == 30.0
    assert model.milliseconds("dynamodb", "GetItem") == 2.5
    assert model.milliseconds("dynamodb", "PutItem") == 5.0
    whole = LatencyModel().with_overrides("dynamodb=8")  # the service's operation figures go too
    assert whole.milliseconds("dynamodb", "BatchGetItem") == 8.0
    assert LatencyModel().with_overrides("") == LatencyModel()


@pytest.mark.parametrize("text", ["sqs", "sqs=", "=20", "sqs=fast", "sqs=-1"])
def test_latency_overrides_that_are_not_name_equals_milliseconds_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="NAME=MILLISECONDS"):
        LatencyModel().with_overrides(text)


class Operation:
    """What botocore hands a before-call handler: the operation model."""

    def __init__(self, service: str, name: str) -> None:
        self.name = name
        self.service_model = type("ServiceModel", (), {"service_name": service})()


def test_calls_count_requests_and_batch_items() -> None:
    calls = Calls()
    calls._before(Operation("sqs", "ReceiveMessage"))
    calls._sending("before-send.sqs.ReceiveMessage")
    calls._received()
    calls._after()
    calls._before(Operation("dynamodb", "BatchWriteItem"))
    calls._items({"RequestItems": {"t": [{"PutRequest": {}}] * 7}}, Operation("dynamodb", "BatchWriteItem"))
    calls._after()
    taken = calls.take()
    assert taken.counts == {
        "sqs:ReceiveMessage": 1,
        "dynamodb:BatchWriteItem": 1,
        "dynamodb:BatchWriteItem/items": 7,
    }
    assert taken.modelled_seconds == taken.padded_seconds == 0.0  # no model, nothing drawn out
    assert calls.take().counts == {}  # a take starts afresh


def test_calls_are_also_counted_by_the_pool_whose_thread_made_them() -> None:
    calls = Calls()

    def call(name: str) -> None:
        calls._before(Operation("sqs", name))
        calls._after()

    for thread in ("jobs_0", "jobs_3", "live"):
        worker = threading.Thread(target=call, args=("SendMessageBatch",), name=thread)
        worker.start()
        worker.join()
    call("GetQueueAttributes")
    taken = calls.take()
    assert taken.counts == {"sqs:SendMessageBatch": 3, "sqs:GetQueueAttributes": 1}
    assert taken.by_thread == {
        "jobs": {"sqs:SendMessageBatch": 2},
        "live": {"sqs:SendMessageBatch": 1},
        "MainThread": {"sqs:GetQueueAttributes": 1},
    }
    assert calls.take().by_thread == {}


def test_each_http_attempt_is_drawn_out_to_the_models_figure_for_its_operation() -> None:
    calls = Calls()
    calls.model = LatencyModel(services={"sqs": 1.0}, operations={"sqs.DeleteMessage": 0.5}, other_ms=2.0)
    for event in ("before-send.sqs.SendMessageBatch", "before-send.sqs.DeleteMessage", "before-send.sts.X"):
        calls._sending(event)
        calls._received()
    taken = calls.take()
    assert taken.modelled_seconds == pytest.approx(0.0035)
    assert 0.0 <= taken.padded_seconds <= taken.modelled_seconds  # the emulator's part is not slept again
    calls._received()  # a response with no attempt in this thread waits for nothing
    calls.model = None
    calls._sending("before-send.sqs.SendMessageBatch")
    calls._received()
    assert calls.take().modelled_seconds == 0.0


def relay_run(**figures: float) -> dict[str, float]:
    return {
        "ratio_vs_baseline": 1.0,
        "share_of_bound": 0.5,
        "drain_cpu_ms_per_message": 1.0,
        "requests_per_message": 0.4,
        "usd_per_million": 0.9,
    } | figures


def test_goal_figures_take_the_named_runs_and_the_worst_of_every_relay_run() -> None:
    suite = {
        "relay": {
            "workers_1": relay_run(drain_cpu_ms_per_message=2.5),
            "workers_4": relay_run(share_of_bound=0.82),
            "workers_16": relay_run(ratio_vs_baseline=11.5, share_of_bound=0.71, usd_per_million=0.95),
            "rate_limited": relay_run(requests_per_message=0.62),
        }
    }
    lam = {"import_app_ms": 290.0, "import_minimal_app_ms": 250.5}
    figures = goal_figures(suite, lam)
    assert figures == {
        "vs_seed_16": 11.5,
        "share_4": 0.82,
        "share_16": 0.71,
        "drain_cpu_ms": 2.5,
        "requests_per_message": 0.62,
        "usd_per_million": 0.95,
        "import_overhead_ms": 39.5,
    }
    verdicts = {goal.key: goal.holds(figures[goal.key]) for goal in GOALS}
    assert verdicts == {
        "vs_seed_16": True,
        "share_4": True,
        "share_16": True,
        "drain_cpu_ms": False,
        "requests_per_message": False,
        "usd_per_million": True,
        "import_overhead_ms": True,
    }
    assert goal_figures({"relay": {}}, None)["import_overhead_ms"] is None
    assert GOALS[0].holds(None) is None


def test_goal_edges_hold() -> None:
    by_key = {goal.key: goal for goal in GOALS}
    assert by_key["vs_seed_16"].holds(10.0) and not by_key["vs_seed_16"].holds(9.99)
    assert by_key["drain_cpu_ms"].holds(1.5) and not by_key["drain_cpu_ms"].holds(1.51)
    assert by_key["usd_per_million"].text == "<= 1"


def test_bench_stream_carries_several_item_types_over_the_bench_routes(make_settings: Any) -> None:
    settings: Settings = make_settings(TRICKLE_ROUTES_FILE=str(BENCH_ROUTES))
    records = mixed_records(200, customers=10, stream_arn=ARN)
    built = build_messages(records, settings)
    assert not built.rejected
    by_destination = Counter(m.destination for m in built.messages)
    # per 20 records: 12 new orders + 3 order changes + 2 invoices to orders; 2 invoices + 1 profile
    # change to the CRM; 2 cart changes no route takes
    assert by_destination == {"orders": 170, "crm": 30}
    assert built.unrouted == 20
    assert {r["eventName"] for r in records} == {"INSERT", "MODIFY"}
    assert len({m.group_id for m in built.messages if m.destination == "orders"}) == 10


def test_drain_backlog_is_new_orders_over_the_groups_in_lambda_batches_of_100(make_settings: Any) -> None:
    settings: Settings = make_settings(TRICKLE_ROUTES_FILE=str(BENCH_ROUTES))
    records = order_records(250, groups=50, stream_arn=ARN)
    built = build_messages(records, settings)
    assert [m.destination for m in built.messages] == ["orders"] * 250
    assert len({m.group_id for m in built.messages}) == 50
    assert len({m.message_id for m in built.messages}) == 250
    assert [len(event["Records"]) for event in batches(records)] == [100, 100, 50]


def test_cpu_seconds_of_a_process_grows_with_its_work() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    after = cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.1
    assert cpu_seconds(2**22 + 12345) is None  # no such process


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # user nice system idle iowait irq softirq steal guest guest_nice: guest is already in user
        ("cpu  100 5 40 800 30 2 3 20 50 0", (170, 1000)),
        ("cpu  0 0 0 500 0 0 0 0 0 0", (0, 500)),  # idle throughout
        ("cpu  10 0 10 0 0 0 0 0", (20, 20)),  # an older kernel's eight fields
    ],
)
def test_stat_jiffies_count_busy_and_total_ticks_without_idle_or_iowait(
    line: str, expected: tuple[int, int]
) -> None:
    assert stat_jiffies(line) == expected


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ((1000, 4000), (1900, 5000), 0.9),  # 900 of 1,000 ticks busy: both CPUs nearly full
        ((1000, 4000), (1100, 5000), 0.1),
        ((1000, 4000), (2000, 5000), 1.0),
        ((1000, 4000), (1000, 4000), None),  # no tick passed
    ],
)
def test_busy_share_is_the_busy_ticks_over_all_ticks_between_two_samples(
    before: tuple[int, int], after: tuple[int, int], expected: float | None
) -> None:
    assert busy_share(before, after) == expected


def test_machine_jiffies_read_this_machine_and_grow() -> None:
    before = machine_jiffies()
    assert before is not None and 0 <= before[0] <= before[1]
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    after = machine_jiffies()
    assert after is not None and after[0] > before[0] and after[1] > before[1]


def test_goal_rows_put_emulators_side_by_side_and_add_the_modelled_ratio_when_it_ran() -> None:
    as_is = {"relay": {"workers_16": relay_run(ratio_vs_baseline=8.0), "workers_4": relay_run()}}
    modelled = {"relay": {"workers_16": relay_run(ratio_vs_baseline=12.25)}}
    emulators = {
        "moto": {"runs": {"emulator": as_is}},
        "ministack": {"runs": {"emulator": as_is, "aws_model": modelled}},
    }
    rows = goal_rows(emulators, {"import_app_ms": 300.0, "import_minimal_app_ms": 240.0})
    assert rows[0] == [GOALS[0].label, ">= 10", "8.00 (misses)", "8.00 (misses)"]
    assert rows[1][0].endswith("with the AWS round-trip model")
    assert rows[1][2:] == ["-", "12.25 (holds)"]
    assert rows[-1][2:] == ["60.00 (misses)", "60.00 (misses)"]
    assert len(rows) == len(GOALS) + 1
    without_model = goal_rows({"moto": {"runs": {"emulator": {"relay": {}}}}}, None)
    assert [row[2] for row in without_model] == ["-"] * len(GOALS)


@pytest.mark.parametrize(
    ("seconds", "lifetime_s", "skew_s", "interval", "due"),
    [
        (25.0, 3600, 60, 3540.0, 1),  # an hour's token: one for the whole run
        (25.0, 2, 60, 1.0, 26),  # a skew longer than the token: refreshed at half its life
        (0.9, 2, 60, 1.0, 1),
        (5.0, 300, 0, 300.0, 1),
        (610.0, 300, 0, 300.0, 3),  # no skew: at 0, 300 and 600 s
        (10.0, 4, 1, 3.0, 4),
    ],
)
def test_token_requests_due_are_the_first_and_one_per_refresh_interval(
    seconds: float, lifetime_s: int, skew_s: int, interval: float, due: int
) -> None:
    assert refresh_interval(lifetime_s, skew_s) == interval
    assert token_requests_due(seconds, lifetime_s, skew_s) == due


@pytest.mark.parametrize(
    ("count", "messages", "expected"),
    [
        (1, 1000, 1.0),
        (2, 2000, 1.0),
        (23, 1000, 23.0),
        (1, 200, 5.0),
        (1, 3, 333.33),
        (0, 1000, 0.0),
        (1, 0, None),
    ],
)
def test_per_thousand(count: int, messages: int, expected: float | None) -> None:
    assert per_thousand(count, messages) == expected


def auth_run(**figures: Any) -> dict[str, Any]:
    return {
        "delivered": 1000,
        "seconds": 5.0,
        "throughput_msgs_per_s": 200.0,
        "drain_cpu_ms_per_message": 1.0,
        "standin_api_cpu_ms_per_message": 0.3,
    } | figures


def test_pooled_runs_are_messages_over_seconds_with_cpu_weighed_by_messages() -> None:
    runs = [
        auth_run(seconds=4.0, throughput_msgs_per_s=250.0, drain_cpu_ms_per_message=1.0),
        auth_run(delivered=500, seconds=4.0, throughput_msgs_per_s=125.0, drain_cpu_ms_per_message=2.5),
    ]
    figures = pooled(runs)
    assert figures == {
        "runs": 2,
        "delivered": 1500,
        "seconds": 8.0,
        "throughput_msgs_per_s": 187.5,  # not the mean of 250 and 125
        "each_msgs_per_s": [250.0, 125.0],
        "drain_cpu_ms_per_message": 1.5,
        "standin_api_cpu_ms_per_message": 0.3,
    }


def test_pooled_oauth2_runs_sum_token_requests_and_refusals() -> None:
    runs = [
        auth_run(
            token_requests=1, token_requests_due=1, auth_failures=0, standin_api_cpu_ms_per_message=None
        ),
        auth_run(
            token_requests=3, token_requests_due=2, auth_failures=2, standin_api_cpu_ms_per_message=None
        ),
    ]
    figures = pooled(runs)
    assert (figures["token_requests"], figures["token_requests_due"], figures["auth_failures"]) == (4, 3, 2)
    assert figures["token_requests_per_1000"] == 2.0
    assert "standin_api_cpu_ms_per_message" not in figures  # no /proc reading, no figure
    assert pooled([auth_run(seconds=0.0)])["throughput_msgs_per_s"] == 0.0


@pytest.mark.parametrize(
    ("key", "other", "ratio", "within", "cell"),
    [
        (200.0, 200.0, 1.0, True, "1.00 (within 10%)"),
        (200.0, 180.0, 0.9, True, "0.90 (within 10%)"),  # the edge of the goal
        (200.0, 179.8, 0.899, False, "0.90 (misses 10%)"),
        (200.0, 230.0, 1.15, True, "1.15 (within 10%)"),
        (0.0, 100.0, None, None, "-"),  # an API-key run that delivered nothing: no ratio
    ],
)
def test_auth_ratio_and_the_ten_percent_goal(
    key: float, other: float, ratio: float | None, within: bool | None, cell: str
) -> None:
    got = auth_ratio({"throughput_msgs_per_s": key}, {"throughput_msgs_per_s": other})
    assert got == ratio
    assert within_goal(got) is within
    assert ratio_cell(got) == cell


@pytest.mark.parametrize(
    ("run", "cell"),
    [
        ({"throughput_msgs_per_s": 187.54, "each_msgs_per_s": [250.0, 125.2]}, "187.5 (125-250)"),
        ({"throughput_msgs_per_s": 44.5, "each_msgs_per_s": [44.5]}, "44.5"),
        ({"throughput_msgs_per_s": 44.5}, "44.5"),
    ],
)
def test_throughput_cell_shows_the_spread_of_several_runs(run: dict[str, Any], cell: str) -> None:
    assert throughput_cell(run) == cell


def auth_section() -> dict[str, Any]:
    """Two worker counts, each kind one run of 1,000 messages taking `seconds`."""

    def run(seconds: float, **more: Any) -> dict[str, Any]:
        return pooled([auth_run(seconds=seconds, throughput_msgs_per_s=round(1000 / seconds, 2)) | more])

    def oauth(seconds: float, tokens: int, due: int, refused: int = 0, **more: Any) -> dict[str, Any]:
        return run(seconds, token_requests=tokens, token_requests_due=due, auth_failures=refused, **more)

    return {
        "inputs": {
            "messages": 1000,
            "groups": 50,
            "api_latency_ms": 20.0,
            "rounds": 1,
            "token_lifetime_s": {"oauth2_signing": 3600, "oauth2_signing_short": 2},
            "token_refresh_skew_s": 60,
        },
        "workers_1": {
            "api_key": run(22.2),
            "oauth2_signing": oauth(22.7, 1, 1, drain_cpu_ms_per_message=1.1),
            "oauth2_signing_short": oauth(22.5, 23, 23),
        },
        "workers_16": {
            "api_key": run(5.0),
            "oauth2_signing": oauth(6.0, 1, 1, standin_api_cpu_ms_per_message=0.4),
            "oauth2_signing_short": oauth(5.1, 6, 5, refused=1),
        },
    }


def test_token_rows_are_per_lifetime_and_worker_count() -> None:
    assert token_rows(auth_section()) == [
        ["3600 s (refreshed after 3540 s)", "1", "1,000", "1", "1.00", "1", "0"],
        ["3600 s (refreshed after 3540 s)", "16", "1,000", "1", "1.00", "1", "0"],
        ["2 s (refreshed after 1 s)", "1", "1,000", "23", "23.00", "23", "0"],
        ["2 s (refreshed after 1 s)", "16", "1,000", "6", "6.00", "5", "1"],
    ]


def test_auth_throughput_rows_put_oauth2_beside_the_api_key_at_each_worker_count() -> None:
    rows = auth_throughput_rows(auth_section())
    assert rows[0] == [
        "1",
        "45.0",
        "44.0",
        "0.98 (within 10%)",
        "44.4",
        "0.99 (within 10%)",
        "1.00 / 1.10",
        "0.30 / 0.30",
    ]
    assert rows[1] == [
        "16",
        "200.0",
        "166.7",
        "0.83 (misses 10%)",
        "196.1",
        "0.98 (within 10%)",
        "1.00 / 1.00",
        "0.30 / 0.40",
    ]
    assert len(rows) == 2


def test_the_auth_section_renders_alone_without_the_relay_sections() -> None:
    results = {"emulators": {"moto": {"auth": auth_section() | {"command": "python -m bench --only auth"}}}}
    text = render(results, ("auth",))
    assert text.startswith("### Auth (moto): API key beside OAuth2 + signing (issue 24)")
    assert "`python -m bench --only auth`" in text
    assert "| 2 s (refreshed after 1 s) | 16 | 1,000 | 6 | 6.00 | 5 | 1 |" in text
    assert "| 16 | 200.0 | 166.7 | 0.83 (misses 10%) |" in text
    assert "Goal (issue 17)" not in text


def bulk_run(seconds: float, requests: int, aws: int, **more: Any) -> dict[str, Any]:
    """One bulk-section run of 1,000 messages, all delivered, each request carrying what it could."""
    return {
        "delivered": 1000,
        "seconds": seconds,
        "throughput_msgs_per_s": round(1000 / seconds, 2),
        "drain_cpu_ms_per_message": 1.0,
        "emulator_cpu_ms_per_message": 1.2,
        "standin_api_cpu_ms_per_message": 0.3,
        "cores_busy": 1.5,
        "machine_busy_share": 0.9,
        "api_requests": requests,
        "api_items": 1000,
        "aws_requests": aws,
        "ingest_aws_requests": 100,
    } | more


def test_bulk_runs_pool_requests_items_and_aws_requests_per_delivered_message() -> None:
    runs = [
        bulk_run(2.0, requests=20, aws=260, drain_cpu_ms_per_message=0.7),
        bulk_run(
            2.0,
            requests=25,
            aws=300,
            api_items=1010,
            drain_cpu_ms_per_message=0.9,
            requests_by_api={"sqs:ReceiveMessage": 120, "dynamodb:TransactWriteItems": 25},
        ),
    ]
    figures = bulk_pooled(runs)
    assert figures["throughput_msgs_per_s"] == 500.0
    assert figures["drain_cpu_ms_per_message"] == 0.8
    assert (figures["api_requests"], figures["api_items"]) == (45, 2010)
    assert figures["items_per_request"] == 44.67  # items sent again count: what the requests carried
    assert figures["aws_requests_per_message"] == 0.28  # the drain's
    assert figures["requests_per_message"] == 0.38  # ingest + drain
    assert figures["aws_requests_per_message_by_operation"] == {
        "dynamodb:TransactWriteItems": 0.0125,
        "sqs:ReceiveMessage": 0.06,
    }
    assert bulk_pooled([bulk_run(2.0, requests=0, aws=0, delivered=0)])["items_per_request"] is None


def test_bulk_runs_pool_cpu_per_message_by_messages_and_the_cores_busy_by_seconds() -> None:
    runs = [
        bulk_run(1.0, requests=20, aws=250, emulator_cpu_ms_per_message=1.0, cores_busy=1.9),
        bulk_run(
            3.0,
            requests=20,
            aws=250,
            delivered=3000,
            emulator_cpu_ms_per_message=2.0,
            cores_busy=1.1,
            machine_busy_share=0.7,
        ),
    ]
    figures = bulk_pooled(runs)
    assert figures["emulator_cpu_ms_per_message"] == 1.75  # (1,000 x 1.0 + 3,000 x 2.0) / 4,000
    assert figures["cores_busy"] == 1.3  # (1 s x 1.9 + 3 s x 1.1) / 4 s
    assert figures["machine_busy_share"] == 0.75  # (1 s x 0.9 + 3 s x 0.7) / 4 s
    older = bulk_pooled([bulk_run(2.0, requests=20, aws=250, cores_busy=None, machine_busy_share=None)])
    assert "cores_busy" not in older and "machine_busy_share" not in older  # measured before they were


MOTO_500 = "An error occurred (500) when calling the TransactWriteItems operation (reached max retries: 3)"


def test_failed_bulk_runs_are_counted_and_said_not_pooled() -> None:
    some = bulk_pooled([bulk_run(2.0, requests=20, aws=260), {"error": MOTO_500}, {"error": MOTO_500}])
    assert (some["runs"], some["failed_runs"], some["errors"]) == (1, 2, [MOTO_500])
    assert (some["delivered"], some["throughput_msgs_per_s"], some["api_requests"]) == (1000, 500.0, 20)
    assert bulk_pooled([{"error": MOTO_500}]) == {"runs": 0, "failed_runs": 1, "errors": [MOTO_500]}
    assert "failed_runs" not in bulk_pooled([bulk_run(2.0, requests=20, aws=260)])


def bulk_section(**runs: Any) -> dict[str, Any]:
    """A bulk section whose pooled runs are `workers_W__batch_B=run or [runs]` (the single-item relay 5 s at 4
    workers, 20 s at 1, each with 310 drain AWS requests and 1 ms of drain CPU per message)."""
    section: dict[str, Any] = {
        "inputs": {
            "messages": 1000,
            "groups": 50,
            "api_latency_ms": 20.0,
            "rounds": 1,
            "batches": [1, 10, 50],
            "bulk_path": "/items/bulk",
            "batch_wrapper": "{records: @}",
            "batch_results": "results[].status",
        },
        "workers_1": {"batch_1": bulk_pooled([bulk_run(20.0, requests=1000, aws=310)])},
        "workers_4": {"batch_1": bulk_pooled([bulk_run(5.0, requests=1000, aws=310)])},
    }
    for name, run in runs.items():
        workers, batch = name.split("__")
        section[workers][batch] = bulk_pooled(run if isinstance(run, list) else [run])
    return section


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        (  # batch 50 at 4 workers 10x, every batched run cheaper: every goal met
            {
                "workers_4__batch_50": bulk_run(0.5, requests=20, aws=250, drain_cpu_ms_per_message=0.6),
                "workers_4__batch_10": bulk_run(1.0, requests=100, aws=300, drain_cpu_ms_per_message=0.8),
                "workers_1__batch_50": bulk_run(2.0, requests=20, aws=260, drain_cpu_ms_per_message=0.7),
            },
            {
                "speedup": 10.0,
                "aws_requests_50": 0.806,
                "aws_requests": 0.968,
                "drain_cpu_50": 0.6,
                "drain_cpu": 0.8,
            },
        ),
        (  # batch 10 makes more AWS requests and spends more CPU than the single-item relay: missed
            {
                "workers_4__batch_50": bulk_run(1.8, requests=20, aws=264, drain_cpu_ms_per_message=0.75),
                "workers_1__batch_10": bulk_run(3.0, requests=100, aws=397, drain_cpu_ms_per_message=1.2),
            },
            {
                "speedup": 2.778,
                "aws_requests_50": 0.852,
                "aws_requests": 1.281,
                "drain_cpu_50": 0.75,
                "drain_cpu": 1.2,
            },
        ),
        (  # no batch 50 at 4 workers, no batched run: nothing to judge
            {},
            {
                "speedup": None,
                "aws_requests_50": None,
                "aws_requests": None,
                "drain_cpu_50": None,
                "drain_cpu": None,
            },
        ),
    ],
)
def test_bulk_goals_judge_batch_50_at_4_workers_and_every_batched_run_against_the_single_item_relay(
    runs: dict[str, dict[str, Any]], expected: dict[str, float | None]
) -> None:
    assert bulk_goal_figures(bulk_section(**runs)) == expected


def test_bulk_goals_are_met_or_missed_at_their_edges() -> None:
    by_key = {goal.key: goal for goal in BULK_GOALS}
    assert met(by_key["speedup"], 10.0) == "10.00 (met)"
    assert met(by_key["speedup"], 9.99) == "9.99 (missed)"
    assert met(by_key["aws_requests"], 1.0) == "1.00 (met)"
    assert met(by_key["drain_cpu"], 1.004) == "1.00 (missed)"  # judged on the figure, not its rounding
    assert met(by_key["drain_cpu_50"], None) == "-"


def test_bulk_goal_rows_put_emulators_side_by_side() -> None:
    fast = bulk_section(workers_4__batch_50=bulk_run(0.4, requests=20, aws=250))
    slow = bulk_section(workers_4__batch_50=bulk_run(2.0, requests=20, aws=400))
    rows = bulk_goal_rows({"moto": slow, "ministack": fast})
    assert [row[0] for row in rows] == [goal.label for goal in BULK_GOALS]
    assert rows[0][1:] == [">= 10", "2.50 (missed)", "12.50 (met)"]
    assert rows[1][1:] == ["<= 1", "1.29 (missed)", "0.81 (met)"]


def test_bulk_rows_are_per_worker_count_and_batch_beside_the_single_item_relay() -> None:
    section = bulk_section(
        workers_1__batch_50=bulk_run(4.0, requests=20, aws=255, drain_cpu_ms_per_message=0.7),
        workers_4__batch_50=bulk_run(2.0, requests=25, aws=264, standin_api_cpu_ms_per_message=None),
    )
    single = ["1.00", "1,000", "1.00", "0.310", "0.410", "1.00", "1.20", "0.30", "1.50", "90%"]
    assert bulk_rows(section) == [
        ["1", "1 (single-item relay)", "50.0", *single],
        ["1", "50", "250.0", "5.00", "20", "50.00", "0.255", "0.355", "0.70", "1.20", "0.30", "1.50", "90%"],
        ["4", "1 (single-item relay)", "200.0", *single],
        ["4", "50", "500.0", "2.50", "25", "40.00", "0.264", "0.364", "1.00", "1.20", "-", "1.50", "90%"],
    ]


def test_bulk_rows_say_the_runs_that_failed_and_leave_a_figure_no_run_gave_empty() -> None:
    section = bulk_section(
        workers_4__batch_10=[{"error": MOTO_500}, {"error": MOTO_500}],
        workers_4__batch_50=[bulk_run(2.0, requests=20, aws=264), {"error": MOTO_500}],
    )
    rows = bulk_rows(section)
    assert rows[2] == ["4", "10", "(2 of 2 runs failed)", *["-"] * 10]
    assert rows[3][:4] == ["4", "50", "500.0 (1 of 2 runs failed)", "2.50"]
    assert bulk_errors(section) == [f"4 workers, batch 10: {MOTO_500}", f"4 workers, batch 50: {MOTO_500}"]
    figures = bulk_goal_figures(section)  # judged on the runs that gave figures
    assert (figures["speedup"], figures["aws_requests"]) == (2.5, 0.852)
    assert "Runs that failed (not pooled):" in render({"emulators": {"moto": {"bulk": section}}}, ("bulk",))


def test_the_bulk_section_renders_alone_with_its_goals_and_command() -> None:
    section = bulk_section(workers_4__batch_50=bulk_run(0.5, requests=20, aws=250))
    results = {"emulators": {"ministack": {"bulk": section | {"command": "python -m bench --only bulk"}}}}
    text = render(results, ("bulk",))
    assert text.startswith("### Bulk delivery (issue 25): batches beside the single-item relay")
    assert "`python -m bench --only bulk`" in text
    # a section measured before the write orders: its backlog was written interleaved
    assert "| Goal (issue 25) | target | ministack, interleaved |" in text
    assert (
        "| interleaved | 4 | 50 | 2000.0 | 10.00 | 20 | 50.00 | 0.250 | 0.350"
        " | 1.00 | 1.20 | 0.30 | 1.50 | 90% |" in text
    )
    assert "| cores busy (drain + emulator + stand-in, of ?) | machine busy (all processes) |" in text
    assert "Goal (issue 17)" not in text and "Auth" not in text


def test_the_bulk_section_puts_each_write_order_beside_its_own_single_item_relay() -> None:
    interleaved = bulk_section(workers_4__batch_50=bulk_run(1.6, requests=20, aws=268))
    grouped = bulk_section(workers_4__batch_50=bulk_run(0.4, requests=20, aws=250))
    grouped["workers_4"]["batch_1"] = bulk_pooled([bulk_run(4.0, requests=1000, aws=310)])
    section = {"inputs": interleaved["inputs"], "orders": {"interleaved": interleaved, "grouped": grouped}}
    assert write_orders(section) == {"interleaved": interleaved, "grouped": grouped}
    assert write_orders(interleaved) == {"interleaved": interleaved}  # measured before the option
    text = render({"emulators": {"ministack": {"bulk": section}}}, ("bulk",))
    header = "| Goal (issue 25) | target | ministack, interleaved | ministack, grouped |"
    assert header in text
    speedup = text.split(header)[1].splitlines()[2]
    assert speedup.endswith("| >= 10 | 3.12 (missed) | 10.00 (met) |")  # 250 / 625 x 2,500 / 250
    assert "| interleaved | 4 | 50 | 625.0 | 3.12 | 20 |" in text
    assert "| grouped | 4 | 1 (single-item relay) | 250.0 | 1.00 | 1,000 |" in text
    assert "| grouped | 4 | 50 | 2500.0 | 10.00 | 20 |" in text


@pytest.mark.parametrize(
    ("round_", "expected"),
    [
        (0, [("interleaved", 1), ("interleaved", 50), ("grouped", 1), ("grouped", 50)]),
        (1, [("grouped", 50), ("grouped", 1), ("interleaved", 50), ("interleaved", 1)]),
        (2, [("interleaved", 1), ("interleaved", 50), ("grouped", 1), ("grouped", 50)]),
    ],
)
def test_bulk_runs_take_turns_over_write_orders_and_batches_flipped_each_round(
    round_: int, expected: list[tuple[str, int]]
) -> None:
    assert bulk_turns(round_, ("interleaved", "grouped"), (1, 50)) == expected


@pytest.mark.parametrize(
    ("order", "count", "groups", "expected"),
    [
        ("interleaved", 6, 3, [0, 1, 2, 0, 1, 2]),
        ("grouped", 6, 3, [0, 0, 1, 1, 2, 2]),
        ("grouped", 7, 3, [0, 0, 0, 1, 1, 2, 2]),  # runs as even as the division allows
        ("grouped", 3, 3, [0, 1, 2]),
    ],
)
def test_a_backlog_is_written_interleaved_or_each_group_in_one_run(
    order: WriteOrder, count: int, groups: int, expected: list[int]
) -> None:
    assert [group_of(i, count, groups, order) for i in range(count)] == expected


@pytest.mark.parametrize("order", WRITE_ORDERS)
def test_either_write_order_gives_every_group_the_same_share_of_the_backlog(
    order: WriteOrder, make_settings: Any
) -> None:
    settings: Settings = make_settings(TRICKLE_ROUTES_FILE=str(BENCH_ROUTES))
    built = build_messages(order_records(1000, groups=50, stream_arn=ARN, order=order), settings)
    in_order = [m.group_id for m in built.messages]
    assert set(Counter(in_order).values()) == {20}
    runs = 1 + sum(a != b for a, b in itertools.pairwise(in_order))
    assert runs == (50 if order == "grouped" else 1000)  # grouped: each group's 20 one after another


@pytest.mark.parametrize(
    ("batch", "max_items", "wrapper", "answers", "path"),
    [
        (1, 1, None, None, None),  # the single-item relay: the plain endpoint, one message per request
        (50, 50, "{records: @}", "results[].status", "/bulk"),
    ],
)
def test_bulk_variables_send_the_orders_destination_to_the_standin(
    make_settings: Any, batch: int, max_items: int, wrapper: str | None, answers: str | None, path: str | None
) -> None:
    env = env_with(TRICKLE_ROUTES_FILE=str(BENCH_ROUTES))
    variables = bulk_variables("orders", env, "http://127.0.0.1:4567", batch)
    assert set(variables) <= {naming.destination_variable("orders", f) for f in ("url", *BULK_FIELDS)}
    orders = make_settings(TRICKLE_ROUTES_FILE=str(BENCH_ROUTES), **variables).destination("orders")
    assert orders.url == "http://127.0.0.1:4567/items"
    assert orders.batch_max_items == max_items
    assert (
        orders.batch_wrapper and orders.batch_wrapper.text,
        orders.batch_results and orders.batch_results.text,
    ) == (
        wrapper,
        answers,
    )
    assert (orders.path and orders.path.text) == path
    if path is not None:  # where the drain sends a batch is where the stand-in takes one
        assert with_path("/items", path) == bulk_endpoint(orders.url).path == "/items/bulk"


def test_the_bench_stage_reads_the_bench_routes_file_whatever_destinations_the_local_stage_has() -> None:
    """The local stage names the variables of every destination of chalicelib/routes.toml; the bench
    reads its own routes file, which has two of them."""
    env = bench_env("http://127.0.0.1:5000", {"orders": "http://127.0.0.1:6000/items"})
    settings = load_settings(env)
    assert sorted(settings.destinations) == ["crm", "orders"]
    assert settings.destination("orders").url.startswith("http://127.0.0.1:6000/")  # the stage's path kept
    assert env["TRICKLE_ROUTES_FILE"] == str(BENCH_ROUTES)
