"""The delivered archive end to end (issue #26): a drain run on the emulator delivers over real HTTP
to the stand-in API, one request per message or in batches, and leaves one encrypted object in the
stage's bucket whose records the replay's reader gives back: exactly the bodies the stand-in got
(a batch's items without the id the batch adds), each group in the order delivered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.delivered_archive import DeliveredReader
from chalicelib.settings import load_settings
from tests.integration.conftest import Stack
from trickle_local.standin_bulk import MAX_BODY_BYTES, endpoint_for

BULK = {
    "TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "10",
    "TRICKLE_DEST_ORDERS_PATH": "/bulk",
    "TRICKLE_DEST_ORDERS_BATCH_WRAPPER": "{records: @}",
    "TRICKLE_DEST_ORDERS_BATCH_RESULTS": "results[].status",
}


def by_group(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(id, body) pairs as bodies per item partition key, in order."""
    seen: dict[str, list[str]] = {}
    for _, body in pairs:
        seen.setdefault(json.loads(body)["keys"]["pk"], []).append(body)
    return seen


@pytest.mark.parametrize("batched", [False, True], ids=["one-per-request", "batched"])
def test_a_drain_run_leaves_one_object_holding_exactly_what_the_api_received(
    stack_factory: Any, batched: bool
) -> None:
    stack: Stack = stack_factory(**(BULK if batched else {}))
    if batched:
        stack.api.bulk = endpoint_for(load_settings(stack.env).destination("orders"), MAX_BODY_BYTES)
    stack.fill(groups=3, per_group=4)
    started = datetime.now(UTC)

    report = stack.drain()

    assert (report["delivered"], report["stopped_by"]) == (12, "empty")
    s3, bucket = stack.aws["s3"], stack.env["TRICKLE_ARCHIVE_BUCKET"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="delivered/")["Contents"]
    assert len(listed) == 1 and listed[0]["Key"].startswith("delivered/orders/")
    head = s3.head_object(Bucket=bucket, Key=listed[0]["Key"])
    assert head["ServerSideEncryption"] == "AES256"

    reader = DeliveredReader(s3, bucket)
    records = list(
        reader.records("orders", started - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1))
    )
    assert reader.skipped == []
    archived = [(r.message_id, r.body) for r in records]
    if batched:
        assert len(stack.api.requests) < 12  # the items did go in batches
        # each item as the request carried it: the archived body with its message id in "id"
        received = [(str(i.id), json.loads(i.body)) for i in stack.api.applied_items()]
        assert sorted(received) == sorted((i, json.loads(body) | {"id": i}) for i, body in archived)
    else:
        received = [(i.id, i.body) for i in stack.api.applied_items()]  # id: the Idempotency-Key
        assert sorted(received) == sorted(archived)
    in_order = {
        pk: [json.loads(b)["keys"]["sk"] for b in bodies] for pk, bodies in by_group(archived).items()
    }
    assert in_order == {f"g{g}": [f"{n:03}" for n in range(4)] for g in range(3)}  # each group as delivered
    assert all(started - timedelta(seconds=1) <= r.delivered_at <= datetime.now(UTC) for r in records)
