"""The item fingerprint and key text a backfilled message carries, the claim its attributes make
and what a read of its item says of it (`judge`), as tables; the id the API sees."""

import pytest

from chalicelib.freshness import (
    API_ID_ATTRIBUTE,
    FINGERPRINT_ATTRIBUTE,
    SOURCE_KEY_ATTRIBUTE,
    Claim,
    Freshness,
    api_id,
    claim,
    fingerprint,
    judge,
    key_attributes,
    key_text,
)


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ({"pk": {"S": "a"}, "n": {"N": "1"}}, {"n": {"N": "1"}, "pk": {"S": "a"}}, True),
        ({"s": {"SS": ["b", "a"]}}, {"s": {"SS": ["a", "b"]}}, True),
        (
            {"m": {"M": {"x": {"NS": ["2", "1"]}, "y": {"S": "z"}}}},
            {"m": {"M": {"y": {"S": "z"}, "x": {"NS": ["1", "2"]}}}},
            True,
        ),
        ({"l": {"L": [{"S": "a"}, {"S": "b"}]}}, {"l": {"L": [{"S": "b"}, {"S": "a"}]}}, False),
        ({"pk": {"S": "a"}, "n": {"N": "1"}}, {"pk": {"S": "a"}, "n": {"N": "2"}}, False),
        ({"pk": {"S": "a"}}, {"pk": {"S": "a"}, "extra": {"NULL": True}}, False),
        ({"t": {"S": "é"}}, {"t": {"S": "e"}}, False),
    ],
)
def test_fingerprint_is_equal_exactly_for_equal_items(
    one: dict[str, object], other: dict[str, object], same: bool
) -> None:
    assert (fingerprint(one) == fingerprint(other)) is same


def test_key_text_is_compact_sorted_json() -> None:
    assert key_text({"sk": {"N": "2"}, "pk": {"S": "a"}}) == '{"pk":{"S":"a"},"sk":{"N":"2"}}'


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, "m-1"),  # a live message: the API knows it by its own id
        ({API_ID_ATTRIBUTE: "original-7"}, "original-7"),  # a replay with the same keys
        ({API_ID_ATTRIBUTE: ""}, "m-1"),  # an empty attribute names nothing
        ({"trickle-job": "replay-1"}, "m-1"),  # a replay with new keys carries only its job
    ],
)
def test_api_id_is_the_attribute_when_the_message_has_one(attributes: dict[str, str], expected: str) -> None:
    assert api_id("m-1", attributes) == expected


def test_binaries_fingerprint_alike_as_bytes_from_a_client_or_base64_from_a_stream() -> None:
    """A Scan or GetItem through a low-level client gives bytes; a stream record's Lambda event the text."""
    read = {"pk": {"B": b"\x00\x01"}, "bs": {"BS": [b"b", b"a"]}, "m": {"M": {"x": {"B": b"\xff"}}}}
    streamed = {"pk": {"B": "AAE="}, "bs": {"BS": ["YQ==", "Yg=="]}, "m": {"M": {"x": {"B": "/w=="}}}}
    assert fingerprint(read) == fingerprint(streamed)
    assert key_text({"pk": {"B": b"\x00\x01"}}) == key_text({"pk": {"B": "AAE="}})


def test_an_attribute_named_like_a_set_type_is_an_attribute_not_a_set() -> None:
    assert fingerprint({"SS": {"S": "a"}}) != fingerprint({"SS": {"S": "b"}})
    assert fingerprint({"m": {"M": {"NS": {"N": "1"}}}}) != fingerprint({"m": {"M": {"NS": {"N": "2"}}}})


KEY = '{"pk":{"S":"a"},"sk":{"N":"2"}}'
NOT_A_KEY = "trickle-source-key is not an item key (one or two attributes, each typed S, N or B)"


@pytest.mark.parametrize(
    ("attributes", "claimed"),
    [
        ({}, None),
        ({"trickle-message-id": "m1"}, None),
        ({SOURCE_KEY_ATTRIBUTE: KEY, FINGERPRINT_ATTRIBUTE: "f1"}, Claim(KEY, "f1")),
        (  # the same key however its JSON is spaced or ordered
            {SOURCE_KEY_ATTRIBUTE: '{"sk": {"N": "2"}, "pk": {"S": "a"}}', FINGERPRINT_ATTRIBUTE: "f1"},
            Claim(KEY, "f1"),
        ),
        (
            {SOURCE_KEY_ATTRIBUTE: '{"pk":{"B":"AAE="}}', FINGERPRINT_ATTRIBUTE: "f1"},
            Claim('{"pk":{"B":"AAE="}}', "f1"),
        ),
        (
            {SOURCE_KEY_ATTRIBUTE: KEY},
            "trickle-fingerprint is missing or empty, so the item cannot be read back",
        ),
        (
            {FINGERPRINT_ATTRIBUTE: "f1"},
            "trickle-source-key is missing or empty, so the item cannot be read back",
        ),
        (
            {SOURCE_KEY_ATTRIBUTE: KEY, FINGERPRINT_ATTRIBUTE: ""},
            "trickle-fingerprint is missing or empty, so the item cannot be read back",
        ),
        ({SOURCE_KEY_ATTRIBUTE: "{pk", FINGERPRINT_ATTRIBUTE: "f1"}, "trickle-source-key is not JSON"),
        ({SOURCE_KEY_ATTRIBUTE: '["pk"]', FINGERPRINT_ATTRIBUTE: "f1"}, NOT_A_KEY),
        ({SOURCE_KEY_ATTRIBUTE: "{}", FINGERPRINT_ATTRIBUTE: "f1"}, NOT_A_KEY),
        (
            {SOURCE_KEY_ATTRIBUTE: '{"a":{"S":"1"},"b":{"S":"2"},"c":{"S":"3"}}', FINGERPRINT_ATTRIBUTE: "f"},
            NOT_A_KEY,
        ),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"M":{}}}', FINGERPRINT_ATTRIBUTE: "f1"}, NOT_A_KEY),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"S":1}}', FINGERPRINT_ATTRIBUTE: "f1"}, NOT_A_KEY),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"S":""}}', FINGERPRINT_ATTRIBUTE: "f1"}, NOT_A_KEY),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"S":"a","N":"1"}}', FINGERPRINT_ATTRIBUTE: "f1"}, NOT_A_KEY),
        ({SOURCE_KEY_ATTRIBUTE: '{"pk":{"B":"not base64!"}}', FINGERPRINT_ATTRIBUTE: "f1"}, NOT_A_KEY),
        ({SOURCE_KEY_ATTRIBUTE: '{"":{"S":"a"}}', FINGERPRINT_ATTRIBUTE: "f1"}, NOT_A_KEY),
    ],
)
def test_claim(attributes: dict[str, str], claimed: Claim | str | None) -> None:
    assert claim(attributes) == claimed


@pytest.mark.parametrize(
    ("claimed", "current", "read", "result"),
    [
        ("f1", "f1", True, Freshness.CURRENT),
        ("f1", "f2", True, Freshness.CHANGED),
        ("f1", None, True, Freshness.GONE),
        ("f1", None, False, Freshness.UNREAD),
        ("f1", "f1", False, Freshness.UNREAD),  # what a failed read answered is never trusted
    ],
)
def test_judge(claimed: str, current: str | None, read: bool, result: Freshness) -> None:
    assert judge(claimed, current, read) is result


@pytest.mark.parametrize(
    ("claimed", "current", "read", "result"),
    [
        ("f1", "f2", True, Freshness.CURRENT),  # no change of it will follow: sent as scanned
        ("f1", "f1", True, Freshness.CURRENT),
        ("f1", None, True, Freshness.GONE),  # a deleted item is never resurrected, whatever the route
        ("f1", "f2", False, Freshness.UNREAD),
    ],
)
def test_judge_through_a_route_of_inserts_only(
    claimed: str, current: str | None, read: bool, result: Freshness
) -> None:
    assert judge(claimed, current, read, changes_follow=False) is result


def test_a_claims_key_goes_to_the_client_typed_with_its_binaries_as_bytes() -> None:
    assert key_attributes('{"pk":{"B":"AAE="},"sk":{"S":"x"}}') == {
        "pk": {"B": b"\x00\x01"},
        "sk": {"S": "x"},
    }
