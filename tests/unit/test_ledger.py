"""The delivery ledger's conditional writes, against moto's in-process DynamoDB (chalicelib/ledger.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend

from chalicelib.ledger import Claim, ClaimKind, Ledger, LedgerRecord, Status

TABLE = "trickle-test-ledger"
TTL_S = 7 * 86_400
LEASE_S = 60
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
def atomic_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each conditional write atomically; moto checks the condition and applies the
    update without a lock (a new item is even visible before its attributes are set), so threads
    racing through moto see states DynamoDB never shows. Serialize moto's item calls, as DynamoDB
    serializes writes to one item."""
    lock = threading.RLock()
    for name in ("get_item", "put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def client(aws_client: Any) -> Iterator[Any]:
    """A fresh, empty ledger table for each test."""
    aws_client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "message_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "message_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield aws_client
    aws_client.delete_table(TableName=TABLE)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(client: Any, clock: FakeClock) -> Ledger:
    return Ledger(client, TABLE, TTL_S, clock=clock)


def raw_item(client: Any, message_id: str) -> dict[str, Any]:
    item: dict[str, Any] = client.get_item(
        TableName=TABLE, Key={"message_id": {"S": message_id}}, ConsistentRead=True
    ).get("Item", {})
    return item


def claim(ledger: Ledger, message_id: str = "m1", owner: str = "drain-a", copy_id: str = "copy-1") -> Claim:
    return ledger.claim(message_id, "g1", owner, LEASE_S, copy_id)


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
    assert claim(ledger).kind is ClaimKind.CLAIMED
    ledger.settle("m1", Status.DELIVERED, 200, "", counted=True)
    assert ledger.record_queued("m1", "g1") is False
    record = record_of(ledger)
    assert record.status is Status.DELIVERED
    assert record.attempts == 1
    assert claim(ledger, owner="drain-b").kind is ClaimKind.DELIVERED


def test_get_of_an_unknown_id_is_none(ledger: Ledger) -> None:
    assert ledger.get("nope") is None


# --- claim ----------------------------------------------------------------------------------------


def test_claim_of_a_new_id_creates_and_claims_it(ledger: Ledger, client: Any) -> None:
    result = claim(ledger)
    assert result.kind is ClaimKind.CLAIMED
    assert result.attempts == 0
    assert result.record is not None
    assert result.record.status is Status.DELIVERING
    assert result.record.group_id == "g1"
    item = raw_item(client, "m1")
    assert item["owner"] == {"S": "drain-a"}
    assert float(item["lease_until"]["N"]) == START + LEASE_S


def test_claim_of_a_queued_id_keeps_its_zero_attempts(ledger: Ledger) -> None:
    ledger.record_queued("m1", "g1")
    result = claim(ledger)
    assert result.kind is ClaimKind.CLAIMED
    assert result.attempts == 0
    assert record_of(ledger).status is Status.DELIVERING


def test_a_live_lease_makes_other_claims_busy(ledger: Ledger, client: Any, clock: FakeClock) -> None:
    assert claim(ledger, owner="drain-a").kind is ClaimKind.CLAIMED
    clock.advance(LEASE_S - 1)
    busy = claim(ledger, owner="drain-b")
    assert busy.kind is ClaimKind.BUSY
    assert busy.record is not None and busy.record.status is Status.DELIVERING
    clock.advance(1)  # exactly at lease_until: still held
    assert claim(ledger, owner="drain-b").kind is ClaimKind.BUSY
    assert raw_item(client, "m1")["owner"] == {"S": "drain-a"}


def test_an_expired_lease_can_be_taken_over(ledger: Ledger, client: Any, clock: FakeClock) -> None:
    assert claim(ledger, owner="drain-a").kind is ClaimKind.CLAIMED
    clock.advance(LEASE_S + 0.5)
    taken = claim(ledger, owner="drain-b")
    assert taken.kind is ClaimKind.CLAIMED
    assert taken.attempts == 0
    item = raw_item(client, "m1")
    assert item["owner"] == {"S": "drain-b"}
    assert float(item["lease_until"]["N"]) == clock() + LEASE_S


def test_delivered_is_never_claimed_again(ledger: Ledger, client: Any, clock: FakeClock) -> None:
    claim(ledger)
    settled = ledger.settle("m1", Status.DELIVERED, 201, "", counted=True)
    assert settled.status is Status.DELIVERED
    assert "owner" not in raw_item(client, "m1")
    assert "lease_until" not in raw_item(client, "m1")
    clock.advance(10 * LEASE_S)
    result = claim(ledger, owner="drain-b", copy_id="copy-2")
    assert result.kind is ClaimKind.DELIVERED
    assert result.record is not None and result.record.status is Status.DELIVERED
    assert record_of(ledger).status is Status.DELIVERED


def test_failed_is_claimable_again_with_its_attempts(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle("m1", Status.FAILED, 500, "HTTP 500", counted=True)
    result = claim(ledger, owner="drain-b")
    assert result.kind is ClaimKind.CLAIMED
    assert result.attempts == 1


# --- settle ---------------------------------------------------------------------------------------


def test_counted_failures_add_attempts_and_uncounted_ones_do_not(ledger: Ledger) -> None:
    claim(ledger)
    assert ledger.settle("m1", Status.FAILED, 500, "HTTP 500", counted=True).attempts == 1
    claim(ledger)
    assert ledger.settle("m1", Status.FAILED, None, "timeout", counted=True).attempts == 2
    claim(ledger)
    assert ledger.settle("m1", Status.FAILED, 429, "HTTP 429", counted=False).attempts == 2
    claim(ledger)
    assert ledger.settle("m1", Status.FAILED, 401, "HTTP 401", counted=False).attempts == 2
    assert record_of(ledger).attempts == 2


def test_settle_records_the_last_status_and_error(ledger: Ledger) -> None:
    claim(ledger)
    record = ledger.settle("m1", Status.FAILED, 503, "x" * 600, counted=True)
    assert record.last_status_code == 503
    assert record.last_error == "x" * 500
    claim(ledger)
    record = ledger.settle("m1", Status.FAILED, None, "timeout", counted=True)
    assert record.last_error == "timeout"
    assert record.last_status_code == 503  # no response: the last status seen is kept


def test_first_attempt_is_kept_and_last_attempt_moves(ledger: Ledger, clock: FakeClock) -> None:
    claim(ledger)
    first = ledger.settle("m1", Status.FAILED, 500, "HTTP 500", counted=True)
    assert first.first_attempt_at == START
    assert first.last_attempt_at == START
    clock.advance(90)
    claim(ledger)
    second = ledger.settle("m1", Status.FAILED, 500, "HTTP 500", counted=True)
    assert second.first_attempt_at == START
    assert second.last_attempt_at == START + 90
    assert second.updated_at == START + 90


def test_every_write_pushes_expiry_to_now_plus_ttl(ledger: Ledger, client: Any, clock: FakeClock) -> None:
    def expires() -> int:
        return int(raw_item(client, "m1")["expires_at"]["N"])

    ledger.record_queued("m1", "g1")
    assert expires() == int(START) + TTL_S
    clock.advance(100.9)
    claim(ledger)
    assert expires() == int(clock()) + TTL_S
    clock.advance(3600)
    ledger.settle("m1", Status.FAILED, 500, "HTTP 500", counted=True)
    assert expires() == int(clock()) + TTL_S
    clock.advance(86_400)
    ledger.set_status("m1", Status.SKIP)
    assert expires() == int(clock()) + TTL_S


# --- dead, halted, skipped ------------------------------------------------------------------------


def test_a_stale_copy_of_a_dead_message_is_dead(ledger: Ledger) -> None:
    claim(ledger, copy_id="copy-1")
    ledger.settle("m1", Status.DEAD, 422, "HTTP 422", counted=True, dead_copy="copy-1")
    result = claim(ledger, owner="drain-b", copy_id="copy-1")
    assert result.kind is ClaimKind.DEAD
    assert result.record is not None and result.record.dead_copy == "copy-1"
    assert record_of(ledger).status is Status.DEAD


def test_a_redriven_copy_of_a_dead_message_starts_over(ledger: Ledger, client: Any) -> None:
    for _ in range(3):
        claim(ledger, copy_id="copy-1")
        ledger.settle("m1", Status.FAILED, 500, "HTTP 500", counted=True)
    ledger.settle("m1", Status.DEAD, None, "gave up", counted=False, dead_copy="copy-1")
    assert record_of(ledger).attempts == 3
    result = claim(ledger, owner="drain-b", copy_id="copy-2")
    assert result.kind is ClaimKind.CLAIMED
    assert result.attempts == 0
    assert result.record is not None
    assert result.record.status is Status.DELIVERING
    assert result.record.dead_copy == ""
    assert result.record.first_attempt_at is None
    assert raw_item(client, "m1")["owner"] == {"S": "drain-b"}


def test_a_dead_message_without_a_recorded_copy_stays_dead(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle("m1", Status.DEAD, None, "skipped", counted=False)
    assert claim(ledger, copy_id="copy-9").kind is ClaimKind.DEAD


def test_halted_is_not_claimed(ledger: Ledger, clock: FakeClock) -> None:
    claim(ledger)
    ledger.settle("m1", Status.HALTED, None, "poison", counted=False)
    clock.advance(10 * LEASE_S)
    result = claim(ledger, owner="drain-b")
    assert result.kind is ClaimKind.HALTED
    assert record_of(ledger).status is Status.HALTED


def test_an_operator_retry_of_a_halted_message_resets_attempts(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle("m1", Status.HALTED, 422, "HTTP 422", counted=True)
    ledger.set_status("m1", Status.QUEUED, reset_attempts=True)
    result = claim(ledger)
    assert result.kind is ClaimKind.CLAIMED
    assert result.attempts == 0


def test_set_status_skip_is_reported_by_claim(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle("m1", Status.HALTED, None, "poison", counted=False)
    ledger.set_status("m1", Status.SKIP)
    result = claim(ledger, owner="drain-b")
    assert result.kind is ClaimKind.SKIP
    assert record_of(ledger).status is Status.SKIP


def test_set_status_without_reset_keeps_attempts(ledger: Ledger) -> None:
    claim(ledger)
    ledger.settle("m1", Status.HALTED, 500, "HTTP 500", counted=True)
    ledger.set_status("m1", Status.SKIP)
    assert record_of(ledger).attempts == 1


def test_set_status_of_an_unknown_id_raises_and_creates_nothing(ledger: Ledger) -> None:
    with pytest.raises(ClientError) as caught:
        ledger.set_status("missing", Status.SKIP)
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert ledger.get("missing") is None


def test_record_as_dict(ledger: Ledger) -> None:
    claim(ledger)
    record = ledger.settle("m1", Status.FAILED, 500, "HTTP 500", counted=True)
    assert record.as_dict() == {
        "message_id": "m1",
        "status": "failed",
        "attempts": 1,
        "group_id": "g1",
        "last_status_code": 500,
        "last_error": "HTTP 500",
        "first_attempt_at": START,
        "last_attempt_at": START,
        "updated_at": START,
    }


# --- concurrency ----------------------------------------------------------------------------------


def claim_concurrently(
    make_ledger: Callable[[], Ledger], message_id: str, copy_id: str, threads: int = 2
) -> list[ClaimKind]:
    ledgers = [make_ledger() for _ in range(threads)]
    start = threading.Barrier(threads)
    kinds: list[ClaimKind] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            start.wait()
            result = ledgers[index].claim(message_id, "g1", f"drain-{index}", LEASE_S, copy_id)
            with lock:
                kinds.append(result.kind)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=10)
    assert not errors, errors
    return kinds


@pytest.mark.usefixtures("atomic_items")
def test_two_drains_claiming_a_new_id_at_once_get_exactly_one_claim(client: Any, clock: FakeClock) -> None:
    def make() -> Ledger:
        return Ledger(client, TABLE, TTL_S, clock=clock)

    for n in range(10):
        kinds = claim_concurrently(make, f"m{n}", "copy-1")
        assert sorted(k.value for k in kinds) == ["busy", "claimed"], n


@pytest.mark.usefixtures("atomic_items")
def test_many_drains_claiming_a_queued_id_at_once_get_exactly_one_claim(
    client: Any, clock: FakeClock
) -> None:
    def make() -> Ledger:
        return Ledger(client, TABLE, TTL_S, clock=clock)

    make().record_queued("m1", "g1")
    kinds = claim_concurrently(make, "m1", "copy-1", threads=6)
    assert sorted(k.value for k in kinds) == ["busy"] * 5 + ["claimed"]


class RaceAfterRead:
    """Passes calls through, but runs `meanwhile` right after the first get_item has read."""

    def __init__(self, client: Any, meanwhile: Callable[[], object]) -> None:
        self._client = client
        self._meanwhile: Callable[[], object] | None = meanwhile

    def get_item(self, **kwargs: Any) -> Any:
        response = self._client.get_item(**kwargs)
        if self._meanwhile is not None:
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_losing_the_race_to_restart_a_redriven_message_is_busy_not_an_error(
    client: Any, clock: FakeClock
) -> None:
    """Drain A reads the record as dead, drain B restarts and claims it, then A tries to restart it:
    A must be told BUSY (B holds the lease), not fail with ConditionalCheckFailedException."""
    seed = Ledger(client, TABLE, TTL_S, clock=clock)
    seed.claim("m1", "g1", "drain-x", LEASE_S, "copy-1")
    seed.settle("m1", Status.DEAD, None, "dead", counted=False, dead_copy="copy-1")
    drain_b = Ledger(client, TABLE, TTL_S, clock=clock)
    b_claims: list[Claim] = []
    drain_a = Ledger(
        RaceAfterRead(
            client, lambda: b_claims.append(drain_b.claim("m1", "g1", "drain-b", LEASE_S, "copy-2"))
        ),
        TABLE,
        TTL_S,
        clock=clock,
    )
    result = drain_a.claim("m1", "g1", "drain-a", LEASE_S, "copy-2")
    assert [c.kind for c in b_claims] == [ClaimKind.CLAIMED]
    assert result.kind is ClaimKind.BUSY
    assert raw_item(client, "m1")["owner"] == {"S": "drain-b"}
