"""The bootstrap takes each destination's secrets from a variable of their own, checks them before it
makes anything, and never repeats a value in what it says (issue #24)."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib.settings import Settings
from tests.unit.conftest import MakeSettings
from trickle_deploy import bootstrap
from trickle_deploy.bootstrap import secrets_from_env
from trickle_project.secret_parameters import CREDENTIALS, HEADERS, SIGNING

SECRET = "sk-live-4f9a-never-say-me"
ENVIRON = {"ORDERS_KEY": "sk-orders", "CRM_KEY": "sk-crm", "EMPTY": "", "BAD": f"{SECRET}\r\nX: 1"}


def gather(
    settings: Settings, credentials: list[str], api_key_env: str | None = None, only: str | None = None
) -> dict[str, str]:
    destinations = [d for d in settings.destinations.values() if only in (None, d.name)]
    return secrets_from_env("test", destinations, {CREDENTIALS: credentials}, api_key_env, ENVIRON)


def test_each_destination_gets_the_value_of_its_own_variable(settings: Settings) -> None:
    assert gather(settings, ["orders=ORDERS_KEY", "crm=CRM_KEY"]) == {
        "/trickle/test/api-key": "sk-orders",
        "/trickle/test/crm-key": "sk-crm",
    }
    assert gather(settings, ["crm=CRM_KEY"]) == {"/trickle/test/crm-key": "sk-crm"}  # orders: kept
    assert gather(settings, []) == {}


def test_one_key_for_every_destination_is_refused_with_the_options_that_give_each_its_own(
    settings: Settings,
) -> None:
    with pytest.raises(ValueError) as refused:
        gather(settings, [], api_key_env="ORDERS_KEY")
    assert str(refused.value) == (
        "--api-key-env gives every destination the same key, and stage test has 2 (orders, crm):"
        " give each its own, --secret-env orders=VAR --secret-env crm=VAR"
    )
    # A stage with one destination: the key is that destination's, as before.
    assert gather(settings, [], api_key_env="ORDERS_KEY", only="orders") == {
        "/trickle/test/api-key": "sk-orders"
    }


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (
            ["billing=CRM_KEY"],
            "--secret-env billing=CRM_KEY: stage test has no destination 'billing' (it has: orders, crm)",
        ),
        (["crm=CRM_KEY", "crm=ORDERS_KEY"], "--secret-env names destination crm twice"),
        (["crm=UNSET"], "--secret-env crm=UNSET: environment variable UNSET is not set"),
        (["crm=EMPTY"], "--secret-env crm=EMPTY: environment variable EMPTY is empty"),
        (
            ["crm=BAD"],
            "--secret-env crm=BAD: the API key holds a line break, another control"
            " character or a character beyond printable ASCII",
        ),
        (
            [f"crm={SECRET}"],  # a value typed where its variable's name goes: not repeated
            "--secret-env (the 1st) is not DESTINATION=VARIABLE: after the = comes the name of an"
            " environment variable that holds the value, never the value itself",
        ),
        ([SECRET], "--secret-env (the 1st) is not DESTINATION=VARIABLE"),
    ],
    ids=["unknown", "twice", "unset", "empty", "shape", "value-typed", "no-equals"],
)
def test_a_wrong_secret_option_says_what_to_fix_without_its_value(
    settings: Settings, given: list[str], said: str
) -> None:
    with pytest.raises(ValueError) as refused:
        gather(settings, given)
    assert said in str(refused.value)
    assert SECRET not in str(refused.value)


def test_every_problem_is_said_at_once(settings: Settings) -> None:
    with pytest.raises(ValueError) as refused:
        gather(settings, ["orders=UNSET", "crm=EMPTY"], api_key_env="ORDERS_KEY")
    assert len(str(refused.value).splitlines()) == 3


def test_the_command_refuses_before_it_makes_anything_or_calls_aws(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped dev stage has two destinations: one key for both is a usage error (exit 2), said
    before a region or credentials are even looked for."""
    monkeypatch.setenv("SOME_KEY", SECRET)

    def no_session(region: str | None) -> None:
        raise AssertionError("the bootstrap went on to AWS")

    monkeypatch.setattr(bootstrap, "configured_session", no_session)
    with pytest.raises(SystemExit) as stopped:
        bootstrap.main(["--stage", "dev", "--api-key-env", "SOME_KEY"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--secret-env orders=VAR --secret-env crm=VAR" in error
    assert SECRET not in error


WHSEC = "whsec_" + base64.b64encode(b"s" * 24).decode()
KINDS_ENVIRON = {
    "ORDERS_KEY": "sk-orders",
    "ORDERS_SIGNING": WHSEC,
    "ORDERS_HEADERS": json.dumps({"X-Tenant-Key": SECRET, "X-Region": "eu"}),
    "CRM_CLIENT": json.dumps({"client_id": "shop", "client_secret": SECRET}),
    "BILLING_USER": json.dumps({"username": "shop", "password": SECRET}),
    "HOOKS_SIGNING": WHSEC,
    "NOT_JSON": SECRET,
}
KINDS = {CREDENTIALS: "--secret-env", SIGNING: "--signing-secret-env", HEADERS: "--headers-env"}


def gather_kinds(settings: Settings, **given: list[str]) -> dict[str, str]:
    return secrets_from_env("test", list(settings.destinations.values()), given, None, KINDS_ENVIRON)


def test_each_kind_of_secret_has_its_option_and_goes_into_its_own_parameter(secret_kinds: Settings) -> None:
    assert gather_kinds(
        secret_kinds,
        credentials=["orders=ORDERS_KEY", "crm=CRM_CLIENT", "billing=BILLING_USER"],
        signing=["orders=ORDERS_SIGNING", "hooks=HOOKS_SIGNING"],
        headers=["orders=ORDERS_HEADERS"],
    ) == {
        "/trickle/test/api-key": "sk-orders",
        "/trickle/test/crm-key": KINDS_ENVIRON["CRM_CLIENT"],
        "/trickle/test/billing-api-key": KINDS_ENVIRON["BILLING_USER"],
        "/trickle/test/orders-signing-secret": WHSEC,
        "/trickle/test/hooks-signing-secret": WHSEC,
        "/trickle/test/orders-headers": KINDS_ENVIRON["ORDERS_HEADERS"],
    }


@pytest.mark.parametrize(
    ("kind", "entry", "said"),
    [
        (CREDENTIALS, "hooks=HOOKS_SIGNING", 'destination hooks has auth = "none": it reads no credentials'),
        (SIGNING, "crm=HOOKS_SIGNING", "destination crm signs nothing (no signing in the routes file)"),
        (HEADERS, "billing=ORDERS_HEADERS", "destination billing has no secret_headers"),
        (
            CREDENTIALS,
            "crm=NOT_JSON",
            "the OAuth2 client credentials are not a JSON object",
        ),  # what each kind must hold: tests/unit/test_secret_values.py
    ],
)
def test_a_secret_of_a_kind_the_destination_does_not_read_or_of_the_wrong_shape_is_refused(
    secret_kinds: Settings, kind: str, entry: str, said: str
) -> None:
    with pytest.raises(ValueError) as refused:
        gather_kinds(secret_kinds, **{kind: [entry]})
    assert str(refused.value).startswith(f"{KINDS[kind]} {entry}: {said}")
    assert SECRET not in str(refused.value) and "shop" not in str(refused.value)
