"""The secrets a local run makes up for a stand-in's destination, and what its stand-in then
requires: each made-up value is one the bootstrap would accept, and the stand-in requires exactly
what the parameters hold (given or made up)."""

from __future__ import annotations

import json

import pytest

from trickle_local.standin_secrets import Expected, Random, expected, made_up
from trickle_project.secret_parameters import CREDENTIALS, HEADERS, SIGNING, SecretParameter

API_KEY = SecretParameter("orders", CREDENTIALS, "/p/orders-key", "ORDERS_API_KEY", "api_key")
BASIC = SecretParameter("shop", CREDENTIALS, "/p/shop-key", "SHOP_API_KEY", "basic")
OAUTH2 = SecretParameter(
    "billing", CREDENTIALS, "/p/billing-key", "BILLING_API_KEY", "oauth2_client_credentials"
)
SIGNED = SecretParameter("billing", SIGNING, "/p/billing-signing", "BILLING_SIGNING_SECRET", SIGNING)
HEADERED = SecretParameter(
    "shop", HEADERS, "/p/shop-headers", "SHOP_HEADERS", HEADERS, ("X-Tenant-Key", "X-Org")
)


def counting() -> Random:
    """Random bytes that differ on every call, so two made-up values never match by accident."""
    calls = iter(range(1, 1000))
    return lambda n: bytes([next(calls)]) * n


@pytest.mark.parametrize("parameter", [API_KEY, BASIC, OAUTH2, SIGNED, HEADERED], ids=lambda p: p.shape)
def test_a_made_up_value_is_one_the_bootstrap_would_store(parameter: SecretParameter) -> None:
    value = made_up(parameter, "local-key")
    assert parameter.problem(value) is None
    assert made_up(parameter, "local-key") != value or parameter is API_KEY  # fresh each time


def test_an_api_key_is_the_run_s_one_key() -> None:
    assert made_up(API_KEY, "local-key") == "local-key"


def test_each_kind_is_written_as_its_parameter_holds_it() -> None:
    random = counting()
    assert json.loads(made_up(BASIC, "k", random)) == {
        "username": "trickle-shop",
        "password": "AQEBAQEBAQEBAQEBAQEBAQ",
    }
    assert json.loads(made_up(OAUTH2, "k", random)).keys() == {"client_id", "client_secret"}
    assert made_up(SIGNED, "k", random).startswith("whsec_")
    assert json.loads(made_up(HEADERED, "k", random)).keys() == {"X-Tenant-Key", "X-Org"}


CLIENT = '{"client_id": "c", "client_secret": "s"}'
TENANT = '{"X-Org": "o", "X-Tenant-Key": "t"}'


@pytest.mark.parametrize(
    ("parameters", "values", "wanted"),
    [
        ([API_KEY], {"/p/orders-key": "k1"}, Expected(api_key="k1")),
        ([API_KEY], {"/p/orders-key": " k1\n"}, Expected(api_key="k1")),  # as the drain sends it
        ([BASIC], {"/p/shop-key": '{"username": "ann", "password": "pw"}'}, Expected(basic=("ann", "pw"))),
        (
            [OAUTH2, SIGNED],
            {"/p/billing-key": CLIENT, "/p/billing-signing": "whsec_bmV3 whsec_b2xk"},
            Expected(client=("c", "s"), signing_secret="whsec_bmV3"),  # the first: each signs
        ),
        (
            [BASIC, HEADERED],
            {"/p/shop-key": '{"password": "pw", "username": "ann"}', "/p/shop-headers": TENANT},
            Expected(basic=("ann", "pw"), secret_headers={"X-Org": "o", "X-Tenant-Key": "t"}),
        ),
        (
            [HEADERED],
            {"/p/shop-headers": '{"x-org": "o", "x-tenant-key": "t"}'},
            Expected(secret_headers={"X-Org": "o", "X-Tenant-Key": "t"}),  # the routes file's names
        ),
        ([], {}, Expected()),  # auth = none, unsigned: nothing required
    ],
)  # fmt: skip
def test_the_stand_in_requires_what_the_parameters_hold(
    parameters: list[SecretParameter], values: dict[str, str], wanted: Expected
) -> None:
    assert expected(parameters, values) == wanted
