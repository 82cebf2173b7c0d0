"""The README's recipe for a new destination, followed in a copy of the project: one entry in the
routes file, its stage variables, one decorated drain in app.py, regenerated policies, and
`chalice package` gives it its own function with a role that reaches only its own queues and key."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from chalicelib.settings import ROUTES_FILE, load_settings
from trickle_deploy.iam_check import load_template, packaged_policies
from trickle_local import stage

INVOICING = """

[destinations.invoicing]
rate_limit_per_s = 1
group_by = "table"

[[routes]]
name = "invoices_to_invoicing"
events = ["INSERT"]
filter = "item.type == 'invoice'"
destinations = ["invoicing"]
"""

DRAIN = """

@app.schedule(Cron(0, 2, "*", "*", "?", "*"), name="drain_invoicing")
def drain_invoicing(event: CloudWatchEvent) -> dict[str, Any]:
    return wiring.drain("invoicing", event.context)
"""


def scheduled_drains(app_source: str) -> set[str]:
    """The `name=` of every `@app.schedule(...)` in app.py."""
    names = set()
    for node in ast.walk(ast.parse(app_source)):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "schedule":
                    names |= {k.value.value for k in decorator.keywords if k.arg == "name"}  # type: ignore[attr-defined]
    return names


def test_every_destination_of_the_shipped_routes_has_its_drain_in_app_py() -> None:
    settings = load_settings(stage.stage_env("local"))

    assert scheduled_drains((stage.PROJECT_DIR / "app.py").read_text()) == {
        d.drain_function for d in settings.destinations.values()
    }


def test_a_third_destination_is_one_routes_entry_one_drain_and_regenerated_policies(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(
        stage.PROJECT_DIR,
        project,
        ignore=shutil.ignore_patterns(".venv", ".git", "tests", "bench", "__pycache__", ".*_cache"),
    )
    (project / "chalicelib" / ROUTES_FILE.name).write_text(ROUTES_FILE.read_text() + INVOICING)
    app = project / "app.py"
    app.write_text(app.read_text().replace("from chalice import ", "from chalice import Cron, ") + DRAIN)
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    local = config["stages"]["local"]
    base = "http://127.0.0.1:5050/123456789012/trickle-local-invoicing"
    local["environment_variables"] |= {
        "TRICKLE_DEST_INVOICING_URL": "http://127.0.0.1:5053/invoices",
        "TRICKLE_DEST_INVOICING_KEY_PARAMETER": "/trickle/local/invoicing-api-key",
        "TRICKLE_DEST_INVOICING_QUEUE_URL": f"{base}.fifo",
        "TRICKLE_DEST_INVOICING_DLQ_URL": f"{base}-dead-letters.fifo",
    }
    local["lambda_functions"]["drain_invoicing"] = {
        "iam_policy_file": "policy-local-drain_invoicing.json",
        "lambda_timeout": 300,
    }
    config["stages"] = {"local": local}
    config_path.write_text(json.dumps(config, indent=2))
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(project)}
    bin_dir = Path(sys.executable).parent

    subprocess.run(
        [sys.executable, "-m", "trickle_deploy.policies"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    out = tmp_path / "out"
    subprocess.run(
        [str(bin_dir / "chalice"), "package", "--stage", "local", str(out)],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )

    template = load_template(out)
    assert template["Resources"]["DrainInvoicing"]["Type"] == "AWS::Serverless::Function"
    events = template["Resources"]["DrainInvoicing"]["Properties"]["Events"]
    assert [e["Properties"]["Schedule"] for e in events.values()] == ["cron(0 2 * * ? *)"]
    policies = packaged_policies(template)
    invoicing = json.dumps(policies["drain_invoicing"])
    assert "trickle-local-invoicing.fifo" in invoicing and "invoicing-api-key" in invoicing
    assert "trickle-local-orders" not in invoicing and "orders-api-key" not in invoicing
    assert "trickle-local-invoicing.fifo" not in json.dumps(policies["drain_orders"])
    assert "trickle-local-invoicing.fifo" in json.dumps(policies["ingest"])
