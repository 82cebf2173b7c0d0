"""A replay's plan (issue #26), pure: the request read and checked (its window, filter, group, target
and key mode), which archived deliveries it takes, and the message each becomes. The worker that
reads the archive and queues the messages, the route and the command call these.

- **The window** is `[since, until)`, ISO 8601 times with a zone (`Z` or an offset), in UTC once
  read. It must not be empty or reversed, must end by now (a replay re-sends what was delivered:
  what the future holds is not archived yet), and must start within the archive's expiry (older
  objects are gone: the error gives the earliest start there is).
- **The selection** is the archived deliveries of the window, of one `group` if given, that the
  JMESPath `filter` (if given) answers `true` for over `{id, group, delivered_at, body}`, the body
  as JSON when it is JSON (its text otherwise). Anything but `true` (false, null, a string) does
  not take the record; a filter that fails on a record does not take it either, and the failure is
  counted (`filter_errors`, the first in `filter_error`) and shown as the job's warning.
- **Order** is the archive's: each group's deliveries in the order they were delivered, which is
  the order they were queued in (one FIFO group), and a replay queues them into that same group.
- **Ids**: each replayed message's id is uuid5(replay id, original id): stable, so a resumed or
  repeated slice queues nothing twice (FIFO deduplication, then the ledger), and new, so an API
  that honours Idempotency-Key applies it again. With `same_keys` the message still has that new
  id (ledger, deduplication), but carries the original's id for the API (`API_ID_ATTRIBUTE`,
  `freshness.api_id`), so the API applies only what it missed.
- **The target** (`to`, default the destination replayed) is a destination of the settings; its
  drain sends the messages, with its auth and request shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from jmespath.exceptions import JMESPathError

from chalicelib import strict_json
from chalicelib.freshness import API_ID_ATTRIBUTE, JOB_ATTRIBUTE
from chalicelib.job_plan import filter_error, filter_warnings
from chalicelib.model import DESTINATION_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE, OutboundMessage, iso_utc
from chalicelib.routing import Expression, requested_filter, unknown_fields

KIND = "replay"  # the job kind (`job_plan.KINDS`)
FIELDS = ("destination", "since", "until", "filter", "group", "to", "same_keys", "dry_run")
MAX_GROUP_CHARS = 128  # SQS's limit on a message group id
EXAMPLE_TIME = "2026-12-04T09:30:00Z"


class ReplayError(ValueError):
    """What is wrong with a replay's request, in words the operator can act on (a 400, or the
    command's one-line error)."""


class Delivery(Protocol):
    """An archived delivery, as the archive's reader gives it (`delivered_archive.Delivered`)."""

    @property
    def message_id(self) -> str: ...

    @property
    def group_id(self) -> str: ...

    @property
    def delivered_at(self) -> datetime: ...

    @property
    def body(self) -> str: ...

    @property
    def api_id(self) -> str:
        """The id the API knew it by, when not `message_id` ("" otherwise)."""
        ...


# --- the window ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """`[since, until)` in UTC."""

    since: datetime
    until: datetime

    def holds(self, moment: datetime) -> bool:
        return self.since <= moment < self.until


def parse_time(value: object, field: str) -> datetime:
    """An ISO 8601 time with its zone (`Z` or an offset), in UTC; ReplayError says what to give."""
    if not isinstance(value, str) or not value.strip():
        raise ReplayError(f"{field} is required: an ISO 8601 time in UTC, like {EXAMPLE_TIME}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ReplayError(
            f"{field} {value[:40]!r} is not an ISO 8601 time: give one like {EXAMPLE_TIME}"
        ) from None
    if moment.tzinfo is None:
        raise ReplayError(
            f"{field} {value[:40]!r} has no time zone: add Z for UTC (like {EXAMPLE_TIME}) or an offset"
        )
    return moment.astimezone(UTC)


def window(since: object, until: object, now: datetime, archive_days: int) -> Window:
    """The window `since`..`until` asks for, checked against `now` and the archive's expiry of
    `archive_days` days (`TRICKLE_ARCHIVE_DAYS`); ReplayError names what to change (both times'
    problems at once)."""
    problems: list[str] = []
    times: list[datetime] = []
    for value, field in ((since, "since"), (until, "until")):
        try:
            times.append(parse_time(value, field))
        except ReplayError as exc:
            problems.append(str(exc))
    if problems:
        raise ReplayError("; ".join(problems))
    start, end = times
    if end <= start:
        raise ReplayError(f"until ({iso_utc(end)}) must be later than since ({iso_utc(start)})")
    if end > now:
        raise ReplayError(
            f"until ({iso_utc(end)}) is later than now ({iso_utc(now)}): a replay re-sends what was"
            " delivered, so the window must have ended"
        )
    earliest = now - timedelta(days=archive_days)
    if start < earliest:
        raise ReplayError(
            f"since ({iso_utc(start)}) is older than the archive keeps deliveries"
            f" (TRICKLE_ARCHIVE_DAYS={archive_days}): the earliest since now is {iso_utc(earliest)}"
        )
    return Window(start, end)


# --- the request -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """A replay as asked: the destination whose deliveries are replayed, the window, the selection,
    the target destination and the key mode."""

    destination: str
    window: Window
    filter: Expression | None = None
    group: str | None = None
    to: str = ""  # the target; "" is the destination itself
    same_keys: bool = False
    dry_run: bool = False

    @property
    def target(self) -> str:
        return self.to or self.destination

    def takes(self, delivery: Delivery) -> bool | str:
        """Whether the replay re-sends this archived delivery (see the module's doc): True, False,
        or the filter's error text when it cannot be evaluated on the record (left out, counted)."""
        if not self.window.holds(delivery.delivered_at):
            return False
        if self.group is not None and delivery.group_id != self.group:
            return False
        if self.filter is None:
            return True
        try:
            return self.filter.search(view(delivery)) is True
        except JMESPathError as exc:
            return filter_error(exc)

    def spec(self) -> dict[str, Any]:
        """As the job's note keeps it (`from_spec` reads it back)."""
        return {
            "destination": self.destination,
            "since": iso_utc(self.window.since),
            "until": iso_utc(self.window.until),
            "filter": self.filter.text if self.filter is not None else None,
            "group": self.group,
            "to": self.target,
            "same_keys": self.same_keys,
            "dry_run": self.dry_run,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Replay:
        """The replay a job's note holds (checked when the job was made: not against now again)."""
        return cls(
            destination=spec["destination"],
            window=Window(parse_time(spec["since"], "since"), parse_time(spec["until"], "until")),
            filter=Expression.compile(spec["filter"]) if spec.get("filter") else None,
            group=spec.get("group"),
            to=spec.get("to") or "",
            same_keys=bool(spec.get("same_keys")),
            dry_run=bool(spec.get("dry_run")),
        )


def parse_request(body: object, destinations: Collection[str], now: datetime, archive_days: int) -> Replay:
    """`POST /replays`' body (the command builds the same): every problem found is named at once
    in the ReplayError, one clause each."""
    if not isinstance(body, dict):
        raise ReplayError(f"the body must be a JSON object with {', '.join(FIELDS)}")
    problems = unknown_fields(body, FIELDS, "replay")
    choices = ", ".join(sorted(destinations))
    destination = body.get("destination")
    if not isinstance(destination, str) or destination not in destinations:
        problems.append(f"destination must be one of: {choices}")
    to = body.get("to")
    if to is not None and (not isinstance(to, str) or to not in destinations):
        problems.append(f"to must be one of: {choices} (or left out: the destination itself)")
    found_window: Window | None = None
    try:
        found_window = window(body.get("since"), body.get("until"), now, archive_days)
    except ReplayError as exc:
        problems.append(str(exc))
    expression = requested_filter(body.get("filter"), problems)
    group = body.get("group")
    if group is not None and (not isinstance(group, str) or not 1 <= len(group) <= MAX_GROUP_CHARS):
        problems.append(f"group must be a message group id (1 to {MAX_GROUP_CHARS} characters)")
    flags = {name: body.get(name, False) for name in ("same_keys", "dry_run")}
    problems += [
        f"{name} must be true or false" for name, value in flags.items() if not isinstance(value, bool)
    ]
    if problems:
        raise ReplayError("; ".join(problems))
    assert isinstance(destination, str) and found_window is not None  # no problem found
    return Replay(
        destination=destination,
        window=found_window,
        filter=expression,
        group=group,
        to=to if isinstance(to, str) and to != destination else "",
        same_keys=flags["same_keys"] is True,
        dry_run=flags["dry_run"] is True,
    )


def parse_body(
    raw: str | bytes | None,
    destinations: Collection[str],
    now: datetime,
    archive_days: int,
    archived: bool,
) -> Replay:
    """`POST /replays`' raw body (`archived`: the stage keeps a delivered archive)."""
    if not archived:
        raise ReplayError(
            "this stage keeps no delivered archive (TRICKLE_ARCHIVE_BUCKET is not set), so there is"
            " nothing to replay"
        )
    try:
        body = strict_json.loads((raw.encode() if isinstance(raw, str) else raw) or b"{}")
    except ValueError as exc:
        raise ReplayError(f"the body is not JSON: {exc}") from None
    return parse_request(body, destinations, now, archive_days)


# --- what is queued --------------------------------------------------------------------------------


def view(delivery: Delivery) -> dict[str, Any]:
    """What a replay's filter sees of an archived delivery."""
    body: Any
    try:
        body = strict_json.loads(delivery.body.encode())
    except ValueError:
        body = delivery.body
    return {
        "id": delivery.message_id,
        "group": delivery.group_id,
        "delivered_at": iso_utc(delivery.delivered_at),
        "body": body,
    }


def replayed_id(replay_id: str, original_id: str) -> str:
    """A replayed message's id: uuid5 in the replay's namespace (its id is a UUID) of the
    original's id. The same replay gives the same id every time, another replay another."""
    return str(uuid.uuid5(uuid.UUID(replay_id), original_id))


def replayed(delivery: Delivery, replay: Replay, replay_id: str) -> OutboundMessage:
    """The message a replay queues for an archived delivery: its body and group as delivered, on
    the target's queue; with the same keys, under the id the API knew the original by (its own, or
    the one it carried itself when it was a replay with the same keys)."""
    message_id = replayed_id(replay_id, delivery.message_id)
    attributes = {
        MESSAGE_ID_ATTRIBUTE: message_id,
        DESTINATION_ATTRIBUTE: replay.target,
        JOB_ATTRIBUTE: replay_id,
    }
    if replay.same_keys:
        attributes[API_ID_ATTRIBUTE] = delivery.api_id or delivery.message_id
    return OutboundMessage(
        message_id=message_id,
        group_id=delivery.group_id,
        dedup_id=message_id,
        body=delivery.body,
        attributes=attributes,
        sequence_number="",
        destination=replay.target,
    )


def shown(job: dict[str, Any]) -> dict[str, Any]:
    """A replay's progress as the route and the command show it: with its `warnings`, if any."""
    found = filter_warnings(job["counts"], "read", "archived deliveries read")
    return job | {"warnings": found} if found else job
