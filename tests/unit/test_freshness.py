"""The item fingerprint and key text a backfilled message carries; the id the API sees."""

import pytest

from chalicelib.freshness import API_ID_ATTRIBUTE, api_id, fingerprint, key_text


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
