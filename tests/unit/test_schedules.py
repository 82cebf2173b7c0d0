"""AWS schedule expressions evaluated as EventBridge does, including AWS-only cron syntax."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from chalice import Rate

from chalicelib.schedules import destination_schedules, drain_schedules, next_run, period_s
from trickle_local.schedules import ScheduleError, parse
from trickle_project import stage
from trickle_project.declared import app_schedules, declared_schedules

BASE = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday


def fire_times(expression: str, count: int = 3, start: datetime = BASE) -> list[str]:
    schedule = parse(expression, start)
    out: list[str] = []
    moment: datetime | None = start
    while moment is not None and len(out) < count:
        moment = schedule.next_after(moment)
        if moment is not None:
            out.append(moment.strftime("%Y-%m-%d %a %H:%M"))
    return out


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("rate(1 minute)", ["2026-11-23 Mon 10:01", "2026-11-23 Mon 10:02", "2026-11-23 Mon 10:03"]),
        ("rate(5 minutes)", ["2026-11-23 Mon 10:05", "2026-11-23 Mon 10:10", "2026-11-23 Mon 10:15"]),
        ("rate(2 hours)", ["2026-11-23 Mon 12:00", "2026-11-23 Mon 14:00", "2026-11-23 Mon 16:00"]),
        ("rate(1 day)", ["2026-11-24 Tue 10:00", "2026-11-25 Wed 10:00", "2026-11-26 Thu 10:00"]),
        ("cron(0/15 * * * ? *)", ["2026-11-23 Mon 10:15", "2026-11-23 Mon 10:30", "2026-11-23 Mon 10:45"]),
        (
            "cron(0 12 ? * MON-FRI *)",
            ["2026-11-23 Mon 12:00", "2026-11-24 Tue 12:00", "2026-11-25 Wed 12:00"],
        ),
        ("cron(0 12 ? * 2-6 *)", ["2026-11-23 Mon 12:00", "2026-11-24 Tue 12:00", "2026-11-25 Wed 12:00"]),
        ("cron(0 8 ? * 1 *)", ["2026-11-29 Sun 08:00", "2026-12-06 Sun 08:00", "2026-12-13 Sun 08:00"]),
        ("cron(0 12 L * ? *)", ["2026-11-30 Mon 12:00", "2026-12-31 Thu 12:00", "2027-01-31 Sun 12:00"]),
        ("cron(0 12 15W * ? *)", ["2026-12-15 Tue 12:00", "2027-01-15 Fri 12:00", "2027-02-15 Mon 12:00"]),
        ("cron(0 12 LW * ? *)", ["2026-11-30 Mon 12:00", "2026-12-31 Thu 12:00", "2027-01-29 Fri 12:00"]),
        ("cron(0 12 ? * 6#3 *)", ["2026-12-18 Fri 12:00", "2027-01-15 Fri 12:00", "2027-02-19 Fri 12:00"]),
        ("cron(0 12 ? * FRI#1 *)", ["2026-12-04 Fri 12:00", "2027-01-01 Fri 12:00", "2027-02-05 Fri 12:00"]),
        ("cron(0 12 ? * 6L *)", ["2026-11-27 Fri 12:00", "2026-12-25 Fri 12:00", "2027-01-29 Fri 12:00"]),
        ("cron(0 9 1 1 ? 2027)", ["2027-01-01 Fri 09:00"]),
        (
            "cron(0 8 ? * MON 2028-2029)",
            ["2028-01-03 Mon 08:00", "2028-01-10 Mon 08:00", "2028-01-17 Mon 08:00"],
        ),
        ("cron(0 9 1 1 ? 2020)", []),
    ],
)
def test_fire_times(expression: str, expected: list[str]) -> None:
    assert fire_times(expression) == expected


def test_w_moves_to_the_nearest_weekday() -> None:
    # 2026-11-15 is a Sunday: 15W fires on Monday the 16th.
    assert fire_times("cron(0 12 15W * ? *)", 1, datetime(2026, 11, 1, tzinfo=UTC)) == [
        "2026-11-16 Mon 12:00"
    ]


def test_chalice_renders_what_the_parser_reads() -> None:
    from chalice import Cron, Rate

    assert fire_times(Rate(10, unit=Rate.MINUTES).to_string(), 1) == ["2026-11-23 Mon 10:10"]
    assert fire_times(Cron(30, 9, "?", "*", "MON-FRI", "*").to_string(), 1) == ["2026-11-24 Tue 09:30"]


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(5 weeks)",
        "cron(0 12 * * MON *)",
        "cron(0 12 ? * ? *)",
        "cron(0 12 * * ?)",
        "cron(0 12 ? * 8 *)",
        "cron(99 12 * * ? *)",
        "every 5 minutes",
    ],
)
def test_expressions_eventbridge_refuses_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse(expression, BASE)


# `/status`'s next run (issue #27): chalicelib.schedules, with the standard library only, agrees with
# the local runtime's croniter-based evaluator above wherever it gives an answer.
CRON_CASES = [
    "cron(0/15 * * * ? *)",
    "cron(0 12 ? * MON-FRI *)",
    "cron(0 12 ? * 2-6 *)",
    "cron(0 8 ? * 1 *)",
    "cron(5,35 */2 * * ? *)",
    "cron(0 0 1 JAN,JUL ? *)",
    "cron(30 9 29 2 ? *)",
    "cron(0 10 * * ? 2027-2028)",
    "cron(0-10/5 3 ? * SAT *)",
]


@pytest.mark.parametrize("expression", CRON_CASES)
@pytest.mark.parametrize("start", [BASE, datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)])
def test_next_run_agrees_with_the_local_scheduler(expression: str, start: datetime) -> None:
    expected = parse(expression, start).next_after(start)
    assert expected is not None
    assert next_run(expression, None, start.timestamp()) == expected.timestamp()


@pytest.mark.parametrize(
    ("expression", "last_started_at", "now", "expected"),
    [
        ("rate(1 minute)", 1000.0, 1010.0, 1060.0),
        ("rate(2 minutes)", 1000.0, 1130.0, 1240.0),  # one run missed: the tick after now
        ("rate(1 hour)", 1000.0, 1000.0, 4600.0),
        ("rate(1 minute)", None, 1010.0, None),  # no run yet: its ticks are unknown
        ("cron(0 12 L * ? *)", None, 1010.0, None),  # L, W and # are not evaluated
        ("cron(0 12 15W * ? *)", None, 1010.0, None),
        ("cron(0 12 ? * 6#3 *)", None, 1010.0, None),
        ("cron(0 12 ? * MON-FRI 1999)", None, BASE.timestamp(), None),  # never again
        ("cron(61 12 * * ? *)", None, 1010.0, None),
        ("every minute", 1000.0, 1010.0, None),
    ],
)
def test_next_run(expression: str, last_started_at: float | None, now: float, expected: float | None) -> None:
    assert next_run(expression, last_started_at, now) == expected


NOON = datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("rate(1 minute)", 60.0),
        ("rate(2 minutes)", 120.0),
        ("rate(3 hours)", 10_800.0),
        ("cron(0/5 * * * ? *)", 300.0),
        ("cron(0 9 * * ? *)", 86_400.0),
        ("cron(0 9,17 * * ? *)", 57_600.0),  # from noon its next two: 17:00, then 09:00 the next day
        ("cron(0 9 L * ? *)", None),  # what next_run cannot tell
        ("every minute", None),
    ],
)  # fmt: skip
def test_the_time_between_two_runs(expression: str, expected: float | None) -> None:
    assert period_s(expression, NOON) == expected


class Source:
    """An event source as Chalice's app keeps it: a name, and a schedule if it is scheduled."""

    def __init__(self, name: str, schedule: object = None) -> None:
        self.name = name
        if schedule is not None:
            self.schedule_expression = schedule


def test_each_destinations_drain_schedule_is_read_from_the_apps_event_sources() -> None:
    sources = [
        Source("drain_orders", Rate(1, unit=Rate.MINUTES)),
        Source("drain_crm", "cron(0/5 * * * ? *)"),
        Source("ingest"),  # a stream handler: no schedule
        Source("drain_ghost", "rate(1 minute)"),  # no such destination
    ]
    assert drain_schedules(sources, ["orders", "crm", "billing"]) == {
        "orders": "rate(1 minute)",
        "crm": "cron(0/5 * * * ? *)",
    }


def test_app_py_s_schedules_read_from_its_source_are_those_chalice_registers() -> None:
    """`operate backfill` reads app.py's schedules without importing it: what it reads is what the
    app registers (imported in a fresh interpreter, as Lambda imports it, with the local stage)."""
    code = (
        "import json, app; print(json.dumps({s.name: s.schedule_expression.to_string() if not"
        " isinstance(s.schedule_expression, str) else s.schedule_expression for s in"
        " app.app.event_sources if hasattr(s, 'schedule_expression')}))"
    )
    # the stage's variables only: other tests leave theirs (a routes file since removed) in this
    # process's environment
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("TRICKLE_", "AWS_"))}
    found = subprocess.run(
        [sys.executable, "-c", code],
        cwd=stage.PROJECT_DIR,
        env=inherited | stage.stage_env("local"),
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stderr[-2000:]
    registered = json.loads(found.stdout.strip().splitlines()[-1])
    assert registered and app_schedules() == registered


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('Rate(5, unit=Rate.MINUTES), name="drain_a"', {"drain_a": "rate(5 minutes)"}),
        ("Rate(1, unit=Rate.HOURS)", {"f": "rate(1 hour)"}),  # no name: the function's
        ('"cron(0 9 * * ? *)", name="drain_c"', {"drain_c": "cron(0 9 * * ? *)"}),
        ('Cron(0, 9, "*", "*", "?", "*"), name="drain_d"', {"drain_d": "cron(0 9 * * ? *)"}),
        ('Rate(n, unit=Rate.MINUTES), name="drain_e"', {}),  # not a literal: no answer, not a guess
        ('every, name="drain_f"', {}),
        ('Rate(1), name="drain_g"', {}),  # not Chalice's arguments (no unit)
    ],
)
def test_a_schedule_is_read_from_source_only_when_it_is_written_out(
    arguments: str, expected: dict[str, str]
) -> None:
    assert declared_schedules(f"@app.schedule({arguments})\ndef f(e): pass\n") == expected
    assert declared_schedules('@app.route("/x")\ndef f(): pass\n') == {}


def test_each_destination_s_schedule_of_the_functions_declared() -> None:
    declared = {
        "drain_orders": "rate(1 minute)",
        "ingest_x": "rate(2 minutes)",
        "drain_ghost": "rate(1 minute)",
    }
    assert destination_schedules(declared, ["orders", "crm"]) == {"orders": "rate(1 minute)"}
