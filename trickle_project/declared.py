"""The drains' schedules as app.py declares them, read from its source with `ast`: a command run
outside Lambda (`operate backfill`'s estimate) cannot import app.py without the stage's settings
in its environment. Each `@app.schedule(Rate(...) | Cron(...) | "rate(...)", name=...)` gives its
expression as Chalice renders it for EventBridge; anything else is left out (no answer, not a
guess). `tests/unit/test_declared.py` checks this against the imported app's event sources."""

from __future__ import annotations

import ast
from pathlib import Path

from chalice import Cron, Rate

from trickle_project.stage import PROJECT_DIR


def declared_schedules(source: str) -> dict[str, str]:
    """Function name -> schedule expression, for each scheduled function in `source` (app.py)."""
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if not (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "schedule"
                and decorator.args
            ):
                continue
            names = [k.value for k in decorator.keywords if k.arg == "name"]
            name = names[0].value if names and isinstance(names[0], ast.Constant) else node.name
            expression = _expression(decorator.args[0])
            if expression is not None and isinstance(name, str):
                out[name] = expression
    return out


def app_schedules(project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """`declared_schedules` of the project's app.py."""
    return declared_schedules((project_dir / "app.py").read_text())


def _expression(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    kind = {"Rate": Rate, "Cron": Cron}.get(node.func.id)
    try:
        args = [ast.literal_eval(a) for a in node.args]
        keywords = {k.arg: _keyword(k.value) for k in node.keywords if k.arg}
        return None if kind is None else kind(*args, **keywords).to_string()
    except (ValueError, TypeError):  # not literals (a variable), or not Chalice's arguments
        return None


def _keyword(node: ast.expr) -> object:
    """A literal, or `Rate.MINUTES`-style unit constants."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Rate":
        return getattr(Rate, node.attr)
    return ast.literal_eval(node)
