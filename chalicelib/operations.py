"""What the operator routes do: status, delivery lookups, dead-letter pages and redrive jobs, halted
groups and their release, and direct submissions. Returns plain dicts; app.py maps errors to HTTP
answers."""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib import health, item_keys, totals
from chalicelib.archive import ResponseArchive
from chalicelib.fifo_queue import FifoQueue
from chalicelib.jobs import Jobs
from chalicelib.ledger import ITEM_INDEX, STATUS_INDEX, Ledger, status_key
from chalicelib.model import TASK_TOKEN_ATTRIBUTE, LedgerRecord, Status, dead_at, iso_utc
from chalicelib.naming import active_jobs_key, pause_key, run_note_key, totals_key
from chalicelib.notes import UNROUTED_NOTE_KEY, Notes, counts_of, document_of, members_of, numbers_of
from chalicelib.oldest import NOTE_FIELD, oldest_figures
from chalicelib.ports import Metrics
from chalicelib.redrive_jobs import RedriveJobs
from chalicelib.schedules import next_run
from chalicelib.submissions import Submission

log = logging.getLogger(__name__)
MAX_PAGE = 50
_CURSOR_VERSION = 1
_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]{1,2048}")  # an item's sort key (1 KB) fits
_DEAD_KEY = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z#[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


class CursorError(ValueError):
    """A `next` the API did not issue (or issued for another destination)."""

    def __init__(self) -> None:
        super().__init__("next is not a cursor this API issued; leave it out to start from the first page")


def page_query(query: Mapping[str, str]) -> tuple[int, str | None, str | None]:
    """`?limit=N&next=T&destination=D` (dead letters, halted groups) -> (limit, next, destination);
    ValueError says what to fix."""
    unknown = sorted(set(query) - {"limit", "next", "destination"})
    if unknown:
        shown = ", ".join(json.dumps(name)[:40] for name in unknown[:5])
        raise ValueError(f"unknown parameter(s): {shown}; allowed: limit, next, destination")
    limit = query.get("limit", "10")
    if not (limit.isascii() and limit.isdigit() and len(limit) <= 3):
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(limit), query.get("next"), query.get("destination")


MAX_REASON_CHARS = 500


def pause_reason(body: str | bytes | None) -> str:
    """A pause's reason from its request body: nothing, `{}` or `{"reason": "..."}`; ValueError says
    what to send."""
    if not body or not body.strip():
        return ""
    try:
        document = json.loads(body)
    except ValueError:
        raise ValueError('the body must be JSON: {"reason": "..."} (or nothing)') from None
    if not isinstance(document, dict) or set(document) - {"reason"}:
        raise ValueError('the body may hold one field, "reason": {"reason": "..."}')
    reason = document.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise ValueError(f'"reason" must be a string of at most {MAX_REASON_CHARS} characters')
    return reason


SEARCH_PARAMETERS = ("destination", "key", "sort_key", "status", "since", "until", "limit", "next")
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Search:
    """`GET /messages`' question: the messages of one item (`key`, `sort_key`; of one destination or
    of all), or a destination's messages of one `status` last written between `since` and `until`
    (epoch seconds, either open); a page of `limit` after the cursor `next`."""

    limit: int = 10
    next: str | None = None
    destination: str | None = None
    key: str | None = None
    sort_key: str | None = None
    status: Status | None = None
    since: float | None = None
    until: float | None = None


def search_query(query: Mapping[str, str]) -> Search:
    """`GET /messages`' query -> a Search; ValueError says what to fix."""
    unknown = sorted(set(query) - set(SEARCH_PARAMETERS))
    if unknown:
        shown = ", ".join(json.dumps(name)[:40] for name in unknown[:5])
        raise ValueError(f"unknown parameter(s): {shown}; allowed: {', '.join(SEARCH_PARAMETERS)}")
    if ("key" in query) == ("status" in query):
        raise ValueError(
            "give key (an item's partition key value, and sort_key for one item) or status (with since"
            " and until for a time window), not both"
        )
    limit = query.get("limit", "10")
    if not (limit.isascii() and limit.isdigit() and len(limit) <= 3 and 1 <= int(limit) <= MAX_PAGE):
        raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}")
    search = Search(int(limit), query.get("next"), query.get("destination"))
    if "key" in query:
        misplaced = sorted({"since", "until"} & set(query))
        if misplaced:
            raise ValueError(f"{' and '.join(misplaced)} go with status, not key")
        for name in ("key", "sort_key"):
            if name in query and not 1 <= len(query[name]) <= 2048:
                raise ValueError(f"{name} must be 1 to 2048 characters: the item's key value as text")
        return Search(search.limit, search.next, search.destination, query["key"], query.get("sort_key"))
    if "sort_key" in query:
        raise ValueError("sort_key goes with key, not status")
    try:
        status = Status(query["status"])
    except ValueError:
        raise ValueError(f"status must be one of: {', '.join(s.value for s in Status)}") from None
    since, until = (_moment(query[n], n) if n in query else None for n in ("since", "until"))
    if since is not None and until is not None and since > until:
        raise ValueError("since must not be after until")
    return Search(search.limit, search.next, search.destination, status=status, since=since, until=until)


def _moment(text: str, name: str) -> float:
    """A time as ISO 8601 with its zone (`2026-12-04T10:00:00Z`, `...+02:00`) or epoch seconds."""
    said = f"{name} must be an ISO 8601 time with its zone (2026-12-04T10:00:00Z) or epoch seconds"
    if len(text) > 40 or not text.isascii():
        raise ValueError(said)
    try:
        moment = float(text) if text.replace(".", "", 1).isdigit() else None
        if moment is None:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                raise ValueError(said)
            moment = parsed.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(said) from None
    if not 0 <= moment <= _LATEST:
        raise ValueError(said)
    return moment


def encode_cursor(scope: str, after: str) -> str:
    """Opaque to callers: base64url (unpadded) of a small JSON document naming where a page ended;
    `scope` names the listing it pages (a destination's dead letters: the destination)."""
    document = json.dumps(
        {"v": _CURSOR_VERSION, "d": scope, "k": after}, separators=(",", ":"), ensure_ascii=False
    )
    return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")


def decode_cursor(token: str, scope: str, form: re.Pattern[str] = _DEAD_KEY) -> str:
    """The index key a page starts after; anything but a cursor `encode_cursor` made for `scope` is
    a CursorError (checked strictly: characters, length, JSON shape, key `form`)."""
    if not _CURSOR_CHARS.fullmatch(token):
        raise CursorError()
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise CursorError() from None
    if (
        not isinstance(document, dict)
        or set(document) != {"v", "d", "k"}
        or type(document["v"]) is not int
        or document["v"] != _CURSOR_VERSION
        or document["d"] != scope
        or not isinstance(document["k"], str)
        or not form.fullmatch(document["k"])
    ):
        raise CursorError()
    return document["k"]


def is_message_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def missing_message(message_id: str) -> str:
    """What a 404 from `GET /messages/{id}` means. A stream item gets its ledger record at its first
    delivery attempt (a submission when it is accepted), so an id without one may well be queued."""
    if not is_message_id(message_id):
        return f"no message {message_id}: message ids are UUIDs"
    return (
        f"no message {message_id} in the ledger: no delivery attempt is recorded for it yet. A stream"
        " item is recorded at its first attempt, so one still waiting in its queue has no record (GET"
        " /status shows the queues); nor does an id Trickle never queued, or one whose record expired"
        " (TRICKLE_LEDGER_TTL_DAYS)"
    )


class ReleaseError(Exception):
    """Why a halted message was not released; the message says it to the operator."""


class NotHaltedError(ReleaseError, LookupError):
    """No such message of the destination (404)."""


class NoLongerHaltedError(ReleaseError):
    """The message is known but not halted now: released already, or never halted (409)."""


# An operator's choice for a halted message -> its new status, and whether its attempts start over.
RELEASES = {"retry": (Status.FAILED, True), "skip": (Status.SKIP, False)}


def release_refusal(
    message_id: str, record: LedgerRecord | None, destination: str | None
) -> ReleaseError | None:
    """Why `record` cannot be released for `destination` (None: any), or None: it can. A record
    written before the ledger named destinations is taken as the one asked for."""
    if record is None or (destination and record.destination not in ("", destination)):
        where = f" of destination {destination}" if destination else ""
        return NotHaltedError(f"no message {message_id[:80]}{where} in the ledger")
    if record.status is not Status.HALTED:
        return NoLongerHaltedError(f"message {message_id} is not halted: its status is {record.status.value}")
    return None


def release(ledger: Ledger, message_id: str, choice: str, destination: str | None) -> dict[str, Any]:
    """Retry (fresh attempts) or skip (dead-letter it, its group goes on) a halted message, as the
    route and `operate retry|skip` do it: only while it is halted (the write is conditional, so
    two operators never both release it); a ReleaseError says why not."""
    status, reset = RELEASES[choice]
    record = ledger.get(message_id) if is_message_id(message_id) else None
    refused = release_refusal(message_id, record, destination)
    if refused is not None:
        raise refused
    assert record is not None
    owner = record.destination or destination or ""
    done, now = ledger.release(message_id, status, reset, owner)
    if not done:  # released (or gone) since it was read
        raise release_refusal(message_id, now, destination) or NoLongerHaltedError(
            f"message {message_id} is no longer halted"
        )
    return {"message_id": message_id, "destination": owner or None, "status": status.value}


class Operations:
    """What the routes do. A GET changes nothing: it receives no message, moves no dead letter and
    writes nothing (tests/integration/test_reads_change_nothing.py holds every GET route to that)."""

    def __init__(
        self,
        queues: Mapping[str, FifoQueue],
        dead_letters: Mapping[str, FifoQueue],
        ledgers: Mapping[str, Ledger],
        notes: Notes,
        archive: ResponseArchive | None,
        unrouted: str = "count",
        clock: Callable[[], float] = time.time,
        metrics: Callable[[str], Metrics] = lambda destination: _emf(destination),
        jobs: Jobs | None = None,
    ) -> None:
        """`metrics`: a destination's figures (EMF lines, as its drain writes them)."""
        self._queues = queues
        self._dead_letters = dead_letters
        self._ledgers = ledgers
        self._ledger = next(iter(ledgers.values()))  # for reads: every destination shares the table
        self._notes = notes
        self._archive = archive
        self._unrouted = unrouted
        self._clock = clock
        self._metrics = metrics
        self._jobs = jobs

    def pick(self, name: str | None) -> str:
        """The destination a request names, or the only one; ValueError says what to send."""
        if name is None and len(self._queues) == 1:
            return next(iter(self._queues))
        if name is None or name not in self._queues:
            raise ValueError(f"destination must be one of: {', '.join(self._queues)} (?destination=NAME)")
        return name

    def status(self, schedules: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Per destination its queues, last run, running totals, next run (`schedules`: each
        destination's drain schedule, as app.py declares it), circuit, pause and halted groups; and
        the records no route took, as ingest counted them in their note (`unrouted.count` since
        `since`; `last_batch` the latest batch with any); and the backfill and replay jobs running, with
        their progress (`job_plan.progress`). Every note in one BatchGetItem (up to 33 destinations)
        and the queues' depths at the same time: a console polls this."""
        names = list(self._queues)
        keys = [UNROUTED_NOTE_KEY] + ([active_jobs_key()] if self._jobs is not None else [])
        keys += [key(name) for name in names for key in (run_note_key, totals_key, pause_key)]
        with ThreadPoolExecutor(min(2 * len(names) + 1, MAX_STATUS_READS), "status") as pool:
            # each in a copy of this thread's context: log lines keep the invocation's keys
            read = pool.submit(contextvars.copy_context().run, self._notes.items_many, keys)
            queued, dead = (
                [pool.submit(contextvars.copy_context().run, _depths, queues[name]) for name in names]
                for queues in (self._queues, self._dead_letters)
            )
            items = read.result()
            depths = {n: (q.result(), d.result()) for n, q, d in zip(names, queued, dead, strict=True)}
        unrouted = counts_of(items.get(UNROUTED_NOTE_KEY), ("unrouted",))
        notes = {name: document_of(items.get(run_note_key(name))) for name in names}
        now = self._clock()
        return {
            "unrouted": {
                "handling": self._unrouted,
                "count": unrouted["unrouted"] if unrouted else 0,
                "since": unrouted["since"] if unrouted else None,
                "last_batch": unrouted["last"] if unrouted else None,
            },
            "destinations": {
                name: {
                    "queue": self._queue(depths[name][0], notes[name], now),
                    "dead_letters": depths[name][1],
                    "last_run": _without(notes[name], _KEPT_FOR_THE_DRAIN),
                    **_health(name, notes[name], items, (schedules or {}).get(name), now),
                }
                for name in names
            },
            "jobs": (
                self._jobs.active(members_of(items.get(active_jobs_key()))) if self._jobs is not None else []
            ),
        }

    @staticmethod
    def _queue(depths: dict[str, int], run_note: dict[str, Any] | None, now: float) -> dict[str, Any]:
        """Its depths now (SQS's counts, no receive) and its oldest message as the last drain run saw
        it (`chalicelib.oldest`): the age now of the oldest message it left, when it looked."""
        return depths | oldest_figures(run_note, now, depths["queued"] + depths["in_flight"])

    def pause(self, destination: str, by: str, reason: str) -> dict[str, Any]:
        """Pause a destination from its drain's next run: it receives nothing (its messages wait),
        and its waiting Step Functions tasks get heartbeats. Kept until resumed."""
        note = health.pause_note(by, reason, self._clock())
        self._notes.save(pause_key(destination), note, expires=False)
        self._changed(destination, "Paused", reason or f"paused by {by}")
        return {"destination": destination, "paused": note}

    def resume(self, destination: str) -> dict[str, Any]:
        """Its drain's next run receives and delivers again, in order."""
        self._notes.remove(pause_key(destination))
        self._changed(destination, "Resumed", "resumed by an operator")
        return {"destination": destination, "paused": None}

    def _changed(self, destination: str, change: str, reason: str) -> None:
        """A health change, logged and counted as the drain counts its own (`chalicelib.health`)."""
        log.warning(
            "destination health changed",
            extra={"destination": destination, "change": change, "reason": reason},
        )
        metrics = self._metrics(destination)
        metrics.count(change)
        metrics.flush()

    def submit(self, submission: Submission) -> dict[str, Any]:
        """Queue a submission and record it as queued: its caller is handed a status URL and expects
        it to answer at once (one write per request; stream items get theirs at the first attempt)."""
        failures = self._queues[submission.message.destination].send([submission.message])
        if failures:
            raise RuntimeError(f"message not queued: {failures[0].reason}")
        message = submission.message
        key = item_keys.from_attributes(message.attributes, None)
        item = item_keys.index_values(key, self._clock(), message.message_id)
        token = message.attributes.get(TASK_TOKEN_ATTRIBUTE, "")  # heartbeats while paused
        self._ledgers[message.destination].record_queued(message.message_id, message.group_id, item, token)
        return {
            "message_id": submission.message.message_id,
            "status_url": f"/messages/{submission.message.message_id}",
        }

    def lookup(self, message_id: str) -> dict[str, Any] | None:
        if not is_message_id(message_id):
            return None
        record = self._ledger.get(message_id)
        return self._message(record) if record is not None else None

    def dead_letters(
        self, limit: int, page_token: str | None, destination: str | None = None
    ) -> dict[str, Any]:
        """A page of a destination's dead letters in the order they died, from the ledger's dead-letter
        index: the queue is not touched, so listing never hides a message from a redrive or the
        drain, and `next` stays valid however long the caller waits."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}")
        destination = self.pick(destination)
        after = decode_cursor(page_token, destination) if page_token is not None else None
        records, more = self._ledger.dead_page(destination, limit, after)
        return {
            "destination": destination,
            "dead_letters": [_dead_letter(record) for record in records],
            "next": encode_cursor(destination, records[-1].dead_key) if more else None,
        }

    def halted(self, limit: int, page_token: str | None, destination: str | None = None) -> dict[str, Any]:
        """A page of a destination's halted groups (strict ordering), each with its head message, the
        longest halted first: from the ledger's status index, its records read back (a head released
        since the index was written is left out), the queue untouched."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_PAGE}")
        destination = self.pick(destination)
        scope = f"halted:{destination}"
        after = decode_cursor(page_token, scope) if page_token is not None else None
        partition = status_key(destination, Status.HALTED)
        listed, more = self._ledger.listed(STATUS_INDEX, partition, limit, after=after)
        records = self._ledger.read([message_id for message_id, _ in listed])
        heads = [records.get(message_id) for message_id, _ in listed]
        return {
            "destination": destination,
            "halted": [_halted(r, destination) for r in heads if r is not None and r.status is Status.HALTED],
            "next": encode_cursor(scope, listed[-1][1]) if more else None,
        }

    def release(self, destination: str, message_id: str, choice: str, by: str) -> dict[str, Any]:
        """Retry or skip a halted message of `destination` (`release`), logged with who asked:
        NotHaltedError, NoLongerHaltedError say why not."""
        released = release(self._ledgers[destination], message_id, choice, destination)
        log.warning("halted message released", extra=released | {"choice": choice, "by": by})
        return released

    def search(self, search: Search) -> dict[str, Any]:
        """A page of messages from the ledger's indexes, each as `GET /messages/{id}` shows it: of
        one item (by its key, oldest first; one destination's or all), or of a destination's status
        written within a time window (newest first). The index gives the page and its cursor (its
        own key: stable however the ledger changes meanwhile), a consistent read its records; a
        record whose status moved on since the index was written is left out of a status page."""
        if search.key is not None:
            destination = self.pick(search.destination) if search.destination is not None else None
            scope = _scope("key", destination or "", search.key, search.sort_key or "")
            after = (
                decode_cursor(search.next, scope, item_keys.SORT_FORM) if search.next is not None else None
            )
            low = item_keys.sort_prefix(search.sort_key) if search.sort_key is not None else None
            high = f"{low}~" if low is not None else None  # `~` sorts after the time that follows
            listed, more = self._ledger.listed(
                ITEM_INDEX, search.key, search.limit, low=low, high=high, after=after
            )
        else:
            assert search.status is not None
            destination = self.pick(search.destination)
            since, until = search.since, search.until
            scope = _scope("status", destination, search.status.value, repr(since), repr(until))
            after = decode_cursor(search.next, scope) if search.next is not None else None
            listed, more = self._ledger.listed(
                STATUS_INDEX,
                status_key(destination, search.status),
                search.limit,
                low=iso_utc(since) if since is not None else None,
                high=f"{iso_utc(until)}#~" if until is not None else None,
                after=after,
                newest_first=True,
            )
        records = self._ledger.read([message_id for message_id, _ in listed])
        found = [records.get(message_id) for message_id, _ in listed]
        return {
            "messages": [
                self._message(r)
                for r in found
                if r is not None
                and (destination is None or r.destination in ("", destination))
                and (search.status is None or r.status is search.status)
            ],
            "next": encode_cursor(scope, listed[-1][1]) if more else None,
        }

    def _message(self, record: LedgerRecord) -> dict[str, Any]:
        """A record as the routes show it: with its item, timeline, and archived answer's link."""
        answer = record.as_dict()
        answer["item"] = (
            {"key": record.item_key, "sort_key": item_keys.read_sort(record.item_sort)}
            if record.item_key
            else None
        )
        if record.status is Status.DELIVERED and self._archive is not None:
            answer["response_url"] = self._archive.url(record.message_id)
        answer["status_url"] = f"/messages/{record.message_id}"
        return answer

    def start_redrive(self, destination: str, description: dict[str, Any]) -> dict[str, Any]:
        """A redrive job for the destination's drain to carry on from its next run (the request moves
        nothing: one runner, the drain under its lease, copies a destination's dead letters back);
        `TooManyRedrivesError` when too many are open."""
        return RedriveJobs(self._notes, destination, self._clock).start(description)

    def redrive(self, destination: str, job_id: str) -> dict[str, Any] | None:
        """A redrive job as its drain last left it, or None."""
        return RedriveJobs(self._notes, destination).get(job_id) if is_message_id(job_id) else None


# What a run note keeps for the next run and `/status` shows otherwise (figures) or never (tokens).
# `/status`'s reads at once: botocore keeps 10 connections per client, more threads would wait for one.
MAX_STATUS_READS = 10


def _depths(queue: FifoQueue) -> dict[str, int]:
    queued, in_flight = queue.counts()
    return {"queued": queued, "in_flight": in_flight}


def _health(
    name: str, note: dict[str, Any] | None, items: Mapping[str, Any], schedule: str | None, now: float
) -> dict[str, Any]:
    """Its running totals, when its drain runs next, its circuit, its pause, its halted groups:
    from its notes (`items`: the notes read, by key), as its drain runs and the pause routes leave them."""
    numbers = numbers_of(items.get(totals_key(name)))
    since = numbers.pop("since", None) if numbers else None
    started = (note or {}).get("started_at", (note or {}).get("finished_at"))
    next_at = next_run(schedule, started, now) if schedule else None
    return {
        "totals": totals.figures(numbers, since, now),
        "schedule": schedule,
        "next_run": next_at,
        "circuit": health.circuit_view((note or {}).get(health.CIRCUIT_FIELD), next_at, now),
        "paused": document_of(items.get(pause_key(name))),
        "halted_groups": len(health.carried_halted(note)),
    }


_KEPT_FOR_THE_DRAIN = frozenset({NOTE_FIELD, health.CIRCUIT_FIELD, health.HALTED_FIELD, health.TASKS_FIELD})


def _without(note: dict[str, Any] | None, fields: frozenset[str]) -> dict[str, Any] | None:
    return {key: value for key, value in note.items() if key not in fields} if note is not None else None


def _dead_letter(record: LedgerRecord) -> dict[str, Any]:
    return {
        "message_id": record.message_id,
        "group_id": record.group_id,
        "reason": record.last_error,
        "dead_at": dead_at(record.dead_key),
        "attempts": record.attempts,
        "last_status_code": record.last_status_code,
        "first_attempt_at": record.first_attempt_at,
        "last_attempt_at": record.last_attempt_at,
        "redrivable": not record.rejected_at_ingest,
        "status_url": f"/messages/{record.message_id}",
    }


def _scope(*parts: str) -> str:
    """What a search cursor is bound to: its question, digested (a key may be 2 KB)."""
    return "s:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _halted(record: LedgerRecord, destination: str) -> dict[str, Any]:
    """A halted group as `GET /halted` lists it: its head message, and where to release it."""
    base = f"/halted/{record.message_id}"
    return {
        "group_id": record.group_id,
        "message_id": record.message_id,
        "reason": record.last_error,
        "attempts": record.attempts,
        "since": dead_at(record.status_at),
        "last_status_code": record.last_status_code,
        "last_attempt_at": record.last_attempt_at,
        "retry_url": f"{base}/retry?destination={destination}",
        "skip_url": f"{base}/skip?destination={destination}",
        "status_url": f"/messages/{record.message_id}",
    }


def _emf(destination: str) -> Metrics:
    from chalicelib.metrics import RunMetrics

    return RunMetrics({"destination": destination})
