"""`./dev`, the developer commands: a mistyped command is named, with the usage, before any setup."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from trickle_local.stage import PROJECT_DIR


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
    assert bare.returncode == 2 and bare.stderr == helped.stdout
