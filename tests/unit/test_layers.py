"""Dependencies point inward (issue #23): the values (`chalicelib.model`) import nothing of ours, the
ports import only the values, and the decisions import neither an adapter nor the AWS SDK, so they
can be read, imported and tested on their own. Read from the source with `ast`, every import
counted: at the top, inside a function, or for type checking only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import environment_outside_the_suite
from tests.unit.conftest import docs_layout
from trickle_project import stage
from trickle_project.stage import packaging_env

PACKAGE = Path(__file__).resolve().parents[2] / "chalicelib"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
# The core (docs/layout.py places every module; docs/architecture.md, "The layering rule"): the
# values, the ports, and the decisions made on them: `decide`, and the drain's loop around it with
# the run's state it reads (a rate limit is a token bucket, no I/O); and the pure functions the drain
# builds what it sends with: the names, strict JSON, a dead letter's entry, a waiting task's answers.
LAYOUT = docs_layout()
CORE = set(LAYOUT.CORE)


def imports(module: str) -> set[str]:
    """The chalicelib modules `module` imports, however it imports them (at the top, inside a
    function, or for type checking only)."""
    return set(LAYOUT.imports(module))


@pytest.mark.parametrize("module", ["model", "naming"])
def test_the_model_and_the_naming_import_nothing_of_ours(module: str) -> None:
    assert imports(module) == set()


def test_the_ports_import_only_the_model() -> None:
    assert imports("ports") <= {"model"}


@pytest.mark.parametrize("module", sorted(CORE))
def test_the_core_imports_only_the_core(module: str) -> None:
    assert imports(module) <= CORE, f"{module} imports {sorted(imports(module) - CORE)}"


@pytest.mark.parametrize("module", sorted(CORE))
def test_importing_the_core_loads_no_adapter_and_no_aws_sdk(module: str) -> None:
    """In a fresh interpreter, as a reader or a test would import it."""
    probe = f"import sys, chalicelib.{module}\nprint(' '.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=PACKAGE.parent, capture_output=True, text=True, check=True
    ).stdout.split()
    sdk = sorted({m.split(".")[0] for m in loaded} & {"boto3", "botocore", "urllib3"})
    ours = sorted(m for m in loaded if m.startswith("chalicelib.") and m.split(".")[1] not in CORE)
    assert sdk + ours == [], f"import chalicelib.{module} loads {sdk + ours}"


# The drain's own modules: the run, a group's loop, the run's state, its effects, its log lines.
DRAIN = {"drain", "drain_effects", "drain_group", "drain_log", "drain_state", "drain_tasks"}


@pytest.mark.parametrize("module", sorted(DRAIN))
def test_the_drain_imports_only_ports_model_core_and_settings(module: str) -> None:
    """The drain reaches SQS, DynamoDB, the API and Step Functions only through the ports it is given
    (`chalicelib.wiring` builds the adapters, and the run's metrics). `settings` is the parsed
    configuration (`Settings`, `Destination`): the drain reads its types, it calls no service."""
    allowed = CORE | DRAIN | {"settings"}
    assert imports(module) <= allowed, f"{module} imports {sorted(imports(module) - allowed)}"


def test_the_import_graph_has_no_cycle() -> None:
    """A module on a cycle can only be understood, imported or tested with the rest of its cycle."""
    graph = {module: sorted(imports(module) & set(MODULES)) for module in MODULES}
    for start in MODULES:
        paths = {module: [start, module] for module in graph[start]}
        todo = list(paths)
        while todo:
            module = todo.pop()
            assert module != start, f"import cycle: {' -> '.join(paths[module])}"
            for imported in graph[module]:
                if imported not in paths:
                    paths[imported] = [*paths[module], imported]
                    todo.append(imported)


def test_importing_the_app_loads_only_what_its_decorators_need() -> None:
    """Every function's cold start imports `app`: the values, the JSON checks (whose patterns take
    milliseconds to compile) and the adapters wait for the function whose work needs them. The
    settings compile each destination's path and check its headers (`request_shape`, which takes
    the signing headers' names from `signing`) so that a bad one stops the import."""
    probe = "import sys, app; print(' '.join(sorted(m for m in sys.modules if m.startswith('chalicelib.'))))"
    env = {
        **environment_outside_the_suite(),
        **packaging_env(stage.stage_env("prod")),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=PACKAGE.parent, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == [
        f"chalicelib.{m}"
        for m in (
            "auth",
            "enrichers",
            "logs",
            "naming",
            "request_shape",
            "routing",
            "settings",
            "signing",
            "wiring",
        )
    ]
