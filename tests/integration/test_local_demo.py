"""End to end on one machine: `python -m trickle_local demo` with a faulty stand-in API.

Runs as a subprocess: it starts its own moto server, whose in-memory state must not mix with the
test session's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from trickle_local.stage import PROJECT_DIR


def demo(*flags: str) -> tuple[int, dict[str, object], str]:
    """The command as a user runs it: none of this test session's TRICKLE_* variables (its routes
    file among them) leak into it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRICKLE_")}
    done = subprocess.run(
        [sys.executable, "-m", "trickle_local", "demo", "--ephemeral-ports", "--json", *flags],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_few_hundred_items_under_faults_arrive_once_each_in_order() -> None:
    code, summary, stderr = demo(
        "--items", "300", "--groups", "12", "--drain-every", "0.5",
        "--error-rate", "0.05", "--throttle-rate", "0.03", "--timeout-rate", "0.01", "--latency", "0.002",
        "--timeout", "240",
    )  # fmt: skip

    # 12 customer profiles (crm), 192 orders (orders) and 96 invoices (both): chalicelib/routes.toml
    assert summary["inserted"] == 300
    assert summary["destinations"] == {
        "orders": {"inserted": 288, "delivered": 288, "dead_lettered": 0, "lost": 0, "duplicates": 0,
                   "out_of_order": 0, "requests": summary["destinations"]["orders"]["requests"]},
        "crm": {"inserted": 108, "delivered": 108, "dead_lettered": 0, "lost": 0, "duplicates": 0,
                "out_of_order": 0, "requests": summary["destinations"]["crm"]["requests"]},
    }  # fmt: skip
    assert (summary["delivered"], summary["expected_deliveries"]) == (396, 396)
    assert (summary["lost"], summary["duplicates"], summary["out_of_order"]) == (0, 0, 0)
    assert summary["failed_requests"] > 0  # the faults really happened
    assert code == 0
    assert "delivered=" in stderr  # live progress was shown


def test_the_demo_fails_when_the_api_applies_retries_twice() -> None:
    code, summary, _ = demo(
        "--items", "40", "--groups", "4", "--drain-every", "0.5",
        "--timeout-rate", "0.15", "--ignore-idempotency", "--timeout", "120",
    )  # fmt: skip

    assert summary["duplicates"] > 0
    assert summary["ok"] is False
    assert code == 1


def test_executions_wait_for_the_relay_and_none_is_left_running() -> None:
    code, summary, _ = demo(
        "--items", "20", "--groups", "3", "--drain-every", "0.5", "--executions", "8",
        "--poison", "execution 5", "--timeout", "180",
    )  # fmt: skip

    # execution 5's item is refused by the stand-in: that execution fails with Trickle.Rejected
    assert summary["executions"] == {"started": 8, "succeeded": 7, "failed": 1, "running": 0}
    assert summary["lost"] == 0 and summary["ok"] is True and code == 0
