"""`./dev`, the developer commands: a mistyped command is named, with the usage, before any setup."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from trickle_project.stage import PROJECT_DIR


def dev(where: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The script alone in an empty directory, with a Python that fails: setup would show; the
    browser is taken as installed unless `env` says otherwise."""
    shutil.copy(PROJECT_DIR / "dev", where / "dev")
    base = {"PATH": os.environ["PATH"], "PYTHON": "false", "CHROMIUM": "sh", "CHROMEDRIVER": "sh"}
    return subprocess.run(
        ["bash", str(where / "dev"), *args],
        cwd=where,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=30,
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
        "python | -m pytest -m (not integration or smoke) and not slow and not browser"
        " --hypothesis-profile=fast -x"
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


def stub_apt(where: Path, uid: str) -> tuple[Path, Path]:
    """An apt-get and a sudo (which runs what it is given) that log their arguments, and an `id` that
    says the user is `uid`, first on PATH."""
    log, bin_dir = where / "apt.log", where / "stubs"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> "{log}"\n')
    (bin_dir / "sudo").write_text(f'#!/bin/sh\necho "sudo $*" >> "{log}"\nshift\nexec "$@"\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    return log, bin_dir


@pytest.mark.parametrize("uid", ["0", "1000"])
def test_test_installs_the_browser_through_apt_when_it_is_missing(tmp_path: Path, uid: str) -> None:
    stub_venvs(tmp_path)
    log, bin_dir = stub_apt(tmp_path, uid)
    missing = {"CHROMIUM": "no-such-chromium", "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    fast = dev(tmp_path, "test", "--fast", **missing)
    assert fast.returncode == 0 and not log.exists()  # the fast lane needs no browser
    tested = dev(tmp_path, "test", "-k", "console", **missing)

    assert tested.returncode == 0, tested.stderr
    assert "== installing chromium and chromium-driver" in tested.stderr
    apt = ["apt-get update -qq", "apt-get install -y -qq chromium chromium-driver"]
    if uid == "0":
        assert log.read_text().splitlines() == apt
    else:  # through sudo, asked never to prompt
        sudo = ["sudo -n true", "sudo -n " + apt[0], apt[0], "sudo -n " + apt[1], apt[1]]
        assert log.read_text().splitlines() == sudo


def test_without_apt_the_browser_missing_is_one_message_and_setup_goes_on(tmp_path: Path) -> None:
    stub_venvs(tmp_path)

    done = dev(tmp_path, "setup", CHROMEDRIVER="no-such-driver", APT_GET="no-such-apt-get")

    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "the browser tests need chromium and chromium-driver, and there is no apt-get here: install them with"
        " your package manager (Debian: apt-get install -y chromium chromium-driver), or leave the tests out"
        " with -m 'not browser'"
    ]
