"""Create (or confirm) the AWS resources a stage needs: idempotent, safe to re-run.

What it makes, and how, is `trickle_project.resources`, which the local runtime and the test suite
provision their embedded endpoint with too, so what runs locally is what a user's account gets.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chalicelib import naming
from chalicelib.settings import load_settings
from trickle_deploy.session import configured_session
from trickle_deploy.template import put_parameter_command
from trickle_project.resources import StageNames, kms_alias, provision, secret_stored, teardown
from trickle_project.secret_parameters import (
    CREDENTIALS,
    HEADERS,
    SIGNING,
    SecretParameter,
    needed,
    secrets_from_env,
)


def put_secret_command(parameter: SecretParameter, region: str, kms_key: str) -> str:
    """What an operator runs to store a secret the bootstrap was not given."""
    return put_parameter_command(parameter.name, kms_key, parameter.variable, region)


def left_behind(app_name: str, stage: str, env: Mapping[str, str], source_table: bool) -> list[str]:
    """What a teardown does not remove, so the operator knows what is still there."""
    prefix = naming.stack_name(app_name, stage)
    left = [
        f"chalice delete --stage {stage} removes what chalice deploy made: the functions {prefix}-*,"
        " their roles, the REST API, the drain's schedule rule and the stream's event source mapping",
        f"log groups /aws/lambda/{prefix}-* (Lambda makes them; aws logs delete-log-group removes them)",
        f"key {kms_alias(env)}: pending deletion for 7 days (aws kms cancel-key-deletion keeps it)",
    ]
    if not source_table:
        left.append(f"table {StageNames.from_env(env).table} (the source; --with-source-table removes it)")
    return left


EMULATOR_SUFFIX = "-emulator"


def record_stage(stage: str, env: Mapping[str, str], endpoint: str | None) -> str | None:
    """Where a bootstrap records what it made: in the stage itself on AWS; for an emulator named with
    `--endpoint`, in the stage `<stage>-emulator`, so the stage a real deploy uses keeps naming the
    account's resources; nowhere for a stage that names its own endpoint (`local`: the local runtime
    provisions and points it at its endpoint on every run)."""
    if env.get("AWS_ENDPOINT_URL"):
        return None
    return stage + EMULATOR_SUFFIX if endpoint else stage


def recorded_from(stage: str, stages: Mapping[str, Any]) -> str | None:
    """The stage an emulator record was made from (`dev` for `dev-emulator`), if `stage` is one."""
    base = stage.removesuffix(EMULATOR_SUFFIX)
    if base == stage or base not in stages:
        return None
    return None if stages[base].get("environment_variables", {}).get("AWS_ENDPOINT_URL") else base


def write_stage_env(
    stage: str, env: Mapping[str, str], config_path: Path, copy_of: str | None = None
) -> None:
    """Record the real ARNs and URLs in the stage, so Chalice and the policies agree with the account.
    With `copy_of`, the stage is (re)made from that one's settings, its functions' policy files named
    after it."""
    config = json.loads(config_path.read_text())
    if copy_of is not None:
        made = copy.deepcopy(config["stages"][copy_of])
        for function, settings in made.get("lambda_functions", {}).items():
            if "iam_policy_file" in settings:
                settings["iam_policy_file"] = naming.policy_file(stage, function)
        config["stages"][stage] = made
    config["stages"][stage]["environment_variables"] = dict(env)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def remove_stage(stage: str, config_path: Path) -> None:
    """Drop a stage the bootstrap made, and its policy files: the project is as it was before."""
    from trickle_deploy.policies import stage_policy_files

    config = json.loads(config_path.read_text())
    if config["stages"].pop(stage, None) is None:
        return
    for path in stage_policy_files(config_path.parent, stage):
        path.unlink()
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    from trickle_deploy import policies
    from trickle_project import stage as stages
    from trickle_project.aws import SERVICES

    parser = argparse.ArgumentParser(
        prog="python -m trickle_deploy.bootstrap",
        description="Create (or remove) a stage's AWS resources in the configured region; safe to re-run.",
    )
    parser.add_argument("--stage", required=True)
    parser.add_argument("--endpoint", help="AWS endpoint URL (default: the stage's AWS_ENDPOINT_URL, if any)")
    parser.add_argument("--region", help="AWS region (default: the one your AWS configuration names)")
    parser.add_argument(
        "--secret-env",
        metavar="DESTINATION=VAR",
        action="append",
        default=[],
        help="store the destination's credentials (its API key, or the JSON of its basic or oauth2"
        " credentials) from this environment variable; once per destination",
    )
    parser.add_argument(
        "--signing-secret-env",
        metavar="DESTINATION=VAR",
        action="append",
        default=[],
        help="store the destination's whsec_ signing secret(s) from this environment variable",
    )
    parser.add_argument(
        "--headers-env",
        metavar="DESTINATION=VAR",
        action="append",
        default=[],
        help="store the JSON of the destination's secret headers from this environment variable",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="the API key from this environment variable, for a stage with one destination only",
    )
    parser.add_argument("--teardown", action="store_true", help="remove the stage's resources instead")
    parser.add_argument(
        "--with-source-table", action="store_true", help="teardown also deletes the source table"
    )
    parser.add_argument("--project-dir", type=Path, default=stages.PROJECT_DIR, help="the Chalice project")
    args = parser.parse_args(argv)

    config_path = args.project_dir / ".chalice" / "config.json"
    env = stages.stage_env(args.stage, args.project_dir)
    base = recorded_from(args.stage, stages.load_config(args.project_dir)["stages"])
    if base:  # an emulator record: as bootstrapped, from its stage with its endpoint
        args.stage, args.endpoint = base, args.endpoint or env["AWS_ENDPOINT_URL"]
        env = stages.stage_env(base, args.project_dir)
    if stages.is_template_stage(env):
        parser.error(
            f"stage {args.stage} names no resources: deploy it with python -m trickle_deploy.template"
        )
    target = record_stage(args.stage, env, args.endpoint)
    emulator_record = target if target != args.stage else None
    if (
        args.teardown
        and emulator_record
        and emulator_record in stages.load_config(args.project_dir)["stages"]
    ):
        env = stages.stage_env(emulator_record, args.project_dir)  # what was made (the bucket's full name)
    given: dict[str, str] = {}
    if not args.teardown:  # every secret checked before anything is made (and before any AWS call)
        try:
            given = secrets_from_env(
                args.stage,
                list(load_settings(env).destinations.values()),
                {CREDENTIALS: args.secret_env, SIGNING: args.signing_secret_env, HEADERS: args.headers_env},
                args.api_key_env,
                os.environ,
            )
        except ValueError as exc:
            parser.error(str(exc))
    endpoint = args.endpoint or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        env = stages.rebase(env, endpoint, None)
    session = configured_session(args.region)
    aws = {name: session.client(name, endpoint_url=endpoint) for name in SERVICES}  # type: ignore[call-overload]
    if args.teardown:
        for line in teardown(aws, env, args.with_source_table):
            print(f"removed {line}")
        for line in left_behind(
            stages.load_config(args.project_dir)["app_name"],
            target or args.stage,
            env,
            args.with_source_table,
        ):
            print(f"left: {line}")
        if emulator_record:  # its record goes with it: the project is as before the bootstrap
            remove_stage(emulator_record, config_path)
            print(f"removed stage {emulator_record} from {config_path}")
        elif target:  # the key is gone: nothing may still name it
            env.pop("TRICKLE_API_KEY_KMS_KEY_ARN", None)
            write_stage_env(target, env, config_path)
            policies.refresh(config_path.parent)
        return 0
    updated = provision(aws, env, None, unique_bucket=True, secrets=given)
    if target:  # record the account's ARNs and URLs, and the policies that follow from them
        write_stage_env(target, updated, config_path, copy_of=args.stage if emulator_record else None)
        policies.refresh(config_path.parent)
    print(json.dumps({k: v for k, v in updated.items() if k not in env or env[k] != v}, indent=2))
    if emulator_record:
        print(
            f"Recorded in stage {emulator_record} of {config_path} (stage {args.stage} is unchanged):"
            f" chalice deploy --stage {emulator_record} deploys it there (on moto or ministack through"
            " python -m trickle_deploy.emulator_shims); --teardown removes the stage again."
        )
    key = updated["TRICKLE_API_KEY_KMS_KEY_ARN"]
    missing = [
        parameter
        for d in StageNames.from_env(updated).destinations
        for parameter in needed(d)
        if not secret_stored(aws["ssm"], parameter.name)
    ]
    if missing:
        print(
            "Everything else is in place. To finish, store each secret the drains read from its own"
            " variable (or re-run the bootstrap with --secret-env, --signing-secret-env or --headers-env"
            " DESTINATION=VARIABLE):"
        )
        for parameter in missing:
            print(f"  # {parameter.variable}: {parameter.holds}")
            print(f"  {put_secret_command(parameter, key.split(':')[3], key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
