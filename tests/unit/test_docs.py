"""The docs name only what exists (issue #23, docs): every relative link in README.md, CHANGELOG.md
and docs/*.md reaches a file (and its heading, when it names one), and every repository path or
module they name is there. A path counts when it starts at a top-level entry of the repository
(`chalicelib/x.py`, `tests/unit`, `.chalice/config.json`; `<...>` and `*` match any name); a bare
file name (`drain_state.py`, `requirements.txt`) must be one of the project's files; a dotted name
under one of the project's packages (`trickle_deploy.guide`, `trickle_local.emulators.start_emulator`)
must be a module, or a top-level name of one. Generated and ignored places (`.venv/`, `build/`) and
what the reader makes (`order.json`) are not repository paths.

And what the docs show of the code is the code's: the architecture page's import graph and tree
(docs/layout.py generates them), and an entry in the runbook for every alarm the template defines."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib import naming, signing
from chalicelib.settings import OAUTH2
from tests.unit.conftest import docs_layout
from trickle_deploy.template import merge_template, put_parameter_command
from trickle_project.secret_parameters import (
    CREDENTIAL_FIELDS,
    CREDENTIALS,
    HEADERS,
    SIGNING,
    json_shape,
    needed,
)
from trickle_project.stage import PROJECT_DIR, stage_env, stage_settings

PACKAGES = ("chalicelib", "trickle_project", "trickle_deploy", "trickle_local", "trickle_prove", "bench")
# Made by a command or by the reader, named in the docs as such: never in the repository.
NOT_IN_REPOSITORY = {".git", ".venv", ".venv-ministack", "build", "dist"}
READERS_FILES = {
    "order.json",
    "item.json",
    "before.json",
    "customer.json",
    "customer-before.json",
    "drain.pstats",
}
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
MODULE = re.compile(rf"(?<![\w/.-])((?:{'|'.join(PACKAGES)})(?:\.\w+)+)")
BARE_FILE = re.compile(r"[\w.-]+\.(?:py|toml|json|txt|md|yaml|cfg)")


def doc_pages(root: Path = PROJECT_DIR) -> list[Path]:
    pages = [root / "README.md", root / "CHANGELOG.md", *sorted((root / "docs").glob("*.md"))]
    return [page for page in pages if page.exists()]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.M):
        name, n = slug(heading), 1
        while name in found:  # GitHub numbers repeated headings
            name, n = f"{slug(heading)}-{n}", n + 1
        found.add(name)
    return found


def tracked_files(root: Path) -> list[Path]:
    """The project's files, as a clean clone has them (nothing ignored or generated)."""
    ignored = NOT_IN_REPOSITORY | {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

    def walk(directory: Path) -> Iterator[Path]:
        for entry in directory.iterdir():
            if entry.name in ignored or entry.is_symlink():
                continue
            if entry.is_dir():
                yield from walk(entry)
            else:
                yield entry

    return list(walk(root))


def link_problems(page: Path, target: str) -> list[str]:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
        return []
    path_part, _, fragment = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    if not resolved.exists():
        return [f"link to {target}: no {path_part}"]
    if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
        return [f"link to {target}: {resolved.name} has no heading #{fragment}"]
    return []


def path_problem(token: str, root: Path, file_names: set[str]) -> str | None:
    """What is wrong with a repository path or file name the docs give, if anything."""
    token = token.strip().rstrip(".,;:")
    first = token.split("/", 1)[0]
    if "/" in token:
        if not first or first in NOT_IN_REPOSITORY or not (root / first).exists():
            return None  # absolute, a URL, a command's output, or not a repository path
        pattern = re.sub(r"<[^>]*>", "*", token.rstrip("/"))
        found = list(root.glob(pattern)) if "*" in pattern else [root / pattern]
        return None if any(p.exists() for p in found) else f"no {token} in the repository"
    if BARE_FILE.fullmatch(token) and token not in READERS_FILES and token not in file_names:
        return f"no file {token} in the project"
    return None


def module_problem(name: str, root: Path) -> str | None:
    """`a.b.c`: a module a/b/c.py (or package), or a top-level name c of module a/b.py."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:split])
        module = base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__init__.py"
        if module.exists() or (base / "__main__.py").exists():
            rest = parts[split:]
            if not rest:
                return None
            if len(rest) == 1 and rest[0] in top_level_names(module):
                return None
            return f"{'.'.join(parts[:split])} has no {'.'.join(rest)}"
    return f"no module {name}"


def top_level_names(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def problems(pages: list[Path], root: Path = PROJECT_DIR) -> list[str]:
    file_names = {p.name for p in tracked_files(root)}
    found: list[str] = []
    for page in pages:
        text = page.read_text()
        prose = FENCE.sub("", text)
        where = page.relative_to(root)
        tokens = CODE.findall(prose) + [w for block in FENCE.findall(text) for w in block.split()]
        for target in LINK.findall(prose):
            found += [f"{where}: {p}" for p in link_problems(page, target)]
        for token in tokens:
            for word in re.split(r"[\s\"'()=,]+", token):
                problem = path_problem(word, root, file_names) if word else None
                if problem:
                    found.append(f"{where}: {problem}")
        for name in dict.fromkeys(MODULE.findall(text)):
            problem = module_problem(name, root)
            if problem:
                found.append(f"{where}: {problem}")
    return found


def test_every_link_path_and_module_the_docs_name_exists() -> None:
    assert doc_pages(), "no docs found"
    found = problems(doc_pages())
    assert found == [], "\n".join(found)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small repository with one doc page to break."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "chalicelib").mkdir()
    (tmp_path / "chalicelib" / "model.py").write_text("def iso_utc(): ...\nLIMIT = 1\n")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Two words\n")
    return tmp_path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("See [the guide](docs/guid.md).", "link to docs/guid.md: no docs/guid.md"),
        ("See [it](docs/guide.md#three-words).", "guide.md has no heading #three-words"),
        ("In `chalicelib/modle.py`.", "no chalicelib/modle.py in the repository"),
        ("In `chalicelib/<name>.toml`.", "no chalicelib/<name>.toml in the repository"),
        ("```\ncat chalicelib/gone.py\n```", "no chalicelib/gone.py in the repository"),
        ("The `modle.py` module.", "no file modle.py in the project"),
        ("Run `python -m chalicelib.modle`.", "no module chalicelib.modle"),
        ("Call `chalicelib.model.iso_utcc`.", "chalicelib.model has no iso_utcc"),
    ],
)
def test_a_broken_link_path_or_module_is_reported(project: Path, text: str, problem: str) -> None:
    page = project / "README.md"
    page.write_text(f"# Project\n\n{text}\n")
    found = problems([page], project)
    assert len(found) == 1 and problem in found[0], found


@pytest.mark.parametrize(
    "text",
    [
        "See [the guide](docs/guide.md#two-words) and [AWS](https://aws.amazon.com/).",
        "In `chalicelib/model.py`, `chalicelib/<name>.py`, `chalicelib/`, `model.py`.",
        "Call `chalicelib.model.iso_utc` or read `chalicelib.model.LIMIT`.",
        "Not ours: `.venv/bin/python`, `build/prod/sam.json`, `/tmp`, `order.json`, `alias/<stack>-api-key`.",
    ],
)
def test_what_exists_or_is_not_a_repository_path_passes(project: Path, text: str) -> None:
    page = project / "README.md"
    page.write_text(f"# Project\n\n{text}\n")
    assert problems([page], project) == []


def test_the_import_graph_in_the_architecture_page_is_the_codes() -> None:
    layout = docs_layout()
    committed = layout.committed(layout.PAGE.read_text(), "graph")
    assert committed == layout.generated()["graph"], "stale import graph: run .venv/bin/python docs/layout.py"
    assert "is in no group" not in committed


def test_the_tree_in_the_architecture_page_names_the_files_there_are() -> None:
    """The files, not their line counts, which change with every edit (docs/layout.py --check has them)."""
    layout = docs_layout()

    def names(block: str) -> list[str]:
        return [re.sub(r"\s+[\d,]+( files, [\d,]+)?$", "", line) for line in block.splitlines()]

    committed = layout.committed(layout.PAGE.read_text(), "tree")
    assert names(committed) == names(layout.generated()["tree"]), (
        "stale tree: run .venv/bin/python docs/layout.py"
    )


def test_the_runbook_says_what_to_do_for_every_alarm_the_template_defines() -> None:
    """Each alarm of the prod stack, by its logical id and its description as the notification shows
    them, a destination's name written as `<Destination>` / `<destination>`."""
    runbook = (PROJECT_DIR / "docs" / "runbook.md").read_text()
    destinations = stage_settings(stage_env("prod")).destinations
    alarms = {
        name: resource["Properties"]["AlarmDescription"]
        for name, resource in merge_template("prod")["Resources"].items()
        if resource.get("Type") == "AWS::CloudWatch::Alarm"
    }
    assert len(alarms) == 5 * len(destinations) + 3  # and the stream's two, the jobs' tasks' one
    missing = []
    for name, description in alarms.items():
        for destination in sorted(destinations, key=len, reverse=True):  # OrdersBulk before Orders
            name = name.replace(naming.logical_id(destination), "<Destination>")
            description = re.sub(rf"\b{re.escape(destination)}\b", "<destination>", description)
        missing += [f"`{text}`" for text in (name, description) if f"`{text}`" not in runbook]
    assert missing == [], f"docs/runbook.md does not name {missing}"


DESTINATIONS_SETUP = "## Setting one up, kind by kind"  # docs/destinations.md, from the README (#24)
SETUP_STACK = "trickle-prod"  # the template stage prod's stack, as the section says


def section(text: str, heading: str) -> str:
    """A page's section: from its heading to the next heading of the same level (or the end)."""
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start : end if end != -1 else len(text)]


def test_the_destinations_setup_loads_and_its_commands_are_the_guides(tmp_path: Path) -> None:
    """Issue #24's section, moved from the README to docs/destinations.md: its routes-file snippets,
    together, load as the prod stage's routes file; each `aws ssm put-parameter` it shows is the
    command the guide and the bootstrap print for one of those destinations' secrets (read from its
    own variable); every kind of secret has one, with the JSON shape its value is checked against."""
    text = section((PROJECT_DIR / "docs" / "destinations.md").read_text(), DESTINATIONS_SETUP)
    snippets = re.findall(r"^```toml\n(.*?)^```", text, re.M | re.S)
    names = re.findall(r"^\[destinations\.(\w+)\]", "".join(snippets), re.M)
    routes = tmp_path / "routes.toml"
    routes.write_text(
        "\n".join(snippets) + f'\n[[routes]]\nname = "all"\ndestinations = {json.dumps(names)}\n'
    )
    settings = stage_settings(stage_env("prod", routes_file=routes))
    alias = naming.key_alias(SETUP_STACK)
    printed = {
        put_parameter_command(p.name, alias, p.variable): p
        for d in settings.destinations.values()
        for p in needed(d)
    }
    commands = re.findall(r"^aws ssm put-parameter .*$", text, re.M)
    assert [c for c in commands if c not in printed] == [], "not what the guide prints"
    shown = [printed[c] for c in commands]
    assert {(p.kind, p.shape) for p in shown} == {
        (CREDENTIALS, "api_key"),
        (CREDENTIALS, "basic"),
        (CREDENTIALS, OAUTH2),
        (SIGNING, SIGNING),
        (HEADERS, HEADERS),
    }
    shapes = [json_shape(CREDENTIAL_FIELDS.get(p.shape, p.header_names)) for p in shown if p.form]
    shapes = [s for s in shapes if s != "{}"] + [f"{signing.SECRET_PREFIX}<base64>"]
    assert [s for s in shapes if f"`{s}`" not in text] == []


def test_the_readme_s_commands_run_with_the_project_s_python() -> None:
    """A command the README shows runs as written after `./dev setup`: `.venv/bin/python -m ...`,
    as its quick start does (a bare `python` is the system's, without the project's packages)."""
    readme = (PROJECT_DIR / "README.md").read_text()
    commands = [
        line.strip()
        for block in re.findall(r"^```(\w*)\n(.*?)^```", readme, re.M | re.S)
        if block[0] in ("", "sh", "bash", "shell")
        for line in block[1].splitlines()
    ] + re.findall(r"`([^`\n]+)`", readme)
    bare = [c for c in commands if re.match(r"python3? -m (trickle|bench)", c) and " " in c.split(" -m ")[1]]
    assert bare == []
