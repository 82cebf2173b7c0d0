"""A replay's plan (chalicelib/replay_plan.py, pure): the window, the request's checks, the
selection and the messages a replay queues."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.delivered_archive import Delivered
from chalicelib.freshness import API_ID_ATTRIBUTE, JOB_ATTRIBUTE, api_id
from chalicelib.model import DESTINATION_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE
from chalicelib.replay_plan import (
    Replay,
    ReplayError,
    Window,
    parse_request,
    parse_time,
    replayed,
    replayed_id,
    view,
    window,
)
from chalicelib.routing import Expression

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DESTINATIONS = ("orders", "crm")
REPLAY_ID = "0b6f8a52-3c1e-4f7a-9d2b-5e8c1a7f3b90"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def delivery(
    message_id: str = "m-1",
    group: str = "g0",
    when: str = "2026-12-04T10:00:00Z",
    body: str = '{"n": 1}',
    api_id: str = "",
) -> Delivered:
    return Delivered(message_id, group, at(when), body, api_id)


# --- the window -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-04T10:00:00Z", "2026-12-04T10:00:00+00:00"),
        ("2026-12-04T10:00:00.250Z", "2026-12-04T10:00:00.250000+00:00"),
        ("2026-12-04T10:00:00+00:00", "2026-12-04T10:00:00+00:00"),
        ("2026-12-04T11:00:00+01:00", "2026-12-04T10:00:00+00:00"),  # an offset, read into UTC
        (" 2026-12-04T10:00Z ", "2026-12-04T10:00:00+00:00"),
    ],
)
def test_a_time_with_its_zone_is_read_into_utc(text: str, expected: str) -> None:
    assert parse_time(text, "since").isoformat() == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (None, "since is required: an ISO 8601 time in UTC, like 2026-12-04T09:30:00Z"),
        ("", "since is required"),
        (1733300000, "since is required"),
        ("yesterday", "since 'yesterday' is not an ISO 8601 time: give one like 2026-12-04T09:30:00Z"),
        ("2026-12-04T10:00:00", "since '2026-12-04T10:00:00' has no time zone: add Z for UTC"),
        ("2026-12-04", "has no time zone"),
        ("2026-13-04T10:00:00Z", "is not an ISO 8601 time"),
    ],
)
def test_a_time_that_is_not_one_says_what_to_give(value: object, says: str) -> None:
    with pytest.raises(ReplayError) as raised:
        parse_time(value, "since")
    assert says in str(raised.value)


WINDOW_CASES = [
    ("10:00:00", "11:00:00", ("10:00:00", "11:00:00")),
    ("10:00:00", "10:00:00.001", ("10:00:00", "10:00:00.001000")),
    ("10:00:00", "12:00:00", ("10:00:00", "12:00:00")),  # up to now
    (
        "11:00:00",
        "10:00:00",
        "until (2026-12-04T10:00:00.000Z) must be later than since (2026-12-04T11:00:00.000Z)",
    ),
    ("10:00:00", "10:00:00", "until (2026-12-04T10:00:00.000Z) must be later than since"),
    ("10:00:00", "12:00:01", "until (2026-12-04T12:00:01.000Z) is later than now (2026-12-04T12:00:00.000Z)"),
]


@pytest.mark.parametrize(("since", "until", "expected"), WINDOW_CASES)
def test_the_window(since: str, until: str, expected: tuple[str, str] | str) -> None:
    """Times of 2026-12-04 (UTC); now is 12:00."""
    day = "2026-12-04T"
    if isinstance(expected, str):
        with pytest.raises(ReplayError) as raised:
            window(f"{day}{since}Z", f"{day}{until}Z", NOW, archive_days=30)
        assert str(raised.value).startswith(expected)
    else:
        found = window(f"{day}{since}Z", f"{day}{until}Z", NOW, archive_days=30)
        assert (found.since, found.until) == (at(f"{day}{expected[0]}Z"), at(f"{day}{expected[1]}Z"))


@pytest.mark.parametrize(
    ("since", "says"),
    [
        ("2026-11-04T12:00:00Z", None),  # the oldest the archive keeps
        (
            "2026-11-04T11:59:59Z",
            "since (2026-11-04T11:59:59.000Z) is older than the archive keeps deliveries"
            " (TRICKLE_ARCHIVE_DAYS=30): the earliest since now is 2026-11-04T12:00:00.000Z",
        ),
    ],
)
def test_a_window_must_start_within_the_archives_expiry(since: str, says: str | None) -> None:
    if says is None:
        assert window(since, "2026-12-04T10:00:00Z", NOW, archive_days=30).since == at(since)
    else:
        with pytest.raises(ReplayError) as raised:
            window(since, "2026-12-04T10:00:00Z", NOW, archive_days=30)
        assert str(raised.value) == says


# --- the request ----------------------------------------------------------------------------------

GOOD = {"destination": "orders", "since": "2026-12-04T10:00:00Z", "until": "2026-12-04T11:00:00Z"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (GOOD, {"to": "orders", "filter": None, "group": None, "same_keys": False, "dry_run": False}),
        (GOOD | {"to": "crm", "same_keys": True}, {"to": "crm", "same_keys": True}),
        (GOOD | {"to": "orders"}, {"to": "orders"}),  # to itself: the same as no `to`
        (
            GOOD | {"filter": "body.n > `1`", "group": "g0", "dry_run": True},
            {"filter": "body.n > `1`", "group": "g0", "dry_run": True},
        ),
    ],
)
def test_a_request_read(body: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = parse_request(body, DESTINATIONS, NOW, 30).spec()
    assert spec | expected == spec
    assert (spec["since"], spec["until"]) == ("2026-12-04T10:00:00.000Z", "2026-12-04T11:00:00.000Z")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([GOOD], "the body must be a JSON object with destination, since, until, filter, group, to,"),
        (GOOD | {"destinaton": "crm"}, 'unknown field(s) "destinaton"; a replay takes destination, since'),
        (GOOD | {"destination": "billing"}, "destination must be one of: crm, orders"),
        ({k: v for k, v in GOOD.items() if k != "destination"}, "destination must be one of: crm, orders"),
        (GOOD | {"to": "billing"}, "to must be one of: crm, orders (or left out: the destination itself)"),
        (GOOD | {"since": "2026-12-04T10:00:00"}, "since '2026-12-04T10:00:00' has no time zone"),
        ({k: v for k, v in GOOD.items() if k != "until"}, "until is required"),
        (GOOD | {"filter": "body.[["}, "filter 'body.[[' is not a JMESPath expression"),
        (GOOD | {"filter": ""}, "filter must be a JMESPath expression of at most 2000 characters"),
        (GOOD | {"filter": "a" * 2001}, "filter must be a JMESPath expression of at most 2000 characters"),
        (GOOD | {"group": ""}, "group must be a message group id (1 to 128 characters)"),
        (GOOD | {"group": 7}, "group must be a message group id"),
        (GOOD | {"same_keys": "yes"}, "same_keys must be true or false"),
        (GOOD | {"dry_run": 1}, "dry_run must be true or false"),
    ],
)  # fmt: skip
def test_a_request_refused_says_what_to_fix(body: object, says: str) -> None:
    with pytest.raises(ReplayError) as raised:
        parse_request(body, DESTINATIONS, NOW, 30)
    assert says in str(raised.value)


def test_every_problem_of_a_request_is_named_at_once() -> None:
    body = {"destination": "nope", "since": "later", "until": "2026-12-04T10:00:00Z", "dry_run": "no"}
    with pytest.raises(ReplayError) as raised:
        parse_request(body, DESTINATIONS, NOW, 30)
    assert str(raised.value).split("; ") == [
        "destination must be one of: crm, orders",
        "since 'later' is not an ISO 8601 time: give one like 2026-12-04T09:30:00Z",
        "dry_run must be true or false",
    ]


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        (
            {"destination": "orders"},
            [
                "since is required: an ISO 8601 time in UTC, like 2026-12-04T09:30:00Z",
                "until is required: an ISO 8601 time in UTC, like 2026-12-04T09:30:00Z",
            ],
        ),
        (
            {"since": "09:00", "until": "2026-12-04T10:00:00"},
            [
                "destination must be one of: crm, orders",
                "since '09:00' is not an ISO 8601 time: give one like 2026-12-04T09:30:00Z",
                "until '2026-12-04T10:00:00' has no time zone: add Z for UTC (like 2026-12-04T09:30:00Z)"
                " or an offset",
            ],
        ),
    ],
)
def test_both_times_problems_are_named_at_once(body: dict[str, Any], problems: list[str]) -> None:
    """Not "since is required", then once since is given "until is required"."""
    with pytest.raises(ReplayError) as raised:
        parse_request(body, DESTINATIONS, NOW, 30)
    assert str(raised.value).split("; ") == problems


def test_a_replay_kept_in_its_jobs_note_reads_back_the_same() -> None:
    replay = parse_request(
        GOOD | {"filter": "group == 'g0'", "group": "g0", "to": "crm", "same_keys": True},
        DESTINATIONS,
        NOW,
        30,
    )
    again = Replay.from_spec(replay.spec())
    assert again.spec() == replay.spec()
    assert again.window == replay.window and again.target == "crm"


# --- the selection --------------------------------------------------------------------------------

HOUR = Window(at("2026-12-04T10:00:00Z"), at("2026-12-04T11:00:00Z"))


def replay(filter: str | None = None, group: str | None = None) -> Replay:
    return Replay("orders", HOUR, Expression.compile(filter) if filter else None, group)


@pytest.mark.parametrize(
    ("taken", "filter", "group", "record"),
    [
        (True, None, None, delivery(when="2026-12-04T10:00:00Z")),  # since is in the window
        (True, None, None, delivery(when="2026-12-04T10:59:59.999Z")),
        (False, None, None, delivery(when="2026-12-04T11:00:00Z")),  # until is not
        (False, None, None, delivery(when="2026-12-04T09:59:59.999Z")),
        (True, None, "g0", delivery(group="g0")),
        (False, None, "g0", delivery(group="g1")),
        (True, "body.n > `0`", None, delivery(body='{"n": 1}')),
        (False, "body.n > `1`", None, delivery(body='{"n": 1}')),
        (True, "body.n == `12345678901234567890`", None, delivery(body='{"n": 12345678901234567890}')),
        (False, "body.missing > `1`", None, delivery()),  # null: not taken
        (False, "body.n", None, delivery(body='{"n": 1}')),  # not true: not taken
        (  # fails on this record: not taken, the reason kept
            "JMESPathTypeError: In function abs(), invalid type for value: x, expected one of:"
            " ['number'], received: \"string\"",
            "abs(body.name)", None, delivery(body='{"name": "x"}'),
        ),
        (True, "body == 'plain text'", None, delivery(body="plain text")),  # not JSON: its text
        (True, "id == 'm-1' && group == 'g0'", None, delivery()),
        (True, "starts_with(delivered_at, '2026-12-04T10:')", None, delivery()),
        (False, "body.n == `1`", "g1", delivery(body='{"n": 1}')),  # both must take it
    ],
)  # fmt: skip
def test_what_a_replay_takes(
    taken: bool | str, filter: str | None, group: str | None, record: Delivered
) -> None:
    assert replay(filter, group).takes(record) == taken


def test_a_replay_keeps_the_archives_order_in_each_group() -> None:
    archived = [
        delivery("a1", "a", "2026-12-04T10:01:00Z", '{"n": 1}'),
        delivery("b1", "b", "2026-12-04T10:02:00Z", '{"n": 2}'),
        delivery("a2", "a", "2026-12-04T10:03:00Z", '{"n": 3}'),
        delivery("b2", "b", "2026-12-04T10:04:00Z", '{"n": 0}'),
        delivery("a3", "a", "2026-12-04T10:05:00Z", '{"n": 5}'),
    ]
    chosen = replay("body.n > `0`")
    queued = [replayed(d, chosen, REPLAY_ID) for d in archived if chosen.takes(d)]
    by_group: dict[str, list[str]] = {}
    for message in queued:
        by_group.setdefault(message.group_id, []).append(message.body)
    assert by_group == {"a": ['{"n": 1}', '{"n": 3}', '{"n": 5}'], "b": ['{"n": 2}']}


def test_the_view_a_filter_sees() -> None:
    assert view(delivery(body='{"n": 1.50}')) == {
        "id": "m-1",
        "group": "g0",
        "delivered_at": "2026-12-04T10:00:00.000Z",
        "body": {"n": Decimal("1.50")},  # numbers exact, as strict JSON reads them
    }


# --- the messages ---------------------------------------------------------------------------------

OTHER_REPLAY = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"


def test_a_replayed_id_is_uuid5_of_the_original_in_the_replays_namespace() -> None:
    first = replayed_id(REPLAY_ID, "m-1")
    assert first == str(uuid.uuid5(uuid.UUID(REPLAY_ID), "m-1"))
    assert replayed_id(REPLAY_ID, "m-1") == first  # a resumed slice queues the same ids
    assert replayed_id(REPLAY_ID, "m-2") != first
    assert replayed_id(OTHER_REPLAY, "m-1") != first  # another replay: new ids


@pytest.mark.parametrize(
    ("same_keys", "to", "original_api_id", "api_sees"),
    [
        (False, "", "", "new"),  # the API applies it again
        (True, "", "", "m-1"),  # the API knows it already: it applies only what it missed
        (True, "", "first-original", "first-original"),  # the original was itself replayed with the same keys
        (False, "crm", "", "new"),
        (True, "crm", "", "m-1"),
    ],
)
def test_the_message_a_replay_queues(same_keys: bool, to: str, original_api_id: str, api_sees: str) -> None:
    chosen = Replay("orders", HOUR, to=to, same_keys=same_keys)
    original = delivery("m-1", "g7", body='{"n": 1}', api_id=original_api_id)

    message = replayed(original, chosen, REPLAY_ID)

    new = replayed_id(REPLAY_ID, "m-1")
    target = to or "orders"
    assert (message.message_id, message.dedup_id, message.group_id, message.body) == (
        new,
        new,
        "g7",
        '{"n": 1}',
    )
    assert message.destination == target
    expected = {MESSAGE_ID_ATTRIBUTE: new, DESTINATION_ATTRIBUTE: target, JOB_ATTRIBUTE: REPLAY_ID}
    if same_keys:
        expected[API_ID_ATTRIBUTE] = api_sees
    assert dict(message.attributes) == expected
    assert api_id(message.message_id, message.attributes) == (new if api_sees == "new" else api_sees)
