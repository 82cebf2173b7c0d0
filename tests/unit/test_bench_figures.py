"""The bench's arithmetic: requests per message by API, dollars per million messages (DynamoDB batch
calls billed per item, SecureString reads billed a KMS request), and the CPU reading of a process."""

from __future__ import annotations

import os
import time

import pytest

from bench.__main__ import PRICE, batch_items, cost_per_million, cpu_seconds, per_message, requests_only


def test_requests_are_grouped_by_api_per_delivered_message() -> None:
    counted = {
        "sqs:SendMessageBatch": 10,
        "sqs:ReceiveMessage": 12,
        "sqs:DeleteMessageBatch": 10,
        "sqs:ChangeMessageVisibilityBatch": 2,
        "ssm:GetParameter": 1,
        "dynamodb:PutItem": 100,
        "dynamodb:UpdateItem": 2,
        "dynamodb:GetItem": 4,
        "dynamodb:BatchGetItem": 12,
        "dynamodb:BatchWriteItem": 10,
        "dynamodb:BatchWriteItem/items": 100,
    }
    figures = per_message(counted, 100)
    assert figures["SendMessageBatch"] == 0.1
    assert figures["ReceiveMessage"] == 0.12
    assert figures["ChangeMessageVisibility"] == 0.02
    assert figures["SSM"] == 0.01
    assert figures["DynamoDB"] == 1.28  # requests, not the items they carry


def test_cost_counts_each_priced_request_and_lambda_time() -> None:
    counted = {
        "sqs:ReceiveMessage": 1000,
        "sqs:DeleteMessage": 1000,
        "dynamodb:UpdateItem": 2000,
        "dynamodb:GetItem": 1000,
    }
    cost = cost_per_million(counted, delivered=1000, lambda_seconds=10.0, invocations=1000)
    expected_per_1000 = (
        2000 * PRICE["sqs"]
        + 2000 * PRICE["ddb_write"]
        + 1000 * PRICE["ddb_read"]
        + 10.0 * 0.125 * PRICE["gb_s"]
        + 1000 * PRICE["lambda_request"]
    )
    assert cost == pytest.approx(round(expected_per_1000 * 1000, 2))


def test_batch_calls_are_billed_per_item_and_secure_string_reads_per_kms_request() -> None:
    counted = {
        "dynamodb:BatchGetItem": 10,
        "dynamodb:BatchGetItem/items": 1000,
        "dynamodb:BatchWriteItem": 40,
        "dynamodb:BatchWriteItem/items": 1000,
        "ssm:GetParameter": 1000,
    }
    cost = cost_per_million(counted, delivered=1000, lambda_seconds=0.0, invocations=0)
    expected_per_1000 = 1000 * PRICE["ddb_read"] + 1000 * PRICE["ddb_write"] + 1000 * PRICE["kms_request"]
    assert cost == pytest.approx(round(expected_per_1000 * 1000, 2))
    assert PRICE["kms_request"] == pytest.approx(0.03 / 10_000)


def test_batch_items_counts_keys_and_write_requests() -> None:
    assert batch_items({"RequestItems": {"t": {"Keys": [{}, {}, {}], "ConsistentRead": True}}}) == 3
    assert batch_items({"RequestItems": {"t": [{"PutRequest": {}}] * 25}}) == 25
    assert batch_items({}) == 0


def test_requests_only_drops_item_counts() -> None:
    assert requests_only({"dynamodb:BatchGetItem": 2, "dynamodb:BatchGetItem/items": 150}) == {
        "dynamodb:BatchGetItem": 2
    }


def test_cpu_seconds_of_a_process_grows_with_its_work() -> None:
    before = cpu_seconds(os.getpid())
    assert before is not None
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    after = cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.1
    assert cpu_seconds(2**22 + 12345) is None  # no such process
