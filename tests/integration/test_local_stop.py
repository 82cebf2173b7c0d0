"""SIGTERM and SIGINT stop `python -m trickle_local up` whole: while it starts and once it serves, the
command exits without a traceback, no process it started survives and every port it listened on is
free again. Runs on ministack, whatever the suite's emulator: its server is a child process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fakes import until
from trickle_local.ports import check_free
from trickle_project.stage import PROJECT_DIR


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def emulator(pid: int) -> bool:
    """The ministack server the run starts: its program is in ministack's own venv. Not "ministack"
    anywhere in the command line: a child forked but not yet exec'd (the `file -b` the app's
    imports run, before the run handles signals) still shows the run's `--emulator ministack`."""
    try:
        return b".venv-ministack/" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("when", ["starting", "serving"])
def test_a_stop_signal_stops_every_process_and_frees_every_port(signum: int, when: str) -> None:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TRICKLE_")}
    run = subprocess.Popen(
        [sys.executable, "-m", "trickle_local", "up", "--emulator", "ministack", "--ephemeral-ports"],
        cwd=PROJECT_DIR,
        env=clean,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr or []), daemon=True)
    reader.start()
    started: set[int] = set()
    try:
        if when == "starting":  # the emulator's process is there, the run not yet serving
            # Not any child: importing the app runs `file -b python` (croniter's platform check),
            # and a signal then stops a run that has not begun (exit 143, as documented).
            until(lambda: any(emulator(pid) for pid in descendants(run.pid)), deadline_s=60, every_s=0.01)
            started = descendants(run.pid)
        else:
            until(lambda: any(line.startswith("Routes:") for line in lines), deadline_s=90)
            started = descendants(run.pid)
        assert started
        run.send_signal(signum)
        code = run.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        run.kill()
        for pid in started:
            if running(pid):
                os.kill(pid, signal.SIGKILL)

    output = "".join(lines)
    assert code == 0, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    assert [pid for pid in started if running(pid)] == []
    ports = {int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)", output)}
    assert when == "starting" or len(ports) == 6  # the endpoint, four stand-in APIs, the routes
    for port in ports:
        check_free("127.0.0.1", port, "any")
