"""The embedded AWS endpoint: moto's server on loopback, speaking the AWS wire protocol."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from typing import Literal

import requests
from moto.server import ThreadedMotoServer
from moto.sqs import models as sqs_models

from trickle_local.ports import check_free

# Re-exported: the local AWS plumbing lives in trickle_project.aws (no moto import there).
from trickle_project.aws import LOCAL_CREDENTIALS, SERVICES, clients, free_port, use_local_credentials

__all__ = [
    "LOCAL_CREDENTIALS",
    "SERVICES",
    "MotoEndpoint",
    "clients",
    "free_port",
    "release_at_zero_at_once",
    "speed_up_moto_sqs",
    "use_local_credentials",
]


def speed_up_moto_sqs() -> None:
    """moto's SQS checks every message's visibility on every call (and on every message sent, via
    the queue's attribute counts), reading the clock through datetime arithmetic each time; at a few
    thousand messages that alone makes a send take tenths of a second. Same clock, same
    milliseconds, read with `time.time()`: identical behaviour, about 25x faster at depth 1,500
    (docs/emulators.md, "Emulator gaps")."""
    original = sqs_models.unix_time_millis
    if getattr(original, "_trickle_fast", False):
        return

    def unix_time_millis(dt: datetime | None = None) -> float:
        return time.time() * 1000.0 if dt is None else float(original(dt))

    unix_time_millis._trickle_fast = True  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = unix_time_millis


def release_at_zero_at_once() -> None:
    """On AWS, ChangeMessageVisibility to 0 makes a message visible (its group unlocked) at once.
    moto 5.2 sets it visible from the current millisecond on and tests `now > visible_at`, so within
    that millisecond the message stays in flight and its group locked until some later receive walks
    past it; when no receive comes before the group's held head reappears, moto hands out the tail
    first (docs/emulators.md, "Emulator gaps"). A zero timeout here means visible from the millisecond
    before."""
    original = sqs_models.Message.change_visibility
    if getattr(original, "_trickle_original", None):
        return

    def change_visibility(message: sqs_models.Message, visibility_timeout: int) -> None:
        original(message, visibility_timeout)
        if int(visibility_timeout) == 0:
            message.visible_at = sqs_models.unix_time_millis() - 1

    change_visibility._trickle_original = original  # type: ignore[attr-defined]
    sqs_models.Message.change_visibility = change_visibility  # type: ignore[method-assign, assignment]


class _NotImplementedQuietly(logging.Filter):
    """moto answers an API it lacks (StartMessageMoveTask) with a 500 and werkzeug logs the whole
    traceback, once per botocore retry; the caller handles the error (and logs it at debug level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()  # werkzeug formats the traceback into the message
        return not (text.startswith("Error on request") and "\nNotImplementedError" in text)


class MotoEndpoint:
    """moto in this process; an `Emulator` (trickle_local.emulators) named "moto"."""

    name: Literal["moto"] = "moto"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, speed_up: bool = True) -> None:
        self.host = host
        self.speed_up = speed_up
        self.port = port or free_port(host)
        self._server = ThreadedMotoServer(ip_address=host, port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint_url(self) -> str:
        return self.url

    @property
    def pid(self) -> int:
        return os.getpid()

    def start(self) -> MotoEndpoint:
        """Raises PortInUseError if the port is taken (moto's server would print and hang)."""
        check_free(self.host, self.port, "AWS endpoint")
        werkzeug = logging.getLogger("werkzeug")
        werkzeug.setLevel(logging.ERROR)
        if not any(isinstance(f, _NotImplementedQuietly) for f in werkzeug.filters):
            werkzeug.addFilter(_NotImplementedQuietly())
        if self.speed_up:
            speed_up_moto_sqs()
        release_at_zero_at_once()
        # moto's ASL interpreter calls SQS and the rest on localhost:MOTO_PORT (one endpoint per process).
        os.environ["MOTO_PORT"] = str(self.port)
        self._server.start()
        self.configure(self.url)
        return self

    @staticmethod
    def configure(url: str) -> None:
        """moto only stores state machines unless its configuration says to run them (with its ASL
        interpreter, `waitForTaskToken` included): Step Functions callbacks are tested end to end."""
        config = {"stepfunctions": {"execute_state_machine": True}}
        requests.post(f"{url}/moto-api/config", json=config, timeout=10).raise_for_status()

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every resource, as a fresh account would have."""
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
