"""What each kind of destination secret must hold (chalicelib/secret_values.py, issue #24), as one
table: the drain's reads (test_credentials.py) and the bootstrap's checks
(test_secret_parameters.py) only show that they use these parsers. No message ever holds any of the
value: every refused value below carries SECRET somewhere (a field, a field's name, the text)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest

from chalicelib import secret_values
from chalicelib.secret_values import SecretValueError

SECRET = "Zq9-never-say-me"
WHSEC = "whsec_" + base64.b64encode(b"k" * 24).decode()
UNPADDED = "whsec_" + base64.b64encode(b"r" * 23).decode().rstrip("=")  # as the reference allows
NAMES = ("X-Tenant-Key", "X-Region")
SHAPE_BASIC = '{"username": "...", "password": "..."}'
SHAPE_CLIENT = '{"client_id": "...", "client_secret": "..."}'


@dataclass(frozen=True)
class Refused:
    said: str  # the whole message


api_key = secret_values.api_key
basic = secret_values.basic
client = secret_values.oauth2_client
headers = partial(secret_values.secret_headers, names=NAMES)
signing = secret_values.signing_keys


def js(**fields: object) -> str:
    return json.dumps(fields)


HOLDS_LINE_BREAK = "holds a line break, another control character or a character beyond printable ASCII"
RULES: list[tuple[str, Callable[[str], object], str, object]] = [
    # API key: white space around it dropped (a value pasted with its line break), else fit for a header
    ("key", api_key, SECRET, SECRET),
    ("key-pasted", api_key, f"  {SECRET}\n", SECRET),
    ("key-inner-space", api_key, f"{SECRET} x", f"{SECRET} x"),
    ("key-empty", api_key, "", Refused("the API key is empty")),
    ("key-blank", api_key, " \n\t", Refused("the API key is empty")),
    ("key-crlf", api_key, f"{SECRET}\r\nX-Evil: 1", Refused(f"the API key {HOLDS_LINE_BREAK}")),
    ("key-non-ascii", api_key, f"{SECRET}é", Refused(f"the API key {HOLDS_LINE_BREAK}")),
    # Basic: exactly username and password; the password may be empty (an API key as the username)
    ("basic", basic, js(username="ünï", password=f"p:w é{SECRET}"), ("ünï", f"p:w é{SECRET}")),
    ("basic-empty-password", basic, js(username=SECRET, password=""), (SECRET, "")),
    ("basic-as-written", basic, js(username=" u", password=f"{SECRET}\n"), (" u", f"{SECRET}\n")),
    (
        "basic-not-json",
        basic,
        f"user:{SECRET}",
        Refused(f"the Basic credentials are not a JSON object {SHAPE_BASIC}"),
    ),
    (
        "basic-array",
        basic,
        json.dumps(["u", SECRET]),
        Refused(f"the Basic credentials are not a JSON object {SHAPE_BASIC}"),
    ),
    ("basic-no-password", basic, js(username=SECRET), Refused("the Basic credentials have no 'password'")),
    (
        "basic-empty-username",
        basic,
        js(username="", password=SECRET),
        Refused("the Basic credentials have an empty 'username'"),
    ),
    (
        "basic-number",
        basic,
        js(username=1, password=SECRET),
        Refused("the Basic credentials have a 'username' that is not a string"),
    ),
    (
        "basic-null-password",
        basic,
        js(username=SECRET, password=None),
        Refused("the Basic credentials have a 'password' that is not a string"),
    ),
    (
        "basic-colon",
        basic,
        js(username=f"u:{SECRET}", password="p"),
        Refused(
            "the Basic credentials have a 'username' that holds ':' (Basic credentials cannot carry one)"
        ),
    ),
    (
        "basic-unknown-field",
        basic,
        js(username="u", password="p", **{SECRET: "x"}),
        Refused("the Basic credentials have 1 field other than 'username', 'password'"),
    ),
    (
        "basic-twice",
        basic,
        f'{{"username": "u", "password": "{SECRET}", "password": "p"}}',
        Refused("the Basic credentials have a field given twice"),
    ),
    (
        "basic-every-problem",
        basic,
        js(user="u", password=5, other=SECRET),
        Refused(
            "the Basic credentials have no 'username'; a 'password' that is not a string;"
            " 2 fields other than 'username', 'password'"
        ),
    ),
    # OAuth2 client: exactly client_id and client_secret, both non-empty
    ("client", client, js(client_id="a:b c", client_secret=SECRET), ("a:b c", SECRET)),
    (
        "client-not-json",
        client,
        SECRET,
        Refused(f"the OAuth2 client credentials are not a JSON object {SHAPE_CLIENT}"),
    ),
    (
        "client-empty-secret",
        client,
        js(client_id=SECRET, client_secret=""),
        Refused("the OAuth2 client credentials have an empty 'client_secret'"),
    ),
    (
        "client-no-id",
        client,
        js(client_secret=SECRET),
        Refused("the OAuth2 client credentials have no 'client_id'"),
    ),
    (
        "client-unknown-field",
        client,
        js(client_id="i", client_secret=SECRET, scope="s"),
        Refused("the OAuth2 client credentials have 1 field other than 'client_id', 'client_secret'"),
    ),
    # Secret headers: exactly the routes file's names (without case), values non-empty and fit for a header
    (
        "headers",
        headers,
        js(**{"X-Tenant-Key": SECRET, "X-Region": "eu"}),
        {"X-Tenant-Key": SECRET, "X-Region": "eu"},
    ),
    (
        "headers-case",
        headers,
        js(**{"x-tenant-KEY": SECRET, "x-region": "eu"}),
        {"X-Tenant-Key": SECRET, "X-Region": "eu"},
    ),
    (
        "headers-not-json",
        headers,
        SECRET,
        Refused(
            'the secret headers\' values are not a JSON object {"X-Tenant-Key": "...", "X-Region": "..."}'
        ),
    ),
    (
        "headers-missing",
        headers,
        js(**{"X-Tenant-Key": SECRET}),
        Refused("the secret headers' values have no 'X-Region'"),
    ),
    (
        "headers-unknown",
        headers,
        js(**{"X-Tenant-Key": "t", "X-Region": "eu", SECRET: "1"}),
        Refused("the secret headers' values have 1 field other than 'X-Tenant-Key', 'X-Region'"),
    ),
    (
        "headers-crlf",
        headers,
        js(**{"X-Tenant-Key": f"{SECRET}\r\nX-Evil: 1", "X-Region": "eu"}),
        Refused(f"the secret headers' values have a 'X-Tenant-Key' that {HOLDS_LINE_BREAK}"),
    ),
    (
        "headers-space",
        headers,
        js(**{"X-Tenant-Key": f" {SECRET}", "X-Region": "eu"}),
        Refused("the secret headers' values have a 'X-Tenant-Key' that starts or ends with white space"),
    ),
    (
        "headers-empty",
        headers,
        js(**{"X-Tenant-Key": SECRET, "X-Region": ""}),
        Refused("the secret headers' values have an empty 'X-Region'"),
    ),
    (
        "headers-twice",
        headers,
        js(**{"X-Tenant-Key": SECRET, "X-Region": "eu", "x-region": "us"}),
        Refused("the secret headers' values have a field given twice (names are compared without case)"),
    ),
    # Signing: one or more whsec_<base64> secrets (chalicelib.signing.parse_signing_secrets)
    ("signing", signing, WHSEC, (b"k" * 24,)),
    ("signing-rotation", signing, f"{WHSEC} {UNPADDED}\n", (b"k" * 24, b"r" * 23)),
    (
        "signing-empty",
        signing,
        " ",
        Refused("no signing secret: expected one or more whsec_<base64> secrets"),
    ),
    ("signing-prefix", signing, SECRET, Refused("signing secret 1 of 1 does not start with whsec_")),
    (
        "signing-base64",
        signing,
        f"{WHSEC} whsec_{SECRET}!",
        Refused("signing secret 2 of 2 is not base64 after whsec_"),
    ),
]


@pytest.mark.parametrize(("parse", "text", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_what_each_kind_of_secret_must_hold(
    parse: Callable[[str], object], text: str, expected: object
) -> None:
    if not isinstance(expected, Refused):
        assert parse(text) == expected
        return
    with pytest.raises(SecretValueError) as refused:
        parse(text)
    assert str(refused.value) == expected.said
    assert SECRET not in str(refused.value) and WHSEC[6:] not in str(refused.value)
