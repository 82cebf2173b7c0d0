"""Which of our packages may import which (issue #23): the local runtime (`trickle_local`) and the
deploy tools (`trickle_deploy`) share the stage module and the resources code of `trickle_project`
and never import each other, in either direction; `trickle_project` imports only the app's library,
and the app's library none of the tools. Read from the source with `ast`, every import counted: at
the top, inside a function, or for type checking only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each package may import of ours; the packages that combine the two (the deploy proof, the
# bench) may import all of them.
ALLOWED = {
    "chalicelib": {"chalicelib"},
    "trickle_project": {"chalicelib", "trickle_project"},
    "trickle_deploy": {"chalicelib", "trickle_project", "trickle_deploy"},
    "trickle_local": {"chalicelib", "trickle_project", "trickle_local"},
}
OURS = {"chalicelib", "trickle_project", "trickle_deploy", "trickle_local", "trickle_prove", "bench", "app"}


def imported_packages(source: str, package: str) -> set[str]:
    """Our top-level packages a module of `package` imports, however it imports them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found.add(node.module.split(".")[0] if node.level == 0 and node.module else package)
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
    return found & OURS


def imports_of(path: Path) -> set[str]:
    return imported_packages(path.read_text(), path.relative_to(ROOT).parts[0])


MODULES = sorted(path for package in ALLOWED for path in (ROOT / package).glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_package_imports_only_what_it_may(path: Path) -> None:
    assert imports_of(path) - ALLOWED[path.relative_to(ROOT).parts[0]] == set()


def test_the_local_runtime_and_the_deploy_tools_import_each_other_nowhere() -> None:
    both = [
        f"{path.relative_to(ROOT)} imports {other}"
        for package, other in (("trickle_deploy", "trickle_local"), ("trickle_local", "trickle_deploy"))
        for path in sorted((ROOT / package).glob("*.py"))
        if other in imports_of(path)
    ]

    assert both == []


def test_the_check_sees_every_kind_of_import() -> None:
    """At the top, for type checking only, inside a function, relative."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import trickle_local.runtime\n"
        "if TYPE_CHECKING:\n    from trickle_project import stage\n"
        "def f():\n    from chalicelib import naming\n    import bench.harness\n    from . import x\n"
    )

    assert imported_packages(source, "trickle_deploy") == {
        "trickle_local",
        "trickle_project",
        "chalicelib",
        "bench",
        "trickle_deploy",
    }
