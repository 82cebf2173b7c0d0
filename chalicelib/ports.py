"""The drain's and ingest's ports: what they need from the queues, the ledger, the API and the key,
as `Protocol`s over the values of `chalicelib.model` (the only module they import).

The AWS and HTTP adapters (`FifoQueue`, `Ledger`, `ApiClient`, `SecretCache`, `ResponseArchive`,
`DeliveredArchive`, `StepFunctionsCallbacks`, `Enrichment`, `SourceTable`, `RunMetrics`) satisfy
them structurally; the in-memory fakes under `tests/fakes.py` do too, so every branch of the drain
runs in unit tests without an emulator.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from chalicelib.model import (
    ApiResponse,
    BatchItem,
    CallbackResult,
    EnrichmentFailure,
    LedgerRecord,
    OutboundMessage,
    QueuedTask,
    ReceivedMessage,
    SendFailure,
    Settlement,
    SourceUnread,
)


class SourceQueue(Protocol):
    """The destination's FIFO queue as the drain uses it."""

    def receive(self, max_messages: int, visibility_timeout_s: int) -> list[ReceivedMessage]: ...

    def change_visibility(self, changes: Sequence[tuple[ReceivedMessage, int]]) -> list[ReceivedMessage]: ...

    def delete(self, messages: Sequence[ReceivedMessage]) -> list[ReceivedMessage]: ...

    def depth(self) -> int: ...


class DeadLetterQueue(Protocol):
    def send(self, messages: Sequence[OutboundMessage]) -> list[SendFailure]: ...


class OutboundQueue(Protocol):
    """A queue ingest sends to: a destination's queue or its dead-letter queue."""

    def send(self, messages: Sequence[OutboundMessage]) -> list[SendFailure]: ...


class Counts(Protocol):
    """Counters kept in the notes table (`chalicelib.notes.Notes.add`)."""

    def add(self, key: str, counts: Mapping[str, int], document: dict[str, Any]) -> None: ...


class RejectionLedger(Protocol):
    """The ledger as ingest writes it: only the records it rejected, so their dead letters are listed."""

    def record_dead(
        self, message_id: str, group_id: str, reason: str, item: tuple[str, str] = ("", "")
    ) -> None: ...


class DeliveryLedger(Protocol):
    def read(self, message_ids: Collection[str]) -> dict[str, LedgerRecord]: ...

    def write(self, records: Sequence[LedgerRecord]) -> None: ...

    def restart(self, message_id: str) -> LedgerRecord | None: ...

    def settle(self, settlement: Settlement) -> LedgerRecord: ...

    def settle_many(self, settlements: Sequence[Settlement]) -> None:
        """Several settlements in one write, all or none (one batch request's items)."""
        ...

    def note_callback(self, message_id: str, group_id: str, state: str) -> None: ...

    def hold_until(self, message_id: str, group_id: str, until: float) -> None: ...

    def queued_tasks(self, scanned: int) -> list[QueuedTask]:
        """The task tokens of the destination's queued messages, among its newest `scanned` queued
        records (`chalicelib.ledger.Ledger.queued_tasks`)."""
        ...


class Callbacks(Protocol):
    """Answers to the Step Functions task waiting for a message (`chalicelib.callbacks`)."""

    def success(self, token: str, output: str) -> CallbackResult: ...

    def failure(self, token: str, error: str, cause: str) -> CallbackResult: ...

    def heartbeat(self, token: str) -> CallbackResult: ...

    def sent_tokens(self, queue_url: str) -> list[str]:
        """The tokens of tasks waiting on messages their state machine sent straight to the queue,
        read from the executions' histories (`chalicelib.callbacks.StepFunctionsCallbacks`)."""
        ...


class Api(Protocol):
    """The destination's API with its credentials (`chalicelib.api_client.ApiClient`)."""

    def send(self, body: str, api_id: str) -> ApiResponse:
        """One request for the message, `api_id` the id the API knows it by (its Idempotency-Key and
        webhook-id: `freshness.api_id`), or the reason it could not leave (`ApiResponse.unsent`)."""
        ...

    def send_batch(self, items: Sequence[BatchItem]) -> list[ApiResponse]:
        """One request for several messages, `items` their batch items (`bulk.item`: API id, body,
        its text in the request): an answer per item, in order (an answer that cannot be mapped to
        the items fails each, never a success)."""
        ...

    def renew(self, refused: ApiResponse, reread_secrets: bool) -> bool:
        """After a 401/403: renew the credentials `refused` carried (drop a cached token that is still
        the current one; re-read SSM if `reread_secrets`); True if a second try may go otherwise."""
        ...


class Secret(Protocol):
    """An SSM SecureString of a destination (`chalicelib.secrets.SecretCache`): `get` its value, read
    again once older than the max age; `refresh` reads it now (the API or the token endpoint refused
    it: it may have been rotated). Both raise `chalicelib.secrets.SecretError`, which names the
    parameter, never the value."""

    @property
    def name(self) -> str: ...

    def get(self) -> str: ...

    def refresh(self) -> str: ...


class Enrich(Protocol):
    """A destination's enrichment (`chalicelib.enrichers.Enrichment`): the body to send for a
    message of `route`, or why there is none now."""

    def __call__(self, route: str, body: str, /) -> str | EnrichmentFailure: ...


class RunNotes(Protocol):
    def save(self, key: str, document: dict[str, Any], expires: bool = True) -> None: ...

    def load(self, key: str) -> dict[str, Any] | None: ...

    def tally(self, key: str, counts: Mapping[str, int], remove: Sequence[str]) -> dict[str, float]:
        """Add `counts` to a note's numbers and remove `remove` in one write; its numbers after."""
        ...

    def forget(self, key: str, names: Sequence[str]) -> None: ...


class Redrive(Protocol):
    """A destination's open redrive jobs carried on until `stop` (`RedriveJobs.advance` with its
    redriver); the dead letters moved back."""

    def __call__(self, stop: Callable[[], bool], /) -> int: ...


class SourceItems(Protocol):
    """The source table as a drain reads backfilled items back (`chalicelib.source_items`)."""

    def fingerprints(self, keys: Collection[str]) -> dict[str, str] | SourceUnread:
        """Each item's `freshness.fingerprint` now, by its `freshness.key_text`, from consistent
        reads (an item not found is left out); or why the table did not answer for every key."""
        ...


class Archive(Protocol):
    def store(self, message_id: str, status: int | None, body: str) -> None: ...

    def url(self, message_id: str, expires_s: int) -> str: ...


class DeliveryLog(Protocol):
    """What one drain run delivered, archived for replays (`chalicelib.delivered_archive.RunArchive`);
    thread-safe. `close` stores what is left and counts the run's figures; it never raises for S3."""

    def add(self, message_id: str, group_id: str, delivered_at: float, body: str, api_id: str = "") -> None:
        """`api_id`: the id the API knew the message by (`freshness.api_id`)."""
        ...

    def close(self) -> None: ...


class DeliveryArchive(Protocol):
    """Opens each run's `DeliveryLog` (`chalicelib.delivered_archive.DeliveredArchive`)."""

    def open(self, destination: str, started_at: float, metrics: Metrics) -> DeliveryLog: ...


class Metrics(Protocol):
    """A run's figures (`chalicelib.metrics.RunMetrics`); thread-safe."""

    def count(self, name: str, value: int = 1) -> None: ...

    def milliseconds(self, name: str, value: float) -> None: ...

    def seconds(self, name: str, value: float) -> None: ...

    def flush(self) -> None: ...


class Clock(Protocol):
    """The time the drain reads: `time` for what is recorded or compared with recorded times (the
    ledger's attempts and retry times, a Retry-After date, a message's age), `monotonic` for the
    run's own deadlines, `sleep` for the rate limit's waits. The `time` module is the real one; a
    test's clock moves only when told."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...
