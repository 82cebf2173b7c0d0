"""Typed settings parsed once from the stage's environment variables.

Chalice applies a stage's `environment_variables` before it imports `app.py`, so the decorators
can read these values. Every problem is reported at once, so a misconfigured stage fails with one
clear message instead of a KeyError deep inside a handler.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
GROUP_BY_CHOICES = ("partition_key", "table")
ORDERING_CHOICES = ("skip", "strict")
SQS_MAX_MESSAGE_BYTES = 1_048_576


_STREAM_ARN = re.compile(r"^arn:aws[\w-]*:dynamodb:[a-z0-9-]+:\d{12}:table/[A-Za-z0-9_.-]{3,255}/stream/.+$")


class SettingsError(ValueError):
    """The stage's environment variables are missing or malformed."""


@dataclass(frozen=True)
class Destination:
    """Where and how messages are delivered; one today, several per table later."""

    name: str
    url: str
    api_key_parameter: str
    api_key_header: str
    connect_timeout_s: float
    read_timeout_s: float
    ordering: str
    max_attempts: int
    rate_limit_per_s: float
    rate_limit_burst: int


@dataclass(frozen=True)
class Settings:
    stream_arn: str
    queue_url: str
    dlq_url: str
    ledger_table: str
    ledger_ttl_s: int
    destination: Destination
    event_names: frozenset[str]
    group_by: str
    partition_key: str | None
    ingest_batch_size: int
    ingest_batch_window_s: int
    partial_batch_response: bool
    max_message_bytes: int
    send_attempts: int
    drain_budget: int
    drain_workers: int
    drain_safety_margin_ms: int
    visibility_timeout_s: int
    retry_delay_s: int
    retry_max_delay_s: int
    breaker_failures: int
    secret_max_age_s: int
    log_level: str
    auth: str
    auth_token_parameter: str | None
    archive_bucket: str | None
    submit_max_bytes: int

    @property
    def attempt_window_s(self) -> float:
        """How long after its receive a message may still be attempted: its visibility timeout less
        one attempt (connect + read) and a second to settle it. An attempt later than that could
        outlast the visibility, and another receive would hand the message out a second time."""
        attempt_s = self.destination.connect_timeout_s + self.destination.read_timeout_s
        return self.visibility_timeout_s - attempt_s - 1.0

    @property
    def table_name(self) -> str:
        return table_name_from_stream_arn(self.stream_arn)


def table_name_from_stream_arn(arn: str) -> str:
    """`arn:aws:dynamodb:r:a:table/T/stream/LABEL` -> `T`."""
    resource = arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "table" else ""


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []

    def text(self, name: str, default: str | None = None) -> str:
        value = self.env.get(name, "").strip()
        if value:
            return value
        if default is None:
            self.errors.append(f"{name} is required")
            return ""
        return default

    def number(self, name: str, default: T, cast: Callable[[str], T], low: T, high: T) -> T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = cast(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not a {cast.__name__}")
            return default
        if not low <= value <= high:  # type: ignore[operator]
            self.errors.append(f"{name}={raw!r} must be between {low} and {high}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw not in ("true", "false"):
            self.errors.append(f"{name}={raw!r} must be true or false")
            return default
        return raw == "true"

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            self.errors.append(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value


def _check_url(reader: _Reader, name: str, value: str, fifo: bool = False) -> None:
    if not value:
        return
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        reader.errors.append(f"{name}={value!r} is not an http(s) URL")
    elif fifo and not parsed.path.endswith(".fifo"):
        reader.errors.append(f"{name}={value!r} must name a FIFO queue (ending in .fifo)")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse the TRICKLE_* variables; raise SettingsError listing every problem."""
    r = _Reader(os.environ if env is None else env)
    stream_arn = r.text("TRICKLE_STREAM_ARN")
    if stream_arn and not _STREAM_ARN.match(stream_arn):
        r.errors.append(f"TRICKLE_STREAM_ARN={stream_arn!r} is not a DynamoDB stream ARN")
    queue_url = r.text("TRICKLE_QUEUE_URL")
    dlq_url = r.text("TRICKLE_DLQ_URL")
    api_url = r.text("TRICKLE_API_URL")
    _check_url(r, "TRICKLE_QUEUE_URL", queue_url, fifo=True)
    _check_url(r, "TRICKLE_DLQ_URL", dlq_url, fifo=True)
    _check_url(r, "TRICKLE_API_URL", api_url)

    raw_events = r.text("TRICKLE_EVENT_NAMES", "INSERT")
    event_names = frozenset(e.strip().upper() for e in raw_events.split(",") if e.strip())
    if not event_names or not event_names <= EVENT_NAMES:
        r.errors.append(
            f"TRICKLE_EVENT_NAMES={raw_events!r} must list some of {', '.join(sorted(EVENT_NAMES))}"
        )
    group_by = r.choice("TRICKLE_GROUP_BY", "partition_key", GROUP_BY_CHOICES)
    partition_key = r.env.get("TRICKLE_PARTITION_KEY", "").strip() or None
    if group_by == "partition_key" and partition_key is None:
        r.errors.append("TRICKLE_PARTITION_KEY is required when TRICKLE_GROUP_BY=partition_key")

    destination = Destination(
        name=r.text("TRICKLE_DESTINATION_NAME", "default"),
        url=api_url,
        api_key_parameter=r.text("TRICKLE_API_KEY_PARAMETER"),
        api_key_header=r.text("TRICKLE_API_KEY_HEADER", "x-api-key"),
        connect_timeout_s=r.number("TRICKLE_CONNECT_TIMEOUT_SECONDS", 3.05, float, 0.1, 60.0),
        read_timeout_s=r.number("TRICKLE_READ_TIMEOUT_SECONDS", 10.0, float, 0.1, 600.0),
        ordering=r.choice("TRICKLE_ORDERING", "skip", ORDERING_CHOICES),
        max_attempts=r.number("TRICKLE_MAX_ATTEMPTS", 5, int, 1, 100),
        rate_limit_per_s=r.number("TRICKLE_RATE_LIMIT_PER_SECOND", 10.0, float, 0.01, 10_000.0),
        rate_limit_burst=r.number("TRICKLE_RATE_LIMIT_BURST", 5, int, 1, 10_000),
    )
    settings = Settings(
        stream_arn=stream_arn,
        queue_url=queue_url,
        dlq_url=dlq_url,
        ledger_table=r.text("TRICKLE_LEDGER_TABLE"),
        ledger_ttl_s=r.number("TRICKLE_LEDGER_TTL_DAYS", 30, int, 1, 3650) * 86_400,
        destination=destination,
        event_names=event_names,
        group_by=group_by,
        partition_key=partition_key,
        ingest_batch_size=r.number("TRICKLE_INGEST_BATCH_SIZE", 100, int, 1, 1000),
        ingest_batch_window_s=r.number("TRICKLE_INGEST_BATCH_WINDOW_SECONDS", 0, int, 0, 300),
        partial_batch_response=r.flag("TRICKLE_PARTIAL_BATCH_RESPONSE", False),
        max_message_bytes=r.number(
            "TRICKLE_MAX_MESSAGE_BYTES", SQS_MAX_MESSAGE_BYTES, int, 1024, SQS_MAX_MESSAGE_BYTES
        ),
        send_attempts=r.number("TRICKLE_SEND_ATTEMPTS", 4, int, 1, 10),
        drain_budget=r.number("TRICKLE_DRAIN_BUDGET", 500, int, 1, 100_000),
        drain_workers=r.number("TRICKLE_DRAIN_WORKERS", 4, int, 1, 64),
        drain_safety_margin_ms=r.number("TRICKLE_DRAIN_SAFETY_MARGIN_MS", 10_000, int, 0, 900_000),
        visibility_timeout_s=r.number("TRICKLE_VISIBILITY_TIMEOUT_SECONDS", 960, int, 1, 43_200),
        retry_delay_s=r.number("TRICKLE_RETRY_DELAY_SECONDS", 30, int, 1, 43_200),
        retry_max_delay_s=r.number("TRICKLE_RETRY_MAX_DELAY_SECONDS", 900, int, 1, 43_200),
        breaker_failures=r.number("TRICKLE_BREAKER_FAILURES", 5, int, 1, 10_000),
        secret_max_age_s=r.number("TRICKLE_SECRET_MAX_AGE_SECONDS", 300, int, 0, 86_400),
        log_level=r.choice("TRICKLE_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        auth=r.choice("TRICKLE_AUTH", "iam", ("iam", "token")),
        auth_token_parameter=r.env.get("TRICKLE_AUTH_TOKEN_PARAMETER", "").strip() or None,
        archive_bucket=r.env.get("TRICKLE_ARCHIVE_BUCKET", "").strip() or None,
        submit_max_bytes=r.number("TRICKLE_SUBMIT_MAX_BYTES", 262_144, int, 1024, SQS_MAX_MESSAGE_BYTES),
    )
    if not r.errors and settings.attempt_window_s <= 0:
        attempt_s = destination.connect_timeout_s + destination.read_timeout_s
        r.errors.append(
            f"TRICKLE_VISIBILITY_TIMEOUT_SECONDS={settings.visibility_timeout_s} must exceed the connect and"
            f" read timeouts ({attempt_s:g} s) by more than a second: a received message must stay"
            " invisible for longer than one delivery attempt"
        )
    if settings.auth == "token" and settings.auth_token_parameter is None:
        r.errors.append("TRICKLE_AUTH_TOKEN_PARAMETER is required when TRICKLE_AUTH=token")
    if r.errors:
        raise SettingsError("invalid Trickle settings: " + "; ".join(r.errors))
    return settings
