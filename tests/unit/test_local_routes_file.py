"""`python -m trickle_local up|demo --routes FILE`: the local stage reading another routes file, and a
drain for each of its destinations app.py has none for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from chalice import Chalice, Rate

from chalicelib import wiring
from chalicelib.settings import load_settings
from trickle_local.runtime import Invoker, schedule_expressions, scheduled_event
from trickle_project import stage

SHOP = """
[destinations.orders]
url = "https://orders.example.com/v2/items"

[destinations.shop]
url = "https://shop.example.com/v1/items"

[[routes]]
name = "all"
destinations = ["orders", "shop"]
"""


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.toml"
    path.write_text(SHOP)
    return path


def test_another_routes_file_keeps_the_stage_s_variables_only_for_its_destinations(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = stage.stage_env("local")
    monkeypatch.chdir(shop.parent)
    env = stage.stage_env("local", routes_file=Path("shop.toml"))  # relative to where it runs

    assert env["TRICKLE_ROUTES_FILE"] == str(shop)
    # orders_bulk's variables are its own, not fields of orders' (TRICKLE_DEST_ORDERS_BULK_URL)
    assert not [name for name in env if name.startswith(("TRICKLE_DEST_CRM_", "TRICKLE_DEST_ORDERS_BULK_"))]
    orders = {
        k: v
        for k, v in local.items()
        if k.startswith("TRICKLE_DEST_ORDERS_") and not k.startswith("TRICKLE_DEST_ORDERS_BULK_")
    }
    assert orders and orders.items() <= env.items()  # the stage's values for a destination it keeps
    assert {k: v for k, v in env.items() if not k.startswith("TRICKLE_DEST_")} == {
        k: v for k, v in local.items() if not k.startswith("TRICKLE_DEST_")
    } | {"TRICKLE_ROUTES_FILE": str(shop)}
    settings = load_settings(env)  # no variable of a destination the file lacks is left to refuse
    assert list(settings.destinations) == ["orders", "shop"]
    assert settings.destination("orders").url == "http://127.0.0.1:5051/orders"  # the stage's
    assert settings.destination("shop").url == "https://shop.example.com/v1/items"
    assert settings.destination("shop").queue_url.endswith("/trickle-local-shop.fifo")  # its own queues


def test_the_stage_s_own_destinations_come_from_the_routes_file_it_reads_by_default(shop: Path) -> None:
    """As the bench reads its own file: `with_routes_file` on the stage's variables knows the stage's
    destinations from them, so orders_bulk's variables go with orders_bulk, not to orders."""
    local = stage.stage_env("local")
    env = stage.with_routes_file(local, shop)

    kept = {name for name in env if name.startswith("TRICKLE_DEST_")}
    assert kept == {n for n in local if n.startswith("TRICKLE_DEST_ORDERS_") and "_ORDERS_BULK_" not in n}
    assert "TRICKLE_DEST_ORDERS_BULK_QUEUE_URL" in local


def test_an_unreadable_routes_file_is_a_usage_error_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import trickle_local.__main__ as cli

    with pytest.raises(SystemExit) as refused:
        cli.main(["demo", "--routes", str(tmp_path / "absent.toml")])
    err = capsys.readouterr().err
    assert refused.value.code == 2
    assert f"argument --routes: cannot read {tmp_path / 'absent.toml'}: No such file or directory" in err


def test_a_broken_routes_file_given_stops_the_command_with_the_settings_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import trickle_local.__main__ as cli

    broken = tmp_path / "broken.toml"
    broken.write_text('[destinations.shop]\nurl = "https://shop.example.com"\n')
    assert cli.main(["demo", "--routes", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "trickle_local: invalid Trickle settings for stage 'local': routes file"
        f" {broken}: at least one [[routes]] entry is required; routes file {broken}: no route sends to"
        " destination 'shop'\n"
    )


def test_a_destination_app_py_has_no_drain_for_gets_one_scheduled_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trickle_local.__main__ as cli

    app = Chalice(app_name="t")

    @app.schedule(Rate(2, unit=Rate.MINUTES), name="drain_orders")
    def drain_orders(event: Any) -> dict[str, Any]:
        return {"delivered": 0}

    drained: list[tuple[str, int]] = []
    monkeypatch.setattr(
        wiring,
        "drain",
        lambda name, context: drained.append((name, context.get_remaining_time_in_millis())),
    )

    assert cli.add_missing_drains(app, ["orders", "shop", "crm"]) == ["shop", "crm"]
    assert schedule_expressions(app) == {
        "drain_orders": "rate(2 minutes)",
        "drain_shop": "rate(1 minute)",
        "drain_crm": "rate(1 minute)",
    }
    Invoker(app, {"version": "2.0", "app_name": "t"}, "local").invoke(
        "drain_shop", scheduled_event("drain_shop", datetime.now(UTC), "us-east-1")
    )
    assert [name for name, _ in drained] == ["shop"]
    assert 0 < drained[0][1] <= 60_000  # a Lambda-like context, the default timeout


KINDS = """
[destinations.shop]
url = "https://shop.example.com/v1/invoices"
auth = "basic"
signing = "standard_webhooks"
secret_headers = ["X-Tenant-Key"]

[destinations.ledger]
url = "https://ledger.example.com/v1"
auth = "oauth2_client_credentials"
token_url = "https://ledger.example.com/oauth/token"

[[routes]]
name = "all"
destinations = ["shop", "ledger"]
"""


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        (
            ["--secret-env", "shop=SHOP_CREDENTIALS"],
            {},
            "--secret-env shop=SHOP_CREDENTIALS: environment variable SHOP_CREDENTIALS is not set",
        ),
        (
            ["--secret-env", "shop=SHOP_CREDENTIALS"],
            {"SHOP_CREDENTIALS": "hunter2"},
            "--secret-env shop=SHOP_CREDENTIALS: the Basic credentials are not a JSON object",
        ),
        (
            ["--headers-env", "ledger=HEADERS"],
            {"HEADERS": "{}"},
            "--headers-env ledger=HEADERS: destination ledger has no secret_headers",
        ),
        (
            ["--api-url", "shop=http://127.0.0.1:5999/v1", "--api-key", "k"],
            {},
            "argument --api-url: shop needs --secret-env shop=VARIABLE, a variable holding the Basic"
            ' credentials of shop, JSON {"username": "...", "password": "..."}',
        ),
        (
            ["--api-url", "shop=http://127.0.0.1:5999/v1", "--secret-env", "shop=SHOP_CREDENTIALS"],
            {"SHOP_CREDENTIALS": '{"username": "u", "password": "p"}'},
            "argument --api-url: shop needs --signing-secret-env shop=VARIABLE, a variable holding the"
            " signing secret of shop",
        ),
    ],
)
def test_secrets_for_another_routes_file_are_checked_before_anything_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    environ: dict[str, str],
    message: str,
) -> None:
    import trickle_local.__main__ as cli

    routes = tmp_path / "kinds.toml"
    routes.write_text(KINDS)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "start_emulator", lambda *_, **__: pytest.fail("an emulator was started"))

    with pytest.raises(SystemExit) as refused:
        cli.main(["up", "--ephemeral-ports", "--routes", str(routes), *flags])
    err = capsys.readouterr().err
    assert refused.value.code == 2
    assert f"python -m trickle_local up: error: {message}" in err
    assert "hunter2" not in err and "Traceback" not in err
