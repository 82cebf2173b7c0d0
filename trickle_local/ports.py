"""Ports the local runtime listens on: a taken one fails fast with a message that names it and the
flag that moves it, instead of a traceback or (moto's server) a hang. A run checks all its ports
before it starts anything and names every taken one at once.

An emulator a run starts in its own process leaves a record next to its files (`record_holder`),
removed when it stops; a taken port with a live record whose emulator still answers there is named
as that emulator, with its pid and how to stop it (a run killed outright leaves its emulator
behind: the next run would otherwise blame "another program")."""

from __future__ import annotations

import errno
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

# The server a port belongs to (its role, or the start of it) -> the command-line flag that moves it.
FLAGS = {"AWS endpoint": "--endpoint-port", "stand-in API": "--api-port", "routes": "--routes-port"}
HOLDER_RECORD = "port-holder.json"  # in the emulator's own temporary directory (trickle-*)
RUN = "run"  # a Holder that is the Trickle run itself
_LISTEN = "0A"  # a socket's state in /proc/net/tcp: listening


@dataclass(frozen=True)
class Holder:
    """An emulator a Trickle run started (`run_pid`), holding a port; or (`what` RUN) that run
    itself, whose routes server and stand-in APIs listen in its own process."""

    what: str
    pid: int
    run_pid: int

    def __str__(self) -> str:
        if self.what == RUN:
            return (
                f"held by a Trickle run still running (pid {self.run_pid}); stop that run"
                f" (Ctrl-C, or kill {self.run_pid})"
            )
        if alive(self.run_pid):
            return (
                f"held by the {self.what} emulator (pid {self.pid}) of a Trickle run still running"
                f" (pid {self.run_pid}); stop that run (Ctrl-C, or kill {self.run_pid})"
            )
        return (
            f"held by a {self.what} emulator an earlier Trickle run left running (pid {self.pid});"
            f" stop it with: kill {self.pid}"
        )


def flag(role: str) -> str | None:
    return next((flag for name, flag in FLAGS.items() if role.startswith(name)), None)


class PortInUseError(RuntimeError):
    def __init__(self, port: int, role: str, holder: Holder | None = None) -> None:
        self.port = port
        self.role = role
        self.holder = holder
        moved = f" with {flag(role)} N" if flag(role) else ""
        by = f"is {holder}; or" if holder else "is in use by another program; stop it, or"
        super().__init__(
            f"port {port} ({role}) {by} pick another port{moved} (or --ephemeral-ports for free ones)"
        )

    def line(self) -> str:
        """This port in a list of several: what holds it and the flag that moves it."""
        by = str(self.holder) if self.holder else "in use by another program"
        moved = f"; {flag(self.role)} N moves it" if flag(self.role) else ""
        return f"port {self.port} ({self.role}): {by}{moved}"


class PortsInUseError(RuntimeError):
    """Several of a run's ports are taken: each is named, with what holds it and its flag."""

    def __init__(self, taken: list[PortInUseError]) -> None:
        self.taken = taken
        lines = [
            f"{len(taken)} ports are taken; stop what holds them, or move them:",
            *(f"  {error.line()}" for error in taken),
            "  (or --ephemeral-ports picks free ports for all)",
        ]
        super().__init__("\n".join(lines))


def in_use(error: OSError) -> bool:
    return error.errno == errno.EADDRINUSE


def check_free(host: str, port: int, role: str) -> None:
    """Bind and release `port` the way the servers bind it (address reuse on, as werkzeug and
    http.server do); port 0 means any free port and is always fine."""
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if in_use(exc):
                raise PortInUseError(port, role, holder_of(port)) from None
            raise


def check_all_free(host: str, wanted: dict[str, int]) -> None:
    """Every port of `wanted` (role -> port) free, or one error naming each taken one."""
    taken: list[PortInUseError] = []
    for role, port in wanted.items():
        try:
            check_free(host, port, role)
        except PortInUseError as error:
            taken.append(error)
    if len(taken) == 1:
        raise taken[0]
    if taken:
        raise PortsInUseError(taken)


def record_holder(workdir: Path, what: str, pid: int, port: int, probe_url: str) -> None:
    """Written by the run that started `pid` (removed with `workdir` when it stops it)."""
    record = {"what": what, "pid": pid, "port": port, "probe_url": probe_url, "run_pid": os.getpid()}
    (workdir / HOLDER_RECORD).write_text(json.dumps(record))


def holder_of(port: int) -> Holder | None:
    """The emulator a Trickle run started on `port`, if its process lives and it answers there; or
    the run itself, still running, if its process listens on `port` (its routes server, a stand-in
    API), so every port of a run still going is named as that run's."""
    records = []
    for path in Path(tempfile.gettempdir()).glob(f"trickle-*/{HOLDER_RECORD}"):
        try:
            record = json.loads(path.read_text())
            what, pid, run_pid = str(record["what"]), int(record["pid"]), int(record["run_pid"])
            if record["port"] == port and alive(pid) and answers(record["probe_url"]):
                return Holder(what, pid, run_pid)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # another user's, or half written: not ours to name
        records.append((pid, run_pid))
    runs = {run_pid for pid, run_pid in records if alive(pid) and alive(run_pid)}
    listener = listener_pid(port) if runs else None
    return Holder(RUN, listener, listener) if listener in runs and listener is not None else None


def listener_pid(port: int) -> int | None:
    """The process listening on TCP `port` (Linux: /proc/net/tcp for the socket's inode, then the
    process with that socket open), or None if unknown or not visible to this user."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for fd_dir in Path("/proc").glob("[0-9]*/fd") if inodes else ():
        try:
            if any(os.readlink(fd) in inodes for fd in fd_dir.iterdir()):
                return int(fd_dir.parent.name)
        except OSError:
            continue  # another user's process, or gone
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False
