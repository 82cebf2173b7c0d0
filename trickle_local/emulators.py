"""The AWS emulators Trickle runs on locally: moto and ministack, behind one small interface.

Both speak the AWS wire protocol on loopback; the local runtime, the integration tests and the bench
pick one by name (docs/emulators.md).

    from trickle_local.emulators import start_emulator

    emulator = start_emulator("ministack", port=0)   # or "moto"; port 0 picks a free one
    emulator.name           # "moto" | "ministack"
    emulator.endpoint_url   # "http://127.0.0.1:<port>" (also `.url`, `.host`, `.port`)
    emulator.pid            # the process serving it, for CPU readings from /proc
    emulator.reset()        # forget every resource, as a fresh account would have
    emulator.stop()         # shut it down (a subprocess: its process group terminated, waited on,
                            # killed if need be)

- `moto`: moto's ThreadedMotoServer in this process (pid = this process), with the local runtime's
  patches (`trickle_local.endpoint`); `start_emulator("moto", port, own_process=True)` runs the same
  in a subprocess of this interpreter instead, so its CPU reads apart from the caller's.
- `ministack`: `.venv-ministack/bin/ministack` as a subprocess (its own virtual environment, made by
  `./dev setup`: it pins a botocore of its own), bound to 127.0.0.1, persistence off, warnings only
  (its log goes to a file, quoted if it fails to start), account 123456789012 and us-east-1 like moto.

Starting waits for the emulator's health check until `deadline_s`; a process that exits or never
answers raises `EmulatorStartError` with the end of its log (and is stopped, as it is when a stop
signal interrupts the start); a missing ministack venv raises `EmulatorUnavailableError`, naming
`./dev setup`. A taken port raises `PortInUseError` before anything starts; one held by an emulator
a Trickle run started (and left running) is named as such (`trickle_local.ports`).
`emulator_from_env()` reads `TRICKLE_EMULATOR` (how the integration suite is pointed at one).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal, Protocol, get_args

import requests

from trickle_local import signals
from trickle_local.ports import check_free, record_holder
from trickle_project.aws import free_port
from trickle_project.stage import PROJECT_DIR

EmulatorName = Literal["moto", "ministack"]
EMULATORS: tuple[EmulatorName, ...] = get_args(EmulatorName)
ENV_VARIABLE = "TRICKLE_EMULATOR"
MINISTACK_VENV = PROJECT_DIR / ".venv-ministack"
ACCOUNT_ID = "123456789012"  # moto's default account: the same ARNs on both
REGION = "us-east-1"


class Emulator(Protocol):
    """A running emulator (see the module docstring)."""

    @property
    def name(self) -> EmulatorName: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def endpoint_url(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def pid(self) -> int: ...
    def reset(self) -> None: ...
    def stop(self) -> None: ...


class EmulatorUnavailableError(RuntimeError):
    """The emulator is not installed here."""


class EmulatorStartError(RuntimeError):
    """The emulator's process exited or did not answer its health check in time."""


def emulator_name(text: str, source: str = ENV_VARIABLE) -> EmulatorName:
    if text not in EMULATORS:
        raise ValueError(f"{source}={text!r}: not an emulator; use one of {', '.join(EMULATORS)}")
    return text


def emulator_from_env(default: EmulatorName = "moto") -> EmulatorName:
    """`TRICKLE_EMULATOR` if set (an unknown name is an error naming the variable), else `default`."""
    return emulator_name(os.environ.get(ENV_VARIABLE) or default)


def ministack_command(venv: Path = MINISTACK_VENV) -> list[str]:
    program = venv / "bin" / "ministack"
    if not os.access(program, os.X_OK):
        raise EmulatorUnavailableError(
            f"ministack is not installed: {program} is missing. Run ./dev setup (it creates"
            f" {venv.name}/ with the pinned ministack), or pick --emulator moto."
        )
    return [str(program)]


class ProcessEmulator:
    """An emulator in a subprocess: health-checked at start, terminated on stop (and at exit)."""

    def __init__(
        self,
        name: EmulatorName,
        command: list[str],
        env: dict[str, str],
        port: int,
        health_path: str,
        reset_path: str,
        workdir: Path,
        host: str = "127.0.0.1",
    ) -> None:
        self._name: EmulatorName = name
        self._host = host
        self._port = port
        self._health_path = health_path
        self._reset_path = reset_path
        self._workdir = workdir
        self._log_path = workdir / f"{name}.log"
        self._stopped = threading.Lock()
        workdir.mkdir(parents=True, exist_ok=True)
        # Its own process group: Ctrl-C in the terminal reaches the run alone, which stops the
        # emulator last (after the handlers that call it), and `stop` signals whatever it started.
        with self._log_path.open("wb") as log, signals.deferred():
            self._process = subprocess.Popen(
                command,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
            atexit.register(self.stop)
        record_holder(workdir, name, self._process.pid, port, self.endpoint_url + health_path)

    @property
    def name(self) -> EmulatorName:
        return self._name

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def url(self) -> str:
        return self.endpoint_url

    @property
    def pid(self) -> int:
        return self._process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, deadline_s: float) -> ProcessEmulator:
        """Stops the process on the way out if it is not ready (a stop signal while it starts, too)."""
        try:
            return self._wait_ready(deadline_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline_s: float) -> ProcessEmulator:
        deadline = time.monotonic() + deadline_s
        health = self.endpoint_url + self._health_path
        while True:
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                raise EmulatorStartError(f"{self._name} exited with status {code} at start:\n{tail}")
            try:
                if requests.get(health, timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                raise EmulatorStartError(
                    f"{self._name} did not answer {health} within {deadline_s:g}s:\n{tail}"
                )
            time.sleep(0.05)

    def reset(self) -> None:
        requests.post(self.endpoint_url + self._reset_path, timeout=30).raise_for_status()

    def stop(self) -> None:
        """Idempotent: SIGTERM to its process group, up to 10 s to exit, then SIGKILL to the group
        (whatever is left of it; also if the wait is interrupted); its temporary files removed."""
        if not self._stopped.acquire(blocking=False):
            return
        atexit.unregister(self.stop)
        try:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
        finally:
            self._signal_group(signal.SIGKILL)
            self._process.wait()
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _signal_group(self, signum: int) -> None:
        """The group keeps the leader's pid as its id while any member lives, even after the
        leader was reaped; with none left there is nothing to signal."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without anything that would make the emulator persist or leave loopback."""
    drop = {"LOCALSTACK_PERSISTENCE", "PERSIST_STATE", "S3_PERSIST", "DOCKER_HOST", "SERVICES"}
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def _start_ministack(host: str, port: int, deadline_s: float, venv: Path) -> ProcessEmulator:
    command = ministack_command(venv)
    workdir = Path(tempfile.mkdtemp(prefix="trickle-ministack-"))
    env = _child_env(
        {
            "GATEWAY_PORT": str(port),
            "BIND_HOST": host,
            "MINISTACK_HOST": host,  # the host in the URLs it hands out (queue URLs)
            "MINISTACK_ACCOUNT_ID": ACCOUNT_ID,
            "MINISTACK_REGION": REGION,
            "PERSIST_STATE": "0",
            "S3_PERSIST": "0",
            "LOG_LEVEL": "WARNING",
            "TMPDIR": str(workdir),  # its pid file
        }
    )
    emulator = ProcessEmulator(
        "ministack", command, env, port, "/_ministack/health", "/_ministack/reset", workdir, host
    )
    return emulator.wait_ready(deadline_s)


def _start_moto_process(host: str, port: int, deadline_s: float, speed_up: bool) -> ProcessEmulator:
    command = [sys.executable, "-m", "trickle_local.emulators", "moto", "--host", host, "--port", str(port)]
    if not speed_up:
        command.append("--slow-moto")
    workdir = Path(tempfile.mkdtemp(prefix="trickle-moto-"))
    env = _child_env({"PYTHONPATH": str(PROJECT_DIR)})
    emulator = ProcessEmulator("moto", command, env, port, "/moto-api/", "/moto-api/reset", workdir, host)
    emulator.wait_ready(deadline_s)
    from trickle_local.endpoint import MotoEndpoint  # moto is imported only when it is used

    MotoEndpoint.configure(emulator.endpoint_url)  # idempotent; the child set it before serving too
    return emulator


def start_emulator(
    name: EmulatorName,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    own_process: bool = False,
    speed_up: bool = True,
    deadline_s: float = 60.0,
    ministack_venv: Path = MINISTACK_VENV,
) -> Emulator:
    """Start `name` on `host:port` (0: a free port) and return it once it answers (module docstring).

    `own_process` matters for moto only (ministack always runs in its own); `speed_up=False` leaves
    moto's SQS clock unpatched (`--slow-moto`)."""
    check_free(host, port, "AWS endpoint")
    if name == "ministack":
        return _start_ministack(host, port or free_port(host), deadline_s, ministack_venv)
    if own_process:
        return _start_moto_process(host, port or free_port(host), deadline_s, speed_up)
    from trickle_local.endpoint import MotoEndpoint

    return MotoEndpoint(host=host, port=port, speed_up=speed_up).start()


def main(argv: list[str] | None = None) -> int:
    """`python -m trickle_local.emulators moto|ministack --port N`: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m trickle_local.emulators",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples on their lines
    )
    parser.add_argument("name", choices=EMULATORS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--slow-moto", action="store_true", help="leave moto's SQS clock unpatched")
    args = parser.parse_args(argv)
    try:
        with signals.stopping():
            emulator = start_emulator(args.name, args.port, host=args.host, speed_up=not args.slow_moto)
            try:
                print(
                    f"{emulator.name} serving {emulator.endpoint_url} (pid {emulator.pid})",
                    file=sys.stderr,
                    flush=True,
                )
                threading.Event().wait()
            finally:
                emulator.stop()
    except signals.Stopped:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
