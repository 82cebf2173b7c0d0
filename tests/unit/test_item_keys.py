"""The item a message was built from, as the ledger files it for search by item key (issue #27,
chalicelib/item_keys.py): tables of keys, attributes and index values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib.freshness import SOURCE_KEY_ATTRIBUTE
from chalicelib.item_keys import (
    ITEM_KEY_ATTRIBUTE,
    SORT_FORM,
    ItemKey,
    attribute,
    from_attributes,
    index_values,
    of_keys,
    read_sort,
    sort_prefix,
)

ID = "0b1f5a57-9d8e-4a56-9a0f-5d6c1e1a7a11"
START = 1_767_225_600.25


@pytest.mark.parametrize(
    ("keys", "partition_key", "expected"),
    [
        ({"pk": "CUSTOMER#1", "sk": "ORDER#2"}, "pk", ItemKey("CUSTOMER#1", "ORDER#2")),
        ({"sk": "ORDER#2", "pk": "CUSTOMER#1"}, "pk", ItemKey("CUSTOMER#1", "ORDER#2")),  # any order
        ({"id": "a"}, None, ItemKey("a")),  # one attribute: it is the partition key
        ({"id": "a"}, "pk", ItemKey("a")),
        ({"pk": "a", "sk": "b"}, None, None),  # which is which cannot be told
        ({"tenant": 7, "n": Decimal("1.50")}, "tenant", ItemKey("7", "1.50")),
        ({"pk": "", "sk": "b"}, "pk", None),  # no empty index key
        ({"pk": "a", "sk": ""}, "pk", ItemKey("a", "")),
        ({}, "pk", None),
    ],
)
def test_an_item_key_is_its_partition_and_sort_values_as_text(
    keys: dict[str, Any], partition_key: str | None, expected: ItemKey | None
) -> None:
    assert of_keys(keys, partition_key) == expected


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({ITEM_KEY_ATTRIBUTE: '["c1","PROFILE"]'}, ItemKey("c1", "PROFILE")),
        ({ITEM_KEY_ATTRIBUTE: '["c1",null]'}, ItemKey("c1")),
        ({ITEM_KEY_ATTRIBUTE: attribute(ItemKey('"<q>"', "é"))}, ItemKey('"<q>"', "é")),
        ({ITEM_KEY_ATTRIBUTE: "not json"}, None),  # never a reason to refuse the message
        ({ITEM_KEY_ATTRIBUTE: '["", "x"]'}, None),
        ({ITEM_KEY_ATTRIBUTE: '["a"]'}, None),
        ({ITEM_KEY_ATTRIBUTE: '{"pk": "a"}'}, None),
        ({ITEM_KEY_ATTRIBUTE: '["a", 1]'}, None),
        # a backfilled message's typed source key; numbers as the stream's decoding gives them
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"S":"c1"},"sk":{"S":"PROFILE"}}'}, ItemKey("c1", "PROFILE")),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"N":"1E+2"},"sk":{"N":"0.50"}}'}, ItemKey("100", "0.50")),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"B":"AAE="}}'}, ItemKey("AAE=")),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"N":"NaN"}}'}, None),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"BOOL":true}}'}, None),
        ({SOURCE_KEY_ATTRIBUTE: "[1]"}, None),
        ({}, None),
    ],
)
def test_a_received_message_names_its_item(attributes: dict[str, str], expected: ItemKey | None) -> None:
    assert from_attributes(attributes, "pk") == expected


def test_index_values_sort_one_item_s_messages_together_by_time() -> None:
    key, sort = index_values(ItemKey("c1", "PROFILE"), START, ID)
    assert (key, sort) == ("c1", f'"PROFILE"2026-01-01T00:00:00.250Z#{ID}')
    assert SORT_FORM.fullmatch(sort) and read_sort(sort) == "PROFILE"
    assert sort.startswith(sort_prefix("PROFILE"))
    assert not index_values(ItemKey("c1", 'PROFILE"x'), START, ID)[1].startswith(sort_prefix("PROFILE"))
    _, none = index_values(ItemKey("c1"), START, ID)
    assert (none, read_sort(none)) == (f"null2026-01-01T00:00:00.250Z#{ID}", None)
    assert SORT_FORM.fullmatch(none)


@pytest.mark.parametrize(
    "key",
    [None, ItemKey("x" * 2049), ItemKey("a", "é" * 490)],  # over DynamoDB's index key limits, in bytes
)
def test_no_item_or_one_too_long_for_an_index_key_is_not_filed(key: ItemKey | None) -> None:
    assert index_values(key, START, ID) == ("", "")
