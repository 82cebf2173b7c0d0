"""Enrichment at delivery time (the Pipes enrichment step): a route may name an enricher that adds
fresh data to each body just before it is sent. Enrichers register themselves by name with
`@enricher("name")`; the routes file refers to that name.

An enricher takes the parsed body and an `EnrichContext`, and returns the body to send. It raises
`EnrichmentError` to say the message cannot be sent now: `retryable=True` (a throttled or failing
lookup) is backed off and counted like a 5xx; `retryable=False` is poison, like a 4xx.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from chalicelib.model import EnrichmentFailure


class EnrichmentError(RuntimeError):
    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


@dataclass(frozen=True)
class EnrichContext:
    """What an enricher may use: the source table and a DynamoDB client (the drain's role reads
    that table only when a route of its destination enriches)."""

    dynamodb: DynamoDBClient
    table: str
    partition_key: str | None


Enricher = Callable[[Any, EnrichContext], Any]
_REGISTRY: dict[str, Enricher] = {}


def enricher(name: str) -> Callable[[Enricher], Enricher]:
    def register(function: Enricher) -> Enricher:
        if name in _REGISTRY:
            raise ValueError(f"two enrichers are named {name!r}")
        _REGISTRY[name] = function
        return function

    return register


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Enricher:
    return _REGISTRY[name]


CUSTOMER_SORT_KEY = "PROFILE"


@enricher("customer")
def customer(body: Any, context: EnrichContext) -> Any:
    """An order (default envelope) gets its customer's profile, read now from the same table: in the
    single-table layout of the example, a customer's orders share its partition key and its profile
    is the item with sort key `PROFILE`. A missing profile sends `"customer": null`."""
    keys = body.get("keys") if isinstance(body, dict) else None
    pk = context.partition_key or "pk"
    if not isinstance(keys, dict) or not isinstance(keys.get(pk), str):
        raise EnrichmentError(
            f"customer enrichment needs the envelope's keys.{pk} (a string)", retryable=False
        )
    try:
        found = context.dynamodb.get_item(
            TableName=context.table,
            Key={pk: {"S": keys[pk]}, "sk": {"S": CUSTOMER_SORT_KEY}},
            ProjectionExpression="#n, email",
            ExpressionAttributeNames={"#n": "name"},
        ).get("Item")
    except (ClientError, BotoCoreError) as exc:
        raise EnrichmentError(f"customer lookup failed: {type(exc).__name__}", retryable=True) from exc
    profile = {name: value.get("S") for name, value in found.items()} if found else None
    return body | {"customer": profile}


class Enrichment:
    """The drain's enrichment step for one destination (`chalicelib.ports.Enrich`): the enricher of
    the message's route, applied to the body parsed with exact numbers, written back as JSON; an
    `EnrichmentError` comes back as the model's `EnrichmentFailure`, as the API client's errors come
    back as an answer, so the drain needs nothing of this module."""

    def __init__(self, by_route: Mapping[str, str], context: EnrichContext) -> None:
        # the JSON writer and the values only now: settings import this registry, and `import app`
        # (every cold start) need not compile strict_json's patterns nor build the model's classes
        from chalicelib.model import EnrichmentFailure
        from chalicelib.strict_json import dumps

        self._by_route = dict(by_route)
        self._context = context
        self._dumps = dumps
        self._failure = EnrichmentFailure

    def __bool__(self) -> bool:
        return bool(self._by_route)

    def __call__(self, route: str, body: str, /) -> str | EnrichmentFailure:
        name = self._by_route.get(route)
        if name is None:
            return body
        try:
            enriched = get(name)(_parsed(body), self._context)
        except EnrichmentError as exc:
            return self._failure(str(exc), exc.retryable)
        return self._dumps(enriched)


def _parsed(body: str) -> Any:
    """A queued body with its numbers exact; one that is not JSON is poison."""
    try:
        return json.loads(body, parse_float=Decimal)
    except ValueError as exc:
        raise EnrichmentError(f"the queued body is not JSON: {exc}", retryable=False) from exc
