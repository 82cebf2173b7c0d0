"""`--help` of the commands whose description is their module docstring: the docstring's example
lines (indented) stay on lines of their own, not run together into one paragraph."""

from __future__ import annotations

import importlib

import pytest

COMMANDS = (
    "trickle_deploy.routes",
    "trickle_deploy.operate",
    "trickle_deploy.guide",
    "trickle_deploy.stream_settings",
    "trickle_deploy.template",
    "trickle_local.emulators",
    "trickle_prove.__main__",
)


@pytest.mark.parametrize("module_name", COMMANDS)
def test_help_keeps_each_example_line_of_the_docstring_on_its_own_line(
    module_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(module_name)
    examples = [line for line in (module.__doc__ or "").splitlines() if line.startswith("    ")]
    assert examples, "the docstring shows how the command is run"

    with pytest.raises(SystemExit) as helped:
        module.main(["--help"])

    assert helped.value.code == 0
    assert set(examples) <= set(capsys.readouterr().out.splitlines())
