"""Message search's question and the attempts timeline (issue #27): `GET /messages`' query
(chalicelib/operations.py `search_query`: every refusal a 400 that says what to fix) and what a
record keeps of its attempts (chalicelib/model.py `attempt`, `logged`)."""

from __future__ import annotations

import pytest

from chalicelib.model import ATTEMPTS_KEPT, Attempt, LedgerRecord, Status, attempt, logged
from chalicelib.operations import Search, search_query

T = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"key": "c1"}, Search(key="c1")),
        (
            {"key": "c1", "sort_key": "PROFILE", "destination": "crm", "limit": "50", "next": "abc"},
            Search(50, "abc", "crm", "c1", "PROFILE"),
        ),
        ({"status": "failed"}, Search(status=Status.FAILED)),
        (
            {"status": "dead", "since": "2026-01-01T00:00:00Z", "until": "1767225660.5"},
            Search(status=Status.DEAD, since=T, until=T + 60.5),
        ),
        (
            {"status": "halted", "since": "2026-01-01T02:00:00+02:00", "until": "2026-01-01T00:00:00.000Z"},
            Search(status=Status.HALTED, since=T, until=T),
        ),
    ],
)
def test_a_search_is_one_item_s_messages_or_a_status_in_a_window(
    query: dict[str, str], expected: Search
) -> None:
    assert search_query(query) == expected


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({}, "give key (an item's partition key value"),
        ({"key": "a", "status": "failed"}, "not both"),
        ({"key": "a", "colour": "red"}, 'unknown parameter(s): "colour"; allowed: destination, key'),
        ({"key": "a", "since": "2026-01-01T00:00:00Z"}, "since go with status, not key"),
        ({"status": "failed", "sort_key": "x"}, "sort_key goes with key, not status"),
        ({"status": "lost"}, "status must be one of: queued, delivered, failed, dead, halted, skip"),
        ({"status": "failed", "since": "yesterday"}, "since must be an ISO 8601 time with its zone"),
        (
            {"status": "failed", "since": "2026-01-01T00:00:00"},
            "since must be an ISO 8601 time with its zone",
        ),
        ({"status": "failed", "until": "-5"}, "until must be an ISO 8601 time"),
        ({"status": "failed", "until": "1e400"}, "until must be an ISO 8601 time"),
        ({"status": "failed", "until": "9" * 20}, "until must be an ISO 8601 time"),
        ({"status": "failed", "until": "2026-01-01T00:00:00Z" + " " * 40}, "until must be"),
        ({"status": "failed", "since": "1767225601", "until": "1767225600"}, "since must not be after until"),
        ({"key": ""}, "key must be 1 to 2048 characters"),
        ({"key": "k" * 2049}, "key must be 1 to 2048 characters"),
        ({"key": "a", "sort_key": ""}, "sort_key must be 1 to 2048 characters"),
        ({"key": "a", "limit": "0"}, "limit must be a whole number from 1 to 50"),
        ({"key": "a", "limit": "51"}, "limit must be a whole number from 1 to 50"),
        ({"key": "a", "limit": "²"}, "limit must be a whole number from 1 to 50"),
    ],
)
def test_a_search_it_cannot_answer_says_what_to_fix(query: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError) as refused:
        search_query(query)
    assert says in str(refused.value)


def test_an_attempt_keeps_its_time_answer_duration_and_a_short_reason() -> None:
    assert attempt(T, 503, 12.6, "HTTP 503") == Attempt(T, 503, 13, "HTTP 503")
    assert attempt(T, None, -1, "x" * 500) == Attempt(T, None, 0, "x" * 100)
    assert attempt(T, 200, 3, "HTTP 200").as_dict() == {
        "at": "2026-01-01T00:00:00.000Z",
        "status_code": 200,
        "duration_ms": 3,
        "reason": "HTTP 200",
    }


def test_a_record_keeps_its_last_attempts_oldest_first() -> None:
    made = [Attempt(T + n, 503, n, "HTTP 503") for n in range(ATTEMPTS_KEPT + 2)]
    assert logged(None, made[0]) == (made[0],)
    record = LedgerRecord("m1", Status.FAILED, timeline=tuple(made[:ATTEMPTS_KEPT]))
    assert logged(record, made[ATTEMPTS_KEPT]) == tuple(made[1 : ATTEMPTS_KEPT + 1])
