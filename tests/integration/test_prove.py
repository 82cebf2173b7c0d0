"""`python -m trickle_prove`: each way of deploying a stage, end to end on an embedded emulator
of its own (docs/deploying.md), run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import EMULATOR
from trickle_deploy.emulator_shims import CHALICE, CLOUDFORMATION, RUN, gaps
from trickle_project.stage import PROJECT_DIR

STEPS = {
    "A": ["packaged", "stack created", "delivered", "roles", "removed"],
    "B": ["bootstrapped", "deployed", "stream set", "delivered", "roles", "removed"],
}


@pytest.mark.slow
def test_both_ways_deploy_deliver_to_stand_ins_and_name_the_gaps_they_work_around() -> None:
    project = {p.name: p.read_bytes() for p in (PROJECT_DIR / ".chalice").glob("*.json")}
    command = [
        sys.executable,
        "-m",
        "trickle_prove",
        "--way",
        "both",
        "--emulator",
        EMULATOR,
        "--json",
    ]

    done = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=900)

    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    reports = json.loads(done.stdout)
    assert [(r["way"], r["emulator"], r["stage"], r["ok"]) for r in reports] == [
        ("A", EMULATOR, "prod", True),
        ("B", EMULATOR, "dev", True),
    ]
    for report in reports:
        assert [s["name"] for s in report["steps"]] == STEPS[report["way"]], report
        # the first order, profile and invoice: the invoice goes to orders, crm and billing (OAuth2,
        # signed), the order to orders and orders_bulk (in a batch, at its stand-in's bulk endpoint)
        one, two = ({"expected": n, "delivered": n, "duplicates": 0} for n in (1, 2))
        assert report["delivered"] == {"orders": two, "crm": two, "billing": one, "orders_bulk": one}
        assert report["calls"] > 0 and report["denied"] == []
        deploy = CLOUDFORMATION if report["way"] == "A" else CHALICE
        assert report["gaps"] == [gap.line() for gap in gaps(EMULATOR, deploy, RUN)]
    assert {p.name: p.read_bytes() for p in (PROJECT_DIR / ".chalice").glob("*.json")} == project
