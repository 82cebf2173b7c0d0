"""Typed settings parsed once from the stage's environment variables and the routes file.

Chalice applies a stage's `environment_variables` before it imports `app.py`, so the decorators
can read these values. Every problem is reported at once, so a misconfigured stage fails with one
clear message instead of a KeyError deep inside a handler.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from chalicelib import enrichers, naming
from chalicelib.request_shape import PathTemplate, header_problems, reserved_headers
from chalicelib.routing import Expression, Route

T = TypeVar("T")

EVENT_NAMES = frozenset({"INSERT", "MODIFY", "REMOVE"})
GROUP_BY_CHOICES = ("partition_key", "table", "expression")
ORDERING_CHOICES = ("skip", "strict")
AUTH_CHOICES = ("api_key", "basic", "oauth2_client_credentials", "none")
CLIENT_AUTH_CHOICES = ("basic", "body")  # RFC 6749 2.3.1: HTTP Basic, or client_id/client_secret in the form
SIGNING_CHOICES = ("standard_webhooks",)
METHOD_CHOICES = ("POST", "PUT", "PATCH")
OAUTH2 = "oauth2_client_credentials"
_OAUTH2_FIELDS = ("token_url", "scope", "audience", "client_auth", "token_refresh_skew_s")
SQS_MAX_MESSAGE_BYTES = 1_048_576
# Bulk delivery (issue #25): a request holds at most what a drain's round receives (and one
# TransactWriteItems settles, 100 actions), and a body no larger than a Lambda payload.
BATCH_MAX_ITEMS = 100
BATCH_MAX_BYTES = 6_291_456
_BATCH_FIELDS = ("batch_max_bytes", "batch_wrapper", "batch_results", "batch_failed", "batch_id_field")
UNROUTED_DEAD_LETTER = "dead_letter:"
# The `jobs` function's parts at once by default: a backfill's default segments all run together,
# and an account whose Lambda concurrency quota is still 10 keeps most of it for ingest, the drains
# and the routes. Lambda refuses an SQS trigger's maximum concurrency below 2.
JOBS_MAX_CONCURRENCY = 4
SQS_TRIGGER_MIN_CONCURRENCY = 2


_STREAM_ARN = re.compile(r"^arn:aws[\w-]*:dynamodb:[a-z0-9-]+:\d{12}:table/[A-Za-z0-9_.-]{3,255}/stream/.+$")


def kind(cast: Callable[[str], object]) -> str:
    """What a number setting must be, as a message says it ("an integer", not "a int")."""
    return "an integer" if cast is int else "a number"


class SettingsError(ValueError):
    """The stage's environment variables are missing or malformed."""


def names_no_resources(env: Mapping[str, str]) -> bool:
    """A stage deployed with the merge template names neither its stream nor a queue: its stack
    sets them on the functions (`python -m trickle_deploy.template`)."""
    return not env.get("TRICKLE_STREAM_ARN", "").strip() and not any(
        naming.variable_destination(name, "queue_url") for name in env
    )


def settings_error_message(error: SettingsError, env: Mapping[str, str]) -> str:
    """What `chalice package/deploy` prints for a stage it cannot import: a template stage (prod)
    is packaged by the merge template, which gives it its resources; any other stage, what to fix."""
    if not names_no_resources(env):
        return str(error)
    stage = env.get("TRICKLE_STAGE") or "STAGE"
    return (
        f"stage {stage!r} names no resources, its stack (the merge template) sets them: package it with"
        f" `python -m trickle_deploy.template --stage {stage} --package DIR`, not with chalice"
    )


@dataclass(frozen=True)
class Destination:
    """An API that receives messages: where, with which credentials, in what request shape, at what
    pace, and how it fails. The queues come from the stage, the rest from the routes file (the
    parameters by default from `naming`); a stage's `TRICKLE_DEST_<NAME>_<FIELD>` overrides any
    routes-file value (say, a sandbox URL for dev): `_HEADERS` as a JSON object, `_SECRET_HEADERS`
    as a comma-separated list of names."""

    name: str
    url: str
    # The SSM SecureString of its credentials, whatever the auth kind ("" for auth = none):
    # api_key the key; basic {"username", "password"}; oauth2 {"client_id", "client_secret"}.
    api_key_parameter: str
    api_key_header: str
    api_key_scheme: str  # "" sends the key bare; "Bearer" sends "Bearer <key>"
    auth: str  # one of AUTH_CHOICES; api_key unless the routes file says otherwise
    token_url: str  # oauth2 only ("" otherwise), as the next four
    scope: str  # space-separated; "" asks for none
    audience: str  # "" sends none
    client_auth: str  # "basic" or "body" (CLIENT_AUTH_CHOICES)
    token_refresh_skew_s: int  # a token is renewed this long before its expires_in runs out
    signing: str  # "" (none) or "standard_webhooks"
    signing_parameter: str  # its whsec_ secret(s), whitespace-separated; "" unless signing
    method: str  # POST, PUT or PATCH
    path: PathTemplate | None  # appended to the URL's path, rendered from the body; None: the URL alone
    headers: tuple[tuple[str, str], ...]  # fixed extra headers (not secret), as the routes file orders them
    secret_headers: tuple[str, ...]  # header names whose values are in headers_parameter
    headers_parameter: str  # JSON object {name: value} of exactly secret_headers; "" unless any
    queue_url: str
    dlq_url: str
    connect_timeout_s: float
    read_timeout_s: float
    ordering: str
    max_attempts: int
    rate_limit_per_s: float
    rate_limit_burst: int
    backoff_base_s: int
    backoff_cap_s: int
    heartbeat_s: int  # a message with a task token comes back at least this often for a heartbeat
    group_by: str  # "partition_key", "table" or "expression"
    group_expression: Expression | None
    # Bulk delivery (issue #25): up to batch_max_items messages per request (1: one each, as ever),
    # the body at most batch_max_bytes; the list of item bodies wrapped by batch_wrapper (None: the
    # bare array); batch_results maps a 2xx answer to one status per item (None: the request's
    # status is every item's), or batch_failed to the list of the 0-based indexes of the items that
    # failed (each retried; the others have the request's status); each item carries its message id
    # in batch_id_field.
    batch_max_items: int = 1
    batch_max_bytes: int = SQS_MAX_MESSAGE_BYTES
    batch_wrapper: Expression | None = None
    batch_results: Expression | None = None
    batch_failed: Expression | None = None
    batch_id_field: str = "id"
    # A backfill or replay queues for it only while its queue holds fewer messages (issue #26), at
    # most at its rate limit: live items wait behind about this many. None: not set, so one run of
    # its drain's worth, from its schedule (job_plan.default_max_queued, `wiring.job_worker`).
    backfill_max_queued: int | None = None

    @property
    def drain_function(self) -> str:
        """The name of its scheduled drain in app.py (and of that function's role)."""
        return naming.drain_function(self.name)


@dataclass(frozen=True)
class Settings:
    stream_arn: str
    ledger_table: str
    ledger_ttl_s: int
    # Run notes, redrive jobs and run leases (chalicelib.notes): not in the ledger, which holds
    # only message records.
    notes_table: str
    # The standard queue of backfill and replay tasks (chalicelib.job_plan), worked by `jobs`.
    jobs_queue_url: str
    # How many of its tasks (parts of jobs) the `jobs` function works at once at most: its trigger's
    # maximum concurrency (TRICKLE_JOBS_MAX_CONCURRENCY; Lambda takes 2 to 1000).
    jobs_max_concurrency: int
    destinations: Mapping[str, Destination]
    routes: tuple[Route, ...]
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
    breaker_failures: int
    secret_max_age_s: int
    log_level: str
    auth: str
    auth_token_parameter: str | None
    archive_bucket: str | None
    # Days the bucket keeps what the drains delivered (`delivered/`, read by replays) before its
    # lifecycle rule expires it (TRICKLE_ARCHIVE_DAYS): the bootstrap and the template set the rule.
    archive_days: int
    # Step Functions state machines whose tasks may wait for Trickle (TRICKLE_CALLBACK_STATE_MACHINES,
    # names): the drains' roles may answer only their tasks; empty: task tokens are refused.
    callback_state_machines: tuple[str, ...]
    submit_max_bytes: int
    # What happens to a stream record no route takes (TRICKLE_UNROUTED): counted only (None), or
    # also dead-lettered on this destination's dead-letter queue with the reason.
    unrouted_dead_letters: str | None = None

    @property
    def unrouted(self) -> str:
        """The TRICKLE_UNROUTED value in force: `count` or `dead_letter:<destination>`."""
        return (
            f"{UNROUTED_DEAD_LETTER}{self.unrouted_dead_letters}" if self.unrouted_dead_letters else "count"
        )

    def attempt_window_s(self, destination: Destination) -> float:
        """How long after its receive a message may still be attempted: its visibility timeout less
        one attempt (connect + read) and a second to settle it. An attempt later than that could
        outlast the visibility, and another receive would hand the message out a second time."""
        attempt_s = destination.connect_timeout_s + destination.read_timeout_s
        return self.visibility_timeout_s - attempt_s - 1.0

    def destination(self, name: str) -> Destination:
        try:
            return self.destinations[name]
        except KeyError:
            known = ", ".join(self.destinations)
            raise SettingsError(f"no destination {name!r} in the routes file (it has: {known})") from None

    @property
    def table_name(self) -> str:
        return table_name_from_stream_arn(self.stream_arn)

    @property
    def jobs_queue_name(self) -> str:
        """The tasks queue's name, as the `jobs` function's trigger names it."""
        return urlparse(self.jobs_queue_url).path.rstrip("/").rsplit("/", 1)[-1]


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
        self.routes_file = "routes file"  # becomes "routes file <path>" once the file is read
        self.read: set[str] = set()  # every variable asked for: any other TRICKLE_* one is unknown
        # The routes file's destinations, whose TRICKLE_DEST_<NAME>_<FIELD> a stage may set; None
        # while the file is unread (then nothing is said about such variables).
        self.file_destinations: Collection[str] | None = None

    def in_routes_file(self, problem: str) -> None:
        self.errors.append(f"{self.routes_file}: {problem}")

    def raw(self, name: str) -> str:
        """The variable's value, stripped ("" when unset), noting that it is one the settings read."""
        self.read.add(name)
        return self.env.get(name, "").strip()

    def text(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value:
            return value
        if default is None:
            self.errors.append(f"{name} is required")
            return ""
        return default

    def number(self, name: str, default: T, cast: Callable[[str], T], low: T, high: T) -> T:
        raw = self.raw(name)
        if not raw:
            return default
        try:
            value = cast(raw)
        except ValueError:
            self.errors.append(f"{name}={raw!r} is not {kind(cast)}")
            return default
        if not low <= value <= high:  # type: ignore[operator]
            self.errors.append(f"{name}={raw!r} must be between {low} and {high}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.raw(name).lower()
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


_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")  # fullmatch
ROUTES_FILE = Path(__file__).with_name("routes.toml")
_DESTINATION_FIELDS = frozenset(
    {
        "url",
        "key_parameter",
        "key_header",
        "key_scheme",
        "queue_url",
        "dlq_url",
        "connect_timeout_s",
        "read_timeout_s",
        "ordering",
        "max_attempts",
        "rate_limit_per_s",
        "rate_limit_burst",
        "backoff_base_s",
        "backoff_cap_s",
        "heartbeat_s",
        "group_by",
        "group_expression",
        "auth",
        "token_url",
        "scope",
        "audience",
        "client_auth",
        "token_refresh_skew_s",
        "signing",
        "signing_parameter",
        "method",
        "path",
        "headers",
        "secret_headers",
        "headers_parameter",
        "batch_max_items",
        *_BATCH_FIELDS,
        "backfill_max_queued",
    }
)
_ROUTE_FIELDS = frozenset({"name", "events", "filter", "transform", "enrich", "destinations"})


def _did_you_mean(name: str, known: Collection[str], written: Callable[[str], str] = repr) -> str:
    """A hint at the known name a misspelt one is closest to, if any is close."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {written(close[0])}?)" if close else ""


def _unknown_field(owner: str, field: str, known: Collection[str]) -> str:
    return f"{owner} has an unknown field {field!r}{_did_you_mean(field, known)}"


class _DestinationReader:
    """One destination's values: the stage's `TRICKLE_DEST_<NAME>_<FIELD>` first, then the routes
    file, then the default; errors say which of the two was wrong."""

    def __init__(self, reader: _Reader, name: str, table: Mapping[str, object]) -> None:
        self._r = reader
        self.name = name
        self._table = table
        for unknown in sorted(set(table) - _DESTINATION_FIELDS):
            reader.in_routes_file(_unknown_field(f"destination {name!r}", unknown, _DESTINATION_FIELDS))

    def _raw(self, field: str) -> tuple[str, object] | None:
        env_name = naming.destination_variable(self.name, field)
        value = self._r.raw(env_name)
        if value:
            return env_name, value
        if field in self._table:
            return f"{self._r.routes_file}: destinations.{self.name}.{field}", self._table[field]
        return None

    def text(self, field: str, default: str | None = None) -> str:
        raw = self._raw(field)
        if raw is None:
            if default is None:
                self._r.errors.append(
                    f"destination {self.name!r} needs {naming.destination_variable(self.name, field)}"
                    f" (or {field} in the routes file)"
                )
                return ""
            return default
        where, value = raw
        if not isinstance(value, str):
            self._r.errors.append(f"{where}={value!r} must be a string")
            return default or ""
        return value.strip()

    def number(self, field: str, default: T, cast: Callable[[str], T], low: T, high: T) -> T:
        raw = self._raw(field)
        if raw is None:
            return default
        where, value = raw
        try:
            number = cast(str(value)) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None:
            self._r.errors.append(f"{where}={value!r} is not {kind(cast)}")
            return default
        if not low <= number <= high:  # type: ignore[operator]
            self._r.errors.append(f"{where}={value!r} must be between {low} and {high}")
            return default
        return number

    def where(self, field: str) -> str:
        """The variable (or routes-file field) a value came from, for error messages."""
        raw = self._raw(field)
        return raw[0] if raw else naming.destination_variable(self.name, field)

    def choice(self, field: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(field, default)
        if value not in choices:
            self._r.errors.append(f"{self.where(field)}={value!r} must be one of {', '.join(choices)}")
        return value

    def only_with(self, applies: bool, condition: str, *fields: str) -> None:
        """Refuse each field given where it would be ignored (say, key_header with auth = 'basic'):
        dropping it without a word would leave the stage doing something else than it says."""
        for field in fields if not applies else ():
            if self._raw(field) is not None:
                self._r.errors.append(f"{self.where(field)} applies only with {condition}")

    def headers(self, field: str) -> dict[str, str]:
        """Header names to values: a table in the routes file, a JSON object in the stage variable."""
        raw = self._raw(field)
        if raw is None:
            return {}
        where, value = raw
        from_stage = where == naming.destination_variable(self.name, field)
        if from_stage:
            try:
                value = json.loads(str(value))
            except ValueError:
                value = None
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return {str(name): v for name, v in value.items()}
        shape = "a JSON object" if from_stage else "a table"
        self._r.errors.append(f"{where}={raw[1]!r} must be {shape} of header names to strings")
        return {}

    def names(self, field: str) -> tuple[str, ...]:
        """Header names: a list in the routes file, comma-separated in the stage variable."""
        raw = self._raw(field)
        if raw is None:
            return ()
        where, value = raw
        if isinstance(value, str) and where == naming.destination_variable(self.name, field):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            return tuple(value)
        self._r.errors.append(f"{where}={value!r} must be a list of header names")
        return ()


def _destination(
    r: _Reader, name: str, table: Mapping[str, object], partition_key: str | None, stage: str
) -> Destination:
    d = _DestinationReader(r, name, table)
    url, queue_url, dlq_url = d.text("url"), d.text("queue_url"), d.text("dlq_url")
    _check_url(r, d.where("url"), url)
    _check_url(r, d.where("queue_url"), queue_url, fifo=True)
    _check_url(r, d.where("dlq_url"), dlq_url, fifo=True)
    group_by = d.choice("group_by", "partition_key", GROUP_BY_CHOICES)
    expression_text = d.text("group_expression", "")
    group_expression = _compile(r, d.where("group_expression"), expression_text, Expression.compile)
    if group_by == "expression" and group_expression is None:
        r.errors.append(f"destination {name!r}: group_by = 'expression' needs a group_expression")
    if group_by == "partition_key" and partition_key is None:
        r.errors.append(f"destination {name!r} groups by partition key: TRICKLE_PARTITION_KEY is required")
    auth = d.choice("auth", "api_key", AUTH_CHOICES)
    oauth2 = auth == OAUTH2
    if auth in AUTH_CHOICES:
        d.only_with(auth == "api_key", "auth = 'api_key'", "key_header", "key_scheme")
        d.only_with(oauth2, f"auth = {OAUTH2!r}", *_OAUTH2_FIELDS)
        d.only_with(auth != "none", "an auth other than 'none'", "key_parameter")
    token_url = d.text("token_url") if oauth2 else ""
    _check_url(r, d.where("token_url"), token_url)
    signing = d.text("signing", "")
    if signing and signing not in SIGNING_CHOICES:
        r.errors.append(
            f"{d.where('signing')}={signing!r} must be {' or '.join(SIGNING_CHOICES)} (or left out: unsigned)"
        )
    d.only_with(bool(signing), "signing", "signing_parameter")
    fixed_headers, secret_headers = d.headers("headers"), d.names("secret_headers")
    d.only_with(bool(secret_headers), "secret_headers", "headers_parameter")
    key_header = d.text("key_header", "x-api-key")
    if auth in AUTH_CHOICES:
        for problem in header_problems(fixed_headers, secret_headers, reserved_headers(auth, key_header)):
            r.errors.append(f"destination {name!r}: {problem}")

    batch_max_items = d.number("batch_max_items", 1, int, 1, BATCH_MAX_ITEMS)
    batched = batch_max_items > 1
    d.only_with(batched, "batch_max_items > 1", *_BATCH_FIELDS)
    path = _compile(r, d.where("path"), d.text("path", ""), PathTemplate.compile)
    if batched and path is not None and path.placeholders:
        r.errors.append(
            f"{d.where('path')}={path.text!r} has placeholders, but a request of several messages has one"
            " path: keep batch_max_items = 1 or make the path fixed"
        )
    results_text = d.text("batch_results", "") if batched else ""
    failed_text = d.text("batch_failed", "") if batched else ""
    if results_text and failed_text:
        r.errors.append(
            f"{d.where('batch_results')} and {d.where('batch_failed')} both map the answer to the items:"
            " give one of them"
        )
    batch_id_field = d.text("batch_id_field", "id") if batched else "id"
    if not batch_id_field:
        r.errors.append(
            f"{d.where('batch_id_field')} must name the field each item carries its message id in"
        )

    rate_limit_per_s = d.number("rate_limit_per_s", 10.0, float, 0.01, 10_000.0)

    def parameter(field: str, default: Callable[[str, str], str], needed: bool) -> str:
        """A parameter's name, by default the stage's name for it (required without a stage)."""
        return d.text(field, default(stage, name) if stage else None) if needed else ""

    destination = Destination(
        name=name,
        url=url,
        api_key_parameter=parameter("key_parameter", naming.key_parameter, auth != "none"),
        api_key_header=key_header,
        api_key_scheme=d.text("key_scheme", ""),
        auth=auth,
        token_url=token_url,
        scope=d.text("scope", "") if oauth2 else "",
        audience=d.text("audience", "") if oauth2 else "",
        client_auth=d.choice("client_auth", "basic", CLIENT_AUTH_CHOICES) if oauth2 else "basic",
        token_refresh_skew_s=d.number("token_refresh_skew_s", 60, int, 0, 3600) if oauth2 else 60,
        signing=signing,
        signing_parameter=parameter("signing_parameter", naming.signing_parameter, bool(signing)),
        method=d.choice("method", "POST", METHOD_CHOICES),
        path=path,
        headers=tuple(fixed_headers.items()),
        secret_headers=secret_headers,
        headers_parameter=parameter("headers_parameter", naming.headers_parameter, bool(secret_headers)),
        queue_url=queue_url,
        dlq_url=dlq_url,
        connect_timeout_s=d.number("connect_timeout_s", 3.05, float, 0.1, 60.0),
        read_timeout_s=d.number("read_timeout_s", 10.0, float, 0.1, 600.0),
        ordering=d.choice("ordering", "skip", ORDERING_CHOICES),
        max_attempts=d.number("max_attempts", 5, int, 1, 100),
        rate_limit_per_s=rate_limit_per_s,
        rate_limit_burst=d.number("rate_limit_burst", 5, int, 1, 10_000),
        backoff_base_s=d.number("backoff_base_s", 30, int, 1, 43_200),
        backoff_cap_s=d.number("backoff_cap_s", 900, int, 1, 43_200),
        heartbeat_s=d.number("heartbeat_s", 60, int, 1, 43_200),
        group_by=group_by,
        group_expression=group_expression,
        batch_max_items=batch_max_items,
        batch_max_bytes=(
            d.number("batch_max_bytes", SQS_MAX_MESSAGE_BYTES, int, 1024, BATCH_MAX_BYTES)
            if batched
            else SQS_MAX_MESSAGE_BYTES
        ),
        batch_wrapper=_compile(r, d.where("batch_wrapper"), d.text("batch_wrapper", ""), Expression.compile)
        if batched
        else None,
        batch_results=_compile(r, d.where("batch_results"), results_text, Expression.compile),
        batch_failed=_compile(r, d.where("batch_failed"), failed_text, Expression.compile),
        batch_id_field=batch_id_field,
        backfill_max_queued=d.number("backfill_max_queued", None, int, 10, 10_000_000),
    )
    if destination.backoff_cap_s < destination.backoff_base_s:
        r.errors.append(f"destination {name!r}: backoff_cap_s must be at least backoff_base_s")
    return destination


def _compile(r: _Reader, what: str, text: object, compiler: Callable[[str], T]) -> T | None:
    """`text` compiled (a JMESPath expression, a path template); None if it is not given, or if it
    will not compile (the error is kept)."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        r.errors.append(f"{what} must be a string")
        return None
    try:
        return compiler(text)
    except ValueError as exc:
        r.errors.append(f"{what}: {exc}")
        return None


def _route(r: _Reader, index: int, table: Mapping[str, object], destinations: Collection[str]) -> Route:
    name = table.get("name")
    label = f"route {name!r}" if isinstance(name, str) and name else f"route #{index + 1}"
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        r.in_routes_file(f"{label} needs a name of lowercase letters, digits and _")
    for unknown in sorted(set(table) - _ROUTE_FIELDS):
        r.in_routes_file(_unknown_field(label, unknown, _ROUTE_FIELDS))
    events = table.get("events", ["INSERT"])
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(e, str) for e in events)
        or not set(events) <= EVENT_NAMES
    ):
        r.in_routes_file(f"{label}: events must list some of {', '.join(sorted(EVENT_NAMES))}")
        events = []
    targets = table.get("destinations")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        r.in_routes_file(f"{label} needs a list of destinations")
        targets = []
    for target in targets:
        if target not in destinations:
            r.in_routes_file(f"{label} names an unknown destination {target!r}")
    enrich = table.get("enrich")
    if enrich is not None and (not isinstance(enrich, str) or enrich not in enrichers.names()):
        r.in_routes_file(
            f"{label}: enrich={enrich!r} is not a registered enricher"
            f" (registered: {', '.join(enrichers.names()) or 'none'})"
        )
    return Route(
        name=str(name),
        events=frozenset(str(e) for e in events),
        destinations=tuple(dict.fromkeys(str(t) for t in targets)),
        filter=_compile(r, f"{r.routes_file}: {label} filter", table.get("filter"), Expression.compile),
        transform=_compile(
            r, f"{r.routes_file}: {label} transform", table.get("transform"), Expression.compile
        ),
        enrich=enrich if isinstance(enrich, str) else None,
    )


def destination_names(env: Mapping[str, str]) -> list[str]:
    """The destinations the stage's routes file names (what a template creates queues for),
    without reading the rest of the stage; `load_settings` reports any problem with the file."""
    document = _routes_file(_Reader(env)) or {}
    tables = document.get("destinations", {})
    return [name for name in tables if _NAME.fullmatch(name)] if isinstance(tables, dict) else []


def _routes_file(r: _Reader) -> Mapping[str, object] | None:
    """The parsed file, or None (with the one error that says why) when it cannot be read: its
    contents are then unknown, so nothing else is said about them."""
    path = Path(r.text("TRICKLE_ROUTES_FILE", str(ROUTES_FILE)))
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        r.errors.append(f"TRICKLE_ROUTES_FILE: cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError as exc:
        r.errors.append(f"routes file {path} is not UTF-8 text: {exc.reason}")
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        r.errors.append(f"routes file {path} is not valid TOML: {exc}")
    else:
        r.routes_file = f"routes file {path}"
        return document
    return None


_TOP_LEVEL = {"destinations": "[destinations.<name>] tables", "routes": "[[routes]] entries"}


def _toml_shape(value: object) -> tuple[str, str]:
    """What a top-level name holding `value` is, and how the file writes such a name: a table
    `[name]` or `[[name]]`, or a key."""
    if isinstance(value, dict):
        return "table", "[{}]"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "table", "[[{}]]"
    return "key", "'{}'"


def _destinations_and_routes(
    r: _Reader, partition_key: str | None, stage: str
) -> tuple[dict[str, Destination], tuple[Route, ...]]:
    document = _routes_file(r)
    if document is None:
        return {}, ()
    for name, value in sorted(document.items()):
        if name in _TOP_LEVEL:
            continue
        kind, shape = _toml_shape(value)
        hint = _did_you_mean(name, _TOP_LEVEL, shape.format)
        r.in_routes_file(
            f"unknown {kind} {shape.format(name)}{hint}; a routes file holds only"
            f" {' and '.join(_TOP_LEVEL.values())}"
        )
    tables = document.get("destinations", {})
    routes = document.get("routes", [])
    r.file_destinations = [str(name) for name in tables] if isinstance(tables, dict) else []
    if not isinstance(tables, dict) or not tables:
        r.in_routes_file("[destinations.<name>] tables are required")
        tables = {}
    if not isinstance(routes, list) or not routes:
        r.in_routes_file("at least one [[routes]] entry is required")
        routes = []
    destinations: dict[str, Destination] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            r.in_routes_file(
                f"destinations.{name} is not a table: each destination is a [destinations.<name>] table"
            )
        elif not _NAME.fullmatch(name):
            r.in_routes_file(f"destination {name!r} needs a name of lowercase letters, digits and _")
        else:
            destinations[name] = _destination(r, name, table, partition_key, stage)
    for index, table in enumerate(routes):
        if not isinstance(table, dict):
            r.in_routes_file(f"routes entry #{index + 1} is not a table: each route is a [[routes]] entry")
    parsed = tuple(_route(r, i, t, destinations) for i, t in enumerate(routes) if isinstance(t, dict))
    names = [route.name for route in parsed]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        r.in_routes_file(f"two routes are named {duplicate!r}")
    routed = {d for route in parsed for d in route.destinations}
    for unused in sorted(set(destinations) - routed):
        r.in_routes_file(f"no route sends to destination {unused!r}")
    return destinations, parsed


_PREFIX = "TRICKLE_"
# TRICKLE_* variables a stage or the environment the app runs in legitimately holds that the
# settings do not read; any other unread TRICKLE_* name is a mistake and stops the import.
NOT_READ_BY_THE_APP = {
    # Written by the bootstrap and set on the functions by the merge template; read by
    # `trickle_deploy.policies` and `trickle_deploy.stream_settings` (the stream's failure queue).
    "TRICKLE_INGEST_FAILURE_QUEUE_URL": "the ingest's failure queue, read by the deploy tools",
    # Written by the bootstrap; read by `trickle_deploy.policies` for the drains' kms:Decrypt.
    "TRICKLE_API_KEY_KMS_KEY_ARN": "the API keys' KMS key, read by the deploy tools",
    # Chooses the emulator of `./dev test` and the integration suite; the chalice test client and
    # the local runtime import the app in that same process environment.
    "TRICKLE_EMULATOR": "the test suite's emulator",
}


def _unknown_variables(r: _Reader) -> None:
    """Refuse every TRICKLE_* variable the settings neither read nor allow: a misspelt name would
    otherwise leave its setting at the default without a word."""
    destinations = r.file_destinations or ()
    known = (
        r.read
        | set(NOT_READ_BY_THE_APP)
        | {naming.destination_variable(d, field) for d in destinations for field in _DESTINATION_FIELDS}
    )
    for name in sorted(n for n in r.env if n.startswith(_PREFIX) and n not in known):
        if name.startswith(naming.DESTINATION_VARIABLE_PREFIX):
            if r.file_destinations is None:
                continue  # the routes file is unread (one error says why): its destinations are unknown
            why = f": {_unknown_destination_variable(name, destinations)}"
        else:
            why = ""
        hint = _did_you_mean(
            name.removeprefix(_PREFIX), {k.removeprefix(_PREFIX) for k in known}, _PREFIX.__add__
        )
        r.errors.append(f"unknown variable {name}{hint}{why}")


def _unknown_destination_variable(name: str, destinations: Collection[str]) -> str:
    """What is wrong with a TRICKLE_DEST_<NAME>_<FIELD> no destination has."""
    owner = naming.variable_owner(name, destinations)
    if owner is not None:
        prefix = naming.destination_variable(owner, "")
        return f"destination {owner!r} has no field {name.removeprefix(prefix).lower()!r}"
    for field in sorted(_DESTINATION_FIELDS):
        named = naming.variable_destination(name, field)
        if named:
            return f"no destination {named!r} in the routes file (it has: {', '.join(destinations)})"
    return (
        f"{naming.destination_variable('<name>', '<field>')} sets a field of a destination of the routes file"
    )


_STATE_MACHINE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


def _state_machines(r: _Reader) -> tuple[str, ...]:
    """Names, comma-separated; an ARN is refused (the stage's account and region build it)."""
    names = tuple(n.strip() for n in r.raw("TRICKLE_CALLBACK_STATE_MACHINES").split(",") if n.strip())
    for name in names:
        if not _STATE_MACHINE_NAME.fullmatch(name):
            r.errors.append(
                f"TRICKLE_CALLBACK_STATE_MACHINES: {name!r} is not a state machine name"
                " (1-80 letters, digits, - and _; no ARN)"
            )
    return names


def _unrouted(r: _Reader, destinations: Collection[str]) -> str | None:
    """TRICKLE_UNROUTED: `count` (the default), or `dead_letter:<destination>`, whose dead-letter
    queue takes the records no route takes; None when they are only counted."""
    value = r.text("TRICKLE_UNROUTED", "count")
    target = value.removeprefix(UNROUTED_DEAD_LETTER)
    if value == "count":
        return None
    if value.startswith(UNROUTED_DEAD_LETTER) and target in destinations:
        return target
    if destinations or not value.startswith(UNROUTED_DEAD_LETTER):  # no destinations: the file said why
        known = f" (the routes file's: {', '.join(destinations)})" if destinations else ""
        r.errors.append(
            f"TRICKLE_UNROUTED={value!r} must be count or {UNROUTED_DEAD_LETTER}<destination>{known}"
        )
    return None


def _jobs_queue_url(r: _Reader) -> str:
    """TRICKLE_JOBS_QUEUE_URL: the bootstrap (or the stack) creates it; a standard queue, since its
    tasks are retried, delayed and worked side by side, in no order."""
    url = r.raw("TRICKLE_JOBS_QUEUE_URL")
    if not url:
        r.errors.append("TRICKLE_JOBS_QUEUE_URL is required (the bootstrap sets it: run it again)")
    _check_url(r, "TRICKLE_JOBS_QUEUE_URL", url)
    if url.endswith(".fifo"):
        r.errors.append(f"TRICKLE_JOBS_QUEUE_URL={url!r} must name a standard queue, not a FIFO one")
    return url


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse the TRICKLE_* variables and the routes file; raise SettingsError listing every problem."""
    r = _Reader(os.environ if env is None else env)
    stage = r.raw("TRICKLE_STAGE")
    stream_arn = r.text("TRICKLE_STREAM_ARN")
    if stream_arn and not _STREAM_ARN.match(stream_arn):
        r.errors.append(f"TRICKLE_STREAM_ARN={stream_arn!r} is not a DynamoDB stream ARN")
    partition_key = r.raw("TRICKLE_PARTITION_KEY") or None
    destinations, routes = _destinations_and_routes(r, partition_key, stage)
    settings = Settings(
        stream_arn=stream_arn,
        ledger_table=r.text("TRICKLE_LEDGER_TABLE"),
        ledger_ttl_s=r.number("TRICKLE_LEDGER_TTL_DAYS", 30, int, 1, 3650) * 86_400,
        notes_table=r.text("TRICKLE_NOTES_TABLE"),
        jobs_queue_url=_jobs_queue_url(r),
        jobs_max_concurrency=r.number(
            "TRICKLE_JOBS_MAX_CONCURRENCY", JOBS_MAX_CONCURRENCY, int, SQS_TRIGGER_MIN_CONCURRENCY, 1000
        ),
        destinations=destinations,
        routes=routes,
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
        breaker_failures=r.number("TRICKLE_BREAKER_FAILURES", 5, int, 1, 10_000),
        secret_max_age_s=r.number("TRICKLE_SECRET_MAX_AGE_SECONDS", 300, int, 0, 86_400),
        log_level=r.choice("TRICKLE_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        auth=r.choice("TRICKLE_AUTH", "iam", ("iam", "token")),
        auth_token_parameter=r.raw("TRICKLE_AUTH_TOKEN_PARAMETER") or None,
        archive_bucket=r.raw("TRICKLE_ARCHIVE_BUCKET") or None,
        archive_days=r.number("TRICKLE_ARCHIVE_DAYS", 30, int, 1, 3650),
        submit_max_bytes=r.number("TRICKLE_SUBMIT_MAX_BYTES", 262_144, int, 1024, SQS_MAX_MESSAGE_BYTES),
        callback_state_machines=_state_machines(r),
        unrouted_dead_letters=_unrouted(r, destinations),
    )
    for destination in destinations.values() if not r.errors else ():
        if settings.attempt_window_s(destination) <= 0:
            attempt_s = destination.connect_timeout_s + destination.read_timeout_s
            r.errors.append(
                f"TRICKLE_VISIBILITY_TIMEOUT_SECONDS={settings.visibility_timeout_s} must exceed destination"
                f" {destination.name!r}'s connect and read timeouts ({attempt_s:g} s) by more than a second:"
                " a received message must stay invisible for longer than one delivery attempt"
            )
    for destination in destinations.values():
        if destination.batch_max_items > 1 and destination.batch_max_bytes < settings.max_message_bytes:
            r.errors.append(
                f"destination {destination.name!r}: batch_max_bytes={destination.batch_max_bytes} must be at"
                f" least TRICKLE_MAX_MESSAGE_BYTES={settings.max_message_bytes}: one message must always fit"
                " in a request"
            )
    if settings.notes_table and settings.notes_table == settings.ledger_table:
        r.errors.append(
            f"TRICKLE_NOTES_TABLE={settings.notes_table!r} names the ledger table: run notes, redrive jobs"
            " and leases have a table of their own"
        )
    if settings.auth == "token" and settings.auth_token_parameter is None:
        r.errors.append("TRICKLE_AUTH_TOKEN_PARAMETER is required when TRICKLE_AUTH=token")
    _unknown_variables(r)
    if r.errors:
        where = f" for stage {stage!r}" if stage else ""
        raise SettingsError(f"invalid Trickle settings{where}: " + "; ".join(r.errors))
    return settings
