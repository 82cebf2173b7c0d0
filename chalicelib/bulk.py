"""Bulk delivery's decisions (issue #25), pure: which messages share a request, the request's body
and its Idempotency-Key, and what the API's answer says of each item. The drain's effects
(`chalicelib.drain_effects`) choose the candidates and carry the answers out; the API client
(`chalicelib.api_client`) sends the body.

Each item is its message's body, a JSON object, carrying the id the API knows its message by (the
message id, or the original's that a replay with the same keys carries: `freshness.api_id`) in the
destination's `batch_id_field`, so an API that honours item ids applies a message once however
often it is sent; the request's key is derived from its member ids, so a retried identical batch
is recognisable and any other batch (a retry after a partial failure) differs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from jmespath.exceptions import JMESPathError

from chalicelib import strict_json
from chalicelib.model import MAX_TRANSACTION_ITEMS, ApiResponse, BatchItem, Settlement, Status
from chalicelib.policy import Decision, Outcome

C = TypeVar("C")
G = TypeVar("G", bound=Sized)

NOT_AN_OBJECT = "a batched item must be a JSON object to carry its id"


class Query(Protocol):
    """A compiled JMESPath expression that knows its text (`chalicelib.routing.Expression`)."""

    @property
    def text(self) -> str: ...

    def search(self, value: Any, /) -> Any: ...


@dataclass(frozen=True)
class Shape:
    """A destination's batching, as its routes-file entry says (`settings.Destination`)."""

    max_items: int
    max_bytes: int
    wrapper: Query | None = None
    id_field: str = "id"


class ItemRefusedError(ValueError):
    """A body that cannot be an item of a batch; the message says why (and holds no body text)."""


def batch_key(message_ids: Iterable[str]) -> str:
    """The request's Idempotency-Key (and webhook-id): the same members in the same order give the
    same key, any other batch another."""
    return "batch-" + hashlib.sha256("\n".join(message_ids).encode()).hexdigest()


def item(message_id: str, body: str, id_field: str) -> BatchItem:
    """The body as a batch carries it: its JSON object (numbers kept exact) with the message id in
    `id_field`. A body of its own with another value there is refused rather than overwritten
    (raises `ItemRefusedError`)."""
    try:
        document = strict_json.loads(body.encode())
    except ValueError:
        raise ItemRefusedError(f"{NOT_AN_OBJECT} (the body is not JSON)") from None
    if not isinstance(document, dict):
        raise ItemRefusedError(NOT_AN_OBJECT)
    if document.get(id_field, message_id) != message_id:
        raise ItemRefusedError(
            f"the body has a field {id_field!r} of its own, where a batched item carries its message id"
            " (set the destination's batch_id_field to a field the bodies lack)"
        )
    document[id_field] = message_id
    return BatchItem(message_id, body, document, strict_json.dumps(document))


@dataclass(frozen=True)
class Built:
    """A request's body and key, and the ids it carries in order."""

    body: str
    key: str
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Failure:
    reason: str


def build(items: Sequence[BatchItem], wrapper: Query | None) -> Built | Failure:
    """The request for `items`: their list through `wrapper` (None: the bare array), written as
    strict JSON from the items' texts: the list wherever the wrapper's value holds it is the texts
    joined, not written again (`strict_json.dumps`); a wrapper that builds something else from the
    items is written whole. A wrapper that fails or gives null fails the request."""
    ids = tuple(i.id for i in items)
    array = "[" + ",".join(i.text for i in items) + "]"
    if wrapper is None:
        return Built(array, batch_key(ids), ids)
    documents = [i.document for i in items]
    try:
        value = wrapper.search(documents)
    except JMESPathError as exc:
        return Failure(f"batch_wrapper {wrapper.text!r} failed: {_said(exc)}")
    if value is None:
        return Failure(f"batch_wrapper {wrapper.text!r} gave null")
    return Built(strict_json.dumps(value, written=(documents, array)), batch_key(ids), ids)


def overhead(wrapper: Query | None) -> int:
    """The bytes of a body around its items' array: the wrapper's text around an empty list."""
    built = build([], wrapper)
    return len(built.body.encode()) if isinstance(built, Built) else 2


def fill(
    candidates: Sequence[C],
    max_items: int,
    max_bytes: int,
    size_of: Callable[[C], int],
    group_of: Callable[[C], str],
) -> list[C]:
    """The candidates a request takes, in the given order, up to `max_items` and `max_bytes` (the
    sum of `size_of`). A group's messages are taken in order or not at all: once one of a group
    does not fit, none after it from that group is taken (another group's may still be)."""
    taken: list[C] = []
    used = 0
    cut: set[str] = set()
    for candidate in candidates:
        if len(taken) >= max_items:
            break
        group = group_of(candidate)
        if group in cut:
            continue
        size = size_of(candidate)
        if used + size > max_bytes:
            cut.add(group)
            continue
        taken.append(candidate)
        used += size
    return taken


def jobs(groups: Sequence[G], max_items: int) -> list[list[G]]:
    """A round's groups packed, in order and whole, into jobs of at most `max_items` messages (a
    group larger than that is a job of its own): each job is one worker's, its groups in turn."""
    packed: list[list[G]] = []
    current: list[G] = []
    size = 0
    for group in groups:
        if current and size + len(group) > max_items:
            packed.append(current)
            current, size = [], 0
        current.append(group)
        size += len(group)
    if current:
        packed.append(current)
    return packed


def results(status: int, answer_text: str, n: int, expression: Query | None) -> list[int] | str:
    """One HTTP status per item, in order, or why the answer cannot be mapped to the items (then
    the request as a whole failed: never a success). Without `expression`, or for an answer other
    than 2xx, the request's status is every item's."""
    if expression is None or not 200 <= status < 300:
        return [status] * n
    found = _listed(answer_text, expression, "batch_results")
    if isinstance(found, str):
        return found
    if len(found) != n:
        return f"batch_results {expression.text!r} gave {len(found)} statuses for {n} items"
    statuses: list[int] = []
    for index, value in enumerate(found):
        item_status = _status(value)
        if item_status is None:
            return f"batch_results gave item {index} {strict_json.dumps(value)[:40]}, not an HTTP status"
        statuses.append(item_status)
    return statuses


def _listed(answer_text: str, expression: Query, field: str) -> list[Any] | str:
    """The list `expression` (the destination's `field`) finds in a JSON answer, or why there is none."""
    try:
        document = strict_json.loads(answer_text.encode())
    except ValueError:
        return "the answer is not JSON"
    try:
        found = expression.search(document)
    except JMESPathError as exc:
        return f"{field} {expression.text!r} failed: {_said(exc)}"
    if not isinstance(found, list):
        return f"{field} {expression.text!r} gave {_json_type(found)}, not a list"
    return found


LISTED_FAILED_STATUS = 500  # an item the answer lists as failed: retried, as a 5xx is


def failed(status: int, answer_text: str, n: int, expression: Query) -> list[tuple[int, str | None]] | str:
    """Each item's status and why it failed (None: it did not), when the API lists the 0-based
    indexes of the items that failed (`batch_failed`): a listed item is a retryable failure, every
    other item has the request's status. Or why the answer cannot be mapped to the items (then the
    request as a whole failed: never a success). An answer other than 2xx is every item's."""
    if not 200 <= status < 300:
        return [(status, None)] * n
    found = _listed(answer_text, expression, "batch_failed")
    if isinstance(found, str):
        return found
    listed: set[int] = set()
    for value in found:
        index = _integer(value)
        if index is None or not 0 <= index < n:
            return f"batch_failed gave {strict_json.dumps(value)[:40]}, not an index of the {n} items"
        if index in listed:
            return f"batch_failed gave item {index} twice"
        listed.add(index)
    return [
        (LISTED_FAILED_STATUS, f"the API listed item {index} as failed")
        if index in listed
        else (status, None)
        for index in range(n)
    ]


def written(answers: Sequence[tuple[str, str, ApiResponse, Decision]], at: float) -> list[Settlement]:
    """What one request's write settles, of its items' (message id, group id, response, answer) in
    the request's order, answered `at`: each group's items up to its first item not answered 2xx,
    that one included (written as a single answer would be: counted if the failure is the
    message's own). A group's items after that one, or after one that never left, are not written
    with the request: they settle only if and when their group's turn reaches them (the order rule,
    docs/guarantees.md)."""
    behind: set[str] = set()
    settlements: list[Settlement] = []
    for message_id, group_id, response, answer in answers:
        if group_id in behind:
            continue
        if not answer.sent:
            behind.add(group_id)
            continue
        if answer.outcome is Outcome.DELIVERED:
            settlements.append(
                Settlement(message_id, group_id, Status.DELIVERED, response.status, "", counted=True, at=at)
            )
            continue
        behind.add(group_id)
        settlements.append(
            Settlement(
                message_id,
                group_id,
                Status.FAILED,
                response.status,
                answer.reason,
                counted=answer.counted,
                at=at,
            )
        )
    return settlements


def transactions(
    requests: Iterable[Sequence[Settlement]], most: int = MAX_TRANSACTION_ITEMS
) -> list[list[Settlement]]:
    """Requests' writes packed into as few ledger transactions as can take them, in order: a request
    is never split (its items settle all or none), a transaction holds at most `most` settlements
    and one per message (a message settled by two requests, a second copy's, waits for the next)."""
    packed: list[list[Settlement]] = []
    ids: set[str] = set()
    for request in requests:
        if not request:
            continue
        mine = {s.message_id for s in request}
        if not packed or len(packed[-1]) + len(request) > most or ids & mine:
            packed.append([])
            ids = set()
        packed[-1] += request
        ids |= mine
    return packed


def _said(exc: JMESPathError) -> str:
    """JMESPath's words, on one line and short: they may quote the items or the answer."""
    return str(exc).replace("\n", " ")[:160]


def _status(value: object) -> int | None:
    number = _integer(value)
    return number if number is not None and 100 <= number <= 599 else None


def _integer(value: object) -> int | None:
    """A JSON number that is a whole number (`200.0` is), as an int; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    if isinstance(value, Decimal) and (not value.is_finite() or value != value.to_integral_value()):
        return None
    return int(value)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    return "a number"
