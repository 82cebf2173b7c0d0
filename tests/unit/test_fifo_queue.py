"""SQS FIFO adapter against a hand-written fake client (chalicelib/fifo_queue.py)."""

from __future__ import annotations

import copy
import itertools
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib.batch_retry import full_jitter
from chalicelib.fifo_queue import MAX_BATCH_BYTES, FifoQueue, chunk_for_batch
from chalicelib.model import (
    MAX_BATCH_ENTRIES,
    MESSAGE_ID_ATTRIBUTE,
    OutboundMessage,
    ReceivedMessage,
    SendFailure,
)

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo"


def msg(
    name: str, body_bytes: int = 10, group: str = "g", attributes: Mapping[str, str] | None = None
) -> OutboundMessage:
    """A message whose size_bytes() is exactly `body_bytes` when it has no attributes."""
    return OutboundMessage(
        message_id=name,
        group_id=group,
        dedup_id=f"dedup-{name}",
        body=name[:body_bytes].ljust(body_bytes, "."),
        attributes={} if attributes is None else dict(attributes),
        sequence_number=name,
    )


def client_error(code: str = "ServiceUnavailable", operation: str = "SendMessageBatch") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "try later"}}, operation)


class FakeSqs:
    """Scripted SendMessageBatch plus receive/delete/change-visibility that record every call.

    `send_script` holds one step per call: an exception to raise, or the set of message ids
    (matched through the dedup id) whose entries fail on that call. Once the script runs out,
    every entry succeeds.
    """

    def __init__(self, send_script: Sequence[set[str] | Exception] = ()) -> None:
        self.send_script = list(send_script)
        self.send_calls: list[dict[str, Any]] = []
        self.receive_calls: list[dict[str, Any]] = []
        self.receive_responses: list[dict[str, Any]] = []
        self.batch_calls: list[tuple[str, dict[str, Any]]] = []
        self.batch_script: list[set[str] | Exception] = []

    def sent_ids(self, call: int) -> list[str]:
        return [e["MessageDeduplicationId"].removeprefix("dedup-") for e in self.send_calls[call]["Entries"]]

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.send_calls.append(copy.deepcopy(kwargs))
        step = self.send_script.pop(0) if self.send_script else set()
        if isinstance(step, Exception):
            raise step
        successful, failed = [], []
        for entry in kwargs["Entries"]:
            if entry["MessageDeduplicationId"].removeprefix("dedup-") in step:
                failed.append(
                    {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "boom"}
                )
            else:
                successful.append(
                    {"Id": entry["Id"], "MessageId": f"sqs-{entry['Id']}", "MD5OfMessageBody": "x"}
                )
        response: dict[str, Any] = {"Successful": successful}
        if failed:
            response["Failed"] = failed
        return response

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.receive_calls.append(kwargs)
        return self.receive_responses.pop(0) if self.receive_responses else {}

    def _batch(self, operation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.batch_calls.append((operation, copy.deepcopy(kwargs)))
        step = self.batch_script.pop(0) if self.batch_script else set()
        if isinstance(step, Exception):
            raise step
        ok = [{"Id": e["Id"]} for e in kwargs["Entries"] if e["ReceiptHandle"] not in step]
        failed = [
            {"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "gone"}
            for e in kwargs["Entries"]
            if e["ReceiptHandle"] in step
        ]
        return {"Successful": ok, "Failed": failed}

    def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        return self._batch("delete", kwargs)

    def change_message_visibility_batch(self, **kwargs: Any) -> dict[str, Any]:
        return self._batch("visibility", kwargs)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def queue(fake: FakeSqs, attempts: int = 4) -> tuple[FifoQueue, Sleeps]:
    sleeps = Sleeps()
    return FifoQueue(fake, URL, attempts=attempts, sleep=sleeps), sleeps


# --- chunk_for_batch ---------------------------------------------------------------------------------


def assert_valid_chunks(messages: list[OutboundMessage], chunks: list[list[OutboundMessage]]) -> None:
    assert [m for c in chunks for m in c] == messages
    for chunk in chunks:
        assert 1 <= len(chunk) <= MAX_BATCH_ENTRIES
        if len(chunk) > 1:
            assert sum(m.size_bytes() for m in chunk) <= MAX_BATCH_BYTES


def test_limits_match_sqs() -> None:
    assert MAX_BATCH_ENTRIES == 10
    assert MAX_BATCH_BYTES == 1024 * 1024


def test_no_messages_no_chunks() -> None:
    assert list(chunk_for_batch([])) == []


@pytest.mark.parametrize(("count", "sizes"), [(1, [1]), (10, [10]), (11, [10, 1]), (25, [10, 10, 5])])
def test_at_most_ten_entries(count: int, sizes: list[int]) -> None:
    messages = [msg(f"m{i}") for i in range(count)]
    chunks = list(chunk_for_batch(messages))
    assert [len(c) for c in chunks] == sizes
    assert_valid_chunks(messages, chunks)


def test_bytes_limit_splits_before_ten() -> None:
    messages = [msg(f"m{i}", 400_000) for i in range(5)]
    chunks = list(chunk_for_batch(messages))
    assert [[m.message_id for m in c] for c in chunks] == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert_valid_chunks(messages, chunks)


def test_exactly_one_mebibyte_fits_in_one_chunk() -> None:
    half = MAX_BATCH_BYTES // 2
    messages = [msg("a", half), msg("b", half), msg("c", 1)]
    chunks = list(chunk_for_batch(messages))
    assert [len(c) for c in chunks] == [2, 1]


def test_attributes_count_towards_the_byte_limit() -> None:
    attributes = {"k": "v" * 100}
    size = MAX_BATCH_BYTES // 2 - 50
    plain = [msg("a", size), msg("b", size)]
    with_attributes = [msg("a", size, attributes=attributes), msg("b", size, attributes=attributes)]
    assert len(list(chunk_for_batch(plain))) == 1
    assert len(list(chunk_for_batch(with_attributes))) == 2


def test_one_message_of_a_mebibyte_travels_alone() -> None:
    messages = [msg("small", 10), msg("whole", MAX_BATCH_BYTES), msg("tail", 10)]
    chunks = list(chunk_for_batch(messages))
    assert [[m.message_id for m in c] for c in chunks] == [["small"], ["whole"], ["tail"]]


def test_random_mixes_respect_both_limits() -> None:
    rng = random.Random(20260101)
    for _ in range(30):
        sizes = [rng.choice([1, 100, 50_000, 200_000, 300_000, 700_000]) for _ in range(rng.randint(1, 40))]
        messages = [msg(f"m{i}", size) for i, size in enumerate(sizes)]
        chunks = list(chunk_for_batch(messages))
        assert_valid_chunks(messages, chunks)
        # Greedy: a chunk is only closed when the next message would not fit in it.
        for chunk, following in itertools.pairwise(chunks):
            nxt = following[0]
            full = len(chunk) == MAX_BATCH_ENTRIES
            assert full or sum(m.size_bytes() for m in chunk) + nxt.size_bytes() > MAX_BATCH_BYTES


# --- backoff -----------------------------------------------------------------------------------------


def test_full_jitter_delays_stay_under_the_capped_exponential() -> None:
    for _ in range(50):
        for attempt in range(8):
            assert 0 <= full_jitter(attempt, base_s=0.05, cap_s=2.0) <= min(2.0, 0.05 * 2**attempt)


# --- send --------------------------------------------------------------------------------------------


def test_send_success_in_one_call_per_chunk() -> None:
    fake = FakeSqs()
    q, sleeps = queue(fake)
    messages = [msg(f"m{i}", group=f"g{i % 3}") for i in range(12)]
    assert q.send(messages) == []
    assert len(fake.send_calls) == 2
    assert fake.sent_ids(0) == [f"m{i}" for i in range(10)]
    assert fake.sent_ids(1) == ["m10", "m11"]
    assert sleeps.delays == []


def test_send_nothing_calls_nothing() -> None:
    fake = FakeSqs()
    q, _ = queue(fake)
    assert q.send([]) == []
    assert fake.send_calls == []


def test_entries_carry_group_dedup_body_and_attributes() -> None:
    fake = FakeSqs()
    q, _ = queue(fake)
    message = OutboundMessage(
        message_id="id-1",
        group_id='items#"a"',
        dedup_id="dedup-id-1",
        body='{"x":1}',
        attributes={MESSAGE_ID_ATTRIBUTE: "id-1", "trickle-event": "INSERT"},
        sequence_number="1",
    )
    q.send([message])
    call = fake.send_calls[0]
    assert call["QueueUrl"] == URL
    assert call["Entries"] == [
        {
            "Id": "0",
            "MessageBody": '{"x":1}',
            "MessageGroupId": 'items#"a"',
            "MessageDeduplicationId": "dedup-id-1",
            "MessageAttributes": {
                MESSAGE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": "id-1"},
                "trickle-event": {"DataType": "String", "StringValue": "INSERT"},
            },
        }
    ]


def test_partial_failure_resends_only_failed_entries() -> None:
    fake = FakeSqs([{"m1", "m3"}, {"m3"}, set()])
    q, sleeps = queue(fake, attempts=4)
    messages = [msg(f"m{i}") for i in range(5)]
    assert q.send(messages) == []
    assert [fake.sent_ids(i) for i in range(3)] == [["m0", "m1", "m2", "m3", "m4"], ["m1", "m3"], ["m3"]]
    # Retried entries keep their batch ids.
    assert [e["Id"] for e in fake.send_calls[1]["Entries"]] == ["1", "3"]
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize("error", [client_error(), EndpointConnectionError(endpoint_url=URL)])
def test_a_call_that_failed_whole_is_not_retried_again_on_top_of_botocore(error: Exception) -> None:
    """botocore's standard mode retried it already: its entries fail at once, with the reason."""
    fake = FakeSqs([error, set()])
    q, sleeps = queue(fake, attempts=3)
    messages = [msg(f"m{i}") for i in range(3)]

    failures = q.send(messages)

    assert len(fake.send_calls) == 1 and sleeps.delays == []
    assert [f.message.message_id for f in failures] == ["m0", "m1", "m2"]
    assert all(f.reason.startswith("SendMessageBatch failed: ") for f in failures)


def test_persistent_failure_stops_later_chunks() -> None:
    fake = FakeSqs([{"m2"}] * 10)
    q, sleeps = queue(fake, attempts=3)
    messages = [msg(f"m{i}") for i in range(25)]
    failures = q.send(messages)
    assert len(fake.send_calls) == 3
    assert fake.sent_ids(0) == [f"m{i}" for i in range(10)]
    assert fake.sent_ids(1) == ["m2"]
    assert fake.sent_ids(2) == ["m2"]
    assert len(sleeps.delays) == 2
    assert all(isinstance(f, SendFailure) for f in failures)
    assert [f.message.message_id for f in failures] == ["m2"] + [f"m{i}" for i in range(10, 25)]
    assert failures[0].reason == "InternalError: boom"
    assert all(f.reason == "not sent: an earlier entry failed" for f in failures[1:])


def test_persistent_call_error_reports_every_entry() -> None:
    fake = FakeSqs([client_error("AccessDenied")] * 10)
    q, sleeps = queue(fake, attempts=2)
    messages = [msg(f"m{i}") for i in range(12)]
    failures = q.send(messages)
    assert len(fake.send_calls) == 1
    assert sleeps.delays == []
    assert [f.message.message_id for f in failures] == [m.message_id for m in messages]
    assert all("AccessDenied" in f.reason for f in failures[:10])
    assert all(f.reason == "not sent: an earlier entry failed" for f in failures[10:])


def test_failure_in_a_later_chunk_keeps_earlier_chunks_sent() -> None:
    fake = FakeSqs([set(), {"m12"}, {"m12"}])
    q, _ = queue(fake, attempts=2)
    messages = [msg(f"m{i}") for i in range(25)]
    failures = q.send(messages)
    assert fake.sent_ids(0) == [f"m{i}" for i in range(10)]
    assert fake.sent_ids(1) == [f"m{i}" for i in range(10, 20)]
    assert fake.sent_ids(2) == ["m12"]
    assert len(fake.send_calls) == 3
    assert [f.message.message_id for f in failures] == ["m12"] + [f"m{i}" for i in range(20, 25)]


def test_single_attempt_never_sleeps() -> None:
    fake = FakeSqs([{"m0"}])
    q, sleeps = queue(fake, attempts=1)
    failures = q.send([msg("m0"), msg("m1")])
    assert len(fake.send_calls) == 1
    assert sleeps.delays == []
    assert [f.message.message_id for f in failures] == ["m0"]


def test_unexpected_exceptions_are_not_swallowed() -> None:
    fake = FakeSqs([RuntimeError("bug")])
    q, _ = queue(fake)
    with pytest.raises(RuntimeError, match="bug"):
        q.send([msg("m0")])


# --- receive / delete / change_visibility ------------------------------------------------------------


def sqs_message(n: int, group: str = "g", trickle_id: str | None = None, count: str = "1") -> dict[str, Any]:
    raw: dict[str, Any] = {
        "MessageId": f"sqs-{n}",
        "ReceiptHandle": f"rh-{n}",
        "Body": f'{{"n":{n}}}',
        "Attributes": {"MessageGroupId": group, "ApproximateReceiveCount": count, "SequenceNumber": str(n)},
    }
    if trickle_id is not None:
        raw["MessageAttributes"] = {
            MESSAGE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": trickle_id},
            "trickle-event": {"DataType": "String", "StringValue": "INSERT"},
        }
    return raw


def received(n: int, group: str = "g") -> ReceivedMessage:
    return ReceivedMessage(f"id-{n}", group, f"rh-{n}", "{}", 1)


def test_receive_parses_messages() -> None:
    fake = FakeSqs()
    fake.receive_responses = [
        {"Messages": [sqs_message(1, "ga", "trickle-1", "3"), sqs_message(2, "gb", None)]}
    ]
    q, _ = queue(fake)
    got = q.receive(5, visibility_timeout_s=120, wait_s=2)
    assert fake.receive_calls == [
        {
            "QueueUrl": URL,
            "MaxNumberOfMessages": 5,
            "VisibilityTimeout": 120,
            "WaitTimeSeconds": 2,
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        }
    ]
    assert got == [
        ReceivedMessage(
            message_id="trickle-1",
            group_id="ga",
            receipt_handle="rh-1",
            body='{"n":1}',
            receive_count=3,
            attributes={MESSAGE_ID_ATTRIBUTE: "trickle-1", "trickle-event": "INSERT"},
            copy_id="sqs-1",
        ),
        ReceivedMessage(
            message_id="sqs-2",
            group_id="gb",
            receipt_handle="rh-2",
            body='{"n":2}',
            receive_count=1,
            attributes={},
            copy_id="sqs-2",
        ),
    ]


@pytest.mark.parametrize(("asked", "sent"), [(0, 1), (-3, 1), (1, 1), (10, 10), (500, 10)])
def test_receive_clamps_batch_size(asked: int, sent: int) -> None:
    fake = FakeSqs()
    q, _ = queue(fake)
    assert q.receive(asked, visibility_timeout_s=30) == []
    assert fake.receive_calls[0]["MaxNumberOfMessages"] == sent
    assert fake.receive_calls[0]["WaitTimeSeconds"] == 0


def test_delete_in_batches_of_ten_and_reports_failures() -> None:
    fake = FakeSqs()
    fake.batch_script = [{"rh-3"}, {"rh-12", "rh-19"}, set()]
    q, _ = queue(fake)
    messages = [received(i) for i in range(23)]
    failed = q.delete(messages)
    assert [len(call["Entries"]) for _, call in fake.batch_calls] == [10, 10, 3]
    assert all(op == "delete" and call["QueueUrl"] == URL for op, call in fake.batch_calls)
    assert fake.batch_calls[1][1]["Entries"][2] == {"Id": "2", "ReceiptHandle": "rh-12"}
    assert [e["ReceiptHandle"] for _, c in fake.batch_calls for e in c["Entries"]] == [
        f"rh-{i}" for i in range(23)
    ]
    assert [m.message_id for m in failed] == ["id-3", "id-12", "id-19"]


def test_delete_call_error_fails_that_batch_only() -> None:
    fake = FakeSqs()
    fake.batch_script = [set(), client_error("InternalError", "DeleteMessageBatch"), set()]
    q, _ = queue(fake)
    failed = q.delete([received(i) for i in range(25)])
    assert len(fake.batch_calls) == 3
    assert [m.message_id for m in failed] == [f"id-{i}" for i in range(10, 20)]


def test_delete_nothing_calls_nothing() -> None:
    fake = FakeSqs()
    q, _ = queue(fake)
    assert q.delete([]) == []
    assert q.change_visibility([]) == []
    assert fake.batch_calls == []


def test_change_visibility_sends_each_timeout() -> None:
    fake = FakeSqs()
    fake.batch_script = [{"rh-1"}, set()]
    q, _ = queue(fake)
    changes = [(received(i), 30 if i == 0 else 0) for i in range(12)]
    failed = q.change_visibility(changes)
    assert [op for op, _ in fake.batch_calls] == ["visibility", "visibility"]
    first = fake.batch_calls[0][1]["Entries"]
    assert first[0] == {"Id": "0", "ReceiptHandle": "rh-0", "VisibilityTimeout": 30}
    assert first[1] == {"Id": "1", "ReceiptHandle": "rh-1", "VisibilityTimeout": 0}
    assert [e["ReceiptHandle"] for e in fake.batch_calls[1][1]["Entries"]] == ["rh-10", "rh-11"]
    assert [m.message_id for m in failed] == ["id-1"]


def test_change_visibility_call_error_returns_the_batch() -> None:
    fake = FakeSqs()
    fake.batch_script = [EndpointConnectionError(endpoint_url=URL)]
    q, _ = queue(fake)
    changes = [(received(i), 5) for i in range(3)]
    assert [m.message_id for m in q.change_visibility(changes)] == ["id-0", "id-1", "id-2"]


# --- order warning -----------------------------------------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def queue_log() -> Iterator[Captured]:
    """Records from the adapter's logger, whatever propagation the app's logging setup chose."""
    logger = logging.getLogger("chalicelib.fifo_queue")
    handler = Captured()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def overtake_warnings(log: Captured) -> list[logging.LogRecord]:
    return [r for r in log.records if "group order at risk" in r.getMessage()]


def test_warns_when_a_later_entry_of_the_group_overtakes_a_failed_one(queue_log: Captured) -> None:
    fake = FakeSqs([{"a1"}])
    q, _ = queue(fake)
    messages = [msg("a1", group="A"), msg("b1", group="B"), msg("a2", group="A"), msg("a3", group="A")]
    assert q.send(messages) == []
    warnings = overtake_warnings(queue_log)
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert warnings[0].__dict__["message_id"] == "a1"
    assert warnings[0].__dict__["group_id"] == "A"
    assert warnings[0].__dict__["overtaken_by"] == ["a2", "a3"]


@pytest.mark.parametrize(
    "script",
    [
        pytest.param([{"a2"}], id="last-of-group-failed"),
        pytest.param([{"a1", "a2"}], id="all-of-group-failed"),
        pytest.param([client_error()], id="whole-call-error"),
    ],
)
def test_no_order_warning_when_nothing_overtook(
    queue_log: Captured, script: list[set[str] | Exception]
) -> None:
    fake = FakeSqs(script)
    q, _ = queue(fake)
    q.send([msg("a1", group="A"), msg("b1", group="B"), msg("a2", group="A")])
    assert overtake_warnings(queue_log) == []
