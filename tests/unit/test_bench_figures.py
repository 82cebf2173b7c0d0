"""The bench's arithmetic: requests per message by API and dollars per million messages."""

from __future__ import annotations

import pytest

from bench.__main__ import PRICE, cost_per_million, per_message


def test_requests_are_grouped_by_api_per_delivered_message() -> None:
    counted = {
        "sqs:SendMessageBatch": 10,
        "sqs:ReceiveMessage": 12,
        "sqs:DeleteMessageBatch": 10,
        "sqs:ChangeMessageVisibilityBatch": 2,
        "ssm:GetParameter": 1,
        "dynamodb:PutItem": 100,
        "dynamodb:UpdateItem": 200,
        "dynamodb:GetItem": 4,
    }
    figures = per_message(counted, 100)
    assert figures["SendMessageBatch"] == 0.1
    assert figures["ReceiveMessage"] == 0.12
    assert figures["ChangeMessageVisibility"] == 0.02
    assert figures["SSM"] == 0.01
    assert figures["DynamoDB"] == 3.04


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
