"""Try the routes file on a sample item: which destinations it goes to, and the body each would get.

    python -m trickle_deploy.routes --stage local --item order.json
    python -m trickle_deploy.routes --item customer.json --event MODIFY --old customer-before.json

The item files hold DynamoDB JSON, as `aws dynamodb get-item` prints it (`{"Item": {...}}` or the
bare attribute map). Nothing is sent anywhere; enrichers run at delivery time, so their part of a
body is not shown (the output names the enricher that would run).
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from chalicelib.records import route_record
from chalicelib.settings import Settings, SettingsError, load_settings
from chalicelib.strict_json import dumps
from trickle_project import stage


def sample_record(
    item: dict[str, Any] | None, old: dict[str, Any] | None, event: str, key_names: list[str]
) -> dict[str, Any]:
    """The stream record a change to `item` would make (keys taken from its key attributes)."""
    image = item or old or {}
    keys = {name: image[name] for name in key_names if name in image}
    ddb: dict[str, Any] = {"Keys": keys, "SequenceNumber": "1", "ApproximateCreationDateTime": 0}
    if item is not None:
        ddb["NewImage"] = item
    if old is not None:
        ddb["OldImage"] = old
    return {"eventID": "sample", "eventName": event, "dynamodb": ddb}


def evaluate(record: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """One line per destination the record goes to (or is refused for); one `unrouted` line if none."""
    routed = route_record(record, settings)
    enrich = {(d, r.name): r.enrich for r in settings.routes for d in r.destinations if r.enrich}
    lines: list[dict[str, Any]] = [
        {
            "destination": m.destination,
            "route": m.attributes.get("trickle-route"),
            "message_id": m.message_id,
            "group_id": m.group_id,
            "enrich_at_delivery": enrich.get((m.destination, m.attributes.get("trickle-route", ""))),
            "body": json.loads(m.body, parse_float=Decimal),
        }
        for m in routed.messages
    ]
    lines += [{"destination": r.destination, "dead_lettered": r.reason} for r in routed.rejected]
    return lines or [{"unrouted": True, "event": record.get("eventName")}]


def _load(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    data = json.loads(path.read_text())
    return dict(data.get("Item", data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trickle_deploy.routes", description=__doc__)
    parser.add_argument("--stage", default="local", help="stage whose settings and routes file to use")
    parser.add_argument("--item", type=Path, help="the item after the change (DynamoDB JSON)")
    parser.add_argument("--old", type=Path, help="the item before the change, for MODIFY and REMOVE")
    parser.add_argument("--event", default="INSERT", choices=("INSERT", "MODIFY", "REMOVE"))
    parser.add_argument("--keys", default="pk,sk", help="the table's key attribute names (default pk,sk)")
    args = parser.parse_args(argv)
    if args.item is None and args.old is None:
        parser.error("give --item (and --old for MODIFY or REMOVE)")
    try:
        settings = load_settings(stage.stage_env(args.stage))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    record = sample_record(_load(args.item), _load(args.old), args.event, args.keys.split(","))
    for line in evaluate(record, settings):
        print(dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
