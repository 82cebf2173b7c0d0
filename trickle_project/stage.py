"""A stage's environment as Chalice would set it (with what its bootstrap or its stack will fill in),
pointed at wherever the local run's AWS lives; the project's config and copies of it."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from chalice import Chalice

from chalicelib import naming
from chalicelib.settings import Settings, destination_names, load_settings

PROJECT_DIR = Path(__file__).resolve().parent.parent


def load_config(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    return dict(json.loads((project_dir / ".chalice" / "config.json").read_text()))


def stage_env(
    stage: str = "local", project_dir: Path = PROJECT_DIR, routes_file: Path | None = None
) -> dict[str, str]:
    """The stage's variables, with the queues its bootstrap will create for a destination it names
    none for yet (the local runtime creates them on every run); with `routes_file`, pointed at that
    routes file instead of the stage's (`with_routes_file`)."""
    config = load_config(project_dir)
    stages = config["stages"]
    if stage not in stages:
        raise SystemExit(f"no stage {stage!r} in .chalice/config.json (have: {', '.join(stages)})")
    env = stages[stage].get("environment_variables", {})
    if routes_file is None:
        return with_bootstrap_queues(env, config["app_name"], stage)
    # The file's destinations get their queues while the stage still names its own (a stage that
    # names no queue is a template stage, which gets none); then those of the others go.
    reading = {**env, "TRICKLE_ROUTES_FILE": str(routes_file.resolve())}
    queued = with_bootstrap_queues(reading, config["app_name"], stage)
    return with_routes_file(queued, routes_file, destination_names(env))


def with_routes_file(
    env: Mapping[str, str], routes_file: Path, own: Sequence[str] | None = None
) -> dict[str, str]:
    """The stage's variables reading another routes file (TRICKLE_ROUTES_FILE), without its
    TRICKLE_DEST_<NAME>_* variables of destinations that file lacks: a stage may set fields only of
    the file's destinations. Those it has keep the stage's values (its local URL, faster backoff).
    A variable is the destination's of the longest name it starts with, among the file's and the
    stage's `own` (default: those of the routes file `env` reads), so TRICKLE_DEST_ORDERS_BULK_URL is
    orders_bulk's, gone with it, not kept for orders."""
    path = str(routes_file.resolve())
    kept_for = destination_names({"TRICKLE_ROUTES_FILE": path})
    own = destination_names(env) if own is None else own
    kept = {
        name: value
        for name, value in env.items()
        if not name.startswith(naming.DESTINATION_VARIABLE_PREFIX)
        or naming.variable_owner(name, [*kept_for, *own]) in kept_for
    }
    return {**kept, "TRICKLE_ROUTES_FILE": path}


def is_template_stage(env: Mapping[str, str]) -> bool:
    """A stage whose environment names no queue is deployed with the merge template: the stack
    creates its resources and hands their names to the functions, so the config holds no ARNs."""
    return not any(naming.variable_destination(name, "queue_url") for name in env)


# What a template stage's settings are read with: the merge template replaces every one of these
# in the functions and the stream event source (a test checks that none is left in the package).
PACKAGING_ENV = {
    "TRICKLE_STREAM_ARN": "arn:aws:dynamodb:packaging:000000000000:table/packaging/stream/packaging",
    "TRICKLE_INGEST_FAILURE_QUEUE_URL": "https://sqs.packaging.invalid/000000000000/packaging-failures",
    "TRICKLE_JOBS_QUEUE_URL": "https://sqs.packaging.invalid/000000000000/packaging-jobs",
    "TRICKLE_LEDGER_TABLE": "packaging-ledger",
    "TRICKLE_NOTES_TABLE": "packaging-notes",
    "TRICKLE_ARCHIVE_BUCKET": "packaging-archive",
}


def packaging_env(env: Mapping[str, str]) -> dict[str, str]:
    """A template stage's environment with placeholders for what the stack provides."""
    queues = {
        naming.destination_variable(name, field): f"https://sqs.packaging.invalid/000000000000/{queue}"
        for name in destination_names(env)
        for field, queue in zip(
            ("queue_url", "dlq_url"), bootstrap_queue_names("packaging", name), strict=True
        )
    }
    return {**env, **PACKAGING_ENV, **queues}


def bootstrap_queue_names(prefix: str, destination: str) -> tuple[str, str]:
    """The queue and dead-letter queue a destination gets where the stage names none for it yet:
    the bootstrap's (`prefix` is the stage's `naming.stack_name`, as in `trickle-dev-orders.fifo`,
    which the shipped stages follow too), or a template's while it is packaged."""
    return naming.queue_name(prefix, destination), naming.dead_letter_queue_name(prefix, destination)


def with_bootstrap_queues(env: Mapping[str, str], app_name: str, stage: str) -> dict[str, str]:
    """A stage that names its resources, with the queue URLs its bootstrap will create for the
    destinations it has none for yet and for the jobs' tasks if it names none (a stage made before
    #26), in its stream's account and region or at its endpoint, so the policies, the bootstrap and
    the local runtime agree on them before a bootstrap records the real ones. Named after its
    TRICKLE_STAGE (`dev` for its emulator record `dev-emulator` too), else `stage`. A template stage,
    or one without a stream ARN to place them, is returned as it is."""
    out = dict(env)
    stage = env.get("TRICKLE_STAGE", "").strip() or stage
    arn = env.get("TRICKLE_STREAM_ARN", "").split(":")
    if is_template_stage(env) or len(arn) < 6:
        return out
    region, account = arn[3], arn[4]
    base = env.get("AWS_ENDPOINT_URL") or f"https://sqs.{region}.amazonaws.com"
    prefix = naming.stack_name(app_name, stage)
    if not out.get("TRICKLE_JOBS_QUEUE_URL", "").strip():
        out["TRICKLE_JOBS_QUEUE_URL"] = f"{base.rstrip('/')}/{account}/{naming.jobs_queue_name(prefix)}"
    for name in destination_names(env):
        queues = zip(("queue_url", "dlq_url"), bootstrap_queue_names(prefix, name), strict=True)
        for field, queue in queues:
            variable = naming.destination_variable(name, field)
            if not out.get(variable, "").strip():
                out[variable] = f"{base.rstrip('/')}/{account}/{queue}"
    return out


def stage_settings(env: Mapping[str, str]) -> Settings:
    return load_settings(packaging_env(env) if is_template_stage(env) else env)


def with_netloc(url: str, base: str) -> str:
    """`url` with the scheme and host:port of `base`, path kept."""
    target = urlparse(base)
    return urlunparse(urlparse(url)._replace(scheme=target.scheme, netloc=target.netloc))


def rebase(
    env: Mapping[str, str], endpoint: str | None, api_urls: Mapping[str, str] | None
) -> dict[str, str]:
    """Point the stage at a different AWS endpoint (None: real AWS) and at stand-in APIs (a URL per
    destination name, whose host replaces the stage's, or which is used whole when the stage sets
    none; those not named keep theirs)."""
    out = dict(env)
    if endpoint is None:
        out.pop("AWS_ENDPOINT_URL", None)
    else:
        out["AWS_ENDPOINT_URL"] = endpoint
        for name in out:
            if name.endswith(("_QUEUE_URL", "_DLQ_URL")) and name.startswith("TRICKLE_"):
                out[name] = with_netloc(out[name], endpoint)
    for destination, url in (api_urls or {}).items():
        name = destination_url_variable(destination)
        out[name] = with_netloc(out.get(name, url), url)
    return out


def deliver_to(env: Mapping[str, str], urls: Mapping[str, str]) -> dict[str, str]:
    """Each named destination delivers to its URL exactly as given, path and query included
    (`rebase` moves a stage's URL to a stand-in's host and keeps the stage's path)."""
    return {**env, **{destination_url_variable(name): url for name, url in urls.items()}}


def destination_url_variable(destination: str) -> str:
    return naming.destination_variable(destination, "url")


def write_project(env: Mapping[str, str], dest: Path, stage: str = "local") -> Path:
    """A copy of the project's Chalice config whose `stage` carries `env`, for `chalice.test.Client`."""
    config = load_config()
    config["stages"][stage]["environment_variables"] = dict(env)
    (dest / ".chalice").mkdir(parents=True, exist_ok=True)
    (dest / ".chalice" / "config.json").write_text(json.dumps(config, indent=2))
    for policy in (PROJECT_DIR / ".chalice").glob("policy-*.json"):
        shutil.copy(policy, dest / ".chalice" / policy.name)
    return dest


def copy_project(dest: Path, project_dir: Path = PROJECT_DIR) -> Path:
    """What `chalice deploy` reads, in `dest`: the app, its library, requirements, the Chalice config
    and policy files, and Chalice's latest package (a deploy of the same code there need not fetch the
    dependencies again)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(project_dir / "app.py", dest / "app.py")
    shutil.copy(project_dir / "requirements.txt", dest / "requirements.txt")
    shutil.copytree(
        project_dir / "chalicelib", dest / "chalicelib", ignore=shutil.ignore_patterns("__pycache__")
    )
    (dest / ".chalice").mkdir()
    for path in (project_dir / ".chalice").glob("*.json"):
        shutil.copy(path, dest / ".chalice" / path.name)
    packages = sorted(
        (project_dir / ".chalice" / "deployments").glob("*.zip"), key=lambda p: p.stat().st_mtime
    )
    if packages:
        (dest / ".chalice" / "deployments").mkdir()
        shutil.copy(packages[-1], dest / ".chalice" / "deployments" / packages[-1].name)
    return dest


def load_app(env: Mapping[str, str]) -> Chalice:
    """Import `app.py` the way Lambda does: the stage's variables are in place first."""
    os.environ.update(env)
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    from chalicelib import wiring

    wiring.reset()
    module = importlib.reload(sys.modules["app"]) if "app" in sys.modules else importlib.import_module("app")
    app: Chalice = module.app
    return app
