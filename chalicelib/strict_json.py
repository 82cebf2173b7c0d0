"""Strict JSON in and out: what RFC 8259 JSON carries exactly, and nothing an API or SQS would choke on.

Submissions and redrive requests are parsed here (UTF-8, each key once, numbers exact) and every
value, submitted or decoded from a stream record, is checked before it becomes a message: no NaN or
Infinity, no number beyond a double, no lone surrogate, no nesting deeper than DynamoDB allows.
Refusals name the value's path (`item.prices[2]`).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

MAX_DEPTH = 32  # DynamoDB's limit for nested attributes; submissions get the same
_DOUBLE_MAX = Decimal("1.7976931348623157E+308")  # RFC 8259 section 6: beyond this, parsers disagree
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_SQS_TEXT = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class JsonInputError(ValueError):
    """Input strict JSON cannot carry; the message names the value and is safe to show a caller."""


def loads(data: bytes) -> Any:
    """JSON as RFC 8259 has it: UTF-8, each key once per object; numbers stay exact (Decimal), and
    NaN/Infinity parse only so that `check_json` can name the value that holds them."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonInputError(f"the body is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(
            text,
            parse_float=Decimal,
            parse_int=_integer,
            parse_constant=Decimal,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise JsonInputError(f"the body is nested more than {MAX_DEPTH} levels deep") from None
    except _DuplicateKeyError as exc:
        raise JsonInputError(str(exc)) from None
    except ValueError as exc:
        raise JsonInputError(f"the body is not valid JSON: {exc}") from None


def _integer(digits: str) -> int | Decimal:
    """Integers past a double's range stay Decimal (Python's int refuses 4,300+ digits) so that
    `check_json` names them like any other number out of range."""
    return int(digits) if len(digits) <= 310 else Decimal(digits)


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key would leave it to the parser which value wins: refuse it instead."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKeyError(f"the key {json.dumps(key)[:80]} appears twice in one object")
        found[key] = value
    return found


def dumps(value: Any, written: tuple[object, str] | None = None) -> str:
    """Compact JSON in which Decimals appear as exact JSON numbers (json would need a float).
    U+FFFE and U+FFFF, which SQS refuses in a body, are written as escapes (the same JSON value).
    `written`: an object within `value` and its text as `dumps` wrote it, used as is wherever that
    very object (not an equal one) appears, so a batch's items are written once (`bulk.build`):
    the text is the same, as `dumps` of a list is its items' texts joined and the escapes above
    leave text already escaped unchanged."""
    return _dumps(value, written).replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


# What `json.dumps(value, ensure_ascii=False, allow_nan=False)` writes, without building an encoder
# for each value (`json.dumps` makes one per call when given options): a string as JSONEncoder
# writes it, any other value through one encoder made once.
_string = json.encoder.encode_basestring
_scalar = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _dumps(value: Any, written: tuple[object, str] | None) -> str:
    if written is not None and value is written[0]:
        return written[1]
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(str(k))}:{_dumps(v, written)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dumps(v, written) for v in value) + "]"
    return _scalar(value)


def sqs_text(value: str) -> str:
    """SQS refuses characters outside its set (control characters, U+FFFE, U+FFFF, surrogates)."""
    return _NOT_SQS_TEXT.sub("\ufffd", value)


def child_path(path: str, key: object) -> str:
    """`item` + `x` -> `item.x`; `item` + 2 -> `item[2]`; odd names quoted: `item["a b"]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    name = str(key)
    return f"{path}.{name}" if _NAME.match(name) else f"{path}[{json.dumps(name)[:66]}]"


def _short(path: str) -> str:
    return path if len(path) <= 160 else f"{path[:60]}…{path[-90:]}"


def check_json(value: Any, path: str) -> None:
    """Raise JsonInputError naming the first value strict JSON cannot carry exactly. Iterative, so no
    input can exhaust the stack; `path` names the value (`item.prices[2]`)."""
    pending: list[tuple[Any, str, int]] = [(value, path, 0)]
    while pending:
        current, long_where, depth = pending.pop()
        where = _short(long_where)
        if isinstance(current, str):
            if _SURROGATE.search(current):
                raise JsonInputError(f"{where} holds a lone UTF-16 surrogate; strings must be valid Unicode")
        elif isinstance(current, bool) or current is None:
            continue
        elif isinstance(current, (int, float, Decimal)):
            _check_number(current, where)
        elif isinstance(current, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                raise JsonInputError(f"{where} is nested more than {MAX_DEPTH} levels deep")
            pairs = current.items() if isinstance(current, dict) else enumerate(current)
            for key, child in pairs:
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise JsonInputError(f"{where} has a key with a lone UTF-16 surrogate")
                pending.append((child, child_path(long_where, key), depth + 1))
        else:
            raise JsonInputError(f"{where} is a {type(current).__name__}, which JSON cannot carry")


def _check_number(number: int | float | Decimal, where: str) -> None:
    exact = number if isinstance(number, Decimal) else Decimal(number)
    if not exact.is_finite():
        raise JsonInputError(
            f"{where} is {number}, which JSON cannot carry; send a finite number or a string"
        )
    if abs(exact) > _DOUBLE_MAX:
        raise JsonInputError(
            f"{where} is beyond the range of a double (1.8E+308), where JSON parsers disagree;"
            " send it as a string"
        )
