"""The demo's audit: lost, duplicated and out-of-order deliveries are counted, not hidden."""

from __future__ import annotations

import json
from decimal import Decimal

from trickle_local.demo import DemoReport, demo_items, summarize, summary_line
from trickle_local.standin_api import RecordedRequest
from trickle_local.standin_bulk import ItemResult
from trickle_local.workflows import ExecutionCounts


def request(pk: str, sk: str, sequence: int, status: int = 200, applied: bool = True) -> RecordedRequest:
    body = json.dumps({"keys": {"pk": pk, "sk": sk}, "source": {"sequence_number": str(sequence)}})
    return RecordedRequest("/items", {}, body, 0.0, status, applied)


KEYS = [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]


def test_a_clean_run_is_ok() -> None:
    requests = [request("a", "1", 10), request("b", "1", 11), request("a", "2", 12), request("b", "2", 13)]
    summary = summarize(KEYS, requests, dead_lettered=0, seconds=1.0)
    assert (summary.delivered, summary.lost, summary.duplicates, summary.out_of_order) == (4, 0, 0, 0)
    assert summary.ok


def test_missing_items_are_lost_unless_dead_lettered() -> None:
    requests = [request("a", "1", 10), request("b", "1", 11)]
    assert summarize(KEYS, requests, dead_lettered=0, seconds=1.0).lost == 2
    summary = summarize(KEYS, requests, dead_lettered=2, seconds=1.0)
    assert summary.lost == 0
    assert summary.ok


def test_failed_and_replayed_requests_do_not_count_as_deliveries() -> None:
    requests = [request("a", "1", 10, status=503, applied=False), request("a", "1", 10, applied=False)]
    summary = summarize(KEYS, requests, dead_lettered=0, seconds=1.0)
    assert summary.delivered == 0
    assert summary.failed_requests == 1
    assert summary.lost == 4


def test_an_item_applied_twice_is_a_duplicate() -> None:
    requests = [request("a", "1", 10), request("a", "1", 10), request("a", "2", 12)]
    summary = summarize(KEYS[:2], requests, dead_lettered=0, seconds=1.0)
    assert summary.duplicates == 1
    assert not summary.ok


def test_an_item_applied_before_an_earlier_one_of_its_group_is_out_of_order() -> None:
    requests = [request("a", "2", 12), request("b", "1", 11), request("a", "1", 10), request("b", "2", 13)]
    summary = summarize(KEYS, requests, dead_lettered=0, seconds=1.0)
    assert summary.out_of_order == 1
    assert not summary.ok
    assert json.loads(summary.to_json())["ok"] is False


def test_demo_items_spread_over_groups_with_every_type() -> None:
    items = demo_items(10, 3)
    assert [i["pk"]["S"] for i in items[:4]] == ["demo-000", "demo-001", "demo-002", "demo-000"]
    assert len({i["sk"]["S"] for i in items}) == 10
    assert {"S", "N", "SS", "B", "M"} <= {kind for item in items[:1] for av in item.values() for kind in av}


def test_the_json_line_writes_what_the_stand_in_received_with_every_digit() -> None:
    listed = '{"keys":{"pk":"a","sk":"1"},"exact":12345678901234567890.123456789,"qty":3}'
    received: dict[str, list[dict[str, object]]] = {
        "orders": [{"n": 0, "body": json.loads(listed, parse_float=Decimal)}]
    }
    report = DemoReport(1, {"orders": summarize(KEYS[:1], [request("a", "1", 10)], 0, 1.0)}, 1.0)

    line = summary_line(report, received, 0.5, None)

    assert listed in line  # as the stand-in's GET listing has it, not 1.2345678901234567e+19
    assert json.loads(line, parse_float=Decimal)["received"] == received
    assert json.loads(line)["ok"] is True


def test_the_json_line_is_not_ok_while_an_execution_still_runs() -> None:
    report = DemoReport(1, {"orders": summarize(KEYS[:1], [request("a", "1", 10)], 0, 1.0)}, 1.0)
    running = ExecutionCounts(started=2, succeeded=1, failed=0, running=1)

    document = json.loads(summary_line(report, {}, 0.5, running))

    assert (document["ok"], document["executions"]) == (
        False,
        {"started": 2, "succeeded": 1, "failed": 0, "running": 1},
    )


def test_refused_requests_and_token_requests_are_counted_per_destination_and_in_all() -> None:
    refused = RecordedRequest("/items", {}, "{}", 0.0, 401, False, "PUT", auth_ok=False)
    unsigned = RecordedRequest("/items", {}, "{}", 0.0, 401, False, "PUT", auth_ok=True, signature_ok=False)
    scripted = RecordedRequest("/items", {}, "{}", 0.0, 401, False, "PUT", auth_ok=True, signature_ok=True)
    billing = summarize(
        KEYS[:1], [refused, unsigned, scripted, request("a", "1", 10)], 0, 1.0, token_requests=3
    )
    orders = summarize(KEYS[:1], [request("a", "1", 10)], 0, 1.0)

    document = json.loads(DemoReport(1, {"billing": billing, "orders": orders}, 1.0).to_json())

    assert (
        document["destinations"]["billing"]["auth_failures"],
        document["destinations"]["billing"]["token_requests"],
    ) == (2, 3)
    assert (
        document["destinations"]["orders"]["auth_failures"],
        document["destinations"]["orders"]["token_requests"],
    ) == (0, 0)
    assert (document["auth_failures"], document["token_requests"], document["failed_requests"]) == (2, 3, 3)


def bulk(*items: tuple[str, str, int, bool], status: int = 207) -> RecordedRequest:
    """A request to a bulk endpoint: (pk, sk, sequence, applied) per item, in the request's order."""
    results = tuple(
        ItemResult(
            f"m-{pk}-{sk}",
            json.dumps(
                {"id": f"m-{pk}-{sk}", "keys": {"pk": pk, "sk": sk}, "sequence_number": str(sequence)}
            ),
            200 if applied else 503,
            applied,
        )
        for pk, sk, sequence, applied in items
    )
    return RecordedRequest(
        "/bulk", {}, "[...]", 0.0, status, any(applied for *_, applied in items), items=results
    )


def test_the_items_of_bulk_requests_are_audited_each_on_its_own_in_the_requests_order() -> None:
    requests = [
        bulk(("a", "1", 10, True), ("b", "1", 11, False), ("a", "2", 12, True)),
        bulk(("b", "1", 11, True), ("b", "2", 13, True), ("a", "2", 12, False)),
    ]
    summary = summarize(KEYS, requests, dead_lettered=0, seconds=1.0)
    assert (summary.delivered, summary.lost, summary.duplicates, summary.out_of_order) == (4, 0, 0, 0)
    assert (summary.requests, summary.failed_requests, summary.items_per_request) == (2, 0, 3.0)

    reordered = summarize(KEYS, [bulk(("a", "2", 12, True), ("a", "1", 10, True))], 0, 1.0)
    assert (reordered.delivered, reordered.out_of_order) == (2, 1)  # the API applied a2 before a1
    twice = summarize(
        KEYS, [bulk(("a", "1", 10, True)), bulk(("a", "1", 10, True), ("a", "2", 12, True))], 0, 1.0
    )
    assert (twice.delivered, twice.duplicates) == (2, 1)


def test_items_per_request_is_given_per_destination_and_in_all() -> None:
    orders = summarize(
        KEYS,
        [bulk(*[(pk, sk, n, True) for n, (pk, sk) in enumerate(KEYS)]), bulk(("a", "1", 10, True))],
        0,
        1.0,
    )
    crm = summarize(KEYS[:2], [request("a", "1", 10), request("a", "2", 12)], 0, 1.0)

    document = json.loads(DemoReport(4, {"orders": orders, "crm": crm}, 1.0).to_json())

    assert document["destinations"]["orders"]["items_per_request"] == 2.5
    assert (document["destinations"]["orders"]["requests"], document["destinations"]["crm"]["requests"]) == (
        2,
        2,
    )
    assert document["destinations"]["crm"]["items_per_request"] == 1.0
    assert (document["requests"], document["items_per_request"]) == (4, 1.75)
    assert "request_items" not in document
    assert summarize(KEYS, [], 0, 1.0).items_per_request == 0.0
