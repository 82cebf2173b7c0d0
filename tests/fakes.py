"""In-memory fakes of the drain's ports (`chalicelib.ports`), shared by every unit test.

Each keeps the part of the real service's contract the drain relies on (FIFO group locking, the
ledger's attempt counting) and records what was done to it, so tests assert on effects.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.bulk import batch_key
from chalicelib.freshness import FINGERPRINT_ATTRIBUTE, SOURCE_KEY_ATTRIBUTE, fingerprint, key_text
from chalicelib.ledger import LedgerUnavailableError
from chalicelib.model import (
    MAX_TRANSACTION_ITEMS,
    TASK_TOKEN_ATTRIBUTE,
    ApiResponse,
    Authorization,
    BatchItem,
    CallbackResult,
    CredentialsFailure,
    LedgerRecord,
    OutboundMessage,
    QueuedTask,
    ReceivedMessage,
    SendFailure,
    Settlement,
    SourceUnread,
    Status,
)
from chalicelib.secrets import SecretError
from trickle_local.runtime import Clock


def message(group: str, index: int, copy: str = "", token: str = "") -> ReceivedMessage:
    """The `index`th message of `group`; its body is `group:index`; with `token`, a Step Functions
    task waits for it."""
    return ReceivedMessage(
        f"{group}-{index}",
        group,
        f"rh-{group}-{index}",
        f"{group}:{index}",
        1,
        attributes={TASK_TOKEN_ATTRIBUTE: token} if token else {},
        copy_id=copy or f"c-{group}-{index}",
    )


class FakeFifo:
    """SQS FIFO's contract as the drain relies on it: receive at most 10, oldest first per group,
    no message of a group while another of that group is in flight. With `hold_delays`, a message
    released with a delay stays invisible (and holds its group) until `tick` makes it visible;
    without, every release is visible at once (a run that receives again sees it). `send` queues
    at the tail, refusing the message ids in `refuse` (and, as `FifoQueue.send`, all after them)."""

    def __init__(
        self, groups: int = 0, per_group: int = 0, one_per_group: bool = False, hold_delays: bool = False
    ) -> None:
        self.one_per_group = one_per_group  # per call, as when the queue interleaves its groups
        self.hold_delays = hold_delays
        self.waiting = [message(f"g{g}", i) for i in range(per_group) for g in range(groups)]
        self.in_flight: list[ReceivedMessage] = []
        self.delayed: list[tuple[ReceivedMessage, int]] = []  # released with a visibility delay
        self.deleted: list[str] = []
        self.visibility_changes: list[tuple[str, int]] = []
        self.receives: list[tuple[int, int]] = []  # (in flight before, received) per call
        self.refuse: set[str] = set()
        self._lock = threading.Lock()

    def put(self, *messages: ReceivedMessage) -> None:
        self.waiting += messages

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendFailure]:
        with self._lock:
            for index, sent in enumerate(messages):
                if sent.message_id in self.refuse:
                    return [SendFailure(m, "InternalError: refused") for m in messages[index:]]
                copy = f"c-{sent.dedup_id}"
                self.waiting.append(
                    ReceivedMessage(
                        sent.message_id,
                        sent.group_id,
                        f"rh-{copy}",
                        sent.body,
                        1,
                        dict(sent.attributes),
                        copy,
                    )
                )
        return []

    def receive(self, max_messages: int, visibility_timeout_s: int) -> list[ReceivedMessage]:
        with self._lock:
            busy = {m.group_id for m in self.in_flight} | {m.group_id for m, _ in self.delayed}
            taken: list[ReceivedMessage] = []
            for waiting in list(self.waiting):
                if len(taken) == min(10, max_messages):
                    break
                taken_here = any(t.group_id == waiting.group_id for t in taken)
                if waiting.group_id in busy and (self.one_per_group or not taken_here):
                    continue
                taken.append(waiting)
                self.waiting.remove(waiting)
                busy.add(waiting.group_id)
            self.receives.append((len(self.in_flight), len(taken)))
            self.in_flight += taken
            return taken

    def change_visibility(self, changes: Sequence[tuple[ReceivedMessage, int]]) -> list[ReceivedMessage]:
        with self._lock:
            for changed, seconds in reversed(changes):
                self.visibility_changes.append((changed.message_id, seconds))
                self.in_flight.remove(changed)
                if seconds and self.hold_delays:
                    self.delayed.insert(0, (changed, seconds))
                else:
                    self.waiting.insert(0, changed)
        return []

    def tick(self) -> None:
        """Every delayed message becomes visible again, head of its group first."""
        with self._lock:
            self.waiting[:0] = [m for m, _ in self.delayed]
            self.delayed.clear()

    def lapse(self) -> None:
        """Every message in flight becomes visible again (its visibility ran out: a run that died
        left it neither deleted nor released), ahead of the rest, in the order received."""
        with self._lock:
            self.waiting[:0] = self.in_flight
            self.in_flight = []

    def delete(self, messages: Sequence[ReceivedMessage]) -> list[ReceivedMessage]:
        with self._lock:
            for deleted in messages:
                self.in_flight.remove(deleted)
                self.deleted.append(deleted.message_id)
        return []

    def depth(self) -> int:
        return len(self.waiting) + len(self.in_flight) + len(self.delayed)

    def holds(self, message_id: str) -> bool:
        return any(m.message_id == message_id for m in self.waiting + self.in_flight) or any(
            m.message_id == message_id for m, _ in self.delayed
        )


def backfilled(group: str, index: int, item: Mapping[str, Any]) -> ReceivedMessage:
    """The `index`th message of `group` as a backfill queues it for `item` (a typed image whose key
    is its `pk`, and `sk` if it has one), carrying the item's key and fingerprint."""
    keys = {name: item[name] for name in ("pk", "sk") if name in item}
    attributes = {SOURCE_KEY_ATTRIBUTE: key_text(keys), FINGERPRINT_ATTRIBUTE: fingerprint(item)}
    return replace(message(group, index), attributes=attributes)


class FakeSourceItems:
    """The source table as the drain reads items back (`chalicelib.ports.SourceItems`): `items` by
    key text; records the keys of each read; answers `SourceUnread(unread)` while `unread` is set."""

    def __init__(self, *items: Mapping[str, Any]) -> None:
        self.items: dict[str, Mapping[str, Any]] = {}
        self.reads: list[list[str]] = []
        self.unread = ""
        for item in items:
            self.put(item)

    def put(self, item: Mapping[str, Any]) -> None:
        self.items[key_text({name: item[name] for name in ("pk", "sk") if name in item})] = item

    def delete(self, item: Mapping[str, Any]) -> None:
        del self.items[key_text({name: item[name] for name in ("pk", "sk") if name in item})]

    def fingerprints(self, keys: Collection[str]) -> dict[str, str] | SourceUnread:
        self.reads.append(sorted(keys))
        if self.unread:
            return SourceUnread(self.unread)
        return {key: fingerprint(self.items[key]) for key in keys if key in self.items}


class FakeDeadLetters:
    """A queue Trickle sends to (a dead-letter queue, or ingest's destination queue) that takes
    everything, or refuses while `refuse` is set."""

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []
        self.refuse = False

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendFailure]:
        if self.refuse:
            return [SendFailure(m, "InternalError: refused") for m in messages]
        self.sent += messages
        return []


class FakeLedger:
    """The ledger's counting rules: only `counted` settles add an attempt; a dead record knows its
    copy; `restart` gives a redriven message fresh attempts."""

    def __init__(self) -> None:
        self.records: dict[str, LedgerRecord] = {}
        self.settles: list[tuple[str, Status, bool]] = []
        self.reads: list[int] = []  # ids asked for, per call
        self.writes: list[int] = []  # records written, per call that wrote any
        self.transactions: list[list[tuple[str, Status, bool]]] = []  # settle_many's, each call's settles
        self.unavailable = 0  # transactions still to refuse, as DynamoDB does when busy: nothing written
        self.tokens: dict[str, str] = {}  # message id -> the task token its record keeps (`record_queued`)
        self._lock = threading.RLock()  # batched jobs' workers write their own transactions

    def read(self, message_ids: Collection[str]) -> dict[str, LedgerRecord]:
        self.reads.append(len(message_ids))
        return {i: self.records[i] for i in message_ids if i in self.records}

    def write(self, records: Sequence[LedgerRecord]) -> None:
        with self._lock:
            if records:
                self.writes.append(len(records))
            self.records.update((r.message_id, r) for r in records)
            for record in records:  # a whole record replaces the item, its token with it
                self.tokens.pop(record.message_id, None)

    def record_queued(
        self, message_id: str, group_id: str, item: tuple[str, str] = ("", ""), task_token: str = ""
    ) -> bool:
        """A submission's first record, with its task's token if it has one."""
        if message_id in self.records:
            return False
        self.records[message_id] = LedgerRecord(message_id, Status.QUEUED, group_id=group_id)
        if task_token:
            self.tokens[message_id] = task_token
        return True

    def queued_tasks(self, scanned: int) -> list[QueuedTask]:
        """The newest `scanned` queued records' tokens, as the status index files them."""
        queued = [r for r in self.records.values() if r.status is Status.QUEUED][::-1][:scanned]
        return [
            QueuedTask(r.message_id, r.group_id, self.tokens[r.message_id], r.status, r.callback)
            for r in queued
            if r.message_id in self.tokens
        ]

    def restart(self, message_id: str) -> LedgerRecord | None:
        prior = self.records.get(message_id)
        if prior is None or prior.status is not Status.DEAD:
            return prior
        record = self.records[message_id] = replace(prior, status=Status.QUEUED, attempts=0, dead_copy="")
        return record

    def settle(self, settlement: Settlement) -> LedgerRecord:
        with self._lock:
            return self._settle(settlement)

    def _settle(self, settlement: Settlement) -> LedgerRecord:
        s = settlement
        prior = self.records.get(s.message_id)
        attempts = (prior.attempts if prior else 0) + (1 if s.counted else 0)
        record = LedgerRecord(
            s.message_id,
            s.status,
            attempts,
            s.group_id,
            last_status_code=s.status_code
            if s.status_code is not None
            else (prior and prior.last_status_code),
            last_error=s.error,
            dead_copy=s.dead_copy or (prior.dead_copy if prior else ""),
            callback=prior.callback if prior else "",
            retry_at=prior.retry_at if prior else None,
            timeline=(prior.timeline if prior else ()) if s.timeline is None else s.timeline,
        )
        self.records[s.message_id] = record
        self.settles.append((s.message_id, s.status, s.counted))
        return record

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Each as `settle` does, in one call (recorded in `transactions`, not in `settles`), or none
        of them (LedgerUnavailableError) while `unavailable` lasts."""
        assert len({s.message_id for s in settlements}) == len(settlements), "one action per item"
        assert len(settlements) <= MAX_TRANSACTION_ITEMS
        with self._lock:
            if self.unavailable:
                self.unavailable -= 1
                raise LedgerUnavailableError("DynamoDB did not take a transaction: HTTP 500")
            before = len(self.settles)
            for settlement in settlements:
                self._settle(settlement)
            self.transactions.append(self.settles[before:])
            del self.settles[before:]

    def note_callback(self, message_id: str, group_id: str, state: str) -> None:
        prior = self.records.get(message_id) or LedgerRecord(message_id, Status.QUEUED, group_id=group_id)
        self.records[message_id] = replace(prior, callback=state, callback_output="")
        self.tokens.pop(message_id, None)

    def hold_until(self, message_id: str, group_id: str, until: float) -> None:
        prior = self.records.get(message_id) or LedgerRecord(message_id, Status.QUEUED, group_id=group_id)
        self.records[message_id] = replace(prior, retry_at=until)

    def status(self, message_id: str) -> Status | None:
        record = self.records.get(message_id)
        return record.status if record else None

    def record_dead(
        self, message_id: str, group_id: str, reason: str, item: tuple[str, str] = ("", "")
    ) -> None:
        """Ingest's write for a record it rejected; a record that exists already is left alone."""
        if message_id not in self.records:
            self.records[message_id] = LedgerRecord(
                message_id, Status.DEAD, group_id=group_id, last_error=reason, rejected_at_ingest=True
            )


class ScriptedApi:
    """Answers each request from `script(body, nth request for that body)`, recording what it got;
    a batch's items each from the script, as if sent alone (`requests` has one entry per item, its
    key the item's id; `batches` one per batch request). Its credentials are an API key's: `renew`
    changes them only when told to re-read SSM."""

    def __init__(self, script: Callable[[str, int], ApiResponse] | None = None) -> None:
        self._script = script or (lambda body, n: ApiResponse(200, body="ok"))
        self.requests: list[tuple[float, str, str]] = []  # (monotonic time, body, idempotency key)
        self.batches: list[tuple[str, list[str]]] = []  # (idempotency key, item bodies) per batch request
        self.refreshes = 0  # SSM re-reads asked by renew
        self._lock = threading.Lock()

    def renew(self, refused: ApiResponse, reread_secrets: bool) -> bool:
        with self._lock:
            self.refreshes += reread_secrets
        return reread_secrets

    def send(self, body: str, idempotency_key: str) -> ApiResponse:
        with self._lock:
            nth = sum(1 for _, b, _ in self.requests if b == body)
            self.requests.append((time.monotonic(), body, idempotency_key))
        return self._script(body, nth)

    def send_batch(self, items: Sequence[BatchItem]) -> list[ApiResponse]:
        with self._lock:
            self.batches.append((batch_key(i.id for i in items), [i.body for i in items]))
            nths = []
            for item in items:
                nths.append(sum(1 for _, b, _ in self.requests if b == item.body))
                self.requests.append((time.monotonic(), item.body, item.id))
        return [self._script(i.body, nth) for i, nth in zip(items, nths, strict=True)]

    def bodies(self) -> list[str]:
        return [body for _, body, _ in self.requests]


class SlowApi:
    """Answers 200 after `latency_s`, recording when each request started and ended and how many
    overlapped. On a `clock` (a `FakeClock`) the latency moves that clock instead of taking time.
    With `overlap`, the first requests are held until that many are in flight at once (at most
    `overlap_wait_s`), so a pool that sends in parallel shows it however the threads are scheduled."""

    def __init__(
        self, latency_s: float, clock: FakeClock | None = None, overlap: int = 1, overlap_wait_s: float = 10.0
    ) -> None:
        self.latency_s = latency_s
        self.clock = clock
        self.started: list[tuple[float, str]] = []
        self.ended: list[tuple[float, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._overlap = overlap
        self._overlap_wait_s = overlap_wait_s
        self._overlapped = threading.Event()
        self._lock = threading.Lock()

    def renew(self, refused: ApiResponse, reread_secrets: bool) -> bool:
        return reread_secrets

    def send(self, body: str, idempotency_key: str) -> ApiResponse:
        with self._lock:
            self.started.append((self._now(), body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.in_flight >= self._overlap:
                self._overlapped.set()
        if not self._overlapped.wait(self._overlap_wait_s):
            self._overlapped.set()  # never came: the rest go unheld, and max_in_flight tells
        self.wait(body)
        with self._lock:
            self.in_flight -= 1
            self.ended.append((self._now(), body))
        return ApiResponse(status=200)

    def send_batch(self, items: Sequence[BatchItem]) -> list[ApiResponse]:
        """One request (of the first item's latency) for all the items: each is recorded as started
        and ended with it; `overlap` does not hold it."""
        bodies = [i.body for i in items]
        with self._lock:
            self.started += [(self._now(), body) for body in bodies]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.wait(bodies[0])
        with self._lock:
            self.in_flight -= 1
            self.ended += [(self._now(), body) for body in bodies]
        return [ApiResponse(status=200) for _ in bodies]

    def wait(self, body: str) -> None:
        """The request's latency."""
        if self.clock is not None:
            self.clock.sleep(self.latency(body))
        else:
            time.sleep(self.latency(body))

    def _now(self) -> float:
        return self.clock.monotonic() if self.clock is not None else time.monotonic()

    def latency(self, body: str) -> float:
        return self.latency_s

    def order_by_group(self) -> dict[str, list[int]]:
        seen: dict[str, list[int]] = {}
        for _, body in self.started:
            group, index = body.split(":")
            seen.setdefault(group.removeprefix("g"), []).append(int(index))
        return seen


class FakeSsm:
    """An SSM client's `get_parameter`, answering with the values (or raising the exceptions) in
    `script`, the last one repeated; `delay_s` makes each call slow, as a cold read under load is."""

    def __init__(self, *script: str | Exception, delay_s: float = 0.0) -> None:
        self.script = list(script)
        self.delay_s = delay_s
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def get_parameter(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(kwargs)
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if self.delay_s:
            time.sleep(self.delay_s)
        if isinstance(step, Exception):
            raise step
        return {"Parameter": {"Name": kwargs["Name"], "Type": "SecureString", "Value": step, "Version": 1}}


class FakeSecret:
    """An SSM parameter (`chalicelib.ports.Secret`): `get` answers the value in hand, `refresh` moves
    on to the next of `values` (the last one stays), as a parameter rotated and read again. A
    `SecretError` among them is raised while it is the value in hand."""

    def __init__(self, *values: str | SecretError, name: str = "/trickle/test/credentials") -> None:
        self.name = name
        self.values = list(values)
        self.gets = 0
        self.refreshes = 0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            self.gets += 1
            return self._value()

    def refresh(self) -> str:
        with self._lock:
            self.refreshes += 1
            if len(self.values) > 1:
                self.values.pop(0)
            return self._value()

    def _value(self) -> str:
        value = self.values[0]
        if isinstance(value, SecretError):
            raise value
        return value


class HttpAnswer:
    """What a urllib3 pool's `urlopen` returns, as far as Trickle reads it."""

    def __init__(
        self, status: int, body: str | bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        self.status = status
        self.data = body.encode() if isinstance(body, str) else body
        self.headers = dict(headers or {})


class ScriptedHttp:
    """A urllib3 pool (`chalicelib.api_client.Transport`) answering each request with the next of
    `script` (the last repeated): an `HttpAnswer`, or an exception to raise. Records every request
    as (method, target, headers, body text)."""

    def __init__(self, *script: HttpAnswer | Exception) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str, dict[str, str], str]] = []
        self._lock = threading.Lock()

    def urlopen(self, method: str, url: str, **kw: Any) -> HttpAnswer:
        with self._lock:
            self.requests.append(
                (method, url, dict(kw.get("headers") or {}), (kw.get("body") or b"").decode())
            )
            step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step


class FakeNotes:
    """Notes by key; `add` records each write of counters, and raises `refuse` if it is set."""

    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}
        self.added: list[tuple[str, dict[str, int], dict[str, Any]]] = []
        self.sets: dict[str, set[str]] = {}
        self.numbers: dict[str, dict[str, float]] = {}  # `tally`'s counters by key
        self.tallies = 0  # `tally`'s writes
        self.refuse: Exception | None = None

    def save(self, key: str, document: dict[str, Any], expires: bool = True) -> None:
        self.saved[key] = json.loads(json.dumps(document))  # stored as JSON, as `Notes` stores it

    def tally(self, key: str, counts: Mapping[str, int], remove: Sequence[str]) -> dict[str, float]:
        self.tallies += 1
        numbers = self.numbers.setdefault(key, {})
        for name, value in counts.items():
            numbers[name] = numbers.get(name, 0) + value
        for name in remove:
            numbers.pop(name, None)
        return dict(numbers)

    def forget(self, key: str, names: Sequence[str]) -> None:
        for name in names:
            self.numbers.get(key, {}).pop(name, None)

    def load(self, key: str) -> dict[str, Any] | None:
        return json.loads(json.dumps(self.saved[key])) if key in self.saved else None

    def load_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {key: note for key in keys if (note := self.load(key)) is not None}

    def replace(self, key: str, document: dict[str, Any], version: int) -> bool:
        """As `Notes.replace`: written as version `version + 1` only if the note is at `version`."""
        if (self.saved.get(key) or {}).get("version", 0) != version:
            return False
        self.save(key, document | {"version": version + 1})
        return True

    def members(self, key: str) -> set[str]:
        return set(self.sets.get(key, ()))

    def add_member(self, key: str, member: str) -> None:
        self.sets.setdefault(key, set()).add(member)

    def remove_member(self, key: str, member: str) -> None:
        self.sets.get(key, set()).discard(member)

    def add(self, key: str, counts: Mapping[str, int], document: dict[str, Any]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.added.append((key, dict(counts), document))


class FakeArchive:
    def __init__(self) -> None:
        self.stored: dict[str, tuple[int | None, str]] = {}

    def store(self, message_id: str, status: int | None, body: str) -> None:
        self.stored[message_id] = (status, body)

    def url(self, message_id: str, expires_s: int) -> str:
        """Where the stored answer could be fetched; says what it names and for how long."""
        assert message_id in self.stored, "a URL of an answer never stored"
        return f"https://archive.invalid/responses/{message_id}.json?expires={expires_s}"


class FakeS3:
    """The S3 object calls the archives make, on one bucket: objects by key, listed in key order,
    `page_size` keys a page (ListObjectsV2's paging: a continuation token, `StartAfter`). `refuse`
    raises on every put while it is set; each call is recorded as (operation, its parameters but
    the body)."""

    def __init__(self, page_size: int = 1000) -> None:
        self.objects: dict[str, bytes] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse: Exception | None = None
        self._page_size = page_size
        self._lock = threading.Lock()

    def put_object(self, **params: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("PutObject", {k: v for k, v in params.items() if k != "Body"}))
            if self.refuse is not None:
                raise self.refuse
            self.objects[params["Key"]] = bytes(params["Body"])
        return {}

    def get_object(self, **params: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("GetObject", dict(params)))
            if params["Key"] not in self.objects:
                error = {"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."}}
                raise ClientError(error, "GetObject")
            return {"Body": io.BytesIO(self.objects[params["Key"]])}

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(("ListObjectsV2", dict(params)))
            after = params.get("ContinuationToken") or params.get("StartAfter", "")
            keys = sorted(k for k in self.objects if k.startswith(params.get("Prefix", "")) and k > after)
        page = keys[: self._page_size]
        truncated = len(keys) > len(page)
        return {
            "Contents": [{"Key": key, "Size": len(self.objects[key])} for key in page],
            "IsTruncated": truncated,
            **({"NextContinuationToken": page[-1]} if truncated else {}),
        }

    def listed_prefixes(self) -> list[str]:
        return [params["Prefix"] for operation, params in self.calls if operation == "ListObjectsV2"]


class FakeCallbacks:
    """Step Functions' task side: records every answer per token; `script(kind, token, nth call of
    that kind for that token)` says how it was taken (sent by default)."""

    def __init__(self, script: Callable[[str, str, int], CallbackResult] | None = None) -> None:
        self._script = script or (lambda kind, token, nth: CallbackResult.SENT)
        self.calls: list[tuple[str, str, dict[str, str]]] = []  # (kind, token, details)
        # queue URL -> the tokens its executions' histories show waiting on a message sent there
        self.sent: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def _record(self, kind: str, token: str, details: dict[str, str]) -> CallbackResult:
        with self._lock:
            nth = sum(1 for k, t, _ in self.calls if (k, t) == (kind, token))
            self.calls.append((kind, token, details))
        return self._script(kind, token, nth)

    def success(self, token: str, output: str) -> CallbackResult:
        return self._record("success", token, {"output": output})

    def failure(self, token: str, error: str, cause: str) -> CallbackResult:
        return self._record("failure", token, {"error": error, "cause": cause})

    def heartbeat(self, token: str) -> CallbackResult:
        return self._record("heartbeat", token, {})

    def sent_tokens(self, queue_url: str) -> list[str]:
        return list(self.sent.get(queue_url, []))

    def kinds(self, token: str) -> list[str]:
        return [kind for kind, t, _ in self.calls if t == token]


class FakeClock:
    """The drain's clock (`chalicelib.ports.Clock`), still until a test moves it (`advance`) or a rate
    limit waits (`sleep`): wall-clock and monotonic time move together."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:
        self.now = now
        self._lock = threading.Lock()  # workers sleeping at once each move it by their own wait

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float, /) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class FakeMetrics:
    """A run's figures (`chalicelib.ports.Metrics`), kept as (name, value) in the order given."""

    def __init__(self) -> None:
        self.values: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def count(self, name: str, value: int = 1) -> None:
        self._add(name, value)

    def milliseconds(self, name: str, value: float) -> None:
        self._add(name, value)

    def seconds(self, name: str, value: float) -> None:
        self._add(name, value)

    def flush(self) -> None:
        return

    def _add(self, name: str, value: float) -> None:
        with self._lock:
            self.values.append((name, value))

    def named(self, name: str) -> list[float]:
        return [value for n, value in self.values if n == name]


class FakeScheduleClock(Clock):
    """The local runtime's schedule time (`trickle_local.runtime.Clock`), still until a test moves it
    (`advance`); a schedule waiting for a time wakes once it is reached."""

    def __init__(self, at: datetime) -> None:
        super().__init__(started_at=at)
        self._at = at
        self._moved = threading.Condition()

    def now(self) -> datetime:
        with self._moved:
            return self._at

    def advance(self, by: timedelta) -> None:
        with self._moved:
            self._at += by
            self._moved.notify_all()

    def wait_until(self, moment: datetime, stop: threading.Event) -> bool:
        with self._moved:
            while self._at < moment and not stop.is_set():
                self._moved.wait(0.01)  # `stop` cannot notify: looked at every 10 ms
        return stop.is_set()


def until(condition: Callable[[], Any], deadline_s: float = 30.0, every_s: float = 0.1) -> Any:
    """Waits for `condition` to return something truthy and returns it; fails after `deadline_s`
    (tests wait on conditions with deadlines, never on fixed sleeps)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not true within {deadline_s} s")


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port something else is listening on, for as long as the block runs."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


class KeySource:
    """A destination's credentials as an API key in one header (the `Credentials` of
    `chalicelib.api_client`), or the failure to have them; counts how often it was asked and renewed."""

    def __init__(
        self,
        key: str = "sk-live-3c9e1f0a-never-log-me",
        header: str = "x-api-key",
        signing_keys: tuple[bytes, ...] = (),
    ) -> None:
        self.key = key
        self.header = header
        self.signing_keys = signing_keys
        self.failure: CredentialsFailure | None = None
        self.generation = 1
        self.calls = 0
        self.renewals: list[tuple[int, bool]] = []

    def current(self) -> Authorization | CredentialsFailure:
        self.calls += 1
        if self.failure is not None:
            return self.failure
        return Authorization({self.header: self.key}, self.signing_keys, self.generation, (self.key,))

    def renew(self, stale: int, reread_secrets: bool) -> bool:
        self.renewals.append((stale, reread_secrets))
        return reread_secrets


def environment_outside_the_suite() -> dict[str, str]:
    """This process's environment without the TRICKLE_* variables the integration stack's session
    puts in it (its stage, naming the suite's routes file): what a user's shell would hand a command."""
    return {name: value for name, value in os.environ.items() if not name.startswith("TRICKLE_")}


class FakeArchiveReader:
    """A destination's delivered archive as the replay reads it (`delivered_archive.DeliveredReader`):
    `objects` maps each object's key to its records (any objects with `message_id`, `group_id`,
    `delivered_at`, `body`), listed in key order after `after`, read filtered to the window. Counts
    the listings and reads made (S3's LIST and GET)."""

    def __init__(self, objects: Mapping[str, Sequence[Any]]) -> None:
        self.objects = dict(objects)
        self.listings: list[str] = []  # the `after` of each listing started
        self.reads: list[str] = []

    def keys(self, destination: str, since: datetime, until: datetime, after: str = "") -> Iterator[str]:
        self.listings.append(after)
        yield from (key for key in sorted(self.objects) if key > after)

    def read(self, key: str, since: datetime, until: datetime) -> list[Any]:
        self.reads.append(key)
        return [r for r in self.objects[key] if since <= r.delivered_at < until]
