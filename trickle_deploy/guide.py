"""The commands an operator runs around a template stage's stack, generated from its merge template
so they name exactly what the stack has.

    python -m trickle_deploy.guide --stage prod --stack-name trickle-prod keys
    python -m trickle_deploy.guide --stage prod --stack-name trickle-prod cleanup

`keys` prints one `aws ssm put-parameter` per SecureString the stage reads (each destination's
credentials unless its auth is none, its signing secret if it signs, its secret headers' values if
it has any, and the operator token of a stage with token auth), encrypted under the stack's KMS key,
each after a comment saying what its variable must hold: run them once after the first deploy,
each with its own variable set (no command carries a value). `cleanup` prints what deletes the stack
and everything it leaves behind: the resources it retains (tables, queues, bucket, KMS key), the
parameters it never owned, and the functions' log groups (Lambda makes those). Its data is gone
for good after it. The commands use your AWS configuration's region, as `aws cloudformation deploy` does.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib import naming
from chalicelib.settings import Settings
from trickle_deploy.template import STACK_NAME, merge_template, put_parameter_command
from trickle_project.secret_parameters import needed
from trickle_project.stage import load_config, stage_env, stage_settings

# Why a retained resource may be missing: the template's conditions, in words.
CONDITIONS = {"CreatesSourceTable": "only if the stack created it (SourceStreamArn was empty)"}
KMS_PENDING_DAYS = 7  # the shortest wait KMS allows before deleting a key


def resolve(value: Any, stack: str) -> str:
    """A name as the stack gives it: a string, or an `Fn::Sub` on `${AWS::StackName}` alone."""
    text = value["Fn::Sub"] if isinstance(value, dict) and set(value) == {"Fn::Sub"} else value
    if not isinstance(text, str) or "${" in text.replace(STACK_NAME, ""):
        raise ValueError(f"{value!r} is not a name the stack name alone gives")
    return text.replace(STACK_NAME, stack)


def secure_parameters(settings: Settings) -> list[tuple[str, str, str]]:
    """(shell variable holding the value, parameter name, what it holds) for every SecureString the
    stage reads: each destination's own (`secret_parameters.needed`), then the operator token's."""
    secrets = [(p.variable, p.name, p.holds) for d in settings.destinations.values() for p in needed(d)]
    token = settings.auth_token_parameter
    return secrets + ([("OPERATOR_TOKEN", token, "the operator token")] if token else [])


def _kms_alias(template: Mapping[str, Any], stack: str) -> str:
    (alias,) = [
        r["Properties"]["AliasName"]
        for r in template["Resources"].values()
        if r.get("Type") == "AWS::KMS::Alias"
    ]
    return resolve(alias, stack)


def key_commands(
    template: Mapping[str, Any], parameters: Sequence[tuple[str, str, str]], stack: str
) -> list[str]:
    """A comment saying what the variable holds, then the command that stores it, per parameter."""
    alias = _kms_alias(template, stack)
    return [
        line
        for variable, name, holds in parameters
        for line in (f"# {variable}: {holds}", put_parameter_command(name, alias, variable))
    ]


def _variable(output: str) -> str:
    """ResponseArchiveBucket -> RESPONSE_ARCHIVE_BUCKET."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", output).upper()


def _output_of(template: Mapping[str, Any], logical_id: str, value: Any) -> str:
    """The output that hands out `value` of a resource: its name is gone with the stack, so it is
    read before the delete."""
    for name, output in template["Outputs"].items():
        if output["Value"] == value and "Condition" not in output:
            return str(name)
    raise ValueError(f"no output gives {logical_id}'s {value}: a retained resource nobody could find")


def _describe_output(stack: str, output: str) -> str:
    query = f"Stacks[0].Outputs[?OutputKey=='{output}'].OutputValue"
    describe = f'aws cloudformation describe-stacks --stack-name {stack} --query "{query}" --output text'
    return f"{_variable(output)}=$({describe})"


def cleanup_commands(template: Mapping[str, Any], parameters: Sequence[str], stack: str) -> list[str]:
    """Delete the stack, then everything it retains (`DeletionPolicy: Retain`), the parameters and
    the log groups; a retained resource of a kind not known here is an error, not a silent leftover."""
    before: list[str] = []
    after: list[str] = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("DeletionPolicy") != "Retain":
            continue
        kind, properties = resource["Type"], resource.get("Properties", {})
        condition = resource.get("Condition")
        note = f"  # {CONDITIONS.get(condition, f'only if {condition}')}" if condition else ""
        if kind == "AWS::DynamoDB::Table":
            after.append(
                f"aws dynamodb delete-table --table-name {resolve(properties['TableName'], stack)}{note}"
            )
        elif kind == "AWS::SQS::Queue":
            queue = resolve(properties["QueueName"], stack)
            url = f"$(aws sqs get-queue-url --queue-name {queue} --query QueueUrl --output text)"
            after.append(f'aws sqs delete-queue --queue-url "{url}"{note}')
        elif kind == "AWS::S3::Bucket":
            output = _output_of(template, logical_id, {"Ref": logical_id})
            before.append(_describe_output(stack, output))
            after.append(f'aws s3 rb "s3://${_variable(output)}" --force{note}')
        elif kind == "AWS::KMS::Key":
            output = _output_of(template, logical_id, {"Fn::GetAtt": [logical_id, "Arn"]})
            before.append(_describe_output(stack, output))
            after.append(
                f'aws kms schedule-key-deletion --key-id "${_variable(output)}"'
                f" --pending-window-in-days {KMS_PENDING_DAYS}{note}"
            )
        else:
            raise ValueError(
                f"{logical_id} ({kind}) is retained, and the clean-up does not know how to remove it"
            )
    functions = (
        "FUNCTIONS=$(aws cloudformation describe-stack-resources --stack-name"
        f" {stack} --query \"StackResources[?ResourceType=='AWS::Lambda::Function'].PhysicalResourceId\""
        " --output text)"
    )
    return [
        *before,
        functions,
        f"aws cloudformation delete-stack --stack-name {stack}",
        f"aws cloudformation wait stack-delete-complete --stack-name {stack}",
        *after,
        *(f"aws ssm delete-parameter --name {name}" for name in parameters),
        'for name in $FUNCTIONS; do aws logs delete-log-group --log-group-name "/aws/lambda/$name"; done',
    ]


def commands(stage: str, stack: str, what: str) -> list[str]:
    template = merge_template(stage)
    parameters = secure_parameters(stage_settings(stage_env(stage)))
    if what == "keys":
        return key_commands(template, parameters, stack)
    return cleanup_commands(template, [name for _, name, _ in parameters], stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trickle_deploy.guide",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stage", required=True, help="a stage deployed with the merge template")
    parser.add_argument("--stack-name", help="its stack (default: APP-STAGE, trickle-prod)")
    parser.add_argument(
        "what", choices=["keys", "cleanup"], help="store the keys, or remove the stack and its data"
    )
    args = parser.parse_args(argv)
    stack = args.stack_name or naming.stack_name(load_config()["app_name"], args.stage)
    print("\n".join(commands(args.stage, stack, args.what)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
