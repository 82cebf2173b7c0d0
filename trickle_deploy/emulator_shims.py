"""Shims that get a deploy past the embedded emulators' gaps, each for one gap named in `GAPS`.

For moto and ministack only: nothing here is used against AWS, and nothing here changes what a real
deploy sends or what the product's template says (docs/emulators.md, "Emulator gaps").

    python -m trickle_deploy.emulator_shims moto|ministack CHALICE-ARGS...   # chalice, shimmed

runs the `chalice` command with the emulator's shims installed on the botocore session Chalice
makes (so `chalice deploy` and `chalice delete` get through); `for_cloudformation` gives the copy of a
transformed template the emulator's CloudFormation can create. `python -m trickle_prove` uses
both; each gap is pinned by a test in tests/integration/test_emulator_gaps.py or
test_cloudformation.py that fails when an emulator upgrade closes it.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trickle_project.aws import LOCAL_CREDENTIALS

CHALICE = "chalice deploy"
CLOUDFORMATION = "CloudFormation"
RUN = "running the functions"


@dataclass(frozen=True)
class Gap:
    """Where an emulator differs from AWS on a deploy's way, and what gets past it."""

    emulator: str
    way: str  # CHALICE, CLOUDFORMATION or RUN
    gap: str
    workaround: str

    def line(self) -> str:
        return f"{self.emulator}, {self.way}: {self.gap}. Shim: {self.workaround}."


GAPS = (
    Gap(
        "moto",
        CHALICE,
        "ImportRestApi and PutRestApi refuse the Swagger 2.0 document Chalice sends (500), which AWS imports",
        "the document is sent labelled OpenAPI 3.0.1, paths unchanged",
    ),
    Gap(
        "ministack",
        CHALICE,
        "UpdateRestApi keeps Chalice's minimumCompressionSize '' (compression off) and answers it as a"
        " string where AWS answers a number or nothing, so botocore fails reading the answer"
        " (invalid literal for int())",
        "that patch operation is sent as a remove",
    ),
    Gap(
        "moto",
        CLOUDFORMATION,
        "AWS::ApiGateway::RestApi needs Name (AWS takes it from Body's title) and ignores Body, so the"
        " API has no methods and AWS::ApiGateway::Deployment fails",
        "the title is given as Name; the Deployment, the Stage and the EndpointURL output are left out",
    ),
    Gap(
        "moto",
        CLOUDFORMATION,
        "AWS::CloudWatch::Alarm is not supported",
        "none needed: moto skips the alarms (test_template.py lints them)",
    ),
    Gap(
        "moto",
        CLOUDFORMATION,
        "AWS::S3::Bucket's LifecycleConfiguration is ignored: the bucket has no lifecycle rules",
        "none needed: nothing in the stack relies on them; test_template.py checks the template's rules and"
        " test_bootstrap.py reads back the same rules the bootstrap sets",
    ),
    Gap(
        "ministack",
        CLOUDFORMATION,
        "an AWS::CloudWatch::Alarm on metric math (Metrics) is refused, and the stack rolls back",
        "such alarms are left out (test_template.py lints them)",
    ),
    Gap(
        "moto",
        RUN,
        "a stream with an event source mapping hands each new record to the function in Docker and drops"
        " it from the stream, where AWS keeps it 24 hours for every reader",
        "moto (in this process) keeps the records: LambdaBackend.send_dynamodb_items hands over nothing",
    ),
    Gap(
        "ministack",
        RUN,
        "it runs deployed functions itself (the stream mapping, the drains' schedules), with the"
        " destination URLs the deploy gave them",
        "the mappings and schedule rules are disabled once deployed, so the functions run here only,"
        " against the stand-in APIs",
    ),
)


def gaps(emulator: str, *ways: str) -> list[Gap]:
    return [g for g in GAPS if g.emulator == emulator and g.way in ways]


# --- chalice deploy --------------------------------------------------------------------------------

Handler = Callable[..., None]


def swagger_2_as_openapi_3(params: dict[str, Any], **_: Any) -> None:
    """moto reads the same paths from an OpenAPI 3 document; only the version header differs."""
    document = json.loads(params["body"])
    if "swagger" not in document:
        return
    relabelled = {k: v for k, v in document.items() if k != "swagger"} | {"openapi": "3.0.1"}
    relabelled["info"] = {"description": ""} | document.get("info", {})
    params["body"] = json.dumps(relabelled).encode()


def compression_off_as_remove(params: dict[str, Any], **_: Any) -> None:
    """Chalice turns compression off with `replace /minimumCompressionSize ''`; ministack keeps ''."""
    for operation in params.get("patchOperations", []):
        if operation.get("path") == "/minimumCompressionSize" and operation.get("value") == "":
            operation["op"] = "remove"
            del operation["value"]


CHALICE_SHIMS: dict[str, list[tuple[str, Handler]]] = {
    "moto": [
        ("before-parameter-build.api-gateway.ImportRestApi", swagger_2_as_openapi_3),
        ("before-parameter-build.api-gateway.PutRestApi", swagger_2_as_openapi_3),
    ],
    "ministack": [("before-parameter-build.api-gateway.UpdateRestApi", compression_off_as_remove)],
}


def install_chalice_shims(emulator: str) -> None:
    """Every botocore session the `chalice` command makes from here on carries the emulator's shims."""
    from chalice.cli import factory

    make_session = factory.CLIFactory.create_botocore_session

    def shimmed(self: factory.CLIFactory, *args: Any, **kwargs: Any) -> Any:
        session = make_session(self, *args, **kwargs)
        for event, handler in CHALICE_SHIMS[emulator]:
            session.register(event, handler)
        return session

    factory.CLIFactory.create_botocore_session = shimmed  # type: ignore[method-assign]


def run_chalice(
    emulator: str, endpoint_url: str, project: Path, *args: str, region: str = "us-east-1"
) -> subprocess.CompletedProcess[str]:
    """`chalice ARGS` in `project` against the emulator, with its shims and test credentials."""
    env = {
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(project)),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),  # this package; the app is project's
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint_url,
        **LOCAL_CREDENTIALS,
    }
    command = [sys.executable, "-m", "trickle_deploy.emulator_shims", emulator, *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=900)


# --- CloudFormation --------------------------------------------------------------------------------

LEFT_OUT_ON_MOTO = ("AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage")


def for_cloudformation(template: dict[str, Any], emulator: str) -> dict[str, Any]:
    """A copy of the transformed template that the emulator's CloudFormation can create (the
    CLOUDFORMATION gaps); the template itself is left as it is."""
    shimmed = copy.deepcopy(template)
    resources = shimmed["Resources"]
    if emulator == "ministack":
        for name in [n for n, r in resources.items() if is_metric_math_alarm(r)]:
            del resources[name]
        return shimmed
    for name in [n for n, r in resources.items() if r["Type"] in LEFT_OUT_ON_MOTO]:
        del resources[name]
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGateway::RestApi":
            resource["Properties"]["Name"] = resource["Properties"]["Body"]["info"]["title"]
    shimmed["Outputs"] = {k: v for k, v in shimmed.get("Outputs", {}).items() if k != "EndpointURL"}
    return shimmed


def is_metric_math_alarm(resource: dict[str, Any]) -> bool:
    return resource["Type"] == "AWS::CloudWatch::Alarm" and "Metrics" in resource.get("Properties", {})


# --- running the functions ------------------------------------------------------------------------


@contextlib.contextmanager
def functions_run_here(emulator: str, lambda_client: Any, events: Any) -> Iterator[None]:
    """While this process runs the deployed functions, the emulator does not (the RUN gaps): moto, in
    this process, keeps a mapped stream's records; ministack's mappings and schedule rules are
    disabled."""
    if emulator == "ministack":
        disable_triggers(lambda_client, events)
    if emulator != "moto":
        yield
        return
    from moto.awslambda.models import LambdaBackend

    original = LambdaBackend.send_dynamodb_items
    LambdaBackend.send_dynamodb_items = lambda *_, **__: ""  # type: ignore[method-assign]  # falsy: kept
    try:
        yield
    finally:
        LambdaBackend.send_dynamodb_items = original  # type: ignore[method-assign]


def disable_triggers(lambda_client: Any, events: Any) -> None:
    """Every event source mapping and rule of the emulator disabled."""
    for page in lambda_client.get_paginator("list_event_source_mappings").paginate():
        for mapping in page["EventSourceMappings"]:
            lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    for page in events.get_paginator("list_rules").paginate():
        for rule in page["Rules"]:
            events.disable_rule(Name=rule["Name"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trickle_deploy.emulator_shims",
        description="Run chalice against an embedded emulator, with that emulator's shims (not for AWS).",
    )
    parser.add_argument("emulator", choices=sorted(CHALICE_SHIMS))
    parser.add_argument("chalice_args", nargs=argparse.REMAINDER, help="what to give chalice")
    args = parser.parse_args(argv)
    install_chalice_shims(args.emulator)
    from chalice.cli import main as chalice

    sys.argv = ["chalice", *args.chalice_args]
    return int(chalice())


if __name__ == "__main__":
    raise SystemExit(main())
