"""Cached clients and services, built once per Lambda container (Chalice sample style)."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.api_client import ApiClient, make_session
from chalicelib.archive import ResponseArchive
from chalicelib.drain import Drainer
from chalicelib.fifo_queue import FifoQueue
from chalicelib.ingest import Ingestor
from chalicelib.ledger import Ledger, Notes
from chalicelib.operations import Operations
from chalicelib.run_lease import RunLease
from chalicelib.secrets import SecretCache
from chalicelib.settings import Settings, load_settings

_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
# Presigned archive URLs: SigV4 (SigV2 URLs are refused in newer regions and deprecated everywhere).
_SERVICE_CONFIG = {"s3": Config(signature_version="s3v4")}


@functools.cache
def settings() -> Settings:
    return load_settings()


@functools.cache
def client(service: str) -> Any:
    config = _BOTO_CONFIG.merge(_SERVICE_CONFIG[service]) if service in _SERVICE_CONFIG else _BOTO_CONFIG
    return boto3.client(service, config=config)  # type: ignore[call-overload]


@functools.cache
def api_key() -> SecretCache:
    s = settings()
    return SecretCache(client("ssm"), s.destination.api_key_parameter, s.secret_max_age_s)


@functools.cache
def queue() -> FifoQueue:
    s = settings()
    return FifoQueue(client("sqs"), s.queue_url, attempts=s.send_attempts)


@functools.cache
def dead_letters() -> FifoQueue:
    s = settings()
    return FifoQueue(client("sqs"), s.dlq_url, attempts=s.send_attempts)


@functools.cache
def ledger() -> Ledger:
    s = settings()
    return Ledger(client("dynamodb"), s.ledger_table, s.ledger_ttl_s, destination=s.destination.name)


@functools.cache
def notes() -> Notes:
    s = settings()
    return Notes(client("dynamodb"), s.ledger_table, s.ledger_ttl_s)


@functools.cache
def archive() -> ResponseArchive | None:
    bucket = settings().archive_bucket
    return ResponseArchive(client("s3"), bucket) if bucket else None


@functools.cache
def auth_token() -> SecretCache:
    s = settings()
    if s.auth_token_parameter is None:
        raise RuntimeError("token authorization needs TRICKLE_AUTH_TOKEN_PARAMETER")
    return SecretCache(client("ssm"), s.auth_token_parameter, s.secret_max_age_s)


@functools.cache
def operations() -> Operations:
    s = settings()
    return Operations(
        client("sqs"), queue(), dead_letters(), ledger(), notes(), archive(), s.destination.name
    )


@functools.cache
def ingestor() -> Ingestor:
    return Ingestor(queue(), dead_letters(), ledger(), settings())


@functools.cache
def drainer() -> Drainer:
    s = settings()
    api = ApiClient(make_session(), s.destination, api_key().get)
    return Drainer(queue(), dead_letters(), ledger(), api, api_key(), s, notes(), archive())


@functools.cache
def run_lease() -> RunLease:
    s = settings()
    return RunLease(client("dynamodb"), s.ledger_table, s.destination.name)


def reset() -> None:
    """Forget every cached object, as a new container would (used by tests and the local runtime)."""
    for cached in (
        settings,
        client,
        api_key,
        queue,
        dead_letters,
        ledger,
        notes,
        archive,
        auth_token,
        operations,
        ingestor,
        drainer,
        run_lease,
    ):
        cached.cache_clear()
