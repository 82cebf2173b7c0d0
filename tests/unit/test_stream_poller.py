"""The stream poller: Lambda-shaped records, checkpoints, retries without skipping, shard following."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from trickle_local.stream_poller import StreamPoller, to_lambda_record

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"


def raw(seq: int) -> dict[str, Any]:
    return {
        "eventID": f"e{seq}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}, "b": {"B": b"\x00\x01"}},
            "SequenceNumber": f"{seq:021d}",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


class FakeStreams:
    """Shards hold record lists; a closed shard's iterator ends after its last record."""

    def __init__(self, shards: dict[str, tuple[str | None, list[int], bool]]) -> None:
        self.shards = shards
        self.iterator_requests: list[dict[str, Any]] = []

    def describe_stream(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "StreamDescription": {
                "Shards": [
                    {"ShardId": sid, **({"ParentShardId": parent} if parent else {})}
                    for sid, (parent, _, _) in self.shards.items()
                ]
            }
        }

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_requests.append(kwargs)
        _, seqs, _ = self.shards[kwargs["ShardId"]]
        if kwargs["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER":
            position = next(i for i, s in enumerate(seqs) if f"{s:021d}" == kwargs["SequenceNumber"]) + 1
        else:
            position = 0
        return {"ShardIterator": f"{kwargs['ShardId']}|{position}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803 (boto3 names)
        shard, position = ShardIterator.split("|")
        _, seqs, closed = self.shards[shard]
        start = int(position)
        chunk = seqs[start : start + Limit]
        end = start + len(chunk)
        response: dict[str, Any] = {"Records": [raw(s) for s in chunk]}
        if not (closed and end >= len(seqs)):
            response["NextShardIterator"] = f"{shard}|{end}"
        return response


class Handler:
    def __init__(self, fail_times: int = 0) -> None:
        self.fail_times = fail_times
        self.calls: list[list[int]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.calls.append([int(r["dynamodb"]["SequenceNumber"]) for r in event["Records"]])
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("handler failed")


def test_lambda_record_shape() -> None:
    record = to_lambda_record(raw(7), ARN)
    assert record["eventSourceARN"] == ARN
    assert record["eventSource"] == "aws:dynamodb"
    assert record["dynamodb"]["ApproximateCreationDateTime"] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert record["dynamodb"]["NewImage"]["b"] == {"B": base64.b64encode(b"\x00\x01").decode()}
    assert record["dynamodb"]["Keys"] == {"pk": {"S": "a"}}


def test_batches_respect_the_batch_size_and_keep_order() -> None:
    handler = Handler()
    poller = StreamPoller(FakeStreams({"s1": (None, list(range(1, 8)), False)}), ARN, handler, batch_size=3)
    for _ in range(4):
        poller.poll()
    assert handler.calls == [[1, 2, 3], [4, 5, 6], [7]]
    assert poller.shards["s1"].checkpoint == f"{7:021d}"


def test_a_failed_batch_is_retried_whole_and_nothing_after_it_is_skipped() -> None:
    handler = Handler(fail_times=2)
    poller = StreamPoller(FakeStreams({"s1": (None, [1, 2, 3, 4], False)}), ARN, handler, batch_size=2)
    for _ in range(5):
        poller.poll()
    assert handler.calls == [[1, 2], [1, 2], [1, 2], [3, 4]]
    assert poller.stats.failures == 2
    assert poller.stats.records == 4


def test_batching_window_holds_a_small_batch_until_it_elapses() -> None:
    now = [0.0]
    handler = Handler()
    poller = StreamPoller(
        FakeStreams({"s1": (None, [1, 2], False)}),
        ARN,
        handler,
        batch_size=10,
        window_s=5,
        clock=lambda: now[0],
    )
    poller.poll()
    assert handler.calls == []
    now[0] = 5.0
    poller.poll()
    assert handler.calls == [[1, 2]]


def test_child_shards_are_followed_after_their_parent_is_finished() -> None:
    streams = FakeStreams({"parent": (None, [1, 2, 3], True), "child": ("parent", [4, 5], False)})
    handler = Handler()
    poller = StreamPoller(streams, ARN, handler, batch_size=2)
    poller.poll()
    assert handler.calls == [[1, 2]]  # the child waits while the parent has records left
    for _ in range(3):
        poller.poll()
    assert handler.calls == [[1, 2], [3], [4, 5]]


def test_a_new_shard_appearing_later_is_discovered() -> None:
    streams = FakeStreams({"s1": (None, [1], True)})
    handler = Handler()
    poller = StreamPoller(streams, ARN, handler, batch_size=10)
    poller.poll()
    streams.shards["s2"] = ("s1", [2, 3], False)
    poller.poll()
    poller.poll()
    assert handler.calls == [[1], [2, 3]]


@pytest.mark.parametrize("position", ["TRIM_HORIZON", "LATEST"])
def test_the_starting_position_is_used_only_without_a_checkpoint(position: str) -> None:
    streams = FakeStreams({"s1": (None, [1], False)})
    poller = StreamPoller(streams, ARN, Handler(), starting_position=position)
    poller.poll()
    assert streams.iterator_requests[0]["ShardIteratorType"] == position
