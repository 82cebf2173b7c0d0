"""What each kind of destination secret must hold (issue #24), in one place: the drain reads its SSM
parameters with these parsers (chalicelib/credentials.py) and the bootstrap checks a value with them
before it stores it (trickle_project/secret_parameters.py), so a value one accepts the other cannot
refuse. Pure.

The rules where a choice was made:
- Whitespace around an API key is dropped: a value pasted with its line break is common, and no key
  starts or ends with a space (a header value cannot). JSON values are taken as written.
- A JSON object holds exactly its fields: an unknown one is a configuration mistake (a misspelt
  field, the wrong kind's JSON), said rather than ignored.
- A Basic password may be empty (an API key as the username, as Stripe takes it); every other field
  must be a non-empty string.

A `SecretValueError` says what is wrong, never any of the value: not a field's value, not a field
name that is not ours (it may be a value pasted in the wrong place), not a character of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from chalicelib import signing
from chalicelib.request_shape import header_value_problem

BASIC_FIELDS = ("username", "password")
CLIENT_FIELDS = ("client_id", "client_secret")


class SecretValueError(ValueError):
    """A secret's value is not what its kind needs; the message says why and quotes none of it."""


def json_shape(fields: tuple[str, ...]) -> str:
    """`{"username": "...", "password": "..."}`: what a JSON secret looks like, in a message."""
    return "{" + ", ".join(f'"{field}": "..."' for field in fields) + "}"


def api_key(text: str) -> str:
    """An API key, without the whitespace around it; it goes into a header as it is."""
    key = text.strip()
    if not key:
        raise SecretValueError("the API key is empty")
    if problem := header_value_problem(key):
        raise SecretValueError(f"the API key {problem}")
    return key


def basic(text: str) -> tuple[str, str]:
    """HTTP Basic's (username, password): a username without ':' (RFC 7617 cannot carry one), a
    password that may be empty."""
    fields = _string_fields(
        text, "the Basic credentials", BASIC_FIELDS, may_be_empty=("password",), problem=_colon_in_username
    )
    return fields["username"], fields["password"]


def oauth2_client(text: str) -> tuple[str, str]:
    """An OAuth2 client's (client_id, client_secret)."""
    fields = _string_fields(text, "the OAuth2 client credentials", CLIENT_FIELDS)
    return fields["client_id"], fields["client_secret"]


def secret_headers(text: str, names: tuple[str, ...]) -> dict[str, str]:
    """The secret headers' values, by their routes-file names (`names`, matched without case as
    HTTP matches them), each fit for a header."""
    return _string_fields(
        text,
        "the secret headers' values",
        names,
        case_blind=True,
        problem=lambda _, v: header_value_problem(v),
    )


def _colon_in_username(field: str, value: str) -> str | None:
    return "holds ':' (Basic credentials cannot carry one)" if field == "username" and ":" in value else None


def signing_keys(text: str) -> tuple[bytes, ...]:
    """The signing keys: one or more `whsec_<base64>` secrets (`signing.parse_signing_secrets`)."""
    try:
        return signing.parse_signing_secrets(text)
    except ValueError as error:  # names a secret by its position, never its text
        raise SecretValueError(str(error)) from None


class _Object(list[tuple[str, object]]):
    """A JSON object's pairs as written, so a key given twice is seen (json keeps the last)."""


def _string_fields(
    text: str,
    what: str,
    fields: tuple[str, ...],
    *,
    may_be_empty: tuple[str, ...] = (),
    case_blind: bool = False,
    problem: Callable[[str, str], str | None] = lambda field, value: None,
) -> dict[str, str]:
    """Exactly `fields` of a JSON object, each a non-empty string (or empty, if in `may_be_empty`)
    of which `problem(field, value)` finds nothing wrong; every problem said at once. `case_blind`:
    names compared without case (header names)."""
    shape = json_shape(fields)
    try:
        document = json.loads(text, object_pairs_hook=_Object)
    except ValueError:
        document = None
    if not isinstance(document, _Object):
        raise SecretValueError(f"{what} are not a JSON object {shape}")
    fold = str.lower if case_blind else str
    given = {fold(name): value for name, value in document}
    wanted = {fold(field) for field in fields}
    problems: list[str] = []
    found: dict[str, str] = {}
    for field in fields:
        value = given.get(fold(field))
        if fold(field) not in given:
            problems.append(f"no {field!r}")
        elif not isinstance(value, str):
            problems.append(f"a {field!r} that is not a string")
        elif not value and field not in may_be_empty:
            problems.append(f"an empty {field!r}")
        elif wrong := problem(field, value):
            problems.append(f"a {field!r} that {wrong}")
        else:
            found[field] = value
    if len(given) < len(document):
        same = " (names are compared without case)" if case_blind else ""
        problems.append(f"a field given twice{same}")
    if unknown := len(set(given) - wanted):
        problems.append(
            f"{unknown} field{'s' if unknown > 1 else ''} other than {', '.join(map(repr, fields))}"
        )
    if problems:
        raise SecretValueError(f"{what} have {'; '.join(problems)}")
    return found
