"""The deploy guide (docs/deploying.md) matches the stack (issue #22). Every command in its shell
blocks, and every `python -m trickle_deploy.*` command on any page of the docs (README.md,
CHANGELOG.md, docs/*.md), parses as its program would parse it, without running: AWS CLI commands
against botocore's service models, `python -m trickle_deploy.*` with its own argument parser,
`chalice` with its click commands. Every name it gives (stack, table, queue, parameter, KMS alias,
stack output, template parameter, file) is one the packaged template for that stage has, or follows
from it. The key and clean-up blocks are exactly what `python -m trickle_deploy.guide` prints."""

from __future__ import annotations

import argparse
import importlib
import io
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from contextlib import redirect_stderr
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import botocore.session
import click
import jmespath
import pytest
from botocore import xform_name
from botocore.exceptions import ParamValidationError
from botocore.model import OperationModel, Shape
from botocore.validate import validate_parameters
from chalice.cli import cli as chalice_cli

from tests.integration.deployment import package_stage
from trickle_deploy.guide import commands as guide_commands
from trickle_deploy.guide import resolve
from trickle_deploy.sam import sam_transform
from trickle_project.stage import PROJECT_DIR, is_template_stage, load_config, stage_env, stage_settings

DEPLOY_GUIDE = PROJECT_DIR / "docs" / "deploying.md"
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell)?\n(.*?)^```", re.M | re.S)
# With arguments: a bare `python -m trickle_deploy.guide` in prose names the program, not a command.
MODULE_SPAN = re.compile(r"`((?:\.venv/bin/)?python -m trickle_deploy\.\w+ [^`]+)`")
FENCED_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)  # (language, text), fence by fence
MODULE_LINE = re.compile(r"(?:\.venv/bin/)?python -m trickle_deploy\.\w+ ")
OPERATE_SPAN = re.compile(r"`((?:\.venv/bin/)?python -m trickle_deploy\.operate [^`]*)`")
SUBSTITUTION = "SUBSTITUTION"
OPTIONAL = re.compile(r"\s+\[(--[^\[\]]*)\]")  # `[--group G]`, not a JMESPath index
# Shell variables the reader sets, as the guide says (the keys' values never appear in a command).
INPUTS = re.compile(r"^(?:[A-Z0-9_]+_(?:API_KEY|SIGNING_SECRET|HEADERS)|OPERATOR_TOKEN)$")
AWS_GLOBAL_VALUES = {"--query", "--output", "--region", "--profile", "--endpoint-url"}
AWS_GLOBAL_FLAGS = {"--no-cli-pager", "--debug", "--no-paginate"}
OUTPUT_FORMATS = {"json", "text", "table", "yaml", "yaml-stream"}
TEMPLATE_STAGE_MODULES = {"trickle_deploy.template", "trickle_deploy.guide"}
BOOTSTRAP_STAGE_MODULES = {"trickle_deploy.bootstrap", "trickle_deploy.stream_settings"}
CHALICE_DEPLOYING = {"deploy", "package", "delete"}


def other_pages() -> list[str]:
    """Every page of the docs but the guide: their `python -m trickle_deploy.*` commands are checked
    too, after the guide's (with the stack it deploys)."""
    pages = [PROJECT_DIR / "README.md", PROJECT_DIR / "CHANGELOG.md", *(PROJECT_DIR / "docs").glob("*.md")]
    return [page.read_text() for page in sorted(pages) if page.exists() and page != DEPLOY_GUIDE]


def shell_lines(block: str) -> list[str]:
    """The block's command lines: continuations joined, comment-only and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def variants(line: str) -> list[str]:
    """`a [--b c]`: the command without its optional options, and with all of them."""
    without = re.sub(OPTIONAL, "", line)
    with_all = re.sub(OPTIONAL, r" \1", line)
    return [without] if without == with_all else [without, with_all]


def substitutions(text: str) -> tuple[str, list[str]]:
    """`text` with each `$( ... )` replaced by SUBSTITUTION<n>, and the commands they run."""
    inner: list[str] = []
    out, i = [], 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, quote, j = 1, "", i + 2
            while depth:
                c = text[j]
                if quote:
                    quote = "" if c == quote else quote
                elif c in "'\"":
                    quote = c
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                j += 1
            out.append(f"{SUBSTITUTION}{len(inner)}")
            inner.append(text[i + 2 : j - 1])
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out), inner


def words(text: str) -> list[list[str]]:
    """Shell words, split into simple commands at `;` (comments dropped)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word == ";":
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


class NotRunError(Exception):
    """Raised right after a command's argument parser succeeds, so nothing runs."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


@dataclass
class Stack:
    """What the packaged template (and its SAM transform) names, as a stack of a given name has it."""

    stage: str
    sam: dict[str, Any]
    cfn: dict[str, Any]

    def names(self, kind: str, prop: str, stack: str) -> set[str]:
        return {
            resolve(r["Properties"][prop], stack)
            for r in self.sam["Resources"].values()
            if r["Type"] == kind and prop in r.get("Properties", {})
        }

    def parameters(self) -> set[str]:
        """SSM parameters the stack's roles and outputs name (the stage's keys)."""
        return set(re.findall(r":parameter(/[A-Za-z0-9_./-]+)", json.dumps(self.sam)))

    def output_resource_type(self, output: str) -> str:
        value = self.sam["Outputs"][output]["Value"]
        logical = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
        return str(self.sam["Resources"][logical]["Type"])


@dataclass
class Checker:
    """Reads the guide's commands in order, as a shell would, remembering what they establish."""

    stacks: Mapping[str, Stack]
    problems: list[str] = field(default_factory=list)
    stack_name: str | None = None
    stack: Stack | None = None
    package_dir: str | None = None
    packaged_template: str | None = None
    variables: dict[str, list[str]] = field(default_factory=dict)  # name -> stack outputs it holds
    session: Any = field(default_factory=botocore.session.get_session)

    def fail(self, line: str, problem: str) -> None:
        self.problems.append(f"{line}\n    {problem}")

    def block(self, text: str) -> None:
        self.variables = {}
        for line in shell_lines(text):
            for variant in variants(line):
                self.line(variant)

    def line(self, line: str) -> None:
        outer, inner = substitutions(line)
        results = [self.command(shlex.split(command, comments=True), line) for command in inner]
        for command in words(outer):
            if command[0] == "for":
                if len(command) < 4 or command[2] != "in":
                    self.fail(line, f"not a for loop: {command}")
                    continue
                self.uses(line, command[3:])
                self.variables[command[1]] = []
                continue
            if command[0] == "do":
                command = command[1:]
            if command == ["done"]:
                continue
            while command and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", command[0]):
                name, value = command.pop(0).split("=", 1)
                held = re.fullmatch(rf"{SUBSTITUTION}(\d+)", value)
                self.variables[name] = results[int(held.group(1))] if held else []
            if command:
                self.uses(line, command)
                self.command(command, line)

    def uses(self, line: str, command: list[str]) -> None:
        for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", " ".join(command)):
            if name not in self.variables and not INPUTS.match(name):
                self.fail(line, f"${name} is used but never set")

    def command(self, command: list[str], line: str) -> list[str]:
        """Check one simple command; returns the stack outputs its text output would be."""
        program = command[0].rsplit("/", 1)[-1]
        if program == "aws":
            return self.aws(command[1:], line)
        if program.startswith("python") and command[1:2] == ["-m"]:
            self.module(command[2], command[3:], line)
        elif program == "chalice":
            self.chalice(command[1:], line)
        elif command[0] == "./dev":
            known = dev_commands()
            if command[1:2] and command[1] not in known:
                self.fail(line, f"./dev has no command {command[1]} (has {', '.join(sorted(known))})")
        else:
            self.fail(line, f"no parser known for {command[0]}")
        return []

    # --- python -m trickle_deploy.*, python -m trickle_prove -------------------------------------

    def module(self, name: str, argv: list[str], line: str) -> None:
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):  # a package: `python -m` runs its __main__
            module = importlib.import_module(f"{name}.__main__")
        main = getattr(module, "main", None)
        if main is None:
            self.fail(line, f"{name} has no main()")
            return
        parse = argparse.ArgumentParser.parse_args

        def parse_then_stop(parser: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
            raise NotRunError(parse(parser, args, namespace))

        stderr = io.StringIO()
        try:
            with (
                mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop),
                redirect_stderr(stderr),
            ):
                main(argv)
        except NotRunError as parsed:
            self.module_args(name, parsed.namespace, line)
            return
        except SystemExit:
            self.fail(line, (stderr.getvalue().strip().splitlines() or [f"{name} exited"])[-1])
            return
        self.fail(line, f"{name} ran without parsing its arguments")

    def stage(self, stage: str, line: str) -> dict[str, str] | None:
        if stage not in load_config()["stages"]:
            self.fail(line, f"no stage {stage!r} in .chalice/config.json")
            return None
        return stage_env(stage)

    def module_args(self, name: str, args: argparse.Namespace, line: str) -> None:
        env = self.stage(args.stage, line) if getattr(args, "stage", None) else None
        if env is None:
            return
        template_stage = is_template_stage(env)
        if name in TEMPLATE_STAGE_MODULES and not template_stage:
            self.fail(line, f"stage {args.stage} names its resources: it is not deployed with the template")
        if name in BOOTSTRAP_STAGE_MODULES and template_stage:
            self.fail(line, f"stage {args.stage} is a template stage: {name} refuses it")
        if name == "trickle_deploy.operate" and template_stage and not args.stack_name:
            self.fail(line, f"stage {args.stage} is a template stage: operate needs its --stack-name")
        if getattr(args, "stack_name", None) and args.stack_name != self.stack_name:
            self.fail(
                line, f"stack {args.stack_name!r} is not the stack the guide deploys ({self.stack_name})"
            )
        if name == "trickle_deploy.template" and args.package:
            self.package_dir, self.stack = str(args.package), self.stacks[args.stage]
        named = [args.destination] if getattr(args, "destination", None) else []
        for option in ("secret_env", "signing_secret_env", "headers_env"):  # the bootstrap's DEST=VAR
            named += [entry.partition("=")[0] for entry in getattr(args, option, None) or []]
        known = stage_settings(env).destinations if named else {}
        for destination in named:
            if destination not in known:
                self.fail(
                    line, f"no destination {destination!r} in stage {args.stage} (has {', '.join(known)})"
                )

    # --- chalice ---------------------------------------------------------------------------------

    def chalice(self, argv: list[str], line: str) -> None:
        command = chalice_cli.commands.get(argv[0]) if argv else None
        if command is None:
            self.fail(line, f"no chalice command {argv[:1]}")
            return
        try:
            parsed = command.make_context(argv[0], argv[1:], parent=click.Context(chalice_cli, obj={}))
        except click.ClickException as exc:
            self.fail(line, exc.format_message())
            return
        env = self.stage(parsed.params.get("stage") or "dev", line)
        if env is not None and argv[0] in CHALICE_DEPLOYING and is_template_stage(env):
            self.fail(line, f"chalice {argv[0]} cannot import a template stage's app")

    # --- aws -------------------------------------------------------------------------------------

    def aws(self, argv: list[str], line: str) -> list[str]:
        options, rest = self.aws_globals(argv, line)
        if len(rest) < 2:
            self.fail(line, "aws needs a service and an operation")
            return []
        service, operation, args = rest[0], rest[1], rest[2:]
        custom = CUSTOMIZATIONS.get((service, operation))
        if custom is not None:
            try:
                custom(self, line, argparse_strict(CUSTOM_PARSERS[(service, operation)], args))
            except ValueError as exc:
                self.fail(line, str(exc))
            return []
        model = self.session.get_service_model({"s3api": "s3"}.get(service, service))
        if operation == "wait":
            waiters = self.session.get_waiter_model(model.service_name)
            names = {xform_name(n, "-"): n for n in waiters.waiter_names}
            if not args or args[0] not in names:
                self.fail(line, f"no waiter {args[:1]} for {service} (has {', '.join(sorted(names))})")
                return []
            operation_model = model.operation_model(waiters.get_waiter(names[args[0]]).operation)
            args = args[1:]
        else:
            operations = {xform_name(n, "-"): n for n in model.operation_names}
            if operation not in operations:
                self.fail(line, f"aws {service} has no operation {operation}")
                return []
            operation_model = model.operation_model(operations[operation])
        params = self.aws_params(operation_model, args, line)
        if params is None:
            return []
        self.aws_names(operation_model, params, line)
        return self.aws_query(operation_model, options.get("--query"), line)

    def aws_globals(self, argv: list[str], line: str) -> tuple[dict[str, str], list[str]]:
        options: dict[str, str] = {}
        rest: list[str] = []
        items = iter(argv)
        for word in items:
            if word in AWS_GLOBAL_VALUES:
                options[word] = next(items, "")
            elif word not in AWS_GLOBAL_FLAGS:
                rest.append(word)
        if options.get("--output", "json") not in OUTPUT_FORMATS:
            self.fail(line, f"--output {options['--output']} is not one of {sorted(OUTPUT_FORMATS)}")
        return options, rest

    def aws_params(self, operation: OperationModel, args: list[str], line: str) -> dict[str, Any] | None:
        """The request the CLI would build: `--member-name value` per input member, checked by botocore."""
        shape = operation.input_shape
        members: dict[str, str] = {xform_name(m, "-"): m for m in (shape.members if shape else {})}
        params: dict[str, Any] = {}
        option: str | None = None
        values: dict[str, list[str]] = {}
        for word in args:
            if word.startswith("--"):
                option = word[2:]
                values[option] = []
            elif option is None:
                self.fail(line, f"{word!r} is not an option's value")
                return None
            else:
                values[option].append(word)
        for option, given in values.items():
            negated = option.startswith("no-") and option[3:] in members
            name = members.get(option[3:] if negated else option)
            if shape is None or name is None:
                self.fail(line, f"{operation.name} takes no --{option} (takes {', '.join(sorted(members))})")
                return None
            params[name] = cli_value(shape.members[name], given, negated)
            enum = getattr(shape.members[name], "enum", None)
            if enum and params[name] not in enum:
                self.fail(line, f"--{option} {params[name]} is not one of {enum}")
        try:
            validate_parameters(params, shape) if shape else None
        except ParamValidationError as exc:
            self.fail(line, str(exc))
            return None
        return params

    def aws_names(self, operation: OperationModel, params: Mapping[str, Any], line: str) -> None:
        stack, stack_name = self.stack, self.stack_name
        if stack is None or stack_name is None:
            self.fail(line, "an AWS command before the guide packages and deploys a stack")
            return
        service = operation.service_model.service_name
        known: dict[str, set[str]] = {
            "StackName": {stack_name},
            "TableName": stack.names("AWS::DynamoDB::Table", "TableName", stack_name),
            "QueueName": stack.names("AWS::SQS::Queue", "QueueName", stack_name),
        }
        if service == "ssm":
            known["Name"] = stack.parameters()
        for name, value in params.items():
            if name in known and value not in known[name]:
                self.fail(line, f"{name} {value!r}: the template has {sorted(known[name])}")
        if "QueueUrl" in params and not str(params["QueueUrl"]).startswith(SUBSTITUTION):
            self.fail(line, "a queue URL is account-specific: look it up with aws sqs get-queue-url")
        key = str(params.get("KeyId", ""))
        if key.startswith("alias/"):
            aliases = stack.names("AWS::KMS::Alias", "AliasName", stack_name)
            if key not in aliases:
                self.fail(line, f"KMS alias {key!r}: the template has {sorted(aliases)}")
        elif key:
            self.held(line, key, "AWS::KMS::Key")

    def held(self, line: str, value: str, kind: str) -> None:
        """`value` must be a variable holding a stack output that names a resource of `kind`."""
        match = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", value)
        outputs = self.variables.get(match.group(1), []) if match else []
        assert self.stack is not None
        if not outputs or any(self.stack.output_resource_type(o) != kind for o in outputs):
            self.fail(line, f"{value!r} holds no stack output naming the stack's {kind}")

    def aws_query(self, operation: OperationModel, query: str | None, line: str) -> list[str]:
        """The query compiles, its fields are the operation's, and on the stack's describe calls it
        selects something the template has (which outputs, for the variables it fills)."""
        if query is None:
            return []
        try:
            parsed = jmespath.compile(query)
        except jmespath.exceptions.JMESPathError as exc:
            self.fail(line, f"--query {query!r}: {exc}")
            return []
        fields = set(re.findall(r"'type': 'field', 'children': \[\], 'value': '(\w+)'", str(parsed.parsed)))
        unknown = fields - member_names(operation.output_shape)
        if unknown:
            self.fail(line, f"--query names {sorted(unknown)}, which {operation.name} does not return")
        assert self.stack is not None
        response: Any
        if operation.name == "DescribeStacks":
            outputs = [{"OutputKey": k, "OutputValue": k} for k in self.stack.sam["Outputs"]]
            response = {"Stacks": [{"Outputs": outputs}]}
        elif operation.name == "DescribeStackResources":
            resources = self.stack.cfn["Resources"].items()
            response = {
                "StackResources": [{"ResourceType": r["Type"], "PhysicalResourceId": k} for k, r in resources]
            }
        else:
            return []
        found = parsed.search(response)
        if not found:
            self.fail(line, f"--query {query!r} selects nothing from the stack the template makes")
            return []
        return [str(f) for f in found] if operation.name == "DescribeStacks" else []


def dev_commands() -> set[str]:
    """The commands `./dev` dispatches (the labels of its `case`)."""
    labels = re.findall(r"^  ([\w|-]+)\)$", (PROJECT_DIR / "dev").read_text(), re.M)
    return {name for label in labels for name in label.split("|")}


def member_names(shape: Shape | None) -> set[str]:
    """Every member name anywhere in a response shape."""
    seen: set[str] = set()
    names: set[str] = set()

    def walk(s: Shape | None) -> None:
        if s is None or s.name in seen:
            return
        seen.add(s.name)
        for name, member in getattr(s, "members", {}).items():
            names.add(name)
            walk(member)
        walk(getattr(s, "member", None))
        walk(getattr(s, "value", None))

    walk(shape)
    return names


def cli_value(shape: Shape, given: list[str], negated: bool) -> Any:
    """A value as the AWS CLI reads it from the command line (scalars and lists of scalars)."""
    if shape.type_name == "boolean":
        return not negated if not given else given[0] == "true"
    if shape.type_name == "list":
        member = shape.member
        return [cli_value(member, [v], False) for v in given]
    if len(given) != 1:
        return given
    if shape.type_name in ("integer", "long"):
        return int(given[0]) if re.fullmatch(r"-?\d+", given[0]) else given[0]
    return given[0]


class StrictParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ValueError(message)


def argparse_strict(parser: StrictParser, args: list[str]) -> argparse.Namespace:
    return parser.parse_args(args)


def _parser(name: str, *options: tuple[str, dict[str, Any]]) -> StrictParser:
    parser = StrictParser(prog=name, add_help=False)
    for option, settings in options:
        parser.add_argument(option, **settings)
    return parser


INLINE_TEMPLATE_BYTES = 51_200  # CloudFormation's quota for a template body sent with the request

# The AWS CLI's own commands (not in botocore's models), with the options their reference lists.
CUSTOM_PARSERS = {
    ("cloudformation", "package"): _parser(
        "aws cloudformation package",
        ("--template-file", {"required": True}),
        ("--s3-bucket", {"required": True}),
        ("--s3-prefix", {}),
        ("--kms-key-id", {}),
        ("--output-template-file", {}),
        ("--use-json", {"action": "store_true"}),
        ("--force-upload", {"action": "store_true"}),
        ("--metadata", {}),
    ),
    ("cloudformation", "deploy"): _parser(
        "aws cloudformation deploy",
        ("--template-file", {"required": True}),
        ("--stack-name", {"required": True}),
        ("--s3-bucket", {}),
        ("--s3-prefix", {}),
        ("--force-upload", {"action": "store_true"}),
        ("--kms-key-id", {}),
        ("--parameter-overrides", {"nargs": "+", "default": []}),
        ("--capabilities", {"nargs": "+", "default": []}),
        ("--no-execute-changeset", {"action": "store_true"}),
        ("--disable-rollback", {"action": "store_true"}),
        ("--role-arn", {}),
        ("--notification-arns", {"nargs": "+"}),
        ("--fail-on-empty-changeset", {"action": "store_true"}),
        ("--no-fail-on-empty-changeset", {"action": "store_true"}),
        ("--tags", {"nargs": "+"}),
    ),
    ("s3", "rb"): _parser("aws s3 rb", ("path", {}), ("--force", {"action": "store_true"})),
}


def _package(checker: Checker, line: str, args: argparse.Namespace) -> None:
    if checker.package_dir is None or args.template_file != f"{checker.package_dir}/pkg/sam.json":
        raise ValueError(f"--template-file {args.template_file} is not what trickle_deploy.template packaged")
    checker.packaged_template = args.output_template_file


def _deploy(checker: Checker, line: str, args: argparse.Namespace) -> None:
    if checker.stack is None or args.template_file != checker.packaged_template:
        raise ValueError(f"--template-file {args.template_file} is not what aws cloudformation package wrote")
    if checker.stack_name not in (None, args.stack_name):
        raise ValueError(
            f"a second stack name {args.stack_name!r} (the guide deploys {checker.stack_name!r})"
        )
    checker.stack_name = args.stack_name
    size = len(json.dumps(checker.stack.sam, separators=(",", ":")))  # the packaged YAML is larger still
    if size > INLINE_TEMPLATE_BYTES and args.s3_bucket is None:
        raise ValueError(
            f"the template is over {INLINE_TEMPLATE_BYTES:,} bytes ({size:,} as compact JSON), more than"
            " CloudFormation takes inline: deploy needs --s3-bucket"
        )
    model = checker.session.get_service_model("cloudformation")
    allowed = model.operation_model("CreateStack").input_shape.members["Capabilities"].member.enum
    for capability in args.capabilities:
        if capability not in allowed:
            raise ValueError(f"--capabilities {capability} is not one of {allowed}")
    parameters = checker.stack.sam["Parameters"]
    for override in args.parameter_overrides:
        key, _, value = override.partition("=")
        if key not in parameters:
            raise ValueError(f"the template has no parameter {key} (has {', '.join(parameters)})")
        spec = parameters[key]
        if "AllowedValues" in spec and value not in spec["AllowedValues"]:
            raise ValueError(f"{key}={value} is not one of {spec['AllowedValues']}")
        if "AllowedPattern" in spec and not re.match(spec["AllowedPattern"], value):
            raise ValueError(f"{key}={value} does not match {spec['AllowedPattern']}")


def _remove_bucket(checker: Checker, line: str, args: argparse.Namespace) -> None:
    if not args.path.startswith("s3://"):
        raise ValueError(f"{args.path} is not an s3:// path")
    checker.held(line, args.path, "AWS::S3::Bucket")


CUSTOMIZATIONS = {
    ("cloudformation", "package"): _package,
    ("cloudformation", "deploy"): _deploy,
    ("s3", "rb"): _remove_bucket,
}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Stack]]:
    """The packaged template of every template stage, and what the SAM transform makes of it."""
    found = {}
    for stage, config in load_config()["stages"].items():
        if is_template_stage(config["environment_variables"]):
            sam = json.loads(package_stage(stage, tmp_path_factory.mktemp(stage)).read_text())
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
                found[stage] = Stack(stage, sam, sam_transform(sam))
    yield found


def check(stacks: Mapping[str, Stack], guide: str, others: list[str]) -> list[str]:
    checker = Checker(stacks)
    for block in SHELL_BLOCK.findall(guide):
        checker.block(block)
    pages = [guide, *others]
    spans = [span for page in pages for span in MODULE_SPAN.findall(page) + OPERATE_SPAN.findall(page)]
    spans += [  # the other pages' shell blocks: their deploy and operator commands
        line
        for page in others
        for language, block in FENCED_BLOCK.findall(page)
        if language in ("", "sh", "bash", "shell")
        for line in shell_lines(block)
        if MODULE_LINE.match(line)
    ]
    for span in dict.fromkeys(spans):
        checker.block(span)
    return checker.problems


def test_every_command_of_the_deploy_guide_parses_and_names_what_the_template_has(
    stacks: dict[str, Stack],
) -> None:
    problems = check(stacks, DEPLOY_GUIDE.read_text(), other_pages())
    assert problems == [], "\n".join(problems)


def test_the_check_catches_what_the_guide_got_wrong_before(stacks: dict[str, Stack]) -> None:
    """Issue #22's findings, each put back into the guide, are each reported."""
    guide = DEPLOY_GUIDE.read_text()
    stale = {
        "the output name": (
            "aws cloudformation describe-stacks --stack-name trickle-prod"
            " --query \"Stacks[0].Outputs[?OutputKey=='PutApiKeyCommand'].OutputValue\" --output text",
            "selects nothing",
        ),
        "the queue name": (
            'aws sqs delete-queue --queue-url "$(aws sqs get-queue-url --queue-name trickle-prod-outbox.fifo'
            ' --output text)"',
            "QueueName 'trickle-prod-outbox.fifo'",
        ),
        "the parameter name": (
            "aws ssm delete-parameter --name /trickle/prod/api-key",
            "Name '/trickle/prod/api-key'",
        ),
        "a redrive without its destination": (
            "python -m trickle_deploy.operate --stage prod --stack-name trickle-prod redrive --group G",
            "the following arguments are required: destination",
        ),
        "an operator command without the stack": (
            "python -m trickle_deploy.operate --stage prod retry MESSAGE_ID",
            "operate needs its --stack-name",
        ),
        "an optional argument that is not one": (
            "aws cloudformation deploy --template-file build/prod/packaged.yaml --stack-name trickle-prod"
            " --s3-bucket YOUR_ARTIFACT_BUCKET --capabilities CAPABILITY_IAM"
            " --parameter-overrides SourceStreamArn=arn:...:table/orders/stream/...",
            "does not match",
        ),
        "a template too big to send inline": (
            "aws cloudformation deploy --template-file build/prod/packaged.yaml --stack-name trickle-prod"
            " --capabilities CAPABILITY_IAM",
            "deploy needs --s3-bucket",
        ),
        "a bucket nobody named": ("aws s3 rb s3://BUCKET --force", "holds no stack output"),
        "a misspelt option": ("aws dynamodb delete-table --table trickle-prod-ledger", "takes no --table"),
        "a mistyped ./dev command": ("./dev rnu", "./dev has no command rnu"),
        "a secret for a destination the stage lacks": (
            "SHIPPING_API_KEY=... .venv/bin/python -m trickle_deploy.bootstrap --stage dev"
            " --secret-env shipping=SHIPPING_API_KEY",
            "no destination 'shipping' in stage dev",
        ),
        "chalice on the template stage": (
            ".venv/bin/chalice deploy --stage prod",
            "cannot import a template stage",
        ),
    }
    for what, (command, reported) in stale.items():
        problems = check(stacks, guide + f"\n```\n{command}\n```\n", other_pages())
        assert any(reported in p for p in problems), (what, problems)


def test_a_command_on_any_page_of_the_docs_is_checked(stacks: dict[str, Stack]) -> None:
    page = "Run `python -m trickle_deploy.operate --stage prod --stack-name trickle-prod redrive shipping`."
    problems = check(stacks, DEPLOY_GUIDE.read_text(), [*other_pages(), page])
    assert any("no destination 'shipping' in stage prod" in p for p in problems), problems


def test_the_key_and_clean_up_blocks_are_what_the_guide_prints() -> None:
    blocks = SHELL_BLOCK.findall(DEPLOY_GUIDE.read_text())
    for what in ("keys", "cleanup"):
        printed = "\n".join(guide_commands("prod", "trickle-prod", what)) + "\n"
        assert printed in blocks, f"the {what} block is not what python -m trickle_deploy.guide prints"
