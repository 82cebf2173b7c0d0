"""`python -m trickle_local up|demo`: the relay's own handlers on one machine.

An embedded emulator stands in for AWS on loopback (`--emulator moto|ministack`; or `--endpoint`
points at another, `--real-aws` at AWS), a stand-in API receives the deliveries (or `--api-url` names
a real one), a stream poller feeds the ingest handler and a schedule runner fires every
`@app.schedule` handler. What the handlers print (their metrics lines) goes to stderr or
`--metrics-file`, so stdout carries only the command's own report (`demo --json`: one JSON line).
SIGINT (Ctrl-C) and SIGTERM stop every server and the emulator's process, at any moment, start-up
included (`trickle_local.signals`); `up` then exits 0, `demo` (or either before it has begun) with
128 + the signal's number.
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":  # a stop signal while the modules below load: nothing started yet
    for _signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signum, lambda signum, _frame: sys.exit(128 + signum))

import argparse
import contextlib
import io
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from chalice import Chalice, Rate
from chalice.app import CloudWatchEvent

from chalicelib import naming, wiring
from chalicelib.fifo_queue import FifoQueue
from chalicelib.logs import LOGGER_NAMES
from chalicelib.settings import Destination, Settings, SettingsError, load_settings
from trickle_local import signals
from trickle_local.demo import (
    DemoReport,
    UnauditedError,
    expected_by_destination,
    single_table_items,
    summarize,
    summary_line,
)
from trickle_local.emulators import (
    EMULATORS,
    Emulator,
    EmulatorName,
    EmulatorStartError,
    EmulatorUnavailableError,
    start_emulator,
)
from trickle_local.ports import PortInUseError, PortsInUseError, check_all_free
from trickle_local.routes import RouteServer
from trickle_local.runtime import Clock, Invoker, LocalRuntime, ScheduledFunction
from trickle_local.standin_api import Faults, StandInApi
from trickle_local.standin_bulk import UnservedBatchError, endpoint_for
from trickle_local.standin_secrets import (
    Expected,
    expected,
    parameter_values,
    pointed_at,
    requiring,
    stand_in_for,
)
from trickle_local.workflows import Workflows, is_workflow_body
from trickle_project import stage
from trickle_project.aws import clients, use_local_credentials
from trickle_project.resources import provision
from trickle_project.secret_parameters import (
    API_KEY,
    CREDENTIALS,
    HEADERS,
    SECRET_OPTIONS,
    SIGNING,
    needed,
    secrets_from_env,
)

STANDIN_PORT = 5051  # the first destination's stand-in; docs/local.md
# The largest body a stand-in's bulk endpoint takes unless --bulk-max-bytes says otherwise: a batched
# destination's batch_max_bytes may be no less than a message's limit, 1 MiB by default.
STANDIN_BULK_MAX_BYTES = 1_048_576
DEFAULT_EMULATOR: EmulatorName = "ministack"  # the embedded one; docs/emulators.md says why


@dataclass
class Session:
    env: dict[str, str]
    aws: dict[str, Any]
    runtime: LocalRuntime
    apis: dict[str, StandInApi]  # a stand-in per destination that --api-url does not name
    endpoint: Emulator | None
    settings: Settings
    routes: RouteServer | None = None
    operator_token: str | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # what `stop` stops

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def table(self) -> str:
        return self.settings.table_name

    @property
    def drains(self) -> list[str]:
        return [d.drain_function for d in self.settings.destinations.values()]

    def depth(self, destination: str) -> tuple[int, int]:
        return FifoQueue(self.aws["sqs"], self.settings.destination(destination).queue_url).counts()

    def dead_letters(self, destination: str) -> int:
        return sum(FifoQueue(self.aws["sqs"], self.settings.destination(destination).dlq_url).counts())

    def delivered(self, destination: str) -> int:
        """Messages the destination's drain runs delivered (2xx), by their own reports: right for a
        real API as for a stand-in."""
        return self.runtime.invoker.total(self.settings.destination(destination).drain_function, "delivered")

    def backlog(self) -> int:
        return sum(sum(self.depth(name)) for name in self.settings.destinations)

    def drain_seconds(self) -> float:
        return sum(self.runtime.invoker.active_s(name) for name in self.drains)

    def insert(self, items: list[dict[str, Any]]) -> None:
        """One PutItem each, in order, so the stream holds them in the order given."""
        for item in items:
            self.aws["dynamodb"].put_item(TableName=self.table, Item=item)

    def stop(self) -> None:
        """Everything started, last first (the emulator last); each stopped even if one fails."""
        self.stack.close()


def quiet_logs(level: str) -> None:
    """The handlers' JSON logs at the chosen level (the app set the stage's); the emulators quiet."""
    for name in ("werkzeug", "moto", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in LOGGER_NAMES:
        logging.getLogger(name).setLevel(level.upper())


def _port(url: str, flag: int | None, ephemeral: bool) -> int:
    if ephemeral:
        return 0
    return flag if flag is not None else urlparse(url).port or 0


def given_api_urls(args: argparse.Namespace) -> dict[str, str]:
    """`--api-url` (an option of `up` only), by destination."""
    return dict(getattr(args, "api_url", None) or [])


def wanted_ports(args: argparse.Namespace, env: dict[str, str]) -> dict[str, int]:
    """The ports this run listens on, by server. Each destination's stand-in listens on `--api-port`
    plus its place in the routes file, whatever host the stage's URL for it names (only the URL's
    path is kept); `--api-port 0` picks free ones. A destination given `--api-url` has none."""
    wanted = {"routes": 0 if args.ephemeral_ports else args.routes_port}
    if not args.real_aws and args.endpoint is None:
        wanted["AWS endpoint"] = _port(
            env.get("AWS_ENDPOINT_URL", ""), args.endpoint_port, args.ephemeral_ports
        )
    real = given_api_urls(args)
    free = args.ephemeral_ports or args.api_port == 0
    for offset, name in enumerate(load_settings(env).destinations):
        if name not in real:
            wanted[f"stand-in API for {name}"] = 0 if free else args.api_port + offset
    return wanted


def ports(args: argparse.Namespace, env: dict[str, str]) -> dict[str, int]:
    """`wanted_ports`, all checked before any server starts."""
    wanted = wanted_ports(args, env)
    check_all_free("127.0.0.1", wanted)
    return wanted


FAULT_RATES = ("error_rate", "throttle_rate", "timeout_rate", "reset_rate", "item_error_rate")  # seeded


def fault_seed(args: argparse.Namespace) -> int:
    """--seed, or a fresh one per run (a fixed default gave every run the same faults), printed
    when a fault is drawn so the run can be repeated."""
    seed = int(args.seed) if args.seed is not None else secrets.randbelow(2**31)
    if any(getattr(args, rate) for rate in FAULT_RATES):
        print(f"Faults:       drawn with --seed {seed} (pass it to repeat them)", file=sys.stderr)
    return seed


def standin_faults(args: argparse.Namespace, destination: Destination, wanted: Expected, seed: int) -> Faults:
    """A destination's stand-in: the fault flags (the same for every stand-in), and what its
    destination sends (`wanted`: the secrets stored for it)."""
    faults = Faults(
        latency_s=args.latency,
        error_rate=args.error_rate,
        throttle_rate=args.throttle_rate,
        timeout_rate=args.timeout_rate,
        timeout_s=args.timeout_s,
        reset_rate=args.reset_rate,
        poison=frozenset(p for p in args.poison.split(",") if p),
        item_error_rate=args.item_error_rate,
        honour_idempotency=not args.ignore_idempotency,
        seed=seed,
    )
    return requiring(faults, destination, wanted)


def start(args: argparse.Namespace) -> Session:
    """The relay's servers, started; if a step fails or a stop signal comes, the ones already
    started are stopped (the emulator's process among them) before the error goes on."""
    started = contextlib.ExitStack()
    try:
        return _start(args, started)
    except BaseException:
        started.close()
        raise


def run_env(args: argparse.Namespace) -> dict[str, str]:
    """The stage's variables, reading `--routes FILE` if given instead of the stage's routes file."""
    return stage.stage_env(args.stage, routes_file=args.routes)


def _start(args: argparse.Namespace, started: contextlib.ExitStack) -> Session:
    env = run_env(args)
    listen = ports(args, env)
    endpoint: Emulator | None = None
    endpoint_url: str | None = args.endpoint
    if not args.real_aws:
        use_local_credentials()  # an emulator, embedded or not: test credentials and a region
    if not args.real_aws and endpoint_url is None:
        endpoint = start_emulator(args.emulator, listen["AWS endpoint"], speed_up=not args.slow_moto)
        started.callback(endpoint.stop)
        endpoint_url = endpoint.endpoint_url
    apis: dict[str, StandInApi] = {}
    api_key: str | None = args.api_key
    declared = load_settings(env)
    real = given_api_urls(args)
    standing_in = [d for d in declared.destinations.values() if d.name not in real]
    stored = dict(args.given_secrets)  # SSM parameter name -> value
    if standing_in:
        api_key = api_key or f"local-{secrets.token_hex(8)}"
        seed = fault_seed(args)
        for destination in standing_in:
            values = parameter_values(destination, stored, api_key)
            stored |= values
            wanted = expected(needed(destination), values)
            faults = standin_faults(args, destination, wanted, seed)
            port = listen[f"stand-in API for {destination.name}"]
            api = stand_in_for(
                destination, faults, wanted.client, args.token_lifetime, port, args.bulk_max_bytes
            )
            apis[destination.name] = api.start()
            started.callback(api.stop)
    env = stage.rebase(env, endpoint_url, None)
    for name, api in apis.items():
        env |= pointed_at(declared.destination(name), api)
    env = stage.deliver_to(env, real)
    if args.real_aws:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    aws = clients(endpoint_url)
    operator_token = None if args.real_aws else f"op-{secrets.token_hex(12)}"
    if not args.real_aws:
        env = provision(aws, env, api_key, operator_token, secrets=stored)
    app = stage.load_app(env)
    quiet_logs(args.log_level)
    invoker = Invoker(app, stage.load_config(), args.stage)
    settings = load_settings(env)
    for name in add_missing_drains(app, settings.destinations):
        print(
            f"Drains:       app.py has no {naming.drain_function(name)}: run here on"
            f" {LOCAL_DRAIN_SCHEDULE.to_string()}; deploying needs it in app.py (docs/routes.md,"
            ' "Adding a destination")',
            file=sys.stderr,
        )
    runtime = LocalRuntime(
        app,
        invoker,
        aws["dynamodbstreams"],
        settings.stream_arn,
        speed=args.speed,
        drain_every_s=args.drain_every,
        sqs=aws["sqs"],
    ).start(schedules=not getattr(args, "backlog", False))
    started.callback(runtime.stop)
    routes = None
    if app.routes:
        routes = RouteServer(app, stage.load_config(), args.stage, port=listen["routes"])
        routes.start()
        started.callback(routes.stop)
    return Session(env, aws, runtime, apis, endpoint, settings, routes, operator_token, started)


LOCAL_DRAIN_SCHEDULE = Rate(1, unit=Rate.MINUTES)  # where app.py has no drain for a destination


def add_missing_drains(app: Chalice, destinations: Iterable[str]) -> list[str]:
    """The destinations app.py has no `drain_<name>` for (a routes file of one's own, `--routes`),
    each given one here, scheduled as app.py's are, so they can be tried before app.py has them."""
    missing = [name for name in destinations if naming.drain_function(name) not in app.handler_map]
    for name in missing:

        def drain(event: CloudWatchEvent, destination: str = name) -> dict[str, Any]:
            return wiring.drain(destination, event.context)

        app.schedule(LOCAL_DRAIN_SCHEDULE, name=naming.drain_function(name))(drain)
    return missing


class Progress:
    """A status line on stderr whenever the counts change (checked every `every_s` seconds), with
    when the next drain fires and the delivery rate over the time drains actually ran. `total` is
    the deliveries the items should make, `executions` the messages Step Functions sends besides."""

    def __init__(self, session: Session, total: int, every_s: float = 2.0, executions: int = 0) -> None:
        self._session = session
        self._total = total
        self._executions = executions
        self._every_s = every_s
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._last: tuple[int, ...] | None = None
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def counts(self) -> tuple[int, ...]:
        """(queued, in flight, delivered, dead-lettered) of every destination, in order."""
        session = self._session
        counts: list[int] = []
        for name in session.settings.destinations:
            counts += [*session.depth(name), session.delivered(name), session.dead_letters(name)]
        return tuple(counts)

    def line(self, counts: tuple[int, ...]) -> str:
        session = self._session
        parts = []
        for name, at in zip(session.settings.destinations, range(0, len(counts), 4), strict=True):
            queued, in_flight, delivered, dead = counts[at : at + 4]
            parts.append(
                f"{name}: queued={queued} in_flight={in_flight} delivered={delivered} dead_lettered={dead}"
            )
        delivered = sum(counts[2::4])
        elapsed = time.monotonic() - self._started
        expected = self._total + self._executions
        total = f"/{expected}" if expected else ""
        if self._executions:
            total += f" ({self._total} for the items, {self._executions} for executions)"
        return (
            f"[{elapsed:6.1f}s] {'; '.join(parts)}; delivered={delivered}{total}"
            f" {rate(delivered, session.drain_seconds())}; {next_drain(session)}"
        )

    def tick(self) -> None:
        counts = self.counts()
        if counts != self._last:
            self._last = counts
            sys.stderr.write(self.line(counts) + "\n")  # one write: whole lines amid parallel output
            sys.stderr.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            self.tick()


def rate(delivered: int, drain_s: float) -> str:
    return f"rate={delivered / drain_s:.1f}/s over {drain_s:.1f}s of drain time" if drain_s else "rate=-"


def next_drain(session: Session) -> str:
    if any(session.runtime.invoker.busy(name) for name in session.drains):
        return "a drain is running"
    seconds = soonest_drain(session)
    return "no drain scheduled" if seconds is None else f"next drain in {seconds:.0f}s"


def soonest_drain(session: Session) -> float | None:
    due = [s for s in (session.runtime.seconds_to_next(name) for name in session.drains) if s is not None]
    return min(due) if due else None


def announce_first_drain(session: Session) -> None:
    """At --speed 1 the first drain is up to a minute away: say so, and how to have it sooner."""
    seconds = soonest_drain(session)
    if seconds is not None and seconds >= 5:
        print(
            f"Waiting for the first scheduled drain, in {seconds:.0f}s (its schedule at --speed"
            f" {session.runtime.clock.speed:g}); --speed 60 or --drain-every 1 runs drains sooner",
            file=sys.stderr,
        )


class WholeLines(io.TextIOBase):
    """Hands `target` complete lines, one write each, so lines printed by parallel handlers (print
    writes the text and the newline apart) never interleave mid-line with each other or the logs."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._pending = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        pending: str = getattr(self._pending, "text", "") + text
        complete, newline, rest = pending.rpartition("\n")
        self._pending.text = rest
        if newline:
            with self._lock:
                self._target.write(complete + newline)
                self._target.flush()
        return len(text)


@contextlib.contextmanager
def handler_output(metrics_file: str | None) -> Iterator[TextIO]:
    """While the relay runs, whatever is printed (the handlers' Embedded Metric Format lines, which
    Lambda's stdout would carry to CloudWatch) goes to stderr, or appends to `metrics_file`; the
    command writes its own report to the stream this yields, the real stdout."""
    out = sys.stdout
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(metrics_file, "a")) if metrics_file else sys.stderr
        sys.stdout = WholeLines(sink)
        try:
            yield out
        finally:
            sys.stdout = out


def run_up(args: argparse.Namespace) -> int:
    """Serves until SIGINT or SIGTERM, then stops every server and the emulator: 0 (also when the
    signal comes while it starts)."""
    with contextlib.suppress(signals.Stopped), start(args) as session:
        serve(session, args)
    return 0


def serve(session: Session, args: argparse.Namespace) -> None:
    where = session.endpoint.name if session.endpoint is not None else "given"
    print(f"AWS endpoint: {session.env.get('AWS_ENDPOINT_URL', 'real AWS')} ({where})", file=sys.stderr)
    for name, destination in session.settings.destinations.items():
        print(f"API {name + ':':9} {destination.url}", file=sys.stderr)
    print(f"Table:        {session.table} (put items there; Ctrl-C stops)", file=sys.stderr)
    if session.routes is not None:
        print(
            f"Routes:       {session.routes.url} (Authorization: Bearer {session.operator_token})",
            file=sys.stderr,
        )
        print(f"Console:      {session.routes.url}/console (paste the token above)", file=sys.stderr)
    for scheduled in session.runtime.schedules:
        print(
            f"Schedule:     {schedule_line(scheduled, session.runtime.clock, args.drain_every)}",
            file=sys.stderr,
        )
    if args.metrics_file is not None:
        print(f"Metrics:      {args.metrics_file} (the handlers' metrics lines)", file=sys.stderr)
    for name, api in session.apis.items():
        destination = session.settings.destination(name)
        print(f"Received:     GET {destination.url} lists what the {name} API got", file=sys.stderr)
        if api.bulk is not None:
            print(
                f"Bulk:         the {name} API takes {api.bulk.shape()} (up to {destination.batch_max_items}"
                f" a request) and answers a status per item; bodies up to {api.bulk.max_bytes} bytes"
                " (--bulk-max-bytes)",
                file=sys.stderr,
            )
        if api.tokens is not None:
            print(
                f"Tokens:       POST {destination.token_url} issues the {name} API's tokens, each"
                f" living {api.tokens.lifetime_s}s (--token-lifetime)",
                file=sys.stderr,
            )
    session.insert(single_table_items(args.demo_items, args.groups))
    announce_first_drain(session)
    session.stack.callback(Progress(session, 0, every_s=1.0).start().stop)
    threading.Event().wait()  # until a stop signal (signals.Stopped)


def schedule_line(scheduled: ScheduledFunction, clock: Clock, drain_every_s: float | None) -> str:
    """A schedule and when it fires next, on the wall clock (schedule time may run faster)."""
    if drain_every_s is not None:
        how = f"every {drain_every_s:g}s (--drain-every; its schedule: {scheduled.schedule.expression})"
    elif clock.speed != 1:
        how = f"{scheduled.schedule.expression} at --speed {clock.speed:g}"
    else:
        how = scheduled.schedule.expression
    if scheduled.due is None:
        return f"{scheduled.name} {how}, not due again"
    at = clock.wall_time(scheduled.due).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{scheduled.name} {how}, next at {at}"


def start_workflows(session: Session, count: int, groups: int) -> Workflows | None:
    """`--executions N`: N executions that each send an item through `orders` and wait for it."""
    if not count:
        return None
    names = session.settings.callback_state_machines
    if not names:
        raise SystemExit("--executions needs a stage with TRICKLE_CALLBACK_STATE_MACHINES")
    destination = next(iter(session.settings.destinations.values()))
    workflows = Workflows(session.aws["stepfunctions"], names[0], destination.queue_url)
    workflows.start(count, groups)
    return workflows


def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Prints the summary to `out`: human lines, or with --json one JSON line (the lines then on stderr)."""
    with start(args) as session:  # every server stopped however the run ends
        items = single_table_items(args.items, args.groups)
        expected = expected_by_destination(items, session.settings)
        wanted = sum(len(keys) for keys in expected.values())
        started = time.monotonic()
        session.stack.callback(Progress(session, wanted, executions=args.executions).start().stop)
        workflows = start_workflows(session, args.executions, args.groups)
        session.insert(items)
        if not args.backlog:
            announce_first_drain(session)
        if args.backlog:
            wait_for_backlog(session, wanted, args.timeout)
            started = time.monotonic()
            session.runtime.start_schedules()
        while time.monotonic() - started < args.timeout:
            report = audit(session, len(items), expected, started)
            total = report.total
            waiting = workflows is not None and workflows.counts().running > 0
            if total.delivered + total.dead_lettered >= wanted and session.backlog() == 0 and not waiting:
                break
            time.sleep(0.5)
        time.sleep(args.settle)  # a late duplicate would show up here
        report = audit(session, len(items), expected, started)
        executions = workflows.counts() if workflows is not None else None
    drain_s = round(session.drain_seconds(), 2)
    summary = report.total
    human = sys.stderr if args.json else out
    print(
        f"inserted={summary.inserted} delivered={summary.delivered} dead_lettered={summary.dead_lettered} "
        f"lost={summary.lost} duplicates={summary.duplicates} out_of_order={summary.out_of_order} "
        f"seconds={summary.seconds} ({rate(summary.delivered, drain_s)}, "
        f"{summary.requests} API requests, {summary.failed_requests} failed)",
        file=human,
    )
    for name, part in report.destinations.items():
        print(
            f"  {name}: delivered={part.delivered}/{part.inserted} dead_lettered={part.dead_lettered}"
            f" lost={part.lost} duplicates={part.duplicates} out_of_order={part.out_of_order}"
            f" auth_failures={part.auth_failures} token_requests={part.token_requests}"
            f" requests={part.requests} items_per_request={part.items_per_request:g}",
            file=human,
        )
    if executions is not None:
        print(
            f"  executions: started={executions.started} succeeded={executions.succeeded}"
            f" failed={executions.failed} running={executions.running}",
            file=human,
        )
    if args.json:
        received = {name: api.listing() for name, api in session.apis.items()}
        print(summary_line(report, received, drain_s, executions), file=out, flush=True)
    return 0 if report.ok and (executions is None or executions.running == 0) else 1


def wait_for_backlog(session: Session, count: int, timeout_s: float) -> None:
    """Let the poller queue every message before any drain runs, to measure draining a deep queue."""
    deadline = time.monotonic() + timeout_s
    while session.backlog() < count and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"backlog of {session.backlog()} messages queued; draining", file=sys.stderr)


def audit(
    session: Session, items: int, expected: dict[str, list[tuple[str, str]]], started: float
) -> DemoReport:
    seconds = time.monotonic() - started
    return DemoReport(
        items,
        {
            name: summarize(
                keys,
                [r for r in session.apis[name].requests if not is_workflow_body(r.body)]
                if name in session.apis
                else [],
                session.dead_letters(name),
                seconds,
                session.apis[name].token_requests if name in session.apis else 0,
            )
            for name, keys in expected.items()
        },
        seconds,
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stage", default="local", help="stage in .chalice/config.json (default: local)")
    common.add_argument(
        "--routes",
        type=routes_file,
        metavar="FILE",
        help="read this routes file instead of the stage's (chalicelib/routes.toml); the stage's"
        " variables for a destination apply to the destination of the same name in it, a"
        " destination app.py has no drain for is drained here on rate(1 minute)",
    )
    where = common.add_mutually_exclusive_group()
    where.add_argument(
        "--endpoint",
        help="use this AWS endpoint (an emulator already running) instead of starting one; test"
        " credentials and a region are set as for the embedded one",
    )
    common.add_argument(
        "--emulator",
        choices=EMULATORS,
        default=DEFAULT_EMULATOR,
        help=f"the embedded AWS emulator (default: {DEFAULT_EMULATOR}; docs/emulators.md)",
    )
    common.add_argument(
        "--metrics-file",
        help="append the handlers' metrics lines (Embedded Metric Format) to this file, or '-' for"
        " stderr (default: stderr for demo; for up a fresh file in the temporary directory,"
        " trickle-<stage>-metrics.jsonl, whose path it prints)",
    )
    where.add_argument(
        "--real-aws", action="store_true", help="use the stage's real AWS resources as they are"
    )
    common.add_argument(
        "--api-key",
        help="API key stored in SSM for every destination with an API key that --secret-env does not name"
        " (default: a random one the stand-ins expect); up --api-url needs it or --secret-env",
    )
    for option, what in (
        ("--secret-env", "credentials (its API key, or the JSON of its basic or oauth2 credentials)"),
        ("--signing-secret-env", "whsec_ signing secret(s)"),
        ("--headers-env", "secret headers' values (JSON)"),
    ):
        common.add_argument(
            option,
            metavar="DESTINATION=VAR",
            action="append",
            default=[],
            help=f"store the destination's {what} from this environment variable (default for a"
            " stand-in: made up for the run, and what its stand-in requires); as the bootstrap takes them",
        )
    common.add_argument(
        "--token-lifetime",
        type=int,
        default=5,
        metavar="SECONDS",
        help="how long the tokens of a stand-in's OAuth2 token endpoint live (default: 5, so refreshes"
        " happen)",
    )
    common.add_argument("--routes-port", type=int, default=8000, help="where the app's routes are served")
    common.add_argument(
        "--endpoint-port", type=int, help="port of the embedded AWS endpoint (default: the stage's, 5050)"
    )
    common.add_argument(
        "--api-port",
        type=int,
        default=STANDIN_PORT,
        help="port of the first destination's stand-in API, the next ones (in routes-file order) above it"
        f" (default: {STANDIN_PORT})",
    )
    common.add_argument(
        "--ephemeral-ports", action="store_true", help="pick free ports instead of the default ones"
    )
    common.add_argument(
        "--slow-moto", action="store_true", help="leave moto's SQS clock unpatched (to measure its cost)"
    )
    common.add_argument("--speed", type=float, default=1.0, help="compress schedule time by this factor")
    common.add_argument("--drain-every", type=float, help="fire each schedule every N real seconds instead")
    common.add_argument("--latency", type=float, default=0.0, help="stand-in API latency, seconds")
    common.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 503")
    common.add_argument(
        "--throttle-rate", type=float, default=0.0, help="fraction answered 429 + Retry-After"
    )
    common.add_argument(
        "--timeout-rate", type=float, default=0.0, help="fraction that hang past the read timeout"
    )
    common.add_argument("--reset-rate", type=float, default=0.0, help="fraction whose connection is reset")
    common.add_argument("--timeout-s", type=float, default=3.0, help="how long a hanging request hangs")
    common.add_argument(
        "--poison",
        default="",
        help="comma-separated strings; a request whose body contains one gets 400 (at a bulk endpoint,"
        " each item containing one, in the request's per-item results)",
    )
    common.add_argument(
        "--item-error-rate",
        type=float,
        default=0.0,
        help="at a bulk endpoint, fraction of the items answered 503 in the per-item results (not"
        " applied), the other items of the request going on",
    )
    common.add_argument(
        "--bulk-max-bytes",
        type=int,
        default=STANDIN_BULK_MAX_BYTES,
        metavar="BYTES",
        help="the largest request body a stand-in's bulk endpoint takes, as an API's documented limit"
        f" (default: {STANDIN_BULK_MAX_BYTES}); a batched destination whose batch_max_bytes is over it"
        " is refused at start",
    )
    common.add_argument(
        "--ignore-idempotency", action="store_true", help="stand-in applies a repeated Idempotency-Key again"
    )
    common.add_argument(
        "--seed",
        type=int,
        help="seed for the stand-ins' fault draws (default: a fresh one each run, printed at start when"
        " a fault rate is set; pass it to repeat a run's faults)",
    )
    common.add_argument("--log-level", default="WARNING", help="handler log level shown (default WARNING)")

    parser = argparse.ArgumentParser(prog="python -m trickle_local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[common], help="run until interrupted")
    up.add_argument("--demo-items", type=int, default=0, help="insert this many items at start")
    up.add_argument("--groups", type=int, default=4, help="customers (partition keys) the demo items use")
    up.add_argument(
        "--api-url",
        action="append",
        type=api_url,
        metavar="DESTINATION=URL",
        help="deliver DESTINATION to the API at URL, exactly as given (path and query kept), instead of"
        " its stand-in; repeatable; needs --api-key (destinations not named keep their stand-ins)",
    )
    demo = commands.add_parser(
        "demo", parents=[common], help="insert items, run until all are delivered, audit"
    )
    demo.add_argument("--items", type=int, default=200, help="items: customer profiles, orders and invoices")
    demo.add_argument("--groups", type=int, default=8, help="customers (partition keys)")
    demo.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    demo.add_argument("--settle", type=float, default=1.0, help="seconds to watch for late duplicates")
    demo.add_argument(
        "--backlog", action="store_true", help="queue every item before the first drain; time the drain alone"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    demo.add_argument(
        "--executions",
        type=int,
        default=0,
        help="also run N Step Functions executions that send an item through the first destination and wait",
    )
    for command in (up, demo):  # a check made after parsing reads as its command's own usage error
        command.set_defaults(usage_error=command.error)
    return parser


_DESTINATION = re.compile(r"[a-z][a-z0-9_]*")  # fullmatch; settings say which names exist


def routes_file(text: str) -> Path:
    """`--routes FILE`, checked as argparse reads it (its contents are the settings' to judge)."""
    path = Path(text)
    try:
        path.read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from None
    return path.resolve()


def api_url(text: str) -> tuple[str, str]:
    """`--api-url DESTINATION=URL`, checked as argparse reads it: the error names the flag."""
    name, equals, url = text.partition("=")
    if not equals or not _DESTINATION.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not DESTINATION=URL (for example orders=https://api.example.com/v1/items)"
        )
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise argparse.ArgumentTypeError(
            f"{url!r} (for {name}) is not an http:// or https:// URL with a host"
        )
    return name, url


def api_url_problem(
    given: Sequence[tuple[str, str]],
    api_key: str | None,
    real_aws: bool,
    stage: str,
    destinations: Mapping[str, Destination],
    secrets: Mapping[str, str],
) -> str | None:
    """Why the `--api-url` flags cannot run as given, or None. A real API's destination needs every
    secret its drain reads (`secrets`, by parameter name, from the `--*-env` options; an API key may
    come from `--api-key`): the emulator's SSM holds none until it is given."""
    names = [name for name, _ in given]
    for name in names:
        if name not in destinations:
            return (
                f"argument --api-url: stage {stage!r} has no destination {name!r}"
                f" (its destinations: {', '.join(destinations)})"
            )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return f"argument --api-url: destination {twice[0]!r} is given twice"
    for name in [] if real_aws else names:
        for parameter in needed(destinations[name]):
            if parameter.name in secrets or (parameter.shape == API_KEY and api_key is not None):
                continue
            option = f"{SECRET_OPTIONS[parameter.kind]} {name}=VARIABLE"
            if parameter.shape == API_KEY:
                return (
                    "argument --api-url: needs --api-key KEY, the key the drains send to that API"
                    f" (the emulator's SSM holds none until it is given), or {option}"
                )
            return (
                f"argument --api-url: {name} needs {option}, a variable holding {parameter.holds}"
                " (the emulator's SSM holds none until it is given)"
            )
    return None


def metrics_target(args: argparse.Namespace) -> str | None:
    """Where the handlers' metrics lines go: a file, or None for stderr (see --metrics-file)."""
    if args.metrics_file == "-":
        return None
    if args.metrics_file is None and args.command == "up":
        return str(Path(tempfile.gettempdir()) / f"trickle-{args.stage}-metrics.jsonl")
    return None if args.metrics_file is None else str(args.metrics_file)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.slow_moto and args.emulator != "moto":
        print("trickle_local: --slow-moto applies to --emulator moto only", file=sys.stderr)
        return 2
    try:
        destinations = load_settings(run_env(args)).destinations
    except SettingsError as exc:  # before anything starts: the message says what to fix
        print(f"trickle_local: {exc}", file=sys.stderr)
        return 2
    try:  # checked before anything starts; never quoting a value
        args.given_secrets = secrets_from_env(
            args.stage,
            list(destinations.values()),
            {CREDENTIALS: args.secret_env, SIGNING: args.signing_secret_env, HEADERS: args.headers_env},
            None,
            os.environ,
        )
    except ValueError as exc:
        args.usage_error(str(exc))
    given = getattr(args, "api_url", None) or []
    problem = api_url_problem(
        given, args.api_key, args.real_aws, args.stage, destinations, args.given_secrets
    )
    if problem is not None:
        args.usage_error(problem)
    try:  # a stand-in's bulk endpoint takes each batched destination's requests, or nothing starts
        for destination in destinations.values():
            if destination.name not in dict(given):
                endpoint_for(destination, args.bulk_max_bytes)
    except UnservedBatchError as exc:
        print(f"trickle_local: {exc}", file=sys.stderr)
        return 2
    fresh = args.metrics_file is None
    args.metrics_file = metrics_target(args)
    if fresh and args.metrics_file is not None:
        Path(args.metrics_file).write_text("")  # the default file starts empty each run
    try:
        with signals.stopping(), handler_output(args.metrics_file) as out:
            return run_up(args) if args.command == "up" else run_demo(args, out)
    except (
        PortInUseError,
        PortsInUseError,
        EmulatorUnavailableError,
        EmulatorStartError,
        SettingsError,
        UnauditedError,
    ) as exc:
        print(f"trickle_local: {exc}", file=sys.stderr)
        return 2
    except signals.Stopped as stopped:
        print(f"trickle_local: stopped by {stopped} before the demo finished", file=sys.stderr)
        return 128 + stopped.signum


if __name__ == "__main__":
    raise SystemExit(main())
