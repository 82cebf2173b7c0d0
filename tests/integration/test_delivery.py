"""What each API response does, end to end on the emulator and the stand-in API (delivery guarantees)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import wiring
from chalicelib.dead_letters import RedriveFilter, Redriver
from chalicelib.fifo_queue import FifoQueue
from chalicelib.model import Status
from tests.fakes import until
from tests.integration.conftest import API_KEY, EMULATOR, Stack
from trickle_deploy.operate import main as operate
from trickle_deploy.operate import redrive
from trickle_local.standin_api import Reply


def keyed(status: int, when: Any, body: str = "{}", headers: dict[str, str] | None = None) -> Any:
    """A responder answering `status` for requests whose body matches `when`."""

    def respond(request_body: str, request_headers: dict[str, str]) -> Reply | None:
        return Reply(status, body, headers or {}) if when(json.loads(request_body)["keys"]) else None

    return respond


def applied_keys(stack: Stack) -> list[tuple[str, str]]:
    return [(r.json()["keys"]["pk"], r.json()["keys"]["sk"]) for r in stack.api.applied()]  # type: ignore[index]


def ledger(message_id: str) -> Any:
    return wiring.ledger("orders").get(message_id)


def test_429_stops_the_run_and_holds_messages_until_retry_after_without_counting(stack: Stack) -> None:
    stack.fill(groups=3, per_group=2)
    stack.api.responder = lambda body, headers: Reply(429, "{}", {"Retry-After": "2"})

    report = stack.drain()

    assert report["stopped_by"] == "saturated"
    # nothing more was sent to a saturated destination than the workers had under way (2)
    assert 1 <= len(stack.api.requests) <= 2
    assert report["saturated"] == len(stack.api.requests)
    assert all(ledger(r.idempotency_key).attempts == 0 for r in stack.api.requests)
    stack.api.responder = None
    assert stack.drain()["received"] == 0  # still hidden: Retry-After not over
    reports = stack.drain_until(lambda _: len(stack.api.applied()) == 6)
    assert sum(r["delivered"] for r in reports) == 6


def test_503_with_an_http_date_retry_after_is_saturation_too(stack: Stack) -> None:
    stack.fill(groups=1, per_group=2)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    stack.api.responder = lambda body, headers: Reply(503, "{}", {"Retry-After": later})

    report = stack.drain()

    assert report["stopped_by"] == "saturated"
    assert ledger(stack.api.requests[0].idempotency_key).attempts == 0


def test_5xx_is_retried_with_backoff_and_dead_lettered_after_max_attempts_with_its_reason(
    stack_factory: Any,
) -> None:
    stack: Stack = stack_factory(TRICKLE_DEST_ORDERS_MAX_ATTEMPTS="3", TRICKLE_DEST_ORDERS_BACKOFF_CAP_S="1")
    stack.fill(groups=1, per_group=3)
    stack.api.responder = keyed(500, lambda k: k["sk"] == "000", body='{"error":"boom"}')

    reports = stack.drain_until(lambda r: r["dead_lettered"])

    (dead,) = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert json.loads(dead["Body"])["keys"] == {"pk": "g0", "sk": "000"}
    assert attributes["trickle-attempts"] == "3"
    assert attributes["trickle-status-code"] == "500"
    assert "gave up after 3 attempts" in attributes["trickle-reason"]
    assert attributes["trickle-response-excerpt"] == '{"error":"boom"}'
    assert attributes["trickle-first-attempt-at"] < attributes["trickle-last-attempt-at"]
    assert applied_keys(stack) == [("g0", "001"), ("g0", "002")]  # skip mode: the group moved on
    assert [r["retried"] for r in reports] == [1, 1, 0]
    assert reports[2]["dead_lettered"] == 1


def test_messages_behind_a_failing_head_are_never_dead_lettered_unattempted(stack_factory: Any) -> None:
    stack: Stack = stack_factory(TRICKLE_DEST_ORDERS_MAX_ATTEMPTS="2", TRICKLE_DEST_ORDERS_BACKOFF_CAP_S="1")
    stack.fill(groups=1, per_group=4)
    stack.api.responder = keyed(500, lambda k: k["sk"] == "000")

    stack.drain_until(lambda r: r["dead_lettered"])
    stack.api.responder = None
    stack.drain()

    dead = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    assert [json.loads(m["Body"])["keys"]["sk"] for m in dead] == ["000"]
    assert applied_keys(stack) == [("g0", "001"), ("g0", "002"), ("g0", "003")]


def test_a_rotated_key_is_re_read_from_ssm_once_and_not_counted(stack: Stack) -> None:
    stack.fill(groups=1, per_group=3)
    stack.drain()  # caches the current key
    stack.fill(groups=1, per_group=2, prefix="h")
    stack.aws["ssm"].put_parameter(
        Name="/trickle/local/orders-api-key", Value="rotated", Type="SecureString", Overwrite=True
    )
    stack.api.faults.api_key = "rotated"

    report = stack.drain()

    assert report["delivered"] == 2
    rejected = [r for r in stack.api.requests if r.status == 401]
    assert len(rejected) == 1
    assert ledger(rejected[0].idempotency_key).attempts == 1  # the 2xx only


def test_a_key_still_refused_after_re_reading_stops_the_run(
    stack: Stack, capfd: pytest.CaptureFixture[str]
) -> None:
    stack.fill(groups=2, per_group=2)
    stack.api.faults.api_key = "something-else"

    report = stack.drain()

    assert report["stopped_by"] == "auth"
    # The key is read again from SSM once; it is the same key, so nothing is sent twice with it
    # (issue 24: a second try goes only with renewed credentials). At most one from the other worker.
    tries = Counter(r.idempotency_key for r in stack.api.requests)
    assert sorted(tries.values()) in ([1], [1, 1])
    assert all(ledger(message_id).attempts == 0 for message_id in tries)
    err = capfd.readouterr().err
    assert "refused the credentials even after renewing them" in err
    assert API_KEY not in err


def test_a_permanent_4xx_is_dead_lettered_at_once_and_the_group_moves_on(stack: Stack) -> None:
    stack.fill(groups=2, per_group=3)
    stack.api.faults.poison = frozenset({'"sk":"001"'})

    report = stack.drain()

    assert report["dead_lettered"] == 2
    assert sorted(applied_keys(stack)) == sorted((f"g{g}", s) for g in range(2) for s in ("000", "002"))
    dead = stack.take_messages("TRICKLE_DEST_ORDERS_DLQ_URL")
    assert {m["MessageAttributes"]["trickle-status-code"]["StringValue"] for m in dead} == {"400"}
    assert all("refused by the API" in m["MessageAttributes"]["trickle-reason"]["StringValue"] for m in dead)


def test_strict_ordering_halts_the_group_until_an_operator_acts(stack_factory: Any) -> None:
    stack: Stack = stack_factory(TRICKLE_DEST_ORDERS_ORDERING="strict", TRICKLE_DEST_ORDERS_BACKOFF_CAP_S="1")
    stack.fill(groups=2, per_group=3)
    stack.api.faults.poison = frozenset({'"pk":"g0","sk":"001"'})

    report = stack.drain()

    assert report["halted"] == 1
    assert applied_keys(stack).count(("g0", "002")) == 0
    assert {k for k in applied_keys(stack) if k[0] == "g1"} == {("g1", "000"), ("g1", "001"), ("g1", "002")}
    halted_id = next(r.idempotency_key for r in stack.api.requests if r.status == 400)
    stack.drain_until(lambda r: r["received"])  # the halted head is back, looked at
    assert ledger(halted_id).status is Status.HALTED  # still halted: no operator yet
    assert len([r for r in stack.api.requests if r.status == 400]) == 1  # and not tried again

    assert operate(["--stage", "local", "--endpoint", stack.env["AWS_ENDPOINT_URL"], "skip", halted_id]) == 0
    stack.drain_until(lambda _: ("g0", "002") in applied_keys(stack))

    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 1


def test_the_breaker_ends_a_run_after_consecutive_retryable_failures(stack_factory: Any) -> None:
    stack: Stack = stack_factory(TRICKLE_BREAKER_FAILURES="3")
    stack.fill(groups=6, per_group=1)
    stack.api.responder = lambda body, headers: Reply(502, "{}")

    report = stack.drain()

    assert report["stopped_by"] == "breaker"
    assert (
        3 <= len(stack.api.requests) <= 4
    )  # the third failure trips it; the other worker may have one under way


def test_the_rate_limit_spaces_requests(stack_factory: Any) -> None:
    stack: Stack = stack_factory(
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="20", TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST="2"
    )
    stack.fill(groups=2, per_group=6)

    stack.drain()

    arrivals = [r.arrived_at for r in stack.api.requests]
    assert len(arrivals) == 12
    assert arrivals[-1] - arrivals[0] >= (12 - 2) / 20 * 0.9


def test_a_drain_that_dies_between_the_2xx_and_the_delete_does_not_deliver_again(stack_factory: Any) -> None:
    stack: Stack = stack_factory(
        TRICKLE_VISIBILITY_TIMEOUT_SECONDS="3",
        TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S="0.5",
        TRICKLE_DEST_ORDERS_READ_TIMEOUT_S="0.5",
        TRICKLE_DEST_CRM_CONNECT_TIMEOUT_S="0.5",
        TRICKLE_DEST_CRM_READ_TIMEOUT_S="0.5",
    )
    stack.fill(groups=2, per_group=2)
    wiring.reset()

    def die(**_: Any) -> None:
        raise RuntimeError("Lambda timed out")

    wiring.client("sqs").meta.events.register("before-call.sqs.DeleteMessageBatch", die)
    with pytest.raises(RuntimeError):
        stack.drain()
    wiring.reset()
    delivered_once = len(stack.api.applied())

    reports = stack.drain_until(lambda _: stack.queue_depth() == 0)  # once their visibility lapses

    assert sum(r["already_delivered"] for r in reports) >= 1
    assert len(stack.api.applied()) == 4
    assert len(stack.api.requests) == 4  # nothing delivered before the crash was sent again
    assert delivered_once >= 1
    assert stack.queue_depth() == 0


def test_two_copies_of_one_message_in_one_round_are_delivered_once(stack: Stack) -> None:
    """A replay after SQS's deduplication window can queue a second copy while the first still
    waits; both come back in one receive, and the round's ledger view must see the first delivered
    before it reaches the second."""
    stack.put_items([stack.item("a", "1")])
    stack.ingest_new()
    (original,) = stack.take_messages()
    for dedup in ("copy-1", "copy-2"):
        stack.aws["sqs"].send_message(
            QueueUrl=stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"],
            MessageBody=original["Body"],
            MessageGroupId=original["Attributes"]["MessageGroupId"],
            MessageDeduplicationId=dedup,
            MessageAttributes=original["MessageAttributes"],
        )

    report = stack.drain()

    assert (report["received"], report["delivered"], report["already_delivered"]) == (2, 1, 1)
    assert len(stack.api.requests) == 1
    assert stack.queue_depth() == 0


def test_a_ledger_that_cannot_record_deliveries_stops_the_run_before_any_delete(stack: Stack) -> None:
    """A message is deleted only once the ledger says delivered; if DynamoDB refuses the round's
    write, the messages stay queued and come back (the API's Idempotency-Key covers the resend)."""
    stack.fill(groups=2, per_group=2)
    wiring.reset()

    def throttled(**_: Any) -> None:
        raise RuntimeError("ProvisionedThroughputExceededException")

    wiring.client("dynamodb").meta.events.register("before-call.dynamodb.BatchWriteItem", throttled)
    with pytest.raises(RuntimeError):
        stack.drain()
    wiring.reset()

    assert len(stack.api.applied()) >= 1
    assert stack.queue_depth() == 4
    lookups = [stack.http("GET", f"/messages/{r.idempotency_key}") for r in stack.api.applied()]
    assert {response.status_code for response in lookups} == {404}
    assert all("no delivery attempt is recorded" in json.loads(r.body)["Message"] for r in lookups)


def test_a_clean_run_reads_and_writes_the_ledger_once_per_round(stack_factory: Any) -> None:
    """No DynamoDB call per message on the happy path: one read and one write per receive round."""
    stack: Stack = stack_factory(TRICKLE_DRAIN_WORKERS="1")
    stack.fill(groups=1, per_group=10)
    first = len(stack.recorder.calls)

    report = stack.drain()

    ledger_calls = Counter(c.operation for c in stack.recorder.calls[first:] if c.service == "dynamodb")
    assert report["delivered"] == 10
    # PutItem: the run lease and the run note; DeleteItem: the lease given back; GetItem: the pause
    # note, the open redrive jobs (none) and the last run's note (what it left in the queue);
    # UpdateItem: the running totals
    assert ledger_calls == {
        "BatchGetItem": 1,
        "BatchWriteItem": 1,
        "PutItem": 2,
        "DeleteItem": 1,
        "GetItem": 3,
        "UpdateItem": 1,
    }


def test_a_stream_replay_after_delivery_is_not_delivered_again(stack: Stack) -> None:
    stack.put_items([stack.item("a", "1"), stack.item("a", "2")])
    event = stack.stream_event()
    stack.ingest(event)
    stack.drain()

    stack.ingest(event)
    report = stack.drain()

    # Within 5 minutes SQS drops the replay as a duplicate (ministack does, as AWS); after that it is
    # queued again and the ledger knows it was delivered (moto forgets deduplication ids at delete,
    # so it shows that case now; test_emulator_gaps pins the difference).
    caught_by = {"moto": "ledger", "ministack": "deduplication"}[EMULATOR]
    assert (report["received"], report["already_delivered"]) == {"ledger": (2, 2), "deduplication": (0, 0)}[
        caught_by
    ]
    assert len(stack.api.requests) == 2


def test_poison_fixed_then_redriven_is_delivered_with_fresh_attempts(stack: Stack) -> None:
    stack.fill(groups=2, per_group=3)
    stack.api.faults.poison = frozenset({'"sk":"001"'})
    stack.drain()
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 2
    stack.api.faults.poison = frozenset()

    report = redrive(stack.aws["sqs"], stack.env, "orders", RedriveFilter())

    assert report.method == "copy"  # neither emulator has StartMessageMoveTask (test_emulator_gaps)
    assert report.moved == 2
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 0
    stack.drain()
    assert sorted(applied_keys(stack)) == sorted((f"g{g}", f"{i:03}") for g in range(2) for i in range(3))
    redriven = [r for r in stack.api.requests if r.status == 200 and '"sk":"001"' in r.body]
    assert all(ledger(r.idempotency_key).attempts == 1 for r in redriven)


def test_redrive_by_group_leaves_other_groups_and_ingest_rejections_in_place(stack_factory: Any) -> None:
    stack: Stack = stack_factory(TRICKLE_MAX_MESSAGE_BYTES="4096")
    stack.put_items([stack.item("g0", "000", big={"S": "x" * 5000})])
    stack.fill(groups=2, per_group=2)
    stack.api.faults.poison = frozenset({'"sk":"001"'})
    stack.drain()
    stack.api.faults.poison = frozenset()
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 3

    report = redrive(
        stack.aws["sqs"], stack.env, "orders", RedriveFilter(groups={'trickle-local-items#"g1"'})
    )

    assert report.moved == 1
    assert report.skipped_by_filter == 1
    assert report.skipped_not_redrivable == 1
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 2


def test_an_interrupted_redrive_neither_loses_nor_duplicates(stack: Stack) -> None:
    stack.fill(groups=1, per_group=3)
    stack.api.faults.poison = frozenset({'"sk":"001"'})
    stack.drain()
    stack.api.faults.poison = frozenset()
    sqs = stack.aws["sqs"]
    redriver = Redriver(
        sqs,
        FifoQueue(sqs, stack.env["TRICKLE_DEST_ORDERS_DLQ_URL"]),
        FifoQueue(sqs, stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]),
        1,
    )

    def killed(**_: Any) -> None:
        raise RuntimeError("killed after the copy was sent, before the dead letter was deleted")

    sqs.meta.events.register("before-call.sqs.DeleteMessageBatch", killed)
    with pytest.raises(RuntimeError):
        redriver.redrive(use_move_task=False)
    sqs.meta.events.unregister("before-call.sqs.DeleteMessageBatch", killed)
    stack.drain()  # the copy is delivered and deleted

    second = until(lambda: redriver.redrive(use_move_task=False).moved)  # once the original is visible
    stack.drain()

    assert second == 1  # copied again (SQS drops it as a duplicate within 5 min; moto queues it)
    assert applied_keys(stack).count(("g0", "001")) == 1  # the ledger knew it was delivered
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 0
    assert stack.queue_depth() == 0


def test_a_redrive_whose_copy_cannot_be_queued_keeps_the_dead_letter(stack: Stack) -> None:
    """Issue 18 (2): the source queue refuses the copy; deleting the dead letter would lose it."""
    stack.fill(groups=1, per_group=2)
    stack.api.faults.poison = frozenset({'"sk":"000"'})
    stack.drain()
    stack.api.faults.poison = frozenset()
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 1
    sqs, source = stack.aws["sqs"], stack.env["TRICKLE_DEST_ORDERS_QUEUE_URL"]

    def refuse_source(params: dict[str, Any], **_: Any) -> None:
        if params["QueueUrl"] == source:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "refused"}}, "SendMessageBatch")

    sqs.meta.events.register("before-parameter-build.sqs.SendMessageBatch", refuse_source)
    try:
        failed = redrive(sqs, stack.env, "orders", RedriveFilter(), use_move_task=False)
    finally:
        sqs.meta.events.unregister("before-parameter-build.sqs.SendMessageBatch", refuse_source)

    assert (failed.moved, failed.failed) == (0, 1)
    assert stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL") == 1
    assert stack.queue_depth() == 0

    moved = redrive(sqs, stack.env, "orders", RedriveFilter(), use_move_task=False)
    stack.drain()

    assert (moved.moved, stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL")) == (1, 0)
    assert applied_keys(stack).count(("g0", "000")) == 1


def test_an_operator_retry_gives_a_halted_message_fresh_attempts(stack_factory: Any) -> None:
    """Issue 18 (7): `operate retry` resets the attempts, so the message gets max-attempts tries again."""
    stack: Stack = stack_factory(
        TRICKLE_DEST_ORDERS_ORDERING="strict",
        TRICKLE_DEST_ORDERS_MAX_ATTEMPTS="2",
        TRICKLE_DEST_ORDERS_BACKOFF_BASE_S="1",
    )
    stack.fill(groups=1, per_group=1)
    stack.api.faults.poison = frozenset({'"sk":"000"'})
    stack.drain()
    halted_id = next(r.idempotency_key for r in stack.api.requests if r.status == 400)
    assert (ledger(halted_id).status, ledger(halted_id).attempts) == (Status.HALTED, 1)

    endpoint = stack.env["AWS_ENDPOINT_URL"]
    assert operate(["--stage", "local", "--endpoint", endpoint, "retry", halted_id]) == 0

    assert (ledger(halted_id).status, ledger(halted_id).attempts) == (Status.FAILED, 0)
