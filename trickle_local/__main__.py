"""`python -m trickle_local up|demo`: the relay's own handlers on one machine.

moto's server stands in for AWS on loopback (or `--endpoint` points at another, `--real-aws` at AWS),
a stand-in API receives the deliveries (or `--api-url` names a real one), a stream poller feeds the
ingest handler and a schedule runner fires every `@app.schedule` handler.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from chalicelib.fifo_queue import FifoQueue
from chalicelib.logs import LOGGER_NAMES
from trickle_deploy.bootstrap import provision
from trickle_local import stage
from trickle_local.demo import Summary, demo_items, summarize
from trickle_local.endpoint import MotoEndpoint, clients, use_local_credentials
from trickle_local.ports import PortInUseError, check_free
from trickle_local.routes import RouteServer
from trickle_local.runtime import Invoker, LocalRuntime
from trickle_local.standin_api import Faults, StandInApi


@dataclass
class Session:
    env: dict[str, str]
    aws: dict[str, Any]
    runtime: LocalRuntime
    api: StandInApi | None
    endpoint: MotoEndpoint | None
    routes: RouteServer | None = None
    operator_token: str | None = None

    @property
    def table(self) -> str:
        return self.env["TRICKLE_STREAM_ARN"].split(":")[5].split("/")[1]

    def depth(self, url_var: str) -> tuple[int, int]:
        return FifoQueue(self.aws["sqs"], self.env[url_var]).counts()

    def insert(self, items: list[dict[str, Any]]) -> None:
        """One PutItem each, in order, so the stream holds them in the order given."""
        for item in items:
            self.aws["dynamodb"].put_item(TableName=self.table, Item=item)

    def stop(self) -> None:
        self.runtime.stop()
        if self.routes is not None:
            self.routes.stop()
        if self.api is not None:
            self.api.stop()
        if self.endpoint is not None:
            self.endpoint.stop()


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


def ports(args: argparse.Namespace, env: dict[str, str]) -> dict[str, int]:
    """The ports this run listens on, by server; all are checked before any server starts."""
    wanted = {"routes": 0 if args.ephemeral_ports else args.routes_port}
    if not args.real_aws and args.endpoint is None:
        wanted["AWS endpoint"] = _port(
            env.get("AWS_ENDPOINT_URL", ""), args.endpoint_port, args.ephemeral_ports
        )
    if args.api_url is None:
        wanted["stand-in API"] = _port(env["TRICKLE_API_URL"], args.api_port, args.ephemeral_ports)
    for role, port in wanted.items():
        check_free("127.0.0.1", port, role)
    return wanted


def start(args: argparse.Namespace) -> Session:
    env = stage.stage_env(args.stage)
    listen = ports(args, env)
    endpoint: MotoEndpoint | None = None
    endpoint_url: str | None = args.endpoint
    if not args.real_aws and endpoint_url is None:
        use_local_credentials()
        endpoint = MotoEndpoint(port=listen["AWS endpoint"], speed_up=not args.slow_moto).start()
        endpoint_url = endpoint.url
    api: StandInApi | None = None
    api_key: str | None = args.api_key
    if args.api_url is None:
        api_key = api_key or f"local-{secrets.token_hex(8)}"
        faults = Faults(
            latency_s=args.latency,
            error_rate=args.error_rate,
            throttle_rate=args.throttle_rate,
            timeout_rate=args.timeout_rate,
            timeout_s=args.timeout_s,
            reset_rate=args.reset_rate,
            poison=frozenset(p for p in args.poison.split(",") if p),
            api_key=api_key,
            api_key_header=env.get("TRICKLE_API_KEY_HEADER", "x-api-key"),
            honour_idempotency=not args.ignore_idempotency,
            seed=args.seed,
        )
        api = StandInApi(faults, port=listen["stand-in API"]).start()
    env = stage.rebase(env, endpoint_url, api.url if api else args.api_url)
    if args.real_aws:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    aws = clients(endpoint_url)
    operator_token = None if args.real_aws else f"op-{secrets.token_hex(12)}"
    if not args.real_aws:
        env = provision(aws, env, api_key, operator_token)
    app = stage.load_app(env)
    quiet_logs(args.log_level)
    invoker = Invoker(app, stage.load_config(), args.stage)
    runtime = LocalRuntime(
        app,
        invoker,
        aws["dynamodbstreams"],
        env["TRICKLE_STREAM_ARN"],
        speed=args.speed,
        drain_every_s=args.drain_every,
    ).start(schedules=not getattr(args, "backlog", False))
    routes = None
    if app.routes:
        routes = RouteServer(app, stage.load_config(), args.stage, port=listen["routes"])
        routes.start()
    return Session(env, aws, runtime, api, endpoint, routes, operator_token)


class Progress:
    """A status line on stderr whenever the counts change (checked every `every_s` seconds), with
    when the next drain fires and the delivery rate over the time drains actually ran."""

    def __init__(self, session: Session, total: int, every_s: float = 2.0) -> None:
        self._session = session
        self._total = total
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

    def counts(self) -> tuple[int, int, int, int]:
        queued, in_flight = self._session.depth("TRICKLE_QUEUE_URL")
        dead = sum(self._session.depth("TRICKLE_DLQ_URL"))
        delivered = len(self._session.api.applied()) if self._session.api else 0
        return queued, in_flight, delivered, dead

    def line(self, counts: tuple[int, int, int, int]) -> str:
        queued, in_flight, delivered, dead = counts
        elapsed = time.monotonic() - self._started
        drain_s = self._session.runtime.invoker.active_s("drain")
        return (
            f"[{elapsed:6.1f}s] queued={queued} in_flight={in_flight} delivered={delivered}"
            f"{'/' + str(self._total) if self._total else ''} dead_lettered={dead}"
            f" {rate(delivered, drain_s)}; {next_drain(self._session)}"
        )

    def tick(self) -> None:
        counts = self.counts()
        if counts != self._last:
            self._last = counts
            print(self.line(counts), file=sys.stderr, flush=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            self.tick()


def rate(delivered: int, drain_s: float) -> str:
    return f"rate={delivered / drain_s:.1f}/s over {drain_s:.1f}s of drain time" if drain_s else "rate=-"


def next_drain(session: Session) -> str:
    if session.runtime.invoker.busy("drain"):
        return "a drain is running"
    seconds = session.runtime.seconds_to_next("drain")
    return "no drain scheduled" if seconds is None else f"next drain in {seconds:.0f}s"


def announce_first_drain(session: Session) -> None:
    """At --speed 1 the first drain is up to a minute away: say so, and how to have it sooner."""
    seconds = session.runtime.seconds_to_next("drain")
    if seconds is not None and seconds >= 5:
        print(
            f"Waiting for the first scheduled drain, in {seconds:.0f}s (its schedule at --speed"
            f" {session.runtime.clock.speed:g}); --speed 60 or --drain-every 1 runs drains sooner",
            file=sys.stderr,
        )


def run_up(args: argparse.Namespace) -> int:
    session = start(args)
    print(f"AWS endpoint: {session.env.get('AWS_ENDPOINT_URL', 'real AWS')}", file=sys.stderr)
    print(f"API:          {session.env['TRICKLE_API_URL']}", file=sys.stderr)
    print(f"Table:        {session.table} (put items there; Ctrl-C stops)", file=sys.stderr)
    if session.routes is not None:
        print(
            f"Routes:       {session.routes.url} (Authorization: Bearer {session.operator_token})",
            file=sys.stderr,
        )
    for scheduled in session.runtime.schedules:
        print(
            f"Schedule:     {scheduled.name} {scheduled.schedule.expression} next {scheduled.due}",
            file=sys.stderr,
        )
    if session.api is not None:
        print(f"Received:     GET {session.env['TRICKLE_API_URL']} lists what the API got", file=sys.stderr)
    session.insert(demo_items(args.demo_items, args.groups))
    announce_first_drain(session)
    progress = Progress(session, 0, every_s=1.0).start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        progress.stop()
        session.stop()
    return 0


def run_demo(args: argparse.Namespace) -> int:
    session = start(args)
    items = demo_items(args.items, args.groups)
    started = time.monotonic()
    progress = Progress(session, len(items)).start()
    session.insert(items)
    if not args.backlog:
        announce_first_drain(session)
    if args.backlog:
        wait_for_backlog(session, len(items), args.timeout)
        started = time.monotonic()
        session.runtime.start_schedules()
    keys = [(i["pk"]["S"], i["sk"]["S"]) for i in items]
    summary: Summary | None = None
    try:
        while time.monotonic() - started < args.timeout:
            summary = audit(session, keys, started)
            if summary.delivered + summary.dead_lettered >= summary.inserted and session.depth(
                "TRICKLE_QUEUE_URL"
            ) == (0, 0):
                break
            time.sleep(0.5)
        time.sleep(args.settle)  # a late duplicate would show up here
        summary = audit(session, keys, started)
    finally:
        progress.stop()
        session.stop()
    drain_s = round(session.runtime.invoker.active_s("drain"), 2)
    print(
        f"inserted={summary.inserted} delivered={summary.delivered} dead_lettered={summary.dead_lettered} "
        f"lost={summary.lost} duplicates={summary.duplicates} out_of_order={summary.out_of_order} "
        f"seconds={summary.seconds} ({rate(summary.delivered, drain_s)}, "
        f"{summary.requests} API requests, {summary.failed_requests} failed)"
    )
    if args.json:
        received = session.api.listing() if session.api else []
        print(summary.to_json(drain_seconds=drain_s, received=received))
    return 0 if summary.ok else 1


def wait_for_backlog(session: Session, count: int, timeout_s: float) -> None:
    """Let the poller queue every item before any drain runs, to measure draining a deep queue."""
    deadline = time.monotonic() + timeout_s
    while sum(session.depth("TRICKLE_QUEUE_URL")) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"backlog of {sum(session.depth('TRICKLE_QUEUE_URL'))} messages queued; draining", file=sys.stderr)


def audit(session: Session, keys: list[tuple[str, str]], started: float) -> Summary:
    requests = session.api.requests if session.api else []
    return summarize(keys, requests, sum(session.depth("TRICKLE_DLQ_URL")), time.monotonic() - started)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stage", default="local", help="stage in .chalice/config.json (default: local)")
    where = common.add_mutually_exclusive_group()
    where.add_argument("--endpoint", help="use this AWS endpoint (e.g. LocalStack) instead of starting moto")
    where.add_argument(
        "--real-aws", action="store_true", help="use the stage's real AWS resources as they are"
    )
    common.add_argument("--api-url", help="deliver to this API instead of the stand-in")
    common.add_argument("--api-key", help="API key to store in SSM (default: a random one for the stand-in)")
    common.add_argument("--routes-port", type=int, default=8000, help="where the app's routes are served")
    common.add_argument(
        "--endpoint-port", type=int, help="port of the embedded AWS endpoint (default: the stage's, 5050)"
    )
    common.add_argument("--api-port", type=int, help="port of the stand-in API (default: the stage's, 5051)")
    common.add_argument(
        "--ephemeral-ports", action="store_true", help="pick free ports instead of the stage's"
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
    common.add_argument("--poison", default="", help="comma-separated strings; items containing one get 400")
    common.add_argument(
        "--ignore-idempotency", action="store_true", help="stand-in applies a repeated Idempotency-Key again"
    )
    common.add_argument("--seed", type=int, default=0, help="seed for the fault draws")
    common.add_argument("--log-level", default="WARNING", help="handler log level shown (default WARNING)")

    parser = argparse.ArgumentParser(prog="python -m trickle_local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[common], help="run until interrupted")
    up.add_argument("--demo-items", type=int, default=0, help="insert this many items at start")
    up.add_argument("--groups", type=int, default=4, help="partition keys the demo items use")
    demo = commands.add_parser(
        "demo", parents=[common], help="insert items, run until all are delivered, audit"
    )
    demo.add_argument("--items", type=int, default=200)
    demo.add_argument("--groups", type=int, default=8)
    demo.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    demo.add_argument("--settle", type=float, default=1.0, help="seconds to watch for late duplicates")
    demo.add_argument(
        "--backlog", action="store_true", help="queue every item before the first drain; time the drain alone"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_up(args) if args.command == "up" else run_demo(args)
    except PortInUseError as exc:
        print(f"trickle_local: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
