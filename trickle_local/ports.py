"""Ports the local runtime listens on: a taken one fails fast with a message that names it and the
flag that moves it, instead of a traceback or (moto's server) a hang."""

from __future__ import annotations

import errno
import socket

# The server a port belongs to -> the command-line flag that changes it.
FLAGS = {"AWS endpoint": "--endpoint-port", "stand-in API": "--api-port", "routes": "--routes-port"}


class PortInUseError(RuntimeError):
    def __init__(self, port: int, role: str) -> None:
        self.port = port
        self.role = role
        super().__init__(
            f"port {port} ({role}) is in use by another program; stop it, or pick another port with"
            f" {FLAGS.get(role, '--ephemeral-ports')} N (or --ephemeral-ports for free ones)"
        )


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
                raise PortInUseError(port, role) from None
            raise
