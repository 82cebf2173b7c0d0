"""`python -m trickle_deploy.routes`: what the shipped example routes file sends for sample items."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.settings import ROUTES_FILE
from tests.unit.conftest import SHIPPED_ENV, MakeSettings
from trickle_deploy.routes import evaluate, flag_problem, main, not_dynamodb_json, sample_record

CUSTOMER = {
    "pk": {"S": "CUSTOMER#1"},
    "sk": {"S": "PROFILE"},
    "type": {"S": "customer"},
    "name": {"S": "Ada"},
}
ORDER = {"pk": {"S": "CUSTOMER#1"}, "sk": {"S": "ORDER#7"}, "type": {"S": "order"}, "total": {"N": "19.990"}}
INVOICE = {
    "pk": {"S": "CUSTOMER#1"},
    "sk": {"S": "INVOICE#3"},
    "type": {"S": "invoice"},
    "invoice_id": {"S": "INV-3"},
}


def shipped(make_settings: MakeSettings) -> Any:
    return make_settings(TRICKLE_ROUTES_FILE=str(ROUTES_FILE), **SHIPPED_ENV)


def test_an_order_goes_to_orders_with_its_enricher_named_and_to_orders_bulk(
    make_settings: MakeSettings,
) -> None:
    line, bulk = evaluate(sample_record(ORDER, None, "INSERT", ["pk", "sk"]), shipped(make_settings))

    assert (line["destination"], line["route"], line["enrich_at_delivery"]) == (
        "orders",
        "orders",
        "customer",
    )
    assert (bulk["destination"], bulk["route"], bulk["body"]["keys"]) == (
        "orders_bulk",
        "orders_bulk",
        {"pk": "CUSTOMER#1", "sk": "ORDER#7"},
    )
    assert line["body"]["item"]["total"] == line["body"]["item"]["total"].__class__("19.990")  # exact
    assert line["group_id"] == 'items#"CUSTOMER#1"'


def test_an_invoice_goes_to_all_three_and_a_customer_change_to_the_crm_in_its_shape(
    make_settings: MakeSettings,
) -> None:
    settings = shipped(make_settings)
    invoice = evaluate(sample_record(INVOICE, None, "INSERT", ["pk", "sk"]), settings)
    before = CUSTOMER | {"email": {"S": "old@example.com"}}
    change = evaluate(sample_record(CUSTOMER, before, "MODIFY", ["pk", "sk"]), settings)

    assert sorted(line["destination"] for line in invoice) == ["billing", "crm", "orders"]
    assert len({line["message_id"] for line in invoice}) == 3
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
        "trickle_project.stage.stage_env",
        lambda stage: base_env | SHIPPED_ENV | {"TRICKLE_ROUTES_FILE": str(ROUTES_FILE)},
    )

    assert main(["--item", str(item)]) == 0

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["destination"] for line in lines) == ["billing", "crm", "orders"]


@pytest.fixture
def shipped_stage(monkeypatch: pytest.MonkeyPatch, base_env: dict[str, str]) -> None:
    monkeypatch.setattr(
        "trickle_project.stage.stage_env",
        lambda stage: base_env | SHIPPED_ENV | {"TRICKLE_ROUTES_FILE": str(ROUTES_FILE)},
    )


@pytest.mark.parametrize(
    ("content", "trouble"),
    [
        (None, "cannot read it (No such file or directory)"),
        ("", "the file is empty"),
        ('{"pk": ', "not JSON (Expecting value"),
        ("[1]", "not DynamoDB JSON: the file holds [1], not an object"),
        ('{"pk": "CUSTOMER#1"}', 'not DynamoDB JSON: attribute "pk" is "CUSTOMER#1"'),
        ('{"Item": {"pk": {"S": "A"}, "n": 3}}', 'not DynamoDB JSON: attribute "n" is 3'),
    ],
)
@pytest.mark.usefixtures("shipped_stage")
def test_an_item_file_it_cannot_use_is_one_line_naming_flag_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, trouble: str
) -> None:
    path = tmp_path / "item.json"
    if content is not None:
        path.write_text(content)

    assert main(["--item", str(path)]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"--item {path}: ")
    assert trouble in line
    if "DynamoDB JSON" in trouble:
        assert "`aws dynamodb get-item`" in line


@pytest.mark.parametrize(
    ("attributes", "wrong"),
    [
        ({"pk": {"S": "A"}, "n": {"N": "1"}, "m": {"M": {"x": {"NULL": True}}}, "b": {"BOOL": False}}, None),
        (
            {
                "s": {"SS": ["a"]},
                "ns": {"NS": ["1"]},
                "bs": {"BS": ["AA=="]},
                "l": {"L": []},
                "b": {"B": "AA=="},
            },
            None,
        ),
        ({"pk": "CUSTOMER#1"}, '"pk" is "CUSTOMER#1"'),
        ({"pk": {"S": "A", "N": "1"}}, '"pk" is {"S": "A", "N": "1"}'),
        ({"pk": {"s": "A"}}, '"pk" is {"s": "A"}'),
        ({"pk": {"S": "A"}, "total": 19.99}, '"total" is 19.99'),
        ({"pk": None}, '"pk" is null'),
    ],
)
def test_only_a_map_of_typed_values_is_dynamodb_json(attributes: dict[str, Any], wrong: str | None) -> None:
    problem = not_dynamodb_json(attributes)
    assert (problem is None) if wrong is None else (problem is not None and wrong in problem)


@pytest.mark.parametrize(
    ("event", "has_item", "has_old", "ok"),
    [
        ("INSERT", True, False, True),
        ("INSERT", True, True, False),
        ("INSERT", False, True, False),
        ("INSERT", False, False, False),
        ("MODIFY", True, True, True),
        ("MODIFY", True, False, False),
        ("MODIFY", False, True, False),
        ("REMOVE", False, True, True),
        ("REMOVE", True, False, False),
        ("REMOVE", True, True, False),
    ],
)
def test_the_flags_match_what_the_events_stream_record_carries(
    event: str, has_item: bool, has_old: bool, ok: bool
) -> None:
    problem = flag_problem(event, has_item, has_old)
    assert (problem is None) == ok
    assert problem is None or problem.startswith(f"--event {event} takes ")


@pytest.mark.usefixtures("shipped_stage")
def test_a_removal_given_as_item_is_refused_and_given_as_old_is_routed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "customer.json"
    path.write_text(json.dumps({"Item": CUSTOMER}))

    with pytest.raises(SystemExit) as refused:
        main(["--event", "REMOVE", "--item", str(path)])
    assert refused.value.code == 2
    assert "--event REMOVE takes --old" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--event", "MODIFY", "--item", str(path)])
    assert "--event MODIFY takes --item and --old" in capsys.readouterr().err

    assert main(["--event", "REMOVE", "--old", str(path)]) == 0
    (line,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (line["destination"], line["body"]["change"]) == ("crm", "REMOVE")


def test_different_sample_changes_get_different_message_ids(make_settings: MakeSettings) -> None:
    settings = shipped(make_settings)
    other = CUSTOMER | {"pk": {"S": "CUSTOMER#2"}}
    changes = [
        sample_record(CUSTOMER, None, "INSERT", ["pk", "sk"]),
        sample_record(other, None, "INSERT", ["pk", "sk"]),
        sample_record(CUSTOMER, other, "MODIFY", ["pk", "sk"]),
        sample_record(None, CUSTOMER, "REMOVE", ["pk", "sk"]),
    ]

    ids = [line["message_id"] for change in changes for line in evaluate(change, settings)]

    assert len(ids) == len(set(ids)) == 4
    assert evaluate(changes[0], settings)[0]["message_id"] == ids[0]  # the same change, the same id
