"""The stand-in API's bulk endpoint, as APIs that take arrays behave: a JSON array of items (bare, or
inside the object a destination's `batch_wrapper` makes, e.g. `{"records": [...]}`), each item a
JSON object carrying its own id, applied on its own (an id already applied is not applied again),
answered with one result per item in the request's order. Pure functions over a request's bytes;
`trickle_local.standin_api` serves them and keeps what was applied. `endpoint_for` is the endpoint a
batched destination's stand-in serves, or why it cannot serve that destination's requests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from chalicelib import naming
from chalicelib.bulk import Query
from chalicelib.settings import Destination
from chalicelib.strict_json import JsonInputError, dumps, loads

MAX_BODY_BYTES = 6 * 1024 * 1024  # takes any request a drain may send (its batch_max_bytes <= 6 MB)


@dataclass(frozen=True)
class Bulk:
    """Where the bulk endpoint is (`path`, exactly, the query aside), where the array sits in the
    body (`array_at`: the keys from the top, () for a bare array), which field of an item carries
    its id, and the largest body it takes (a 413 beyond)."""

    path: str
    array_at: tuple[str, ...] = ()
    id_field: str = "id"
    max_bytes: int = MAX_BODY_BYTES

    def shape(self) -> str:
        """The body it takes, as a user would write it."""
        inner = f'[{{"{self.id_field}": ...}}, ...]'
        for key in reversed(self.array_at):
            inner = f'{{"{key}": {inner}}}'
        return inner


@dataclass(frozen=True)
class Item:
    """One item as received: its id (None when it is not an object with a string id) and its JSON,
    numbers exactly as sent (what poison markers are looked for in, and what the listing shows)."""

    id: str | None
    text: str


@dataclass(frozen=True)
class ItemResult:
    """What became of one item: the status answered for it and whether the API applied it."""

    id: str | None
    body: str
    status: int
    applied: bool
    note: str = ""  # why it was not applied: "replayed", "poison item rejected", ...


def items_of(raw: bytes, bulk: Bulk) -> list[Item] | str:
    """The request's items in order, or why the body is not a batch this endpoint takes (a 400)."""
    try:
        found: Any = loads(raw)
    except JsonInputError as exc:
        return f"{exc}; this endpoint takes {bulk.shape()}"
    for key in bulk.array_at:
        found = found.get(key) if isinstance(found, dict) else None
    if not isinstance(found, list):
        return f"the body is not a batch: this endpoint takes {bulk.shape()}"
    if not found:
        return "the batch is empty"
    return [Item(_id(item, bulk.id_field), dumps(item)) for item in found]


def _id(item: object, field: str) -> str | None:
    value = item.get(field) if isinstance(item, dict) else None
    return value if isinstance(value, str) and value else None


def judge(item: Item, bulk: Bulk, *, seen: bool, poison: frozenset[str], failed: bool) -> ItemResult:
    """One item's result: refused without an id (400), answered 200 but not applied again when its
    id was applied before (`seen`), refused when it carries a poison marker (400), failed by the
    item error rate (503, not applied), else applied (200)."""
    if item.id is None:
        reason = f"an item must be a JSON object with a non-empty string {bulk.id_field!r}"
        return ItemResult(None, item.text, 400, False, reason)
    if seen:
        return ItemResult(item.id, item.text, 200, False, "replayed")
    if any(marker in item.text for marker in poison):
        return ItemResult(item.id, item.text, 400, False, "poison item rejected")
    if failed:
        return ItemResult(item.id, item.text, 503, False, "unavailable")
    return ItemResult(item.id, item.text, 200, True)


def whole(items: Sequence[Item], status: int, note: str) -> tuple[ItemResult, ...]:
    """Every item of a request answered as a whole (429, 503, a reset, a 401): none applied."""
    return tuple(ItemResult(item.id, item.text, status, False, note) for item in items)


def answer(results: Sequence[ItemResult]) -> tuple[int, str]:
    """The HTTP status (200 when every item got a 2xx, 207 Multi-Status otherwise) and the body:
    `{"results": [{"id": ..., "status": ...}, ...]}` in the request's order, with `error` for an
    item refused or failed and `replayed` for one applied before."""
    listed: list[dict[str, object]] = []
    for result in results:
        entry: dict[str, object] = {"id": result.id, "status": result.status}
        if result.note == "replayed":
            entry["replayed"] = True
        elif result.note:
            entry["error"] = result.note
        listed.append(entry)
    status = 200 if all(200 <= r.status < 300 for r in results) else 207
    return status, json.dumps({"results": listed}, ensure_ascii=False)


class WrapperError(ValueError):
    """A wrapper that does not put the list of items anywhere whole."""


class UnservedBatchError(ValueError):
    """A batched destination whose requests its stand-in could not take; the message says what to
    change, in one line."""


def endpoint_for(destination: Destination, max_bytes: int) -> Bulk | None:
    """The bulk endpoint a destination's stand-in serves (None when it sends one message a request):
    at the path its batches go to, the items where its `batch_wrapper` puts them, their ids in its
    `batch_id_field`, bodies up to `max_bytes`. Raises `UnservedBatchError` for a destination whose
    `batch_max_bytes` is over `max_bytes` (its batches would be refused with a 413), or whose
    wrapper hides the items."""
    if destination.batch_max_items == 1:
        return None
    name = destination.name
    if destination.batch_max_bytes > max_bytes:
        raise UnservedBatchError(
            f"destination {name!r}: batch_max_bytes={destination.batch_max_bytes} is over the"
            f" {max_bytes} bytes its stand-in takes (--bulk-max-bytes): lower it (batch_max_bytes in the"
            f" routes file, or {naming.destination_variable(name, 'batch_max_bytes')}), or raise"
            " --bulk-max-bytes"
        )
    try:
        keys = array_at(destination.batch_wrapper)
    except WrapperError as exc:
        raise UnservedBatchError(f"destination {name!r}: {exc}") from None
    fixed = destination.path.text if destination.path is not None else ""  # batched: no placeholder
    path = urlparse(destination.url).path.rstrip("/") + fixed
    return Bulk(path or "/", keys, destination.batch_id_field, max_bytes)


def array_at(wrapper: Query | None) -> tuple[str, ...]:
    """Where a destination's `batch_wrapper` (JMESPath over the list of item bodies; None: the bare
    list) puts that list in the body: the keys from the top, found by running the wrapper on a
    marker list. `{records: @}` -> ("records",); `{data: {items: @}}` -> ("data", "items")."""
    if wrapper is None:
        return ()
    marker = [{"trickle-standin-marker": True}]
    pending: list[tuple[object, tuple[str, ...]]] = [(wrapper.search(marker), ())]
    while pending:
        value, keys = pending.pop(0)
        if value == marker:
            return keys
        if isinstance(value, dict):
            pending.extend((child, (*keys, str(key))) for key, child in value.items())
    raise WrapperError(
        f"the batch wrapper {wrapper.text!r} does not put the list of items anywhere whole, so"
        " the stand-in cannot find the items in a request"
    )
