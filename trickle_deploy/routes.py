"""Try the routes file on a sample item: which destinations it goes to, and the body each would get.

    python -m trickle_deploy.routes --stage local --item order.json
    python -m trickle_deploy.routes --item customer.json --event MODIFY --old customer-before.json
    python -m trickle_deploy.routes --event REMOVE --old customer.json

The flags match what a stream record carries: INSERT the new item (--item), MODIFY the item after
and before the change (--item and --old), REMOVE the item as it was (--old). The item files hold
DynamoDB JSON, as `aws dynamodb get-item` prints it (`{"Item": {...}}` or the bare attribute map).
Nothing is sent anywhere; enrichers run at delivery time, so their part of a body is not shown (the
output names the enricher that would run). The message id derives from a sample eventID (a hash of
the event and the items); a real record's eventID differs, and so does its message id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from chalicelib.records import route_record
from chalicelib.settings import Settings, SettingsError, load_settings
from chalicelib.strict_json import dumps
from trickle_project import stage

DYNAMODB_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})

# What a stream record of each event carries: (new image, old image), and the flags that give them.
EVENT_IMAGES = {
    "INSERT": ((True, False), "--item (the new item) and no --old: its record carries only the new image"),
    "MODIFY": ((True, True), "--item and --old: its record carries the images after and before the change"),
    "REMOVE": (
        (False, True),
        "--old (the item removed) and no --item: its record carries only the old image",
    ),
}


GIVE = "; give the item as `aws dynamodb get-item` prints it"


class ItemFileError(ValueError):
    """An item file the try-out cannot use; the message names the flag and the file."""


def flag_problem(event: str, has_item: bool, has_old: bool) -> str | None:
    """Why the flags are not what a stream record of `event` carries, or None if they are."""
    images, flags = EVENT_IMAGES[event]
    return None if (has_item, has_old) == images else f"--event {event} takes {flags}"


def not_dynamodb_json(item: dict[str, Any]) -> str | None:
    """What shows the item is not DynamoDB JSON (an attribute not a one-key {type: value} map), or None."""
    for name, value in item.items():
        if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DYNAMODB_TYPES):
            return (
                f"attribute {json.dumps(name)} is {_shown(value)}, not a {{type: value}} map such as"
                f' {{"S": "text"}} (types {", ".join(sorted(DYNAMODB_TYPES))})'
            )
    return None


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def load_item(path: Path, flag: str) -> dict[str, Any]:
    """The item in a file of DynamoDB JSON; ItemFileError names the flag, the file and the trouble."""
    where = f"{flag} {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ItemFileError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ItemFileError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ItemFileError(f"{where}: the file is empty; it should hold the item as DynamoDB JSON")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ItemFileError(f"{where}: not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("Item"), dict):
        data = data["Item"]
    if not isinstance(data, dict):
        raise ItemFileError(
            f"{where}: not DynamoDB JSON: the file holds {_shown(data)}, not an object of attributes{GIVE}"
        )
    problem = not_dynamodb_json(data)
    if problem is not None:
        raise ItemFileError(f"{where}: not DynamoDB JSON: {problem}{GIVE}")
    return data


def sample_record(
    item: dict[str, Any] | None, old: dict[str, Any] | None, event: str, key_names: list[str]
) -> dict[str, Any]:
    """The stream record a change to `item` would make (keys taken from its key attributes). Its
    eventID is a hash of the change, so different sample changes get different message ids."""
    image = item or old or {}
    keys = {name: image[name] for name in key_names if name in image}
    ddb: dict[str, Any] = {"Keys": keys, "SequenceNumber": "1", "ApproximateCreationDateTime": 0}
    if item is not None:
        ddb["NewImage"] = item
    if old is not None:
        ddb["OldImage"] = old
    change = json.dumps([event, keys, item, old], sort_keys=True).encode()
    return {"eventID": hashlib.sha256(change).hexdigest()[:32], "eventName": event, "dynamodb": ddb}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trickle_deploy.routes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples on their lines
    )
    parser.add_argument("--stage", default="local", help="stage whose settings and routes file to use")
    parser.add_argument(
        "--item", type=Path, help="the item after the change (DynamoDB JSON), for INSERT and MODIFY"
    )
    parser.add_argument("--old", type=Path, help="the item before the change, for MODIFY and REMOVE")
    parser.add_argument("--event", default="INSERT", choices=("INSERT", "MODIFY", "REMOVE"))
    parser.add_argument("--keys", default="pk,sk", help="the table's key attribute names (default pk,sk)")
    args = parser.parse_args(argv)
    problem = flag_problem(args.event, args.item is not None, args.old is not None)
    if problem is not None:
        parser.error(problem)
    try:
        item = None if args.item is None else load_item(args.item, "--item")
        old = None if args.old is None else load_item(args.old, "--old")
    except ItemFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        settings = load_settings(stage.stage_env(args.stage))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    record = sample_record(item, old, args.event, args.keys.split(","))
    for line in evaluate(record, settings):
        print(dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
