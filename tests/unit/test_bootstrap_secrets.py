"""The bootstrap takes each destination's secrets from a variable of their own, checks them before it
makes anything, and never repeats a value in what it says (issue #24)."""

from __future__ import annotations

import pytest

from chalicelib.settings import Settings
from tests.unit.conftest import MakeSettings
from trickle_deploy import bootstrap
from trickle_deploy.bootstrap import secrets_from_env
from trickle_project.secret_parameters import CREDENTIALS

SECRET = "sk-live-4f9a-never-say-me"
ENVIRON = {"ORDERS_KEY": "sk-orders", "CRM_KEY": "sk-crm", "EMPTY": "", "BAD": f" {SECRET}\n"}


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
            "--secret-env crm=BAD: the API key of destination crm has whitespace around it or a line"
            " break in it",
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
