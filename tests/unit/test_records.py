"""Stream record decoding and message building (chalicelib/records.py)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.records import (
    DESTINATION_ATTRIBUTE,
    ENVELOPE_VERSION,
    MESSAGE_ID_ATTRIBUTE,
    REASON_ATTRIBUTE,
    OutboundMessage,
    RecordError,
    RejectedRecord,
    build_message,
    build_messages,
    decode_image,
    dumps,
    group_id_for,
    message_id_for,
    rejection_message,
)
from chalicelib.settings import Settings

MakeSettings = Callable[..., Settings]
MakeRecord = Callable[..., dict[str, Any]]

HUGE = "123456789012345678901234567890"
PRECISE = "0.1000000000000000055511151231257827"
SQS_GROUP_CHARS = re.compile(r"[!-~]+")  # printable ASCII without space, as SQS documents it


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


@pytest.mark.parametrize(
    "number",
    [
        pytest.param("abc", id="not-a-number"),
        pytest.param("", id="empty"),
        pytest.param("NaN", id="nan"),
        pytest.param("Infinity", id="infinity"),
        pytest.param("1E+200", id="above-dynamodb-range"),
        pytest.param("1." + "0" * 40 + "1", id="more-than-38-digits"),
    ],
)
def test_decode_image_rejects_numbers_dynamodb_cannot_hold(number: str) -> None:
    """Every malformed number is a RecordError, never NaN in the JSON nor an uncaught decimal error."""
    with pytest.raises(RecordError):
        decode_image({"a": {"N": number}})


@pytest.mark.parametrize(
    "attribute",
    [
        pytest.param({"NS": ["abc"]}, id="set-of-one-nan"),
        pytest.param({"NS": ["1", "abc"]}, id="set-with-nan"),
        pytest.param({"NS": ["1", "1E+200"]}, id="set-with-overflow"),
        pytest.param({"L": [{"N": "1E+200"}]}, id="overflow-in-list"),
        pytest.param({"M": {"x": {"N": "1." + "0" * 40 + "1"}}}, id="inexact-in-map"),
    ],
)
def test_decode_image_rejects_malformed_numbers_in_containers(attribute: Any) -> None:
    with pytest.raises(RecordError):
        decode_image({"a": attribute})


# --- message ids and group ids ------------------------------------------------------------------------


def test_message_id_is_stable_and_a_uuid() -> None:
    first = message_id_for("items", "event-1")
    assert first == message_id_for("items", "event-1")
    assert str(uuid.UUID(first)) == first


def test_message_id_differs_per_event_and_per_table() -> None:
    ids = {
        message_id_for("items", "event-1"),
        message_id_for("items", "event-2"),
        message_id_for("orders", "event-1"),
        message_id_for("orders", "event-2"),
    }
    assert len(ids) == 4


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
    settings = make_settings(TRICKLE_GROUP_BY="table", TRICKLE_PARTITION_KEY=None)
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
    assert message.attributes == {
        MESSAGE_ID_ATTRIBUTE: expected_id,
        DESTINATION_ATTRIBUTE: "default",
        "trickle-event": "INSERT",
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


def test_destination_name_comes_from_settings(make_settings: MakeSettings, make_record: MakeRecord) -> None:
    message = build_message(make_record(), make_settings(TRICKLE_DESTINATION_NAME="crm"))
    assert isinstance(message, OutboundMessage)
    assert message.attributes[DESTINATION_ATTRIBUTE] == "crm"


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
def test_only_insert_is_relayed_by_default(
    settings: Settings, make_record: MakeRecord, event_name: str
) -> None:
    assert settings.event_names == {"INSERT"}
    assert build_message(make_record(event_name=event_name), settings) is None


def test_unconfigured_insert_is_skipped(make_settings: MakeSettings, make_record: MakeRecord) -> None:
    settings = make_settings(TRICKLE_EVENT_NAMES="MODIFY")
    assert build_message(make_record(event_name="INSERT"), settings) is None
    assert isinstance(build_message(make_record(event_name="MODIFY"), settings), OutboundMessage)


def test_modify_relayed_when_configured(make_settings: MakeSettings, make_record: MakeRecord) -> None:
    settings = make_settings(TRICKLE_EVENT_NAMES="INSERT,MODIFY")
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
    assert message.attributes["trickle-event"] == "MODIFY"


def test_remove_relayed_when_configured(make_settings: MakeSettings, make_record: MakeRecord) -> None:
    settings = make_settings(TRICKLE_EVENT_NAMES="REMOVE")
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
    assert_rejected(build_message(record, settings), ("Keys",))


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
    # Same group as a good record for the item, so the dead letter keeps the item's place in line.
    assert rejected.group_id == group_id_for(settings, {"pk": "user-1"})


@pytest.mark.parametrize("number", ["not-a-number", "NaN", "1E+200", "1." + "0" * 40 + "1"])
def test_record_with_malformed_number_is_rejected(
    settings: Settings, make_record: MakeRecord, number: str
) -> None:
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "3"}}
    record = make_record(keys=keys, new_image={**keys, "price": {"N": number}})
    assert_rejected(build_message(record, settings), ())


def test_record_with_malformed_number_in_keys_is_rejected(
    settings: Settings, make_record: MakeRecord
) -> None:
    keys = {"pk": {"S": "user-1"}, "sk": {"N": "1E+200"}}
    assert_rejected(build_message(make_record(keys=keys, new_image=keys), settings), ("Keys",))


def test_modify_without_new_image_is_rejected(make_settings: MakeSettings, make_record: MakeRecord) -> None:
    settings = make_settings(TRICKLE_EVENT_NAMES="MODIFY")
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
    make_settings: MakeSettings, make_record: MakeRecord
) -> None:
    settings = make_settings(TRICKLE_EVENT_NAMES="INSERT,REMOVE")
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
    assert result.skipped == 2


def test_build_messages_of_nothing() -> None:
    result = build_messages([], None)  # type: ignore[arg-type]  # settings are never read
    assert (result.messages, result.rejected, result.skipped) == ([], [], 0)


def test_build_messages_many_records_stay_in_stream_order(
    settings: Settings, make_record: MakeRecord
) -> None:
    records = [make_record(event_id=f"e{i}", sequence=f"{i:021d}") for i in range(200)]
    result = build_messages(records, settings)
    assert [m.sequence_number for m in result.messages] == [f"{i:021d}" for i in range(200)]
    assert len({m.dedup_id for m in result.messages}) == 200


# --- rejection_message -------------------------------------------------------------------------------


def test_rejection_message_carries_reason_and_keys(settings: Settings, make_record: MakeRecord) -> None:
    record = make_record(keys={"id": {"S": "a"}}, new_image={"id": {"S": "a"}, "secret": {"S": "item-data"}})
    rejected = assert_rejected(build_message(record, settings), ())
    dead = rejection_message(rejected, settings)
    assert dead.attributes[REASON_ATTRIBUTE] == rejected.reason
    assert dead.attributes[MESSAGE_ID_ATTRIBUTE] == rejected.message_id
    assert dead.attributes[DESTINATION_ATTRIBUTE] == "default"
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
    rejected = RejectedRecord("id-1", "items#x", "9", {"pk": Decimal(PRECISE)}, reason)
    dead = rejection_message(rejected, settings)
    assert dead.attributes[REASON_ATTRIBUTE] == reason[:1024]
    body = strict_json(dead.body)
    assert body["reason"] == reason
    assert_same(body["keys"], {"pk": Decimal(PRECISE)})
