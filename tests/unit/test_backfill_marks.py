"""Each destination's high-water mark for backfills and replays (`wiring.backfill_marks`): the one
the routes file or stage sets, else what one run of its drain takes, from its schedule in app.py;
and the time between its drain's runs (`wiring.drain_periods`), which the jobs' workers also hold by."""

from __future__ import annotations

import pytest

from chalicelib.wiring import backfill_marks, drain_periods
from tests.unit.conftest import MakeSettings

NOW = 1_796_385_600.0  # 2026-12-04T12:00:00Z


@pytest.mark.parametrize(
    ("env", "schedules", "expected"),
    [
        # orders at 100/s, crm at 2/s; a run's budget of 500: half of it at most
        ({}, {"orders": "rate(1 minute)", "crm": "rate(2 minutes)"}, {"orders": 250, "crm": 240}),
        ({}, {}, {"orders": 100, "crm": 20}),  # no schedule known: a second of the rate, at least 20
        ({"TRICKLE_DRAIN_BUDGET": "2000"}, {"orders": "rate(1 minute)"}, {"orders": 1000, "crm": 20}),
        (  # set: as set
            {"TRICKLE_DEST_ORDERS_BACKFILL_MAX_QUEUED": "150"},
            {"orders": "rate(1 minute)"},
            {"orders": 150, "crm": 20},
        ),
        ({}, {"orders": "cron(0/5 * * * ? *)", "crm": "cron(0 9 L * ? *)"}, {"orders": 250, "crm": 20}),
    ],
)  # fmt: skip
def test_a_mark_not_set_is_a_drain_runs_worth(
    make_settings: MakeSettings, env: dict[str, str], schedules: dict[str, str], expected: dict[str, int]
) -> None:
    settings = make_settings(
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="100", TRICKLE_DEST_CRM_RATE_LIMIT_PER_S="2", **env
    )
    assert backfill_marks(settings, drain_periods(settings, schedules, NOW)) == expected


def test_a_drain_s_period_is_its_schedule_s_and_none_without_one(make_settings: MakeSettings) -> None:
    settings = make_settings()
    assert drain_periods(settings, {"orders": "rate(2 minutes)", "crm": "cron(0/5 * * * ? *)"}, NOW) == {
        "orders": 120.0,
        "crm": 300.0,
    }
    assert drain_periods(settings, {"orders": "rate(1 minute)"}, NOW) == {"orders": 60.0, "crm": None}
