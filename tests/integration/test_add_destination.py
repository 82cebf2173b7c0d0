"""The docs' recipe for a new destination, followed exactly as written: its snippets and its
command are read from "Adding a destination" in docs/routes.md and applied to a fresh copy of the
project, nothing else is touched, and each of the three stages is then used as a user would: `local`
runs (its new stand-in on the port the recipe states), `dev` is bootstrapped (its policies named
the queues before the bootstrap made them), `prod` is packaged with its template."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chalice import Cron

from chalicelib.settings import load_settings
from tests.integration.conftest import EMULATOR
from trickle_deploy.iam_check import load_template, packaged_policies
from trickle_local.__main__ import build_parser, wanted_ports
from trickle_local.emulators import Emulator
from trickle_project import stage
from trickle_project.aws import clients
from trickle_project.resources import provision, teardown
from trickle_project.stage import with_bootstrap_queues

STAGES = ("local", "dev", "prod")  # .chalice/config.json


@dataclass(frozen=True)
class Recipe:
    routes: str  # appended to chalicelib/routes.toml
    drain: str  # appended to app.py
    command: str
    destination: str
    local_port: int  # where the recipe says its stand-in listens
    local_path: str

    @property
    def schedule(self) -> str:
        """The schedule expression of the drain's decorator, as Chalice writes it."""
        decorator = ast.parse(self.drain).body[0].decorator_list[0]  # type: ignore[attr-defined]
        cron = decorator.args[0]
        assert cron.func.id == "Cron"
        return str(Cron(*(ast.literal_eval(a) for a in cron.args)).to_string())


def read_recipe(page: str) -> Recipe:
    """The section's fenced blocks, in order: the routes entry, the drain, the command."""
    section = page.split("\n## Adding a destination\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w*)\n(.*?)\n *```", section, re.DOTALL)
    assert [language for language, _ in blocks] == ["toml", "python", ""], "two snippets and one command"
    (_, routes), (_, drain), (_, command) = [(lang, textwrap.dedent(text) + "\n") for lang, text in blocks]
    (port, path) = re.findall(r"curl -s http://127\.0\.0\.1:(\d+)(/[^`\s]*)", section)[0]
    assert set(re.findall(r"127\.0\.0\.1:(\d+)", section)) == {port}
    match = re.search(r"\[destinations\.(\w+)\]", routes)
    assert match is not None
    return Recipe(routes, drain, command.strip(), match[1], int(port), path)


RECIPE = read_recipe((stage.PROJECT_DIR / "docs" / "routes.md").read_text())


def user_env() -> dict[str, str]:
    """A user's shell: none of this test session's TRICKLE_* variables."""
    return {name: value for name, value in os.environ.items() if not name.startswith("TRICKLE_")}


def run(project: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], cwd=project, env=user_env(), capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A fresh copy of the project with the recipe applied: (project, what the command did)."""
    project = tmp_path_factory.mktemp("recipe") / "project"
    shutil.copytree(
        stage.PROJECT_DIR,
        project,
        ignore=shutil.ignore_patterns(".venv*", ".git", "tests", "bench", "__pycache__", ".*_cache", "build"),
    )
    for venv in (".venv", ".venv-ministack"):
        if (stage.PROJECT_DIR / venv).exists():
            (project / venv).symlink_to((stage.PROJECT_DIR / venv).resolve())
    routes, app = project / "chalicelib" / "routes.toml", project / "app.py"
    routes.write_text(routes.read_text() + RECIPE.routes)  # appended as they are, as the recipe says
    app.write_text(app.read_text() + RECIPE.drain)
    return project, run(project, RECIPE.command)


def project_env(project: Path, stage_name: str) -> dict[str, str]:
    """The copy's stage as its tools see it (`stage.stage_env` there), for calls from this process."""
    config = stage.load_config(project)
    env = config["stages"][stage_name]["environment_variables"]
    routes = {"TRICKLE_ROUTES_FILE": str(project / "chalicelib" / "routes.toml")}
    return with_bootstrap_queues(env | routes, config["app_name"], stage_name)


def policy(project: Path, stage_name: str, function: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (project / ".chalice" / f"policy-{stage_name}-{function}.json").read_text()
    )
    return document


def statement(document: dict[str, Any], sid: str) -> dict[str, Any]:
    (found,) = [s for s in document["Statement"] if s["Sid"] == sid]
    return found  # type: ignore[no-any-return]


def test_every_destination_of_the_shipped_routes_has_its_drain_in_app_py() -> None:
    settings = load_settings(stage.stage_env("local"))
    app = ast.parse((stage.PROJECT_DIR / "app.py").read_text())
    drains = {
        keyword.value.value  # type: ignore[attr-defined]
        for node in ast.walk(app)
        if isinstance(node, ast.FunctionDef)
        for decorator in node.decorator_list
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "schedule"
        for keyword in decorator.keywords
        if keyword.arg == "name"
    }

    assert drains == {d.drain_function for d in settings.destinations.values()}


def test_the_command_gives_every_stage_the_new_drain_and_its_policy(
    applied: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    project, done = applied
    drain = f"drain_{RECIPE.destination}"

    assert (done.returncode, done.stderr) == (0, "")
    config = json.loads((project / ".chalice" / "config.json").read_text())
    for name in STAGES:
        assert config["stages"][name]["lambda_functions"][drain] == {
            "iam_policy_file": f"policy-{name}-{drain}.json",
            "lambda_timeout": 300,
        }
        assert f"updated .chalice/policy-{name}-{drain}.json" in done.stdout.splitlines()
    assert run(project, RECIPE.command + " --check").returncode == 0


def test_the_project_stays_lint_and_format_clean(
    applied: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """`./dev test` checks these first: the recipe must not leave it failing before any test runs."""
    project, _ = applied

    checks = (".venv/bin/ruff check .", ".venv/bin/ruff format --check .")

    done = {check: run(project, check) for check in checks}

    failed = {check: d.stdout + d.stderr for check, d in done.items() if d.returncode != 0}
    assert failed == {}


def test_local_runs_it_with_its_stand_in_on_the_port_the_recipe_states(
    applied: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    project, _ = applied
    defaults = build_parser().parse_args(["up"])

    ports = wanted_ports(defaults, project_env(project, "local"))

    assert ports[f"stand-in API for {RECIPE.destination}"] == RECIPE.local_port
    done = run(
        project,
        f".venv/bin/python -m trickle_local demo --emulator {EMULATOR} --ephemeral-ports --json"
        " --items 24 --groups 2 --drain-every 0.5 --timeout 180",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    new = summary["destinations"][RECIPE.destination]
    assert new["inserted"] > 0 and new["delivered"] == new["inserted"]
    assert {r["path"] for r in summary["received"][RECIPE.destination]} == {RECIPE.local_path}


def test_dev_policies_name_the_queues_its_bootstrap_then_makes(
    applied: tuple[Path, subprocess.CompletedProcess[str]], endpoint: Emulator
) -> None:
    project, _ = applied
    name = RECIPE.destination
    drain = policy(project, "dev", f"drain_{name}")
    queue, dead = statement(drain, "Drain")["Resource"], statement(drain, "DeadLetter")["Resource"]
    assert queue == [f"arn:aws:sqs:us-east-1:123456789012:trickle-dev-{name}.fifo"]
    assert dead == [f"arn:aws:sqs:us-east-1:123456789012:trickle-dev-{name}-dead-letters.fifo"]
    assert statement(drain, "ReadCredentials")["Resource"] == [
        f"arn:aws:ssm:us-east-1:123456789012:parameter/trickle/dev/{name}-api-key"
    ]
    assert "orders" not in json.dumps(drain) and "crm" not in json.dumps(drain)
    assert {*queue, *dead} <= set(statement(policy(project, "dev", "ingest"), "Enqueue")["Resource"])

    aws = clients(endpoint.url)
    env = stage.rebase(project_env(project, "dev"), endpoint.url, None)
    try:
        made = provision(aws, env, "billing-key")

        prefix = f"TRICKLE_DEST_{name.upper()}_"
        arns = [
            aws["sqs"].get_queue_attributes(QueueUrl=made[prefix + kind], AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            for kind in ("QUEUE_URL", "DLQ_URL")
        ]
        assert arns == [*queue, *dead]
        assert aws["ssm"].get_parameter(Name=f"/trickle/dev/{name}-api-key")["Parameter"]["Type"] == (
            "SecureString"
        )
    finally:
        teardown(aws, env, source_table=True)


def test_prod_packages_with_the_new_destination_s_queues_function_and_role(
    applied: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    project, _ = applied
    prefix = RECIPE.destination.capitalize()

    done = run(project, f".venv/bin/python -m trickle_deploy.template --stage prod --package {tmp_path}")

    assert done.returncode == 0, done.stderr[-3000:]
    template = load_template(tmp_path / "pkg")
    resources = template["Resources"]
    events = resources[f"Drain{prefix}"]["Properties"]["Events"]
    assert [e["Properties"]["Schedule"] for e in events.values()] == [RECIPE.schedule]
    for queue in (f"{prefix}Queue", f"{prefix}DeadLetterQueue"):
        assert resources[queue]["Properties"]["FifoQueue"] is True
    policies = packaged_policies(template)
    drain = json.dumps(policies[f"drain_{RECIPE.destination}"])
    assert f'"{prefix}Queue"' in drain and f'"{prefix}DeadLetterQueue"' in drain
    assert f"parameter/trickle/prod/{RECIPE.destination}-api-key" in drain
    assert "OrdersQueue" not in drain and "CrmQueue" not in drain
    assert f'"{prefix}Queue"' in json.dumps(policies["ingest"])
    key_command = template["Outputs"][f"{prefix}PutApiKeyCommand"]["Value"]["Fn::Sub"]
    assert f"--name /trickle/prod/{RECIPE.destination}-api-key " in key_command
