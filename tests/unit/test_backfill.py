"""Backfill's pure parts (issue #26), as tables: the request, the synthetic record a scanned item
becomes, the ids its messages get, and what the routes make of it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from chalicelib.backfill import (
    SEQUENCE_NUMBER,
    Backfill,
    BackfillError,
    as_bytes,
    as_text,
    build,
    parse_request,
    shown,
    synthetic_record,
    warnings,
)
from chalicelib.freshness import (
    FINGERPRINT_ATTRIBUTE,
    JOB_ATTRIBUTE,
    SOURCE_KEY_ATTRIBUTE,
    fingerprint,
    key_text,
)
from chalicelib.records import message_id_for, route_record
from chalicelib.routing import Expression
from chalicelib.settings import Settings
from tests.unit.conftest import TABLE, MakeSettings, stream_record
from trickle_deploy.operate import follow, spoken_duration

JOB = "6f1c2a9e-0000-4000-8000-000000000001"
OTHER_JOB = "6f1c2a9e-0000-4000-8000-000000000002"
KEYS = ("pk", "sk")


def item(pk: str = "user-1", sk: str = "1", kind: str = "customer", **extra: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": sk}, "type": {"S": kind}, "name": {"S": "Ada"}, **extra}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, Backfill(("orders", "crm"), None, 4, False)),
        ({"destination": "crm"}, Backfill(("crm",), None, 4, False)),
        ({"segments": 64, "dry_run": True}, Backfill(("orders", "crm"), None, 64, True)),
        (
            {"segments": 1, "filter": "item.n > `3`"},
            Backfill(("orders", "crm"), Expression.compile("item.n > `3`"), 1),
        ),
    ],
)
def test_a_request_names_its_destinations_segments_and_filter(
    settings: Settings, body: dict[str, Any], expected: Backfill
) -> None:
    assert parse_request(body, settings) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the body must be a JSON object with some of destination, filter, segments, dry_run"),
        ({"destination": "billing"}, "destination must be one of: orders, crm (or left out: all of them)"),
        ({"destination": 3}, "destination must be one of: orders, crm (or left out: all of them)"),
        ({"segments": 0}, "segments must be a whole number from 1 to 64"),
        ({"segments": True}, "segments must be a whole number from 1 to 64"),
        ({"segments": 4.0}, "segments must be a whole number from 1 to 64"),
        ({"dry_run": 1}, "dry_run must be true or false"),
        ({"filter": ""}, "filter must be a JMESPath expression of at most 2000 characters"),
        ({"filter": "x" * 2001}, "filter must be a JMESPath expression of at most 2000 characters"),
        (
            {"segments": 0, "dry_run": "no", "extra": 1},
            'unknown field(s) "extra"; a backfill takes destination, filter, segments, dry_run;'
            " segments must be a whole number from 1 to 64; dry_run must be true or false",
        ),
    ],
)
def test_a_bad_request_names_every_problem(settings: Settings, body: object, message: str) -> None:
    with pytest.raises(BackfillError) as caught:
        parse_request(body, settings)
    assert str(caught.value) == message


def test_a_request_s_spec_is_what_its_job_keeps_and_reads_back() -> None:
    asked = Backfill(("crm",), Expression.compile("item.n > `3`"), 8, True)
    job = {"destinations": ["crm"], "parts": 8, "spec": asked.spec()}
    assert asked.spec() == {"filter": "item.n > `3`", "dry_run": True}
    assert Backfill.from_job(job) == asked


def test_a_scanned_item_becomes_the_stream_record_of_its_insert() -> None:
    scanned = item()
    record = synthetic_record(JOB, KEYS, scanned, 1_767_225_600.0)
    assert record == {
        "eventID": f'backfill:{JOB}:{{"pk":{{"S":"user-1"}},"sk":{{"N":"1"}}}}',
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"pk": {"S": "user-1"}, "sk": {"N": "1"}},
            "NewImage": scanned,
            "SequenceNumber": SEQUENCE_NUMBER,
            "ApproximateCreationDateTime": 1_767_225_600.0,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def test_its_sequence_number_sorts_before_every_stream_record_s() -> None:
    assert SEQUENCE_NUMBER < "100000000000000000001" and int(SEQUENCE_NUMBER) < 10**20


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ((JOB, item(), "orders"), (JOB, item(name={"S": "other"}), "orders"), True),  # same key: resumed
        ((JOB, item(), "orders"), (JOB, item(), "crm"), False),  # fan-out: one per destination
        ((JOB, item(), "orders"), (JOB, item(sk="2"), "orders"), False),
        ((JOB, item(), "orders"), (OTHER_JOB, item(), "orders"), False),  # a new backfill sends again
    ],
)
def test_a_message_id_is_stable_per_job_item_key_and_destination(
    first: tuple[str, dict[str, Any], str], second: tuple[str, dict[str, Any], str], same: bool
) -> None:
    def message_id(job: str, scanned: dict[str, Any], destination: str) -> str:
        return message_id_for(TABLE, synthetic_record(job, KEYS, scanned, 0.0)["eventID"], destination)

    assert (message_id(*first) == message_id(*second)) is same


def test_a_key_is_found_whatever_the_attributes_order() -> None:
    reordered = dict(reversed(list(item().items())))
    assert (
        synthetic_record(JOB, KEYS, reordered, 0.0)["eventID"]
        == synthetic_record(JOB, KEYS, item(), 0.0)["eventID"]
    )


def test_binary_is_kept_as_text_and_given_back_as_bytes() -> None:
    raw = {
        "pk": {"B": b"\x00\xff"},
        "m": {"M": {"BS": {"BS": [b"a"]}, "l": {"L": [{"B": b"z"}, {"S": "s"}]}}},
    }
    text = as_text(raw)
    assert text["pk"] == {"B": base64.b64encode(b"\x00\xff").decode()}
    assert text["m"]["M"]["BS"] == {"BS": ["YQ=="]} and text["m"]["M"]["l"]["L"][0] == {"B": "eg=="}
    assert as_bytes(text) == raw


def test_items_take_the_live_path_and_carry_their_origin(settings: Settings) -> None:
    """The suite's routes: `everything` takes every insert to orders, `customers` only customers to
    crm with its transform: the same messages a live insert gets, less the stream's own fields."""
    scanned = [item("c1", "1", "customer"), item("o1", "2", "order")]
    built = build(JOB, Backfill(("orders", "crm")), settings, KEYS, scanned, 1_767_225_600.0)
    assert [(m.destination, m.keys) for m in built.messages] == [
        ("orders", {"pk": "c1", "sk": 1}),
        ("crm", {"pk": "c1", "sk": 1}),
        ("orders", {"pk": "o1", "sk": 2}),
    ]
    live = route_record(
        stream_record(keys={"pk": {"S": "c1"}, "sk": {"N": "1"}}, new_image=scanned[0]), settings
    )
    assert [(m.group_id, m.destination) for m in built.messages[:2]] == [
        (m.group_id, m.destination) for m in live.messages
    ]
    for message in built.messages:
        origin = next(i for i in scanned if i["pk"]["S"] == message.keys["pk"])
        assert message.attributes[SOURCE_KEY_ATTRIBUTE] == key_text({"pk": origin["pk"], "sk": origin["sk"]})
        assert message.attributes[FINGERPRINT_ATTRIBUTE] == fingerprint(origin)
        assert message.attributes[JOB_ATTRIBUTE] == JOB
    assert built.counts == {
        "scanned": 2,
        "skipped": 0,
        "unrouted": 0,
        "filter_errors": 0,
        "queued": {"orders": 2, "crm": 1},
        "rejected": {},
    }


@pytest.mark.parametrize(
    ("asked", "counts"),
    [
        (
            Backfill(("crm",)),
            {"skipped": 0, "unrouted": 1, "queued": {"crm": 1}},
        ),  # the order: no route to crm
        (
            Backfill(("orders",), Expression.compile("item.type == 'order'")),
            {"skipped": 1, "unrouted": 0, "queued": {"orders": 1}},
        ),
        (
            Backfill(("crm",), Expression.compile("item.nope")),
            {"skipped": 2, "unrouted": 0, "queued": {}},
        ),  # not true
        (Backfill(("orders",), dry_run=True), {"skipped": 0, "unrouted": 0, "would_queue": {"orders": 2}}),
        (
            Backfill(("orders",), Expression.compile('item.type == "order"')),
            {"skipped": 2, "unrouted": 0, "queued": {}},
        ),  # "order" is a field name in JMESPath: no item has it
        (
            Backfill(("orders",), Expression.compile("abs(item.name)")),
            {
                "skipped": 0,
                "unrouted": 0,
                "queued": {},
                "filter_errors": 2,  # not said no to: it cannot be evaluated on a text
                "filter_error": "JMESPathTypeError: In function abs(), invalid type for value: Ada,"
                " expected one of: ['number'], received: \"string\"",
            },
        ),
    ],
)
def test_only_the_asked_destinations_and_the_items_the_filter_takes(
    settings: Settings, asked: Backfill, counts: dict[str, Any]
) -> None:
    built = build(JOB, asked, settings, KEYS, [item("c1", "1", "customer"), item("o1", "2", "order")], 0.0)
    assert built.counts == {"scanned": 2, "rejected": {}, "filter_errors": 0} | counts
    assert {m.destination for m in built.messages} <= set(asked.destinations)


def test_a_record_the_routes_reject_is_rejected_for_that_destination_only(
    make_settings: MakeSettings,
) -> None:
    """A number DynamoDB would never hold: dead-lettered for each asked destination its routes take
    it to, as ingest does; an item no route takes is not dead-lettered even with TRICKLE_UNROUTED."""
    settings = make_settings(TRICKLE_UNROUTED="dead_letter:orders")
    bad = item("c1", "1", "customer", n={"N": "1E+200"})
    built = build(JOB, Backfill(("orders",)), settings, KEYS, [bad], 0.0)
    assert [(r.destination, r.reason) for r in built.rejected] == [
        (
            "orders",
            "item.n: number 1E+200 is outside DynamoDB's range (magnitudes 1E-130 to"
            " 9.9999999999999999999999999999999999999E+125, and 0)",
        )
    ]
    assert built.counts["rejected"] == {"orders": 1}
    none = build(JOB, Backfill(("crm",)), settings, KEYS, [item("o1", "2", "order")], 0.0)
    assert (none.rejected, none.counts["unrouted"]) == ([], 1)


def test_a_message_too_large_with_its_origin_is_rejected(make_settings: MakeSettings) -> None:
    settings = make_settings(TRICKLE_MAX_MESSAGE_BYTES="1024")
    large = item("c1", "1", "order", blob={"S": "x" * 400})  # fits without its three attributes
    built = build(JOB, Backfill(("orders",)), settings, KEYS, [large], 0.0)
    assert built.messages == []
    (rejected,) = built.rejected
    assert "(with its backfill attributes) exceeds the queue limit of 1024" in rejected.reason


@pytest.mark.parametrize(
    ("states", "wait_s", "shown", "pauses"),
    [
        (["done"], 600, "done", []),  # ended before the first look
        (["running", "running", "done"], 600, "done", [2.0, 2.0]),
        (["running", "cancelled"], 600, "cancelled", [2.0]),
        (["running"] * 10, 5, "running", [2.0, 2.0, 1.0]),  # the wait's end, however it stands
    ],
)
def test_the_command_follows_a_job_until_it_ends_or_the_wait_does(
    states: list[str], wait_s: float, shown: str, pauses: list[float]
) -> None:
    """`operate backfill --dry-run` (or `--wait`): looks every 2 s, never past the wait."""
    now = [0.0]
    looks = iter(states)
    waited: list[float] = []

    def pause(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds

    job = follow(lambda: {"state": next(looks)}, wait_s, clock=lambda: now[0], pause=pause)
    assert (job["state"], waited) == (shown, pauses)


@pytest.mark.parametrize(
    ("state", "counts", "shown"),
    [
        ("done", {"scanned": 10, "skipped": 4, "filter_errors": 0, "queued": {"orders": 6}}, []),
        ("done", {"scanned": 0, "skipped": 0, "filter_errors": 0}, []),  # an empty table
        ("done", {}, []),  # no part had read a page
        ("running", {"scanned": 10, "skipped": 10, "filter_errors": 0}, []),  # it may take some later
        (
            "done",
            {"scanned": 10, "skipped": 10, "filter_errors": 0},
            [
                "the filter took none of the 10 items scanned: check it (in JMESPath 'order' is a"
                ' string, "order" a field name)'
            ],
        ),
        (
            "running",
            {"scanned": 10, "skipped": 0, "filter_errors": 10, "filter_error": "JMESPathTypeError: x"},
            [
                "the filter failed on 10 of 10 items scanned, left out (first: JMESPathTypeError: x):"
                " check its functions' argument types"
            ],
        ),
    ],
)
def test_a_backfill_warns_of_a_filter_that_fails_or_takes_nothing(
    state: str, counts: dict[str, Any], shown: list[str]
) -> None:
    assert warnings({"state": state, "counts": counts}) == shown


def test_a_dry_run_is_shown_with_how_long_its_messages_take_at_least() -> None:
    """A real run, or a dry run with no paces known, is shown as it is."""
    dry = {"state": "done", "counts": {"scanned": 9, "would_queue": {"orders": 600}}}
    paces = {"orders": 10.0}
    assert shown(dry, paces)["estimate"] == {
        "orders": {"messages": 600, "at_most_per_s": 10.0, "seconds_at_least": 60}
    }
    assert "estimate" not in shown(dry)
    real = {"state": "running", "counts": {"scanned": 9, "queued": {"orders": 600}}}
    assert shown(real, paces) == real


@pytest.mark.parametrize(
    ("seconds", "spoken"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (61, "1 min 1 s"),
        (3601, "1 h"),  # down to the next unit
        (12_000, "3 h 20 min"),  # 100,000 at app.py's 500 a minute
        (242_000, "2 d 19 h"),
    ],
)
def test_the_command_says_a_duration_in_its_two_largest_units(seconds: int, spoken: str) -> None:
    assert spoken_duration(seconds) == spoken
