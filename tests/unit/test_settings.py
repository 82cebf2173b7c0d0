"""Stage settings from environment variables (chalicelib/settings.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from chalicelib.settings import (
    SQS_MAX_MESSAGE_BYTES,
    Destination,
    Settings,
    SettingsError,
    load_settings,
    table_name_from_stream_arn,
)

MakeSettings = Callable[..., Settings]

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/items/stream/2026-01-01T00:00:00.000"
REQUIRED = (
    "TRICKLE_STREAM_ARN",
    "TRICKLE_QUEUE_URL",
    "TRICKLE_DLQ_URL",
    "TRICKLE_API_URL",
    "TRICKLE_API_KEY_PARAMETER",
    "TRICKLE_LEDGER_TABLE",
)


def error_of(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    return str(caught.value)


def test_defaults_from_the_minimal_env(settings: Settings) -> None:
    assert settings.stream_arn == STREAM_ARN
    assert settings.table_name == "items"
    assert settings.queue_url == "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo"
    assert settings.dlq_url == "https://sqs.us-east-1.amazonaws.com/123456789012/dlq.fifo"
    assert settings.destination == Destination(
        name="default",
        url="https://api.example.com/items",
        api_key_parameter="/trickle/test/api-key",
        api_key_header="x-api-key",
        connect_timeout_s=3.05,
        read_timeout_s=10.0,
        ordering="skip",
        max_attempts=5,
        rate_limit_per_s=10.0,
        rate_limit_burst=5,
    )
    assert settings.ledger_table == "trickle-test-ledger"
    assert settings.ledger_ttl_s == 30 * 86_400
    assert settings.event_names == frozenset({"INSERT"})
    assert settings.group_by == "partition_key"
    assert settings.partition_key == "pk"
    assert settings.ingest_batch_size == 100
    assert settings.ingest_batch_window_s == 0
    assert settings.max_message_bytes == SQS_MAX_MESSAGE_BYTES == 1_048_576
    assert settings.send_attempts == 4
    assert settings.drain_budget == 500
    assert settings.drain_safety_margin_ms == 10_000
    assert settings.visibility_timeout_s == 960
    assert settings.retry_delay_s == 30
    assert settings.retry_max_delay_s == 900
    assert settings.breaker_failures == 5
    assert settings.secret_max_age_s == 300
    assert settings.log_level == "INFO"


def test_full_env_is_parsed_with_types(base_env: dict[str, str]) -> None:
    env = {
        **base_env,
        "TRICKLE_EVENT_NAMES": " insert , Modify,REMOVE ",
        "TRICKLE_GROUP_BY": "table",
        "TRICKLE_PARTITION_KEY": "  tenant  ",
        "TRICKLE_DESTINATION_NAME": "crm",
        "TRICKLE_API_KEY_HEADER": "Authorization",
        "TRICKLE_CONNECT_TIMEOUT_SECONDS": "1.5",
        "TRICKLE_READ_TIMEOUT_SECONDS": "20",
        "TRICKLE_INGEST_BATCH_SIZE": "250",
        "TRICKLE_INGEST_BATCH_WINDOW_SECONDS": "5",
        "TRICKLE_MAX_MESSAGE_BYTES": "262144",
        "TRICKLE_SEND_ATTEMPTS": "6",
        "TRICKLE_DRAIN_BUDGET": "1000",
        "TRICKLE_DRAIN_SAFETY_MARGIN_MS": "2500",
        "TRICKLE_VISIBILITY_TIMEOUT_SECONDS": "120",
        "TRICKLE_RETRY_DELAY_SECONDS": "45",
        "TRICKLE_SECRET_MAX_AGE_SECONDS": "0",
        "TRICKLE_LOG_LEVEL": "DEBUG",
        "TRICKLE_LEDGER_TABLE": "crm-ledger",
        "TRICKLE_LEDGER_TTL_DAYS": "7",
        "TRICKLE_ORDERING": "strict",
        "TRICKLE_MAX_ATTEMPTS": "8",
        "TRICKLE_RETRY_MAX_DELAY_SECONDS": "3600",
        "TRICKLE_BREAKER_FAILURES": "12",
        "TRICKLE_RATE_LIMIT_PER_SECOND": "2.5",
        "TRICKLE_RATE_LIMIT_BURST": "20",
    }
    settings = load_settings(env)
    assert settings.event_names == frozenset({"INSERT", "MODIFY", "REMOVE"})
    assert settings.group_by == "table"
    assert settings.partition_key == "tenant"
    assert settings.destination.name == "crm"
    assert settings.destination.api_key_header == "Authorization"
    assert settings.destination.connect_timeout_s == 1.5
    assert settings.destination.read_timeout_s == 20.0
    assert isinstance(settings.destination.read_timeout_s, float)
    numbers = (
        settings.ingest_batch_size,
        settings.ingest_batch_window_s,
        settings.max_message_bytes,
        settings.send_attempts,
        settings.drain_budget,
        settings.drain_safety_margin_ms,
        settings.visibility_timeout_s,
        settings.retry_delay_s,
        settings.secret_max_age_s,
    )
    assert numbers == (250, 5, 262144, 6, 1000, 2500, 120, 45, 0)
    assert all(type(n) is int for n in numbers)
    assert settings.log_level == "DEBUG"
    assert settings.ledger_table == "crm-ledger"
    assert settings.ledger_ttl_s == 7 * 86_400
    assert settings.destination.ordering == "strict"
    assert settings.destination.max_attempts == 8
    assert settings.retry_max_delay_s == 3600
    assert settings.breaker_failures == 12
    assert settings.destination.rate_limit_per_s == 2.5
    assert isinstance(settings.destination.rate_limit_per_s, float)
    assert settings.destination.rate_limit_burst == 20
    new_numbers = (
        settings.ledger_ttl_s,
        settings.destination.max_attempts,
        settings.retry_max_delay_s,
        settings.breaker_failures,
        settings.destination.rate_limit_burst,
    )
    assert all(type(n) is int for n in new_numbers)


def test_values_are_stripped_and_blank_means_default(base_env: dict[str, str]) -> None:
    env = {k: f"  {v}  " for k, v in base_env.items()}
    env["TRICKLE_SEND_ATTEMPTS"] = "   "
    env["TRICKLE_DESTINATION_NAME"] = ""
    settings = load_settings(env)
    assert settings.queue_url == base_env["TRICKLE_QUEUE_URL"]
    assert settings.destination.api_key_parameter == "/trickle/test/api-key"
    assert settings.send_attempts == 4
    assert settings.destination.name == "default"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch, base_env: dict[str, str]) -> None:
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRICKLE_DRAIN_BUDGET", "7")
    assert load_settings().drain_budget == 7


def test_settings_are_immutable(settings: Settings) -> None:
    with pytest.raises(AttributeError):
        settings.queue_url = "https://elsewhere.example/q.fifo"  # type: ignore[misc]


def test_every_missing_variable_in_one_error() -> None:
    message = error_of({})
    for name in REQUIRED:
        assert f"{name} is required" in message
    assert "TRICKLE_PARTITION_KEY" in message
    assert message.count("invalid Trickle settings") == 1


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="TRICKLE_STREAM_ARN"):
        load_settings({})


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_required_variable(base_env: dict[str, str], missing: str) -> None:
    env = {k: v for k, v in base_env.items() if k != missing}
    message = error_of(env)
    assert f"{missing} is required" in message
    assert all(f"{other} is required" not in message for other in REQUIRED if other != missing)


def test_blank_required_variable_counts_as_missing(base_env: dict[str, str]) -> None:
    assert "TRICKLE_API_URL is required" in error_of({**base_env, "TRICKLE_API_URL": "   "})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TRICKLE_SEND_ATTEMPTS", "three"),
        ("TRICKLE_SEND_ATTEMPTS", "2.5"),
        ("TRICKLE_INGEST_BATCH_SIZE", "1e2"),
        ("TRICKLE_DRAIN_BUDGET", "0x10"),
        ("TRICKLE_READ_TIMEOUT_SECONDS", "ten"),
        ("TRICKLE_CONNECT_TIMEOUT_SECONDS", "1,5"),
        ("TRICKLE_LEDGER_TTL_DAYS", "a month"),
        ("TRICKLE_LEDGER_TTL_DAYS", "1.5"),
        ("TRICKLE_MAX_ATTEMPTS", "five"),
        ("TRICKLE_RETRY_MAX_DELAY_SECONDS", "15m"),
        ("TRICKLE_BREAKER_FAILURES", "3.0"),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "10/s"),
        ("TRICKLE_RATE_LIMIT_BURST", "2.5"),
    ],
)
def test_malformed_numbers(base_env: dict[str, str], name: str, raw: str) -> None:
    message = error_of({**base_env, name: raw})
    assert f"{name}={raw!r} is not a" in message


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
        ("TRICKLE_VISIBILITY_TIMEOUT_SECONDS", "43201"),
        ("TRICKLE_RETRY_DELAY_SECONDS", "0"),
        ("TRICKLE_SECRET_MAX_AGE_SECONDS", "86401"),
        ("TRICKLE_DRAIN_SAFETY_MARGIN_MS", "900001"),
        ("TRICKLE_CONNECT_TIMEOUT_SECONDS", "0.05"),
        ("TRICKLE_READ_TIMEOUT_SECONDS", "600.5"),
        ("TRICKLE_READ_TIMEOUT_SECONDS", "nan"),
        ("TRICKLE_READ_TIMEOUT_SECONDS", "inf"),
        ("TRICKLE_LEDGER_TTL_DAYS", "0"),
        ("TRICKLE_LEDGER_TTL_DAYS", "3651"),
        ("TRICKLE_MAX_ATTEMPTS", "0"),
        ("TRICKLE_MAX_ATTEMPTS", "101"),
        ("TRICKLE_RETRY_MAX_DELAY_SECONDS", "0"),
        ("TRICKLE_RETRY_MAX_DELAY_SECONDS", "43201"),
        ("TRICKLE_BREAKER_FAILURES", "0"),
        ("TRICKLE_BREAKER_FAILURES", "10001"),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "0"),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "0.009"),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "-1"),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "10000.5"),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "nan"),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "inf"),
        ("TRICKLE_RATE_LIMIT_BURST", "0"),
        ("TRICKLE_RATE_LIMIT_BURST", "10001"),
    ],
)
def test_out_of_range_numbers(base_env: dict[str, str], name: str, raw: str) -> None:
    message = error_of({**base_env, name: raw})
    assert f"{name}={raw!r} must be between" in message


FIELDS = {
    "TRICKLE_SEND_ATTEMPTS": "send_attempts",
    "TRICKLE_MAX_MESSAGE_BYTES": "max_message_bytes",
    "TRICKLE_SECRET_MAX_AGE_SECONDS": "secret_max_age_s",
    "TRICKLE_INGEST_BATCH_SIZE": "ingest_batch_size",
    "TRICKLE_LEDGER_TTL_DAYS": "ledger_ttl_s",
    "TRICKLE_RETRY_MAX_DELAY_SECONDS": "retry_max_delay_s",
    "TRICKLE_BREAKER_FAILURES": "breaker_failures",
    "TRICKLE_MAX_ATTEMPTS": "destination.max_attempts",
    "TRICKLE_RATE_LIMIT_PER_SECOND": "destination.rate_limit_per_s",
    "TRICKLE_RATE_LIMIT_BURST": "destination.rate_limit_burst",
}


def field_of(settings: Settings, name: str) -> object:
    value: object = settings
    for part in FIELDS[name].split("."):
        value = getattr(value, part)
    return value


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
        ("TRICKLE_MAX_ATTEMPTS", "1", 1),
        ("TRICKLE_MAX_ATTEMPTS", "100", 100),
        ("TRICKLE_RETRY_MAX_DELAY_SECONDS", "1", 1),
        ("TRICKLE_RETRY_MAX_DELAY_SECONDS", "43200", 43_200),
        ("TRICKLE_BREAKER_FAILURES", "1", 1),
        ("TRICKLE_BREAKER_FAILURES", "10000", 10_000),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "0.01", 0.01),
        ("TRICKLE_RATE_LIMIT_PER_SECOND", "10000", 10_000.0),
        ("TRICKLE_RATE_LIMIT_BURST", "1", 1),
        ("TRICKLE_RATE_LIMIT_BURST", "10000", 10_000),
    ],
)
def test_range_bounds_are_inclusive(
    make_settings: MakeSettings, name: str, raw: str, expected: float
) -> None:
    assert field_of(make_settings(**{name: raw}), name) == expected


@pytest.mark.parametrize("ordering", ["skip", "strict", " strict "])
def test_ordering_choices(make_settings: MakeSettings, ordering: str) -> None:
    assert make_settings(TRICKLE_ORDERING=ordering).destination.ordering == ordering.strip()


@pytest.mark.parametrize("ordering", ["STRICT", "fifo", "none", "skip,strict"])
def test_bad_ordering(base_env: dict[str, str], ordering: str) -> None:
    message = error_of({**base_env, "TRICKLE_ORDERING": ordering})
    assert f"TRICKLE_ORDERING={ordering!r} must be one of skip, strict" in message


def test_blank_ordering_means_skip(make_settings: MakeSettings) -> None:
    assert make_settings(TRICKLE_ORDERING="  ").destination.ordering == "skip"


def test_ledger_table_is_required(base_env: dict[str, str]) -> None:
    env = {k: v for k, v in base_env.items() if k != "TRICKLE_LEDGER_TABLE"}
    assert error_of(env) == "invalid Trickle settings: TRICKLE_LEDGER_TABLE is required"
    assert "TRICKLE_LEDGER_TABLE is required" in error_of({**base_env, "TRICKLE_LEDGER_TABLE": " "})


def test_ledger_ttl_is_given_in_days_and_kept_in_seconds(make_settings: MakeSettings) -> None:
    assert make_settings(TRICKLE_LEDGER_TTL_DAYS="2").ledger_ttl_s == 172_800


@pytest.mark.parametrize("name", ["TRICKLE_QUEUE_URL", "TRICKLE_DLQ_URL"])
def test_queue_urls_must_be_fifo(base_env: dict[str, str], name: str) -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/standard"
    message = error_of({**base_env, name: url})
    assert name in message
    assert "FIFO" in message


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("TRICKLE_QUEUE_URL", "sqs.us-east-1.amazonaws.com/123456789012/q.fifo"),
        ("TRICKLE_DLQ_URL", "ftp://sqs.example/dlq.fifo"),
        ("TRICKLE_API_URL", "api.example.com/items"),
        ("TRICKLE_API_URL", "https:///items"),
    ],
)
def test_urls_must_be_http(base_env: dict[str, str], name: str, url: str) -> None:
    assert f"{name}={url!r} is not an http(s) URL" in error_of({**base_env, name: url})


def test_api_url_need_not_be_fifo(make_settings: MakeSettings) -> None:
    assert (
        make_settings(TRICKLE_API_URL="http://127.0.0.1:8080/x").destination.url == "http://127.0.0.1:8080/x"
    )


@pytest.mark.parametrize("raw", ["UPSERT", "INSERT,DELETE", ",", " , "])
def test_bad_event_names(base_env: dict[str, str], raw: str) -> None:
    message = error_of({**base_env, "TRICKLE_EVENT_NAMES": raw})
    assert "TRICKLE_EVENT_NAMES" in message


def test_bad_group_by(base_env: dict[str, str]) -> None:
    message = error_of({**base_env, "TRICKLE_GROUP_BY": "item"})
    assert "TRICKLE_GROUP_BY='item' must be one of partition_key, table" in message


def test_bad_log_level(base_env: dict[str, str]) -> None:
    assert "TRICKLE_LOG_LEVEL" in error_of({**base_env, "TRICKLE_LOG_LEVEL": "verbose"})


@pytest.mark.parametrize("group_by", [None, "partition_key"])
def test_group_by_partition_key_needs_the_key(base_env: dict[str, str], group_by: str | None) -> None:
    env = {k: v for k, v in base_env.items() if k != "TRICKLE_PARTITION_KEY"}
    if group_by is not None:
        env["TRICKLE_GROUP_BY"] = group_by
    assert "TRICKLE_PARTITION_KEY is required when TRICKLE_GROUP_BY=partition_key" in error_of(env)


def test_group_by_table_needs_no_partition_key(make_settings: MakeSettings) -> None:
    settings = make_settings(TRICKLE_GROUP_BY="table", TRICKLE_PARTITION_KEY=None)
    assert settings.group_by == "table"
    assert settings.partition_key is None


def test_many_problems_reported_together(base_env: dict[str, str]) -> None:
    env = {
        **base_env,
        "TRICKLE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        "TRICKLE_SEND_ATTEMPTS": "lots",
        "TRICKLE_DRAIN_BUDGET": "0",
        "TRICKLE_EVENT_NAMES": "CREATE",
        "TRICKLE_STREAM_ARN": "not-an-arn",
    }
    del env["TRICKLE_API_KEY_PARAMETER"]
    message = error_of(env)
    for needle in (
        "TRICKLE_QUEUE_URL",
        "TRICKLE_SEND_ATTEMPTS='lots'",
        "TRICKLE_DRAIN_BUDGET='0'",
        "TRICKLE_EVENT_NAMES='CREATE'",
        "TRICKLE_STREAM_ARN='not-an-arn'",
        "TRICKLE_API_KEY_PARAMETER is required",
    ):
        assert needle in message
    assert len(re.findall(r"; ", message)) == 5


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


def test_visibility_must_outlast_one_delivery_attempt(base_env: dict[str, str]) -> None:
    env = {
        **base_env,
        "TRICKLE_VISIBILITY_TIMEOUT_SECONDS": "5",
        "TRICKLE_CONNECT_TIMEOUT_SECONDS": "1",
        "TRICKLE_READ_TIMEOUT_SECONDS": "3",
    }
    message = error_of(env)
    assert "TRICKLE_VISIBILITY_TIMEOUT_SECONDS=5 must exceed the connect and read timeouts (4 s)" in message
    assert load_settings({**env, "TRICKLE_VISIBILITY_TIMEOUT_SECONDS": "6"}).visibility_timeout_s == 6
