"""The recorded-call check: leading keys and `dynamodb:LeadingKeys` conditions (iam_check.py)."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from trickle_deploy.iam_check import CallRecorder, allows, leading_keys

TABLE = "arn:aws:dynamodb:us-east-1:1:table/notes"


def policy(operator: str, keys: list[str]) -> dict[str, Any]:
    condition = {f"ForAllValues:{operator}": {"dynamodb:LeadingKeys": keys}}
    return {
        "Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:PutItem"], "Resource": [TABLE], "Condition": condition}
        ]
    }


@pytest.mark.parametrize(
    ("params", "keys"),
    [
        ({"TableName": "notes", "Key": {"note_id": {"S": "run#orders"}}}, ("run#orders",)),
        ({"TableName": "notes", "Item": {"note_id": {"S": "lease#crm"}, "doc": {"S": "{}"}}}, ("lease#crm",)),
        (
            {"RequestItems": {"notes": {"Keys": [{"note_id": {"S": "a"}}, {"note_id": {"S": "b"}}]}}},
            ("a", "b"),
        ),
        (
            {
                "RequestItems": {
                    "notes": [
                        {"PutRequest": {"Item": {"note_id": {"S": "a"}}}},
                        {"DeleteRequest": {"Key": {"note_id": {"S": "b"}}}},
                    ]
                }
            },
            ("a", "b"),
        ),
    ],
)
def test_leading_keys_are_the_partition_keys_of_every_item_named(
    params: dict[str, Any], keys: tuple[str, ...]
) -> None:
    assert leading_keys(params, "note_id") == keys


@pytest.mark.parametrize(
    ("operator", "allowed", "keys", "expected"),
    [
        ("StringEquals", ["lease#orders", "run#orders"], ("lease#orders",), True),
        ("StringEquals", ["lease#orders", "run#orders"], ("lease#crm",), False),
        ("StringEquals", ["lease#orders"], ("lease#orders", "lease#crm"), False),  # all, not any
        ("StringEquals", ["run#*"], ("run#orders",), False),  # no wildcards with StringEquals
        ("StringLike", ["run#*"], ("run#orders",), True),
        ("StringLike", ["run#*"], ("redrive#1",), False),
        ("StringLike", ["run#*"], (), False),  # IAM would allow a call naming no key: refused here
        ("StringLike", ["run#*"], None, False),  # keys unknown
    ],
)
def test_leading_key_conditions(
    operator: str, allowed: list[str], keys: tuple[str, ...] | None, expected: bool
) -> None:
    assert allows(policy(operator, allowed), "dynamodb:PutItem", TABLE, keys) is expected


def test_a_condition_the_check_cannot_evaluate_does_not_allow() -> None:
    statement = policy("StringEquals", ["x"])["Statement"][0]
    statement["Condition"] = {"StringEquals": {"aws:SourceVpc": "vpc-1"}}
    assert not allows({"Statement": [statement]}, "dynamodb:PutItem", TABLE, ("x",))
    del statement["Condition"]
    assert allows({"Statement": [statement]}, "dynamodb:PutItem", TABLE)


def test_calls_are_attributed_to_the_handler_only_in_its_own_context() -> None:
    """An in-process emulator calling AWS from a thread of its own while a handler runs (moto's Step
    Functions interpreter) is not the handler; the drain's workers, run in a copy of the handler's
    context, are."""
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    recorder = CallRecorder()
    recorder.register(session.events)
    sqs = session.client("sqs")
    body = {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/1/q.fifo", "MessageBody": "{}"}
    stubber = Stubber(sqs)  # answers without a network; the recorder's hook runs before it
    for _ in range(2):
        stubber.add_response("send_message", {"MessageId": "m", "MD5OfMessageBody": "x"}, body)
    stubber.activate()

    def send() -> None:
        sqs.send_message(**body)

    recorder.function = "drain_orders"
    try:
        context = contextvars.copy_context()
        emulator = threading.Thread(target=send)
        worker = threading.Thread(target=context.run, args=(send,))
        for thread in (emulator, worker):
            thread.start()
            thread.join(timeout=60)
    finally:
        recorder.function = None
    stubber.assert_no_pending_responses()  # both threads made their call
    assert [(c.function, c.operation) for c in recorder.calls] == [("drain_orders", "SendMessage")]


def test_a_transaction_is_checked_as_the_writes_it_holds() -> None:
    """IAM has no TransactWriteItems action: each Update needs UpdateItem on its table (issue #25,
    a batch's settlements in one transaction)."""
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    recorder = CallRecorder(partition_keys={"notes": "note_id"})
    recorder.register(session.events)
    dynamodb = session.client("dynamodb")
    update = {"UpdateExpression": "SET a = :a", "ExpressionAttributeValues": {":a": {"S": "x"}}}
    items: list[Any] = [
        {"Update": {"TableName": "ledger", "Key": {"message_id": {"S": "m1"}}, **update}},
        {"Put": {"TableName": "notes", "Item": {"note_id": {"S": "run#orders"}}}},
    ]
    stubber = Stubber(dynamodb)
    stubber.add_response("transact_write_items", {}, {"TransactItems": items})
    stubber.activate()
    recorder.function = "drain_orders"
    try:
        dynamodb.transact_write_items(TransactItems=items)
    finally:
        recorder.function = None
    assert [(c.action, c.resource, c.leading_keys) for c in recorder.calls] == [
        ("dynamodb:UpdateItem", "arn:aws:dynamodb:us-east-1:123456789012:table/ledger", None),
        ("dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:123456789012:table/notes", ("run#orders",)),
    ]
    ledger_only = {
        "Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:UpdateItem"], "Resource": [recorder.calls[0].resource]}
        ]
    }
    assert [allows(ledger_only, c.action, c.resource, c.leading_keys) for c in recorder.calls] == [
        True,
        False,
    ]


BUCKET_ARN = "arn:aws:s3:::archive"
LIST_DELIVERED = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [BUCKET_ARN],
            "Condition": {"StringLike": {"s3:prefix": ["delivered/*"]}},
        }
    ]
}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("delivered/orders/2026/12/04/10/", True),
        ("delivered/", True),
        ("responses/", False),  # the response archive is not a replay's to list
        ("", False),  # the whole bucket
        (None, False),  # not known
    ],
)
def test_an_s3_listing_is_allowed_only_under_the_prefix_its_condition_names(
    prefix: str | None, expected: bool
) -> None:
    assert allows(LIST_DELIVERED, "s3:ListBucket", BUCKET_ARN, None, prefix) is expected


def test_an_s3_listing_is_recorded_as_list_bucket_on_the_bucket_with_its_prefix() -> None:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
    recorder = CallRecorder()
    recorder.register(session.events)
    s3 = session.client("s3")
    params = {"Bucket": "archive", "Prefix": "delivered/orders/"}
    stubber = Stubber(s3)
    stubber.add_response("list_objects_v2", {"IsTruncated": False}, params)
    stubber.activate()
    recorder.function = "jobs"
    try:
        s3.list_objects_v2(**params)
    finally:
        recorder.function = None
    assert [(c.action, c.resource, c.prefix) for c in recorder.calls] == [
        ("s3:ListBucket", BUCKET_ARN, "delivered/orders/")
    ]
