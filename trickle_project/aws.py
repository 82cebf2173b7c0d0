"""Clients and credentials for a local AWS endpoint, without importing any emulator (so starting
ministack does not pay for importing moto)."""

from __future__ import annotations

import os
import socket
from typing import Any

import boto3

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
SERVICES = ("dynamodb", "dynamodbstreams", "sqs", "ssm", "kms", "s3", "stepfunctions")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def use_local_credentials(region: str = "us-east-1") -> None:
    """Dummy credentials, so nothing aimed at the local endpoint can sign for a real account."""
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.setdefault("AWS_DEFAULT_REGION", region)


def clients(endpoint: str | None) -> dict[str, Any]:
    make: Any = boto3.client
    return {name: make(name, endpoint_url=endpoint) for name in SERVICES}
