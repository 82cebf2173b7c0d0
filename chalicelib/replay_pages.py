"""A replay read page by page (issue #26): the archived deliveries of its window, in the archive's
order (objects in key order, each one's records as delivered), turned into the messages to queue
(`replay_plan`), a page at a time, each page ending at a position a resumed worker starts from.

A position is `{"after": the last object read to its end, "key": the object being read (None
between objects), "index": how many of its window's records are done}`. Within one invocation the
listing and the object being read are kept between pages, so a page makes only the S3 calls it
needs: one LIST per hour of the window (a thousand objects a page), one GET per object. A worker
that resumes from a checkpoint lists from that object and reads it again."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from chalicelib.job_plan import add_counts
from chalicelib.model import OutboundMessage
from chalicelib.replay_plan import Delivery, Replay, replayed

PAGE_MESSAGES = 100  # messages queued per page (ten SendMessageBatch calls), then a checkpoint
DRY_RUN_PAGE_RECORDS = 5000  # a dry run queues nothing: its pages are the records read


class Reader(Protocol):
    """A destination's archived deliveries (`delivered_archive.DeliveredReader`)."""

    def keys(self, destination: str, since: datetime, until: datetime, after: str = "") -> Iterator[str]: ...

    def read(self, key: str, since: datetime, until: datetime) -> Sequence[Delivery]: ...


def start() -> dict[str, Any]:
    """The position of a part that has read nothing yet."""
    return {"after": "", "key": None, "index": 0}


@dataclass(frozen=True)
class Page:
    """What one page found: the messages to queue in order, where the next page starts, the
    counts (records `read` in the window, `selected` by the replay, `queued` (none in a dry run),
    archive `objects` opened, `filter_errors` and the first one's `filter_error`) and whether the
    window is read to its end."""

    messages: list[OutboundMessage]
    position: dict[str, Any]
    counts: dict[str, Any]
    finished: bool


@dataclass
class ReplayPages:
    """One part of a replay, in one invocation: `next(position)` reads on from `position`."""

    reader: Reader
    replay: Replay
    replay_id: str
    page_messages: int = PAGE_MESSAGES
    page_records: int = DRY_RUN_PAGE_RECORDS
    _keys: Iterator[str] | None = field(default=None, init=False)
    _object: tuple[str, Sequence[Delivery]] | None = field(default=None, init=False)
    _expected: dict[str, Any] | None = field(default=None, init=False)

    def next(self, position: Mapping[str, Any] | None) -> Page:
        at = dict(position or start())
        if at != self._expected:  # the first page of this invocation, or not where the last ended
            self._keys = self._listing(at["key"] or at["after"])
            self._object = None
        after, key, index = at["after"], at["key"], at["index"]
        messages: list[OutboundMessage] = []
        counts: dict[str, Any] = {"read": 0, "selected": 0, "queued": 0, "objects": 0, "filter_errors": 0}
        finished = False
        while not self._full(messages, counts):
            if key is None:
                key = next(self._keys or iter(()), None)
                if key is None:
                    finished = True
                    break
                index = 0
                counts["objects"] += 1
            records = self._records(key)
            while index < len(records) and not self._full(messages, counts):
                record = records[index]
                index += 1
                counts["read"] += 1
                taken = self.replay.takes(record)
                if isinstance(taken, str):
                    counts["filter_errors"] += 1
                    counts.setdefault("filter_error", taken)
                elif taken:
                    counts["selected"] += 1
                    if not self.replay.dry_run:
                        messages.append(replayed(record, self.replay, self.replay_id))
            if index >= len(records):
                after, key, index = key, None, 0
                self._object = None
        self._expected = {"after": after, "key": key, "index": index}
        counts["queued"] = len(messages)
        return Page(messages, dict(self._expected), counts, finished)

    def _full(self, messages: list[OutboundMessage], counts: Mapping[str, Any]) -> bool:
        if self.replay.dry_run:
            return bool(counts["read"] >= self.page_records)
        return len(messages) >= self.page_messages

    def _listing(self, after: str) -> Iterator[str]:
        window = self.replay.window
        return self.reader.keys(self.replay.destination, window.since, window.until, after)

    def _records(self, key: str) -> Sequence[Delivery]:
        if self._object is None or self._object[0] != key:
            window = self.replay.window
            self._object = (key, self.reader.read(key, window.since, window.until))
        return self._object[1]


PREVIEW_ID = "00000000-0000-0000-0000-000000000000"  # a dry run builds no message: no id is formed


def preview(reader: Reader, replay: Replay) -> dict[str, Any]:
    """What the replay would queue, counted over the whole window without queueing (the command's
    preview, before it asks): `selected` of the `read` records, in `objects` archive objects, and
    `filter_errors` (the first in `filter_error`, when any)."""
    pages = ReplayPages(reader, replace(replay, dry_run=True), PREVIEW_ID)
    total: dict[str, Any] = {"read": 0, "selected": 0, "objects": 0, "filter_errors": 0}
    position: dict[str, Any] | None = None
    while True:
        page = pages.next(position)
        total = add_counts(total, {name: n for name, n in page.counts.items() if name != "queued"})
        if page.finished:
            return total
        position = page.position
