"""The stand-in's bulk endpoint, item by item: what a body holds, what becomes of each item, the
answer, and where a destination's wrapper puts the array."""

from __future__ import annotations

import json
from collections.abc import Callable

import jmespath
import pytest

from chalicelib.routing import Expression
from chalicelib.settings import Settings
from trickle_local.standin_bulk import (
    Bulk,
    Item,
    ItemResult,
    UnservedBatchError,
    WrapperError,
    answer,
    array_at,
    endpoint_for,
    items_of,
    judge,
    whole,
)

MakeSettings = Callable[..., Settings]

BARE = Bulk("/bulk")
WRAPPED = Bulk("/bulk", array_at=("records",))
NESTED = Bulk("/bulk", array_at=("data", "items"), id_field="key")


@pytest.mark.parametrize(
    ("body", "bulk", "items"),
    [
        ('[{"id":"m1","n":1},{"id":"m2","n":2}]', BARE,
         [Item("m1", '{"id":"m1","n":1}'), Item("m2", '{"id":"m2","n":2}')]),
        ('{"records":[{"id":"m1"}]}', WRAPPED, [Item("m1", '{"id":"m1"}')]),
        ('{"data":{"items":[{"key":"k","id":"x"}]}}', NESTED, [Item("k", '{"key":"k","id":"x"}')]),
        # numbers exactly as sent: what a poison marker is looked for in, and what the audit reads
        ('[{"id":"m1","exact":12345678901234567890.123456789}]', BARE,
         [Item("m1", '{"id":"m1","exact":12345678901234567890.123456789}')]),
        # an item without a usable id is still an item: its own 400, the others go on
        ('[{"n":1},"text",{"id":7},{"id":""},{"id":"m5"}]', BARE,
         [Item(None, '{"n":1}'), Item(None, '"text"'), Item(None, '{"id":7}'), Item(None, '{"id":""}'),
          Item("m5", '{"id":"m5"}')]),
    ],
)  # fmt: skip
def test_the_items_of_a_batch_in_order(body: str, bulk: Bulk, items: list[Item]) -> None:
    assert items_of(body.encode(), bulk) == items


NOT_A_BATCH = "the body is not a batch: this endpoint takes"


@pytest.mark.parametrize(
    ("body", "bulk", "reason"),
    [
        ('{"id":"m1"}', BARE, f"{NOT_A_BATCH} [{{\"id\": ...}}, ...]"),
        ('[{"id":"m1"}]', WRAPPED, f'{NOT_A_BATCH} {{"records": [{{"id": ...}}, ...]}}'),
        ('{"records":{"id":"m1"}}', WRAPPED, f'{NOT_A_BATCH} {{"records": [{{"id": ...}}, ...]}}'),
        ('{"data":[]}', NESTED, f'{NOT_A_BATCH} {{"data": {{"items": [{{"key": ...}}, ...]}}}}'),
        ("[]", BARE, "the batch is empty"),
        ('{"records":[]}', WRAPPED, "the batch is empty"),
        ("[{", BARE, "the body is not valid JSON"),
        ('[{"id":"a","id":"b"}]', BARE, 'the key "id" appears twice in one object'),
    ],
)  # fmt: skip
def test_a_body_that_is_not_a_batch_is_refused_saying_what_the_endpoint_takes(
    body: str, bulk: Bulk, reason: str
) -> None:
    found = items_of(body.encode(), bulk)
    assert isinstance(found, str)
    assert found.startswith(reason)


M1 = Item("m1", '{"id":"m1","sk":"7"}')
POISON = frozenset({'"sk":"7"'})


@pytest.mark.parametrize(
    ("item", "seen", "poison", "failed", "status", "applied", "note"),
    [
        (M1, False, frozenset(), False, 200, True, ""),
        (M1, True, frozenset(), False, 200, False, "replayed"),  # an id applied before: not again
        (M1, True, POISON, True, 200, False, "replayed"),  # ... whatever else holds
        (M1, False, POISON, False, 400, False, "poison item rejected"),
        (M1, False, POISON, True, 400, False, "poison item rejected"),  # poison is not retryable
        (M1, False, frozenset({"other"}), True, 503, False, "unavailable"),
        (Item(None, '{"n":1}'), False, frozenset(), False, 400, False,
         "an item must be a JSON object with a non-empty string 'id'"),
    ],
)  # fmt: skip
def test_each_item_is_judged_on_its_own(
    item: Item, seen: bool, poison: frozenset[str], failed: bool, status: int, applied: bool, note: str
) -> None:
    assert judge(item, BARE, seen=seen, poison=poison, failed=failed) == ItemResult(
        item.id, item.text, status, applied, note
    )


def test_the_answer_has_a_result_per_item_in_order_and_is_multi_status_unless_all_succeeded() -> None:
    done = ItemResult("m1", "{}", 200, True)
    again = ItemResult("m2", "{}", 200, False, "replayed")
    failed = ItemResult("m3", "{}", 503, False, "unavailable")
    nameless = ItemResult(None, "{}", 400, False, "no id")

    assert answer([done, again]) == (
        200,
        json.dumps({"results": [{"id": "m1", "status": 200}, {"id": "m2", "status": 200, "replayed": True}]}),
    )
    status, body = answer([failed, done, nameless])
    assert status == 207
    assert json.loads(body) == {
        "results": [
            {"id": "m3", "status": 503, "error": "unavailable"},
            {"id": "m1", "status": 200},
            {"id": None, "status": 400, "error": "no id"},
        ]
    }
    assert jmespath.search("results[].status", json.loads(body)) == [503, 200, 400]


def test_a_request_answered_as_a_whole_applies_none_of_its_items() -> None:
    assert whole([M1, Item(None, "1")], 429, "slow down") == (
        ItemResult("m1", M1.text, 429, False, "slow down"),
        ItemResult(None, "1", 429, False, "slow down"),
    )


@pytest.mark.parametrize(
    ("wrapper", "keys"),
    [
        (None, ()),
        ("@", ()),
        ("{records: @}", ("records",)),
        ("{data: {items: @}, count: length(@)}", ("data", "items")),
        ("{count: length(@), records: @}", ("records",)),
    ],
)
def test_where_a_destinations_wrapper_puts_the_array(wrapper: str | None, keys: tuple[str, ...]) -> None:
    assert array_at(None if wrapper is None else Expression.compile(wrapper)) == keys


@pytest.mark.parametrize("wrapper", ["{records: @[*].body}", "length(@)", "{first: @[0]}"])
def test_a_wrapper_that_does_not_keep_the_array_whole_is_refused(wrapper: str) -> None:
    with pytest.raises(WrapperError, match="does not put the list of items anywhere whole"):
        array_at(Expression.compile(wrapper))


MIB = 1_048_576


@pytest.mark.parametrize(
    ("fields", "bulk"),
    [
        ({}, None),  # one message a request: no bulk endpoint
        ({"BATCH_MAX_ITEMS": "10"}, Bulk("/items", (), "id", MIB)),
        (
            {"BATCH_MAX_ITEMS": "10", "BATCH_WRAPPER": "{records: @}", "BATCH_MAX_BYTES": str(MIB)},
            Bulk("/items", ("records",), "id", MIB),
        ),
        (  # at the fixed path the batches go to, the ids in their field
            {"BATCH_MAX_ITEMS": "2", "PATH": "/bulk", "BATCH_ID_FIELD": "key"},
            Bulk("/items/bulk", (), "key", MIB),
        ),
    ],
)
def test_a_batched_destinations_stand_in_takes_its_requests_where_they_go(
    make_settings: MakeSettings, fields: dict[str, str], bulk: Bulk | None
) -> None:
    settings = make_settings(**{f"TRICKLE_DEST_ORDERS_{name}": value for name, value in fields.items()})
    assert endpoint_for(settings.destination("orders"), MIB) == bulk


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"BATCH_MAX_ITEMS": "10", "BATCH_MAX_BYTES": str(MIB + 1)},
            "destination 'orders': batch_max_bytes=1048577 is over the 1048576 bytes its stand-in takes"
            " (--bulk-max-bytes): lower it (batch_max_bytes in the routes file, or"
            " TRICKLE_DEST_ORDERS_BATCH_MAX_BYTES), or raise --bulk-max-bytes",
        ),
        (
            {"BATCH_MAX_ITEMS": "10", "BATCH_WRAPPER": "{count: length(@)}"},
            "destination 'orders': the batch wrapper '{count: length(@)}' does not put the list of items"
            " anywhere whole, so the stand-in cannot find the items in a request",
        ),
    ],
)
def test_a_batched_destination_its_stand_in_cannot_serve_is_refused_in_one_line(
    make_settings: MakeSettings, fields: dict[str, str], error: str
) -> None:
    settings = make_settings(**{f"TRICKLE_DEST_ORDERS_{name}": value for name, value in fields.items()})
    with pytest.raises(UnservedBatchError) as raised:
        endpoint_for(settings.destination("orders"), MIB)
    assert str(raised.value) == error
