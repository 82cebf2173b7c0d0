"""Bulk delivery's pure core (chalicelib/bulk.py, issue #25), as tables: the batch key, the request
body, which candidates a request takes, how a round's groups become jobs, and what an answer says
of each item."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib import bulk, strict_json
from chalicelib.model import ApiResponse, BatchItem, Settlement, Status, Unsent, UnsentKind
from chalicelib.policy import Decision, classify
from chalicelib.routing import Expression


def query(text: str) -> Expression:
    return Expression.compile(text)


# --- the key --------------------------------------------------------------------------------------


def test_the_batch_key_is_the_sha256_of_the_ids_in_order() -> None:
    expected = "batch-" + hashlib.sha256(b"m1\nm2").hexdigest()
    assert bulk.batch_key(["m1", "m2"]) == expected


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param(["m1", "m2"], ["m2", "m1"], id="another-order"),
        pytest.param(["m1", "m2"], ["m1"], id="fewer"),
        pytest.param(["m1", "m2"], ["m1", "m2", "m3"], id="more"),
        pytest.param(["m1", "m2"], ["m1", "m3"], id="another-member"),
    ],
)
def test_any_other_batch_has_another_key(one: list[str], other: list[str]) -> None:
    assert bulk.batch_key(one) != bulk.batch_key(other)
    assert bulk.batch_key(one) == bulk.batch_key(list(one))


# --- the body -------------------------------------------------------------------------------------

ITEMS = [("m1", '{"a": 1.50, "big": 12345678901234567890123}'), ("m2", '{"b": [1, 2]}')]


def items_of(pairs: list[tuple[str, str]], id_field: str = "id") -> list[BatchItem]:
    return [bulk.item(message_id, body, id_field) for message_id, body in pairs]


@pytest.mark.parametrize(
    ("items", "wrapper", "id_field", "body"),
    [
        pytest.param(
            ITEMS,
            None,
            "id",
            '[{"a":1.50,"big":12345678901234567890123,"id":"m1"},{"b":[1,2],"id":"m2"}]',
            id="bare-array-numbers-exact",
        ),
        pytest.param(
            ITEMS,
            "{records: @}",
            "event_id",
            '{"records":[{"a":1.50,"big":12345678901234567890123,"event_id":"m1"},{"b":[1,2],"event_id":"m2"}]}',
            id="wrapped-other-id-field",
        ),
        pytest.param(
            [("m1", '{"id": "m1", "x": 1}')],
            None,
            "id",
            '[{"id":"m1","x":1}]',
            id="a-body-carrying-its-own-id",
        ),
        pytest.param([], "{records: @}", "id", '{"records":[]}', id="none"),
    ],
)
def test_build(items: list[tuple[str, str]], wrapper: str | None, id_field: str, body: str) -> None:
    built = bulk.build(items_of(items, id_field), query(wrapper) if wrapper else None)
    ids = tuple(message_id for message_id, _ in items)
    assert built == bulk.Built(body, bulk.batch_key(ids), ids)
    json.loads(body)  # never invalid JSON


@pytest.mark.parametrize(
    ("wrapper", "reason"),
    [
        pytest.param("nothing_here", "batch_wrapper 'nothing_here' gave null", id="null"),
        pytest.param(
            "abs(@)",
            "batch_wrapper 'abs(@)' failed: In function abs(), invalid type for value:"
            " [{'a': 1, 'id': 'm1'}], expected one of: ['number'], received: \"array\"",
            id="failing",
        ),
    ],
)
def test_a_wrapper_that_gives_no_body_fails_the_request(wrapper: str, reason: str) -> None:
    assert bulk.build(items_of([("m1", '{"a": 1}')]), query(wrapper)) == bulk.Failure(reason)


@pytest.mark.parametrize(
    ("body", "id_field", "why"),
    [
        pytest.param("[1, 2]", "id", bulk.NOT_AN_OBJECT, id="an-array"),
        pytest.param('"text"', "id", bulk.NOT_AN_OBJECT, id="a-string"),
        pytest.param("{not json", "id", f"{bulk.NOT_AN_OBJECT} (the body is not JSON)", id="not-json"),
        pytest.param(
            '{"a": 1, "a": 2}', "id", f"{bulk.NOT_AN_OBJECT} (the body is not JSON)", id="a-key-twice"
        ),
        pytest.param(
            '{"id": 7}',
            "id",
            "the body has a field 'id' of its own, where a batched item carries its message id"
            " (set the destination's batch_id_field to a field the bodies lack)",
            id="a-field-of-its-own-is-never-overwritten",
        ),
    ],
)
def test_a_body_that_cannot_be_an_item_is_refused(body: str, id_field: str, why: str) -> None:
    with pytest.raises(bulk.ItemRefusedError) as refused:
        bulk.item("m1", body, id_field)
    assert str(refused.value) == why


@pytest.mark.parametrize(
    ("wrapper", "expected"),
    [(None, 2), ("{records: @}", len('{"records":[]}')), ("nothing_here", 2)],
)
def test_overhead_is_the_body_around_an_empty_array(wrapper: str | None, expected: int) -> None:
    assert bulk.overhead(query(wrapper) if wrapper else None) == expected


def test_an_item_is_as_long_as_it_is_in_the_body() -> None:
    texts = [i.text for i in items_of(ITEMS)]
    assert bulk.build(items_of(ITEMS), None) == bulk.Built(
        "[" + ",".join(texts) + "]", bulk.batch_key(["m1", "m2"]), ("m1", "m2")
    )


# The body as it was written before items were written once: the wrapper's value written whole.
WRAPPERS = [
    None,
    "@",
    "{records: @}",
    '{data: {items: @, count: length(@)}, meta: `{"v": 1}`}',
    "[@, @]",
    "{records: @, first: [0]}",
    "{ids: [*].id}",
    "[?a].{x: a}",
    "[0]",
    "length(@)",
    "{records: [*]}",
]
BODIES = [
    '{"a": 1.50, "b": "x"}',
    '{"a": null, "n": [1, {"deep": [true, false]}], "e": 1E+400}',
    r'{"s": "caf\u00e9 \ud83d\ude00 \ufffe\uffff \\ \"q\"", ' + '"raw": "\ufffe\uffff"}',
    '{"big": 123456789012345678901234567890, "f": -0.0, "x": 1e-7}',
    "{}",
]


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda w: w or "bare")
@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_the_body_is_the_wrapped_items_written_whole(wrapper: str | None, count: int) -> None:
    """Items written once give the very text (and so the same JSON) the wrapper's value written whole
    gives, for a wrapper that keeps the list (once, twice, nested) or builds another value."""
    pairs = [(f"m{n}", BODIES[n % len(BODIES)]) for n in range(count)]
    items = items_of(pairs)
    expression = query(wrapper) if wrapper else None
    documents = [i.document for i in items]
    value = expression.search(documents) if expression else documents
    built = bulk.build(items, expression)
    if value is None:
        assert isinstance(built, bulk.Failure)
        return
    assert isinstance(built, bulk.Built)
    assert built.body == strict_json.dumps(copy.deepcopy(value))
    assert json.loads(built.body) == json.loads(strict_json.dumps(copy.deepcopy(value)))
    assert "\ufffe" not in built.body and "\uffff" not in built.body  # SQS refuses them raw


class Unwritable(dict[str, Any]):
    """An item's document that must not be written again: its text is."""

    def items(self) -> Any:
        raise AssertionError("an item's document was written again")


@pytest.mark.parametrize("wrapper", [None, "@", "{records: @}", "{data: {items: @}}", "[@]"])
def test_a_wrapper_that_keeps_the_list_takes_the_items_texts_as_written(wrapper: str | None) -> None:
    items = [replace(i, document=Unwritable(i.document)) for i in items_of(ITEMS)]
    built = bulk.build(items, query(wrapper) if wrapper else None)
    assert isinstance(built, bulk.Built)
    assert "[" + ",".join(i.text for i in items) + "]" in built.body


# --- which candidates a request takes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "max_items", "max_bytes", "taken"),
    [
        pytest.param(["a1:3", "a2:3", "b1:3"], 10, 100, ["a1", "a2", "b1"], id="all-fit"),
        pytest.param(["a1:3", "a2:3", "b1:3"], 2, 100, ["a1", "a2"], id="item-limit"),
        pytest.param(["a1:3", "a2:3", "b1:3"], 10, 6, ["a1", "a2"], id="byte-limit-exactly"),
        pytest.param(
            ["a1:3", "a2:9", "a3:1", "b1:3"], 10, 8, ["a1", "b1"], id="a-group-never-skips-a-message"
        ),
        pytest.param(["a1:9", "b1:3", "b2:3"], 10, 8, ["b1", "b2"], id="another-group-still-fits"),
        pytest.param(["a1:3", "b1:3", "a2:3"], 2, 100, ["a1", "b1"], id="in-the-given-order"),
        pytest.param([], 10, 100, [], id="nothing"),
    ],
)
def test_fill(candidates: list[str], max_items: int, max_bytes: int, taken: list[str]) -> None:
    """Candidates written `<group><n>:<size>`."""
    chosen = bulk.fill(
        candidates,
        max_items,
        max_bytes,
        size_of=lambda c: int(c.split(":")[1]),
        group_of=lambda c: c[0],
    )
    assert [c.split(":")[0] for c in chosen] == taken


@pytest.mark.parametrize(
    ("sizes", "max_items", "expected"),
    [
        pytest.param([2, 3, 5], 5, [[2, 3], [5]], id="whole-groups-in-order"),
        pytest.param([2, 3, 5], 10, [[2, 3, 5]], id="one-job"),
        pytest.param([7, 1, 1], 5, [[7], [1, 1]], id="a-large-group-alone"),
        pytest.param([1, 7, 1], 5, [[1], [7], [1]], id="a-large-group-in-the-middle"),
        pytest.param([], 5, [], id="none"),
    ],
)
def test_jobs(sizes: list[int], max_items: int, expected: list[list[int]]) -> None:
    groups = [[f"g{n}-{i}" for i in range(size)] for n, size in enumerate(sizes)]
    packed = bulk.jobs(groups, max_items)
    assert [[len(group) for group in job] for job in packed] == expected
    assert [g for job in packed for g in job] == groups


# --- what the answer says of each item ------------------------------------------------------------

RESULTS = "results[].status"


@pytest.mark.parametrize(
    ("status", "answer", "n", "expression", "expected"),
    [
        pytest.param(200, "", 3, None, [200, 200, 200], id="whole-request-success"),
        pytest.param(503, "busy", 2, None, [503, 503], id="whole-request-failure"),
        pytest.param(
            207,
            '{"results": [{"status": 200}, {"status": 400}, {"status": 503}]}',
            3,
            RESULTS,
            [200, 400, 503],
            id="per-item",
        ),
        pytest.param(200, '{"results": [{"status": 200.0}]}', 1, RESULTS, [200], id="integral-number"),
        pytest.param(429, "not json at all", 2, RESULTS, [429, 429], id="a-failed-request-is-every-items"),
        pytest.param(200, "not json", 2, RESULTS, "the answer is not JSON", id="not-json"),
        pytest.param(
            200,
            '{"results": {"status": 200}}',
            1,
            RESULTS,
            "batch_results 'results[].status' gave null, not a list",
            id="not-a-list",
        ),
        pytest.param(
            200,
            '{"results": [{"status": 200}]}',
            2,
            RESULTS,
            "batch_results 'results[].status' gave 1 statuses for 2 items",
            id="too-short",
        ),
        pytest.param(
            200,
            '{"results": [{"status": 200}, {"status": 200}, {"status": 200}]}',
            2,
            RESULTS,
            "batch_results 'results[].status' gave 3 statuses for 2 items",
            id="too-long",
        ),
        pytest.param(
            200,
            '{"results": [{"status": 200}, {"status": "ok"}]}',
            2,
            RESULTS,
            'batch_results gave item 1 "ok", not an HTTP status',
            id="a-string",
        ),
        pytest.param(
            200,
            '{"results": [{"status": 200}, {}]}',
            2,
            RESULTS,
            "batch_results 'results[].status' gave 1 statuses for 2 items",
            id="a-missing-status-drops-out-of-the-projection",
        ),
        pytest.param(
            200,
            '{"results": [{"status": 99}]}',
            1,
            RESULTS,
            "batch_results gave item 0 99, not an HTTP status",
            id="below-100",
        ),
        pytest.param(
            200,
            '{"results": [{"status": 200.5}]}',
            1,
            RESULTS,
            "batch_results gave item 0 200.5, not an HTTP status",
            id="fraction",
        ),
        pytest.param(
            200,
            '{"results": [{"status": true}]}',
            1,
            RESULTS,
            "batch_results gave item 0 true, not an HTTP status",
            id="boolean",
        ),
        pytest.param(
            200,
            "[200, 201]",
            2,
            "@",
            [200, 201],
            id="a-bare-list",
        ),
        pytest.param(
            200,
            '{"a": 1, "a": 2}',
            1,
            "@",
            "the answer is not JSON",
            id="a-duplicate-key-is-not-json",
        ),
    ],
)
def test_results(status: int, answer: str, n: int, expression: str | None, expected: Any) -> None:
    assert bulk.results(status, answer, n, query(expression) if expression else None) == expected


FAILED = "failed"
OK = (200, None)


def listed(index: int) -> tuple[int, str]:
    return (500, f"the API listed item {index} as failed")


@pytest.mark.parametrize(
    ("status", "answer", "n", "expected"),
    [
        pytest.param(200, '{"failed": [0, 2]}', 3, [listed(0), OK, listed(2)], id="two-listed"),
        pytest.param(202, '{"failed": []}', 2, [(202, None), (202, None)], id="none-listed"),
        pytest.param(200, '{"failed": [1.0]}', 2, [OK, listed(1)], id="integral-number"),
        pytest.param(503, "busy", 2, [(503, None), (503, None)], id="a-failed-request-is-every-items"),
        pytest.param(200, "not json", 2, "the answer is not JSON", id="not-json"),
        pytest.param(200, "{}", 2, "batch_failed 'failed' gave null, not a list", id="missing"),
        pytest.param(
            200, '{"failed": 1}', 2, "batch_failed 'failed' gave a number, not a list", id="not-a-list"
        ),
        pytest.param(
            200, '{"failed": [2]}', 2, "batch_failed gave 2, not an index of the 2 items", id="out-of-range"
        ),
        pytest.param(
            200, '{"failed": [-1]}', 2, "batch_failed gave -1, not an index of the 2 items", id="negative"
        ),
        pytest.param(
            200, '{"failed": ["1"]}', 2, 'batch_failed gave "1", not an index of the 2 items', id="a-string"
        ),
        pytest.param(
            200, '{"failed": [0.5]}', 2, "batch_failed gave 0.5, not an index of the 2 items", id="fraction"
        ),
        pytest.param(
            200, '{"failed": [true]}', 2, "batch_failed gave true, not an index of the 2 items", id="boolean"
        ),
        pytest.param(200, '{"failed": [1, 1]}', 2, "batch_failed gave item 1 twice", id="duplicate"),
    ],
)
def test_failed(status: int, answer: str, n: int, expected: Any) -> None:
    assert bulk.failed(status, answer, n, query(FAILED)) == expected


# --- what one request's write settles (the order rule) --------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def answered(spec: str) -> tuple[str, str, ApiResponse, Decision]:
    """`g0-1:503` -> message g0-1 of group g0 answered 503 (`-` for a request that never left)."""
    message_id, _, status = spec.partition(":")
    if status == "-":
        response = ApiResponse(
            None, error="no credentials", unsent=Unsent(UnsentKind.CREDENTIALS_UNAVAILABLE, "x")
        )
    else:
        response = ApiResponse(int(status))
    return message_id, message_id.split("-")[0], response, classify(response, NOW)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        pytest.param(
            ["g0-0:200", "g0-1:200", "g1-0:201"],
            ["g0-0 delivered 200 +1", "g0-1 delivered 200 +1", "g1-0 delivered 201 +1"],
            id="all-delivered",
        ),
        pytest.param(
            ["g0-0:200", "g0-1:503", "g0-2:200", "g1-0:200"],
            ["g0-0 delivered 200 +1", "g0-1 failed 503 +1", "g1-0 delivered 200 +1"],
            id="after-a-failure-of-its-group-nothing",
        ),
        pytest.param(
            ["g0-0:400", "g0-1:200"], ["g0-0 failed 400 +1"], id="poison-first-the-rest-when-reached"
        ),
        pytest.param(
            ["g0-0:429", "g0-1:200", "g1-0:429"],
            ["g0-0 failed 429 +0", "g1-0 failed 429 +0"],
            id="saturated-not-counted",
        ),
        pytest.param(["g0-0:-", "g0-1:-"], [], id="never-left-nothing"),
    ],
)
def test_written(answers: list[str], expected: list[str]) -> None:
    settlements = bulk.written([answered(a) for a in answers], at=1234.5)
    assert [
        f"{s.message_id} {s.status.value} {s.status_code} +{int(s.counted)}" for s in settlements
    ] == expected
    assert {s.at for s in settlements} <= {1234.5}  # written later, as of the answer


def requests_of(*sizes: str) -> list[list[Settlement]]:
    """Requests of message ids: "3" is three new ones, "a,b" those named."""
    made = iter(range(10**6))
    return [
        [
            Settlement(name, "g", Status.DELIVERED, 200, "", counted=True)
            for name in ([f"m{next(made)}" for _ in range(int(size))] if size.isdigit() else size.split(","))
        ]
        for size in sizes
    ]


@pytest.mark.parametrize(
    ("requests", "most", "expected"),
    [
        pytest.param(["10", "10", "10"], 100, [30], id="a-round-of-requests-in-one"),
        pytest.param(["50", "50", "50"], 100, [100, 50], id="never-over-the-most"),
        pytest.param(["60", "30", "40"], 100, [90, 40], id="a-request-never-split"),
        pytest.param(["100", "1"], 100, [100, 1], id="a-full-request-alone"),
        pytest.param(["0", "3", "0"], 100, [3], id="empty-requests-nothing"),
        pytest.param([], 100, [], id="nothing-no-transaction"),
        pytest.param(["a,b", "c", "b,d"], 100, [3, 2], id="one-write-per-message-in-a-transaction"),
        pytest.param(["2", "2", "2"], 4, [4, 2], id="the-limit-given"),
    ],
)
def test_transactions(requests: list[str], most: int, expected: list[int]) -> None:
    asked = requests_of(*requests)
    packed = bulk.transactions(asked, most)
    assert [len(t) for t in packed] == expected
    assert [s for t in packed for s in t] == [s for r in asked for s in r]  # in order, all of them
    assert all(len({s.message_id for s in t}) == len(t) for t in packed)
