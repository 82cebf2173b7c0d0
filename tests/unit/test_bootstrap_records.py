"""Where a bootstrap records what it made, and which policy files are a stage's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from trickle_deploy.bootstrap import record_stage, recorded_from
from trickle_deploy.policies import stage_policy_files

EMULATED = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5050"}


@pytest.mark.parametrize(
    ("stage", "env", "endpoint", "recorded_in"),
    [
        ("dev", {}, None, "dev"),  # AWS: the stage itself
        ("dev", {}, "http://127.0.0.1:4566", "dev-emulator"),  # an emulator: beside it
        ("local", EMULATED, None, None),  # names its own endpoint: provisioned on every run
        ("local", EMULATED, "http://127.0.0.1:4566", None),
    ],
)
def test_a_bootstrap_records_on_aws_in_the_stage_and_on_an_emulator_beside_it(
    stage: str, env: dict[str, str], endpoint: str | None, recorded_in: str | None
) -> None:
    assert record_stage(stage, env, endpoint) == recorded_in


@pytest.mark.parametrize(
    ("stage", "made_from"),
    [
        ("dev-emulator", "dev"),
        ("dev", None),
        ("local-emulator", None),  # local records nowhere: no stage is its record
        ("prod-emulator", None),  # no such base stage here
    ],
)
def test_an_emulator_record_is_known_by_its_name_and_its_base(stage: str, made_from: str | None) -> None:
    stages = {"dev": {"environment_variables": {}}, "local": {"environment_variables": EMULATED}}
    assert recorded_from(stage, stages) == made_from


def test_a_stage_owns_only_the_policy_files_named_after_it_and_one_function(tmp_path: Path) -> None:
    names = [
        "policy-dev-ingest.json",
        "policy-dev-drain_orders.json",
        "policy-dev-emulator-ingest.json",
        "policy-devx-ingest.json",
        "config.json",
    ]
    for name in names:
        (tmp_path / name).write_text("{}")

    assert [p.name for p in stage_policy_files(tmp_path, "dev")] == [
        "policy-dev-drain_orders.json",
        "policy-dev-ingest.json",
    ]
    assert [p.name for p in stage_policy_files(tmp_path, "dev-emulator")] == [
        "policy-dev-emulator-ingest.json"
    ]
