"""Checks AWS calls the code really made against the IAM policies `chalice package` produced.

Chalice's own policy generator cannot see calls made in `chalicelib` or in `on_dynamodb_record`
handlers; this closes that gap by recording calls with botocore's event hooks while the handlers
run and evaluating each against the packaged role of the function that made it.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from chalicelib.notes import NOTE_KEY
from trickle_deploy.policies import ACTIONS, SQS_TRIGGER_ACTIONS, parameter_arn, queue_arn


@dataclass(frozen=True)
class AwsCall:
    function: str
    service: str
    operation: str
    action: str
    resource: str
    # The partition keys of the items a DynamoDB call names (IAM's `dynamodb:LeadingKeys`); None when
    # not known (another service, or a table whose key the recorder was not told).
    leading_keys: tuple[str, ...] | None = None
    # The prefix an S3 listing asks for (IAM's `s3:prefix`); None for any other call.
    prefix: str | None = None


def trigger_calls(function: str, queue_arn: str) -> list[AwsCall]:
    """The calls Lambda's SQS event source mapping makes on `queue_arn` for `function`, with that
    function's role: no handler makes them, so no recording sees them."""
    return [
        AwsCall(function, "sqs", action.split(":", 1)[1], action, queue_arn) for action in SQS_TRIGGER_ACTIONS
    ]


def partition_keys(env: Mapping[str, str]) -> dict[str, str]:
    """Table -> partition key attribute, for the tables whose policies scope by leading key."""
    return {env["TRICKLE_NOTES_TABLE"]: NOTE_KEY}


def leading_keys(params: Mapping[str, Any], attribute: str) -> tuple[str, ...]:
    """The partition key values of every item a GetItem/PutItem/UpdateItem/DeleteItem or batch call names."""
    if "Key" in params or "Item" in params:
        items = [params.get("Key") or params["Item"]]
    else:
        items = [
            item
            for request in params.get("RequestItems", {}).values()
            for item in (
                request["Keys"]
                if isinstance(request, dict)
                else [r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"] for r in request]
            )
        ]
    return tuple(str(item[attribute]["S"]) for item in items)


def call_resource(service: str, params: Mapping[str, Any], region: str, account: str) -> str:
    """The ARN a call acts on, from its parameters (only the services Trickle uses)."""
    if service == "sqs":
        if "QueueUrl" not in params:  # StartMessageMoveTask names its source by ARN
            return str(params["SourceArn"])
        return queue_arn(str(params["QueueUrl"]), "aws", region)
    if service == "ssm":
        return parameter_arn(str(params["Name"]), "aws", region, account)
    if service == "s3":
        if "Key" not in params:  # a listing acts on the bucket
            return f"arn:aws:s3:::{params['Bucket']}"
        return f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"
    if service == "dynamodb":
        tables = [params["TableName"]] if "TableName" in params else list(params["RequestItems"])
        if len(tables) != 1:
            raise ValueError(f"one table per call expected, got {tables}")
        index = f"/index/{params['IndexName']}" if "IndexName" in params else ""
        return f"arn:aws:dynamodb:{region}:{account}:table/{tables[0]}{index}"
    raise ValueError(f"no resource rule for {service}")


@dataclass
class CallRecorder:
    """Register on a boto3 session before clients are made; set `function` while a handler runs.

    `function` is held in a context variable, so only calls made in the handler's own thread, or in
    threads running a copy of its context (the drain's workers), are attributed to it: an emulator
    running in the same process (moto's Step Functions interpreter sending a task's message) calls
    AWS from threads of its own while a handler runs, and those calls are not the handler's."""

    region: str = "us-east-1"
    account: str = "123456789012"
    calls: list[AwsCall] = field(default_factory=list)
    partition_keys: Mapping[str, str] = field(default_factory=dict)  # see `partition_keys()`
    # A task token names no resource; tests say which state machine's task each one belongs to.
    task_tokens: dict[str, str] = field(default_factory=dict)

    _function: ContextVar[str | None] = field(
        default_factory=lambda: ContextVar("recorded_function", default=None), repr=False
    )

    @property
    def function(self) -> str | None:
        return self._function.get()

    @function.setter
    def function(self, name: str | None) -> None:
        self._function.set(name)

    def register(self, events: Any) -> None:
        events.register("provide-client-params.*.*", self._on_call)

    def unregister(self, events: Any) -> None:
        events.unregister("provide-client-params.*.*", self._on_call)

    def _on_call(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        if self.function is None:
            return
        service = model.service_model.service_name
        if (service, model.name) == ("dynamodb", "TransactWriteItems"):
            self._on_transaction(params)
            return
        action = ACTIONS.get((service, model.name), f"{service}:{model.name}")
        if service == "stepfunctions" and "taskToken" in params:
            resource = self.task_tokens.get(str(params.get("taskToken")), "unknown task token")
        elif service == "stepfunctions":  # ListExecutions, GetExecutionHistory
            resource = str(params.get("stateMachineArn") or params.get("executionArn"))
        else:
            resource = call_resource(service, params, self.region, self.account)
        keys = None
        prefix = str(params.get("Prefix", "")) if (service, model.name) == ("s3", "ListObjectsV2") else None
        if service == "dynamodb":
            table = resource.split(":table/", 1)[1]
            attribute = self.partition_keys.get(table)
            keys = leading_keys(params, attribute) if attribute and "IndexName" not in params else None
        self.calls.append(AwsCall(self.function, service, model.name, action, resource, keys, prefix))

    def _on_transaction(self, params: Mapping[str, Any]) -> None:
        """IAM has no action for a transaction: each of its writes is authorised as the single call
        it stands for (an Update as UpdateItem on its table)."""
        for entry in params["TransactItems"]:
            ((kind, write),) = entry.items()
            resource = call_resource("dynamodb", write, self.region, self.account)
            table = resource.split(":table/", 1)[1]
            attribute = self.partition_keys.get(table)
            keys = leading_keys(write, attribute) if attribute else None
            action = TRANSACTION_ACTIONS[kind]
            self.calls.append(
                AwsCall(str(self.function), "dynamodb", "TransactWriteItems", action, resource, keys)
            )


# A TransactWriteItems entry's kind -> the IAM action that authorises it.
TRANSACTION_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(
    condition: Mapping[str, Any], keys: tuple[str, ...] | None, prefix: str | None = None
) -> bool:
    """The conditions Trickle writes on calls the code makes: `ForAllValues:StringEquals` or
    `ForAllValues:StringLike` on `dynamodb:LeadingKeys`, and `StringLike` on an S3 listing's
    `s3:prefix`. Any other condition is not evaluated here, so the statement is taken not to allow
    the call (the check errs towards "denied")."""
    for operator, tests in condition.items():
        if operator == "StringLike" and set(tests) == {"s3:prefix"}:
            if prefix is None or not any(fnmatchcase(prefix, p) for p in _as_list(tests["s3:prefix"])):
                return False
            continue
        if operator not in ("ForAllValues:StringEquals", "ForAllValues:StringLike") or set(tests) != {
            "dynamodb:LeadingKeys"
        }:
            return False
        allowed = _as_list(tests["dynamodb:LeadingKeys"])
        if not keys:  # IAM's ForAllValues holds on no keys at all: this check refuses to guess
            return False
        like = operator.endswith("StringLike")
        if not all(any(fnmatchcase(k, a) if like else k == a for a in allowed) for k in keys):
            return False
    return True


def allows(
    policy: Mapping[str, Any],
    action: str,
    resource: str,
    keys: tuple[str, ...] | None = None,
    prefix: str | None = None,
) -> bool:
    """Allow statements only (Trickle writes no Deny); IAM matches actions case-insensitively.
    `keys`: the call's leading keys, `prefix` an S3 listing's, for statements conditioned on them."""
    for statement in _as_list(policy.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        if "Condition" in statement and not _condition_holds(statement["Condition"], keys, prefix):
            continue
        actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
        resources = [r for r in _as_list(statement.get("Resource", [])) if isinstance(r, str)]
        if any(fnmatchcase(action.lower(), a) for a in actions) and any(
            fnmatchcase(resource, r) for r in resources
        ):
            return True
    return False


def packaged_policies(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Function handler name (`ingest`) -> the merged policy document of its role."""
    resources = template["Resources"]
    out: dict[str, dict[str, Any]] = {}
    for resource in resources.values():
        if resource["Type"] not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        props = resource["Properties"]
        role = props.get("Role", {}).get("Fn::GetAtt", [None])[0]
        if role is None:
            continue
        statements = [
            s
            for p in resources[role]["Properties"].get("Policies", [])
            for s in _as_list(p["PolicyDocument"]["Statement"])
        ]
        handler = props["Handler"].split(".", 1)[1]
        name = "api_handler" if handler == "app" else handler  # Chalice's one function for all routes
        out[name] = {"Version": "2012-10-17", "Statement": statements}
    return out


def role_documents(iam: Any, role: str) -> list[dict[str, Any]]:
    """A role's inline policy documents as the account holds them. moto hands back those of a role
    CloudFormation made as Python reprs rather than JSON (a gap pinned in test_cloudformation.py), so
    both are read."""
    documents = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        documents.append(ast.literal_eval(document) if isinstance(document, str) else dict(document))
    return documents


def deployed_policies(lambda_client: Any, iam: Any, functions: list[str]) -> dict[str, dict[str, Any]]:
    """Function handler name (`ingest`) -> the merged policy of the role a deploy gave the function."""
    out: dict[str, dict[str, Any]] = {}
    for function in functions:
        configuration = lambda_client.get_function_configuration(FunctionName=function)
        handler = configuration["Handler"].split(".", 1)[1]
        name = "api_handler" if handler == "app" else handler  # Chalice's one function for all routes
        role = configuration["Role"].rsplit("/", 1)[1]
        statements = [s for d in role_documents(iam, role) for s in _as_list(d["Statement"])]
        out[name] = {"Version": "2012-10-17", "Statement": statements}
    return out


def load_template(package_dir: Path) -> dict[str, Any]:
    return dict(json.loads((package_dir / "sam.json").read_text()))


def denied(calls: list[AwsCall], policies: Mapping[str, Mapping[str, Any]]) -> list[AwsCall]:
    """The calls whose function's packaged policy does not allow them."""
    return [
        c
        for c in calls
        if not allows(policies.get(c.function, {}), c.action, c.resource, c.leading_keys, c.prefix)
    ]
