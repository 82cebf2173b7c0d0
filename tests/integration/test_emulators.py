"""`start_emulator`: each emulator answers boto3 on loopback, forgets on reset, and its process is
gone after stop; a missing ministack venv and a taken port fail with messages that say what to do."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.fakes import taken_port
from trickle_local.emulators import (
    Emulator,
    EmulatorName,
    EmulatorStartError,
    EmulatorUnavailableError,
    ProcessEmulator,
    emulator_from_env,
    start_emulator,
)
from trickle_local.ports import PortInUseError, check_free
from trickle_project.aws import use_local_credentials
from trickle_project.stage import PROJECT_DIR


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def serves_and_forgets(emulator: Emulator) -> None:
    sqs = boto3.client("sqs", endpoint_url=emulator.endpoint_url)
    url = sqs.create_queue(QueueName="probe.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    assert url == f"{emulator.endpoint_url}/123456789012/probe.fifo"  # the same account on both
    emulator.reset()
    assert sqs.list_queues().get("QueueUrls", []) == []


@pytest.mark.parametrize(("name", "own_process"), [("moto", True), ("ministack", False)])
def test_an_emulator_in_its_own_process_serves_forgets_on_reset_and_stops(
    name: EmulatorName, own_process: bool
) -> None:
    use_local_credentials()
    emulator = start_emulator(name, own_process=own_process)
    try:
        assert emulator.name == name
        assert emulator.endpoint_url == f"http://127.0.0.1:{emulator.port}" == emulator.url
        assert emulator.pid != os.getpid() and alive(emulator.pid)
        serves_and_forgets(emulator)
    finally:
        emulator.stop()
    emulator.stop()  # idempotent
    assert not listening("127.0.0.1", emulator.port) and not alive(emulator.pid)


def test_moto_in_process_is_this_process(endpoint: Emulator) -> None:
    """The suite's own endpoint (moto's state is per process: a second in-process moto would share
    it, so this test uses the session's rather than starting one)."""
    if endpoint.name != "moto":
        pytest.skip("the suite runs on ministack (TRICKLE_EMULATOR)")
    assert endpoint.pid == os.getpid() and endpoint.endpoint_url == endpoint.url
    serves_and_forgets(endpoint)


def test_ministack_binds_loopback_only() -> None:
    emulator = start_emulator("ministack")
    try:
        sockets = Path(f"/proc/{emulator.pid}/net/tcp").read_text().splitlines()[1:]
        port_hex = f"{emulator.port:04X}"
        listening_on = {line.split()[1] for line in sockets if line.split()[3] == "0A"}  # 0A: LISTEN
        assert f"0100007F:{port_hex}" in listening_on  # 127.0.0.1
        assert f"00000000:{port_hex}" not in listening_on  # not 0.0.0.0
    finally:
        emulator.stop()


def test_a_missing_ministack_venv_names_dev_setup(tmp_path: Path) -> None:
    with pytest.raises(EmulatorUnavailableError) as missing:
        start_emulator("ministack", ministack_venv=tmp_path / ".venv-ministack")
    assert "./dev setup" in str(missing.value) and str(tmp_path) in str(missing.value)


@pytest.fixture
def taken() -> Iterator[int]:
    with taken_port() as port:
        yield port


@pytest.mark.parametrize("name", ["moto", "ministack"])
def test_a_taken_port_is_refused_before_anything_starts(name: EmulatorName, taken: int) -> None:
    with pytest.raises(PortInUseError) as refused:
        start_emulator(name, taken)
    assert f"port {taken} (AWS endpoint)" in str(refused.value)


LEFT_RUNNING = """
import os, sys
from trickle_local.emulators import start_emulator
emulator = start_emulator("ministack")
print(emulator.port, emulator.pid, flush=True)
sys.stdin.read()
os._exit(0)  # gone without stopping it, as a run killed outright
"""


def test_a_port_held_by_an_emulator_a_run_started_is_named_with_its_pid_and_how_to_stop_it() -> None:
    run = subprocess.Popen(
        [sys.executable, "-c", LEFT_RUNNING],
        cwd=PROJECT_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pid = 0
    try:
        port, pid = map(int, (run.stdout or []).readline().split())  # start_emulator has a deadline
        with pytest.raises(PortInUseError) as held:
            check_free("127.0.0.1", port, "AWS endpoint")
        assert (
            f"held by the ministack emulator (pid {pid}) of a Trickle run still running (pid {run.pid})"
            in str(held.value)
        )

        run.communicate("", timeout=60)
        with pytest.raises(PortInUseError) as left:
            check_free("127.0.0.1", port, "AWS endpoint")
        assert str(left.value) == (
            f"port {port} (AWS endpoint) is held by a ministack emulator an earlier Trickle run left"
            f" running (pid {pid}); stop it with: kill {pid}; or pick another port with --endpoint-port N"
            " (or --ephemeral-ports for free ones)"
        )
    finally:
        run.kill()
        if pid and alive(pid):
            workdir = os.readlink(f"/proc/{pid}/cwd")
            os.kill(pid, signal.SIGKILL)
            shutil.rmtree(workdir, ignore_errors=True)


def test_a_process_that_exits_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    emulator = ProcessEmulator(
        "ministack",
        ["/bin/sh", "-c", "echo no such option >&2; exit 3"],
        {},
        1,
        "/",
        "/",
        tmp_path / "work",
        "127.0.0.1",
    )
    with pytest.raises(EmulatorStartError) as failed:
        emulator.wait_ready(30)
    assert "status 3" in str(failed.value) and "no such option" in str(failed.value)


def test_a_process_that_never_answers_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    emulator = ProcessEmulator(
        "ministack", ["/bin/sleep", "60"], {}, 1, "/", "/", tmp_path / "work", "127.0.0.1"
    )
    with pytest.raises(EmulatorStartError) as failed:
        emulator.wait_ready(0.5)
    assert "did not answer" in str(failed.value) and not alive(emulator.pid)


def test_the_suite_variable_picks_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRICKLE_EMULATOR", raising=False)
    assert emulator_from_env() == "moto"
    monkeypatch.setenv("TRICKLE_EMULATOR", "ministack")
    assert emulator_from_env() == "ministack"
    monkeypatch.setenv("TRICKLE_EMULATOR", "localstack")
    with pytest.raises(ValueError, match="TRICKLE_EMULATOR='localstack'"):
        emulator_from_env()
