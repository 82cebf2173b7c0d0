"""What the stream-settings command changes on a mapping `chalice deploy` made (a table of cases)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trickle_deploy.stream_settings import differences, wanted_settings

FAILURE_QUEUE = "arn:aws:sqs:eu-west-3:111122223333:trickle-dev-ingest-failures"
ENV = {
    "TRICKLE_STREAM_ARN": "arn:aws:dynamodb:eu-west-3:111122223333:table/items/stream/1",
    "TRICKLE_ROUTES_FILE": str(Path(__file__).resolve().parent.parent / "routes.toml"),
    "TRICKLE_PARTITION_KEY": "pk",
    "TRICKLE_LEDGER_TABLE": "ledger",
    "TRICKLE_NOTES_TABLE": "notes",
    "TRICKLE_JOBS_QUEUE_URL": "https://sqs.eu-west-3.amazonaws.com/111122223333/jobs",
    **{
        f"TRICKLE_DEST_{name}_{field}": f"https://sqs.eu-west-3.amazonaws.com/111122223333/{name}-{field}.fifo"
        for name in ("ORDERS", "CRM")
        for field in ("QUEUE_URL", "DLQ_URL", "URL")
    },
    "TRICKLE_DEST_ORDERS_KEY_PARAMETER": "/k",
    "TRICKLE_DEST_CRM_KEY_PARAMETER": "/c",
}
DONE = {
    "BisectBatchOnFunctionError": True,
    "MaximumRetryAttempts": 10,
    "MaximumRecordAgeInSeconds": 86_400,
    "DestinationConfig": {"OnFailure": {"Destination": FAILURE_QUEUE}},
}


@pytest.mark.parametrize(
    ("current", "partial", "changed"),
    [
        ({"MaximumRetryAttempts": -1, "MaximumRecordAgeInSeconds": -1}, False, sorted(DONE)),  # Chalice's
        (DONE, False, []),  # already applied: nothing to do
        (DONE | {"FunctionResponseTypes": []}, False, []),
        (DONE, True, ["FunctionResponseTypes"]),
        (DONE | {"FunctionResponseTypes": ["ReportBatchItemFailures"]}, True, []),
        (DONE | {"FunctionResponseTypes": ["ReportBatchItemFailures"]}, False, ["FunctionResponseTypes"]),
        (DONE | {"DestinationConfig": {"OnFailure": {}}}, False, ["DestinationConfig"]),
        (DONE | {"MaximumRetryAttempts": 3}, False, ["MaximumRetryAttempts"]),
    ],
)
def test_only_what_differs_is_updated(current: dict[str, Any], partial: bool, changed: list[str]) -> None:
    env = ENV | {"TRICKLE_PARTIAL_BATCH_RESPONSE": "true" if partial else "false"}
    assert sorted(differences(current, wanted_settings(env, FAILURE_QUEUE))) == changed
