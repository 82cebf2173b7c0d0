"""A destination's names are formed in `chalicelib.naming` alone (issue #23): its drain, its stage
variables, queues, key parameter, policy files and its stack's ids, outputs and alarms. The other
modules call it, so no two of them can spell a name differently. Read from the source with `ast`:
every string in the code (docstrings aside), an f-string's values written `{}`."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib import naming

ROOT = Path(__file__).resolve().parents[2]
# app.py is left out: a user writes a drain's name in its decorator there (docs/routes.md, "Adding a
# destination").
PACKAGES = ("chalicelib", "trickle_project", "trickle_deploy", "trickle_local", "trickle_prove", "bench")
PATTERNS = {
    "drain function": r"(^|[^A-Za-z])drain_(\{\}|$)",
    "destination variable": r"TRICKLE_DEST_",
    "dead-letter queue": r"-dead-letters",
    "key parameter or key alias": r"\}-(api-key|signing-secret|headers)\b",
    "queue name": r"\{\}\.fifo",
    "key variable": r"\{\}_(API_KEY|SIGNING_SECRET|HEADERS)\b",
    "policy file": r"policy-\{\}-",
    "stack id or output": r"\{\}(Queue|DeadLetterQueue|Role|DecryptApiKey|DeadLettersAlarm|OldestMessageAlarm"
    r"|ErrorsAlarm|CredentialsRefusedAlarm|CircuitOpenAlarm|AnswerExample|ApiKeyParameterArn|PutApiKeyCommand|QueueUrl"
    r"|DeadLetterQueueUrl|SigningSecretParameterArn|PutSigningSecretCommand|SecretHeadersParameterArn"
    r"|PutSecretHeadersCommand)\b"
    r"|ExampleThrough\{\}",
    "delivered archive prefix": r"delivered/\{\}",
}


def strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) for every string of the code, an f-string's values as `{}`; docstrings left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    parts: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts |= {id(value) for value in node.values}
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            yield node.lineno, text
    skipped = docstrings | parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            yield node.lineno, node.value


def formed_names(path: Path) -> list[str]:
    """Where `path` forms one of a destination's names itself: `file:line: kind: text`."""
    return [
        f"{path.relative_to(ROOT)}:{line}: {kind}: {text!r}"
        for line, text in strings(ast.parse(path.read_text()))
        for kind, pattern in PATTERNS.items()
        if re.search(pattern, text)
    ]


SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).glob("*.py") if p.name != "naming.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_but_naming_forms_a_destination_s_names(path: Path) -> None:
    assert formed_names(path) == []


# How the modules formed these names before `naming` (issue #23): one line per kind above.
FORMED_BY_HAND = """
f"drain_{self.name}"
f"TRICKLE_DEST_{name.upper()}_"
f"{prefix}-dead-letters.fifo"
{"AliasName": {"Fn::Sub": "alias/${AWS::StackName}-api-key"}}
f"{prefix}.fifo"
f"{destination.upper()}_API_KEY"
f"policy-{stage}-{function}.json"
f"{logical_id(d.name)}DeadLetterQueue"
f"delivered/{destination}/"
"""


def test_the_guard_sees_every_kind_of_name_formed_by_hand() -> None:
    found = [
        kind
        for _, text in sorted(strings(ast.parse(FORMED_BY_HAND)))
        for kind, pattern in PATTERNS.items()
        if re.search(pattern, text)
    ]

    assert found == list(PATTERNS)


@pytest.mark.parametrize(
    ("variable", "field", "destination"),
    [
        ("TRICKLE_DEST_ORDERS_QUEUE_URL", "queue_url", "orders"),
        ("TRICKLE_DEST_CRM_DLQ_URL", "dlq_url", "crm"),
        ("TRICKLE_DEST_ORDERS_DLQ_URL", "queue_url", None),
        ("TRICKLE_DEST__QUEUE_URL", "queue_url", None),
        ("TRICKLE_INGEST_FAILURE_QUEUE_URL", "queue_url", None),
    ],
)
def test_a_stage_variable_names_its_destination(variable: str, field: str, destination: str | None) -> None:
    assert naming.variable_destination(variable, field) == destination
    if destination:
        assert naming.destination_variable(destination, field) == variable


@pytest.mark.parametrize(
    ("variable", "destinations", "owner"),
    [
        ("TRICKLE_DEST_ORDERS_QUEUE_URL", ["orders", "orders_bulk"], "orders"),
        ("TRICKLE_DEST_ORDERS_BULK_QUEUE_URL", ["orders", "orders_bulk"], "orders_bulk"),
        ("TRICKLE_DEST_ORDERS_BULK_QUEUE_URL", ["orders_bulk", "orders"], "orders_bulk"),
        ("TRICKLE_DEST_ORDERS_BULK_QUEUE_URL", ["orders"], "orders"),  # no other: a field of orders'
        ("TRICKLE_DEST_CRM_URL", ["orders", "orders_bulk"], None),
    ],
)
def test_a_stage_variable_belongs_to_the_longest_destination_name_it_starts_with(
    variable: str, destinations: list[str], owner: str | None
) -> None:
    assert naming.variable_owner(variable, destinations) == owner


@pytest.mark.parametrize(
    ("stage", "file_name", "function"),
    [
        ("dev", "policy-dev-ingest.json", "ingest"),
        ("dev", "policy-dev-drain_orders.json", "drain_orders"),
        ("dev", "policy-dev-emulator-ingest.json", None),
        ("dev-emulator", "policy-dev-emulator-ingest.json", "ingest"),
        ("dev", "policy-prod-ingest.json", None),
    ],
)
def test_a_policy_file_names_its_stage_s_function(stage: str, file_name: str, function: str | None) -> None:
    assert naming.policy_file_function(stage, file_name) == function
