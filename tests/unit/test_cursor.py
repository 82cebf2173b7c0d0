"""Dead-letter page cursors and the listing's query (chalicelib/operations.py): opaque to callers,
checked strictly, and anything the API did not issue is a clear refusal."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.operations import CursorError, decode_cursor, encode_cursor, page_query

KEY = "2026-12-01T20:11:54.123Z#0b1f5a57-9d8e-4a56-9a0f-5d6c1e1a7a11"


def b64(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def test_a_cursor_round_trips_and_is_url_safe() -> None:
    token = encode_cursor("default", KEY)
    assert token.replace("-", "").replace("_", "").isalnum()
    assert decode_cursor(token, "default") == KEY


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "eHl6",  # "xyz"
        "%%%",
        "",
        "A" * 401,
        b64([KEY]),
        b64({"v": 1, "d": "default"}),
        b64({"v": 1, "d": "default", "k": KEY, "extra": 1}),
        b64({"v": 2, "d": "default", "k": KEY}),
        b64({"v": True, "d": "default", "k": KEY}),
        b64({"v": 1, "d": "other", "k": KEY}),
        b64({"v": 1, "d": "default", "k": 7}),
        b64({"v": 1, "d": "default", "k": "2026-12-01T20:11:54.123Z#../../etc"}),
        b64({"v": 1, "d": "default", "k": KEY + "#"}),
        base64.urlsafe_b64encode(b"\xff\xfe{").decode(),
        encode_cursor("default", KEY) + "==",
    ],
)
def test_anything_but_an_issued_cursor_is_refused(token: str) -> None:
    with pytest.raises(CursorError, match="next is not a cursor this API issued"):
        decode_cursor(token, "default")


def test_a_cursor_of_another_destination_is_refused() -> None:
    with pytest.raises(CursorError):
        decode_cursor(encode_cursor("billing", KEY), "default")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, (10, None, None)),
        ({"limit": "7", "next": "t", "destination": "d"}, (7, "t", "d")),
    ],
)
def test_the_listing_query(query: dict[str, str], expected: tuple[int, str | None, str | None]) -> None:
    assert page_query(query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "x"}, "limit must be a whole number from 1 to 50"),
        ({"limit": "-1"}, "limit must be a whole number"),
        ({"limit": "1" * 5000}, "limit must be a whole number"),
        ({"limit": "٣"}, "limit must be a whole number"),  # an Arabic-Indic digit
        ({"colour": "red"}, 'unknown parameter(s): "colour"; allowed: limit, next, destination'),
    ],
)
def test_a_bad_listing_query_says_what_to_fix(query: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as refused:
        page_query(query)
    assert message in str(refused.value)
