"""The schedule runner fires every `@app.schedule` handler of an app with a Lambda-like context."""

from __future__ import annotations

import time
from typing import Any

from chalice import Chalice, Cron, Rate

from trickle_local.runtime import Invoker, LocalRuntime, schedule_expressions

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


def test_rate_fires_on_compressed_time_with_the_functions_timeout_as_remaining_time() -> None:
    seen: list[dict[str, Any]] = []
    app = tiny_app(seen)
    runtime = LocalRuntime(app, Invoker(app, CONFIG, "local"), streams=None, stream_arn="", speed=600).start()
    time.sleep(0.55)  # 600x: a minute passes every 0.1 s
    runtime.stop()

    assert 3 <= len(seen) <= 6
    assert all(39_000 < s["remaining_ms"] <= 42_000 for s in seen)
    assert all("rare" not in s for s in seen)
    assert runtime.invoker.invocations.get("rare") is None


def test_drain_every_overrides_the_expression() -> None:
    seen: list[dict[str, Any]] = []
    app = tiny_app(seen)
    runtime = LocalRuntime(
        app, Invoker(app, CONFIG, "local"), streams=None, stream_arn="", drain_every_s=0.1
    ).start()
    time.sleep(0.35)
    runtime.stop()

    assert runtime.invoker.invocations["tick"] >= 2
    assert runtime.invoker.invocations["rare"] >= 2
