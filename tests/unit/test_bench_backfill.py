"""The bench's backfill section (issue 26): its figures as tables, and its table rendered alone."""

from __future__ import annotations

from typing import Any

import pytest

from bench.backfill import delay_ratio, goals, pacing, per_item, percentiles, render_backfill


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], {"count": 0, "p50_s": None, "p95_s": None, "max_s": None}),
        ([0.5], {"count": 1, "p50_s": 0.5, "p95_s": 0.5, "max_s": 0.5}),
        # nearest rank: the 10th of 20 and the 19th of 20
        ([n / 10 for n in range(20, 0, -1)], {"count": 20, "p50_s": 1.0, "p95_s": 1.9, "max_s": 2.0}),
        ([0.1234, 0.9876], {"count": 2, "p50_s": 0.123, "p95_s": 0.988, "max_s": 0.988}),
    ],
)
def test_live_delays_are_summed_up_by_nearest_rank(values: list[float], expected: dict[str, Any]) -> None:
    assert percentiles(values) == expected


def test_requests_per_item_count_the_operations_asked_or_every_one() -> None:
    counts = {"dynamodb:Scan": 500, "sqs:SendMessageBatch": 10_000, "sqs:GetQueueAttributes": 500}
    assert per_item(counts, 100_000, ("dynamodb:Scan", "sqs:SendMessageBatch")) == 0.105
    assert per_item(counts, 100_000) == 0.11
    assert per_item({}, 0) == 0.0


def test_pacing_counts_the_hand_ons_that_waited_and_the_seconds_they_asked() -> None:
    reports = [
        {"job": "j", "part": 0, "outcome": "paced", "pages": 2, "delay_s": 5},
        {"job": "j", "part": 0, "outcome": "paced", "pages": 1, "delay_s": 12},
        {"job": "j", "part": 1, "outcome": "done", "pages": 3},
        {"job": "j", "part": 0, "outcome": "done", "pages": 1},
    ]
    assert pacing(reports) == {
        "tasks": 4,
        "pages": 7,
        "paced": 2,
        "paced_seconds": 17,
        "paced_by_part": {"0": 2, "1": 0},
    }


@pytest.mark.parametrize(
    ("with_backfill", "without", "expected"),
    [
        ({"p95_s": 3.0}, {"p95_s": 1.5}, 2.0),
        ({"p95_s": 1.0}, {"p95_s": 3.0}, 0.33),
        ({"p95_s": None}, {"p95_s": 1.0}, None),  # nothing arrived
        ({"p95_s": 1.0}, {"p95_s": 0.0}, None),
    ],
)
def test_the_delay_ratio_is_with_over_without(
    with_backfill: dict[str, Any], without: dict[str, Any], expected: float | None
) -> None:
    assert delay_ratio(with_backfill, without, "p95_s") == expected


def section(ratios: dict[str, float | None], scheduled: float | None = None) -> dict[str, Any]:
    live = {"count": 10, "p50_s": 1.0, "p95_s": 2.0, "max_s": 3.0, "written": 10, "missing": 0}
    queueing = {
        f"segments_{s}": {
            "segments": s,
            "queued": 1000,
            "seconds": 10.0,
            "queued_per_s": 100.0,
            "scan_and_queue_per_item": value,
            "all_calls_per_item": value + 0.02,
            "requests": {"dynamodb:Scan": 5},
            "pacing": pacing([]),
        }
        for s, value in ((1, 0.105), (8, 0.16))
    }

    def run(key: str, ratio: float | None) -> dict[str, Any]:
        return {
            "segments": 4,
            "backfill_max_queued": 300 if key == "tuned" else 6000,
            "queued_per_s": 300.0,
            "delivered": 1000,
            "delivered_seconds": 10.0,
            "delivered_per_s": 100.0,
            "pacing": pacing([{"job": "j", "part": 0, "outcome": "paced", "delay_s": 5}]),
            "live": live,
            "ratio_p50": ratio,
            "ratio_p95": ratio,
            "scan_and_queue_per_item": 0.2 if key == "segments_8" else 0.104,
            "jobs_calls_per_item": 0.25,
        }

    delivery = {key: run(key, ratio) for key, ratio in ratios.items()}
    inputs = {
        "items": 1000,
        "delivery_items": 1000,
        "groups": 1000,
        "rate_limit_per_s": 100,
        "drain_workers": 4,
        "api_latency_ms": 20.0,
        "drain_idle_s": 1.0,
        "live_per_s": 4.0,
        "baseline_s": 20.0,
    }
    out = {"inputs": inputs, "queueing": queueing, "delivery": delivery, "baseline": {"live": live}}
    if scheduled is not None:
        timed = run("scheduled", scheduled) | {
            "schedule": {"period_s": 12.0, "budget": 200},
            "scan_and_queue_per_item": 0.17,  # a held part's page read again at each hand-on
        }
        out["scheduled"] = {
            "baseline": {"live": live | {"p95_s": 11.5}},
            "run": timed | {"backfill_max_queued": 100},
        }
    return out | {"goals": goals(out)}


def test_each_goal_is_judged_on_its_worst_run() -> None:
    verdicts = [
        (g["value"], g["met"])
        for g in section({"segments_1": 1.5, "segments_8": 30.0, "tuned": 1.9})["goals"]
    ]
    # the requests' worst is a delivery run's (the jobs function's own calls), the queueing runs' 0.16 below
    assert verdicts == [(0.2, False), (30.0, False), (1.9, True), (None, None)]
    verdicts = [(g["value"], g["met"]) for g in section({"segments_1": 1.5}, scheduled=2.5)["goals"]]
    assert verdicts == [
        (0.17, False),
        (1.5, True),
        (None, None),
        (2.5, False),
    ]  # the scheduled run's requests too
    verdicts = [(g["value"], g["met"]) for g in section({"segments_1": 1.5, "segments_8": None})["goals"]]
    assert verdicts[1:] == [(None, None), (None, None), (None, None)]  # no live item arrived: no verdict


def test_the_section_renders_its_goals_and_runs() -> None:
    text = "\n".join(render_backfill("ministack", section({"segments_1": 1.5, "tuned": 1.9}, scheduled=1.2)))
    assert "| AWS requests per item, Scan + SendMessageBatch (worst run) | <= 0.15 | 0.170 | missed |" in text
    assert "| 8 | 1,000 | 10.0 | 100 | 0.1600 | 0.1800 | 0 |" in text
    assert "| 4 segment(s), mark 300 | 300 | 1,000 in 10 s | 100.0 | 0.1040 | 0.2500 | 1 (5 s) |" in text
    assert (
        "| the same, the drain on a schedule, at its default mark (a run every 12 s of at most 200,"
        " mark 100) | <= 2x | 1.200 | met |" in text
    )
    scheduled = text[text.index("The drain on a schedule, a run every 12 s of at most 200:") :]
    assert (
        "| live load alone | - | - | - | - | - | - | - | 10 / 10 | 1.000 | 11.500 | 3.000 | - |" in scheduled
    )
    assert "| 4 segment(s), mark 100 | 300 | 1,000 in 10 s | 100.0 | 0.1700 | 0.2500 |" in scheduled
