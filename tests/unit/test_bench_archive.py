"""The bench's archive section (issue 26): its arithmetic as tables, and its table rendered alone."""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import render
from bench.archive import archive_cost, cost_rows, summary
from chalicelib.delivered_archive import FLUSH_BYTES


@pytest.mark.parametrize(
    ("bytes_per_message", "per_object", "days", "expected"),
    [
        # a PUT per message: $0.005 per 1,000 -> $5 a million; 1,073.74 bytes a message kept 730 hours
        # (30.4 days) is a GB-month per million: $0.023
        (2**30 / 1e6, 1, 730 / 24, {"puts": 1e6, "put_usd": 5.0, "gb_months": 1.0, "storage_usd": 0.023}),
        (
            2**30 / 1e6,
            500,
            730 / 24,
            {"puts": 2000.0, "put_usd": 0.01, "gb_months": 1.0, "storage_usd": 0.023},
        ),
        (100, 500, 30, {"puts": 2000.0, "put_usd": 0.01, "gb_months": 0.0919, "storage_usd": 0.0021}),
        (100, 500, 60, {"puts": 2000.0, "put_usd": 0.01, "gb_months": 0.1837, "storage_usd": 0.0042}),
    ],
)
def test_the_archive_s_bill_is_a_put_per_object_and_its_bytes_kept_the_days(
    bytes_per_message: float, per_object: int, days: float, expected: dict[str, float]
) -> None:
    cost = archive_cost(bytes_per_message, per_object, days)
    assert {k: cost[k] for k in expected} == pytest.approx(expected, abs=1e-4)
    assert cost["usd"] == pytest.approx(cost["put_usd"] + cost["storage_usd"], abs=1e-4)
    assert cost["replay_get_usd"] == pytest.approx(cost["puts"] * 0.0004 / 1000, abs=1e-4)


def test_an_object_holds_at_most_the_flush_bound_whatever_a_run_delivers() -> None:
    big = FLUSH_BYTES / 50  # 50 lines fill an object
    rows = {row["messages_per_run"]: row["puts"] for row in cost_rows(big, big / 2, 30)}
    assert rows == {1: 1e6, 10: 1e5, 100: 1e6 / 50, 500: 1e6 / 50}


def run(delivered: int, seconds: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {
        "delivered": delivered,
        "seconds": seconds,
        "throughput_msgs_per_s": delivered / seconds,
        "drain_cpu_ms_per_message": cpu,
        "relay_usd_per_million": 1.0,
        **extra,
    }


def section() -> dict[str, Any]:
    stored = {"objects": 1, "lines": 1000, "line_bytes": 800_000, "gzip_bytes": 100_000, "puts": 1}
    out = summary(
        {"off": [run(1000, 10, 1.0), run(1000, 10, 1.2)], "on": [run(1000, 10, 1.21, **stored)] * 2}, 30
    )
    writer = {
        "messages": 10,
        "objects": 1,
        "cpu_ms_per_message": 0.02,
        "lines_cpu_ms_per_message": 0.01,
        "gzip_cpu_ms_per_message": 0.005,
    }
    inputs = {"messages": 1000, "groups": 50, "workers": 4, "rounds": 2, "api_latency_ms": 20.0}
    return out | {"writer": writer, "inputs": inputs}


def test_the_summary_compares_the_pooled_runs_and_prices_what_was_stored() -> None:
    out = section()
    assert (out["drain_cpu_ratio"], out["throughput_ratio"]) == (1.1, 1.0)
    assert (out["archived_share"], out["objects"], out["puts_per_message"]) == (1.0, 2, 0.001)
    assert (out["line_bytes_per_message"], out["gzip_bytes_per_message"], out["compression"]) == (800, 100, 8)
    assert out["usd_per_million"] == cost_rows(800, 100, 30)
    assert out["share_of_relay_at_500"] == pytest.approx(out["usd_per_million"][-1]["usd"], abs=1e-3)


def test_the_archive_section_renders_alone() -> None:
    results = {"emulators": {"moto": {"archive": section()}}, "inputs": {}, "machine": {"cpus": 2}}
    text = render(results, ("archive",))
    assert text.startswith("### Delivered archive (moto)")
    assert "| 500 | 2,000 | 0.0100 |" in text
    assert "| with / without | 1.000 | 1.100 | - |" in text
