"""The test tree itself: a unit module and an integration module run in one pytest call (the fast
lane, `./dev test --fast`, takes both)."""

from __future__ import annotations

import subprocess
import sys

from trickle_project.stage import PROJECT_DIR


def test_a_unit_and_an_integration_module_collect_in_one_run() -> None:
    """Both directories have a conftest.py; as bare `conftest` modules the one loaded last would
    answer every `from conftest import ...`, and the other tree's modules fail to import."""
    files = ["tests/integration/test_drain.py", "tests/unit/test_drain_pool.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout[-2000:]
    assert " error" not in done.stdout.splitlines()[-1]
