"""Backfill (issue #26): the items the source table already holds, delivered through the routes as if
each had just been inserted. A job's parts are the segments of a parallel Scan; each scanned item
becomes a synthetic INSERT stream record and goes through `records.route_record` (filters,
transforms, fan-out, group ids exactly as for a live item), and only the asked destinations' messages
are kept. A message's id is stable per job, item key and destination (its record's eventID is
`backfill:<job>:<key>`), so a page queued again after a worker died is dropped by the queue's
deduplication, and past its five minutes recognised by the drain's ledger. Each message carries the
item's key, its fingerprint and the job (`chalicelib.freshness`), so its drain can tell an item
changed or deleted since it was scanned.

The request and the synthetic record are pure; `ScanPages` reads one segment page by page."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from jmespath.exceptions import JMESPathError

from chalicelib import strict_json
from chalicelib.freshness import (
    FINGERPRINT_ATTRIBUTE,
    JOB_ATTRIBUTE,
    SOURCE_KEY_ATTRIBUTE,
    fingerprint,
    key_text,
)
from chalicelib.job_plan import MAX_PARTS, estimate, filter_error, filter_warnings
from chalicelib.model import OutboundMessage, iso_utc
from chalicelib.records import RecordError, RejectedRecord, decode_image, rejection_message, route_record
from chalicelib.routing import Expression, record_view, requested_filter, unknown_fields
from chalicelib.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from chalicelib.jobs import Tasks
    from chalicelib.ports import OutboundQueue, RejectionLedger

KIND = "backfill"
FIELDS = ("destination", "filter", "segments", "dry_run")
DEFAULT_SEGMENTS = 4
PAGE_ITEMS = 200  # items a Scan page reads: 20 SendMessageBatch calls a destination, then a checkpoint
DRY_RUN_PAGE_ITEMS = 1000  # a dry run queues nothing: its pages are as large as a Scan page may be
# Below any stream sequence number (those are 21 digits and more): a scanned state is older than
# every change the stream carries after it.
SEQUENCE_NUMBER = "0"


class BackfillError(ValueError):
    """A request that cannot start a backfill; the message names every problem."""


@dataclass(frozen=True)
class Backfill:
    """A backfill as asked: the destinations it queues for, the items it takes, its parts."""

    destinations: tuple[str, ...]
    filter: Expression | None = None
    segments: int = DEFAULT_SEGMENTS
    dry_run: bool = False

    def spec(self) -> dict[str, Any]:
        """As the job's note keeps it (`from_spec` reads it back)."""
        return {"filter": self.filter.text if self.filter else None, "dry_run": self.dry_run}

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> Backfill:
        spec = job["spec"]
        return cls(
            destinations=tuple(job["destinations"]),
            filter=Expression.compile(spec["filter"]) if spec.get("filter") else None,
            segments=job["parts"],
            dry_run=bool(spec.get("dry_run")),
        )


def routed_destinations(settings: Settings) -> list[str]:
    """Every destination a route sends to, in the routes file's order."""
    return list(dict.fromkeys(d for route in settings.routes for d in route.destinations))


def parse_request(body: object, settings: Settings) -> Backfill:
    """`POST /backfills`' body (the command builds the same): every problem is named at once."""
    if not isinstance(body, dict):
        raise BackfillError(f"the body must be a JSON object with some of {', '.join(FIELDS)}")
    problems = unknown_fields(body, FIELDS, "backfill")
    routed = routed_destinations(settings)
    destination = body.get("destination")
    if destination is not None and destination not in routed:
        problems.append(f"destination must be one of: {', '.join(routed)} (or left out: all of them)")
    segments = body.get("segments", DEFAULT_SEGMENTS)
    if type(segments) is not int or not 1 <= segments <= MAX_PARTS:
        problems.append(f"segments must be a whole number from 1 to {MAX_PARTS}")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        problems.append("dry_run must be true or false")
    expression = requested_filter(body.get("filter"), problems)
    if problems:
        raise BackfillError("; ".join(problems))
    return Backfill(
        destinations=(destination,) if isinstance(destination, str) else tuple(routed),
        filter=expression,
        segments=segments,
        dry_run=dry_run,
    )


class Starter(Protocol):
    """Jobs as a backfill starts one (`chalicelib.jobs.Jobs`)."""

    def start(
        self, kind: str, destinations: Sequence[str], parts: int, spec: dict[str, Any], tasks: Tasks
    ) -> dict[str, Any]: ...


def start(body: object, settings: Settings, jobs: Starter, tasks: Tasks) -> dict[str, Any]:
    """`POST /backfills` and `operate backfill`: the request checked (BackfillError), its job made and
    its parts' first tasks queued; the answer names where to follow it."""
    asked = parse_request(body, settings)
    job = jobs.start(KIND, asked.destinations, asked.segments, asked.spec(), tasks)
    return job | {"progress_url": f"/backfills/{job['id']}"}


def parse_body(raw: str | bytes | None) -> object:
    """A request's body as JSON (BackfillError if it is not)."""
    try:
        return strict_json.loads((raw.encode() if isinstance(raw, str) else raw) or b"{}")
    except ValueError as exc:
        raise BackfillError(f"the body is not JSON: {exc}") from None


# --- from a scanned item to messages ---------------------------------------------------------------


def synthetic_record(
    job_id: str, key_names: Sequence[str], item: Mapping[str, Any], at: float
) -> dict[str, Any]:
    """A scanned item as the stream record of its insert: `eventID` `backfill:<job>:<key>` (so
    `records.message_id_for` gives one id per job, item and destination), a sequence number below
    every real one, `at` (the scan's time) as its creation time."""
    keys = {name: item[name] for name in key_names if name in item}
    return {
        "eventID": f"backfill:{job_id}:{key_text(keys)}",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": keys,
            "NewImage": dict(item),
            "SequenceNumber": SEQUENCE_NUMBER,
            "ApproximateCreationDateTime": at,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


@dataclass
class Built:
    """What a page of items gives: the messages to queue, the records to dead-letter, the counts."""

    messages: list[OutboundMessage] = dataclasses.field(default_factory=list)
    rejected: list[RejectedRecord] = dataclasses.field(default_factory=list)
    counts: dict[str, Any] = dataclasses.field(default_factory=dict)


def selected(expression: Expression | None, record: Mapping[str, Any], table: str) -> bool | str:
    """Whether the backfill's filter is true for the item (what a route's filter sees of it): True,
    False for anything but true, or the error's text when it cannot be evaluated on the item (the
    item is left out, and counted apart: a filter that fails on every item is a mistake to show)."""
    if expression is None:
        return True
    ddb = record["dynamodb"]
    try:
        keys, item = decode_image(ddb["Keys"], "keys"), decode_image(ddb["NewImage"], "item")
        source = {
            "table": table,
            "event_id": record["eventID"],
            "sequence_number": SEQUENCE_NUMBER,
            "approximate_creation_time": iso_utc(ddb["ApproximateCreationDateTime"]),
        }
        return expression.search(record_view("INSERT", keys, item, None, {"source": source})) is True
    except (RecordError, JMESPathError) as exc:
        return filter_error(exc)


def build(
    job_id: str,
    backfill: Backfill,
    settings: Settings,
    key_names: Sequence[str],
    items: Sequence[Mapping[str, Any]],
    at: float,
) -> Built:
    """Each item through the routes as a live insert, kept for the backfill's destinations only;
    each message carries the item's key, fingerprint and the job. Counts: `scanned`, `skipped`
    (the backfill's filter left it out), `unrouted` (no route takes it to these destinations),
    `queued` (`would_queue` in a dry run) and `rejected` per destination, `filter_errors` (the
    filter could not be evaluated on the item: left out too) and the first one's `filter_error`."""
    quiet = dataclasses.replace(settings, unrouted_dead_letters=None)  # an untaken item is not an error
    wanted = set(backfill.destinations)
    built = Built(counts={"scanned": len(items)})
    queued: dict[str, int] = {}
    rejected: dict[str, int] = {}
    skipped = unrouted = filter_errors = 0
    for item in items:
        record = synthetic_record(job_id, key_names, item, at)
        verdict = selected(backfill.filter, record, settings.table_name)
        if isinstance(verdict, str):
            filter_errors += 1
            built.counts.setdefault("filter_error", verdict)
            continue
        if not verdict:
            skipped += 1
            continue
        routed = route_record(record, quiet)
        taken = False
        for message in routed.messages:
            if message.destination in wanted:
                taken = True
                checked = _with_origin(message, job_id, record, settings.max_message_bytes)
                if isinstance(checked, RejectedRecord):
                    built.rejected.append(checked)
                    rejected[checked.destination] = rejected.get(checked.destination, 0) + 1
                else:
                    built.messages.append(checked)
                    queued[message.destination] = queued.get(message.destination, 0) + 1
        for rejection in routed.rejected:
            if rejection.destination in wanted:
                taken = True
                built.rejected.append(rejection)
                rejected[rejection.destination] = rejected.get(rejection.destination, 0) + 1
        unrouted += not taken
    built.counts |= {"skipped": skipped, "unrouted": unrouted, "filter_errors": filter_errors}
    built.counts["would_queue" if backfill.dry_run else "queued"] = queued
    built.counts["rejected"] = rejected
    return built


def warnings(job: Mapping[str, Any]) -> list[str]:
    """What a backfill's progress should tell its operator: a filter that failed on items, or one
    that took none of what a finished job scanned (everything `skipped`: most likely a mistake)."""
    counts = job["counts"]
    scanned = counts.get("scanned", 0)
    out = filter_warnings(counts, "scanned", "items scanned")
    if job["state"] != "running" and scanned and counts.get("skipped", 0) == scanned:
        out.append(
            f"the filter took none of the {scanned} items scanned: check it (in JMESPath 'order' is a"
            ' string, "order" a field name)'
        )
    return out


def shown(job: dict[str, Any], paces: Mapping[str, float] | None = None) -> dict[str, Any]:
    """A backfill's progress as the route and the command show it: with its `warnings`, if any, and
    a dry run's `estimate` at its destinations' drains' `paces` (`job_plan.estimate`)."""
    found = warnings(job)
    out = job | {"warnings": found} if found else job
    would = job["counts"].get("would_queue")
    return out | {"estimate": estimate(would, paces)} if would and paces else out


def _with_origin(
    message: OutboundMessage, job_id: str, record: Mapping[str, Any], max_bytes: int
) -> OutboundMessage | RejectedRecord:
    """The message with the item's key, fingerprint and job as attributes; too large with them, the
    record is rejected as any message over the queue's limit is."""
    ddb = record["dynamodb"]
    origin = {
        SOURCE_KEY_ATTRIBUTE: key_text(ddb["Keys"]),
        FINGERPRINT_ATTRIBUTE: fingerprint(ddb["NewImage"]),
        JOB_ATTRIBUTE: job_id,
    }
    out = dataclasses.replace(message, attributes={**message.attributes, **origin})
    if out.size_bytes() > max_bytes:
        return RejectedRecord(
            out.message_id,
            out.group_id,
            out.sequence_number,
            out.keys,
            f"message of {out.size_bytes()} bytes (with its backfill attributes) exceeds the queue limit"
            f" of {max_bytes}",
            out.destination,
        )
    return out


def _typed(value: Mapping[str, Any], binary: Callable[[Any], Any]) -> dict[str, Any]:
    """One typed attribute value with `binary` applied to its B and BS members, M and L walked."""
    (kind, inner), *_ = value.items()
    if kind == "B":
        return {kind: binary(inner)}
    if kind == "BS":
        return {kind: [binary(b) for b in inner]}
    if kind == "M":
        return {kind: _image(inner, binary)}
    if kind == "L":
        return {kind: [_typed(v, binary) for v in inner]}
    return dict(value)


def _image(image: Mapping[str, Any], binary: Callable[[Any], Any]) -> dict[str, Any]:
    return {name: _typed(value, binary) for name, value in image.items()}


def _to_text(value: Any) -> Any:
    return base64.b64encode(value).decode() if isinstance(value, bytes | bytearray) else value


def _to_bytes(value: Any) -> Any:
    return base64.b64decode(value) if isinstance(value, str) else value


def as_text(image: Mapping[str, Any]) -> dict[str, Any]:
    """An item (or key) from the SDK with its binary as base64 text, as stream records carry it and
    as JSON can keep it (a checkpoint's last evaluated key)."""
    return _image(image, _to_text)


def as_bytes(image: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `as_text`: a key kept as text, as the SDK takes it back."""
    return _image(image, _to_bytes)


def dead_letter(
    rejected: Sequence[RejectedRecord],
    queues: Mapping[str, OutboundQueue],
    ledgers: Mapping[str, RejectionLedger],
    settings: Settings,
) -> None:
    """Items the routes reject go where a rejected live record goes: its destination's dead-letter
    queue with the reason, and the ledger that lists it. A failure fails the page (its task comes
    back; the same ids make the retry harmless)."""
    for destination in dict.fromkeys(r.destination for r in rejected):
        mine = [r for r in rejected if r.destination == destination]
        failures = queues[destination].send([rejection_message(r, settings) for r in mine])
        if failures:
            raise RuntimeError(
                f"dead letter {failures[0].message.message_id} not queued: {failures[0].reason}"
            )
        for rejection in mine:
            ledgers[destination].record_dead(rejection.message_id, rejection.group_id, rejection.reason)


# --- a segment, page by page -------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One Scan page turned into messages: `position` is the Scan's last evaluated key (None once
    the segment is read to its end, `finished`)."""

    messages: list[OutboundMessage]
    position: Any
    counts: dict[str, Any]
    finished: bool


class ScanPages:
    """One segment of a backfill's parallel Scan; `next(position)` reads the page after `position`
    (the last evaluated key a checkpoint kept) and dead-letters what the routes rejected, as ingest
    does, before the page's messages are queued."""

    def __init__(
        self,
        client: DynamoDBClient,
        settings: Settings,
        job: Mapping[str, Any],
        segment: int,
        dead_letter: Callable[[Sequence[RejectedRecord]], None],
        clock: Callable[[], float],
        page_items: int | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._job_id = str(job["id"])
        self._backfill = Backfill.from_job(job)
        self._segment = segment
        self._dead_letter = dead_letter
        self._clock = clock
        self._page_items = page_items or (DRY_RUN_PAGE_ITEMS if self._backfill.dry_run else PAGE_ITEMS)
        self._key_names: list[str] | None = None

    def key_names(self) -> list[str]:
        """The table's key attributes (read once per invocation: Scan gives items, not their key)."""
        if self._key_names is None:
            table = self._client.describe_table(TableName=self._settings.table_name)["Table"]
            self._key_names = [k["AttributeName"] for k in table["KeySchema"]]
        return self._key_names

    def next(self, position: Any) -> Page:
        request: dict[str, Any] = {
            "TableName": self._settings.table_name,
            "Segment": self._segment,
            "TotalSegments": self._backfill.segments,
            "Limit": self._page_items,
        }
        if position:
            request["ExclusiveStartKey"] = as_bytes(position)
        response = self._client.scan(**request)
        items = [as_text(item) for item in response.get("Items", [])]
        built = build(self._job_id, self._backfill, self._settings, self.key_names(), items, self._clock())
        if built.rejected and not self._backfill.dry_run:
            self._dead_letter(built.rejected)
        last = response.get("LastEvaluatedKey")
        messages = [] if self._backfill.dry_run else built.messages
        return Page(messages, as_text(last) if last else None, built.counts, not last)
