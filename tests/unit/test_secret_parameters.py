"""Which SecureStrings a destination's drain reads, and what a value must be to be stored in one
(issue #24): the bootstrap, the policies, the template and the guide all take them from here."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from functools import partial

import pytest

from chalicelib import secret_values
from chalicelib.secret_values import SecretValueError
from chalicelib.settings import Settings
from trickle_project.secret_parameters import CREDENTIALS, HEADERS, SIGNING, SecretParameter, needed

SECRET = "Zq9-never-say-me"
WHSEC = "whsec_" + base64.b64encode(b"k" * 24).decode()


def test_a_destination_reads_only_the_secrets_its_routes_file_entry_asks_for(secret_kinds: Settings) -> None:
    read = {
        name: [(p.kind, p.name, p.variable) for p in needed(d)]
        for name, d in secret_kinds.destinations.items()
    }
    assert read == {
        "orders": [
            (CREDENTIALS, "/trickle/test/api-key", "ORDERS_API_KEY"),
            (SIGNING, "/trickle/test/orders-signing-secret", "ORDERS_SIGNING_SECRET"),
            (HEADERS, "/trickle/test/orders-headers", "ORDERS_HEADERS"),
        ],
        "crm": [(CREDENTIALS, "/trickle/test/crm-key", "CRM_API_KEY")],
        "billing": [(CREDENTIALS, "/trickle/test/billing-api-key", "BILLING_API_KEY")],
        "hooks": [(SIGNING, "/trickle/test/hooks-signing-secret", "HOOKS_SIGNING_SECRET")],  # auth = none
        "open": [],
    }


def parameter(settings: Settings, destination: str, kind: str) -> SecretParameter:
    (found,) = [p for p in needed(settings.destination(destination)) if p.kind == kind]
    return found


GOOD = {
    ("orders", CREDENTIALS): SECRET,
    ("billing", CREDENTIALS): json.dumps({"username": "shop", "password": SECRET}),
    ("crm", CREDENTIALS): json.dumps({"client_id": "shop", "client_secret": SECRET}),
    ("orders", SIGNING): WHSEC,
    ("orders", HEADERS): json.dumps({"X-Tenant-Key": SECRET, "X-Region": "eu"}),
}
HEADER_NAMES = ("X-Tenant-Key", "X-Region")  # orders' secret_headers


@pytest.mark.parametrize(
    ("destination", "kind", "bad", "parse"),
    [
        ("orders", CREDENTIALS, f"{SECRET}\r\nX: 1", secret_values.api_key),
        ("billing", CREDENTIALS, json.dumps({"username": "shop"}), secret_values.basic),
        (
            "crm",
            CREDENTIALS,
            json.dumps({"username": "shop", "password": SECRET}),
            secret_values.oauth2_client,
        ),
        ("orders", SIGNING, f"{WHSEC} whsec_{SECRET}!", secret_values.signing_keys),
        (
            "orders",
            HEADERS,
            json.dumps({"X-Tenant-Key": SECRET}),
            partial(secret_values.secret_headers, names=HEADER_NAMES),
        ),
    ],
    ids=["api_key", "basic", "oauth2", "signing", "headers"],
)
def test_a_value_is_checked_as_the_drain_reads_its_kind_and_never_quoted(
    secret_kinds: Settings, destination: str, kind: str, bad: str, parse: Callable[[str], object]
) -> None:
    """The rules themselves are tested as a table in test_secret_values.py."""
    checked = parameter(secret_kinds, destination, kind)
    assert checked.problem(GOOD[destination, kind]) is None
    with pytest.raises(SecretValueError) as refused:
        parse(bad)
    assert checked.problem(bad) == str(refused.value)
    assert SECRET not in str(refused.value) and "shop" not in str(refused.value)
