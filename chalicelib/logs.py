"""Structured JSON logs through Powertools' `Logger`: one object per line on stderr, `extra` fields
(message_id, group_id, destination, ...) as keys, the Lambda context in every line of an invocation.
Secrets are never passed in."""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model
from chalice.app import Request

SERVICE = "trickle"
# Trickle's own loggers: `chalicelib.*` (the modules log through the standard library, so core code
# never imports Powertools) and `trickle.*` (the Powertools Logger itself, and the local runtime's).
LOGGER_NAMES = ("chalicelib", SERVICE)


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (Lambda's, a test's capture, a redirect).

    Ours, not Powertools' default handler: that one writes to `sys.stdout` as it was when the Logger
    was made, and stdout is the local runtime's (`demo --json` prints its summary there) and the
    Embedded Metric Format lines'."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        return


@functools.cache
def service_logger() -> Logger:
    """The one Powertools Logger of the process (a second `Logger(service=...)` would find this one
    configured and ignore a handler passed to it)."""
    logger = Logger(service=SERVICE, logger_handler=_CurrentStderr(), utc=True, use_rfc3339=True)
    logger.append_keys(name="%(name)s")  # which module logged the line
    return logger


def configure_logging(level: str) -> Logger:
    """JSON to stderr for Trickle's own loggers at `level`; idempotent, as tests import the app twice.
    `chalicelib` shares the Logger's handler, hence its formatter and the keys appended to it."""
    logger = service_logger()
    for name in LOGGER_NAMES:
        named = logging.getLogger(name)
        named.setLevel(level)
        named.propagate = False
        named.handlers = [logger.registered_handler]
    return logger


def context_keys(context: Any, cold_start: bool) -> dict[str, Any]:
    """The keys Powertools' `inject_lambda_context` adds, from a Lambda context."""
    return {"cold_start": cold_start, **vars(build_lambda_context_model(context))}


class LambdaContextKeys:
    """Chalice middleware: each line logged during an invocation carries `context_keys`.

    Ours instead of `Logger.inject_lambda_context` (through Chalice's `ConvertToMiddleware`), because
    that appends the keys to the formatter every thread shares: right on Lambda, one invocation per
    container at a time, but the local runtime runs all the app's functions in one process, one
    thread each, and would label one function's lines with another's request id. These keys are the
    invoking thread's (Powertools' `thread_safe_append_keys`, a ContextVar); the drain's workers run
    in a copy of that context. `cold_start` is per function for the same reason."""

    def __init__(self, logger: Logger) -> None:
        self._logger = logger
        self._started: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, event: Any, get_response: Callable[[Any], Any]) -> Any:
        context: Any = event.lambda_context if isinstance(event, Request) else event.context
        keys = context_keys(context, self._cold_start(context.function_name))
        self._logger.thread_safe_append_keys(**keys)
        try:
            return get_response(event)
        finally:
            self._logger.thread_safe_remove_keys(keys)

    def _cold_start(self, function: str) -> bool:
        if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
            return False  # initialised ahead of any request, as Powertools counts it
        with self._lock:
            first = function not in self._started
            self._started.add(function)
            return first
