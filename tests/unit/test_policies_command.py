"""`python -m trickle_deploy.policies` on the shipped stages right after a destination is added: a
bootstrapped stage has no queues for it yet, so its policies name those its bootstrap will make; an
invalid stage gets one line naming it and what is missing, and nothing is written."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.settings import ROUTES_FILE
from trickle_deploy.policies import main
from trickle_project.stage import with_bootstrap_queues

SHIPPED: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / ".chalice" / "config.json").read_text()
)
SHIPPING = """
[destinations.shipping]
url = "https://shipping.example.com/v1/shipments"

[[routes]]
name = "shipping"
filter = "item.type == 'order'"
destinations = ["shipping"]
"""
DEV_SQS = "arn:aws:sqs:us-east-1:123456789012"


def project(tmp_path: Path, routes: str = SHIPPING, **dev: str | None) -> Path:
    """A `.chalice` directory with the shipped stages, whose routes file has `routes` added; `dev`
    changes the dev stage's variables (None removes one). No policy file yet."""
    routes_file = tmp_path / "routes.toml"
    routes_file.write_text(ROUTES_FILE.read_text() + routes)
    config = copy.deepcopy(SHIPPED)
    for stage in config["stages"].values():
        stage["environment_variables"]["TRICKLE_ROUTES_FILE"] = str(routes_file)
    variables = config["stages"]["dev"]["environment_variables"]
    for name, value in dev.items():
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value
    chalice = tmp_path / ".chalice"
    chalice.mkdir()
    (chalice / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return chalice


def written(chalice: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(chalice.iterdir())}


def statement(chalice: Path, stage: str, function: str, sid: str) -> Any:
    policy = json.loads((chalice / f"policy-{stage}-{function}.json").read_text())
    (found,) = [s for s in policy["Statement"] if s["Sid"] == sid]
    return found["Resource"]


def test_a_stage_not_bootstrapped_for_a_new_destination_gets_the_queues_its_bootstrap_will_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chalice = project(tmp_path)

    assert main([], chalice) == 0

    assert capsys.readouterr().err == ""
    shipping = [f"{DEV_SQS}:trickle-dev-shipping.fifo", f"{DEV_SQS}:trickle-dev-shipping-dead-letters.fifo"]
    assert [
        *statement(chalice, "dev", "drain_shipping", "Drain"),
        *statement(chalice, "dev", "drain_shipping", "DeadLetter"),
    ] == shipping
    assert statement(chalice, "dev", "drain_shipping", "ReadCredentials") == [
        "arn:aws:ssm:us-east-1:123456789012:parameter/trickle/dev/shipping-api-key"
    ]
    assert "orders" not in (chalice / "policy-dev-drain_shipping.json").read_text()
    assert "shipping" not in (chalice / "policy-dev-drain_orders.json").read_text()
    assert statement(chalice, "dev", "ingest", "Enqueue") == [
        f"{DEV_SQS}:trickle-dev-{name}{kind}"
        for kind in (".fifo", "-dead-letters.fifo")
        for name in ("orders", "crm", "billing", "orders_bulk", "shipping")
    ]
    assert statement(chalice, "local", "drain_shipping", "Drain") == [
        "arn:aws:sqs:us-east-1:123456789012:trickle-local-shipping.fifo"
    ]
    assert statement(chalice, "prod", "drain_shipping", "Drain") == [{"Fn::GetAtt": ["ShippingQueue", "Arn"]}]
    config = json.loads((chalice / "config.json").read_text())
    for stage in ("local", "dev", "prod"):
        assert config["stages"][stage]["lambda_functions"]["drain_shipping"] == {
            "iam_policy_file": f"policy-{stage}-drain_shipping.json",
            "lambda_timeout": 300,
        }
        assert "TRICKLE_DEST_SHIPPING_QUEUE_URL" not in config["stages"][stage]["environment_variables"]
    assert main(["--check"], chalice) == 0


ROUTES_WITHOUT_URL = SHIPPING.replace('url = "https://shipping.example.com/v1/shipments"\n', "")


@pytest.mark.parametrize(
    ("routes", "dev", "line"),
    [
        (
            ROUTES_WITHOUT_URL,
            {},
            "invalid Trickle settings for stage 'dev': destination 'shipping' needs TRICKLE_DEST_SHIPPING_URL"
            " (or url in the routes file)",
        ),
        (  # without its name, a stage has no default key parameter for any destination
            ROUTES_WITHOUT_URL,
            {"TRICKLE_STAGE": None},
            "stage 'dev': invalid Trickle settings:"
            " destination 'orders' needs TRICKLE_DEST_ORDERS_KEY_PARAMETER (or key_parameter in the routes"
            " file); destination 'crm' needs TRICKLE_DEST_CRM_KEY_PARAMETER (or key_parameter in the routes"
            " file); destination 'billing' needs TRICKLE_DEST_BILLING_KEY_PARAMETER (or key_parameter in the"
            " routes file); destination 'billing' needs TRICKLE_DEST_BILLING_SIGNING_PARAMETER (or"
            " signing_parameter in the routes file); destination 'orders_bulk' needs"
            " TRICKLE_DEST_ORDERS_BULK_KEY_PARAMETER (or key_parameter in the routes file); destination"
            " 'shipping' needs TRICKLE_DEST_SHIPPING_URL"
            " (or url in the routes file); destination 'shipping' needs TRICKLE_DEST_SHIPPING_KEY_PARAMETER"
            " (or key_parameter in the routes file)",
        ),
        (
            SHIPPING,
            {"TRICKLE_INGEST_FAILURE_QUEUE_URL": None},
            "invalid Trickle settings for stage 'dev': TRICKLE_INGEST_FAILURE_QUEUE_URL is required"
            " (the bootstrap sets it)",
        ),
        (
            SHIPPING,
            {"TRICKLE_STREAM_ARN": None},
            "invalid Trickle settings for stage 'dev': TRICKLE_STREAM_ARN is required;"
            " destination 'shipping' needs TRICKLE_DEST_SHIPPING_QUEUE_URL (or queue_url in the routes file);"
            " destination 'shipping' needs TRICKLE_DEST_SHIPPING_DLQ_URL (or dlq_url in the routes file)",
        ),
    ],
)
def test_an_invalid_stage_is_one_line_naming_it_and_the_variable_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], routes: str, dev: dict[str, str | None], line: str
) -> None:
    chalice = project(tmp_path, routes, **dev)
    # the other stages have what dev lacks: only dev is reported
    for stage in ("local", "prod"):
        config = json.loads((chalice / "config.json").read_text())
        config["stages"][stage]["environment_variables"]["TRICKLE_DEST_SHIPPING_URL"] = "https://b.example/in"
        (chalice / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    before = written(chalice)

    assert main([], chalice) == 1

    assert capsys.readouterr().err == line + "\n"
    assert written(chalice) == before


@pytest.mark.parametrize(
    ("env", "queue"),
    [
        (  # a bootstrapped stage: in its stream's account and region
            {"TRICKLE_STREAM_ARN": "arn:aws:dynamodb:eu-west-3:210987654321:table/t/stream/x"},
            "https://sqs.eu-west-3.amazonaws.com/210987654321/trickle-dev-shipping.fifo",
        ),
        (  # the local stage: at its endpoint
            {
                "TRICKLE_STREAM_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/latest",
                "AWS_ENDPOINT_URL": "http://127.0.0.1:5050/",
            },
            "http://127.0.0.1:5050/123456789012/trickle-dev-shipping.fifo",
        ),
        (  # a queue it names is kept
            {
                "TRICKLE_STREAM_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/latest",
                "TRICKLE_DEST_SHIPPING_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/mine.fifo",
            },
            "https://sqs.us-east-1.amazonaws.com/1/mine.fifo",
        ),
        (  # nowhere to place them: left for the settings to report
            {"TRICKLE_STREAM_ARN": ""},
            None,
        ),
    ],
)
def test_the_queues_a_bootstrap_will_make(tmp_path: Path, env: dict[str, str], queue: str | None) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES_FILE.read_text() + SHIPPING)
    orders = "https://sqs.us-east-1.amazonaws.com/123456789012/trickle-dev-orders.fifo"
    stage = {"TRICKLE_ROUTES_FILE": str(routes), "TRICKLE_DEST_ORDERS_QUEUE_URL": orders, **env}

    filled = with_bootstrap_queues(stage, "trickle", "dev")

    assert filled.get("TRICKLE_DEST_SHIPPING_QUEUE_URL") == queue
    assert filled["TRICKLE_DEST_ORDERS_QUEUE_URL"] == orders
    if queue is not None and "mine" not in queue:
        assert filled["TRICKLE_DEST_SHIPPING_DLQ_URL"] == queue.replace(".fifo", "-dead-letters.fifo")


def test_a_template_stage_is_left_to_its_stack(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES_FILE.read_text() + SHIPPING)
    prod = SHIPPED["stages"]["prod"]["environment_variables"] | {"TRICKLE_ROUTES_FILE": str(routes)}

    assert with_bootstrap_queues(prod, "trickle", "prod") == prod


def test_an_emulator_record_names_them_after_the_stage_it_was_made_from(tmp_path: Path) -> None:
    """`dev-emulator`, bootstrap --endpoint's record of dev, holds dev's variables and gets dev's names."""
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES_FILE.read_text() + SHIPPING)
    record = SHIPPED["stages"]["dev"]["environment_variables"] | {
        "TRICKLE_ROUTES_FILE": str(routes),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4567",
    }

    filled = with_bootstrap_queues(record, "trickle", "dev-emulator")

    assert (
        filled["TRICKLE_DEST_SHIPPING_QUEUE_URL"]
        == "http://127.0.0.1:4567/123456789012/trickle-dev-shipping.fifo"
    )


@pytest.mark.parametrize(
    ("given", "jobs"),
    [
        (
            None,
            "https://sqs.eu-west-3.amazonaws.com/210987654321/trickle-dev-jobs",
        ),  # a stage made before #26
        ("  ", "https://sqs.eu-west-3.amazonaws.com/210987654321/trickle-dev-jobs"),
        (
            "https://sqs.eu-west-3.amazonaws.com/210987654321/own",
            "https://sqs.eu-west-3.amazonaws.com/210987654321/own",
        ),
    ],
)
def test_a_stage_naming_no_tasks_queue_gets_the_one_its_bootstrap_will_make(
    given: str | None, jobs: str
) -> None:
    """Issue #26: TRICKLE_JOBS_QUEUE_URL is required, so a stage bootstrapped before it existed could
    not be bootstrapped again (nor its policies made) unless its name is known beforehand."""
    stream = "arn:aws:dynamodb:eu-west-3:210987654321:table/items/stream/2026-01-01T00:00:00.000"
    env = SHIPPED["stages"]["dev"]["environment_variables"] | {"TRICKLE_STREAM_ARN": stream}
    env.pop("TRICKLE_JOBS_QUEUE_URL")
    if given is not None:
        env["TRICKLE_JOBS_QUEUE_URL"] = given

    assert with_bootstrap_queues(env, "trickle", "dev")["TRICKLE_JOBS_QUEUE_URL"] == jobs
