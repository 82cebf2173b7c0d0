"""What the drains delivered, archived for replays (issue #26), and read back for one.

Each drain run writes, per hour of delivery, one gzip JSON-lines object: a line per delivered
message, `{"id", "group", "delivered_at", "body"}` (and `api_id` when the API knew the message by
another id: `freshness.api_id`) in the order the run delivered them, `body` the
text the API was sent for that message (enriched, if its route enriches; for a batch request, the
message's own item without the id the batch adds to it, so a replay can send it under another id).
Keys: `delivered/<destination>/<YYYY>/<MM>/<DD>/<HH>/<run start>-<run id>-<part>.jsonl.gz`, the hour
each message's delivery's (a replay lists only its window's hours), the run start to the millisecond
(runs of a destination never overlap: its run lease), so key order is delivery order. A run puts
its objects at its end, and earlier once it holds `FLUSH_BYTES` of lines: never an object per
message. Encrypted at rest (SSE-S3); the bucket's lifecycle rule expires them. A failed put is logged
and counted (`ArchiveFailed`), never fails the run: the messages are delivered all the same."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.model import iso_utc
from chalicelib.naming import delivered_prefix
from chalicelib.ports import Metrics

log = logging.getLogger(__name__)

# Lines (uncompressed) a run holds before it puts them early: a Lambda's memory is never at stake,
# and a big run writes a few objects of this size, not hundreds of small ones.
FLUSH_BYTES = 4 * 1024 * 1024
# zlib's default: JSON bodies shrink 5-10x, at a fraction of level 9's CPU (bench: `--only archive`).
COMPRESS_LEVEL = 6
SUFFIX = ".jsonl.gz"
_FIELDS = ("id", "group", "delivered_at", "body")
_HOUR = timedelta(hours=1)


# --- keys and lines (pure) -------------------------------------------------------------------------


def hour_of(moment: float) -> datetime:
    """The UTC hour a moment (epoch seconds) falls in."""
    return datetime.fromtimestamp(moment, UTC).replace(minute=0, second=0, microsecond=0)


def hour_prefix(destination: str, hour: datetime) -> str:
    return f"{delivered_prefix(destination)}{hour:%Y/%m/%d/%H}/"


def object_key(destination: str, hour: datetime, started_at: float, run_id: str, part: int) -> str:
    """A run's `part`th object (from 1), holding what it delivered in `hour`."""
    start = datetime.fromtimestamp(started_at, UTC)
    stamp = f"{start:%Y%m%dT%H%M%S}.{start.microsecond // 1000:03d}Z"
    return f"{hour_prefix(destination, hour)}{stamp}-{run_id}-{part:06d}{SUFFIX}"


def window_hours(since: datetime, until: datetime) -> list[datetime]:
    """The UTC hours that hold some moment of [since, until), oldest first."""
    since, until = _utc(since), _utc(until)
    hour = since.replace(minute=0, second=0, microsecond=0)
    hours: list[datetime] = []
    if since >= until:
        return hours
    while hour < until:
        hours.append(hour)
        hour += _HOUR
    return hours


def line(message_id: str, group_id: str, delivered_at: float, body: str, api_id: str = "") -> bytes:
    """One delivery's line; `api_id`, the id the API knew it by, only when it is not the message's
    own (a replay with the same keys: replaying that one again with the same keys must reach the
    API under that id, not the replay's)."""
    record = {"id": message_id, "group": group_id, "delivered_at": iso_utc(delivered_at), "body": body}
    if api_id and api_id != message_id:
        record["api_id"] = api_id
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class Delivered:
    """An archived delivery: the message's id and group, when the API took it, what it was sent."""

    message_id: str
    group_id: str
    delivered_at: datetime
    body: str
    api_id: str = ""  # the id the API knew it by, when not `message_id`


class UnreadableError(ValueError):
    """An archived object that is not what a run writes (truncated, not gzip, a bad line)."""


def parse(data: bytes) -> list[Delivered]:
    """An object's records in order; raises `UnreadableError` saying why (never with a body's text)."""
    try:
        text = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOFError: truncated
        raise UnreadableError(f"not a whole gzip stream ({type(exc).__name__})") from None
    return [_record(raw, number) for number, raw in enumerate(text.splitlines(), 1)]


def _record(raw: bytes, number: int) -> Delivered:
    try:
        document = json.loads(raw)
        values = [document[name] for name in _FIELDS]
        at = datetime.fromisoformat(values[2])
    except (ValueError, KeyError, TypeError):  # not JSON, not an object, a field missing or no time
        raise UnreadableError(f"line {number} is not an archived delivery") from None
    api_id = document.get("api_id", "")
    if not all(isinstance(value, str) for value in (*values, api_id)) or at.tzinfo is None:
        raise UnreadableError(f"line {number} is not an archived delivery")
    return Delivered(values[0], values[1], at.astimezone(UTC), values[3], api_id)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone: give a UTC time")
    return moment.astimezone(UTC)


# --- the writer ------------------------------------------------------------------------------------


def _run_id() -> str:
    return uuid.uuid4().hex[:12]


class DeliveredArchive:
    """The stage's archive bucket, as the drains write it: one `RunArchive` per run."""

    def __init__(
        self, s3: Any, bucket: str, flush_bytes: int = FLUSH_BYTES, run_id: Callable[[], str] = _run_id
    ) -> None:
        """`s3`: Any, as no stubs for s3 are installed (requirements-dev.txt)."""
        self._s3 = s3
        self._bucket = bucket
        self._flush_bytes = flush_bytes
        self._run_id = run_id

    def open(self, destination: str, started_at: float, metrics: Metrics) -> RunArchive:
        return RunArchive(
            self._s3, self._bucket, destination, started_at, self._run_id(), metrics, self._flush_bytes
        )


@dataclass(frozen=True)
class _Object:
    key: str
    lines: list[bytes]


class RunArchive:
    """What one drain run delivered. Thread-safe: the run's workers add as they deliver; a worker
    whose line takes the run past `flush_bytes` puts what is held (outside the lock, the others
    go on adding); `close` puts the rest and counts the run's figures."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        destination: str,
        started_at: float,
        run_id: str,
        metrics: Metrics,
        flush_bytes: int,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self.destination = destination
        self._started_at = started_at
        self.run_id = run_id
        self._metrics = metrics
        self._flush_bytes = flush_bytes
        self._lock = threading.Lock()
        self._held: dict[datetime, list[bytes]] = {}
        self._held_bytes = 0
        self._parts = 0
        self.archived = 0  # messages in objects stored
        self.failed = 0  # messages in objects S3 did not take
        self.keys: list[str] = []  # the objects stored

    def add(self, message_id: str, group_id: str, delivered_at: float, body: str, api_id: str = "") -> None:
        text = line(message_id, group_id, delivered_at, body, api_id)
        with self._lock:
            self._held.setdefault(hour_of(delivered_at), []).append(text)
            self._held_bytes += len(text)
            objects = self._take() if self._held_bytes >= self._flush_bytes else []
        self._put(objects)

    def close(self) -> None:
        """Put what is held, and count the run's figures: messages archived, and those a failed
        put left out (`ArchiveFailed`, the figure to alarm on)."""
        with self._lock:
            objects = self._take()
        self._put(objects)
        with self._lock:
            archived, failed, stored = self.archived, self.failed, len(self.keys)
        if failed:
            self._metrics.count("ArchiveFailed", failed)
        if archived:
            self._metrics.count("Archived", archived)
            log.info(
                "delivered messages archived",
                extra={
                    "destination": self.destination,
                    "run": self.run_id,
                    "objects": stored,
                    "count": archived,
                },
            )

    def _take(self) -> list[_Object]:
        """What is held, as objects numbered in the order taken (under the lock: key order is the
        order the lines were added)."""
        objects = []
        for hour in sorted(self._held):
            self._parts += 1
            key = object_key(self.destination, hour, self._started_at, self.run_id, self._parts)
            objects.append(_Object(key, self._held[hour]))
        self._held = {}
        self._held_bytes = 0
        return objects

    def _put(self, objects: list[_Object]) -> None:
        for stored in objects:
            data = gzip.compress(b"".join(stored.lines), compresslevel=COMPRESS_LEVEL, mtime=0)
            try:
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=stored.key,
                    Body=data,
                    ContentType="application/gzip",
                    ServerSideEncryption="AES256",
                )
            except (ClientError, BotoCoreError) as exc:
                with self._lock:
                    self.failed += len(stored.lines)
                log.error(
                    "delivered messages not archived: the put failed",
                    extra={
                        "destination": self.destination,
                        "run": self.run_id,
                        "key": stored.key,
                        "count": len(stored.lines),
                        "error": str(exc),
                    },
                )
                continue
            with self._lock:
                self.archived += len(stored.lines)
                self.keys.append(stored.key)


# --- the reader ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    key: str
    reason: str


class DeliveredReader:
    """A destination's archived deliveries in a time window, for a replay: objects in key order
    (listing only the window's hours), each one's records in the order delivered. An object that
    cannot be read (truncated, corrupt, expired since it was listed) is skipped, logged and kept
    in `skipped` with why; a replay reports it rather than stopping. `requests` counts the S3
    calls made (a replay's cost)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self.requests = 0
        self.skipped: list[Skipped] = []

    def keys(self, destination: str, since: datetime, until: datetime, after: str = "") -> Iterator[str]:
        """The keys of the objects that may hold deliveries of [since, until), in key order;
        `after`: only those after this key (a replay's checkpoint)."""
        for hour in window_hours(since, until):
            prefix = hour_prefix(destination, hour)
            if after and after >= prefix and not after.startswith(prefix):
                continue  # an hour wholly before the checkpoint
            params = {"Bucket": self._bucket, "Prefix": prefix}
            if after.startswith(prefix):
                params["StartAfter"] = after
            while True:
                self.requests += 1
                page = self._s3.list_objects_v2(**params)
                for listed in page.get("Contents", []):
                    if listed["Key"].endswith(SUFFIX):
                        yield listed["Key"]
                if not page.get("IsTruncated"):
                    break
                params["ContinuationToken"] = page["NextContinuationToken"]

    def read(self, key: str, since: datetime, until: datetime) -> list[Delivered]:
        """One object's deliveries of [since, until), in order; none if it cannot be read (skipped)."""
        since, until = _utc(since), _utc(until)
        self.requests += 1
        try:
            data = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise  # throttled, denied, unavailable: the replay's task is retried
            return self._skip(key, "gone since it was listed (expired?)")
        try:
            records = parse(data)
        except UnreadableError as exc:
            return self._skip(key, str(exc))
        return [r for r in records if since <= r.delivered_at < until]

    def records(self, destination: str, since: datetime, until: datetime) -> Iterator[Delivered]:
        for key in self.keys(destination, since, until):
            yield from self.read(key, since, until)

    def _skip(self, key: str, reason: str) -> list[Delivered]:
        self.skipped.append(Skipped(key, reason))
        log.warning("archived object skipped", extra={"key": key, "reason": reason})
        return []
