"""Strict JSON in, strict JSON out (chalicelib/strict_json.py, the submission parser and the stream
record decoder): refusals name the value, and whatever is accepted reaches the API as RFC 8259 JSON
with the values it came with. The properties run with Hypothesis over hostile inputs."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from chalicelib import strict_json
from chalicelib.model import OutboundMessage
from chalicelib.records import RejectedRecord, rejection_message, route_record
from chalicelib.settings import Settings
from chalicelib.submissions import SubmissionError, parse_submission

MakeRecord = Callable[..., dict[str, Any]]
SQS_TEXT = re.compile("[\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")
# Settings and the record maker are immutable, so sharing the fixtures across examples is safe.
# 300 examples; 30 in the fast lane (tests/conftest.py).
PROPERTY = examples(
    max_examples=3 * examples.default.max_examples,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], routes: Callable[..., dict[str, str]]) -> Settings:
    """One destination taking every INSERT, so a submission needs no `destination` and each record
    becomes exactly one message or one dead letter."""
    return make_settings(**routes())


def build_message(record: dict[str, Any], settings: Settings) -> OutboundMessage | RejectedRecord:
    routed = route_record(record, settings)
    (built,) = [*routed.messages, *routed.rejected]
    return built


def strict(text: str) -> Any:
    """Parse as a strict consumer: UTF-8 encodable, no NaN/Infinity, exact decimals, keys once."""
    text.encode("utf-8")  # a lone surrogate cannot be encoded

    def no_constant(name: str) -> Any:
        raise AssertionError(f"{name} in the JSON")

    def once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        assert len({k for k, _ in pairs}) == len(pairs), "a key twice"
        return dict(pairs)

    return json.loads(text, parse_float=Decimal, parse_constant=no_constant, object_pairs_hook=once)


def same(actual: Any, expected: Any, path: str = "$") -> None:
    """The same JSON value: same types, same digits (1.0 is not 1.00, 1 is not 1.0)."""
    if isinstance(expected, Decimal) or isinstance(actual, Decimal):
        assert isinstance(actual, (Decimal, int)) and not isinstance(actual, bool), path
        assert Decimal(actual) == Decimal(expected), path
        return
    assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), path
        for key in expected:
            same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            same(a, e, f"{path}[{index}]")
    else:
        assert actual == expected, path


def refusal(body: bytes, settings: Settings) -> str:
    with pytest.raises(SubmissionError) as refused:
        parse_submission(body, settings)
    return str(refused.value)


# --- the submission parser, as a table ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"item":{"x":"\\ud800"}}', "item.x holds a lone UTF-16 surrogate"),
        (b'{"item":{"x":["ok","\\udfff"]}}', "item.x[1] holds a lone UTF-16 surrogate"),
        (b'{"item":{"\\ud800":1}}', "item has a key with a lone UTF-16 surrogate"),
        (b'{"item":{"x":1},"group":"\\ud800"}', "group holds a lone UTF-16 surrogate"),
        (b'{"item":{"x":"\xed\xa0\x80"}}', "the body is not UTF-8 text (byte 14)"),
        (b'{"item":{"x":NaN}}', "item.x is NaN, which JSON cannot carry"),
        (b'{"item":{"x":Infinity}}', "item.x is Infinity, which JSON cannot carry"),
        (b'{"item":{"a b":[-Infinity]}}', 'item["a b"][0] is -Infinity, which JSON cannot carry'),
        (b'{"item":{"x":1e400}}', "item.x is beyond the range of a double"),
        (b'{"item":{"x":-1' + b"0" * 400 + b"}}", "item.x is beyond the range of a double"),
        (b'{"item":{"x":1,"x":2}}', 'the key "x" appears twice in one object'),
        (b'{"item":{"x":1},"item":{"x":2}}', 'the key "item" appears twice in one object'),
        (b"[" * 100_000 + b"]" * 100_000, "the body is nested more than 32 levels deep"),
        (b'{"item":{"a":' + b"[" * 40 + b"]" * 40 + b"}}", "item.a[0][0][0]"),
    ],
)
def test_what_strict_json_cannot_carry_is_refused_naming_the_value(
    body: bytes, expected: str, settings: Settings
) -> None:
    assert expected in refusal(body, settings)


def test_nesting_up_to_the_limit_and_values_json_carries_exactly_are_accepted(settings: Settings) -> None:
    deep = "[" * 30 + "1" + "]" * 30
    body = (
        '{"item":{"deep":' + deep + ',"max":1.7976931348623157E+308,"tiny":1e-400,'
        '"exact":0.10000000000000000555,"big":123456789012345678901234567890,'
        '"nonchar":"\\uffff\\ufffe","emoji":"\\ud83d\\ude00"}}'
    )
    message = parse_submission(body.encode(), settings).message
    sent = strict(message.body)["item"]
    same(sent, strict(body)["item"])
    assert "\uffff" not in message.body and "\\uffff" in message.body  # SQS refuses it raw
    assert sent["emoji"] == "\U0001f600"


# --- properties --------------------------------------------------------------------------------

# Any character, with the ones that break JSON, UTF-8 or SQS drawn often: lone surrogates, the
# noncharacters SQS refuses, NUL, and the line separators JavaScript once choked on. (Strings are
# joined from lists: `st.text` drops surrogates from any alphabet.)
ANY_CHAR = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.sampled_from(["\ud800", "\udfff", "\uffff", "\ufffe", "\x00", "\x7f", "\u2028", '"', "\\"]),
)


def texts(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.lists(ANY_CHAR, min_size=min_size, max_size=max_size).map("".join)


KEYS = texts(max_size=6)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
)
TEXT = texts()
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, TEXT, TEXT)


def json_text(value: Any) -> str:
    """Any value as JSON-like text, NaN/Infinity and lone surrogates included; an object is a list of
    pairs, so a key can appear twice."""
    if isinstance(value, tuple):
        return "{" + ",".join(f"{json.dumps(k)}:{json_text(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    if isinstance(value, Decimal):
        if value.is_nan():
            return "NaN"
        return str(value) if value.is_finite() else ("-Infinity" if value < 0 else "Infinity")
    return json.dumps(value)  # floats: NaN and Infinity as Python writes them


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(st.tuples(KEYS, inner), max_size=4).map(tuple)
    ),
    max_leaves=40,
)
OBJECTS = st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=5).map(tuple)
SUBMISSIONS = st.one_of(
    OBJECTS.map(lambda v: '{"item":' + json_text(v) + "}"),
    VALUES.map(lambda v: '{"item":' + json_text(v) + "}"),
    st.tuples(OBJECTS, VALUES).map(
        lambda pair: '{"item":' + json_text(pair[0]) + ',"group":' + json_text(pair[1]) + "}"
    ),
    st.integers(1, 200).map(lambda depth: '{"item":{"a":' + "[" * depth + "]" * depth + "}}"),
)


@PROPERTY
@given(body=SUBMISSIONS)
def test_any_submission_is_refused_with_a_reason_or_sent_as_strict_json_with_its_values(
    body: str, settings: Settings
) -> None:
    raw = body.encode("utf-8", "surrogatepass")
    try:
        submission = parse_submission(raw, settings)
    except SubmissionError as refused:
        assert str(refused)
        return
    sent = strict(submission.message.body)
    assert SQS_TEXT.fullmatch(submission.message.body)
    same(sent["item"], json.loads(body, parse_float=Decimal)["item"])  # NaN or a key twice: refused
    assert submission.message.size_bytes() <= settings.max_message_bytes


@PROPERTY
@given(raw=st.binary(max_size=300))
def test_any_bytes_are_a_submission_or_a_refusal_never_an_error(raw: bytes, settings: Settings) -> None:
    try:
        submission = parse_submission(raw, settings)
    except SubmissionError:
        return
    strict(submission.message.body)


# Stream records: any DynamoDB attribute value, well formed or not, as Lambda delivers it.
B64 = st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode())
NUMBER_TEXT = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**130), max_value=10**130).map(str),
    st.sampled_from(["1e400", "-1E+126", "1E-131", "NaN", "Infinity", "sNaN", "", "1_0", " 1", "0x10"]),
    texts(max_size=4),
)
ATTRIBUTE_SCALARS = st.one_of(
    st.builds(lambda s: {"S": s}, texts(max_size=10)),
    st.builds(lambda n: {"N": n}, NUMBER_TEXT),
    st.builds(lambda b: {"B": b}, st.one_of(B64, st.text(max_size=5))),
    st.builds(lambda s: {"SS": s}, st.lists(texts(max_size=5), max_size=4)),
    st.builds(lambda n: {"NS": n}, st.lists(NUMBER_TEXT, max_size=4)),
    st.builds(lambda b: {"BS": b}, st.lists(B64, max_size=3)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.just({"X": 1}),
    st.just({"S": "a", "N": "1"}),
)
ATTRIBUTES = st.recursive(
    ATTRIBUTE_SCALARS,
    lambda inner: st.one_of(
        st.builds(lambda values: {"L": values}, st.lists(inner, max_size=4)),
        st.builds(lambda m: {"M": m}, st.dictionaries(KEYS, inner, max_size=4)),
    ),
    max_leaves=30,
)
KEY_VALUES = st.one_of(
    st.builds(lambda s: {"S": s}, texts(min_size=1, max_size=8)),
    st.builds(lambda n: {"N": n}, NUMBER_TEXT),
    ATTRIBUTES,
)


def expected_value(av: dict[str, Any]) -> Any:
    """What the API must receive for an attribute value the decoder accepted (an independent reading
    of the DynamoDB types: sets sorted, binary as base64, numbers by value)."""
    (kind, value), *_ = av.items()
    if kind == "S" or kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "N":
        return Decimal(value)
    if kind == "B":
        return base64.b64encode(base64.b64decode(value)).decode()
    if kind == "SS":
        return sorted(set(value))
    if kind == "NS":
        return sorted({Decimal(v) for v in value})
    if kind == "BS":
        return [base64.b64encode(b).decode() for b in sorted({base64.b64decode(v) for v in value})]
    if kind == "L":
        return [expected_value(v) for v in value]
    return {k: expected_value(v) for k, v in value.items()}


def deep_attribute(depth: int) -> dict[str, Any]:
    attribute: dict[str, Any] = {"N": "1"}
    for _ in range(depth):
        attribute = {"L": [attribute]}
    return attribute


@PROPERTY
@given(
    key=KEY_VALUES,
    item=st.one_of(
        st.dictionaries(KEYS, ATTRIBUTES, max_size=5),
        st.integers(1, 3000).map(lambda depth: {"deep": deep_attribute(depth)}),
    ),
)
def test_any_stream_record_becomes_strict_json_with_its_values_or_a_dead_letter_with_a_reason(
    key: dict[str, Any], item: dict[str, Any], settings: Settings, make_record: MakeRecord
) -> None:
    record = make_record(keys={"pk": key}, new_image={"pk": key, **item})
    built = build_message(record, settings)
    if isinstance(built, RejectedRecord):
        assert built.reason
        stub = rejection_message(built, settings)
        assert SQS_TEXT.fullmatch(stub.body)
        assert all(SQS_TEXT.fullmatch(v) for v in stub.attributes.values())
        assert strict(stub.body)["reason"]
        return
    assert isinstance(built, OutboundMessage)
    assert SQS_TEXT.fullmatch(built.body)
    sent = strict(built.body)
    same(sent["keys"], {"pk": expected_value(key)})
    same(sent["item"], {"pk": expected_value(key)} | {k: expected_value(v) for k, v in item.items()})


def written_value_by_value(value: Any) -> str:
    """`strict_json.dumps` as it was written before 2026-12-05: `json.dumps` called for each value."""

    def write(v: Any) -> str:
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, dict):
            return (
                "{"
                + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{write(x)}" for k, x in v.items())
                + "}"
            )
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(write(x) for x in v) + "]"
        return json.dumps(v, ensure_ascii=False, allow_nan=False)

    return write(value).replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


def python_value(value: Any) -> Any:
    """A drawn value as Python holds it: objects as dicts (a key drawn twice keeps its last)."""
    if isinstance(value, tuple):
        return {k: python_value(v) for k, v in value}
    if isinstance(value, list):
        return [python_value(v) for v in value]
    return value


@PROPERTY
@given(value=VALUES)
def test_any_value_is_written_as_json_dumps_writes_it_value_by_value(value: Any) -> None:
    """The same text, or the same refusal (NaN and Infinity floats), as before the writer stopped
    calling `json.dumps` for each value."""
    python = python_value(value)
    try:
        expected: str | type[Exception] = written_value_by_value(python)
    except ValueError as exc:
        expected = type(exc)
    try:
        got: str | type[Exception] = strict_json.dumps(python)
    except ValueError as exc:
        got = type(exc)
    assert got == expected
