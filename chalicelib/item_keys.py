"""The item a message was built from, as the ledger files it for search by item key (issue #27):
its partition key's value and, when the table has one, its sort key's, each as text (a string as it
is, a number as JSON writes it, a binary as base64). Pure, no I/O: ingest and submissions put it on
the message (`ITEM_KEY_ATTRIBUTE`), a backfilled message's `trickle-source-key` gives it too; the
drain hands it to the ledger with the message's first write, which files the record under it in the
index `by-item` (`item_key` the partition's text, `item_sort` the sort key's JSON, then the time of
that write and the message id, so one item's messages sort together, oldest first)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from chalicelib import strict_json
from chalicelib.freshness import SOURCE_KEY_ATTRIBUTE
from chalicelib.model import JsonValue, iso_utc

ITEM_KEY_ATTRIBUTE = "trickle-item-key"  # `[partition text, sort text or null]`, compact JSON
# What DynamoDB allows an index key's value, in bytes: 2048 for a partition key, 1024 for a sort key.
MAX_PARTITION_BYTES = 2048
MAX_SORT_BYTES = 1024
# `item_sort`: a JSON string (or null), then `<ISO UTC>#<message id>`; a JSON string is prefix-free
# (its closing quote is never inside it), so one sort key's messages share a prefix no other has.
SORT_FORM = re.compile(
    r'(?:null|"(?:[^"\\]|\\.)*")'
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z#[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    re.DOTALL,
)


@dataclass(frozen=True)
class ItemKey:
    partition: str
    sort: str | None = None


def value_text(value: JsonValue) -> str:
    """A decoded key value as text: a string as it is, anything else as JSON writes it."""
    return value if isinstance(value, str) else strict_json.dumps(value)


def of_keys(keys: Mapping[str, JsonValue], partition_key: str | None) -> ItemKey | None:
    """An item's key (decoded, `records.decode_image`) as the ledger files it. Which attribute is the
    partition key is `TRICKLE_PARTITION_KEY`'s to say; a one-attribute key needs no saying. None when
    it cannot be told (two attributes and no partition key named) or its partition is empty."""
    if partition_key is None or partition_key not in keys:
        if len(keys) != 1:
            return None
        (partition_key,) = keys
    others = [value for name, value in keys.items() if name != partition_key]
    if len(others) > 1:
        return None
    key = ItemKey(value_text(keys[partition_key]), value_text(others[0]) if others else None)
    return key if key.partition else None


def attribute(key: ItemKey) -> str:
    return json.dumps([key.partition, key.sort], ensure_ascii=False, separators=(",", ":"))


def from_attributes(attributes: Mapping[str, str], partition_key: str | None) -> ItemKey | None:
    """The item key a received message names: its `ITEM_KEY_ATTRIBUTE`, or a backfilled message's
    typed source key; None when it names none (a submission of an item without one) or it is not
    one (never a reason to refuse a message: it is only for search)."""
    text = attributes.get(ITEM_KEY_ATTRIBUTE)
    if text is not None:
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], str)
            and value[0]
            and (value[1] is None or isinstance(value[1], str))
        ):
            return ItemKey(value[0], value[1])
        return None
    source = attributes.get(SOURCE_KEY_ATTRIBUTE)
    if source is None:
        return None
    try:
        typed = json.loads(source)
    except ValueError:
        return None
    if not isinstance(typed, dict):
        return None
    return of_keys({str(name): _typed_text(value) for name, value in typed.items()}, partition_key)


def _typed_text(value: Any) -> str:
    """A typed key value (`{"S": "a"}`, `{"N": "1E+2"}`, `{"B": "<base64>"}`) as text, a number as
    the stream's decoding gives it (`records.decode_image`: whole numbers as integers)."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, text),) = value.items()
        if kind in ("S", "B") and isinstance(text, str):
            return text
        if kind == "N" and isinstance(text, str):
            try:
                number = Decimal(text)
            except InvalidOperation:
                return ""
            if number.is_finite():
                return value_text(int(number) if number == number.to_integral_value() else number)
    return ""  # not a key value: `of_keys` refuses an empty partition


def sort_prefix(sort: str | None) -> str:
    """Where one sort key's messages start in an item's partition of the index."""
    return json.dumps(sort, ensure_ascii=False)


def index_values(key: ItemKey | None, now: float, message_id: str) -> tuple[str, str]:
    """(item_key, item_sort): what files a record under its item, first written `now`; ("", ""):
    no item is known, or its key is too long for an index key (DynamoDB would refuse the write)."""
    if key is None:
        return "", ""
    sort = f"{sort_prefix(key.sort)}{iso_utc(now)}#{message_id}"
    if len(key.partition.encode()) > MAX_PARTITION_BYTES or len(sort.encode()) > MAX_SORT_BYTES:
        return "", ""
    return key.partition, sort


def read_sort(item_sort: str) -> str | None:
    """The sort key's text back from an `item_sort` (None: the table has none, or it is not one)."""
    try:
        sort, _ = json.JSONDecoder().raw_decode(item_sort)
    except ValueError:
        return None
    return sort if isinstance(sort, str) else None
