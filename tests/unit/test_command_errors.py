"""Deploy commands a user gets wrong end with a line that says what to do, not a traceback (issue #22).

Each runs as a user would, in a clean environment: no AWS_* variables and a HOME without an AWS
configuration, so neither a region nor credentials come from the machine the suite runs on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trickle_deploy.session import NO_CREDENTIALS, NO_REGION
from trickle_project.stage import PROJECT_DIR, copy_project

BIN = Path(sys.executable).parent


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home)},
    )


def test_chalice_package_on_a_template_stage_names_the_command_that_packages_it(tmp_path: Path) -> None:
    done = run([str(BIN / "chalice"), "package", "--stage", "prod", str(tmp_path / "out")], tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip() == (
        "stage 'prod' names no resources, its stack (the merge template) sets them: package it with"
        " `python -m trickle_deploy.template --stage prod --package DIR`, not with chalice"
    )
    assert not (tmp_path / "out").exists()


def test_chalice_package_on_a_stage_with_a_bad_setting_says_what_to_fix(tmp_path: Path) -> None:
    """A bootstrapped stage (dev) with a mistyped value: the settings message alone, no traceback."""
    project = copy_project(tmp_path / "project")
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"]["dev"]["environment_variables"]["TRICKLE_DRAIN_BUDGET"] = "lots"
    config_path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(BIN / "chalice"), "package", "--stage", "dev", str(tmp_path / "out")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip() == (
        "invalid Trickle settings for stage 'dev': TRICKLE_DRAIN_BUDGET='lots' is not an integer"
    )


@pytest.mark.parametrize("module", ["trickle_deploy.bootstrap", "trickle_deploy.stream_settings"])
@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ([], [NO_REGION, NO_CREDENTIALS]),  # a fresh machine: neither
        (["--region", "eu-west-3"], [NO_CREDENTIALS]),
    ],
    ids=["no-region-no-credentials", "no-credentials"],
)
def test_a_deploy_command_without_region_or_credentials_says_what_to_set(
    tmp_path: Path, module: str, region: list[str], expected: list[str]
) -> None:
    done = run([sys.executable, "-m", module, "--stage", "dev", *region], tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == expected
    assert ("--region" in done.stderr and "AWS_REGION" in done.stderr) == (not region)
    assert "AWS_ACCESS_KEY_ID" in done.stderr and "AWS_PROFILE" in done.stderr


@pytest.mark.parametrize(
    "command",
    [["redrive", "orders"], ["retry", "m-1"], ["--stack-name", "trickle-prod", "skip", "m-1"]],
    ids=["redrive", "retry", "stack"],
)
def test_an_operator_command_without_region_or_credentials_says_what_to_set(
    tmp_path: Path, command: list[str]
) -> None:
    done = run([sys.executable, "-m", "trickle_deploy.operate", "--stage", "dev", *command], tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [NO_REGION, NO_CREDENTIALS]


def test_an_operator_command_on_a_local_endpoint_that_is_down_says_so(tmp_path: Path) -> None:
    """No AWS configuration and nothing listening (a port bound, never listened on: refused)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        done = run(
            [sys.executable, "-m", "trickle_deploy.operate", "--endpoint", url, "resume", "orders"], tmp_path
        )
    assert done.returncode == 1
    assert done.stderr == f"cannot reach {url}/ (is the local stack running? ./dev run)\n"
