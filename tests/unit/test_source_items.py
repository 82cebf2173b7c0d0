"""The source table as a drain reads backfilled items back (chalicelib/source_items.py), against
moto's in-process DynamoDB: consistent reads of 100 keys at most per call, each key once, keys left
unprocessed retried, and a table that does not answer answered as `SourceUnread`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.freshness import fingerprint, key_text
from chalicelib.model import SourceUnread
from chalicelib.source_items import SourceTable

TABLE = "items"


@pytest.fixture
def client() -> Iterator[Any]:
    """A table keyed like the example's (pk, sk), and one keyed by a binary."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        with mock_aws():
            dynamodb = boto3.client("dynamodb", region_name="us-east-1")
            dynamodb.create_table(
                TableName=TABLE,
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "N"},
                ],
            )
            dynamodb.create_table(
                TableName="blobs",
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "B"}],
            )
            yield dynamodb


def key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


class Calls:
    """Counts the client's calls, and leaves the first `unprocessed` BatchGetItem calls undone."""

    def __init__(self, client: Any, unprocessed: int = 0) -> None:
        self._client = client
        self.unprocessed = unprocessed
        self.requests: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 (boto's name)
        self.requests.append(RequestItems)
        if self.unprocessed:
            self.unprocessed -= 1
            return {"Responses": {TABLE: []}, "UnprocessedKeys": RequestItems}
        answer: dict[str, Any] = self._client.batch_get_item(RequestItems=RequestItems)
        return answer


def test_found_items_by_key_with_their_fingerprint_and_gone_ones_left_out(client: Any) -> None:
    item = key("a", 1) | {"name": {"S": "Ada"}, "tags": {"SS": ["y", "x"]}}
    client.put_item(TableName=TABLE, Item=item)
    calls = Calls(client)

    found = SourceTable(calls, TABLE).fingerprints([key_text(key("a", 1)), key_text(key("gone", 2))])

    assert found == {key_text(key("a", 1)): fingerprint(item)}
    ((request,),) = [list(r.values()) for r in calls.requests]
    assert request["ConsistentRead"] is True


def test_a_binary_key_is_read_with_bytes_and_found_by_its_text(client: Any) -> None:
    item = {"id": {"B": b"\x00\x01"}, "v": {"B": b"\xff"}}
    client.put_item(TableName="blobs", Item=item)

    found = SourceTable(client, "blobs").fingerprints([key_text({"id": {"B": "AAE="}})])

    assert found == {'{"id":{"B":"AAE="}}': fingerprint({"id": {"B": "AAE="}, "v": {"B": "/w=="}})}


def test_at_most_100_keys_per_call_each_once(client: Any) -> None:
    for n in range(230):
        client.put_item(TableName=TABLE, Item=key("p", n))
    calls = Calls(client)
    keys = [key_text(key("p", n)) for n in range(230)]

    found = SourceTable(calls, TABLE).fingerprints(keys + keys[:50])

    assert len(found) == 230
    assert [len(r[TABLE]["Keys"]) for r in calls.requests] == [100, 100, 30]


def test_unprocessed_keys_are_retried_within_the_read(client: Any) -> None:
    client.put_item(TableName=TABLE, Item=key("a", 1))
    calls = Calls(client, unprocessed=2)
    waits: list[float] = []

    found = SourceTable(calls, TABLE, sleep=waits.append).fingerprints([key_text(key("a", 1))])

    assert list(found) == [key_text(key("a", 1))] and len(calls.requests) == 3 and len(waits) == 2


def test_keys_still_unprocessed_or_a_failed_call_answer_unread(client: Any) -> None:
    calls = Calls(client, unprocessed=100)
    keys = [key_text(key("a", 1))]

    assert SourceTable(calls, TABLE, sleep=lambda _: None).fingerprints(keys) == SourceUnread(
        "DynamoDB left 1 reads of items unprocessed"
    )
    unread = SourceTable(client, "no-such-table").fingerprints(keys)
    assert isinstance(unread, SourceUnread) and "BatchGetItem on no-such-table failed" in unread.reason


def test_no_keys_no_call(client: Any) -> None:
    calls = Calls(client)
    assert SourceTable(calls, TABLE).fingerprints([]) == {} and calls.requests == []
