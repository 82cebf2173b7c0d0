"""The ingest handler through `chalice.test.Client`, fed Lambda-shaped events built from records
read off moto's DynamoDB stream, sending to moto's SQS FIFO queue over HTTP."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from chalice.test import Client

from chalicelib import wiring
from chalicelib.records import message_id_for
from tests.integration.conftest import TABLE, Stack


def bodies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"], parse_float=Decimal) for m in messages]


def test_batch_larger_than_ten_records_is_queued_in_stream_order(stack: Stack) -> None:
    stack.put_items(
        [stack.item(f"p{i % 3}", f"{i:03}", n={"N": "12345678901234567890.000000001"}) for i in range(25)]
    )
    event = stack.stream_event()
    assert len(event["Records"]) == 25

    report = stack.ingest(event)

    assert report == {
        "records": 25,
        "enqueued": 25,
        "unrouted": 0,
        "dead_lettered": 0,
        "batchItemFailures": [],
    }
    queued = stack.take_messages()
    assert len(queued) == 25
    by_group: dict[str, list[str]] = {}
    for message in queued:
        body = json.loads(message["Body"], parse_float=Decimal)
        by_group.setdefault(message["Attributes"]["MessageGroupId"], []).append(body["keys"]["sk"])
        assert body["item"]["n"] == Decimal("12345678901234567890.000000001")
        assert message["Attributes"]["MessageDeduplicationId"] == body["message_id"]
    assert sorted(by_group) == [
        'trickle-local-items#"p0"',
        'trickle-local-items#"p1"',
        'trickle-local-items#"p2"',
    ]
    for group, sks in by_group.items():
        pk = int(group[-2])
        assert sks == [f"{i:03}" for i in range(25) if i % 3 == pk]


def test_envelope_carries_source_keys_and_stable_id(stack: Stack) -> None:
    stack.put_items([stack.item("a", "1", blob={"B": b"\x00\xff"}, tags={"SS": ["b", "a"]})])
    record = stack.stream_event()["Records"][0]
    stack.ingest({"Records": [record]})

    (body,) = bodies(stack.take_messages())
    assert body["message_id"] == message_id_for("trickle-local-items", record["eventID"], "orders")
    assert body["event_name"] == "INSERT"
    assert body["keys"] == {"pk": "a", "sk": "1"}
    assert body["item"] == {"pk": "a", "sk": "1", "blob": "AP8=", "tags": ["a", "b"]}
    assert body["source"]["table"] == "trickle-local-items"
    assert body["source"]["event_id"] == record["eventID"]
    assert body["source"]["sequence_number"] == record["dynamodb"]["SequenceNumber"]
    assert body["source"]["approximate_creation_time"].endswith("Z")


def test_lambda_retry_of_the_same_batch_enqueues_nothing_twice(stack: Stack) -> None:
    stack.put_items([stack.item("a", str(i)) for i in range(12)])
    event = stack.stream_event()

    stack.ingest(event)
    stack.ingest(event)

    assert stack.queue_depth() == 12


def test_events_no_route_takes_are_counted_unrouted(stack: Stack) -> None:
    stack.put_items([stack.item("a", "1")])
    stack.put_items([stack.item("a", "1", v={"N": "2"})])
    stack.aws["dynamodb"].delete_item(
        TableName="trickle-local-items", Key={"pk": {"S": "a"}, "sk": {"S": "1"}}
    )
    event = stack.stream_event()
    assert [r["eventName"] for r in event["Records"]] == ["INSERT", "MODIFY", "REMOVE"]

    assert json.loads(stack.http("GET", "/status").body)["unrouted"] == {
        "handling": "count",
        "count": 0,
        "since": None,
        "last_batch": None,
    }

    report = stack.ingest(event)
    stack.ingest({"Records": event["Records"][1:2]})  # another batch adds to the count

    assert report == {"records": 3, "enqueued": 1, "unrouted": 2, "dead_lettered": 0, "batchItemFailures": []}
    unrouted = json.loads(stack.http("GET", "/status").body)["unrouted"]
    assert (unrouted["handling"], unrouted["count"]) == ("count", 3)
    assert unrouted["since"] <= unrouted["last_batch"]["at"]
    assert (unrouted["last_batch"]["records"], unrouted["last_batch"]["unrouted"]) == (1, 1)
    assert stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL") == []


def test_with_dead_letter_the_events_no_route_takes_are_dead_lettered_with_a_reason(
    stack_factory: Any,
) -> None:
    stack = stack_factory(TRICKLE_UNROUTED="dead_letter:crm")
    stack.put_items([stack.item("a", "1")])
    stack.put_items([stack.item("a", "1", v={"N": "2"})])

    report = stack.ingest(stack.stream_event())

    assert report == {"records": 2, "enqueued": 1, "unrouted": 1, "dead_lettered": 1, "batchItemFailures": []}
    (dead,) = stack.take_messages("TRICKLE_DEST_CRM_DLQ_URL")
    assert dead["MessageAttributes"]["trickle-reason"]["StringValue"] == "no route takes this MODIFY record"
    (listed,) = json.loads(stack.http("GET", "/dead-letters?destination=crm").body)["dead_letters"]
    assert listed["message_id"] == json.loads(dead["Body"])["message_id"]
    assert (listed["reason"], listed["redrivable"]) == ("no route takes this MODIFY record", False)
    status = json.loads(stack.http("GET", "/status").body)["unrouted"]
    assert (status["handling"], status["count"]) == ("dead_letter:crm", 1)


def test_a_route_that_takes_every_event_relays_them_in_order(stack_factory: Any, tmp_path: Path) -> None:
    routes = tmp_path / "every-event.toml"
    routes.write_text(
        '[destinations.orders]\n[destinations.crm]\n[[routes]]\nname = "all"\n'
        'events = ["INSERT", "MODIFY", "REMOVE"]\ndestinations = ["orders", "crm"]\n'
    )
    stack = stack_factory(TRICKLE_ROUTES_FILE=str(routes))
    stack.put_items([stack.item("a", "1"), stack.item("a", "1", v={"N": "2"})])
    stack.aws["dynamodb"].delete_item(
        TableName="trickle-local-items", Key={"pk": {"S": "a"}, "sk": {"S": "1"}}
    )

    stack.ingest(stack.stream_event())

    for queue in ("TRICKLE_DEST_ORDERS_QUEUE_URL", "TRICKLE_DEST_CRM_QUEUE_URL"):
        assert [b["event_name"] for b in bodies(stack.take_messages(queue))] == ["INSERT", "MODIFY", "REMOVE"]


def test_oversize_and_undecodable_records_go_to_the_dead_letter_queue_with_a_reason(
    stack_factory: Any,
) -> None:
    stack = stack_factory(TRICKLE_MAX_MESSAGE_BYTES="65536")
    stack.put_items(
        [
            stack.item("a", "1"),
            stack.item("a", "2", big={"S": "x" * 80_000}),
            stack.item("a", "3"),
            stack.item("a", "4"),
        ]
    )
    event = stack.stream_event()
    event["Records"][2]["dynamodb"]["NewImage"]["bad"] = {"N": "not-a-number"}

    report = stack.ingest(event)

    # the undecodable record cannot be filtered: it is dead-lettered for both destinations taking INSERTs
    assert report == {"records": 4, "enqueued": 2, "unrouted": 0, "dead_lettered": 3, "batchItemFailures": []}
    assert [b["keys"]["sk"] for b in bodies(stack.take_messages())] == ["1", "4"]
    dead = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    reasons = {
        json.loads(m["Body"])["keys"]["sk"]: m["MessageAttributes"]["trickle-reason"]["StringValue"]
        for m in dead
    }
    assert set(reasons) == {"2", "3"}
    assert "exceeds the queue limit of 65536" in reasons["2"]
    assert reasons["3"]
    (crm,) = stack.take_messages("TRICKLE_DEST_CRM_DLQ_URL")
    assert crm["MessageAttributes"]["trickle-reason"]["StringValue"] == reasons["3"]
    listed = json.loads(stack.http("GET", "/dead-letters?destination=orders").body)["dead_letters"]
    assert sorted(d["message_id"] for d in listed) == sorted(
        json.loads(m["Body"])["message_id"] for m in dead
    )
    assert all(d["redrivable"] is False and d["reason"] for d in listed)


def test_records_strict_json_cannot_carry_are_dead_lettered_and_the_batch_goes_on(stack: Stack) -> None:
    """Values a real table cannot hold but an event can: the batch is never crashed by them."""
    stack.put_items([stack.item("a", str(i)) for i in range(5)])
    event = stack.stream_event()
    deep: dict[str, Any] = {"N": "1"}
    for _ in range(5000):
        deep = {"L": [deep]}
    hostile = [{"S": "\ud800"}, {"N": "NaN"}, deep, {"S": "\uffff"}]
    for record, value in zip(event["Records"][1:], hostile, strict=True):
        record["dynamodb"]["NewImage"]["odd"] = value

    report = stack.ingest(event)

    # undecodable records cannot be filtered: each is dead-lettered for both destinations taking INSERTs
    assert (report["enqueued"], report["dead_lettered"]) == (2, 6)
    queued = bodies(stack.take_messages())
    assert [b["keys"]["sk"] for b in queued] == ["0", "4"]
    assert queued[1]["item"]["odd"] == "\uffff"
    reasons = sorted(
        d["reason"]
        for d in json.loads(stack.http("GET", "/dead-letters?destination=orders").body)["dead_letters"]
    )
    assert any("item.odd holds a lone UTF-16 surrogate" in r for r in reasons)
    assert any("item.odd: number NaN is not a finite DynamoDB number" in r for r in reasons)
    assert any("item.odd: an attribute is nested more than 32 levels deep" in r for r in reasons)


LARGEST = "9.9999999999999999999999999999999999999E+125"


def test_numbers_at_dynamodb_s_limits_are_delivered_exactly(stack: Stack) -> None:
    """The largest DynamoDB number comes off an AWS stream as 126 plain digits (38 significant): it is
    delivered, as are the other limits, never dead-lettered; the API gets each number exactly as the
    table stores it, integers as JSON integers."""
    numbers = {
        "largest": LARGEST,
        "most-negative": "-" + LARGEST,
        "largest-plain": "9" * 38 + "0" * 88,
        "trailing-zero": "123456789012345678901234567890123456780",
        "smallest": "1E-130",
        "smallest-negative": "-1E-130",
    }
    stack.put_items([stack.item("n", name, n={"N": text}) for name, text in numbers.items()])

    ingested = stack.ingest(stack.stream_event())
    drained = stack.drain()

    assert (ingested["enqueued"], ingested["dead_lettered"], drained["delivered"]) == (6, 0, 6)
    applied = (json.loads(r.body, parse_float=Decimal) for r in stack.api.applied())
    sent = {b["keys"]["sk"]: b["item"]["n"] for b in applied}
    for name in numbers:
        stored = stack.aws["dynamodb"].get_item(TableName=TABLE, Key={"pk": {"S": "n"}, "sk": {"S": name}})
        exact = Decimal(stored["Item"]["n"]["N"])
        assert sent[name] == exact, name
        assert type(sent[name]) is (int if exact == exact.to_integral_value() else Decimal), name


class DropEntries:
    """Makes SendMessageBatch report chosen entries as failed without sending them (as SQS may under
    throttling), for the first `times` calls that carry them."""

    def __init__(self, client: BaseClient, body_marker: str, times: int) -> None:
        self.marker = body_marker
        self.times = times
        self.dropped: list[str] = []
        self.sent_ids: list[list[str]] = []
        self._pending: list[dict[str, Any]] = []
        client.meta.events.register("provide-client-params.sqs.SendMessageBatch", self.before)
        client.meta.events.register("after-call.sqs.SendMessageBatch", self.after)

    def before(self, params: dict[str, Any], **_: Any) -> None:
        self._pending = []
        if self.times > 0 and any(self.marker in e["MessageBody"] for e in params["Entries"]):
            self.times -= 1
            self._pending = [e for e in params["Entries"] if self.marker in e["MessageBody"]]
            params["Entries"] = [e for e in params["Entries"] if self.marker not in e["MessageBody"]]
            if not params["Entries"]:  # SQS would fail the whole call (after botocore's retries)
                self.dropped += [e["Id"] for e in self._pending]
                self.sent_ids.append([])
                raise ClientError(
                    {"Error": {"Code": "InternalError", "Message": "injected"}}, "SendMessageBatch"
                )
        self.sent_ids.append([e["Id"] for e in params["Entries"]])

    def after(self, parsed: dict[str, Any], **_: Any) -> None:
        failed = [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for e in self._pending
        ]
        self.dropped += [e["Id"] for e in self._pending]
        parsed.setdefault("Failed", []).extend(failed)


def test_partial_batch_failure_retries_only_the_failed_entries(stack: Stack) -> None:
    stack.put_items([stack.item("a", f"{i:02}", tag={"S": "flaky" if i == 3 else "ok"}) for i in range(6)])
    event = stack.stream_event()
    wiring.reset()
    dropper = DropEntries(wiring.client("sqs"), '"flaky"', times=1)

    report = stack.ingest(event)

    assert report["enqueued"] == 6
    assert dropper.dropped == ["3"]
    assert dropper.sent_ids == [["0", "1", "2", "4", "5"], ["3"]]
    assert stack.queue_depth() == 6


def test_persistent_send_failure_raises_so_lambda_retries_and_the_retry_adds_no_duplicates(
    stack: Stack, capfd: pytest.CaptureFixture[str]
) -> None:
    stack.put_items([stack.item("a", f"{i:02}", tag={"S": "flaky" if i == 12 else "ok"}) for i in range(15)])
    stack.put_items([stack.item("b", f"{i:02}") for i in range(10)])
    event = stack.stream_event()
    wiring.reset()
    # every attempt of the first ingest: its first call, and the retry of the failed entry (that call,
    # failing whole, is botocore's to retry, not Trickle's)
    DropEntries(wiring.client("sqs"), '"flaky"', times=2)

    with pytest.raises(RuntimeError, match="not queued"):
        stack.ingest(event)
    assert stack.queue_depth() == 14 + 5  # SQS accepted the rest of that call; nothing is sent after it
    assert "group order at risk" in capfd.readouterr().err

    stack.ingest(event)

    taken = bodies(stack.take_messages())
    assert sorted(b["keys"]["sk"] for b in taken if b["keys"]["pk"] == "b") == [f"{i:02}" for i in range(10)]
    sks = [b["keys"]["sk"] for b in taken if b["keys"]["pk"] == "a"]
    assert sorted(sks) == [f"{i:02}" for i in range(15)]
    assert sks[-1] == "12"  # the overtaken entry the warning named


def test_chalice_client_runs_the_decorated_handler(stack: Stack) -> None:
    assert isinstance(stack.client, Client)
    stack.put_items([stack.item("a", "1")])
    stack.ingest(stack.stream_event())
    assert stack.invocations == ["ingest"]
    assert stack.queue_depth() == 1


def test_with_partial_batch_responses_failed_records_are_reported_not_raised(stack_factory: Any) -> None:
    stack = stack_factory(TRICKLE_PARTIAL_BATCH_RESPONSE="true")
    stack.put_items([stack.item("a", f"{i:02}", tag={"S": "flaky" if i == 12 else "ok"}) for i in range(15)])
    event = stack.stream_event()
    wiring.reset()
    DropEntries(wiring.client("sqs"), '"flaky"', times=2)

    report = stack.ingest(event)

    sequence = {r["dynamodb"]["SequenceNumber"]: r for r in event["Records"]}
    failed = [f["itemIdentifier"] for f in report["batchItemFailures"]]
    assert failed  # Lambda retries from the lowest of these
    assert min(failed, key=int) == event["Records"][12]["dynamodb"]["SequenceNumber"]
    assert all(s in sequence for s in failed)
    assert report["enqueued"] == 14

    retry = {
        "Records": [r for r in event["Records"] if int(r["dynamodb"]["SequenceNumber"]) >= int(min(failed))]
    }
    assert stack.ingest(retry)["batchItemFailures"] == []
    sks = [b["keys"]["sk"] for b in bodies(stack.take_messages())]
    assert sorted(sks) == [f"{i:02}" for i in range(15)]
