"""SIGTERM stops a local run the way Ctrl-C (SIGINT) does: as an exception in the main thread, so
every `finally` and exit callback runs and each server and emulator process is stopped. SIGTERM's
default action would end the process on the spot and leave the emulator's process running."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, FrameType | None], object] | int | None


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def _handled_by(handler: Handler) -> Iterator[dict[signal.Signals, Handler]]:
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield previous
    finally:
        for s, before in previous.items():
            signal.signal(s, signal.SIG_DFL if before is None else before)


@contextlib.contextmanager
def stopping() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise `Stopped` (handlers restored after it)."""
    with _handled_by(_stop):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Holds SIGINT and SIGTERM while the block runs (a child process started and registered for
    stopping as one step), then acts on one that arrived. Outside the main thread it does nothing:
    signals are handled in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    with _handled_by(lambda signum, _frame: arrived.append(signum)):
        yield
    if arrived:
        signal.raise_signal(arrived[0])
