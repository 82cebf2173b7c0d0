"""Stream record decoding and message building (chalicelib/records.py)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from chalicelib.item_keys import ITEM_KEY_ATTRIBUTE
from chalicelib.model import (
    DESTINATION_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    REASON_ATTRIBUTE,
    ROUTE_ATTRIBUTE,
    OutboundMessage,
)
from chalicelib.records import (
    ENVELOPE_VERSION,
    RecordError,
    RejectedRecord,
    build_messages,
    decode_image,
    rejection_message,
    route_record,
)
from chalicelib.records import group_id_for as destination_group_id
from chalicelib.records import message_id_for as destination_message_id
from chalicelib.settings import Settings
from chalicelib.strict_json import dumps
from tests.unit.conftest import routes_env

MakeSettings = Callable[..., Settings]
MakeRecord = Callable[..., dict[str, Any]]
Routes = Callable[..., dict[str, str | None]]

HUGE = "123456789012345678901234567890"
PRECISE = "0.1000000000000000055511151231257827"
SQS_GROUP_CHARS = re.compile(r"[!-~]+")  # printable ASCII without space, as SQS documents it


def build_message(
    record: dict[str, Any], settings: Settings, destination: str = "orders"
) -> OutboundMessage | RejectedRecord | None:
    """What one record becomes for one destination (the suite's routes send every INSERT to orders)."""
    routed = route_record(record, settings)
    outcomes: list[OutboundMessage | RejectedRecord] = [*routed.messages, *routed.rejected]
    found = [m for m in outcomes if m.destination == destination]
    assert len(found) <= 1
    return found[0] if found else None


def message_id_for(table: str, event_id: str) -> str:
    return destination_message_id(table, event_id, "orders")


def group_id_for(settings: Settings, keys: dict[str, Any]) -> str:
    orders = settings.destination("orders")
    return destination_group_id(orders, settings.table_name, keys, {"keys": keys}, settings.partition_key)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def strict_json(text: str) -> Any:
    """Parse as a strict JSON consumer would: exact decimals, no NaN or Infinity."""

    def reject(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_float=Decimal, parse_constant=reject)


def assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """Equal values of the same JSON types: 100 is not Decimal('1E+2'), True is not 1."""
    assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), path
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{index}]")
    elif isinstance(expected, Decimal):
        assert str(actual) == str(expected), path
    else:
        assert actual == expected, path


def is_sqs_group_id(value: str) -> bool:
    return 1 <= len(value) <= 128 and SQS_GROUP_CHARS.fullmatch(value) is not None


# --- decode_image ------------------------------------------------------------------------------------


def image(binary: Callable[[bytes], Any]) -> dict[str, Any]:
    """Every DynamoDB type; `binary` renders B/BS values (base64 text for Lambda, bytes for boto3)."""
    return {
        "s": {"S": 'héllo "world"\n'},
        "empty_s": {"S": ""},
        "n_int": {"N": "42"},
        "n_zero": {"N": "0"},
        "n_huge": {"N": HUGE},
        "n_neg_huge": {"N": "-" + HUGE},
        "n_precise": {"N": PRECISE},
        "n_neg": {"N": "-17.25"},
        "n_neg_int": {"N": "-5"},
        "n_exp": {"N": "1E+2"},
        "n_small": {"N": "1E-7"},
        "b": {"B": binary(b"\x00\x01\x02\xff")},
        "ss": {"SS": ["pear", "apple", "Fig", "banana"]},
        "ns": {"NS": ["10", "9", "-1.5", HUGE, "0.25"]},
        "bs": {"BS": [binary(b"\x02"), binary(b"\x00\xff"), binary(b"\x01")]},
        "yes": {"BOOL": True},
        "no": {"BOOL": False},
        "nothing": {"NULL": True},
        "m": {
            "M": {
                "inner": {"S": "x"},
                "bin": {"B": binary(b"map-bytes")},
                "deep": {"M": {"n": {"N": "0.5"}, "bs": {"BS": [binary(b"z"), binary(b"a")]}}},
            }
        },
        "l": {
            "L": [
                {"N": "1"},
                {"S": "two"},
                {"B": binary(b"\x10\x20")},
                {"L": [{"BOOL": False}, {"NULL": True}]},
                {"M": {"k": {"N": PRECISE}}},
                {"SS": ["b", "a"]},
            ]
        },
        "empty_m": {"M": {}},
        "empty_l": {"L": []},
    }


EXPECTED: dict[str, Any] = {
    "s": 'héllo "world"\n',
    "empty_s": "",
    "n_int": 42,
    "n_zero": 0,
    "n_huge": int(HUGE),
    "n_neg_huge": -int(HUGE),
    "n_precise": Decimal(PRECISE),
    "n_neg": Decimal("-17.25"),
    "n_neg_int": -5,
    "n_exp": 100,
    "n_small": Decimal("1E-7"),
    "b": b64(b"\x00\x01\x02\xff"),
    "ss": ["Fig", "apple", "banana", "pear"],
    "ns": [Decimal("-1.5"), Decimal("0.25"), 9, 10, int(HUGE)],
    "bs": [b64(b"\x00\xff"), b64(b"\x01"), b64(b"\x02")],
    "yes": True,
    "no": False,
    "nothing": None,
    "m": {
        "inner": "x",
        "bin": b64(b"map-bytes"),
        "deep": {"n": Decimal("0.5"), "bs": [b64(b"a"), b64(b"z")]},
    },
    "l": [1, "two", b64(b"\x10\x20"), [False, None], {"k": Decimal(PRECISE)}, ["a", "b"]],
    "empty_m": {},
    "empty_l": [],
}

SHAPES: dict[str, Callable[[bytes], Any]] = {"lambda": b64, "boto3": bytes}


@pytest.mark.parametrize("shape", SHAPES)
def test_decode_image_every_type(shape: str) -> None:
    assert_same(decode_image(image(SHAPES[shape])), EXPECTED)


def test_both_shapes_decode_identically() -> None:
    assert decode_image(image(b64)) == decode_image(image(bytes))


@pytest.mark.parametrize("shape", SHAPES)
def test_dumps_round_trips_every_type_exactly(shape: str) -> None:
    text = dumps(decode_image(image(SHAPES[shape])))
    assert_same(strict_json(text), EXPECTED)


def test_dumps_keeps_every_digit_and_integer_form() -> None:
    text = dumps(decode_image({"huge": {"N": HUGE}, "precise": {"N": PRECISE}, "exp": {"N": "1E+2"}}))
    assert f'"huge":{HUGE}' in text
    assert f'"precise":{PRECISE}' in text
    assert '"exp":100' in text
    parsed = json.loads(text)  # a float-minded consumer still sees an exact integer
    assert parsed["huge"] == int(HUGE)
    assert isinstance(parsed["huge"], int)


def test_dumps_is_compact_utf8_json() -> None:
    value = {"name": "café ☕", "quote": 'a"b\\c', "list": [True, False, None, 1, Decimal("2.50")]}
    text = dumps(value)
    assert text == '{"name":"café ☕","quote":"a\\"b\\\\c","list":[true,false,null,1,2.50]}'
    assert strict_json(text) == value


def test_decode_image_of_empty_image_is_empty() -> None:
    assert decode_image({}) == {}


@pytest.mark.parametrize(
    "attribute",
    [
        pytest.param({"XX": "1"}, id="unknown-type"),
        pytest.param({}, id="empty-value"),
        pytest.param("plain", id="not-a-map"),
        pytest.param(None, id="null-value"),
        pytest.param({"B": "not base64!"}, id="bad-base64"),
        pytest.param({"BS": ["AAE=", "%%%"]}, id="bad-base64-in-set"),
        pytest.param({"M": {"x": {"B": "***"}}}, id="bad-base64-nested"),
        pytest.param({"L": [{"NOPE": "1"}]}, id="unknown-type-in-list"),
    ],
)
def test_decode_image_wraps_undecodable_values(attribute: Any) -> None:
    with pytest.raises(RecordError, match="undecodable"):
        decode_image({"a": attribute})


TOO_PRECISE = "1." + "0" * 40 + "1"
RANGE = "outside DynamoDB's range (magnitudes 1E-130 to 9.9999999999999999999999999999999999999E+125, and 0)"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        pytest.param("abc", "number abc is not a finite DynamoDB number", id="not-a-number"),
        pytest.param("", "number  is not a finite DynamoDB number", id="empty"),
        pytest.param("NaN", "number NaN is not a finite DynamoDB number", id="nan"),
        pytest.param("-Infinity", "number -Infinity is not a finite DynamoDB number", id="infinity"),
        pytest.param(" 1", "number  1 is not a finite DynamoDB number", id="space"),
        pytest.param("1_000", "number 1_000 is not a finite DynamoDB number", id="underscore"),
        pytest.param("\u0661", "number \u0661 is not a finite DynamoDB number", id="non-ascii-digit"),
        pytest.param(7, "number 7 is int, not text", id="not-text"),
        pytest.param("1E+200", f"number 1E+200 is {RANGE}", id="above-dynamodb-range"),
        pytest.param("1E+126", f"number 1E+126 is {RANGE}", id="just-above"),
        pytest.param("-1E+126", f"number -1E+126 is {RANGE}", id="just-below"),
        pytest.param(
            "1" + "0" * 126, f"number 1{'0' * 29}…{'0' * 20} (127 characters) is {RANGE}", id="plain-above"
        ),
        pytest.param("9.99E-131", f"number 9.99E-131 is {RANGE}", id="below-smallest"),
        pytest.param("-0.1e-130", f"number -0.1e-130 is {RANGE}", id="below-smallest-negative"),
        pytest.param(
            "1e99999999999999999999", f"number 1e99999999999999999999 is {RANGE}", id="huge-exponent"
        ),
        pytest.param(
            TOO_PRECISE,
            f"number {TOO_PRECISE} has 42 significant digits; DynamoDB holds at most 38",
            id="more-than-38-digits",
        ),
        pytest.param(
            "1" * 39 + "0" * 5,
            f"number {'1' * 39 + '0' * 5} has 39 significant digits; DynamoDB holds at most 38",
            id="39-significant-digits-and-trailing-zeros",
        ),
    ],
)
def test_decode_image_rejects_numbers_dynamodb_cannot_hold(number: Any, reason: str) -> None:
    """Every malformed number is a RecordError saying why, never NaN in the JSON nor an uncaught
    decimal error."""
    with pytest.raises(RecordError) as refused:
        decode_image({"a": {"N": number}})
    assert str(refused.value) == f"item.a: {reason}"


@pytest.mark.parametrize(
    ("number", "sent"),
    [
        # more than 38 digits of text, at most 38 significant: boto3's decoder refused these
        pytest.param(
            "123456789012345678901234567890123456780",
            "123456789012345678901234567890123456780",
            id="39-digits",
        ),
        pytest.param("9.9999999999999999999999999999999999999E+125", "9" * 38 + "0" * 88, id="largest"),
        pytest.param(
            "-9.9999999999999999999999999999999999999E+125", "-" + "9" * 38 + "0" * 88, id="most-negative"
        ),
        pytest.param("9" * 38 + "0" * 88, "9" * 38 + "0" * 88, id="largest-plain"),
        pytest.param(
            "1.2345678901234567890123456789012345678E-130",
            "1.2345678901234567890123456789012345678E-130",
            id="38-digits-at-the-bottom",
        ),
        pytest.param("1E-130", "1E-130", id="smallest"),
        pytest.param("-1E-130", "-1E-130", id="smallest-negative"),
        pytest.param("0." + "0" * 129 + "1", "1E-130", id="smallest-plain"),
        pytest.param(
            "0.10000000000000000000000000000000000000000",
            "0.10000000000000000000000000000000000000000",
            id="trailing-zeros-kept",
        ),
        pytest.param("0012.50", "12.50", id="leading-zeros"),
        pytest.param("12.5e+3", "12500", id="exponent-integer"),
        pytest.param("125E-4", "0.0125", id="exponent-fraction"),
        pytest.param("1.000E2", "100", id="integer-with-a-point"),
        pytest.param("-0.000", "0", id="negative-zero"),
        pytest.param("0E-999", "0", id="zero-with-any-exponent"),
    ],
)
def test_decode_image_reads_every_number_dynamodb_holds_exactly(number: str, sent: str) -> None:
    """Integers become JSON integers; other numbers keep their digits (as `dumps` writes Decimals)."""
    assert dumps(decode_image({"a": {"N": number}, "s": {"NS": [number]}})) == f'{{"a":{sent},"s":[{sent}]}}'


@pytest.mark.parametrize(
    "attribute",
    [
        pytest.param({"NS": ["abc"]}, id="set-of-one-nan"),
        pytest.param({"NS": ["1", "abc"]}, id="set-with-nan"),
        pytest.param({"NS": ["1", "1E+200"]}, id="set-with-overflow"),
        pytest.param({"L": [{"N": "1E+200"}]}, id="overflow-in-list"),
        pytest.param({"M": {"x": {"N": TOO_PRECISE}}}, id="inexact-in-map"),
    ],
)
def test_decode_image_rejects_malformed_numbers_in_containers(attribute: Any) -> None:
    with pytest.raises(RecordError):
        decode_image({"a": attribute})


# Numbers as a stream may carry them. DynamoDB holds 38 significant digits at magnitudes 1E-130 to
# 9.9999999999999999999999999999999999999E+125 (and 0); the text may be longer: trailing zeros (AWS
# writes 9.99...E+125 as 126 plain digits), leading zeros and any notation (emulators pass the text
# through as written).
PROPERTY = examples(  # 400 examples; 40 in the fast lane (tests/conftest.py)
    max_examples=4 * examples.default.max_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
EXPONENT_EDGES = st.sampled_from([-130, -129, -7, -6, -1, 0, 1, 37, 38, 39, 124, 125])


@st.composite
def number_text(
    draw: st.DrawFn, significant: st.SearchStrategy[int], adjusted: st.SearchStrategy[int]
) -> str:
    """`significant` digits (0 for zero), the first at 10**`adjusted`, in plain or exponent notation,
    with trailing and leading zeros, either sign."""
    count = draw(significant)
    digits = str(draw(st.integers(10 ** (count - 1), 10**count - 1))).rstrip("0") if count else ""
    while count and len(digits) < count:  # the drawn number ended in zeros: draw its last digit again
        digits += str(draw(st.integers(1, 9)))
    magnitude = draw(adjusted)
    coefficient = (digits or "0") + "0" * draw(st.integers(0, 8))
    leading = "0" * draw(st.integers(0, 2))
    if draw(st.booleans()):  # plain: the point where the exponent puts it
        shift = magnitude - len(coefficient) + 1  # value = coefficient * 10**shift
        if shift >= 0:
            body = coefficient + "0" * shift + draw(st.sampled_from(["", ".", ".0", ".000"]))
        elif len(coefficient) + shift > 0:
            body = coefficient[: len(coefficient) + shift] + "." + coefficient[len(coefficient) + shift :]
        else:
            body = "0." + "0" * -(len(coefficient) + shift) + coefficient
    else:  # exponent: any point position, e or E, the exponent's sign written or not
        point = draw(st.integers(0, len(coefficient)))
        mantissa = (coefficient[:point] or "0") + (
            "." + coefficient[point:] if point < len(coefficient) else ""
        )
        exponent = magnitude - point + 1 if point else magnitude + 1
        sign = "-" if exponent < 0 else draw(st.sampled_from(["", "+"]))
        body = f"{mantissa}{draw(st.sampled_from('eE'))}{sign}{abs(exponent)}"
    return draw(st.sampled_from(["", "-"])) + leading + body


VALID_NUMBERS = number_text(
    st.one_of(st.integers(1, 38), st.just(38), st.just(0)), st.one_of(st.integers(-130, 125), EXPONENT_EDGES)
)
TOO_PRECISE_NUMBERS = number_text(st.integers(39, 45), st.integers(-130, 125))
OUT_OF_RANGE_NUMBERS = number_text(
    st.integers(1, 38),
    st.one_of(st.integers(126, 400), st.integers(-400, -131), st.sampled_from([-131, 126])),
)


def sent_number(text: str, settings: Settings, make_record: MakeRecord) -> list[Any]:
    """Where a stream carries the number (a key, an attribute, a set, nested), as the API gets it."""
    keys = {"pk": {"S": "p"}, "sk": {"N": text}}
    item = {**keys, "n": {"N": text}, "ns": {"NS": [text]}, "deep": {"M": {"l": {"L": [{"N": text}]}}}}
    message = build_message(make_record(keys=keys, new_image=item), settings)
    assert isinstance(message, OutboundMessage), message
    sent = json.loads(message.body, parse_float=Decimal)  # as a strict consumer reads it: no float
    return [
        sent["keys"]["sk"],
        sent["item"]["sk"],
        sent["item"]["n"],
        sent["item"]["ns"][0],
        sent["item"]["deep"]["l"][0],
    ]


@PROPERTY
@given(text=VALID_NUMBERS)
def test_every_number_dynamodb_holds_reaches_the_api_exactly(
    text: str, settings: Settings, make_record: MakeRecord
) -> None:
    stored = Decimal(text)
    # integers as JSON integers, other numbers with the digits stored, never through a float
    expected = int(stored) if stored == stored.to_integral_value() else stored
    for sent in sent_number(text, settings, make_record):
        assert_same(sent, expected)
        assert sent == stored


@PROPERTY
@given(text=st.one_of(TOO_PRECISE_NUMBERS, OUT_OF_RANGE_NUMBERS))
def test_numbers_dynamodb_refuses_are_dead_lettered_saying_why(
    text: str, settings: Settings, make_record: MakeRecord
) -> None:
    keys = {"pk": {"S": "p"}, "sk": {"S": "s"}}
    built = build_message(make_record(keys=keys, new_image={**keys, "n": {"N": text}}), settings)
    assert_rejected(built, ("item.n: number ",))
    assert isinstance(built, RejectedRecord)
    assert (
        "significant digits; DynamoDB holds at most 38" in built.reason
        or "outside DynamoDB's range" in built.reason
    )


# --- message ids and group ids ------------------------------------------------------------------------


def test_message_id_is_stable_and_a_uuid() -> None:
    first = message_id_for("items", "event-1")
    assert first == message_id_for("items", "event-1")
    assert str(uuid.UUID(first)) == first


def test_message_id_differs_per_event_per_table_and_per_destination() -> None:
    ids = {
        destination_message_id(table, event, destination)
        for table in ("items", "orders")
        for event in ("event-1", "event-2")
        for destination in ("orders", "crm")
    }
    assert len(ids) == 8


def test_group_by_partition_key_groups_by_partition_key_only(settings: Settings) -> None:
    same_a = group_id_for(settings, {"pk": "a", "sk": 1})
    same_b = group_id_for(settings, {"pk": "a", "sk": 2})
    other = group_id_for(settings, {"pk": "b", "sk": 1})
    assert same_a == same_b
    assert same_a != other
    assert is_sqs_group_id(same_a)
    assert is_sqs_group_id(other)


def test_group_by_partition_key_tells_string_from_number(settings: Settings) -> None:
    assert group_id_for(settings, {"pk": "1"}) != group_id_for(settings, {"pk": 1})


def test_group_by_partition_key_needs_the_key(settings: Settings) -> None:
    with pytest.raises(RecordError, match="pk"):
        group_id_for(settings, {"other": "a"})


def test_group_ids_are_per_table(make_settings: MakeSettings) -> None:
    orders = make_settings(
        TRICKLE_STREAM_ARN="arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
    )
    items = make_settings()
    assert group_id_for(orders, {"pk": "a"}) != group_id_for(items, {"pk": "a"})


def test_group_by_table_is_one_group(make_settings: MakeSettings) -> None:
    settings = make_settings(TRICKLE_DEST_ORDERS_GROUP_BY="table", TRICKLE_PARTITION_KEY=None)
    groups = {group_id_for(settings, keys) for keys in ({"pk": "a"}, {"pk": "b", "sk": 2}, {"id": 3})}
    assert len(groups) == 1
    assert is_sqs_group_id(groups.pop())


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("has space", id="space"),
        pytest.param("tab\there", id="control"),
        pytest.param("naïve-ünïcode", id="unicode"),
        pytest.param("emoji-🙂", id="emoji"),
        pytest.param("x" * 500, id="too-long"),
        pytest.param(b64(b"\x00" * 200), id="long-binary"),
    ],
)
def test_unsafe_group_values_are_hashed_to_sqs_safe_ids(settings: Settings, value: str) -> None:
    group = group_id_for(settings, {"pk": value})
    assert is_sqs_group_id(group)
    assert group == group_id_for(settings, {"pk": value})
    assert group != group_id_for(settings, {"pk": value + "!"})


def test_distinct_long_values_keep_distinct_groups(settings: Settings) -> None:
    prefix = "p" * 300
    groups = {group_id_for(settings, {"pk": prefix + suffix}) for suffix in ("a", "b", "c")}
    assert len(groups) == 3
    assert all(is_sqs_group_id(g) for g in groups)


def test_group_id_at_the_length_limit(settings: Settings) -> None:
    short = [group_id_for(settings, {"pk": "v" * n}) for n in range(100, 140)]
    assert all(is_sqs_group_id(g) for g in short)
    assert len(set(short)) == len(short)


# --- build_message -----------------------------------------------------------------------------------


def body_of(message: OutboundMessage) -> Any:
    return strict_json(message.body)


def test_insert_becomes_a_complete_envelope(settings: Settings, make_record: MakeRecord) -> None:
    record = make_record(
        event_id="ev-42",
        sequence="4200000000000000000001",
        keys={"pk": {"S": "user-1"}, "sk": {"N": "7"}},
        new_image={
            "pk": {"S": "user-1"},
            "sk": {"N": "7"},
            "price": {"N": PRECISE},
            "blob": {"B": b64(b"\x01\x02")},
            "tags": {"SS": ["b", "a"]},
        },
        created=1767225600,
    )
    message = build_message(record, settings)
    assert isinstance(message, OutboundMessage)
    expected_id = message_id_for("items", "ev-42")
    assert message.message_id == expected_id
    assert message.dedup_id == expected_id
    assert message.sequence_number == "4200000000000000000001"
    assert message.keys == {"pk": "user-1", "sk": 7}
    assert message.group_id == group_id_for(settings, {"pk": "user-1", "sk": 7})
    assert message.destination == "orders"
    assert message.attributes == {
        MESSAGE_ID_ATTRIBUTE: expected_id,
        DESTINATION_ATTRIBUTE: "orders",
        ROUTE_ATTRIBUTE: "everything",
        ITEM_KEY_ATTRIBUTE: '["user-1","7"]',  # for search by item key: the partition's, then the sort's
    }
    assert_same(
        body_of(message),
        {
            "version": ENVELOPE_VERSION,
            "message_id": expected_id,
            "event_name": "INSERT",
            "source": {
                "table": "items",
                "event_id": "ev-42",
                "sequence_number": "4200000000000000000001",
                "approximate_creation_time": "2026-01-01T00:00:00.000Z",
            },
            "keys": {"pk": "user-1", "sk": 7},
            "item": {
                "pk": "user-1",
                "sk": 7,
                "price": Decimal(PRECISE),
                "blob": b64(b"\x01\x02"),
                "tags": ["a", "b"],
            },
        },
    )
    assert ENVELOPE_VERSION == 1


def test_a_customer_item_fans_out_to_both_destinations(settings: Settings, make_record: MakeRecord) -> None:
    """The suite's routes: `everything` sends it to orders in the envelope, `customers` to the crm
    in its transform's shape; each destination has its own message id, so neither dedups the other."""
    customer = make_record(
        event_id="ev-7",
        sequence="700",
        new_image={"pk": {"S": "user-1"}, "sk": {"N": "1"}, "type": {"S": "customer"}, "name": {"S": "Ann"}},
    )
    routed = route_record(customer, settings)
    assert (routed.rejected, routed.unrouted) == ([], 0)
    assert [m.destination for m in routed.messages] == ["orders", "crm"]
    orders, crm = routed.messages
    assert orders.message_id == orders.dedup_id == destination_message_id("items", "ev-7", "orders")
    assert crm.message_id == crm.dedup_id == destination_message_id("items", "ev-7", "crm")
    assert orders.message_id != crm.message_id
    assert orders.attributes == {
        MESSAGE_ID_ATTRIBUTE: orders.message_id,
        DESTINATION_ATTRIBUTE: "orders",
        ROUTE_ATTRIBUTE: "everything",
        ITEM_KEY_ATTRIBUTE: '["user-1","1"]',
    }
    assert crm.attributes == {
        MESSAGE_ID_ATTRIBUTE: crm.message_id,
        DESTINATION_ATTRIBUTE: "crm",
        ROUTE_ATTRIBUTE: "customers",
        ITEM_KEY_ATTRIBUTE: '["user-1","1"]',
    }
    assert body_of(orders)["message_id"] == orders.message_id
    assert body_of(crm) == {
        "customer": "user-1",
        "name": "Ann",
        "keys": {"pk": "user-1", "sk": 1},
        "sequence_number": "700",
    }
    assert crm.group_id == 'items#"user-1"'  # crm groups by its expression, keys.pk
    assert orders.group_id == 'items#"user-1"'  # orders by the partition key
    assert crm.sequence_number == orders.sequence_number == "700"


def test_an_item_no_filter_takes_goes_to_one_destination(settings: Settings, make_record: MakeRecord) -> None:
    routed = route_record(make_record(), settings)  # no `type`: the crm's filter says no
    assert [m.destination for m in routed.messages] == ["orders"]
    assert (routed.rejected, routed.unrouted) == ([], 0)


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1767225600, "2026-01-01T00:00:00.000Z"),
        (1767225600.5, "2026-01-01T00:00:00.500Z"),
        (1700000000, "2023-11-14T22:13:20.000Z"),
    ],
)
def test_creation_time_is_iso_8601_utc(
    settings: Settings, make_record: MakeRecord, created: float, expected: str
) -> None:
    message = build_message(make_record(created=created), settings)
    assert isinstance(message, OutboundMessage)
    stamp = body_of(message)["source"]["approximate_creation_time"]
    assert stamp == expected
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) == datetime.fromtimestamp(created, tz=UTC)


def test_message_id_and_dedup_id_follow_the_event_id(settings: Settings, make_record: MakeRecord) -> None:
    first = build_message(make_record(event_id="a", sequence="1"), settings)
    replay = build_message(make_record(event_id="a", sequence="1"), settings)
    second = build_message(make_record(event_id="b", sequence="2"), settings)
    assert isinstance(first, OutboundMessage)
    assert isinstance(replay, OutboundMessage)
    assert isinstance(second, OutboundMessage)
    assert first.dedup_id == replay.dedup_id == message_id_for("items", "a")
    assert first.body == replay.body
    assert second.dedup_id == message_id_for("items", "b")
    assert first.dedup_id != second.dedup_id


def test_size_bytes_counts_body_and_attributes() -> None:
    message = OutboundMessage("id", "g", "d", body="é" * 3, attributes={"ab": "xyz"}, sequence_number="1")
    assert message.size_bytes() == 6 + len("ab") + len("String") + len("xyz")


@pytest.mark.parametrize("event_name", ["MODIFY", "REMOVE"])
def test_events_no_route_takes_are_unrouted(
    settings: Settings, make_record: MakeRecord, event_name: str
) -> None:
    record = make_record(event_name=event_name)
    assert build_message(record, settings) is None
    assert route_record(record, settings).unrouted == 1


def test_a_route_takes_only_its_events(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    settings = make_settings(**routes(events='["MODIFY"]'))
    assert build_message(make_record(event_name="INSERT"), settings) is None
    assert isinstance(build_message(make_record(event_name="MODIFY"), settings), OutboundMessage)


def test_modify_relayed_when_configured(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    settings = make_settings(**routes(events='["INSERT", "MODIFY"]'))
    record = make_record(
        event_name="MODIFY",
        new_image={"pk": {"S": "user-1"}, "sk": {"N": "1"}, "v": {"N": "2"}},
        old_image={"pk": {"S": "user-1"}, "sk": {"N": "1"}, "v": {"N": "1"}},
    )
    message = build_message(record, settings)
    assert isinstance(message, OutboundMessage)
    body = body_of(message)
    assert body["event_name"] == "MODIFY"
    assert body["item"] == {"pk": "user-1", "sk": 1, "v": 2}
    assert message.attributes[ROUTE_ATTRIBUTE] == "only"
    assert "old_item" not in body  # the default envelope carries the new image only


def test_remove_relayed_when_configured(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    settings = make_settings(**routes(events='["REMOVE"]'))
    record = make_record(
        event_name="REMOVE", old_image={"pk": {"S": "user-1"}, "sk": {"N": "1"}, "v": {"N": "1"}}
    )
    assert "NewImage" not in record["dynamodb"]
    message = build_message(record, settings)
    assert isinstance(message, OutboundMessage)
    body = body_of(message)
    assert body["event_name"] == "REMOVE"
    assert body["keys"] == {"pk": "user-1", "sk": 1}
    assert body["item"] is None


def assert_rejected(built: object, reason_words: tuple[str, ...]) -> RejectedRecord:
    assert isinstance(built, RejectedRecord), f"expected a RejectedRecord, got {built!r}"
    assert built.reason.strip()
    for word in reason_words:
        assert word.lower() in built.reason.lower(), built.reason
    assert is_sqs_group_id(built.group_id)
    return built


def test_record_without_dynamodb_is_rejected(settings: Settings, make_record: MakeRecord) -> None:
    record = make_record(event_id="ev-9")
    del record["dynamodb"]
    rejected = assert_rejected(build_message(record, settings), ("SequenceNumber",))
    assert rejected.message_id == message_id_for("items", "ev-9")
    assert rejected.keys == {}


def test_record_without_event_id_is_rejected(settings: Settings, make_record: MakeRecord) -> None:
    rejected = assert_rejected(
        build_message(make_record(event_id=None, sequence="77"), settings), ("eventID",)
    )
    assert rejected.sequence_number == "77"


def test_record_without_keys_is_rejected(settings: Settings, make_record: MakeRecord) -> None:
    record = make_record(sequence="55")
    del record["dynamodb"]["Keys"]
    rejected = assert_rejected(build_message(record, settings), ("Keys",))
    assert rejected.sequence_number == "55"
    assert rejected.message_id == message_id_for("items", "event-1")


def test_record_with_undecodable_keys_is_rejected(settings: Settings, make_record: MakeRecord) -> None:
    record = make_record(keys={"pk": {"B": "not base64!"}}, new_image={"pk": {"S": "x"}})
    rejected = assert_rejected(build_message(record, settings), ("undecodable",))
    assert rejected.keys == {}
    assert rejected.group_id == "items#undecodable"
    assert rejected.destination == "orders"


def test_record_without_partition_key_is_rejected(settings: Settings, make_record: MakeRecord) -> None:
    record = make_record(keys={"id": {"S": "a"}}, new_image={"id": {"S": "a"}})
    rejected = assert_rejected(build_message(record, settings), ("pk",))
    assert rejected.keys == {"id": "a"}


def test_record_with_undecodable_item_is_rejected_with_its_keys(
    settings: Settings, make_record: MakeRecord
) -> None:
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "3"}}
    record = make_record(sequence="66", keys=keys, new_image={**keys, "bad": {"ZZ": "?"}})
    rejected = assert_rejected(build_message(record, settings), ("undecodable",))
    assert rejected.keys == {"pk": "user-1", "sk": 3}
    assert rejected.sequence_number == "66"
    # Its routes' filters cannot run on it, so it is not known to belong to any item's group.
    assert rejected.group_id == "items#undecodable"
    assert rejected.message_id == message_id_for("items", "event-1")


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("not-a-number", "not a finite DynamoDB number"),
        ("NaN", "not a finite DynamoDB number"),
        ("1E+200", "outside DynamoDB's range"),
        (TOO_PRECISE, "42 significant digits"),
    ],
)
def test_record_with_malformed_number_is_rejected(
    settings: Settings, make_record: MakeRecord, number: str, why: str
) -> None:
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "3"}}
    record = make_record(keys=keys, new_image={**keys, "price": {"N": number}})
    assert_rejected(build_message(record, settings), (f"item.price: number {number} ", why))


def test_record_with_malformed_number_in_keys_is_rejected(
    settings: Settings, make_record: MakeRecord
) -> None:
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "1E+200"}}
    rejected = assert_rejected(
        build_message(make_record(keys=keys, new_image=keys), settings),
        ("keys.sk: number 1E+200 is outside DynamoDB's range",),
    )
    assert rejected.keys == {}


def test_modify_without_new_image_is_rejected(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    settings = make_settings(**routes(events='["MODIFY"]'))
    record = make_record(event_name="MODIFY")
    del record["dynamodb"]["NewImage"]
    assert_rejected(build_message(record, settings), ("NewImage",))


def big_record(make_record: MakeRecord, chars: int) -> dict[str, Any]:
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "1"}}
    return make_record(keys=keys, new_image={**keys, "text": {"S": "x" * chars}})


def test_oversize_message_is_rejected(make_settings: MakeSettings, make_record: MakeRecord) -> None:
    settings = make_settings(TRICKLE_MAX_MESSAGE_BYTES="1024")
    rejected = assert_rejected(build_message(big_record(make_record, 2000), settings), ("1024",))
    assert rejected.keys == {"pk": "user-1", "sk": 1}
    assert rejected.message_id == message_id_for("items", "event-1")
    assert "x" * 100 not in rejected.reason


def test_size_limit_is_inclusive(make_settings: MakeSettings, make_record: MakeRecord) -> None:
    record = big_record(make_record, 1500)
    unlimited = build_message(record, make_settings())
    assert isinstance(unlimited, OutboundMessage)
    size = unlimited.size_bytes()
    assert size > 1500
    at_limit = build_message(record, make_settings(TRICKLE_MAX_MESSAGE_BYTES=str(size)))
    below = build_message(record, make_settings(TRICKLE_MAX_MESSAGE_BYTES=str(size - 1)))
    assert isinstance(at_limit, OutboundMessage)
    assert at_limit.body == unlimited.body
    assert_rejected(below, (str(size - 1),))


def test_build_messages_keeps_order_and_sorts_outcomes(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    settings = make_settings(**routes(events='["INSERT", "REMOVE"]'))
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "1"}}
    records = [
        make_record(event_id="e1", sequence="1"),
        make_record(event_id="e2", sequence="2", event_name="MODIFY"),
        make_record(event_id="e3", sequence="3", keys=keys, new_image={**keys, "bad": {"B": "!!"}}),
        make_record(event_id="e4", sequence="4", event_name="REMOVE"),
        make_record(event_id="e5", sequence="5", keys={"other": {"S": "x"}}),
        make_record(event_id="e6", sequence="6"),
        make_record(event_id="e7", sequence="7", event_name="MODIFY"),
    ]
    result = build_messages(records, settings)
    assert [m.sequence_number for m in result.messages] == ["1", "4", "6"]
    assert [m.message_id for m in result.messages] == [message_id_for("items", e) for e in ("e1", "e4", "e6")]
    assert [r.sequence_number for r in result.rejected] == ["3", "5"]
    assert all(r.destination == "orders" for r in result.rejected)
    assert result.unrouted == 2


def test_build_messages_of_nothing() -> None:
    result = build_messages([], None)  # type: ignore[arg-type]  # settings are never read
    assert (result.messages, result.rejected, result.unrouted) == ([], [], 0)


def test_build_messages_many_records_stay_in_stream_order(
    settings: Settings, make_record: MakeRecord
) -> None:
    records = [make_record(event_id=f"e{i}", sequence=f"{i:021d}") for i in range(200)]
    result = build_messages(records, settings)
    assert [m.sequence_number for m in result.messages] == [f"{i:021d}" for i in range(200)]
    assert len({m.dedup_id for m in result.messages}) == 200


# --- routes: filters, transforms, groups --------------------------------------------------------------


@pytest.fixture
def toml(tmp_path: Path) -> Callable[[str], dict[str, str | None]]:
    """`make_settings(**toml(text))`: settings from a routes file with that text."""

    def _write(text: str) -> dict[str, str | None]:
        path = tmp_path / "routes-custom.toml"
        path.write_text(text, encoding="utf-8")
        return routes_env(path)

    return _write


def item_record(make_record: MakeRecord, event_id: str, sequence: str, **attributes: Any) -> dict[str, Any]:
    keys = {"pk": {"S": f"user-{event_id}"}, "sk": {"N": "1"}}
    return make_record(event_id=event_id, sequence=sequence, keys=keys, new_image={**keys, **attributes})


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        pytest.param("length(item.size) > `1`", ("failed", "length()"), id="raises"),
        pytest.param("item.name", ("gave str, not true/false",), id="string"),
        pytest.param("item.size", ("gave int, not true/false",), id="number"),
        pytest.param("item.absent", ("gave NoneType, not true/false",), id="null"),
        pytest.param("keys", ("gave dict, not true/false",), id="object"),
    ],
)
def test_a_filter_that_fails_dead_letters_the_record(
    make_settings: MakeSettings,
    make_record: MakeRecord,
    routes: Routes,
    expression: str,
    words: tuple[str, ...],
) -> None:
    """A filter must answer true or false; anything else is a mistake the operator must see."""
    settings = make_settings(**routes(extra=f"filter = {json.dumps(expression)}"))
    record = item_record(make_record, "b", "2", name={"S": "bad"}, size={"N": "3"})
    routed = route_record(record, settings)
    assert (routed.messages, routed.unrouted) == ([], 0)
    (rejected,) = routed.rejected
    assert_rejected(rejected, ("route 'only'", f"filter {expression!r}", *words))
    assert rejected.destination == "orders"
    assert rejected.keys == {"pk": "user-b", "sk": 1}
    assert rejected.sequence_number == "2"
    assert rejected.message_id == message_id_for("items", "b")
    assert rejected.group_id == "items#unroutable"


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        pytest.param("length(item.size) > `1`", ("length()",), id="raises"),
        pytest.param("item.size == 'big' || item.size", ("gave int, not true/false",), id="non-boolean"),
    ],
)
def test_a_failing_filter_does_not_stop_the_rest_of_the_batch(
    make_settings: MakeSettings,
    make_record: MakeRecord,
    routes: Routes,
    expression: str,
    words: tuple[str, ...],
) -> None:
    settings = make_settings(**routes(extra=f"filter = {json.dumps(expression)}"))
    records = [
        item_record(make_record, "a", "1", size={"S": "big"}),
        item_record(make_record, "b", "2", size={"N": "3"}),
        item_record(make_record, "c", "3", size={"S": "big"}),
    ]
    result = build_messages(records, settings)
    assert [m.sequence_number for m in result.messages] == ["1", "3"]
    assert [r.sequence_number for r in result.rejected] == ["2"]
    assert_rejected(result.rejected[0], ("route 'only'", expression, *words))
    assert result.unrouted == 0


def test_a_filter_answering_false_leaves_the_record_unrouted(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    settings = make_settings(**routes(extra="filter = \"item.size == 'big'\""))
    result = build_messages([item_record(make_record, "a", "1", size={"S": "small"})], settings)
    assert (result.messages, result.rejected, result.unrouted) == ([], [], 1)


# TRICKLE_UNROUTED: a record no route takes is counted; with dead_letter:<destination> it is also
# rejected there, with the reason, so it reaches that destination's dead-letter queue.
@pytest.mark.parametrize(
    ("record", "reason"),
    [
        pytest.param(
            {"event_name": "MODIFY"}, "no route takes this MODIFY record", id="event-no-route-takes"
        ),
        pytest.param({"event_name": "REMOVE"}, "no route takes this REMOVE record", id="remove"),
        pytest.param(
            {"event_name": "REMOVE", "old_image": {"bad": {"N": "NaN"}}},
            "no route takes REMOVE records (and this one cannot be decoded: old_item.bad: number NaN is not"
            " a finite DynamoDB number)",
            id="undecodable-event-no-route-takes",
        ),
    ],
)
@pytest.mark.parametrize("target", ["orders", "crm"])
def test_an_unrouted_record_is_dead_lettered_where_the_stage_says(
    make_settings: MakeSettings, make_record: MakeRecord, record: dict[str, Any], reason: str, target: str
) -> None:
    stream_record = make_record(sequence="77", **record)
    counted = route_record(stream_record, make_settings())
    assert (counted.messages, counted.rejected, counted.unrouted) == ([], [], 1)

    routed = route_record(stream_record, make_settings(TRICKLE_UNROUTED=f"dead_letter:{target}"))

    assert (routed.messages, routed.unrouted) == ([], 1)
    assert routed.rejected == [
        RejectedRecord(
            destination_message_id("items", "event-1", target),
            "items#unrouted",
            "77",
            {"pk": "user-1", "sk": 1},
            reason,
            target,
        )
    ]


def test_a_filtered_out_record_is_dead_lettered_as_unrouted(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    settings = make_settings(
        **routes(extra="filter = \"item.size == 'big'\""), TRICKLE_UNROUTED="dead_letter:orders"
    )
    result = build_messages(
        [
            item_record(make_record, "a", "1", size={"S": "small"}),
            item_record(make_record, "a", "2", size={"S": "big"}),
        ],
        settings,
    )
    assert (len(result.messages), result.unrouted) == (1, 1)
    (rejected,) = result.rejected
    assert (rejected.destination, rejected.reason, rejected.keys) == (
        "orders",
        "no route takes this INSERT record",
        {"pk": "user-a", "sk": 1},
    )


def test_a_failing_filter_rejects_only_its_own_routes_destinations(
    make_settings: MakeSettings, make_record: MakeRecord, toml: Callable[[str], dict[str, str]]
) -> None:
    text = """
[destinations.orders]
[destinations.crm]

[[routes]]
name = "picky"
filter = "length(item.size) > `0`"
destinations = ["orders"]

[[routes]]
name = "all"
destinations = ["crm"]
"""
    routed = route_record(item_record(make_record, "a", "1", size={"N": "5"}), make_settings(**toml(text)))
    assert [m.destination for m in routed.messages] == ["crm"]
    assert [r.destination for r in routed.rejected] == ["orders"]
    assert_rejected(routed.rejected[0], ("route 'picky'", "length(item.size) > `0`"))


def test_a_transform_builds_the_body_with_exact_numbers(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    transform = (
        "{id: keys.pk, price: item.price, count: item.count, lines: item.lines[].n,"
        " seq: source.sequence_number, mid: message_id}"
    )
    settings = make_settings(**routes(extra=f"transform = {json.dumps(transform)}"))
    record = item_record(
        make_record,
        "a",
        "42",
        price={"N": PRECISE},
        count={"N": HUGE},
        lines={"L": [{"M": {"n": {"N": "1.50"}}}, {"M": {"n": {"N": "-2"}}}]},
    )
    message = build_message(record, settings)
    assert isinstance(message, OutboundMessage)
    assert f'"price":{PRECISE}' in message.body
    assert f'"count":{HUGE}' in message.body
    assert_same(
        body_of(message),
        {
            "id": "user-a",
            "price": Decimal(PRECISE),
            "count": int(HUGE),
            "lines": [Decimal("1.50"), -2],
            "seq": "42",
            "mid": message_id_for("items", "a"),
        },
    )
    assert message.attributes[ROUTE_ATTRIBUTE] == "only"


@pytest.mark.parametrize(
    ("transform", "words"),
    [
        pytest.param("item.absent", ("gave null",), id="null"),
        pytest.param("abs(item.name)", ("failed", "abs()"), id="raises"),
    ],
)
def test_a_transform_that_gives_nothing_dead_letters_the_record(
    make_settings: MakeSettings,
    make_record: MakeRecord,
    routes: Routes,
    transform: str,
    words: tuple[str, ...],
) -> None:
    settings = make_settings(**routes(extra=f"transform = {json.dumps(transform)}"))
    result = build_messages(
        [item_record(make_record, "a", "1"), item_record(make_record, "b", "2", absent={"S": "here"})],
        settings,
    )
    rejected = assert_rejected(result.rejected[0], ("route 'only'", f"transform {transform!r}", *words))
    assert rejected.sequence_number == "1"
    assert rejected.destination == "orders"
    assert rejected.keys == {"pk": "user-a", "sk": 1}
    if transform == "item.absent":  # the second record has the attribute, so it goes on
        assert [m.sequence_number for m in result.messages] == ["2"]
        assert body_of(result.messages[0]) == "here"


def test_a_transform_may_send_any_json_value(
    make_settings: MakeSettings, make_record: MakeRecord, routes: Routes
) -> None:
    settings = make_settings(**routes(extra='transform = "[keys.pk, item.flag, `false`]"'))
    message = build_message(item_record(make_record, "a", "1", flag={"BOOL": True}), settings)
    assert isinstance(message, OutboundMessage)
    assert message.body == '["user-a",true,false]'


def test_group_by_expression(make_settings: MakeSettings, make_record: MakeRecord, routes: Routes) -> None:
    settings = make_settings(
        **routes(group_by="expression"),
        TRICKLE_DEST_ORDERS_GROUP_EXPRESSION="item.tenant",
        TRICKLE_PARTITION_KEY=None,
    )
    records = [
        item_record(make_record, "a", "1", tenant={"S": "t1"}),
        item_record(make_record, "b", "2", tenant={"S": "t1"}),
        item_record(make_record, "c", "3", tenant={"N": "1"}),
        item_record(make_record, "d", "4"),
    ]
    result = build_messages(records, settings)
    assert [m.group_id for m in result.messages] == ['items#"t1"', 'items#"t1"', "items#1"]
    missing = assert_rejected(
        result.rejected[0], ("route 'only'", "group_expression 'item.tenant' gave null")
    )
    assert missing.sequence_number == "4"


def test_group_by_table(make_settings: MakeSettings, make_record: MakeRecord, routes: Routes) -> None:
    settings = make_settings(**routes(group_by="table"), TRICKLE_PARTITION_KEY=None)
    records = [item_record(make_record, name, str(i)) for i, name in enumerate("abc")]
    other_keys = make_record(event_id="z", keys={"id": {"S": "x"}}, new_image={"id": {"S": "x"}})
    result = build_messages([*records, other_keys], settings)
    assert result.rejected == []
    assert {m.group_id for m in result.messages} == {"items"}
    assert len(result.messages) == 4


def test_the_first_route_to_a_destination_wins(
    make_settings: MakeSettings, make_record: MakeRecord, toml: Callable[[str], dict[str, str]]
) -> None:
    text = """
[destinations.orders]

[[routes]]
name = "first"
filter = "item.kind == 'a'"
transform = "{by: 'first', id: keys.pk}"
destinations = ["orders"]

[[routes]]
name = "second"
transform = "{by: 'second', id: keys.pk}"
destinations = ["orders"]
"""
    settings = make_settings(**toml(text))
    kind_a = route_record(item_record(make_record, "a", "1", kind={"S": "a"}), settings)
    kind_b = route_record(item_record(make_record, "b", "2", kind={"S": "b"}), settings)
    assert len(kind_a.messages) == len(kind_b.messages) == 1
    assert body_of(kind_a.messages[0]) == {"by": "first", "id": "user-a"}
    assert kind_a.messages[0].attributes[ROUTE_ATTRIBUTE] == "first"
    assert body_of(kind_b.messages[0]) == {"by": "second", "id": "user-b"}
    assert kind_b.messages[0].attributes[ROUTE_ATTRIBUTE] == "second"
    assert kind_a.messages[0].message_id == message_id_for("items", "a")


def test_remove_sees_the_old_item(
    make_settings: MakeSettings, make_record: MakeRecord, toml: Callable[[str], dict[str, str]]
) -> None:
    text = """
[destinations.orders]

[[routes]]
name = "gone"
events = ["REMOVE"]
filter = "old_item.type == 'customer'"
transform = "{gone: keys.pk, was: old_item.name, now: item, change: event_name}"
destinations = ["orders"]
"""
    settings = make_settings(**toml(text))
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "1"}}
    customer = make_record(
        event_name="REMOVE", old_image={**keys, "type": {"S": "customer"}, "name": {"S": "Ann"}}
    )
    order = make_record(event_name="REMOVE", event_id="e2", old_image={**keys, "type": {"S": "order"}})
    result = build_messages([customer, order], settings)
    assert result.rejected == []
    assert result.unrouted == 1
    (message,) = result.messages
    assert body_of(message) == {"gone": "user-1", "was": "Ann", "now": None, "change": "REMOVE"}


# --- rejection_message -------------------------------------------------------------------------------


def test_rejection_message_carries_reason_and_keys(settings: Settings, make_record: MakeRecord) -> None:
    record = make_record(keys={"id": {"S": "a"}}, new_image={"id": {"S": "a"}, "secret": {"S": "item-data"}})
    rejected = assert_rejected(build_message(record, settings), ())
    dead = rejection_message(rejected, settings)
    assert dead.attributes[REASON_ATTRIBUTE] == rejected.reason
    assert dead.attributes[MESSAGE_ID_ATTRIBUTE] == rejected.message_id
    assert dead.attributes[DESTINATION_ATTRIBUTE] == rejected.destination == "orders"
    assert dead.destination == "orders"
    assert dead.message_id == dead.dedup_id == rejected.message_id
    assert dead.group_id == rejected.group_id
    assert dead.sequence_number == rejected.sequence_number
    body = strict_json(dead.body)
    assert body["reason"] == rejected.reason
    assert body["keys"] == {"id": "a"}
    assert body["message_id"] == rejected.message_id
    assert body["source"] == {"table": "items", "sequence_number": rejected.sequence_number}
    assert body["version"] == ENVELOPE_VERSION
    assert "item" not in body
    assert "item-data" not in dead.body


def test_rejection_reason_attribute_is_capped_but_body_keeps_it(settings: Settings) -> None:
    reason = "r" * 5000
    rejected = RejectedRecord("id-1", "items#x", "9", {"pk": Decimal(PRECISE)}, reason, "crm")
    dead = rejection_message(rejected, settings)
    assert dead.attributes[REASON_ATTRIBUTE] == reason[:1024]
    assert dead.attributes[DESTINATION_ATTRIBUTE] == "crm"
    body = strict_json(dead.body)
    assert body["reason"] == reason
    assert_same(body["keys"], {"pk": Decimal(PRECISE)})
