"""The item fingerprint and key text a backfilled message carries."""

import pytest

from chalicelib.freshness import fingerprint, key_text


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
