"""Prove on an embedded emulator that a stage deploys end to end, each way docs/deploying.md deploys it.

    python -m trickle_prove [--way a|b|both] [--emulator moto|ministack] [--json]

Per way: an emulator on a free loopback port and a stand-in API per destination; the deploy; items
written to the source table (for each destination, the first demo item its routes take); the
deployed functions run until every item reached its stand-in with the destination's credentials
(and signature, for a signing one; the secrets made up for the proof, as the local runtime makes
them up, and stored as a user would: way A by put-parameter, way B by the bootstrap); every
AWS call they made checked against the role the deploy gave the function; the removal; a short
report that names each emulator gap worked around. Exit status 0 when every step held.

- Way A, a template stage (`--template-stage`, default prod): `chalice package` with the merge
  template (python -m trickle_deploy.template --package), the upload `aws cloudformation package`
  does, the SAM transform CloudFormation applies (aws-sam-translator), create-stack on the emulator's
  CloudFormation, the destinations' secrets stored as the stack's outputs say; delete-stack at the end.
- Way B, a bootstrapped stage (`--bootstrap-stage`, default dev), in a copy of the project (your
  `.chalice/` is not touched): bootstrap --endpoint (which records stage `<stage>-emulator`),
  `chalice deploy` through the shim (python -m trickle_deploy.emulator_shims), stream_settings;
  `chalice delete` through the shim and the bootstrap's teardown at the end.

The emulators do not run the functions here (moto needs Docker for it; ministack is kept from it,
since they must reach the stand-ins): this process runs the deployed handlers, as Lambda and
EventBridge would, with the environment the emulator's Lambda holds for them (read back from it): the
stream through the local runtime's poller, each drain until its items have arrived.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from chalicelib import naming
from chalicelib.logs import LOGGER_NAMES
from chalicelib.settings import Settings, load_settings
from trickle_deploy import bootstrap, emulator_shims, stream_settings, template
from trickle_deploy.iam_check import CallRecorder, denied, deployed_policies, partition_keys
from trickle_deploy.operate import stack_env
from trickle_deploy.sam import create_stack
from trickle_local.demo import expected_by_destination, single_table_items, summarize
from trickle_local.emulators import EMULATORS, REGION, Emulator, EmulatorName, start_emulator
from trickle_local.runtime import Invoker, scheduled_event, stream_sources
from trickle_local.standin_api import Faults, StandInApi
from trickle_local.standin_secrets import expected, parameter_values, pointed_at, requiring, stand_in_for
from trickle_local.stream_poller import StreamPoller
from trickle_project import stage
from trickle_project.aws import LOCAL_CREDENTIALS
from trickle_project.secret_parameters import SECRET_OPTIONS, needed

VARIABLE_PREFIX = "PROVE_"  # the bootstrap reads each secret from PROVE_<its variable> (never an argument)
TOKEN_LIFETIME_S = 300  # of the OAuth2 stand-ins' tokens: a proof of the deploy, not of refreshes


@dataclass
class Step:
    name: str
    detail: str
    seconds: float


@dataclass
class WayReport:
    way: str
    emulator: str
    stage: str
    steps: list[Step] = field(default_factory=list)
    delivered: dict[str, dict[str, int]] = field(default_factory=dict)
    calls: int = 0
    denied: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        arrived = all(
            d["delivered"] == d["expected"] > 0 and d["duplicates"] == 0 for d in self.delivered.values()
        )
        return self.error is None and bool(self.delivered) and arrived and self.calls > 0 and not self.denied

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def text(self) -> str:
        verdict = "proved" if self.ok else "NOT proved"
        lines = [f"Way {self.way} on {self.emulator}, stage {self.stage}: {verdict}"]
        lines += [f"  {s.name:<14}{s.detail} ({s.seconds:.1f} s)" for s in self.steps]
        if self.error:
            lines.append(f"  failed:       {self.error}")
        if self.gaps:
            lines.append("  emulator gaps worked around:")
            lines += [f"    - {gap}" for gap in self.gaps]
        return "\n".join(lines)


@contextlib.contextmanager
def step(report: WayReport, name: str) -> Iterator[list[str]]:
    """Times a step; what it appends to the yielded list becomes the step's line."""
    detail: list[str] = []
    started = time.monotonic()
    try:
        yield detail
    except Exception as exc:
        report.error = f"{name}: {exc}"
        raise
    report.steps.append(Step(name, "; ".join(detail), time.monotonic() - started))


class StepFailedError(Exception):
    """A step's command did not succeed; its message is what to read."""


# --- the deploys ---------------------------------------------------------------------------------


def prove_a(report: WayReport, emulator: Emulator, work: Path) -> None:
    stage_name = report.stage
    client = clients_of(emulator)
    stack = naming.stack_name(stage.load_config()["app_name"], stage_name)
    with step(report, "packaged") as said:
        sam = json.loads(template.package(stage_name, work).read_text())
        said.append("chalice package --merge-template (python -m trickle_deploy.template --package)")
    with step(report, "stack created") as said:
        transformed = create_stack(client, sam, work / "pkg" / "deployment.zip", stack, emulator.name)
        resources = client("cloudformation").list_stack_resources(StackName=stack)["StackResourceSummaries"]
        said.append(
            f"{stack} on {emulator.name}'s CloudFormation from the SAM-transformed template:"
            f" {len(resources)} of its {len(transformed['Resources'])} resources"
        )
    env = stack_env(client("cloudformation"), client("lambda"), stack)
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    }
    values = made_up_secrets(load_settings(env))
    for name, value in values.items():  # as the stack's put-parameter commands say
        client("ssm").put_parameter(
            Name=name,
            Value=value,
            Type="SecureString",
            KeyId=outputs["ApiKeyEncryptionKeyArn"],
            Overwrite=True,
        )
    deliver_and_check(report, emulator, env, stage.load_config(), stage_name, values)
    with step(report, "removed") as said:
        cloudformation = client("cloudformation")
        cloudformation.delete_stack(StackName=stack)
        cloudformation.get_waiter("stack_delete_complete").wait(
            StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        if functions(client("lambda")):
            raise StepFailedError(f"functions left after delete-stack: {functions(client('lambda'))}")
        client("dynamodb").describe_table(TableName=env["TRICKLE_LEDGER_TABLE"])
        said.append("delete-stack: the functions are gone, the retained tables, queues, key and bucket stay")


def prove_b(report: WayReport, emulator: Emulator, work: Path) -> None:
    stage_name = report.stage
    client = clients_of(emulator)
    project = stage.copy_project(work / "project")
    recorded = stage_name + bootstrap.EMULATOR_SUFFIX
    settings = load_settings(stage.stage_env(stage_name, project))
    values = made_up_secrets(settings)
    where = ["--project-dir", str(project)]
    with step(report, "bootstrapped") as said:
        given = {
            f"{VARIABLE_PREFIX}{p.variable}": (p, values[p.name])
            for d in settings.destinations.values()
            for p in needed(d)
        }
        os.environ.update({variable: value for variable, (_, value) in given.items()})
        try:
            bootstrap_args = ["--stage", stage_name, "--endpoint", emulator.endpoint_url]
            options = [
                option
                for variable, (p, _) in given.items()
                for option in (SECRET_OPTIONS[p.kind], f"{p.destination}={variable}")
            ]
            quietly(bootstrap.main, [*bootstrap_args, *options, *where])
        finally:
            for variable in given:
                del os.environ[variable]
        said.append(f"bootstrap --endpoint, recorded as stage {recorded} in a copy of the project")
    with step(report, "deployed") as said:
        shimmed_chalice(emulator, project, "deploy", "--stage", recorded)
        said.append(f"chalice deploy --stage {recorded} through the shim (trickle_deploy.emulator_shims)")
    with step(report, "stream set") as said:
        quietly(stream_settings.main, ["--stage", recorded, *where])
        said.append("stream_settings: bisect, retries, record age, on-failure queue")
    ingest = naming.deployed_function(stage.load_config(project)["app_name"], recorded, "ingest")
    env = function_env(client("lambda"), ingest)
    deliver_and_check(report, emulator, env, stage.load_config(project), recorded, values)
    with step(report, "removed") as said:
        shimmed_chalice(emulator, project, "delete", "--stage", recorded)
        quietly(bootstrap.main, ["--stage", recorded, "--teardown", *where])
        left = functions(client("lambda")) + client("sqs").list_queues().get("QueueUrls", [])
        if left:
            raise StepFailedError(f"left after chalice delete and the teardown: {left}")
        if recorded in stage.load_config(project)["stages"]:
            raise StepFailedError(f"the teardown left stage {recorded} in the project's config")
        said.append(f"chalice delete through the shim, bootstrap --teardown (stage {recorded} removed)")


def clients_of(emulator: Emulator) -> Callable[[str], Any]:
    make: Any = boto3.client
    return lambda service: make(service, endpoint_url=emulator.endpoint_url, region_name=REGION)


def quietly(command: Callable[[list[str]], int], argv: list[str]) -> None:
    """A command of this package, in this process; its output is shown only if it fails."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = command(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        out.write(str(exc.code or ""))
    if code != 0:
        raise StepFailedError(f"exit status {code}: {last_lines(out.getvalue())}")


def shimmed_chalice(emulator: Emulator, project: Path, *args: str) -> None:
    done = emulator_shims.run_chalice(emulator.name, emulator.endpoint_url, project, *args, region=REGION)
    if done.returncode != 0:
        said = f"chalice {' '.join(args)}: exit status {done.returncode}"
        raise StepFailedError(f"{said}: {last_lines(done.stderr or done.stdout)}")


def last_lines(output: str, count: int = 3) -> str:
    """The end of a command's output (a traceback's end says what went wrong), on one line."""
    return " | ".join([line.strip() for line in output.splitlines() if line.strip()][-count:])


def functions(lambda_client: Any) -> list[str]:
    pages = lambda_client.get_paginator("list_functions").paginate()
    return [f["FunctionName"] for page in pages for f in page["Functions"]]


def function_env(lambda_client: Any, function: str) -> dict[str, str]:
    return dict(lambda_client.get_function_configuration(FunctionName=function)["Environment"]["Variables"])


# --- the items, through the deployed functions ------------------------------------------------------


def demo_items(settings: Settings) -> list[dict[str, Any]]:
    """For each destination, the first demo item its routes take (in the demo's order: a customer's
    profile before its orders, which an enricher may look up)."""
    candidates = single_table_items(12, 1)
    expected = expected_by_destination(candidates, settings)
    wanted = {keys[0] for keys in expected.values() if keys}
    return [i for i in candidates if (i["pk"]["S"], i["sk"]["S"]) in wanted]


def deliver_and_check(
    report: WayReport,
    emulator: Emulator,
    env: dict[str, str],
    config: dict[str, Any],
    stage_name: str,
    values: dict[str, str],
) -> None:
    """Items through the stream and the drains to stand-in APIs, as the deployed functions would;
    then their calls against the roles the deploy gave them."""
    settings = load_settings(env)
    client = clients_of(emulator)
    with step(report, "delivered") as said, stand_ins(settings, values) as apis:
        run_env = env | {"AWS_ENDPOINT_URL": emulator.endpoint_url}
        for name, api in apis.items():
            run_env |= pointed_at(settings.destination(name), api)
        items = demo_items(settings)
        expected = expected_by_destination(items, settings)
        calls = CallRecorder(partition_keys=partition_keys(env))
        running_here = emulator_shims.functions_run_here(emulator.name, client("lambda"), client("events"))
        metrics = io.StringIO()  # the handlers' metric lines (CloudWatch's, on Lambda) are not the report
        with running_here, contextlib.redirect_stdout(metrics), handlers(run_env, calls) as (app, record):
            invoker = Invoker(app, config, stage_name)

            def invoke(function: str, event: dict[str, Any]) -> Any:
                with record(function):
                    return invoker.invoke(function, event)

            (source,) = stream_sources(app)
            poller = StreamPoller(
                client("dynamodbstreams"),
                settings.stream_arn,
                lambda event: invoke(source.name, event),
                batch_size=source.batch_size,
                window_s=source.maximum_batching_window_in_seconds or 0,
            )
            for item in items:
                client("dynamodb").put_item(TableName=settings.table_name, Item=item)

            def arrived(name: str) -> bool:
                return summarize(expected[name], apis[name].requests, 0, 0).delivered == len(expected[name])

            deadline = time.monotonic() + 180
            while not all(arrived(name) for name in apis) and time.monotonic() < deadline:
                poller.poll()
                for name, destination in settings.destinations.items():
                    if poller.stats.records and not arrived(name):
                        drain = destination.drain_function
                        invoke(drain, scheduled_event(drain, datetime.now(UTC), REGION))
                time.sleep(0.2)
        for name, api in apis.items():
            audit = summarize(expected[name], api.requests, 0, 0)
            report.delivered[name] = {
                "expected": audit.inserted,
                "delivered": audit.delivered,
                "duplicates": audit.duplicates,
            }
        said.append(
            ", ".join(f"{n} {d['delivered']}/{d['expected']}" for n, d in report.delivered.items())
            + f" of {len(items)} items written to {settings.table_name}, through the stream and the"
            " drains (run here with the environment the deploy gave them) to stand-in APIs that check"
            " the credentials and signatures"
        )
        unrouted = [name for name, keys in expected.items() if not keys]
        if unrouted:
            said.append(f"no demo item is routed to {', '.join(unrouted)}: not proved there")
    with step(report, "roles") as said:
        policies = deployed_policies(client("lambda"), client("iam"), functions(client("lambda")))
        report.calls = len(calls.calls)
        report.denied = sorted(
            {f"{c.function}: {c.action} on {c.resource}" for c in denied(calls.calls, policies)}
        )
        by = sorted({c.function for c in calls.calls})
        said.append(
            f"{report.calls} AWS calls by {', '.join(by)}: "
            + (
                "all allowed by the roles the deploy made"
                if not report.denied
                else f"{len(report.denied)} denied"
            )
        )


def made_up_secrets(settings: Settings) -> dict[str, str]:
    """Parameter name -> value, for every secret the stage's drains read, made up for the proof
    (as the local runtime makes them up for its stand-ins)."""
    api_key = secrets.token_urlsafe(16)
    return {
        name: value
        for destination in settings.destinations.values()
        for name, value in parameter_values(destination, {}, api_key).items()
    }


@contextlib.contextmanager
def stand_ins(settings: Settings, values: dict[str, str]) -> Iterator[dict[str, StandInApi]]:
    """A stand-in API per destination that answers 2xx only to the credentials and signature its
    parameters (`values`) say, sent as configured; an OAuth2 one issues the tokens itself."""
    apis: dict[str, StandInApi] = {}
    try:
        for name, d in settings.destinations.items():
            wanted = expected(needed(d), values)
            apis[name] = stand_in_for(
                d, requiring(Faults(), d, wanted), wanted.client, TOKEN_LIFETIME_S
            ).start()
        yield apis
    finally:
        for api in apis.values():
            api.stop()


@contextlib.contextmanager
def handlers(
    env: dict[str, str], calls: CallRecorder
) -> Iterator[tuple[Any, Callable[[str], contextlib.AbstractContextManager[None]]]]:
    """The app imported with `env` as Lambda would (this process's environment restored after), and
    a context that attributes the AWS calls made inside it to a function."""
    saved = dict(os.environ)
    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
    calls.register(events)

    @contextlib.contextmanager
    def record(function: str) -> Iterator[None]:
        calls.function = function
        try:
            yield
        finally:
            calls.function = None

    try:
        for name in [n for n in os.environ if n.startswith("TRICKLE_") and n not in env]:
            del os.environ[name]  # a function's environment holds only what its deploy set
        app = stage.load_app(env)
        for name in LOGGER_NAMES:  # the handlers' own logs: only what goes wrong
            logging.getLogger(name).setLevel(logging.WARNING)
        yield app, record
    finally:
        calls.unregister(events)
        os.environ.clear()
        os.environ.update(saved)


# --- the command -----------------------------------------------------------------------------------

WAYS: dict[str, tuple[Callable[[WayReport, Emulator, Path], None], str]] = {
    "a": (prove_a, emulator_shims.CLOUDFORMATION),
    "b": (prove_b, emulator_shims.CHALICE),
}


def prove(way: str, emulator_name: EmulatorName, stage_name: str) -> WayReport:
    """One way on a fresh emulator of its own; everything it made is gone afterwards."""
    run, deploy = WAYS[way]
    gaps = [g.line() for g in emulator_shims.gaps(emulator_name, deploy, emulator_shims.RUN)]
    report = WayReport(way.upper(), emulator_name, stage_name, gaps=gaps)
    work = Path(tempfile.mkdtemp(prefix=f"trickle-prove-{way}-"))
    try:
        emulator = start_emulator(emulator_name)
        emulator.reset()  # moto in this process keeps its state from one start to the next
    except Exception as exc:
        report.error = f"starting {emulator_name}: {exc}"
        return report
    try:
        run(report, emulator, work)
    except Exception as exc:  # a step recorded which one failed; anything else is said as it is
        report.error = report.error or f"{type(exc).__name__}: {exc}"
    finally:
        emulator.stop()
        shutil.rmtree(work, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trickle_prove",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--way", choices=["a", "b", "both"], default="both")
    parser.add_argument("--emulator", choices=EMULATORS, default="moto")
    parser.add_argument("--template-stage", default="prod", help="way A's stage (default: prod)")
    parser.add_argument("--bootstrap-stage", default="dev", help="way B's stage (default: dev)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the text report")
    args = parser.parse_args(argv)
    os.environ.update(LOCAL_CREDENTIALS)  # nothing here may sign for a real account
    os.environ["AWS_DEFAULT_REGION"] = REGION
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION"):
        os.environ.pop(name, None)
    for name in ("moto", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("werkzeug").disabled = True  # moto's request log: a refusal shows in the report
    warnings.filterwarnings("ignore", "Tried to parse .* not supported by moto", UserWarning)  # a gap below
    ways = ["a", "b"] if args.way == "both" else [args.way]
    stages = {"a": args.template_stage, "b": args.bootstrap_stage}
    reports = []
    for way in ways:
        reports.append(prove(way, args.emulator, stages[way]))
        if not args.json:
            print(reports[-1].text(), flush=True)
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
