"""Which SecureStrings a destination's drain reads, and what a value must be to be stored in one
(issue #24): the bootstrap, the policies, the template and the guide all take them from here."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.settings import Settings
from trickle_project.secret_parameters import CREDENTIALS, HEADERS, SIGNING, SecretParameter, needed

SECRET = "Zq9-never-say-me"
WHSEC = "whsec_" + base64.b64encode(b"k" * 24).decode()
UNPADDED = "whsec_" + base64.b64encode(b"r" * 23).decode().rstrip("=")  # as the reference allows


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


OK = None
CASES = [
    # (destination, kind, value, what is said, or None when it will do)
    ("orders", CREDENTIALS, SECRET, OK),
    ("orders", CREDENTIALS, f"{SECRET}\n", "the API key of destination orders holds a line break"),
    (
        "orders",
        CREDENTIALS,
        f" {SECRET}",
        "the API key of destination orders starts or ends with white space",
    ),
    ("orders", CREDENTIALS, "  ", "the API key of destination orders is empty"),
    ("billing", CREDENTIALS, json.dumps({"username": "shop", "password": SECRET}), OK),
    ("billing", CREDENTIALS, SECRET, 'is not a JSON object {"username": "...", "password": "..."}'),
    ("billing", CREDENTIALS, json.dumps([SECRET]), "is not a JSON object"),
    (
        "billing",
        CREDENTIALS,
        json.dumps({"user": "shop", "password": SECRET}),
        "has no 'username'; fields other",
    ),
    (
        "billing",
        CREDENTIALS,
        json.dumps({"username": "shop", "password": ""}),
        "'password' is not a non-empty",
    ),
    ("billing", CREDENTIALS, json.dumps({"username": "a:b", "password": SECRET}), "a username with ':'"),
    ("crm", CREDENTIALS, json.dumps({"client_id": "shop", "client_secret": SECRET}), OK),
    (
        "crm",
        CREDENTIALS,
        json.dumps({"client_id": "shop", "client_secret": 7}),
        "'client_secret' is not a non",
    ),
    (
        "crm",
        CREDENTIALS,
        json.dumps({"client_id": "shop"}),
        "the OAuth2 client credentials of destination crm has",
    ),
    ("orders", SIGNING, WHSEC, OK),
    ("orders", SIGNING, f"{WHSEC} {UNPADDED}\n", OK),  # two during a rotation
    (
        "hooks",
        SIGNING,
        SECRET,
        "the signing secret of destination hooks: secret 1 of 1 does not start with whsec_",
    ),
    ("hooks", SIGNING, f"{WHSEC} whsec_{SECRET}!", "secret 2 of 2 is not base64 after whsec_"),
    ("orders", HEADERS, json.dumps({"X-Tenant-Key": SECRET, "X-Region": "eu"}), OK),
    ("orders", HEADERS, json.dumps({"x-tenant-key": SECRET, "x-region": "eu"}), OK),  # names without case
    ("orders", HEADERS, json.dumps({"X-Tenant-Key": SECRET}), "has no 'X-Region'"),
    (
        "orders",
        HEADERS,
        json.dumps({"X-Tenant-Key": SECRET, "X-Region": "eu", "X-Other": "1"}),
        "fields other",
    ),
    (
        "orders",
        HEADERS,
        json.dumps({"X-Tenant-Key": f"{SECRET}\r\n", "X-Region": "eu"}),
        "'X-Tenant-Key' holds a",
    ),
]


@pytest.mark.parametrize(("destination", "kind", "value", "said"), CASES)
def test_a_value_is_checked_for_its_shape_and_never_quoted(
    secret_kinds: Settings, destination: str, kind: str, value: str, said: str | None
) -> None:
    problem = parameter(secret_kinds, destination, kind).problem(value)
    if said is None:
        assert problem is None
    else:
        assert problem is not None and said in problem, problem
        assert SECRET not in problem and "shop" not in problem and WHSEC[6:] not in problem
