"""What the local runtime tells its user: a taken port fails fast naming the port and its flag, the
stand-in API lists what it received, progress lines come only on change, with the next drain and a
rate over the time drains ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from chalice import Chalice, Rate

from tests.fakes import taken_port
from trickle_local.__main__ import Progress, Session, next_drain, rate
from trickle_local.endpoint import MotoEndpoint
from trickle_local.ports import HOLDER_RECORD, PortInUseError, PortsInUseError, check_all_free
from trickle_local.routes import RouteServer
from trickle_local.runtime import Invoker, LocalRuntime
from trickle_local.standin_api import Faults, StandInApi
from trickle_project.stage import PROJECT_DIR


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with taken_port() as port:
        yield port


def test_every_server_refuses_a_taken_port_with_the_flag_that_moves_it(taken: int) -> None:
    cases: list[tuple[Any, str]] = [
        (lambda: MotoEndpoint(port=taken).start(), "--endpoint-port"),
        (lambda: StandInApi(port=taken), "--api-port"),
        (
            lambda: RouteServer(
                Chalice(app_name="t"), {"version": "2.0", "app_name": "t"}, "dev", port=taken
            ),
            "--routes-port",
        ),
    ]
    for make, flag in cases:
        with pytest.raises(PortInUseError) as refused:
            make()
        assert f"port {taken} (" in str(refused.value) and flag in str(refused.value)


@pytest.mark.parametrize(
    ("run_pid", "held_by"),
    [
        (os.getpid, "held by a Trickle run still running (pid {pid}); stop that run (Ctrl-C, or kill {pid})"),
        (os.getppid, "in use by another program"),  # a live run, but not what listens on them
        (None, "in use by another program"),  # no run recorded
    ],
)
def test_every_port_a_run_still_going_holds_is_named_as_that_run_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_pid: Any, held_by: str
) -> None:
    """A second `./dev run`: the first run's routes server and stand-in APIs listen in its own
    process, its emulator in another; each port is named as that run's, not "another program"."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    if run_pid is not None:  # as `record_holder` writes it for the run's emulator (here: this process)
        (tmp_path / "trickle-emulator").mkdir()
        record = {"what": "ministack", "pid": os.getpid(), "port": 1, "probe_url": "http://127.0.0.1:1/"}
        (tmp_path / "trickle-emulator" / HOLDER_RECORD).write_text(
            json.dumps(record | {"run_pid": run_pid()})
        )
    with taken_port() as routes, taken_port() as api, pytest.raises(PortsInUseError) as taken:
        check_all_free("127.0.0.1", {"routes": routes, "stand-in API for orders": api})
    expected = held_by.format(pid=os.getpid())
    assert [line.split(": ", 1)[1].split("; --")[0] for line in str(taken.value).splitlines()[1:3]] == [
        expected,
        expected,
    ]


FREE_OTHERWISE = ["--endpoint-port", "0", "--api-port", "0"]  # 0: free ports, whatever else runs here


@pytest.mark.parametrize("command", ["up", "demo"])
def test_the_command_exits_at_once_with_the_message_not_a_traceback(taken: int, command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "trickle_local", command, "--routes-port", str(taken), *FREE_OTHERWISE],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"trickle_local: port {taken} (routes) is in use by another program; stop it, or pick another"
        " port with --routes-port N (or --ephemeral-ports for free ones)"
    )


def test_every_taken_port_is_named_at_once_with_the_flag_that_moves_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import trickle_local.__main__ as cli

    with taken_port() as endpoint, taken_port() as api, taken_port() as routes:
        flags = ["--endpoint-port", str(endpoint), "--api-port", str(api), "--routes-port", str(routes)]
        assert cli.main(["up", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trickle_local: ") and "ports are taken" in err.splitlines()[0]
    for line in (
        f"  port {endpoint} (AWS endpoint): in use by another program; --endpoint-port N moves it",
        f"  port {api} (stand-in API for orders): in use by another program; --api-port N moves it",
        f"  port {routes} (routes): in use by another program; --routes-port N moves it",
        "  (or --ephemeral-ports picks free ports for all)",
    ):
        assert line in err.splitlines()


def test_the_stand_in_lists_what_it_received_exactly_and_without_the_key() -> None:
    api = StandInApi(Faults(api_key="sk-secret", poison=frozenset({"bad"}))).start()
    try:
        body = '{"exact":12345678901234567890.123456789,"n":1}'
        headers = {"x-api-key": "sk-secret", "idempotency-key": "m1", "content-type": "application/json"}
        assert requests.post(f"{api.url}/items", data=body, headers=headers, timeout=10).status_code == 200
        requests.post(
            f"{api.url}/items", data='{"bad":1}', headers=headers | {"idempotency-key": "m2"}, timeout=10
        )
        requests.post(f"{api.url}/other", data="not json", headers=headers, timeout=10)

        listing = requests.get(f"{api.url}/items", timeout=10)
        later = requests.get(f"{api.url}/items?since=1", timeout=10).json()
    finally:
        api.stop()
    assert listing.status_code == 200
    assert "sk-secret" not in listing.text
    assert '"exact":12345678901234567890.123456789' in listing.text  # digits as sent
    answer = json.loads(listing.text, parse_float=Decimal)
    assert answer["received"] == 2
    first, second = answer["requests"]
    assert (first["status"], first["applied"], first["idempotency_key"]) == (200, True, "m1")
    assert first["headers"]["x-api-key"] == "(redacted)"
    assert first["body"] == {"exact": Decimal("12345678901234567890.123456789"), "n": 1}
    assert (second["status"], second["applied"]) == (400, False)
    assert [r["idempotency_key"] for r in later["requests"]] == ["m2"]


def test_rates_count_only_the_time_drains_ran() -> None:
    app = Chalice(app_name="t")
    invoker = Invoker(app, {"version": "2.0", "app_name": "t"}, "local")
    assert invoker.active_s("drain") == 0.0
    app.handler_map = {"drain": lambda event, context: sum(range(200_000))}  # type: ignore[assignment]
    invoker.invoke("drain", {})
    once = invoker.active_s("drain")
    invoker.invoke("drain", {})
    assert 0 < once < invoker.active_s("drain")
    assert rate(0, 0.0) == "rate=-"
    assert rate(30, 1.5) == "rate=20.0/s over 1.5s of drain time"


def test_the_next_drain_is_named_in_real_seconds() -> None:
    app = Chalice(app_name="t")

    @app.schedule(Rate(1, unit=Rate.MINUTES), name="drain")
    def drain(event: Any) -> None:
        return None

    runtime = LocalRuntime(app, Invoker(app, {"version": "2.0", "app_name": "t"}, "local"), None, "", speed=2)
    session: Any = SimpleNamespace(runtime=runtime, drains=["drain"])
    assert next_drain(session) == "no drain scheduled"  # schedules not started
    runtime.start_schedules()
    try:
        seconds = runtime.seconds_to_next("drain")
        assert seconds is not None and 25 < seconds <= 30  # a minute of schedule time at --speed 2
        assert next_drain(session).startswith("next drain in ")
    finally:
        runtime.stop()


class Counts:
    """A session whose queue counts the test sets; Progress reads nothing else of it."""

    def __init__(self) -> None:
        self.queued = 5
        self.runtime = SimpleNamespace(
            invoker=SimpleNamespace(active_s=lambda name: 0.0, busy=lambda name: False),
            seconds_to_next=lambda name: 12.0,
        )
        self.settings = SimpleNamespace(destinations={"orders": None, "crm": None})
        self.drains = ["drain_orders", "drain_crm"]

    def depth(self, destination: str) -> tuple[int, int]:
        return (self.queued, 0) if destination == "orders" else (0, 0)

    def dead_letters(self, destination: str) -> int:
        return 0

    def delivered(self, destination: str) -> int:
        return 0

    def drain_seconds(self) -> float:
        return 0.0


def test_progress_prints_only_when_something_changed(capsys: pytest.CaptureFixture[str]) -> None:
    session: Any = Counts()
    progress = Progress(session, 5, every_s=0.01)
    for queued in (5, 5, 5, 3, 3, 0, 0):
        session.queued = queued
        progress.tick()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ")[1].split(" in_flight")[0] for line in lines] == [
        "orders: queued=5",
        "orders: queued=3",
        "orders: queued=0",
    ]
    assert all("; crm: queued=0 in_flight=0 delivered=0 dead_lettered=0;" in line for line in lines)
    assert all(line.endswith("rate=-; next drain in 12s") for line in lines)


def test_lines_printed_from_parallel_threads_arrive_whole() -> None:
    """The handlers' metrics lines (print: the text, then the newline) from several threads at once
    reach stderr as whole lines, never cut by another line."""
    import io
    import threading
    import time

    from trickle_local.__main__ import WholeLines

    class Slow(io.StringIO):
        def write(self, text: str) -> int:
            time.sleep(0.0001)  # lets the other threads run between any two writes
            return super().write(text)

    target = Slow()
    lines = WholeLines(target)
    start = threading.Barrier(8)

    def emit(n: int) -> None:
        start.wait()
        for i in range(100):
            print(json.dumps({"thread": n, "i": i, "pad": "x" * 50}), file=lines)

    threads = [threading.Thread(target=emit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    received = [json.loads(line) for line in target.getvalue().splitlines()]
    assert sorted((r["thread"], r["i"]) for r in received) == [(n, i) for n in range(8) for i in range(100)]


def test_a_missing_emulator_stops_the_command_with_what_to_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`./dev run` embeds ministack by default; without its venv the command says to run ./dev setup."""
    import trickle_local.__main__ as cli
    from trickle_local.emulators import ministack_command

    assert cli.build_parser().parse_args(["up"]).emulator == "ministack"

    def missing(name: str, *_: Any, **__: Any) -> Any:
        assert name == "ministack"
        ministack_command(PROJECT_DIR / "no-such-venv")
        raise AssertionError("unreachable")

    monkeypatch.setattr(cli, "start_emulator", missing)
    assert cli.main(["demo", "--ephemeral-ports", "--items", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trickle_local: ministack is not installed") and "./dev setup" in err


def test_slow_moto_is_refused_on_ministack(capsys: pytest.CaptureFixture[str]) -> None:
    import trickle_local.__main__ as cli

    assert cli.main(["demo", "--emulator", "ministack", "--slow-moto"]) == 2
    assert "--slow-moto applies to --emulator moto only" in capsys.readouterr().err


@pytest.fixture
def no_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command refused at start never gets as far as starting an emulator."""
    import trickle_local.__main__ as cli

    def started(*_: Any, **__: Any) -> Any:
        raise AssertionError("an emulator was started")

    monkeypatch.setattr(cli, "start_emulator", started)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--api-url", "http://127.0.0.1:5999/v2/items"],
            "argument --api-url: 'http://127.0.0.1:5999/v2/items' is not DESTINATION=URL",
        ),
        (
            ["--api-url", "shipping=http://127.0.0.1:5999/v2/items", "--api-key", "k"],
            "argument --api-url: stage 'local' has no destination 'shipping' (its destinations: orders, crm,"
            " billing, orders_bulk)",
        ),
        (
            ["--api-url", "orders=127.0.0.1:5999/v2/items", "--api-key", "k"],
            "argument --api-url: '127.0.0.1:5999/v2/items' (for orders) is not an http:// or https:// URL",
        ),
        (
            [
                "--api-url",
                "orders=http://a.example/x",
                "--api-url",
                "orders=http://b.example/y",
                "--api-key",
                "k",
            ],
            "argument --api-url: destination 'orders' is given twice",
        ),
        (
            ["--api-url", "orders=http://127.0.0.1:5999/v2/items"],
            "argument --api-url: needs --api-key KEY, the key the drains send to that API",
        ),
    ],
)
def test_api_url_mistakes_are_usage_errors_naming_the_flag(
    no_emulator: None, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    import trickle_local.__main__ as cli

    with pytest.raises(SystemExit) as refused:
        cli.main(["up", "--ephemeral-ports", *flags])
    err = capsys.readouterr().err
    assert refused.value.code == 2
    assert f"python -m trickle_local up: error: {message}" in err and "Traceback" not in err
    assert err.startswith("usage: python -m trickle_local up ")  # up's usage, whichever check refused


@pytest.mark.parametrize(
    ("routes", "variables", "message"),
    [
        (
            "[destinations.orders\nurl = 1\n",
            {},
            "routes file {routes} is not valid TOML",
        ),
        (
            None,
            {"TRICKLE_DRAIN_BUDGET": "lots"},
            "TRICKLE_DRAIN_BUDGET='lots' is not an integer",
        ),
    ],
)
def test_a_broken_stage_stops_the_command_with_one_message(
    no_emulator: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
    routes: str | None,
    variables: dict[str, str],
    message: str,
) -> None:
    """A broken routes file or a bad TRICKLE_ variable under `./dev run`: what to fix, before anything
    starts, no traceback."""
    import trickle_local.__main__ as cli
    from trickle_project import stage

    env = stage.stage_env("local") | variables
    if routes is not None:
        (tmp_path / "routes.toml").write_text(routes)
        env["TRICKLE_ROUTES_FILE"] = str(tmp_path / "routes.toml")
    monkeypatch.setattr(stage, "stage_env", lambda name, **_: env)
    assert cli.main(["up", "--ephemeral-ports"]) == 2
    err = capsys.readouterr().err
    prefix = "trickle_local: invalid Trickle settings for stage 'local': "
    assert err.startswith(prefix + message.format(routes=tmp_path / "routes.toml"))
    assert len(err.splitlines()) == 1


BULKY = """
[destinations.shop]
url = "https://shop.example.com/v1/bulk"
batch_max_items = 10
batch_max_bytes = 2097152

[[routes]]
name = "all"
destinations = ["shop"]
"""


def test_a_batched_destination_over_what_its_stand_in_takes_is_refused_before_anything_starts(
    no_emulator: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Its batches would each be refused (413) by the stand-in's bulk endpoint: the command says
    which limit to lower or raise, on one line, and starts nothing."""
    import trickle_local.__main__ as cli

    routes = tmp_path / "bulky.toml"
    routes.write_text(BULKY)
    assert cli.main(["demo", "--ephemeral-ports", "--routes", str(routes)]) == 2
    assert capsys.readouterr().err == (
        "trickle_local: destination 'shop': batch_max_bytes=2097152 is over the 1048576 bytes its stand-in"
        " takes (--bulk-max-bytes): lower it (batch_max_bytes in the routes file, or"
        " TRICKLE_DEST_SHOP_BATCH_MAX_BYTES), or raise --bulk-max-bytes\n"
    )


@pytest.mark.parametrize(
    "flags",
    [
        ["demo", "--bulk-max-bytes", "2097152"],  # a stand-in taking that much; below, a real API
        ["up", "--api-url", "shop=https://shop.example.com/v1/bulk", "--api-key", "k", "--metrics-file", "-"],
    ],
)
def test_a_batched_destination_its_stand_in_can_take_or_a_real_api_gets_past_the_check(
    no_emulator: None, tmp_path: Path, flags: list[str]
) -> None:
    import trickle_local.__main__ as cli

    routes = tmp_path / "bulky.toml"
    routes.write_text(BULKY)
    with pytest.raises(AssertionError, match="an emulator was started"):
        cli.main([*flags, "--ephemeral-ports", "--routes", str(routes)])


class Reported(Session):
    """A session whose queues are empty; deliveries come from the drains' own reports."""

    def depth(self, destination: str) -> tuple[int, int]:
        return (0, 0)

    def dead_letters(self, destination: str) -> int:
        return 0


def test_deliveries_are_counted_from_the_drains_reports_for_a_real_api(make_settings: Any) -> None:
    """A destination with `--api-url` has no stand-in to count: the drain's reports say what it
    delivered (a real API answered 200 sixteen times; the progress line said delivered=0)."""
    app = Chalice(app_name="t")
    reports = iter([{"delivered": 10, "received": 12, "stopped_by": "empty"}, {"delivered": 6, "halted": 0}])
    app.handler_map = {"drain_orders": lambda event, context: next(reports)}  # type: ignore[assignment]
    invoker = Invoker(app, {"version": "2.0", "app_name": "t"}, "local")
    runtime = LocalRuntime(app, invoker, None, "")
    session = Reported({}, {}, runtime, {}, None, make_settings())
    invoker.invoke("drain_orders", {})
    invoker.invoke("drain_orders", {})
    line = Progress(session, 0).line(Progress(session, 0).counts())
    assert "orders: queued=0 in_flight=0 delivered=16 dead_lettered=0;" in line
    assert "crm: queued=0 in_flight=0 delivered=0 dead_lettered=0; delivered=16 " in line


def test_the_demo_counts_item_deliveries_and_executions_apart() -> None:
    session: Any = Counts()
    session.delivered = lambda name: 32 if name == "orders" else 0
    progress = Progress(session, 25, executions=8)
    line = progress.line(progress.counts())
    assert "; delivered=32/33 (25 for the items, 8 for executions) rate=" in line


def test_schedule_times_are_printed_on_the_wall_clock() -> None:
    """At --speed 60 a one-minute rate fires a second after start: say when, in real time."""
    from datetime import UTC, datetime, timedelta

    from trickle_local.__main__ import schedule_line
    from trickle_local.runtime import Clock, ScheduledFunction
    from trickle_local.schedules import parse

    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    every_minute = parse("rate(1 minute)", start)
    cases = [
        (60, None, "drain rate(1 minute) at --speed 60, next at 2026-01-01 12:00:01 UTC"),
        (1, None, "drain rate(1 minute), next at 2026-01-01 12:01:00 UTC"),
        (
            60,
            2.0,
            "drain every 2s (--drain-every; its schedule: rate(1 minute)), next at 2026-01-01 12:00:02 UTC",
        ),
    ]
    for speed, every, line in cases:
        clock = Clock(speed, started_at=start)
        due = start + timedelta(seconds=every * speed) if every else every_minute.next_after(start)
        assert schedule_line(ScheduledFunction("drain", every_minute, due), clock, every) == line
    assert schedule_line(ScheduledFunction("drain", every_minute, None), Clock(), None).endswith(
        "not due again"
    )


def test_fault_draws_get_a_fresh_seed_each_run_printed_to_repeat_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fixed default seed gave every run the same faults: now each run draws one and prints it."""
    import trickle_local.__main__ as cli

    parser = cli.build_parser()
    faulty = parser.parse_args(["demo", "--error-rate", "0.1"])
    assert faulty.seed is None
    seeds = [cli.fault_seed(faulty), cli.fault_seed(faulty)]
    lines = capsys.readouterr().err.splitlines()
    assert seeds[0] != seeds[1]
    assert lines == [f"Faults:       drawn with --seed {seed} (pass it to repeat them)" for seed in seeds]
    assert cli.fault_seed(parser.parse_args(["demo", "--error-rate", "0.1", "--seed", "7"])) == 7
    assert cli.fault_seed(parser.parse_args(["demo"])) >= 0
    assert capsys.readouterr().err == "Faults:       drawn with --seed 7 (pass it to repeat them)\n"


def test_the_fault_flags_reach_every_stand_in_with_item_errors_and_poison_per_item(
    make_settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--item-error-rate` and `--poison` are the stand-ins' faults (at a bulk endpoint, per item);
    an item error rate alone is a drawn fault, so the seed is printed to repeat it."""
    import trickle_local.__main__ as cli
    from trickle_local.standin_secrets import Expected

    parser = cli.build_parser()
    for command in ("up", "demo"):
        args = parser.parse_args(
            [command, "--item-error-rate", "0.2", "--poison", "a,b", "--latency", "0.01"]
        )
        crm = make_settings().destination("crm")
        faults = cli.standin_faults(args, crm, Expected(api_key="k"), cli.fault_seed(args))
        assert (faults.item_error_rate, faults.poison, faults.latency_s, faults.error_rate) == (
            0.2,
            frozenset({"a", "b"}),
            0.01,
            0.0,
        )
        assert (faults.api_key, faults.api_key_header, faults.api_key_scheme) == (
            "k",
            "Authorization",
            "Bearer",
        )
        assert "Faults:       drawn with --seed " in capsys.readouterr().err
    assert parser.parse_args(["demo"]).item_error_rate == 0.0


def test_up_writes_metrics_lines_to_a_file_by_default() -> None:
    import tempfile
    from pathlib import Path

    import trickle_local.__main__ as cli

    parser = cli.build_parser()
    default = str(Path(tempfile.gettempdir()) / "trickle-local-metrics.jsonl")
    assert cli.metrics_target(parser.parse_args(["up"])) == default
    assert cli.metrics_target(parser.parse_args(["up", "--metrics-file", "-"])) is None
    assert cli.metrics_target(parser.parse_args(["up", "--metrics-file", "m.jsonl"])) == "m.jsonl"
    assert cli.metrics_target(parser.parse_args(["demo"])) is None  # demo --json keeps them on stderr
