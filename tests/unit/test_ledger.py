"""The delivery ledger's reads, batch writes and conditional writes, and the verdict it gives a copy in hand,
against moto's in-process DynamoDB (chalicelib/ledger.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chalicelib.ledger import ITEM_INDEX, STATUS_INDEX, Ledger, LedgerUnavailableError, table_definition
from chalicelib.model import (
    Attempt,
    LedgerRecord,
    Settlement,
    Status,
    Verdict,
    delivered,
    iso_utc,
    settled,
    verdict,
)
from trickle_project.resources import ensure_ledger

TABLE = "trickle-test-ledger"
DESTINATION = "default"
TTL_S = 7 * 86_400
START = 1_767_225_600.25


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def aws_client() -> Iterator[Any]:
    """One mocked account and client for the module (dummy credentials, no real endpoint)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
            patch.delenv(name, raising=False)
        with mock_aws():
            yield boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def client(aws_client: Any) -> Iterator[Any]:
    """A fresh, empty ledger table for each test."""
    aws_client.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        **table_definition(),
    )
    yield aws_client
    aws_client.delete_table(TableName=TABLE)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(client: Any, clock: FakeClock) -> Ledger:
    return Ledger(client, TABLE, TTL_S, destination=DESTINATION, clock=clock)


def raw_item(client: Any, message_id: str) -> dict[str, Any]:
    item: dict[str, Any] = client.get_item(
        TableName=TABLE, Key={"message_id": {"S": message_id}}, ConsistentRead=True
    ).get("Item", {})
    return item


def seen(ledger: Ledger, message_id: str = "m1", copy_id: str = "copy-1") -> Verdict:
    """What a drain holding `copy_id` would be told, from the round's read."""
    return verdict(ledger.read([message_id]).get(message_id), copy_id)


def settle(ledger: Ledger, status: Status, code: int | None, error: str, **kwargs: Any) -> LedgerRecord:
    return ledger.settle(Settlement("m1", "g1", status, code, error, **kwargs))


def record_of(ledger: Ledger, message_id: str = "m1") -> LedgerRecord:
    record = ledger.get(message_id)
    assert record is not None
    return record


# --- record_queued --------------------------------------------------------------------------------


def test_record_queued_creates_the_record_once(ledger: Ledger, client: Any, clock: FakeClock) -> None:
    assert ledger.record_queued("m1", "g1") is True
    clock.advance(5)
    assert ledger.record_queued("m1", "g-other") is False
    record = record_of(ledger)
    assert record.status is Status.QUEUED
    assert record.group_id == "g1"
    assert record.attempts == 0
    assert record.updated_at == START  # the second call wrote nothing
    assert raw_item(client, "m1")["expires_at"] == {"N": str(int(START) + TTL_S)}


def test_record_queued_never_overwrites_a_delivered_record(ledger: Ledger) -> None:
    ledger.write([delivered(None, "m1", "g1", 200, START)])
    assert ledger.record_queued("m1", "g1") is False
    record = record_of(ledger)
    assert record.status is Status.DELIVERED
    assert record.attempts == 1
    assert seen(ledger, copy_id="copy-2") is Verdict.DELIVERED


def test_a_queued_task_token_is_found_until_its_task_is_answered_and_never_shown(
    ledger: Ledger, client: Any, clock: FakeClock
) -> None:
    """`record_queued` keeps a submission's task token for a paused drain (`queued_tasks`, newest
    first, within `scanned`); the record as read, shown or listed never carries it; an answer (or a
    task gone) and a delivery's whole record forget it."""
    for n, token in enumerate(["t0", "", "t2", "t3"]):
        ledger.record_queued(f"m{n}", f"g{n}", task_token=token)
        clock.advance(1)
    ledger.record_queued("m0", "g0", task_token="t-other")  # an existing record is left alone
    found = ledger.queued_tasks(10)
    assert [(t.message_id, t.group_id, t.token, t.status, t.callback) for t in found] == [
        ("m3", "g3", "t3", Status.QUEUED, ""),
        ("m2", "g2", "t2", Status.QUEUED, ""),
        ("m0", "g0", "t0", Status.QUEUED, ""),
    ]
    assert [t.message_id for t in ledger.queued_tasks(2)] == ["m3", "m2"]  # the newest 2 records
    assert "t0" not in repr(record_of(ledger, "m0")) and "t0" not in json.dumps(
        record_of(ledger, "m0").as_dict()
    )
    ledger.note_callback("m3", "g3", "rejected")
    ledger.write([delivered(None, "m2", "g2", 200, START)])
    assert "task_token" not in raw_item(client, "m3") and "task_token" not in raw_item(client, "m2")
    assert [t.message_id for t in ledger.queued_tasks(10)] == ["m0"]


def test_get_of_an_unknown_id_is_none(ledger: Ledger) -> None:
    assert ledger.get("nope") is None


# --- verdict (pure) -------------------------------------------------------------------------------


def record(status: Status, **fields: Any) -> LedgerRecord:
    return LedgerRecord(message_id="m1", status=status, **fields)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.QUEUED, Verdict.DELIVER),
        (Status.FAILED, Verdict.DELIVER),
        (Status.DELIVERED, Verdict.DELIVERED),
        (Status.HALTED, Verdict.HALTED),
        (Status.SKIP, Verdict.SKIP),
        (Status.DEAD, Verdict.DEAD),
    ],
)
def test_verdict_by_status(status: Status, expected: Verdict) -> None:
    assert verdict(record(status), "copy-1") is expected


def test_verdict_of_no_record_is_deliver() -> None:
    assert verdict(None, "copy-1") is Verdict.DELIVER


def test_a_dead_message_seen_under_another_copy_was_redriven() -> None:
    assert verdict(record(Status.DEAD, dead_copy="copy-1"), "copy-1") is Verdict.DEAD
    assert verdict(record(Status.DEAD, dead_copy="copy-1"), "copy-2") is Verdict.REDRIVEN
    assert verdict(record(Status.DEAD), "copy-9") is Verdict.DEAD  # no copy recorded: stays dead


def test_every_status_has_a_verdict() -> None:
    for status in Status:
        assert isinstance(verdict(record(status), "copy-1"), Verdict)


# --- delivered (pure) -----------------------------------------------------------------------------


def test_delivered_from_nothing_is_a_first_attempt() -> None:
    done = delivered(None, "m1", "g1", 201, START)
    assert done == LedgerRecord(
        message_id="m1",
        status=Status.DELIVERED,
        attempts=1,
        group_id="g1",
        last_status_code=201,
        first_attempt_at=START,
        last_attempt_at=START,
        updated_at=START,
    )


def test_delivered_after_failures_adds_one_attempt_and_keeps_the_first() -> None:
    prior = record(Status.FAILED, attempts=3, group_id="g1", last_error="HTTP 500", first_attempt_at=START)
    done = delivered(prior, "m1", "g1", 200, START + 60)
    assert (done.attempts, done.first_attempt_at, done.last_attempt_at) == (4, START, START + 60)
    assert done.last_error == ""  # a delivered record carries no stale error


# --- read and write (batches) ---------------------------------------------------------------------


def test_read_returns_only_existing_records(ledger: Ledger) -> None:
    ledger.record_queued("m1", "g1")
    ledger.write([delivered(None, "m2", "g2", 200, START)])
    found = ledger.read(["m1", "m2", "m3", "m1"])
    assert sorted(found) == ["m1", "m2"]
    assert found["m1"].status is Status.QUEUED
    assert found["m2"].status is Status.DELIVERED
    assert ledger.read([]) == {}


def test_read_and_write_more_than_one_batch(ledger: Ledger, client: Any) -> None:
    calls: dict[str, int] = {"BatchGetItem": 0, "BatchWriteItem": 0}

    def count(model: Any, **_: Any) -> None:
        calls[model.name] = calls.get(model.name, 0) + 1

    client.meta.events.register("before-call.dynamodb.*", count)
    try:
        records = [delivered(None, f"m{i:03d}", "g1", 200, START) for i in range(230)]
        ledger.write(records)
        found = ledger.read([r.message_id for r in records])
    finally:
        client.meta.events.unregister("before-call.dynamodb.*", count)
    assert calls == {"BatchGetItem": 3, "BatchWriteItem": 10}  # 100 ids per read, 25 items per write
    assert found == {r.message_id: r for r in records}


def test_written_records_read_back_whole_with_expiry(ledger: Ledger, client: Any, clock: FakeClock) -> None:
    clock.advance(42.5)
    done = delivered(record(Status.FAILED, attempts=2, first_attempt_at=START), "m1", "g1", 204, clock())
    ledger.write([done])
    assert record_of(ledger) == done
    assert raw_item(client, "m1")["expires_at"] == {"N": str(int(clock()) + TTL_S)}


class Unprocessed:
    """Passes calls through, but leaves the first `times` batch calls' items unprocessed."""

    def __init__(self, client: Any, times: int) -> None:
        self._client = client
        self.left = times
        self.calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        if self.left:
            self.left -= 1
            return {"Responses": {TABLE: []}, "UnprocessedKeys": RequestItems}
        return dict(self._client.batch_get_item(RequestItems=RequestItems))

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        if self.left:
            self.left -= 1
            return {"UnprocessedItems": RequestItems}
        return dict(self._client.batch_write_item(RequestItems=RequestItems))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_unprocessed_items_are_retried_with_backoff(ledger: Ledger, client: Any, clock: FakeClock) -> None:
    slept: list[float] = []
    flaky = Unprocessed(client, times=2)
    throttled = Ledger(flaky, TABLE, TTL_S, destination=DESTINATION, clock=clock, sleep=slept.append)
    throttled.write([delivered(None, "m1", "g1", 200, START)])
    assert flaky.calls == 3 and len(slept) == 2
    flaky.left = 2
    assert throttled.read(["m1"])["m1"].status is Status.DELIVERED
    assert flaky.calls == 6 and len(slept) == 4
    assert all(0 < s <= 2.0 for s in slept)


def test_a_batch_still_unprocessed_after_every_try_raises(ledger: Ledger, client: Any) -> None:
    throttled = Ledger(
        Unprocessed(client, times=100), TABLE, TTL_S, destination=DESTINATION, sleep=lambda _: None
    )
    with pytest.raises(LedgerUnavailableError, match="1 ledger writes unprocessed"):
        throttled.write([delivered(None, "m1", "g1", 200, START)])
    with pytest.raises(LedgerUnavailableError, match="2 ledger reads unprocessed"):
        throttled.read(["m1", "m2"])
    assert ledger.get("m1") is None


# --- settle ---------------------------------------------------------------------------------------


def test_counted_failures_add_attempts_and_uncounted_ones_do_not(ledger: Ledger) -> None:
    assert settle(ledger, Status.FAILED, 500, "HTTP 500", counted=True).attempts == 1
    assert settle(ledger, Status.FAILED, None, "timeout", counted=True).attempts == 2
    assert settle(ledger, Status.FAILED, 429, "HTTP 429", counted=False).attempts == 2
    assert settle(ledger, Status.FAILED, 401, "HTTP 401", counted=False).attempts == 2
    assert record_of(ledger).attempts == 2
    assert seen(ledger) is Verdict.DELIVER


def test_settle_records_the_group_the_last_status_and_error(ledger: Ledger) -> None:
    first = settle(ledger, Status.FAILED, 503, "x" * 600, counted=True)
    assert first.group_id == "g1"
    assert first.last_status_code == 503
    assert first.last_error == "x" * 500
    second = settle(ledger, Status.FAILED, None, "timeout", counted=True)
    assert second.last_error == "timeout"
    assert second.last_status_code == 503  # no response: the last status seen is kept


def test_first_attempt_is_kept_and_last_attempt_moves(ledger: Ledger, clock: FakeClock) -> None:
    first = settle(ledger, Status.FAILED, 500, "HTTP 500", counted=True)
    assert first.first_attempt_at == START
    assert first.last_attempt_at == START
    clock.advance(90)
    second = settle(ledger, Status.FAILED, 500, "HTTP 500", counted=True)
    assert second.first_attempt_at == START
    assert second.last_attempt_at == START + 90
    assert second.updated_at == START + 90


def test_a_decision_without_an_attempt_leaves_attempt_times_alone(ledger: Ledger) -> None:
    record = settle(ledger, Status.HALTED, None, "poison", counted=False)
    assert record.first_attempt_at is None and record.last_attempt_at is None


def test_every_write_pushes_expiry_to_now_plus_ttl(ledger: Ledger, client: Any, clock: FakeClock) -> None:
    def expires() -> int:
        return int(raw_item(client, "m1")["expires_at"]["N"])

    ledger.record_queued("m1", "g1")
    assert expires() == int(START) + TTL_S
    clock.advance(3600.9)
    settle(ledger, Status.FAILED, 500, "HTTP 500", counted=True)
    assert expires() == int(clock()) + TTL_S
    clock.advance(86_400)
    settle(ledger, Status.HALTED, None, "poison", counted=False)
    ledger.release("m1", Status.SKIP, False, DESTINATION)
    assert expires() == int(clock()) + TTL_S
    clock.advance(60)
    ledger.write([delivered(record_of(ledger), "m1", "g1", 200, clock())])
    assert expires() == int(clock()) + TTL_S


# --- settle_many (issue #25): one batch request's items in one transaction ------------------------

MANY = [
    Settlement("m1", "g1", Status.DELIVERED, 200, "", counted=True),
    Settlement("m2", "g1", Status.FAILED, 503, "HTTP 503", counted=True),
    Settlement("m3", "g2", Status.FAILED, 429, "HTTP 429", counted=False),
    Settlement("m4", "g3", Status.DELIVERED, 201, "", counted=True),
]


def test_settle_many_writes_each_as_settle_would_in_one_transaction(
    ledger: Ledger, client: Any, clock: FakeClock
) -> None:
    twin = Ledger(client, TABLE, TTL_S, destination=DESTINATION, clock=clock)
    settle(ledger, Status.FAILED, 500, "HTTP 500", counted=True)  # m1 failed once, a run ago
    clock.advance(60)
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    try:
        ledger.settle_many(MANY)
    finally:
        client.meta.events.unregister("before-call.dynamodb.*")
    assert calls == ["TransactWriteItems"]
    many = {m.message_id: record_of(ledger, m.message_id) for m in MANY}
    assert many["m1"].attempts == 2 and many["m1"].first_attempt_at == START  # ADDed, first kept
    assert many["m1"].status is Status.DELIVERED and many["m1"].last_status_code == 200
    assert (many["m2"].attempts, many["m3"].attempts, many["m4"].attempts) == (1, 0, 1)
    # the same as settle leaves each, item by item, from the same start
    for settlement in MANY:
        client.delete_item(TableName=TABLE, Key={"message_id": {"S": settlement.message_id}})
    clock.now = START
    settle(twin, Status.FAILED, 500, "HTTP 500", counted=True)
    clock.advance(60)
    for settlement in MANY:
        assert twin.settle(settlement) == many[settlement.message_id]


def test_what_settle_many_leaves_is_what_the_drain_computes(ledger: Ledger, clock: FakeClock) -> None:
    """`model.settled`: the records a transaction leaves, which the drain does not read back."""
    settle(ledger, Status.FAILED, 500, "HTTP 500", counted=True)
    prior = ledger.read([m.message_id for m in MANY])
    clock.advance(30)
    ledger.settle_many(MANY)
    after = ledger.read([m.message_id for m in MANY])
    for settlement in MANY:
        computed = settled(prior.get(settlement.message_id), settlement, clock())
        assert computed == after[settlement.message_id]


def test_settle_many_of_nothing_calls_nothing_and_more_than_a_transaction_is_refused(ledger: Ledger) -> None:
    ledger.settle_many([])
    assert ledger.read(["m1"]) == {}
    too_many = [Settlement(f"m{n}", "g", Status.DELIVERED, 200, "", counted=True) for n in range(101)]
    with pytest.raises(ValueError, match="101 settlements; one transaction takes 100"):
        ledger.settle_many(too_many)


def test_a_settlement_written_later_is_written_as_of_when_it_happened(
    ledger: Ledger, clock: FakeClock
) -> None:
    """A batch request's deliveries are written with the round's, a moment after their answers:
    `at` is the answer's time, the one `model.settled` computed the drain's record with."""
    answered = replace(MANY[0], at=START + 5)
    clock.advance(60)
    ledger.settle_many([answered])
    record = record_of(ledger, "m1")
    assert record.last_attempt_at == record.first_attempt_at == record.updated_at == START + 5
    assert record == settled(None, answered, START + 5)


class Refusing:
    """A DynamoDB client whose transactions end with `error` (what botocore raises once its own
    retries are spent); anything else goes to the real one."""

    def __init__(self, client: Any, error: dict[str, Any]) -> None:
        self._client = client
        self._error = error
        self.transactions = 0

    def transact_write_items(self, **_: Any) -> dict[str, Any]:
        self.transactions += 1
        raise ClientError(self._error, "TransactWriteItems")  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def failed(status: int, code: str, reasons: tuple[str, ...] = (), message: str = "said so") -> dict[str, Any]:
    error: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    if reasons:
        error["CancellationReasons"] = [{"Code": reason} for reason in reasons]
    return error


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        # moto 5.2.5 under concurrent transactions: an HTML page, the code botocore makes of the status
        pytest.param(failed(500, "500", message="<!doctype html> <title>500</title>"), True, id="moto-500"),
        pytest.param(failed(500, "InternalServerError"), True, id="internal-error"),
        pytest.param(failed(400, "ThrottlingException"), True, id="throttled"),
        pytest.param(failed(400, "ProvisionedThroughputExceededException"), True, id="over-capacity"),
        pytest.param(
            failed(400, "TransactionCanceledException", ("None", "TransactionConflict")),
            True,
            id="cancelled-by-a-conflicting-write",
        ),
        pytest.param(
            failed(400, "TransactionCanceledException", ("None", "ValidationError")),
            False,
            id="cancelled-as-wrong",
        ),
        pytest.param(failed(400, "ValidationException"), False, id="refused-as-wrong"),
    ],
)
def test_a_transaction_dynamodb_did_not_take_is_a_ledger_unavailable(
    client: Any, clock: FakeClock, error: dict[str, Any], unavailable: bool
) -> None:
    """Busy or failing, DynamoDB took none of it (or, a 5xx hiding a success, all of it): the run
    ends before its deletes and the messages come back (`Drainer`); a write it refuses as wrong is
    a bug, raised as it came."""
    refusing = Refusing(client, error)
    ledger = Ledger(refusing, TABLE, TTL_S, destination=DESTINATION, clock=clock)
    expected = LedgerUnavailableError if unavailable else ClientError
    with pytest.raises(expected) as raised:
        ledger.settle_many(MANY)
    assert refusing.transactions == 1  # botocore has retried already: never again on top
    if unavailable:
        code = error["Error"]["Code"]
        status = error["ResponseMetadata"]["HTTPStatusCode"]
        said = "" if code == "500" else " said so"  # a page of HTML is not repeated
        assert (
            str(raised.value)
            == f"DynamoDB did not take a transaction of 4 ledger writes: HTTP {status} {code}{said}"
        )
    assert ledger.read([m.message_id for m in MANY]) == {}


# --- dead, redriven, halted, skipped --------------------------------------------------------------


def test_a_stale_copy_of_a_dead_message_is_dead(ledger: Ledger) -> None:
    settle(ledger, Status.DEAD, 422, "HTTP 422", counted=True, dead_copy="copy-1")
    assert seen(ledger, copy_id="copy-1") is Verdict.DEAD
    assert record_of(ledger).dead_copy == "copy-1"


def test_a_redriven_copy_of_a_dead_message_starts_over(ledger: Ledger, clock: FakeClock) -> None:
    for _ in range(3):
        settle(ledger, Status.FAILED, 500, "HTTP 500", counted=True)
    settle(ledger, Status.DEAD, None, "gave up", counted=False, dead_copy="copy-1")
    assert seen(ledger, copy_id="copy-2") is Verdict.REDRIVEN
    clock.advance(30)
    restarted = ledger.restart("m1")
    assert restarted is not None
    assert (restarted.status, restarted.attempts, restarted.dead_copy) == (Status.QUEUED, 0, "")
    assert restarted.first_attempt_at is None
    assert restarted.updated_at == START + 30
    assert seen(ledger, copy_id="copy-2") is Verdict.DELIVER


def test_restarting_a_record_no_longer_dead_returns_it_unchanged(ledger: Ledger) -> None:
    ledger.write([delivered(None, "m1", "g1", 200, START)])
    again = ledger.restart("m1")
    assert again is not None and again.status is Status.DELIVERED and again.attempts == 1
    assert record_of(ledger) == again
    assert ledger.restart("missing") is None
    assert ledger.get("missing") is None


def test_halted_stays_halted(ledger: Ledger, clock: FakeClock) -> None:
    settle(ledger, Status.HALTED, None, "poison", counted=False)
    clock.advance(3600)
    assert seen(ledger) is Verdict.HALTED
    assert record_of(ledger).status is Status.HALTED


def test_an_operator_retry_of_a_halted_message_resets_attempts(ledger: Ledger) -> None:
    settle(ledger, Status.HALTED, 422, "HTTP 422", counted=True)
    assert ledger.release("m1", Status.FAILED, True, DESTINATION) == (True, None)
    assert seen(ledger) is Verdict.DELIVER
    assert record_of(ledger).attempts == 0


def test_an_operator_skip_is_reported_by_the_verdict_and_keeps_attempts(ledger: Ledger) -> None:
    settle(ledger, Status.HALTED, 500, "HTTP 500", counted=True)
    ledger.release("m1", Status.SKIP, False, DESTINATION)
    assert seen(ledger, copy_id="copy-2") is Verdict.SKIP
    assert (record_of(ledger).status, record_of(ledger).attempts) == (Status.SKIP, 1)


def test_a_release_is_made_only_while_the_message_is_halted(ledger: Ledger) -> None:
    """Two operators releasing one message: the second write is refused and told what it is now;
    an unknown id is refused and creates nothing."""
    settle(ledger, Status.HALTED, None, "poison", counted=False)
    assert ledger.release("m1", Status.SKIP, False, DESTINATION) == (True, None)
    done, now = ledger.release("m1", Status.FAILED, True, DESTINATION)
    assert not done and now is not None and now.status is Status.SKIP
    assert ledger.release("missing", Status.SKIP, False, DESTINATION) == (False, None)
    assert ledger.get("missing") is None


def test_record_as_dict(ledger: Ledger) -> None:
    record = settle(ledger, Status.FAILED, 500, "HTTP 500", counted=True)
    assert record.as_dict() == {
        "message_id": "m1",
        "destination": DESTINATION,
        "status": "failed",
        "attempts": 1,
        "group_id": "g1",
        "last_status_code": 500,
        "last_error": "HTTP 500",
        "first_attempt_at": START,
        "last_attempt_at": START,
        "updated_at": START,
        "dead_at": None,
        "status_since": "2026-01-01T00:00:00.250Z",
        "callback": None,
        "timeline": [],
    }


# --- the dead-letter index ----------------------------------------------------------------------


def dead_ids(ledger: Ledger, limit: int, destination: str = DESTINATION) -> list[list[str]]:
    """Every page of `destination`'s dead records, as message ids."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        records, more = ledger.dead_page(destination, limit, after)
        pages.append([r.message_id for r in records])
        if not more:
            return pages
        after = records[-1].dead_key


def test_a_dead_record_is_indexed_in_the_order_it_died_and_a_redrive_takes_it_out(
    ledger: Ledger, clock: FakeClock
) -> None:
    for n in range(5):
        ledger.settle(
            Settlement(f"m{n}", "g1", Status.DEAD, None, "HTTP 400", counted=False, dead_copy=f"c{n}")
        )
        clock.advance(0.001 if n % 2 else 0)  # two may die within one millisecond
    ledger.settle(Settlement("alive", "g1", Status.FAILED, 500, "HTTP 500", counted=True))

    assert dead_ids(ledger, 2) == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert dead_ids(ledger, 5) == [["m0", "m1", "m2", "m3", "m4"]]
    assert record_of(ledger, "m0").as_dict()["dead_at"] == "2026-01-01T00:00:00.250Z"
    assert dead_ids(ledger, 5, destination="other") == [[]]

    ledger.restart("m2")
    assert dead_ids(ledger, 10) == [["m0", "m1", "m3", "m4"]]
    ledger.write([delivered(record_of(ledger, "m3"), "m3", "g1", 200, START)])
    assert dead_ids(ledger, 10) == [["m0", "m1", "m4"]]


def test_a_record_rejected_at_ingest_gets_a_dead_record_once(ledger: Ledger) -> None:
    ledger.record_dead("r1", "g1", "undecodable attribute value")
    ledger.record_dead("r1", "g1", "a replay of the same record")

    record = record_of(ledger, "r1")
    assert (record.status, record.rejected_at_ingest, record.last_error) == (
        Status.DEAD,
        True,
        "undecodable attribute value",
    )
    assert dead_ids(ledger, 10) == [["r1"]]
    ledger.record_queued("q1", "g1")
    ledger.record_dead("q1", "g1", "never overwrites a record that exists")
    assert record_of(ledger, "q1").status is Status.QUEUED


def test_a_dead_record_outlives_the_dead_letter_queue_s_retention(
    ledger: Ledger, client: Any, clock: FakeClock
) -> None:
    """TTL_S is seven days; SQS keeps a dead letter up to fourteen, and the listing must too."""
    ledger.settle(Settlement("m1", "g1", Status.DEAD, None, "HTTP 400", counted=False, dead_copy="c1"))
    ledger.record_dead("r1", "g1", "undecodable")
    ledger.settle(Settlement("m2", "g1", Status.FAILED, 500, "HTTP 500", counted=True))
    fourteen_days = int(START) + 14 * 86_400
    assert int(raw_item(client, "m1")["expires_at"]["N"]) == fourteen_days
    assert int(raw_item(client, "r1")["expires_at"]["N"]) == fourteen_days
    assert int(raw_item(client, "m2")["expires_at"]["N"]) == int(START) + TTL_S


# --- the status index (issue #27) ---------------------------------------------------------------


def status_entry(client: Any, message_id: str) -> tuple[str, str] | None:
    """The record's keys in the status index, as written: (status key, status at)."""
    item = raw_item(client, message_id)
    return (item["status_key"]["S"], item["status_at"]["S"]) if "status_key" in item else None


def at(moment: float, message_id: str = "m1") -> str:
    return f"{iso_utc(moment)}#{message_id}"


@pytest.mark.parametrize(
    ("write", "status", "written_at"),
    [
        (lambda ledger: ledger.record_queued("m1", "g1"), "queued", START),
        (lambda ledger: ledger.record_dead("m1", "g1", "undecodable"), "dead", START),
        (lambda ledger: settle(ledger, Status.FAILED, 503, "HTTP 503", counted=True), "failed", START),
        (lambda ledger: settle(ledger, Status.HALTED, None, "poison", counted=False), "halted", START),
        (
            lambda ledger: ledger.settle_many([Settlement("m1", "g1", Status.DELIVERED, 200, "", True)]),
            "delivered",
            START,
        ),
        # a whole record, at its own time
        (lambda ledger: ledger.write([delivered(None, "m1", "g1", 200, START - 5)]), "delivered", START - 5),
    ],
)
def test_every_write_that_sets_a_status_files_the_record_under_it(
    ledger: Ledger, client: Any, write: Any, status: str, written_at: float
) -> None:
    write(ledger)
    assert status_entry(client, "m1") == (f"{DESTINATION}#{status}", at(written_at))
    assert record_of(ledger).destination == DESTINATION


def test_a_release_and_a_restart_move_the_record_in_the_status_index(
    ledger: Ledger, client: Any, clock: FakeClock
) -> None:
    settle(ledger, Status.HALTED, None, "poison", counted=False)
    clock.advance(10)
    ledger.release("m1", Status.SKIP, False, DESTINATION)
    assert status_entry(client, "m1") == (f"{DESTINATION}#skip", at(START + 10))
    ledger.settle(Settlement("m1", "g1", Status.DEAD, None, "skipped", counted=False, dead_copy="c1"))
    clock.advance(10)
    ledger.restart("m1")
    assert status_entry(client, "m1") == (f"{DESTINATION}#queued", at(START + 20))


def test_a_ledger_of_no_destination_files_nothing_in_the_status_index(client: Any, clock: FakeClock) -> None:
    """A record whose destination is not known is left out, not filed under a wrong one."""
    anonymous = Ledger(client, TABLE, TTL_S, destination="", clock=clock)
    anonymous.record_queued("m1", "g1")
    assert status_entry(client, "m1") is None


def listed_pages(ledger: Ledger, limit: int, **bounds: Any) -> list[list[str]]:
    """Every page of the halted partition, as message ids."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        found, more = ledger.listed(STATUS_INDEX, f"{DESTINATION}#halted", limit, after=after, **bounds)
        pages.append([message_id for message_id, _ in found])
        if not more:
            return pages
        after = found[-1][1]


def test_listed_pages_a_status_in_time_order_within_bounds_and_backwards(
    ledger: Ledger, clock: FakeClock
) -> None:
    """Five halted (two within one millisecond), one failed: pages of two, either way, and a window."""
    for n in range(5):
        ledger.settle(Settlement(f"m{n}", "g1", Status.HALTED, None, "poison", counted=False))
        clock.advance(0.001 if n % 2 else 0)
    ledger.settle(Settlement("other", "g1", Status.FAILED, 500, "HTTP 500", counted=True))

    assert listed_pages(ledger, 2) == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert listed_pages(ledger, 2, newest_first=True) == [["m4", "m3"], ["m2", "m1"], ["m0"]]
    window = {"low": iso_utc(START + 0.001), "high": f"{iso_utc(START + 0.001)}#~"}
    assert listed_pages(ledger, 10, **window) == [["m2", "m3"]]
    assert listed_pages(ledger, 1, newest_first=True, **window) == [["m3"], ["m2"]]
    assert listed_pages(ledger, 10, low="9999") == [[]]  # above everything
    assert listed_pages(ledger, 10, low="b", high="a") == [[]]  # an empty window asks nothing


# --- the item index and the attempts timeline (issue #27) -----------------------------------------


def item_entry(client: Any, message_id: str = "m1") -> tuple[str, str] | None:
    item = raw_item(client, message_id)
    return (item["item_key"]["S"], item["item_sort"]["S"]) if "item_key" in item else None


def test_the_first_write_that_knows_the_item_files_the_record_and_later_ones_keep_it(
    ledger: Ledger, client: Any, clock: FakeClock
) -> None:
    settle(ledger, Status.FAILED, 503, "HTTP 503", counted=True)
    assert item_entry(client) is None  # no item known: not filed
    first = ("c1", f'"PROFILE"{at(START)}')
    ledger.settle(
        Settlement("m1", "g1", Status.FAILED, 503, "HTTP 503", True, item_key=first[0], item_sort=first[1])
    )
    clock.advance(60)
    later = ("c1", f'"PROFILE"{at(START + 60)}')
    ledger.settle(
        Settlement("m1", "g1", Status.HALTED, None, "poison", False, item_key=later[0], item_sort=later[1])
    )
    assert item_entry(client) == first
    ledger.write([delivered(record_of(ledger), "m1", "g1", 200, clock(), item=later)])  # a whole record
    assert item_entry(client) == first
    ledger.write([delivered(None, "m2", "g1", 200, clock(), item=later)])
    assert item_entry(client, "m2") == later


def test_queued_and_dead_at_ingest_records_are_filed_under_their_item(ledger: Ledger, client: Any) -> None:
    ledger.record_queued("m1", "g1", ("c1", f"null{at(START)}"))
    ledger.record_dead("r1", "g1", "undecodable", ("c1", f"null{at(START, 'r1')}"))
    assert item_entry(client) == ("c1", f"null{at(START)}")
    assert item_entry(client, "r1") == ("c1", f"null{at(START, 'r1')}")


def test_listed_pages_one_item_s_messages_by_sort_key_then_time(ledger: Ledger, clock: FakeClock) -> None:
    for n, sort in enumerate(["A", "B", "A", "AB", "A"]):
        sort_text = f'"{sort}"{at(clock(), f"m{n}")}'
        ledger.settle(
            Settlement(f"m{n}", "g", Status.FAILED, 500, "x", True, item_key="c1", item_sort=sort_text)
        )
        clock.advance(1)
    ledger.settle(
        Settlement("other", "g", Status.FAILED, 500, "x", True, item_key="c2", item_sort=f'"A"{at(START)}')
    )

    def pages(limit: int, low: str | None = None, high: str | None = None) -> list[list[str]]:
        found: list[list[str]] = []
        after: str | None = None
        while True:
            listed, more = ledger.listed(ITEM_INDEX, "c1", limit, low=low, high=high, after=after)
            found.append([m for m, _ in listed])
            if not more:
                return found
            after = listed[-1][1]

    assert pages(2) == [["m0", "m2"], ["m4", "m3"], ["m1"]]  # "A" < "AB" < "B", each by time
    assert pages(2, low='"A"', high='"A"~') == [["m0", "m2"], ["m4"]]  # one sort key, not "AB"


def test_a_timeline_is_written_with_the_settlement_and_read_back(ledger: Ledger, clock: FakeClock) -> None:
    made = (Attempt(START, 503, 12, "HTTP 503"), Attempt(START + 1, None, 3000, "timed out: é"))
    record = ledger.settle(Settlement("m1", "g1", Status.FAILED, None, "timed out", True, timeline=made))
    assert record.timeline == made == record_of(ledger).timeline
    settle(ledger, Status.HALTED, None, "poison", counted=False)  # no attempt: the timeline stays
    assert record_of(ledger).timeline == made
    third = Attempt(START + 2, 200, 5, "HTTP 200")
    done = delivered(record_of(ledger), "m1", "g1", 200, START + 2, third)
    ledger.write([done])
    assert record_of(ledger).timeline == (*made, third) == done.timeline
    assert record_of(ledger).as_dict()["timeline"][-1] == third.as_dict()


def test_what_settle_many_leaves_with_timelines_is_what_the_drain_computes(
    ledger: Ledger, clock: FakeClock
) -> None:
    made = Attempt(START, 503, 7, "HTTP 503")
    many = [
        replace(s, timeline=(made,), item_key="c1", item_sort=f"null{at(START, s.message_id)}") for s in MANY
    ]
    ledger.settle_many(many)
    after = ledger.read([s.message_id for s in many])
    assert all(settled(None, s, clock()) == after[s.message_id] for s in many)
    assert all(after[s.message_id].timeline == (made,) for s in many)


# --- Step Functions callbacks ----------------------------------------------------------------------


def test_a_delivered_record_keeps_its_callback_and_owed_output(ledger: Ledger) -> None:
    base = LedgerRecord("m1", Status.DELIVERED, 1, "g1", last_status_code=200, last_attempt_at=START)
    ledger.write(
        [
            replace(base, callback_output='{"body": "kept"}'),
            replace(base, message_id="m2", callback="success"),
        ]
    )

    owed, answered = record_of(ledger, "m1"), record_of(ledger, "m2")
    ledger.note_callback("m1", "g1", "success")

    assert (owed.callback, owed.callback_output) == ("", '{"body": "kept"}')
    assert (answered.callback, answered.callback_output) == ("success", "")
    assert (record_of(ledger, "m1").callback, record_of(ledger, "m1").callback_output) == ("success", "")


def test_a_task_gone_before_its_message_was_attempted_leaves_a_queued_record(
    ledger: Ledger, client: Any
) -> None:
    ledger.note_callback("sent-by-a-state-machine", "g1", "rejected")
    settle(ledger, Status.DEAD, None, "gave up", counted=False, dead_copy="c1")
    dead_expiry = raw_item(client, "m1")["expires_at"]
    ledger.note_callback("m1", "g1", "failure")

    fresh = record_of(ledger, "sent-by-a-state-machine")
    assert (fresh.status, fresh.attempts, fresh.group_id) == (Status.QUEUED, 0, "g1")
    assert fresh.callback == "rejected"
    assert "expires_at" in raw_item(client, "sent-by-a-state-machine")
    assert raw_item(client, "m1")["expires_at"] == dead_expiry  # a dead record keeps its longer life
    assert record_of(ledger).status is Status.DEAD


def test_a_delivery_keeps_a_gone_tasks_state() -> None:
    gone = LedgerRecord("m1", Status.FAILED, 1, "g1", callback="rejected")
    assert delivered(gone, "m1", "g1", 200, START).callback == "rejected"
    assert delivered(None, "m1", "g1", 200, START).callback == ""


def test_hold_until_keeps_the_record_and_a_redrive_forgets_it(ledger: Ledger, clock: FakeClock) -> None:
    ledger.hold_until("fresh", "g1", START + 30)  # a message never attempted yet: a queued record
    settle(ledger, Status.FAILED, 503, "HTTP 503", counted=True)
    ledger.hold_until("m1", "g1", START + 60)

    fresh, held = record_of(ledger, "fresh"), record_of(ledger, "m1")
    settle(ledger, Status.DEAD, None, "gave up", counted=False, dead_copy="c1")
    restarted = ledger.restart("m1")

    assert (fresh.status, fresh.attempts, fresh.retry_at) == (Status.QUEUED, 0, START + 30)
    assert (held.status, held.attempts, held.retry_at) == (Status.FAILED, 1, START + 60)
    assert restarted is not None and restarted.retry_at is None


# --- a ledger made before its indexes (trickle_project.resources) -----------------------------------


def test_the_bootstrap_adds_the_indexes_a_ledger_made_before_them_lacks(aws_client: Any) -> None:
    """A ledger with only the dead-letter index (as stages made before issue #27 have) gets
    `by-status` and `by-item`, one at a time; a second run changes nothing."""
    definition = table_definition()
    old = {
        "KeySchema": definition["KeySchema"],
        "AttributeDefinitions": definition["AttributeDefinitions"][:3],
        "GlobalSecondaryIndexes": definition["GlobalSecondaryIndexes"][:1],
    }
    aws_client.create_table(TableName="old-ledger", BillingMode="PAY_PER_REQUEST", **old)
    names = SimpleNamespace(ledger_table="old-ledger")
    updates: list[str] = []
    aws_client.meta.events.register("before-call.dynamodb.UpdateTable", lambda **_: updates.append("u"))
    try:
        ensure_ledger(aws_client, names)  # type: ignore[arg-type]
        ensure_ledger(aws_client, names)  # type: ignore[arg-type]
        indexes = aws_client.describe_table(TableName="old-ledger")["Table"]["GlobalSecondaryIndexes"]
    finally:
        aws_client.delete_table(TableName="old-ledger")
    assert sorted(i["IndexName"] for i in indexes) == ["by-item", "by-status", "dead-letters"]
    assert len(updates) == 2
