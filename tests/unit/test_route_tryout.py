"""`python -m trickle_deploy.routes`: what the shipped example routes file sends for sample items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.settings import ROUTES_FILE
from tests.unit.conftest import MakeSettings
from trickle_deploy.routes import evaluate, main, sample_record

CUSTOMER = {
    "pk": {"S": "CUSTOMER#1"},
    "sk": {"S": "PROFILE"},
    "type": {"S": "customer"},
    "name": {"S": "Ada"},
}
ORDER = {"pk": {"S": "CUSTOMER#1"}, "sk": {"S": "ORDER#7"}, "type": {"S": "order"}, "total": {"N": "19.990"}}
INVOICE = {"pk": {"S": "CUSTOMER#1"}, "sk": {"S": "INVOICE#3"}, "type": {"S": "invoice"}}


def shipped(make_settings: MakeSettings) -> Any:
    return make_settings(TRICKLE_ROUTES_FILE=str(ROUTES_FILE))


def test_an_order_goes_to_orders_with_its_enricher_named(make_settings: MakeSettings) -> None:
    (line,) = evaluate(sample_record(ORDER, None, "INSERT", ["pk", "sk"]), shipped(make_settings))

    assert (line["destination"], line["route"], line["enrich_at_delivery"]) == (
        "orders",
        "orders",
        "customer",
    )
    assert line["body"]["item"]["total"] == line["body"]["item"]["total"].__class__("19.990")  # exact
    assert line["group_id"] == 'items#"CUSTOMER#1"'


def test_an_invoice_goes_to_both_and_a_customer_change_to_the_crm_in_its_shape(
    make_settings: MakeSettings,
) -> None:
    settings = shipped(make_settings)
    invoice = evaluate(sample_record(INVOICE, None, "INSERT", ["pk", "sk"]), settings)
    before = CUSTOMER | {"email": {"S": "old@example.com"}}
    change = evaluate(sample_record(CUSTOMER, before, "MODIFY", ["pk", "sk"]), settings)

    assert sorted(line["destination"] for line in invoice) == ["crm", "orders"]
    assert len({line["message_id"] for line in invoice}) == 2
    (crm,) = change
    assert crm["destination"] == "crm"
    assert crm["body"] == {
        "customer": "CUSTOMER#1",
        "change": "MODIFY",
        "name": "Ada",
        "email": None,
        "before": "old@example.com",
        "keys": {"pk": "CUSTOMER#1", "sk": "PROFILE"},
        "sequence_number": "1",
    }


def test_an_item_no_route_takes_is_unrouted(make_settings: MakeSettings) -> None:
    other = {"pk": {"S": "X"}, "sk": {"S": "Y"}, "type": {"S": "note"}}
    assert evaluate(sample_record(other, None, "INSERT", ["pk", "sk"]), shipped(make_settings)) == [
        {"unrouted": True, "event": "INSERT"}
    ]


def test_the_command_prints_one_json_line_per_destination(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    base_env: dict[str, str],
) -> None:
    item = tmp_path / "invoice.json"
    item.write_text(json.dumps({"Item": INVOICE}))
    monkeypatch.setattr(
        "trickle_project.stage.stage_env", lambda stage: base_env | {"TRICKLE_ROUTES_FILE": str(ROUTES_FILE)}
    )

    assert main(["--item", str(item)]) == 0

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["destination"] for line in lines) == ["crm", "orders"]
