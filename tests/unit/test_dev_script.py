"""`./dev`, the developer commands: a mistyped command is named, with the usage, before any setup."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from trickle_project.stage import PROJECT_DIR


def dev(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The script alone in an empty directory, with a Python that fails: setup would show."""
    shutil.copy(PROJECT_DIR / "dev", where / "dev")
    env = {"PATH": os.environ["PATH"], "PYTHON": "false"}
    return subprocess.run(
        ["bash", str(where / "dev"), *args], cwd=where, env=env, capture_output=True, text=True, timeout=30
    )


def test_an_unknown_command_is_named_with_the_usage_and_exit_2_before_any_setup(tmp_path: Path) -> None:
    done = dev(tmp_path, "rnu")

    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "unknown command: rnu"
    assert "./dev run" in done.stderr and done.stdout == ""
    assert not (tmp_path / ".venv").exists()


def test_help_prints_the_usage_and_no_command_is_an_error(tmp_path: Path) -> None:
    helped, bare = dev(tmp_path, "help"), dev(tmp_path)

    assert helped.returncode == 0 and "./dev run" in helped.stdout and helped.stderr == ""
    assert bare.returncode == 2 and bare.stderr == "give a command:\n" + helped.stdout
    assert bare.stdout == "" and not (tmp_path / ".venv").exists()


def test_test_arguments_still_run_every_check_then_pytest_once_with_them(tmp_path: Path) -> None:
    log = stub_venvs(tmp_path)

    done = dev(tmp_path, "test", "-k", "drain")

    assert done.returncode == 0, done.stderr
    assert [line.split(" ")[0] for line in log.read_text().splitlines()] == [
        "ruff",
        "ruff",
        "mypy",
        "python",  # policies --check
        "python",
    ]
    assert pytest_calls(log) == ["python | -m pytest -k drain"]
    usage = dev(tmp_path, "help").stdout
    assert "(./dev test -k drain) the same checks, then pytest ARGS once" in usage


def stub_venvs(where: Path) -> Path:
    """.venv and .venv-ministack whose tools only log their arguments (and the emulator asked for)."""
    log = where / "calls.log"
    for venv in (".venv", ".venv-ministack"):
        bin_dir = where / venv / "bin"
        bin_dir.mkdir(parents=True)
        (where / venv / ".installed").touch()
        for tool in ("python", "ruff", "mypy"):
            stub = bin_dir / tool
            stub.write_text(f'#!/bin/sh\necho "{tool} ${{TRICKLE_EMULATOR:-}}| $*" >> "{log}"\n')
            stub.chmod(0o755)
    return log


def pytest_calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "-m pytest" in line]


def test_the_fast_lane_runs_the_checks_then_the_unit_and_smoke_tests_once_on_moto(tmp_path: Path) -> None:
    log = stub_venvs(tmp_path)

    done = dev(tmp_path, "test", "--fast", "-x")

    assert done.returncode == 0, done.stderr
    assert [line.split("|")[0] for line in log.read_text().splitlines()[:4]] == [
        "ruff ",
        "ruff ",
        "mypy ",
        "python ",
    ]
    assert pytest_calls(log) == [
        "python | -m pytest -m (not integration or smoke) and not slow --hypothesis-profile=fast -x"
    ]


def test_ci_s_test_command_still_runs_everything_on_moto_then_the_delivery_tests_on_ministack(
    tmp_path: Path,
) -> None:
    log = stub_venvs(tmp_path)

    done = dev(tmp_path, "test", "-q")  # what .ci/run runs

    assert done.returncode == 0, done.stderr
    whole, again = pytest_calls(log)
    assert whole == "python | -m pytest -q"
    assert again.startswith("python ministack| -m pytest -q tests/integration/test_delivery.py")
