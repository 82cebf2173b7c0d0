"""A drain's IAM policy reads (and decrypts) exactly its own destination's SecureStrings: its
credentials unless auth = none, its signing secret if it signs, its secret headers if it has any
(issue #24). Checked with the recorded-call check's own `denied`, on the calls a drain makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.settings import load_settings
from tests.unit.conftest import secret_kinds_env
from trickle_deploy.iam_check import AwsCall, denied
from trickle_deploy.policies import function_policies, parameter_arn
from trickle_project.secret_parameters import needed

KEY = "arn:aws:kms:us-east-1:123456789012:key/6f1c"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return secret_kinds_env(tmp_path) | {
        "TRICKLE_INGEST_FAILURE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/failures",
        "TRICKLE_API_KEY_KMS_KEY_ARN": KEY,
    }


def read(function: str, parameter: str) -> AwsCall:
    arn = parameter_arn(parameter, "aws", "us-east-1", "123456789012")
    return AwsCall(function, "ssm", "GetParameter", "ssm:GetParameter", arn)


def test_each_drain_reads_its_own_destination_s_secrets_and_no_other_s(env: dict[str, str]) -> None:
    destinations = load_settings(env).destinations.values()
    policies = function_policies(env)
    cases = [
        (read(f"drain_{drain.name}", parameter.name), drain.name == parameter.destination)
        for drain in destinations
        for whose in destinations
        for parameter in needed(whose)
    ]
    assert len(cases) == 5 * 6  # five drains, six parameters among them
    assert denied([call for call, _ in cases], policies) == [call for call, own in cases if not own]


@pytest.mark.parametrize(
    ("drain", "statements"),
    [
        ("orders", ["ReadCredentials", "ReadSigningSecret", "ReadSecretHeaders", "DecryptThroughSsm"]),
        ("crm", ["ReadCredentials", "DecryptThroughSsm"]),
        ("hooks", ["ReadSigningSecret", "DecryptThroughSsm"]),  # auth = none: no credentials
        ("open", []),  # nothing secret at all: neither a read nor a decrypt
    ],
)
def test_a_statement_per_kind_of_secret_and_one_decrypt_for_exactly_those(
    env: dict[str, str], drain: str, statements: list[str]
) -> None:
    policy = function_policies(env)[f"drain_{drain}"]
    secret = [s for s in policy["Statement"] if s["Sid"].startswith(("Read", "Decrypt"))]
    assert [s["Sid"] for s in secret] == statements
    parameters = [
        parameter_arn(p.name, "aws", "us-east-1", "123456789012")
        for p in needed(load_settings(env).destination(drain))
    ]
    assert [r for s in secret if s["Sid"].startswith("Read") for r in s["Resource"]] == parameters
    for decrypt in secret[-1:]:
        assert decrypt["Resource"] == [KEY]
        assert decrypt["Condition"]["StringEquals"] == {
            "kms:EncryptionContext:PARAMETER_ARN": parameters,
            "kms:ViaService": "ssm.us-east-1.amazonaws.com",
        }
