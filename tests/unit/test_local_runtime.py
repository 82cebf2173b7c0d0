"""The schedule runner fires every `@app.schedule` handler of an app with a Lambda-like context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice import Chalice, Cron, Rate

from tests.fakes import FakeScheduleClock, until
from trickle_local.runtime import Clock, Invoker, LocalRuntime, schedule_expressions

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

CONFIG = {
    "version": "2.0",
    "app_name": "t",
    "stages": {"local": {"lambda_functions": {"tick": {"lambda_timeout": 42}}}},
}


def tiny_app(seen: list[dict[str, Any]]) -> Chalice:
    app = Chalice(app_name="t")

    @app.schedule(Rate(1, unit=Rate.MINUTES), name="tick")
    def tick(event: Any) -> None:
        seen.append({"remaining_ms": event.context.get_remaining_time_in_millis(), "time": event.time})

    @app.schedule(Cron(0, 12, "?", "*", "MON-FRI", "2099"), name="rare")
    def rare(event: Any) -> None:
        seen.append({"rare": True})

    return app


def test_schedules_are_read_from_the_app() -> None:
    assert schedule_expressions(tiny_app([])) == {
        "tick": "rate(1 minute)",
        "rare": "cron(0 12 ? * MON-FRI 2099)",
    }


def test_rate_fires_at_each_of_its_times_with_the_functions_timeout_as_remaining_time() -> None:
    seen: list[dict[str, Any]] = []
    app = tiny_app(seen)
    clock = FakeScheduleClock(START)
    runtime = LocalRuntime(app, Invoker(app, CONFIG, "local"), streams=None, stream_arn="", clock=clock)
    runtime.start()
    try:
        for minutes in (1, 2, 3):
            clock.advance(timedelta(minutes=1))
            until(lambda n=minutes: len(seen) == n)
    finally:
        runtime.stop()

    assert [s["time"] for s in seen] == [f"2026-01-01T12:0{minute}:00Z" for minute in (1, 2, 3)]
    assert all(39_000 < s["remaining_ms"] <= 42_000 for s in seen)
    assert runtime.invoker.invocations.get("rare") is None


def test_drain_every_overrides_the_expression() -> None:
    seen: list[dict[str, Any]] = []
    app = tiny_app(seen)
    clock = FakeScheduleClock(START)
    runtime = LocalRuntime(
        app, Invoker(app, CONFIG, "local"), streams=None, stream_arn="", drain_every_s=0.1, clock=clock
    )
    runtime.start()
    try:
        for runs in (1, 2):
            clock.advance(timedelta(seconds=0.1))
            until(
                lambda n=runs: (
                    runtime.invoker.invocations.get("tick") == runtime.invoker.invocations.get("rare") == n
                )
            )
    finally:
        runtime.stop()

    assert runtime.invoker.invocations == {"tick": 2, "rare": 2}


def test_schedule_time_runs_speed_times_as_fast_as_real_time() -> None:
    real = [100.0]
    clock = Clock(600, started_at=START, monotonic=lambda: real[0])
    real[0] += 0.1

    assert clock.now() == START + timedelta(minutes=1)
    assert clock.real_seconds_until(START + timedelta(minutes=3)) == pytest.approx(0.2)
    assert clock.wall_time(START + timedelta(minutes=3)) == START + timedelta(seconds=0.3)
