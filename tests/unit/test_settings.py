"""Stage settings from environment variables and the routes file (chalicelib/settings.py)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from chalicelib import enrichers
from chalicelib.settings import (
    NOT_READ_BY_THE_APP,
    ROUTES_FILE,
    SQS_MAX_MESSAGE_BYTES,
    Destination,
    Settings,
    SettingsError,
    load_settings,
    table_name_from_stream_arn,
)
from tests.unit.conftest import BASE_ENV, SHIPPED_ENV, env_with, routes_env

MakeSettings = Callable[..., Settings]
Routes = Callable[..., dict[str, str | None]]
WriteToml = Callable[[str], dict[str, str | None]]

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/items/stream/2026-01-01T00:00:00.000"
ORDERS_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo"
ORDERS_DLQ = "https://sqs.us-east-1.amazonaws.com/123456789012/dlq.fifo"
# What every destination needs from its stage, for the suite's two destinations.
REQUIRED_PER_DESTINATION = (
    ("orders", "url"),
    ("orders", "queue_url"),
    ("orders", "dlq_url"),
    ("orders", "key_parameter"),
    ("crm", "url"),
    ("crm", "queue_url"),
    ("crm", "dlq_url"),
    ("crm", "key_parameter"),
)
# Destination fields whose attribute on `Destination` has another name.
ATTRIBUTE = {
    "key_parameter": "api_key_parameter",
    "key_header": "api_key_header",
    "key_scheme": "api_key_scheme",
}


def error_of(env: dict[str, str]) -> str:
    """The settings error, with the routes file's path, which every problem found in it names,
    written as FILE."""
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    return str(caught.value).replace(f"routes file {env.get('TRICKLE_ROUTES_FILE')}:", "routes file FILE:")


def variable(destination: str, field: str) -> str:
    return f"TRICKLE_DEST_{destination.upper()}_{field.upper()}"


@pytest.fixture
def toml(tmp_path: Path) -> WriteToml:
    """`toml('[destinations.orders] ...')` -> the env override that points at that routes file."""
    counter = itertools.count()

    def _write(text: str) -> dict[str, str | None]:
        path = tmp_path / f"routes-{next(counter)}.toml"
        path.write_text(text, encoding="utf-8")
        return routes_env(path)

    return _write


def one_destination(fields: str = "", route: str = "") -> str:
    """A routes file with destination `orders` (with `fields`) and route `only` (with `route`)."""
    return (
        f'[destinations.orders]\n{fields}\n\n[[routes]]\nname = "only"\ndestinations = ["orders"]\n{route}\n'
    )


# --- what a good stage gets ---------------------------------------------------------------------------


def test_defaults_from_the_suite_env(settings: Settings) -> None:
    assert settings.stream_arn == STREAM_ARN
    assert settings.table_name == "items"
    assert list(settings.destinations) == ["orders", "crm"]
    assert settings.destination("orders") == Destination(
        name="orders",
        url="https://api.example.com/items",
        api_key_parameter="/trickle/test/api-key",
        api_key_header="x-api-key",
        api_key_scheme="",
        auth="api_key",
        token_url="",
        scope="",
        audience="",
        client_auth="basic",
        token_refresh_skew_s=60,
        signing="",
        signing_parameter="",
        method="POST",
        path=None,
        headers=(),
        secret_headers=(),
        headers_parameter="",
        queue_url=ORDERS_QUEUE,
        dlq_url=ORDERS_DLQ,
        connect_timeout_s=3.05,
        read_timeout_s=10.0,
        ordering="skip",
        max_attempts=5,
        rate_limit_per_s=10.0,
        rate_limit_burst=5,
        backoff_base_s=30,
        backoff_cap_s=900,
        heartbeat_s=60,
        group_by="partition_key",
        group_expression=None,
        backfill_max_queued=None,
    )
    crm = settings.destination("crm")
    assert (crm.url, crm.api_key_parameter) == ("https://crm.example.com/contacts", "/trickle/test/crm-key")
    assert (crm.api_key_header, crm.api_key_scheme) == ("Authorization", "Bearer")
    assert crm.group_by == "expression"
    assert crm.group_expression is not None
    assert crm.group_expression.text == "keys.pk"
    assert crm.group_expression.search({"keys": {"pk": "user-1"}}) == "user-1"
    assert [d.drain_function for d in settings.destinations.values()] == ["drain_orders", "drain_crm"]
    assert settings.ledger_table == "trickle-test-ledger"
    assert settings.ledger_ttl_s == 30 * 86_400
    assert settings.partition_key == "pk"
    assert settings.ingest_batch_size == 100
    assert settings.ingest_batch_window_s == 0
    assert settings.partial_batch_response is False
    assert settings.max_message_bytes == SQS_MAX_MESSAGE_BYTES == 1_048_576
    assert settings.send_attempts == 4
    assert settings.drain_budget == 500
    assert settings.drain_workers == 4
    assert settings.drain_safety_margin_ms == 10_000
    assert settings.visibility_timeout_s == 960
    assert settings.breaker_failures == 5
    assert settings.secret_max_age_s == 300
    assert settings.log_level == "INFO"
    assert (settings.auth, settings.auth_token_parameter) == ("iam", None)
    assert settings.archive_bucket is None
    assert settings.submit_max_bytes == 262_144
    assert (settings.unrouted, settings.unrouted_dead_letters) == ("count", None)


def test_routes_of_the_suite_file(settings: Settings) -> None:
    everything, customers = settings.routes
    assert (everything.name, everything.events, everything.destinations) == (
        "everything",
        frozenset({"INSERT"}),
        ("orders",),
    )
    assert (everything.filter, everything.transform, everything.enrich) == (None, None, None)
    assert customers.name == "customers"
    assert customers.events == frozenset({"INSERT", "MODIFY"})
    assert customers.destinations == ("crm",)
    assert customers.filter is not None
    assert customers.filter.text == "item.type == 'customer'"
    assert customers.transform is not None
    assert customers.transform.text.startswith("{customer: keys.pk")


def test_the_shipped_routes_file_loads(base_env: dict[str, str]) -> None:
    """Without TRICKLE_ROUTES_FILE the app reads the example packaged in chalicelib/."""
    del base_env["TRICKLE_ROUTES_FILE"]
    settings = load_settings(base_env | SHIPPED_ENV)
    assert ROUTES_FILE.name == "routes.toml"
    assert ROUTES_FILE.parent.name == "chalicelib"
    assert [r.name for r in settings.routes] == ["orders", "customers", "invoices", "billing", "orders_bulk"]
    orders, customers, invoices, billing, orders_bulk = settings.routes
    assert orders.enrich == "customer"
    assert customers.events == frozenset({"INSERT", "MODIFY", "REMOVE"})
    assert invoices.destinations == ("orders", "crm")
    assert (billing.destinations, billing.events) == (("billing",), frozenset({"INSERT", "MODIFY"}))
    api = settings.destination("billing")
    assert (api.auth, api.token_url, api.scope, api.signing, api.method, api.headers) == (
        "oauth2_client_credentials",
        "https://billing.example.com/oauth/token",
        "invoices:write",
        "standard_webhooks",
        "PUT",
        (("X-Source", "trickle"),),
    )
    assert api.path is not None
    assert api.path.render({"item": {"invoice_id": "INV-2026/7"}}) == "/invoices/INV-2026%2F7"
    crm = settings.destination("crm")
    assert (crm.ordering, crm.max_attempts, crm.rate_limit_per_s, crm.backoff_cap_s) == (
        "strict",
        8,
        2.0,
        1800,
    )
    assert orders_bulk.filter is not None and orders.filter is not None
    assert (orders_bulk.destinations, orders_bulk.filter.text) == (("orders_bulk",), orders.filter.text)
    bulk = settings.destination("orders_bulk")
    assert (bulk.batch_max_items, bulk.batch_max_bytes, bulk.batch_id_field) == (25, 1_048_576, "id")
    assert bulk.batch_wrapper is not None and bulk.batch_results is not None
    assert (bulk.batch_wrapper.text, bulk.batch_results.text) == ("{records: @}", "results[].status")


def test_the_backfill_mark_is_unset_unless_given_the_worker_makes_it_a_drain_runs_worth(
    make_settings: MakeSettings,
) -> None:
    assert make_settings().destination("orders").backfill_max_queued is None
    given = make_settings(TRICKLE_DEST_ORDERS_BACKFILL_MAX_QUEUED="150").destination("orders")
    assert given.backfill_max_queued == 150


def test_unknown_destination_lookup_names_the_known_ones(settings: Settings) -> None:
    with pytest.raises(SettingsError, match=r"no destination 'billing'.*orders, crm"):
        settings.destination("billing")


# --- a destination's values: the stage, then the routes file, then the default ----------------------


@pytest.mark.parametrize(
    ("field", "in_file", "in_stage", "expected"),
    [
        pytest.param("max_attempts", None, None, 5, id="max_attempts-default"),
        pytest.param("max_attempts", "7", None, 7, id="max_attempts-file"),
        pytest.param("max_attempts", None, "3", 3, id="max_attempts-stage"),
        pytest.param("max_attempts", "7", "3", 3, id="max_attempts-stage-over-file"),
        pytest.param("max_attempts", "7", "   ", 7, id="max_attempts-blank-stage-is-unset"),
        pytest.param("rate_limit_per_s", None, None, 10.0, id="rate-default"),
        pytest.param("rate_limit_per_s", "2.5", None, 2.5, id="rate-file"),
        pytest.param("rate_limit_per_s", "2", None, 2.0, id="rate-file-integer-is-float"),
        pytest.param("rate_limit_per_s", "2.5", "4", 4.0, id="rate-stage-over-file"),
        pytest.param("rate_limit_burst", "20", None, 20, id="burst-file"),
        pytest.param("connect_timeout_s", "1.5", None, 1.5, id="connect-file"),
        pytest.param("read_timeout_s", "20", None, 20.0, id="read-file"),
        pytest.param("read_timeout_s", "20", " 30.5 ", 30.5, id="read-stage-stripped"),
        pytest.param("backoff_base_s", "45", None, 45, id="base-file"),
        pytest.param("backoff_cap_s", "3600", "1200", 1200, id="cap-stage-over-file"),
        pytest.param("ordering", None, None, "skip", id="ordering-default"),
        pytest.param("ordering", '"strict"', None, "strict", id="ordering-file"),
        pytest.param("ordering", '"strict"', "skip", "skip", id="ordering-stage-over-file"),
        pytest.param("key_header", None, None, "x-api-key", id="header-default"),
        pytest.param("key_header", '"Authorization"', None, "Authorization", id="header-file"),
        pytest.param("key_header", '"Authorization"', "X-Key", "X-Key", id="header-stage-over-file"),
        pytest.param("key_scheme", None, None, "", id="scheme-default"),
        pytest.param("key_scheme", '"Bearer"', None, "Bearer", id="scheme-file"),
        pytest.param("group_by", '"table"', None, "table", id="group-file"),
        pytest.param("group_by", '"table"', "partition_key", "partition_key", id="group-stage-over-file"),
        pytest.param("url", '"https://file.example/x"', None, "https://file.example/x", id="url-file"),
        pytest.param(
            "url",
            '"https://file.example/x"',
            "https://stage.example/y",
            "https://stage.example/y",
            id="url-stage",
        ),
        pytest.param("key_parameter", '"/from/file"', None, "/from/file", id="key-file"),
        pytest.param("backfill_max_queued", None, None, None, id="backfill-mark-default"),  # a run's worth
        pytest.param("backfill_max_queued", "2000", None, 2000, id="backfill-mark-file"),
        pytest.param("backfill_max_queued", "2000", "50", 50, id="backfill-mark-stage-over-file"),
    ],
)
def test_destination_values_stage_over_file_over_default(
    make_settings: MakeSettings,
    toml: WriteToml,
    field: str,
    in_file: str | None,
    in_stage: str | None,
    expected: object,
) -> None:
    fields = f"{field} = {in_file}" if in_file is not None else ""
    # None removes the stage variable (BASE_ENV sets some of them), so the file or the default speaks.
    overrides: dict[str, str | None] = {**toml(one_destination(fields)), variable("orders", field): in_stage}
    value = getattr(make_settings(**overrides).destination("orders"), ATTRIBUTE.get(field, field))
    assert value == expected
    assert type(value) is type(expected)


def test_stage_variables_are_per_destination(make_settings: MakeSettings) -> None:
    settings = make_settings(TRICKLE_DEST_CRM_MAX_ATTEMPTS="9", TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1")
    assert settings.destination("crm").max_attempts == 9
    assert settings.destination("orders").max_attempts == 5
    assert settings.destination("orders").rate_limit_per_s == 1.0
    assert settings.destination("crm").rate_limit_per_s == 10.0


def test_group_expression_can_come_from_the_stage(make_settings: MakeSettings) -> None:
    settings = make_settings(
        TRICKLE_DEST_ORDERS_GROUP_BY="expression", TRICKLE_DEST_ORDERS_GROUP_EXPRESSION="item.t"
    )
    orders = settings.destination("orders")
    assert orders.group_by == "expression"
    assert orders.group_expression is not None
    assert orders.group_expression.search({"item": {"t": "x"}}) == "x"


def test_global_values_are_parsed_with_types(make_settings: MakeSettings) -> None:
    settings = make_settings(
        TRICKLE_PARTITION_KEY="  tenant  ",
        TRICKLE_DEST_ORDERS_GROUP_BY="table",
        TRICKLE_INGEST_BATCH_SIZE="250",
        TRICKLE_INGEST_BATCH_WINDOW_SECONDS="5",
        TRICKLE_PARTIAL_BATCH_RESPONSE="TRUE",
        TRICKLE_MAX_MESSAGE_BYTES="262144",
        TRICKLE_SEND_ATTEMPTS="6",
        TRICKLE_DRAIN_BUDGET="1000",
        TRICKLE_DRAIN_WORKERS="8",
        TRICKLE_DRAIN_SAFETY_MARGIN_MS="2500",
        TRICKLE_VISIBILITY_TIMEOUT_SECONDS="120",
        TRICKLE_SECRET_MAX_AGE_SECONDS="0",
        TRICKLE_BREAKER_FAILURES="12",
        TRICKLE_LOG_LEVEL="DEBUG",
        TRICKLE_LEDGER_TABLE="crm-ledger",
        TRICKLE_LEDGER_TTL_DAYS="7",
        TRICKLE_ARCHIVE_BUCKET=" archive ",
        TRICKLE_SUBMIT_MAX_BYTES="2048",
    )
    assert settings.partition_key == "tenant"
    assert settings.partial_batch_response is True
    numbers = (
        settings.ingest_batch_size,
        settings.ingest_batch_window_s,
        settings.max_message_bytes,
        settings.send_attempts,
        settings.drain_budget,
        settings.drain_workers,
        settings.drain_safety_margin_ms,
        settings.visibility_timeout_s,
        settings.secret_max_age_s,
        settings.breaker_failures,
        settings.ledger_ttl_s,
        settings.submit_max_bytes,
    )
    assert numbers == (250, 5, 262144, 6, 1000, 8, 2500, 120, 0, 12, 7 * 86_400, 2048)
    assert all(type(n) is int for n in numbers)
    assert (settings.log_level, settings.ledger_table, settings.archive_bucket) == (
        "DEBUG",
        "crm-ledger",
        "archive",
    )


def test_values_are_stripped(base_env: dict[str, str]) -> None:
    env = {k: f"  {v}  " for k, v in base_env.items()}
    env["TRICKLE_SEND_ATTEMPTS"] = "   "
    settings = load_settings(env)
    assert settings.destination("orders").queue_url == ORDERS_QUEUE
    assert settings.destination("orders").api_key_parameter == "/trickle/test/api-key"
    assert settings.send_attempts == 4


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch, base_env: dict[str, str]) -> None:
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRICKLE_DRAIN_BUDGET", "7")
    monkeypatch.setenv("TRICKLE_DEST_CRM_MAX_ATTEMPTS", "2")
    settings = load_settings()
    assert settings.drain_budget == 7
    assert settings.destination("crm").max_attempts == 2


def test_settings_are_immutable(settings: Settings) -> None:
    with pytest.raises(AttributeError):
        settings.ledger_table = "elsewhere"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.destination("orders").queue_url = "https://elsewhere.example/q.fifo"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.routes[0].destinations = ("crm",)  # type: ignore[misc]


# --- errors name the variable, or the routes-file field, and the stage --------------------------------


def test_error_names_the_stage(base_env: dict[str, str]) -> None:
    env = {**base_env, "TRICKLE_STAGE": " prod ", "TRICKLE_DRAIN_BUDGET": "0"}
    assert error_of(env) == (
        "invalid Trickle settings for stage 'prod': TRICKLE_DRAIN_BUDGET='0' must be between 1 and 100000"
    )
    del env["TRICKLE_STAGE"]
    assert error_of(env).startswith("invalid Trickle settings: TRICKLE_DRAIN_BUDGET")


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="TRICKLE_STREAM_ARN"):
        load_settings({})


def test_every_missing_variable_in_one_error() -> None:
    """An empty stage reads the shipped routes file and lists everything it lacks at once (not the
    URLs: the shipped routes file has them)."""
    message = error_of({})
    assert "TRICKLE_STREAM_ARN is required" in message
    assert "TRICKLE_LEDGER_TABLE is required" in message
    assert "TRICKLE_NOTES_TABLE is required" in message
    for destination, field in REQUIRED_PER_DESTINATION:
        lacking = f"destination {destination!r} needs {variable(destination, field)}"
        assert (lacking in message) is (field != "url")
    assert "destination 'orders' groups by partition key: TRICKLE_PARTITION_KEY is required" in message
    assert message.count("invalid Trickle settings") == 1


@pytest.mark.parametrize(("destination", "field"), REQUIRED_PER_DESTINATION)
def test_each_required_destination_variable(base_env: dict[str, str], destination: str, field: str) -> None:
    missing = variable(destination, field)
    message = error_of({k: v for k, v in base_env.items() if k != missing})
    assert message == (
        f"invalid Trickle settings: destination {destination!r} needs {missing}"
        f" (or {field} in the routes file)"
    )


@pytest.mark.parametrize("missing", ["TRICKLE_STREAM_ARN", "TRICKLE_LEDGER_TABLE", "TRICKLE_NOTES_TABLE"])
def test_each_required_global_variable(base_env: dict[str, str], missing: str) -> None:
    env = {k: v for k, v in base_env.items() if k != missing}
    assert error_of(env) == f"invalid Trickle settings: {missing} is required"
    assert error_of({**env, missing: "   "}) == f"invalid Trickle settings: {missing} is required"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "TRICKLE_JOBS_QUEUE_URL is required (the bootstrap sets it: run it again)"),
        ("  ", "TRICKLE_JOBS_QUEUE_URL is required (the bootstrap sets it: run it again)"),
        ("trickle-dev-jobs", "TRICKLE_JOBS_QUEUE_URL='trickle-dev-jobs' is not an http(s) URL"),
        (
            "https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo",
            "TRICKLE_JOBS_QUEUE_URL='https://sqs.us-east-1.amazonaws.com/123456789012/jobs.fifo' must name a"
            " standard queue, not a FIFO one",
        ),
    ],
)
def test_the_jobs_queue_is_a_standard_queue_the_stage_names(value: str | None, problem: str) -> None:
    """Backfill and replay tasks (issue #26) go to the stage's tasks queue, made by its bootstrap."""
    assert error_of(env_with(TRICKLE_STAGE="dev", TRICKLE_JOBS_QUEUE_URL=value)) == (
        f"invalid Trickle settings for stage 'dev': {problem}"
    )
    assert load_settings(env_with()).jobs_queue_url == BASE_ENV["TRICKLE_JOBS_QUEUE_URL"]


def test_blank_required_variable_counts_as_missing(base_env: dict[str, str]) -> None:
    message = error_of({**base_env, "TRICKLE_DEST_ORDERS_URL": "   "})
    assert "destination 'orders' needs TRICKLE_DEST_ORDERS_URL" in message


def test_required_values_may_come_from_the_routes_file(make_settings: MakeSettings, toml: WriteToml) -> None:
    fields = (
        'url = "https://file.example/in"\nkey_parameter = "/file/key"\n'
        f'queue_url = "{ORDERS_QUEUE}"\ndlq_url = "{ORDERS_DLQ}"'
    )
    stage = {variable("orders", f): None for f in ("url", "key_parameter", "queue_url", "dlq_url")}
    orders = make_settings(**toml(one_destination(fields)), **stage).destination("orders")
    assert (orders.url, orders.api_key_parameter) == ("https://file.example/in", "/file/key")
    assert (orders.queue_url, orders.dlq_url) == (ORDERS_QUEUE, ORDERS_DLQ)


@pytest.mark.parametrize(
    ("stage", "file", "expected"),
    [
        ({"TRICKLE_STAGE": "dev"}, "", "/trickle/dev/orders-api-key"),  # a stage's: the recipe's default
        ({"TRICKLE_STAGE": "dev", "TRICKLE_DEST_ORDERS_KEY_PARAMETER": "/mine"}, "", "/mine"),
        ({"TRICKLE_STAGE": "dev"}, 'key_parameter = "/file/key"', "/file/key"),
        ({}, 'key_parameter = "/file/key"', "/file/key"),
    ],
)
def test_the_key_parameter_defaults_to_the_stage_s_name_for_it(
    base_env: dict[str, str], toml: WriteToml, stage: dict[str, str], file: str, expected: str
) -> None:
    env = env_with(**{**toml(one_destination(file)), "TRICKLE_DEST_ORDERS_KEY_PARAMETER": None, **stage})
    settings = load_settings(env)
    assert settings.destination("orders").api_key_parameter == expected


def test_without_a_stage_name_the_key_parameter_is_required(base_env: dict[str, str]) -> None:
    env = {k: v for k, v in base_env.items() if k != "TRICKLE_DEST_ORDERS_KEY_PARAMETER"}
    assert error_of(env) == (
        "invalid Trickle settings: destination 'orders' needs TRICKLE_DEST_ORDERS_KEY_PARAMETER"
        " (or key_parameter in the routes file)"
    )


@pytest.mark.parametrize(
    ("raw", "days", "error"),
    [
        (None, 30, None),
        ("7", 7, None),
        ("3650", 3650, None),
        ("0", None, "TRICKLE_ARCHIVE_DAYS='0' must be between 1 and 3650"),
        ("3651", None, "TRICKLE_ARCHIVE_DAYS='3651' must be between 1 and 3650"),
        ("a month", None, "TRICKLE_ARCHIVE_DAYS='a month' is not an integer"),
    ],
)
def test_archive_days_default_to_thirty_and_a_wrong_value_names_the_variable_and_the_stage(
    base_env: dict[str, str], raw: str | None, days: int | None, error: str | None
) -> None:
    """Issue #26: how long the bucket keeps `delivered/` (its lifecycle rule, set by the bootstrap and
    the template from this setting)."""
    env = {**base_env, "TRICKLE_STAGE": "dev"} | ({"TRICKLE_ARCHIVE_DAYS": raw} if raw is not None else {})
    if error is None:
        assert load_settings(env).archive_days == days
    else:
        assert error_of(env) == f"invalid Trickle settings for stage 'dev': {error}"


@pytest.mark.parametrize(
    ("raw", "limit", "error"),
    [
        (None, 4, None),
        ("2", 2, None),
        ("1000", 1000, None),
        ("1", None, "TRICKLE_JOBS_MAX_CONCURRENCY='1' must be between 2 and 1000"),
        ("1001", None, "TRICKLE_JOBS_MAX_CONCURRENCY='1001' must be between 2 and 1000"),
        ("four", None, "TRICKLE_JOBS_MAX_CONCURRENCY='four' is not an integer"),
    ],
)
def test_jobs_max_concurrency_defaults_to_four_within_what_lambda_takes_and_names_the_stage(
    base_env: dict[str, str], raw: str | None, limit: int | None, error: str | None
) -> None:
    """Issue #26: the `jobs` function's trigger's maximum concurrency (Lambda refuses one below 2)."""
    env = {**base_env, "TRICKLE_STAGE": "dev"} | (
        {"TRICKLE_JOBS_MAX_CONCURRENCY": raw} if raw is not None else {}
    )
    if error is None:
        assert load_settings(env).jobs_max_concurrency == limit
    else:
        assert error_of(env) == f"invalid Trickle settings for stage 'dev': {error}"


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TRICKLE_SEND_ATTEMPTS", "three"),
        ("TRICKLE_SEND_ATTEMPTS", "2.5"),
        ("TRICKLE_INGEST_BATCH_SIZE", "1e2"),
        ("TRICKLE_DRAIN_BUDGET", "0x10"),
        ("TRICKLE_LEDGER_TTL_DAYS", "a month"),
        ("TRICKLE_LEDGER_TTL_DAYS", "1.5"),
        ("TRICKLE_BREAKER_FAILURES", "3.0"),
        ("TRICKLE_DEST_ORDERS_READ_TIMEOUT_S", "ten"),
        ("TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S", "1,5"),
        ("TRICKLE_DEST_ORDERS_MAX_ATTEMPTS", "five"),
        ("TRICKLE_DEST_ORDERS_BACKOFF_CAP_S", "15m"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "10/s"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST", "2.5"),
        ("TRICKLE_DEST_CRM_MAX_ATTEMPTS", "many"),
        ("TRICKLE_DEST_CRM_BACKOFF_BASE_S", "1.5"),
    ],
)
def test_malformed_numbers(base_env: dict[str, str], name: str, raw: str) -> None:
    assert f"{name}={raw!r} is not a" in error_of({**base_env, name: raw})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TRICKLE_SEND_ATTEMPTS", "0"),
        ("TRICKLE_SEND_ATTEMPTS", "11"),
        ("TRICKLE_INGEST_BATCH_SIZE", "0"),
        ("TRICKLE_INGEST_BATCH_SIZE", "1001"),
        ("TRICKLE_INGEST_BATCH_WINDOW_SECONDS", "-1"),
        ("TRICKLE_INGEST_BATCH_WINDOW_SECONDS", "301"),
        ("TRICKLE_MAX_MESSAGE_BYTES", "1023"),
        ("TRICKLE_MAX_MESSAGE_BYTES", str(SQS_MAX_MESSAGE_BYTES + 1)),
        ("TRICKLE_DRAIN_BUDGET", "0"),
        ("TRICKLE_DRAIN_WORKERS", "65"),
        ("TRICKLE_VISIBILITY_TIMEOUT_SECONDS", "43201"),
        ("TRICKLE_SECRET_MAX_AGE_SECONDS", "86401"),
        ("TRICKLE_DRAIN_SAFETY_MARGIN_MS", "900001"),
        ("TRICKLE_LEDGER_TTL_DAYS", "0"),
        ("TRICKLE_LEDGER_TTL_DAYS", "3651"),
        ("TRICKLE_BREAKER_FAILURES", "0"),
        ("TRICKLE_BREAKER_FAILURES", "10001"),
        ("TRICKLE_SUBMIT_MAX_BYTES", "1023"),
        ("TRICKLE_DEST_ORDERS_BACKOFF_BASE_S", "0"),
        ("TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S", "0.05"),
        ("TRICKLE_DEST_ORDERS_READ_TIMEOUT_S", "600.5"),
        ("TRICKLE_DEST_ORDERS_READ_TIMEOUT_S", "nan"),
        ("TRICKLE_DEST_ORDERS_READ_TIMEOUT_S", "inf"),
        ("TRICKLE_DEST_ORDERS_MAX_ATTEMPTS", "0"),
        ("TRICKLE_DEST_ORDERS_MAX_ATTEMPTS", "101"),
        ("TRICKLE_DEST_ORDERS_BACKOFF_CAP_S", "0"),
        ("TRICKLE_DEST_ORDERS_BACKOFF_CAP_S", "43201"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "0"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "0.009"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "-1"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "10000.5"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "nan"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "inf"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST", "0"),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST", "10001"),
        ("TRICKLE_DEST_CRM_RATE_LIMIT_BURST", "0"),
    ],
)
def test_out_of_range_numbers(base_env: dict[str, str], name: str, raw: str) -> None:
    assert f"{name}={raw!r} must be between" in error_of({**base_env, name: raw})


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        (
            "max_attempts = 0",
            "routes file FILE: destinations.orders.max_attempts=0 must be between 1 and 100",
        ),
        ("max_attempts = 2.5", "routes file FILE: destinations.orders.max_attempts=2.5 is not an integer"),
        ("max_attempts = true", "routes file FILE: destinations.orders.max_attempts=True is not an integer"),
        (
            'max_attempts = "five"',
            "routes file FILE: destinations.orders.max_attempts='five' is not an integer",
        ),
        ("read_timeout_s = nan", "routes file FILE: destinations.orders.read_timeout_s=nan must be between"),
        (
            "rate_limit_per_s = 20000",
            "routes file FILE: destinations.orders.rate_limit_per_s=20000 must be between",
        ),
        ("backoff_cap_s = [1]", "routes file FILE: destinations.orders.backoff_cap_s=[1] is not an integer"),
        ("key_header = 5", "routes file FILE: destinations.orders.key_header=5 must be a string"),
        ("key_scheme = true", "routes file FILE: destinations.orders.key_scheme=True must be a string"),
    ],
)
def test_bad_values_in_the_routes_file_name_their_field(
    base_env: dict[str, str], toml: WriteToml, fields: str, needle: str
) -> None:
    assert needle in error_of(env_with(**toml(one_destination(fields))))


def test_the_stage_value_is_checked_not_the_file_value_it_overrides(
    base_env: dict[str, str], toml: WriteToml
) -> None:
    env = env_with(**{**toml(one_destination("max_attempts = 0")), "TRICKLE_DEST_ORDERS_MAX_ATTEMPTS": "200"})
    message = error_of(env)
    assert "TRICKLE_DEST_ORDERS_MAX_ATTEMPTS='200' must be between 1 and 100" in message
    assert "destinations.orders.max_attempts" not in message
    assert (
        load_settings({**env, "TRICKLE_DEST_ORDERS_MAX_ATTEMPTS": "2"}).destination("orders").max_attempts
        == 2
    )


FIELDS = {
    "TRICKLE_SEND_ATTEMPTS": "send_attempts",
    "TRICKLE_MAX_MESSAGE_BYTES": "max_message_bytes",
    "TRICKLE_SECRET_MAX_AGE_SECONDS": "secret_max_age_s",
    "TRICKLE_INGEST_BATCH_SIZE": "ingest_batch_size",
    "TRICKLE_LEDGER_TTL_DAYS": "ledger_ttl_s",
    "TRICKLE_BREAKER_FAILURES": "breaker_failures",
    "TRICKLE_DRAIN_WORKERS": "drain_workers",
    "TRICKLE_DEST_ORDERS_MAX_ATTEMPTS": "orders.max_attempts",
    "TRICKLE_DEST_ORDERS_BACKOFF_BASE_S": "orders.backoff_base_s",
    "TRICKLE_DEST_ORDERS_BACKOFF_CAP_S": "orders.backoff_cap_s",
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "orders.rate_limit_per_s",
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": "orders.rate_limit_burst",
    "TRICKLE_DEST_CRM_MAX_ATTEMPTS": "crm.max_attempts",
}


def field_of(settings: Settings, name: str) -> object:
    path = FIELDS[name]
    if "." in path:
        destination, attribute = path.split(".")
        return getattr(settings.destination(destination), attribute)
    return getattr(settings, path)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("TRICKLE_SEND_ATTEMPTS", "1", 1),
        ("TRICKLE_SEND_ATTEMPTS", "10", 10),
        ("TRICKLE_MAX_MESSAGE_BYTES", "1024", 1024),
        ("TRICKLE_MAX_MESSAGE_BYTES", str(SQS_MAX_MESSAGE_BYTES), SQS_MAX_MESSAGE_BYTES),
        ("TRICKLE_SECRET_MAX_AGE_SECONDS", "0", 0),
        ("TRICKLE_INGEST_BATCH_SIZE", "1000", 1000),
        ("TRICKLE_LEDGER_TTL_DAYS", "1", 86_400),
        ("TRICKLE_LEDGER_TTL_DAYS", "3650", 3650 * 86_400),
        ("TRICKLE_BREAKER_FAILURES", "1", 1),
        ("TRICKLE_BREAKER_FAILURES", "10000", 10_000),
        ("TRICKLE_DRAIN_WORKERS", "64", 64),
        ("TRICKLE_DEST_ORDERS_MAX_ATTEMPTS", "1", 1),
        ("TRICKLE_DEST_ORDERS_MAX_ATTEMPTS", "100", 100),
        ("TRICKLE_DEST_ORDERS_BACKOFF_BASE_S", "1", 1),
        ("TRICKLE_DEST_ORDERS_BACKOFF_CAP_S", "43200", 43_200),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "0.01", 0.01),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S", "10000", 10_000.0),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST", "1", 1),
        ("TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST", "10000", 10_000),
        ("TRICKLE_DEST_CRM_MAX_ATTEMPTS", "100", 100),
    ],
)
def test_range_bounds_are_inclusive(
    make_settings: MakeSettings, name: str, raw: str, expected: float
) -> None:
    assert field_of(make_settings(**{name: raw}), name) == expected


@pytest.mark.parametrize("ordering", ["STRICT", "fifo", "none", "skip,strict"])
def test_bad_ordering(base_env: dict[str, str], ordering: str) -> None:
    message = error_of({**base_env, "TRICKLE_DEST_ORDERS_ORDERING": ordering})
    assert f"TRICKLE_DEST_ORDERS_ORDERING={ordering!r} must be one of skip, strict" in message


@pytest.mark.parametrize("group_by", ["item", "PARTITION_KEY", "keys"])
def test_bad_group_by(base_env: dict[str, str], group_by: str) -> None:
    message = error_of({**base_env, "TRICKLE_DEST_CRM_GROUP_BY": group_by})
    assert (
        f"TRICKLE_DEST_CRM_GROUP_BY={group_by!r} must be one of partition_key, table, expression" in message
    )


def test_bad_choice_in_the_routes_file(base_env: dict[str, str], toml: WriteToml) -> None:
    message = error_of(env_with(**toml(one_destination('ordering = "halt"'))))
    assert "routes file FILE: destinations.orders.ordering='halt' must be one of skip, strict" in message


@pytest.mark.parametrize("name", ["TRICKLE_DEST_ORDERS_QUEUE_URL", "TRICKLE_DEST_CRM_DLQ_URL"])
def test_queue_urls_must_be_fifo(base_env: dict[str, str], name: str) -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/standard"
    assert f"{name}={url!r} must name a FIFO queue (ending in .fifo)" in error_of({**base_env, name: url})


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("TRICKLE_DEST_ORDERS_QUEUE_URL", "sqs.us-east-1.amazonaws.com/123456789012/q.fifo"),
        ("TRICKLE_DEST_ORDERS_DLQ_URL", "ftp://sqs.example/dlq.fifo"),
        ("TRICKLE_DEST_ORDERS_URL", "api.example.com/items"),
        ("TRICKLE_DEST_ORDERS_URL", "https:///items"),
        ("TRICKLE_DEST_CRM_URL", "file:///etc/passwd"),
    ],
)
def test_urls_must_be_http(base_env: dict[str, str], name: str, url: str) -> None:
    assert f"{name}={url!r} is not an http(s) URL" in error_of({**base_env, name: url})


def test_api_url_need_not_be_fifo(make_settings: MakeSettings) -> None:
    settings = make_settings(TRICKLE_DEST_ORDERS_URL="http://127.0.0.1:8080/x")
    assert settings.destination("orders").url == "http://127.0.0.1:8080/x"


def test_ledger_table_is_required(base_env: dict[str, str]) -> None:
    env = {k: v for k, v in base_env.items() if k != "TRICKLE_LEDGER_TABLE"}
    assert error_of(env) == "invalid Trickle settings: TRICKLE_LEDGER_TABLE is required"


def test_notes_have_a_table_of_their_own(base_env: dict[str, str], make_settings: MakeSettings) -> None:
    assert make_settings().notes_table == "trickle-test-notes"
    same = {**base_env, "TRICKLE_STAGE": "dev", "TRICKLE_NOTES_TABLE": base_env["TRICKLE_LEDGER_TABLE"]}
    assert error_of(same) == (
        "invalid Trickle settings for stage 'dev': TRICKLE_NOTES_TABLE='trickle-test-ledger' names the"
        " ledger table: run notes, redrive jobs and leases have a table of their own"
    )


def test_ledger_ttl_is_given_in_days_and_kept_in_seconds(make_settings: MakeSettings) -> None:
    assert make_settings(TRICKLE_LEDGER_TTL_DAYS="2").ledger_ttl_s == 172_800


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING", "ERROR"])
def test_log_levels(make_settings: MakeSettings, level: str) -> None:
    assert make_settings(TRICKLE_LOG_LEVEL=level).log_level == level


@pytest.mark.parametrize("level", ["verbose", "debug", "TRACE"])
def test_bad_log_level(base_env: dict[str, str], level: str) -> None:
    message = error_of({**base_env, "TRICKLE_LOG_LEVEL": level})
    assert f"TRICKLE_LOG_LEVEL={level!r} must be one of DEBUG, INFO, WARNING, ERROR" in message


@pytest.mark.parametrize("raw", ["yes", "1", "on"])
def test_bad_flag(base_env: dict[str, str], raw: str) -> None:
    message = error_of({**base_env, "TRICKLE_PARTIAL_BATCH_RESPONSE": raw})
    assert f"TRICKLE_PARTIAL_BATCH_RESPONSE={raw!r} must be true or false" in message


@pytest.mark.parametrize(
    ("value", "dead_letters"),
    [("count", None), ("dead_letter:orders", "orders"), ("dead_letter:crm", "crm"), (" count ", None)],
)
def test_what_happens_to_unrouted_records(
    make_settings: MakeSettings, value: str, dead_letters: str | None
) -> None:
    settings = make_settings(TRICKLE_UNROUTED=value)
    assert settings.unrouted_dead_letters == dead_letters
    assert settings.unrouted == value.strip()


@pytest.mark.parametrize(
    "value", ["drop", "dead_letter", "dead_letter:", "dead_letter:billing", "dead_letter:ORDERS", "Count"]
)
def test_unrouted_records_go_nowhere_unknown(base_env: dict[str, str], value: str) -> None:
    assert error_of({**base_env, "TRICKLE_UNROUTED": value, "TRICKLE_STAGE": "dev"}) == (
        f"invalid Trickle settings for stage 'dev': TRICKLE_UNROUTED={value!r} must be count or"
        " dead_letter:<destination> (the routes file's: orders, crm)"
    )


def test_token_auth_needs_its_parameter(base_env: dict[str, str], make_settings: MakeSettings) -> None:
    message = error_of({**base_env, "TRICKLE_AUTH": "token"})
    assert "TRICKLE_AUTH_TOKEN_PARAMETER is required when TRICKLE_AUTH=token" in message
    settings = make_settings(TRICKLE_AUTH="token", TRICKLE_AUTH_TOKEN_PARAMETER=" /trickle/test/token ")
    assert (settings.auth, settings.auth_token_parameter) == ("token", "/trickle/test/token")
    assert "TRICKLE_AUTH='basic' must be one of iam, token" in error_of({**base_env, "TRICKLE_AUTH": "basic"})


def test_group_by_partition_key_needs_the_key(base_env: dict[str, str]) -> None:
    env = {k: v for k, v in base_env.items() if k != "TRICKLE_PARTITION_KEY"}
    message = error_of(env)
    assert message == (
        "invalid Trickle settings: destination 'orders' groups by partition key:"
        " TRICKLE_PARTITION_KEY is required"
    )  # crm groups by an expression, so only orders needs the key


def test_group_by_table_needs_no_partition_key(make_settings: MakeSettings) -> None:
    settings = make_settings(TRICKLE_DEST_ORDERS_GROUP_BY="table", TRICKLE_PARTITION_KEY=None)
    assert settings.destination("orders").group_by == "table"
    assert settings.partition_key is None


def test_group_by_expression_needs_a_group_expression(base_env: dict[str, str], toml: WriteToml) -> None:
    message = error_of(env_with(**toml(one_destination('group_by = "expression"'))))
    assert "destination 'orders': group_by = 'expression' needs a group_expression" in message


@pytest.mark.parametrize(
    ("fields", "stage", "ok"),
    [
        ("backoff_base_s = 60\nbackoff_cap_s = 30", {}, False),
        ("backoff_base_s = 60\nbackoff_cap_s = 60", {}, True),
        ("", {"TRICKLE_DEST_ORDERS_BACKOFF_BASE_S": "901"}, False),  # above the default cap
        ("backoff_cap_s = 100", {"TRICKLE_DEST_ORDERS_BACKOFF_CAP_S": "20"}, False),
        ("backoff_base_s = 600", {"TRICKLE_DEST_ORDERS_BACKOFF_CAP_S": "600"}, True),
    ],
)
def test_backoff_cap_may_not_be_below_its_base(
    base_env: dict[str, str], toml: WriteToml, fields: str, stage: dict[str, str], ok: bool
) -> None:
    env = env_with(**{**toml(one_destination(fields)), **stage})
    if ok:
        orders = load_settings(env).destination("orders")
        assert orders.backoff_cap_s == orders.backoff_base_s
    else:
        assert error_of(env) == (
            "invalid Trickle settings: destination 'orders': backoff_cap_s must be at least backoff_base_s"
        )


def test_many_problems_reported_together(base_env: dict[str, str], toml: WriteToml) -> None:
    env = env_with(
        **{
            **toml(one_destination("max_attempts = 0\nretries = 2", 'filter = "item.["')),
            "TRICKLE_STAGE": "dev",
            "TRICKLE_DEST_ORDERS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            "TRICKLE_SEND_ATTEMPTS": "lots",
            "TRICKLE_DRAIN_BUDGET": "0",
            "TRICKLE_STREAM_ARN": "not-an-arn",
        }
    )
    del env["TRICKLE_DEST_ORDERS_URL"]
    message = error_of(env)
    assert message.startswith("invalid Trickle settings for stage 'dev': ")
    for needle in (
        "TRICKLE_DEST_ORDERS_QUEUE_URL=",
        "TRICKLE_SEND_ATTEMPTS='lots'",
        "TRICKLE_DRAIN_BUDGET='0'",
        "TRICKLE_STREAM_ARN='not-an-arn'",
        "destination 'orders' needs TRICKLE_DEST_ORDERS_URL (or url in the routes file)",
        "routes file FILE: destinations.orders.max_attempts=0",
        "routes file FILE: destination 'orders' has an unknown field 'retries'",
        "routes file FILE: route 'only' filter:",
    ):
        assert needle in message
    assert message.count("invalid Trickle settings") == 1


# --- the stream ARN -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        "not-an-arn",
        "arn:aws:dynamodb:us-east-1:123456789012:table",
        "arn:aws:dynamodb:us-east-1:123456789012:index/items",
        # A table ARN is the usual mistake for a stream ARN; Chalice cannot subscribe to it.
        "arn:aws:dynamodb:us-east-1:123456789012:table/items",
        "table/items/stream/2026-01-01T00:00:00.000",
        "arn:aws:sqs:us-east-1:123456789012:table/items/stream/2026-01-01T00:00:00.000",
        "arn:aws:dynamodb:us-east-1:12345:table/items/stream/2026-01-01T00:00:00.000",  # short account
        "arn:aws:dynamodb:us-east-1:123456789012:table/ab/stream/label",  # table names are 3+ chars
        "arn:aws:dynamodb:us-east-1:123456789012:table/items/stream/",  # no label
        "arn:aws:dynamodb:us-east-1:123456789012:table/it ems/stream/label",
        "arn:aws:dynamodb::123456789012:table/items/stream/label",  # no region
    ],
)
def test_stream_arn_must_be_a_dynamodb_stream(base_env: dict[str, str], arn: str) -> None:
    message = error_of({**base_env, "TRICKLE_STREAM_ARN": arn})
    assert f"TRICKLE_STREAM_ARN={arn!r} is not a DynamoDB stream ARN" in message


@pytest.mark.parametrize(
    "arn",
    [
        STREAM_ARN,
        "arn:aws:dynamodb:eu-west-1:111122223333:table/My_Table.v2-x/stream/2024-05-06T07:08:09.123",
        "arn:aws-cn:dynamodb:cn-north-1:111122223333:table/orders/stream/label",
        "arn:aws-us-gov:dynamodb:us-gov-west-1:111122223333:table/abc/stream/label",
    ],
)
def test_valid_stream_arns_are_accepted(make_settings: MakeSettings, arn: str) -> None:
    assert make_settings(TRICKLE_STREAM_ARN=arn).stream_arn == arn


@pytest.mark.parametrize(
    ("arn", "table"),
    [
        (STREAM_ARN, "items"),
        (
            "arn:aws:dynamodb:eu-west-1:111122223333:table/My_Table.v2-x/stream/2024-05-06T07:08:09.123",
            "My_Table.v2-x",
        ),
        ("arn:aws-cn:dynamodb:cn-north-1:111122223333:table/orders/stream/label", "orders"),
        ("not-an-arn", ""),
        ("", ""),
        ("arn:aws:dynamodb:us-east-1:123456789012:index/items", ""),
    ],
)
def test_table_name_from_stream_arn(arn: str, table: str) -> None:
    assert table_name_from_stream_arn(arn) == table


# --- the visibility timeout against each destination's attempt ---------------------------------------


def test_visibility_must_outlast_one_delivery_attempt(routes: Routes) -> None:
    env = env_with(
        **routes(),
        TRICKLE_VISIBILITY_TIMEOUT_SECONDS="5",
        TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S="1",
        TRICKLE_DEST_ORDERS_READ_TIMEOUT_S="3",
    )
    message = error_of(env)
    assert (
        "TRICKLE_VISIBILITY_TIMEOUT_SECONDS=5 must exceed destination 'orders''s"
        " connect and read timeouts (4 s)" in message
    )
    settings = load_settings({**env, "TRICKLE_VISIBILITY_TIMEOUT_SECONDS": "6"})
    assert settings.visibility_timeout_s == 6
    assert settings.attempt_window_s(settings.destination("orders")) == pytest.approx(1.0)


def test_visibility_is_checked_against_every_destination(base_env: dict[str, str]) -> None:
    """The crm's default timeouts (3.05 + 10 s) are longer than the orders' set here."""
    env = {
        **base_env,
        "TRICKLE_VISIBILITY_TIMEOUT_SECONDS": "10",
        "TRICKLE_DEST_ORDERS_CONNECT_TIMEOUT_S": "1",
        "TRICKLE_DEST_ORDERS_READ_TIMEOUT_S": "3",
    }
    message = error_of(env)
    assert "destination 'crm''s connect and read timeouts (13.05 s)" in message
    assert "'orders'" not in message
    settings = load_settings({**env, "TRICKLE_DEST_CRM_READ_TIMEOUT_S": "5"})
    assert settings.attempt_window_s(settings.destination("crm")) == pytest.approx(10 - 8.05 - 1)


# --- the routes file ----------------------------------------------------------------------------------


def test_route_defaults_and_values(make_settings: MakeSettings, toml: WriteToml) -> None:
    text = (
        "[destinations.orders]\n[destinations.crm]\n"
        '[[routes]]\nname = "plain"\ndestinations = ["orders"]\n'
        '[[routes]]\nname = "rich"\nevents = ["REMOVE", "MODIFY"]\nfilter = "item.type == \'x\'"\n'
        'transform = "{id: keys.pk}"\nenrich = "customer"\ndestinations = ["crm", "orders", "crm"]\n'
    )
    plain, rich = make_settings(**toml(text)).routes
    assert plain.events == frozenset({"INSERT"})  # the default
    assert (plain.filter, plain.transform, plain.enrich) == (None, None, None)
    assert rich.events == frozenset({"REMOVE", "MODIFY"})
    assert rich.destinations == ("crm", "orders")  # in order, once each
    assert rich.filter is not None
    assert rich.filter.search({"item": {"type": "x"}}) is True
    assert rich.transform is not None
    assert rich.transform.search({"keys": {"pk": "a"}}) == {"id": "a"}
    assert rich.enrich == "customer"
    assert "customer" in enrichers.names()


def test_unreadable_routes_file(base_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    message = error_of({**base_env, "TRICKLE_ROUTES_FILE": str(missing)})
    assert f"TRICKLE_ROUTES_FILE: cannot read {missing}: No such file or directory" in message
    message = error_of({**base_env, "TRICKLE_ROUTES_FILE": str(tmp_path)})
    assert f"TRICKLE_ROUTES_FILE: cannot read {tmp_path}:" in message


ROUTE = '[[routes]]\nname = "only"\ndestinations = ["orders"]\n'
ORDERS = "[destinations.orders]\n"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("[destinations.orders\nurl = ", 1, id="unclosed-table"),
        pytest.param(ORDERS + "url = \n" + ROUTE, 2, id="missing-value"),
        pytest.param(ORDERS + ROUTE + 'name = "again"\n', 5, id="duplicate-key"),
        pytest.param(ORDERS + ROUTE + 'filter = "item.type\nevents = []\n', 5, id="unclosed-string"),
    ],
)
def test_a_routes_file_that_is_not_toml_gives_one_error_naming_file_and_line(
    base_env: dict[str, str], toml: WriteToml, text: str, line: int
) -> None:
    """Only that: what the file holds is unknown, so no table can be said to be missing from it."""
    env = env_with(**toml(text))
    file = re.escape(env["TRICKLE_ROUTES_FILE"])
    assert re.fullmatch(
        rf"invalid Trickle settings: routes file {file} is not valid TOML:"
        rf" [^;]+ \(at line {line}, column \d+\)",
        error_of(env),
    )


# Every kind of name a routes file may misspell, at every level: each stops the import with the one
# problem, naming the file and the table or key (and the known name it is closest to).
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            ORDERS + ROUTE + '[[route]]\nname = "more"\ndestinations = ["orders"]\n',
            "unknown table [[route]] (did you mean [[routes]]?); a routes file holds only"
            " [destinations.<name>] tables and [[routes]] entries",
            id="top-level-array-of-tables",
        ),
        pytest.param(
            ORDERS + ROUTE + '[destination.crm]\nkey_header = "x"\n',
            "unknown table [destination] (did you mean [destinations]?); a routes file holds only"
            " [destinations.<name>] tables and [[routes]] entries",
            id="top-level-table",
        ),
        pytest.param(
            ORDERS + ROUTE + "[settings]\nlog_level = 'DEBUG'\n",
            "unknown table [settings]; a routes file holds only [destinations.<name>] tables and [[routes]]"
            " entries",
            id="top-level-table-unlike-any",
        ),
        pytest.param(
            'partition_key = "pk"\n' + ORDERS + ROUTE,
            "unknown key 'partition_key'; a routes file holds only [destinations.<name>] tables and"
            " [[routes]] entries",
            id="top-level-key",
        ),
        pytest.param(
            'route = "only"\n' + ORDERS + ROUTE,
            "unknown key 'route' (did you mean 'routes'?); a routes file holds only [destinations.<name>]"
            " tables and [[routes]] entries",
            id="top-level-key-like-a-table",
        ),
        pytest.param(
            ORDERS + "max_attempt = 3\n" + ROUTE,
            "destination 'orders' has an unknown field 'max_attempt' (did you mean 'max_attempts'?)",
            id="destination-field",
        ),
        pytest.param(
            ORDERS + "retries = 3\n" + ROUTE,
            "destination 'orders' has an unknown field 'retries'",
            id="destination-field-unlike-any",
        ),
        pytest.param(
            ORDERS + "[destinations.orders.retry]\nmax = 3\n" + ROUTE,
            "destination 'orders' has an unknown field 'retry'",
            id="destination-nested-table",
        ),
        pytest.param(
            '[destinations]\nurl = "https://api.example.com"\n' + ORDERS + ROUTE,
            "destinations.url is not a table: each destination is a [destinations.<name>] table",
            id="destinations-key",
        ),
        pytest.param(
            ORDERS + ROUTE + 'filters = "item.ok"\n',
            "route 'only' has an unknown field 'filters' (did you mean 'filter'?)",
            id="route-field",
        ),
        pytest.param(
            ORDERS + ROUTE + "[routes.options]\nretries = 3\n",
            "route 'only' has an unknown field 'options'",
            id="route-nested-table",
        ),
        pytest.param(
            ORDERS + ROUTE + "[routes.enrichment]\nname = 'customer'\n",
            "route 'only' has an unknown field 'enrichment' (did you mean 'enrich'?)",
            id="route-nested-table-like-a-field",
        ),
        pytest.param(
            'routes = [{name = "only", destinations = ["orders"]}, "orders"]\n' + ORDERS,
            "routes entry #2 is not a table: each route is a [[routes]] entry",
            id="routes-entry",
        ),
    ],
)
def test_an_unknown_name_anywhere_in_the_routes_file_is_the_one_error(
    base_env: dict[str, str], toml: WriteToml, text: str, problem: str
) -> None:
    assert error_of(env_with(**toml(text))) == f"invalid Trickle settings: routes file FILE: {problem}"


def test_a_misspelt_routes_table_in_the_shipped_file_stops_the_stage(
    base_env: dict[str, str], toml: WriteToml
) -> None:
    """Issue 22: `[[route]]` for the orders route loaded, and every order was counted unrouted."""
    shipped = ROUTES_FILE.read_text(encoding="utf-8")
    assert shipped.count('\n[[routes]]\nname = "orders"\n') == 1
    env = env_with(
        **toml(shipped.replace('\n[[routes]]\nname = "orders"\n', '\n[[route]]\nname = "orders"\n')),
        **SHIPPED_ENV,
    )
    assert error_of(env) == (
        "invalid Trickle settings: routes file FILE: unknown table [[route]] (did you mean [[routes]]?);"
        " a routes file holds only [destinations.<name>] tables and [[routes]] entries"
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param(
            ROUTE, "routes file FILE: [destinations.<name>] tables are required", id="no-destinations"
        ),
        pytest.param(
            "destinations = 5\n" + ROUTE,
            "routes file FILE: [destinations.<name>] tables are required",
            id="not-a-table",
        ),
        pytest.param(ORDERS, "routes file FILE: at least one [[routes]] entry is required", id="no-routes"),
        pytest.param(
            ORDERS + 'routes = "orders"\n',
            "routes file FILE: at least one [[routes]] entry is required",
            id="routes-str",
        ),
        pytest.param(
            ORDERS + "retries = 3\n" + ROUTE,
            "routes file FILE: destination 'orders' has an unknown field 'retries'",
            id="unknown-destination-field",
        ),
        pytest.param(
            ORDERS + ROUTE + 'destination = "orders"\n',
            "routes file FILE: route 'only' has an unknown field 'destination'",
            id="unknown-route-field",
        ),
        pytest.param(
            "[destinations.Orders]\n" + ROUTE,
            "routes file FILE: destination 'Orders' needs a name of lowercase letters, digits and _",
            id="destination-uppercase",
        ),
        pytest.param(
            "[destinations.1st]\n" + ROUTE,
            "routes file FILE: destination '1st' needs a name of lowercase letters",
            id="destination-digit-first",
        ),
        pytest.param(
            "[destinations.or-ders]\n" + ROUTE,
            "routes file FILE: destination 'or-ders' needs a name of lowercase letters",
            id="destination-dash",
        ),
        pytest.param(
            f"[destinations.{'d' * 41}]\n" + ROUTE,
            f"routes file FILE: destination {'d' * 41!r} needs a name of lowercase letters",
            id="destination-too-long",
        ),
        pytest.param(
            ORDERS + '[[routes]]\ndestinations = ["orders"]\n',
            "routes file FILE: route #1 needs a name of lowercase letters, digits and _",
            id="route-without-name",
        ),
        pytest.param(
            ORDERS + '[[routes]]\nname = "My Route"\ndestinations = ["orders"]\n',
            "routes file FILE: route 'My Route' needs a name of lowercase letters, digits and _",
            id="route-bad-name",
        ),
        pytest.param(
            ORDERS + '[[routes]]\nname = 7\ndestinations = ["orders"]\n',
            "routes file FILE: route #1 needs a name of lowercase letters, digits and _",
            id="route-name-not-a-string",
        ),
        pytest.param(
            ORDERS + '[[routes]]\nname = "only"\ndestinations = ["orders", "billing"]\n',
            "routes file FILE: route 'only' names an unknown destination 'billing'",
            id="unknown-destination",
        ),
        pytest.param(
            ORDERS + "[destinations.crm]\n" + ROUTE,
            "routes file FILE: no route sends to destination 'crm'",
            id="destination-without-route",
        ),
        pytest.param(
            ORDERS + ROUTE + ROUTE, "routes file FILE: two routes are named 'only'", id="duplicate-route"
        ),
        pytest.param(
            ORDERS + '[[routes]]\nname = "only"\n',
            "routes file FILE: route 'only' needs a list of destinations",
            id="no-targets",
        ),
        pytest.param(
            ORDERS + '[[routes]]\nname = "only"\ndestinations = []\n',
            "routes file FILE: route 'only' needs a list of destinations",
            id="empty-targets",
        ),
        pytest.param(
            ORDERS + '[[routes]]\nname = "only"\ndestinations = "orders"\n',
            "routes file FILE: route 'only' needs a list of destinations",
            id="targets-not-a-list",
        ),
        pytest.param(
            ORDERS + ROUTE + 'filter = "item.["\n',
            "routes file FILE: route 'only' filter: 'item.[' is not a JMESPath expression",
            id="bad-filter",
        ),
        pytest.param(
            ORDERS + ROUTE + 'transform = "{a: }"\n',
            "routes file FILE: route 'only' transform: '{a: }' is not a JMESPath expression",
            id="bad-transform",
        ),
        pytest.param(
            ORDERS + ROUTE + "filter = 5\n",
            "routes file FILE: route 'only' filter must be a string",
            id="filter-not-str",
        ),
        pytest.param(
            '[destinations.orders]\ngroup_by = "expression"\ngroup_expression = "keys.[pk"\n' + ROUTE,
            "routes file FILE: destinations.orders.group_expression: 'keys.[pk' is not a JMESPath expression",
            id="bad-group-expression",
        ),
        pytest.param(
            ORDERS + ROUTE + 'enrich = "weather"\n',
            "routes file FILE: route 'only': enrich='weather' is not a registered enricher"
            " (registered: customer)",
            id="unknown-enricher",
        ),
        pytest.param(
            ORDERS + ROUTE + "enrich = 1\n",
            "routes file FILE: route 'only': enrich=1 is not a registered enricher",
            id="enricher-not-a-string",
        ),
        pytest.param(
            '[destinations.orders]\ngroup_by = "expression"\n' + ROUTE,
            "destination 'orders': group_by = 'expression' needs a group_expression",
            id="expression-without-group-expression",
        ),
        pytest.param(
            "[destinations.orders]\nbackoff_base_s = 100\nbackoff_cap_s = 99\n" + ROUTE,
            "destination 'orders': backoff_cap_s must be at least backoff_base_s",
            id="cap-below-base",
        ),
    ],
)
def test_routes_file_errors(base_env: dict[str, str], toml: WriteToml, text: str, needle: str) -> None:
    message = error_of(env_with(**toml(text)))
    assert needle in message
    assert message.count("invalid Trickle settings") == 1


@pytest.mark.parametrize(
    "events",
    ['"INSERT"', "[]", '["UPSERT"]', '["insert"]', '["INSERT", "DELETE"]', "[1]", "5"],
)
def test_bad_events_list(base_env: dict[str, str], routes: Routes, events: str) -> None:
    message = error_of({**base_env, **routes(events=events)})
    assert "routes file FILE: route 'only': events must list some of INSERT, MODIFY, REMOVE" in message


@pytest.mark.parametrize(
    "events", ['["INSERT"]', '["MODIFY"]', '["REMOVE", "INSERT"]', '["INSERT", "MODIFY", "REMOVE"]']
)
def test_good_events_lists(make_settings: MakeSettings, routes: Routes, events: str) -> None:
    expected = {e.strip(' "') for e in events.strip("[]").split(",")}
    assert make_settings(**routes(events=events)).routes[0].events == expected


# --- unknown TRICKLE_* variables ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("TRICKLE_AUTHH", "unknown variable TRICKLE_AUTHH (did you mean TRICKLE_AUTH?)"),
        (
            "TRICKLE_LEDGER_TTL_DAY",
            "unknown variable TRICKLE_LEDGER_TTL_DAY (did you mean TRICKLE_LEDGER_TTL_DAYS?)",
        ),
        (
            "TRICKLE_DEST_ORDER_MAX_ATTEMPTS",
            "unknown variable TRICKLE_DEST_ORDER_MAX_ATTEMPTS"
            " (did you mean TRICKLE_DEST_ORDERS_MAX_ATTEMPTS?):"
            " no destination 'order' in the routes file (it has: orders, crm)",
        ),
        (
            "TRICKLE_DEST_ORDERS_MAX_ATTEMPT",
            "unknown variable TRICKLE_DEST_ORDERS_MAX_ATTEMPT"
            " (did you mean TRICKLE_DEST_ORDERS_MAX_ATTEMPTS?):"
            " destination 'orders' has no field 'max_attempt'",
        ),
        (
            "TRICKLE_DEST_BILLING_URL",
            "unknown variable TRICKLE_DEST_BILLING_URL (did you mean TRICKLE_DEST_CRM_URL?):"
            " no destination 'billing' in the routes file (it has: orders, crm)",
        ),
        ("TRICKLE_ZZZ", "unknown variable TRICKLE_ZZZ"),
    ],
)
def test_an_unknown_trickle_variable_stops_the_import(name: str, problem: str) -> None:
    """A misspelt name would leave its setting at the default without a word."""
    message = error_of(env_with(TRICKLE_STAGE="local", **{name: "3"}))
    assert message == f"invalid Trickle settings for stage 'local': {problem}"


def test_every_unknown_variable_is_named_with_the_other_problems() -> None:
    message = error_of(env_with(TRICKLE_AUTHH="token", TRICKLE_DRAIN_BUDGET="0", TRICKLE_ZZZ=""))
    assert message == (
        "invalid Trickle settings: TRICKLE_DRAIN_BUDGET='0' must be between 1 and 100000;"
        " unknown variable TRICKLE_AUTHH (did you mean TRICKLE_AUTH?); unknown variable TRICKLE_ZZZ"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {name: "set" for name in NOT_READ_BY_THE_APP},  # written by the tools, read by others
        {"TRICKLE_DEST_ORDERS_HEARTBEAT_S": "30", "TRICKLE_DEST_CRM_GROUP_EXPRESSION": ""},  # every field
        {
            "TRICKLE_AUTH_TOKEN_PARAMETER": "/p",
            "TRICKLE_CALLBACK_STATE_MACHINES": "",
            "TRICKLE_UNROUTED": "count",
        },
        {"NOT_TRICKLE_AUTHH": "x", "trickle_authh": "x"},  # another program's
    ],
)
def test_the_variables_a_stage_may_hold_pass(overrides: dict[str, str]) -> None:
    load_settings(env_with(**overrides))


def test_an_unreadable_routes_file_says_nothing_of_destination_variables(tmp_path: Path) -> None:
    """Its destinations are unknown: the one error is that it cannot be read."""
    missing = tmp_path / "missing.toml"
    message = error_of(env_with(TRICKLE_ROUTES_FILE=str(missing), TRICKLE_DEST_BILLING_URL="https://x"))
    assert (
        message
        == f"invalid Trickle settings: TRICKLE_ROUTES_FILE: cannot read {missing}: No such file or directory"
    )


# --- auth, signing and the request's shape (issue #24) -----------------------------------------------

OAUTH2 = 'auth = "oauth2_client_credentials"\ntoken_url = "https://auth.example.com/oauth/token"'
KEY_PARAMETER = "TRICKLE_DEST_ORDERS_KEY_PARAMETER"


def orders_with(toml: WriteToml, fields: str, **stage: str | None) -> Destination:
    """Destination `orders` of a routes file with `fields`, under BASE_ENV with `stage` applied."""
    return load_settings(env_with(**{**toml(one_destination(fields)), **stage})).destination("orders")


@pytest.mark.parametrize(
    ("fields", "stage", "expected"),
    [
        pytest.param("", {}, {"auth": "api_key", "api_key_parameter": "/trickle/test/api-key"}, id="default"),
        pytest.param('auth = "api_key"\nkey_header = "X-Key"', {}, {"api_key_header": "X-Key"}, id="api-key"),
        pytest.param(
            'auth = "basic"', {}, {"auth": "basic", "api_key_parameter": "/trickle/test/api-key"}, id="basic"
        ),
        pytest.param(
            'auth = "basic"',
            {"TRICKLE_STAGE": "dev", KEY_PARAMETER: None},
            {"api_key_parameter": "/trickle/dev/orders-api-key"},
            id="basic-credentials-in-the-stage-s-parameter",
        ),
        pytest.param(
            'auth = "none"', {KEY_PARAMETER: None}, {"auth": "none", "api_key_parameter": ""}, id="none"
        ),
        pytest.param(
            'auth = "none"',
            {KEY_PARAMETER: None, "TRICKLE_STAGE": "dev"},
            {"api_key_parameter": ""},
            id="none-dev",
        ),
        pytest.param("", {"TRICKLE_DEST_ORDERS_AUTH": "basic"}, {"auth": "basic"}, id="auth-from-the-stage"),
        pytest.param(
            OAUTH2,
            {},
            {
                "auth": "oauth2_client_credentials",
                "token_url": "https://auth.example.com/oauth/token",
                "scope": "",
                "audience": "",
                "client_auth": "basic",
                "token_refresh_skew_s": 60,
                "api_key_parameter": "/trickle/test/api-key",
            },
            id="oauth2-defaults",
        ),
        pytest.param(
            OAUTH2 + '\nscope = "invoices:write invoices:read"\naudience = "https://api.example.com"\n'
            'client_auth = "body"\ntoken_refresh_skew_s = 0',
            {},
            {
                "scope": "invoices:write invoices:read",
                "audience": "https://api.example.com",
                "client_auth": "body",
                "token_refresh_skew_s": 0,
            },
            id="oauth2-all-fields",
        ),
        pytest.param(
            OAUTH2 + '\nscope = "a"',
            {
                "TRICKLE_DEST_ORDERS_TOKEN_URL": "http://127.0.0.1:8091/token",
                "TRICKLE_DEST_ORDERS_SCOPE": "b c",
                "TRICKLE_DEST_ORDERS_CLIENT_AUTH": "body",
                "TRICKLE_DEST_ORDERS_TOKEN_REFRESH_SKEW_S": "3600",
            },
            {
                "token_url": "http://127.0.0.1:8091/token",
                "scope": "b c",
                "client_auth": "body",
                "token_refresh_skew_s": 3600,
            },
            id="oauth2-stage-over-file",
        ),
        pytest.param("", {}, {"signing": "", "signing_parameter": ""}, id="unsigned"),
        pytest.param(
            'signing = "standard_webhooks"',
            {"TRICKLE_STAGE": "dev"},
            {"signing": "standard_webhooks", "signing_parameter": "/trickle/dev/orders-signing-secret"},
            id="signing-parameter-of-the-stage",
        ),
        pytest.param(
            'signing = "standard_webhooks"\nsigning_parameter = "/mine/signing"',
            {},
            {"signing_parameter": "/mine/signing"},
            id="signing-parameter-from-the-file",
        ),
        pytest.param(
            "",
            {
                "TRICKLE_DEST_ORDERS_SIGNING": "standard_webhooks",
                "TRICKLE_DEST_ORDERS_SIGNING_PARAMETER": "/s",
            },
            {"signing": "standard_webhooks", "signing_parameter": "/s"},
            id="signing-from-the-stage",
        ),
        pytest.param("", {}, {"method": "POST", "path": None}, id="method-and-path-defaults"),
        pytest.param('method = "PUT"', {}, {"method": "PUT"}, id="put"),
        pytest.param(
            'method = "PUT"', {"TRICKLE_DEST_ORDERS_METHOD": "PATCH"}, {"method": "PATCH"}, id="patch-stage"
        ),
        pytest.param("", {}, {"headers": (), "secret_headers": (), "headers_parameter": ""}, id="no-headers"),
        pytest.param(
            'headers = { "X-Source" = "trickle", "Accept" = "application/json" }',
            {},
            {"headers": (("X-Source", "trickle"), ("Accept", "application/json"))},
            id="headers-inline-table",
        ),
        pytest.param(
            '[destinations.orders.headers]\n"X-Source" = "trickle"',
            {},
            {"headers": (("X-Source", "trickle"),)},
            id="headers-sub-table",
        ),
        pytest.param(
            'headers = { "X-Source" = "file" }',
            {"TRICKLE_DEST_ORDERS_HEADERS": '{"X-Source": "stage", "X-Env": "dev"}'},
            {"headers": (("X-Source", "stage"), ("X-Env", "dev"))},
            id="headers-stage-json-over-file",
        ),
        pytest.param(
            'headers = { "x-api-key" = "not the key" }\nauth = "basic"',
            {},
            {"headers": (("x-api-key", "not the key"),)},
            id="x-api-key-is-free-when-not-the-auth-header",
        ),
        pytest.param(
            'headers = { "Authorization" = "Token t" }\nauth = "api_key"',
            {},
            {"headers": (("Authorization", "Token t"),)},
            id="authorization-is-free-when-the-key-has-another-header",
        ),
        pytest.param(
            'secret_headers = ["X-Tenant-Key"]',
            {"TRICKLE_STAGE": "dev"},
            {"secret_headers": ("X-Tenant-Key",), "headers_parameter": "/trickle/dev/orders-headers"},
            id="secret-headers-parameter-of-the-stage",
        ),
        pytest.param(
            'secret_headers = ["X-File"]',
            {
                "TRICKLE_DEST_ORDERS_SECRET_HEADERS": " X-A , X-B,",
                "TRICKLE_DEST_ORDERS_HEADERS_PARAMETER": "/h",
            },
            {"secret_headers": ("X-A", "X-B"), "headers_parameter": "/h"},
            id="secret-headers-stage-list-over-file",
        ),
    ],
)
def test_auth_signing_and_request_shape_fields(
    toml: WriteToml, fields: str, stage: dict[str, str | None], expected: dict[str, object]
) -> None:
    orders = orders_with(toml, fields, **stage)
    assert {name: getattr(orders, name) for name in expected} == expected


def test_the_path_is_compiled_at_import_and_renders_each_value_as_one_segment(toml: WriteToml) -> None:
    orders = orders_with(toml, 'method = "PUT"\npath = "/invoices/{item.invoice_id}"')
    assert orders.path is not None
    assert orders.path.text == "/invoices/{item.invoice_id}"
    assert orders.path.render({"item": {"invoice_id": "2026/07 #1"}}) == "/invoices/2026%2F07%20%231"


def test_the_path_can_come_from_the_stage(toml: WriteToml) -> None:
    orders = orders_with(toml, 'path = "/file/{a}"', TRICKLE_DEST_ORDERS_PATH="/stage/{keys.pk}")
    assert orders.path is not None
    assert orders.path.render({"keys": {"pk": "c-1"}}) == "/stage/c-1"


def test_existing_destinations_keep_the_api_key_and_post_to_their_url(settings: Settings) -> None:
    """The suite's routes file predates issue #24: nothing it does changes."""
    for destination in settings.destinations.values():
        assert (destination.auth, destination.method, destination.path) == ("api_key", "POST", None)
        assert (destination.signing, destination.headers, destination.secret_headers) == ("", (), ())
    crm = settings.destination("crm")
    assert (crm.api_key_header, crm.api_key_scheme) == ("Authorization", "Bearer")


@pytest.mark.parametrize(
    ("fields", "stage", "needle"),
    [
        # auth
        pytest.param(
            'auth = "oauth2"',
            {},
            "routes file FILE: destinations.orders.auth='oauth2' must be one of api_key, basic,"
            " oauth2_client_credentials, none",
            id="unknown-auth",
        ),
        pytest.param(
            "",
            {"TRICKLE_DEST_ORDERS_AUTH": "Basic"},
            "TRICKLE_DEST_ORDERS_AUTH='Basic' must be one of",
            id="unknown-auth-in-the-stage",
        ),
        pytest.param(
            'auth = "basic"\nkey_header = "X-Key"',
            {},
            "routes file FILE: destinations.orders.key_header applies only with auth = 'api_key'",
            id="key-header-with-basic",
        ),
        pytest.param(
            OAUTH2 + '\nkey_scheme = "Bearer"',
            {},
            "routes file FILE: destinations.orders.key_scheme applies only with auth = 'api_key'",
            id="key-scheme-with-oauth2",
        ),
        pytest.param(
            'auth = "none"',
            {KEY_PARAMETER: None, "TRICKLE_DEST_ORDERS_KEY_HEADER": "X-Key"},
            "TRICKLE_DEST_ORDERS_KEY_HEADER applies only with auth = 'api_key'",
            id="key-header-from-the-stage-with-none",
        ),
        pytest.param(
            'auth = "none"',
            {},
            "TRICKLE_DEST_ORDERS_KEY_PARAMETER applies only with an auth other than 'none'",
            id="key-parameter-from-the-stage-with-none",
        ),
        pytest.param(
            'auth = "none"\nkey_parameter = "/k"',
            {KEY_PARAMETER: None},
            "routes file FILE: destinations.orders.key_parameter applies only with an auth other than 'none'",
            id="key-parameter-with-none",
        ),
        # oauth2
        pytest.param(
            'auth = "oauth2_client_credentials"',
            {},
            "destination 'orders' needs TRICKLE_DEST_ORDERS_TOKEN_URL (or token_url in the routes file)",
            id="oauth2-without-token-url",
        ),
        pytest.param(
            'auth = "oauth2_client_credentials"\ntoken_url = "ftp://auth.example.com/token"',
            {},
            "routes file FILE: destinations.orders.token_url='ftp://auth.example.com/token'"
            " is not an http(s) URL",
            id="token-url-not-http",
        ),
        pytest.param(
            OAUTH2,
            {"TRICKLE_DEST_ORDERS_TOKEN_URL": "auth.example.com/token"},
            "TRICKLE_DEST_ORDERS_TOKEN_URL='auth.example.com/token' is not an http(s) URL",
            id="token-url-from-the-stage-not-http",
        ),
        *(
            pytest.param(
                f'auth = "basic"\n{field} = {value}',
                {},
                f"routes file FILE: destinations.orders.{field} applies only with"
                " auth = 'oauth2_client_credentials'",
                id=f"{field}-with-basic",
            )
            for field, value in [
                ("token_url", '"https://a.example/t"'),
                ("scope", '"s"'),
                ("audience", '"a"'),
                ("client_auth", '"body"'),
                ("token_refresh_skew_s", "30"),
            ]
        ),
        pytest.param(
            "",
            {"TRICKLE_DEST_ORDERS_SCOPE": "s"},
            "TRICKLE_DEST_ORDERS_SCOPE applies only with auth = 'oauth2_client_credentials'",
            id="scope-from-the-stage-with-api-key",
        ),
        pytest.param(
            OAUTH2 + '\nclient_auth = "post"',
            {},
            "routes file FILE: destinations.orders.client_auth='post' must be one of basic, body",
            id="unknown-client-auth",
        ),
        pytest.param(
            OAUTH2 + "\ntoken_refresh_skew_s = 3601",
            {},
            "routes file FILE: destinations.orders.token_refresh_skew_s=3601 must be between 0 and 3600",
            id="skew-too-long",
        ),
        pytest.param(
            OAUTH2,
            {"TRICKLE_DEST_ORDERS_TOKEN_REFRESH_SKEW_S": "-1"},
            "TRICKLE_DEST_ORDERS_TOKEN_REFRESH_SKEW_S='-1' must be between 0 and 3600",
            id="skew-negative",
        ),
        # signing
        pytest.param(
            'signing = "hmac"',
            {},
            "routes file FILE: destinations.orders.signing='hmac' must be standard_webhooks"
            " (or left out: unsigned)",
            id="unknown-signing",
        ),
        pytest.param(
            'signing_parameter = "/s"',
            {},
            "routes file FILE: destinations.orders.signing_parameter applies only with signing",
            id="signing-parameter-without-signing",
        ),
        pytest.param(
            'signing = "standard_webhooks"',
            {},
            "destination 'orders' needs TRICKLE_DEST_ORDERS_SIGNING_PARAMETER (or"
            " signing_parameter in the routes file)",
            id="signing-without-a-stage-or-parameter",
        ),
        # method and path
        pytest.param(
            'method = "GET"',
            {},
            "routes file FILE: destinations.orders.method='GET' must be one of POST, PUT, PATCH",
            id="get",
        ),
        pytest.param(
            "",
            {"TRICKLE_DEST_ORDERS_METHOD": "put"},
            "TRICKLE_DEST_ORDERS_METHOD='put' must be one of",
            id="lowercase",
        ),
        pytest.param(
            'path = "invoices/{item.id}"',
            {},
            "routes file FILE: destinations.orders.path: path 'invoices/{item.id}' must start with /",
            id="path-without-slash",
        ),
        pytest.param(
            'path = "/invoices/{item.[}"',
            {},
            "routes file FILE: destinations.orders.path: path placeholder {item.[} is not a"
            " JMESPath expression",
            id="path-bad-expression",
        ),
        pytest.param(
            "",
            {"TRICKLE_DEST_ORDERS_PATH": "/invoices/{item.id"},
            "TRICKLE_DEST_ORDERS_PATH: path '/invoices/{item.id' has an empty placeholder or"
            " an unmatched brace",
            id="path-from-the-stage-unclosed",
        ),
        pytest.param(
            'path = "/a b/{x}"',
            {},
            "routes file FILE: destinations.orders.path: path '/a b/{x}' holds ' '",
            id="path-with-a-space",
        ),
        pytest.param(
            "path = 5",
            {},
            "routes file FILE: destinations.orders.path=5 must be a string",
            id="path-not-text",
        ),
        # headers
        *(
            pytest.param(
                f'auth = "{auth}"\n{extra}headers = {{ "{header}" = "x" }}',
                {} if auth != "none" else {KEY_PARAMETER: None},
                f"destination 'orders': headers: header '{header}' is set by Trickle itself and"
                " may not be given",
                id=f"reserved-{header}-{auth}",
            )
            for auth, extra, header in [
                ("api_key", "", "X-Api-Key"),
                ("api_key", 'key_header = "X-Key"\n', "x-key"),
                ("basic", "", "Authorization"),
                ("oauth2_client_credentials", 'token_url = "https://a.example/t"\n', "authorization"),
                ("none", "", "Content-Type"),
                ("none", "", "Content-Length"),
                ("none", "", "Host"),
                ("none", "", "Transfer-Encoding"),
                ("basic", "", "Idempotency-Key"),
                ("basic", "", "webhook-id"),
                ("basic", "", "Webhook-Timestamp"),
                ("basic", "", "WEBHOOK-SIGNATURE"),
            ]
        ),
        pytest.param(
            OAUTH2 + '\nsecret_headers = ["Authorization"]\nheaders_parameter = "/h"',
            {},
            "destination 'orders': secret_headers: header 'Authorization' is set by Trickle itself",
            id="reserved-secret-header",
        ),
        pytest.param(
            "",
            {"TRICKLE_DEST_ORDERS_HEADERS": '{"Idempotency-Key": "1"}'},
            "destination 'orders': headers: header 'Idempotency-Key' is set by Trickle itself",
            id="reserved-header-from-the-stage",
        ),
        pytest.param(
            "",
            {
                "TRICKLE_DEST_ORDERS_SECRET_HEADERS": "X-Tenant,x-api-key",
                "TRICKLE_DEST_ORDERS_HEADERS_PARAMETER": "/h",
            },
            "destination 'orders': secret_headers: header 'x-api-key' is set by Trickle itself",
            id="reserved-secret-header-from-the-stage",
        ),
        pytest.param(
            'headers = { "X-Tenant" = "t" }\nsecret_headers = ["x-tenant"]\nheaders_parameter = "/h"',
            {},
            "destination 'orders': secret_headers: header 'x-tenant' is given in both"
            " headers and secret_headers",
            id="header-both-fixed-and-secret",
        ),
        pytest.param(
            'headers = { "X Source" = "t" }',
            {},
            "destination 'orders': headers: header 'X Source' is not a header name",
            id="header-name-not-a-token",
        ),
        pytest.param(
            'headers = { "X-Source" = "a\\r\\nX-Evil: 1" }',
            {},
            "destination 'orders': headers: header 'X-Source': its value holds a line break",
            id="header-value-with-crlf",
        ),
        pytest.param(
            'headers = { "X-Source" = 1 }',
            {},
            "routes file FILE: destinations.orders.headers={'X-Source': 1} must be a table"
            " of header names to strings",
            id="header-value-not-text",
        ),
        pytest.param(
            'headers = "X-Source: trickle"',
            {},
            "routes file FILE: destinations.orders.headers='X-Source: trickle' must be a"
            " table of header names",
            id="headers-not-a-table",
        ),
        pytest.param(
            "",
            {"TRICKLE_DEST_ORDERS_HEADERS": "X-Source: trickle"},
            "TRICKLE_DEST_ORDERS_HEADERS='X-Source: trickle' must be a JSON object of header"
            " names to strings",
            id="headers-from-the-stage-not-json",
        ),
        pytest.param(
            "",
            {"TRICKLE_DEST_ORDERS_HEADERS": '["X-Source"]'},
            "TRICKLE_DEST_ORDERS_HEADERS='[\"X-Source\"]' must be a JSON object of header names to strings",
            id="headers-from-the-stage-not-an-object",
        ),
        pytest.param(
            'secret_headers = "X-Tenant"',
            {},
            "routes file FILE: destinations.orders.secret_headers='X-Tenant' must be a list of header names",
            id="secret-headers-not-a-list",
        ),
        pytest.param(
            "secret_headers = [1]",
            {},
            "routes file FILE: destinations.orders.secret_headers=[1] must be a list of header names",
            id="secret-headers-not-names",
        ),
        pytest.param(
            'secret_headers = ["X-Tenant"]',
            {},
            "destination 'orders' needs TRICKLE_DEST_ORDERS_HEADERS_PARAMETER (or"
            " headers_parameter in the routes file)",
            id="secret-headers-without-a-stage-or-parameter",
        ),
        pytest.param(
            'headers_parameter = "/h"',
            {},
            "routes file FILE: destinations.orders.headers_parameter applies only with secret_headers",
            id="headers-parameter-without-secret-headers",
        ),
    ],
)
def test_auth_signing_and_request_shape_errors(
    toml: WriteToml, fields: str, stage: dict[str, str | None], needle: str
) -> None:
    message = error_of(env_with(**{**toml(one_destination(fields)), **stage}))
    assert needle in message
    assert message.count("invalid Trickle settings") == 1


def test_every_problem_of_the_new_fields_is_reported_at_once(toml: WriteToml) -> None:
    fields = (
        'auth = "basic"\nkey_header = "X-Key"\nscope = "s"\nmethod = "GET"\n'
        'headers = { "Authorization" = "x", "Host" = "h" }'
    )
    message = error_of(env_with(**toml(one_destination(fields))))
    for needle in (
        "destinations.orders.key_header applies only with auth = 'api_key'",
        "destinations.orders.scope applies only with auth = 'oauth2_client_credentials'",
        "destinations.orders.method='GET' must be one of POST, PUT, PATCH",
        "headers: header 'Authorization' is set by Trickle itself",
        "headers: header 'Host' is set by Trickle itself",
    ):
        assert needle in message


# --- bulk delivery (issue #25) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "stage", "expected"),
    [
        pytest.param(
            "",
            {},
            {
                "batch_max_items": 1,
                "batch_max_bytes": 1_048_576,
                "batch_wrapper": None,
                "batch_results": None,
            },
            id="one-message-per-request-by-default",
        ),
        pytest.param(
            'batch_max_items = 50\nbatch_max_bytes = 2097152\npath = "/bulk"\n'
            'batch_wrapper = "{records: @}"\nbatch_results = "results[].status"\nbatch_id_field = "event_id"',
            {},
            {
                "batch_max_items": 50,
                "batch_max_bytes": 2_097_152,
                "batch_wrapper": "{records: @}",
                "batch_results": "results[].status",
                "batch_id_field": "event_id",
            },
            id="from-the-file-with-a-fixed-path",
        ),
        pytest.param(
            'batch_max_items = 10\nbatch_failed = "errors[].index"',
            {},
            {"batch_results": None, "batch_failed": "errors[].index"},
            id="a-list-of-failed-indexes",
        ),
        pytest.param(
            "batch_max_items = 10",
            {"TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "100", "TRICKLE_DEST_ORDERS_BATCH_RESULTS": "@"},
            {
                "batch_max_items": 100,
                "batch_results": "@",
                "batch_id_field": "id",
                "batch_max_bytes": 1_048_576,
            },
            id="from-the-stage",
        ),
    ],
)
def test_batch_fields(
    toml: WriteToml, fields: str, stage: dict[str, str | None], expected: dict[str, object]
) -> None:
    orders = orders_with(toml, fields, **stage)
    found = {name: getattr(orders, name) for name in expected}
    for name in ("batch_wrapper", "batch_results", "batch_failed"):
        if name in found and found[name] is not None:
            found[name] = found[name].text
    assert found == expected


@pytest.mark.parametrize(
    ("fields", "stage", "needle"),
    [
        pytest.param(
            "batch_max_items = 0",
            {},
            "routes file FILE: destinations.orders.batch_max_items=0 must be between 1 and 100",
            id="items-zero",
        ),
        pytest.param(
            "",
            {"TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "101"},
            "TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS='101' must be between 1 and 100",
            id="items-over-a-round",
        ),
        *(
            pytest.param(
                f"{field} = {value}",
                {},
                f"routes file FILE: destinations.orders.{field} applies only with batch_max_items > 1",
                id=f"{field}-without-batching",
            )
            for field, value in [
                ("batch_max_bytes", "2097152"),
                ("batch_wrapper", '"{records: @}"'),
                ("batch_results", '"results[].status"'),
                ("batch_failed", '"failed"'),
                ("batch_id_field", '"event_id"'),
            ]
        ),
        pytest.param(
            "batch_max_items = 1",
            {"TRICKLE_DEST_ORDERS_BATCH_WRAPPER": "{records: @}"},
            "TRICKLE_DEST_ORDERS_BATCH_WRAPPER applies only with batch_max_items > 1",
            id="wrapper-from-the-stage-without-batching",
        ),
        pytest.param(
            'batch_max_items = 10\npath = "/customers/{keys.pk}"',
            {},
            "routes file FILE: destinations.orders.path='/customers/{keys.pk}' has placeholders, but a"
            " request of several messages has one path: keep batch_max_items = 1 or make the path fixed",
            id="placeholders-in-the-path",
        ),
        pytest.param(
            "batch_max_items = 10\nbatch_max_bytes = 6291457",
            {},
            "routes file FILE: destinations.orders.batch_max_bytes=6291457 must be between 1024 and 6291456",
            id="bytes-over-a-lambda-payload",
        ),
        pytest.param(
            "batch_max_items = 10\nbatch_max_bytes = 262144",
            {},
            "destination 'orders': batch_max_bytes=262144 must be at least TRICKLE_MAX_MESSAGE_BYTES=1048576:"
            " one message must always fit in a request",
            id="bytes-under-a-message",
        ),
        pytest.param(
            'batch_max_items = 10\nbatch_wrapper = "{records: @"',
            {},
            "routes file FILE: destinations.orders.batch_wrapper: '{records: @' is not a JMESPath expression",
            id="bad-wrapper",
        ),
        pytest.param(
            'batch_max_items = 10\nbatch_results = "results[].["',
            {},
            "routes file FILE: destinations.orders.batch_results: 'results[].[' is not a JMESPath expression",
            id="bad-results",
        ),
        pytest.param(
            'batch_max_items = 10\nbatch_failed = "failed[?"',
            {},
            "routes file FILE: destinations.orders.batch_failed: 'failed[?' is not a JMESPath expression",
            id="bad-failed",
        ),
        pytest.param(
            'batch_max_items = 10\nbatch_results = "results[].status"',
            {"TRICKLE_DEST_ORDERS_BATCH_FAILED": "failed"},
            "routes file FILE: destinations.orders.batch_results and TRICKLE_DEST_ORDERS_BATCH_FAILED both"
            " map the answer to the items: give one of them",
            id="results-and-failed",
        ),
        pytest.param(
            'batch_max_items = 10\nbatch_id_field = ""',
            {},
            "routes file FILE: destinations.orders.batch_id_field must name the field each item carries its"
            " message id in",
            id="empty-id-field",
        ),
    ],
)
def test_batch_field_errors(toml: WriteToml, fields: str, stage: dict[str, str | None], needle: str) -> None:
    message = error_of(env_with(**{**toml(one_destination(fields)), **stage}))
    assert needle in message
    assert message.count("invalid Trickle settings") == 1


def test_a_smaller_message_limit_lets_a_smaller_batch_body(toml: WriteToml) -> None:
    orders = orders_with(
        toml, "batch_max_items = 10\nbatch_max_bytes = 262144", TRICKLE_MAX_MESSAGE_BYTES="262144"
    )
    assert (orders.batch_max_items, orders.batch_max_bytes) == (10, 262_144)
