"""Cached clients and services, built once per Lambda container (Chalice sample style)."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.api_client import ApiClient, make_session
from chalicelib.drain import Drainer
from chalicelib.fifo_queue import FifoQueue
from chalicelib.ingest import Ingestor
from chalicelib.ledger import Ledger
from chalicelib.secrets import SecretCache
from chalicelib.settings import Settings, load_settings

_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)


@functools.cache
def settings() -> Settings:
    return load_settings()


@functools.cache
def client(service: str) -> Any:
    return boto3.client(service, config=_BOTO_CONFIG)  # type: ignore[call-overload]


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
    return Ledger(client("dynamodb"), s.ledger_table, s.ledger_ttl_s)


@functools.cache
def ingestor() -> Ingestor:
    return Ingestor(queue(), dead_letters(), ledger(), settings())


@functools.cache
def drainer() -> Drainer:
    s = settings()
    api = ApiClient(make_session(), s.destination, api_key().get)
    return Drainer(queue(), dead_letters(), ledger(), api, api_key().refresh, s)


def reset() -> None:
    """Forget every cached object, as a new container would (used by tests and the local runtime)."""
    for cached in (settings, client, api_key, queue, dead_letters, ledger, ingestor, drainer):
        cached.cache_clear()
