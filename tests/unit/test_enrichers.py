"""The drain's enrichment step (`chalicelib.enrichers.Enrichment`, the `chalicelib.ports.Enrich` port):
what it answers for each route and body, with the shipped `customer` enricher over a fake table. An
enricher raises `EnrichmentError`; the step answers the model's `EnrichmentFailure`, so the drain
imports nothing of the enrichers."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.enrichers import EnrichContext, Enrichment
from chalicelib.model import EnrichmentFailure

PROFILE = {"name": {"S": "Ada"}, "email": {"S": "ada@example.com"}}


class FakeTable:
    """`get_item` of the source table: the profile, nothing, or a throttled call."""

    def __init__(self, item: dict[str, Any] | None, throttled: bool = False) -> None:
        self._item = item
        self._throttled = throttled

    def get_item(self, **request: Any) -> dict[str, Any]:
        if self._throttled:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "GetItem")
        return {"Item": self._item} if self._item else {}


def enrichment(table: FakeTable) -> Enrichment:
    context = EnrichContext(table, "items", "pk")  # type: ignore[arg-type]  # a fake client
    return Enrichment({"orders": "customer"}, context)


ORDER = '{"keys": {"pk": "CUSTOMER#1"}, "item": {"total": 12.50}}'


@pytest.mark.parametrize(
    ("route", "body", "table", "answer"),
    [
        pytest.param("invoices", "not json", FakeTable(PROFILE), "not json", id="route-without-enricher"),
        pytest.param(
            "orders",
            ORDER,
            FakeTable(PROFILE),
            '{"keys":{"pk":"CUSTOMER#1"},"item":{"total":12.50},'
            '"customer":{"name":"Ada","email":"ada@example.com"}}',
            id="enriched-numbers-exact",
        ),
        pytest.param(
            "orders",
            ORDER,
            FakeTable(None, throttled=True),
            EnrichmentFailure("customer lookup failed: ClientError", retryable=True),
            id="lookup-failed-retryable",
        ),
        pytest.param(
            "orders",
            '{"keys": {}}',
            FakeTable(PROFILE),
            EnrichmentFailure("customer enrichment needs the envelope's keys.pk (a string)", retryable=False),
            id="no-key-poison",
        ),
    ],
)
def test_the_enrichment_answers_the_body_to_send_or_why_not(
    route: str, body: str, table: FakeTable, answer: str | EnrichmentFailure
) -> None:
    assert enrichment(table)(route, body) == answer


def test_a_queued_body_that_is_not_json_is_poison() -> None:
    answer = enrichment(FakeTable(PROFILE))("orders", "{not json")

    assert isinstance(answer, EnrichmentFailure) and not answer.retryable
    assert answer.reason.startswith("the queued body is not JSON: Expecting property name")
