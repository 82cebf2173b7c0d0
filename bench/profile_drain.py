"""`python -m bench.profile_drain`: the bench's drain run, alone, for a profiler to watch.

Fills a backlog through the relay's ingest, then drains it like `python -m bench` does (moto and the
stand-in API in processes of their own) and prints the drain's own CPU per delivered message.
`--cprofile FILE` profiles the drain's CPU time (`time.thread_time`, so waiting on a socket counts
for nothing) in its main thread and in every worker, merged into one pstats file; read it with
`python -m pstats FILE` (docs/benchmarks.md, "Where the drain's time goes"). `--batch N` (issue 25)
sends up to N messages per request to the bulk section's stand-in, a bulk endpoint; `--write-order
grouped` writes each group's messages one after another (`bench.stream.WRITE_ORDERS`). Reports
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3

from bench.harness import Bench, Calls
from bench.stream import WRITE_ORDERS, order_records
from chalicelib import drain_group, wiring
from chalicelib.drain_effects import Effects
from chalicelib.drain_group import GroupEffects
from chalicelib.drain_state import GroupResult, GroupRun
from chalicelib.logs import configure_logging
from chalicelib.model import ReceivedMessage
from chalicelib.policy import Rules
from trickle_local.emulators import EMULATORS
from trickle_local.endpoint import use_local_credentials


class ThreadProfiles:
    """One CPU-time profiler per thread that runs a group's deliveries, plus the main thread's."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._local = threading.local()
        self._lock = threading.Lock()

    def _mine(self) -> cProfile.Profile:
        profile: cProfile.Profile | None = getattr(self._local, "profile", None)
        if profile is None:
            profile = self._local.profile = cProfile.Profile(time.thread_time)
            with self._lock:
                self.profiles.append(profile)
        return profile

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        original = drain_group.deliver_group
        finish_own = Effects.finish_own

        def deliver_group(
            messages: list[ReceivedMessage], effects: GroupEffects, run: GroupRun, rules: Rules
        ) -> GroupResult:
            profile = self._mine()
            profile.enable()
            try:
                return original(messages, effects, run, rules)
            finally:
                profile.disable()

        def finished_on_worker(effects: Effects, result: GroupResult) -> None:
            profile = self._mine()
            profile.enable()
            try:
                finish_own(effects, result)
            finally:
                profile.disable()

        drain_group.deliver_group = deliver_group  # what the run hands each group's worker
        # a batched job's finish on its worker
        Effects.finish_own = finished_on_worker  # type: ignore[method-assign, assignment]
        main = self._mine()
        main.enable()
        try:
            yield
        finally:
            main.disable()
            drain_group.deliver_group = original
            Effects.finish_own = finish_own  # type: ignore[method-assign]

    def save(self, path: Path) -> None:
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        stats.dump_stats(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_drain", description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--emulator", choices=EMULATORS, default="ministack")
    parser.add_argument("--latency", type=float, default=0.02, help="the stand-in API's, in seconds")
    parser.add_argument("--repeat", type=int, default=1, help="backlogs drained one after another")
    parser.add_argument(
        "--batch", type=int, default=1, help="messages per request; over 1, to a bulk endpoint (issue 25)"
    )
    parser.add_argument(
        "--write-order", choices=WRITE_ORDERS, default="interleaved", help="how the backlog is written"
    )
    parser.add_argument("--cprofile", type=Path, help="write the drain's CPU profile (pstats) here")
    parser.add_argument(
        "--log-level", default="ERROR", help="Trickle's log level while draining (lines go to /dev/null)"
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    profiles = ThreadProfiles()
    watch: Callable[[], contextlib.AbstractContextManager[None]] = (
        profiles.watching if args.cprofile else contextlib.nullcontext
    )
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    use_local_credentials()
    boto3.setup_default_session()
    counter = Calls()
    counter.register(boto3.DEFAULT_SESSION.events)  # type: ignore[union-attr]
    bench = Bench(args.emulator, args.latency, counter)
    try:
        bulk = bench.bulk_standin() if args.batch > 1 else None
        for _ in range(args.repeat):
            bench.reset(args.workers, bulk=bulk, batch=args.batch)
            bench.ingest(order_records(args.messages, args.groups, bench.stream_arn, args.write_order))
            bench.calls.take()
            cpu, started = time.process_time(), time.perf_counter()
            delivered = 0
            with (
                open(os.devnull, "w") as devnull,
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(devnull),
                watch(),
            ):
                while delivered < args.messages:
                    report = wiring.drainer("orders").run(lambda: 10**9)
                    delivered += report.delivered
                    if report.stopped_by == "empty" and not report.delivered:
                        break
            cpu_ms = (time.process_time() - cpu) * 1000 / max(1, delivered)
            counts = bench.calls.take().counts
            calls = sum(n for op, n in counts.items() if not op.endswith("/items"))
            by_api = {
                op.split(":")[1]: round(n / max(1, delivered), 3)
                for op, n in sorted(counts.items())
                if not op.endswith("/items")
            }
            print(
                f"delivered {delivered} in {time.perf_counter() - started:.2f} s;"
                f" drain CPU {cpu_ms:.2f} ms/msg; drain AWS requests {calls / max(1, delivered):.3f}/msg"
                f" {by_api}",
                file=sys.stderr,
            )
    finally:
        bench.stop()
    if args.cprofile:
        profiles.save(args.cprofile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
