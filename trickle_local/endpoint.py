"""The embedded AWS endpoint: moto's server on loopback, speaking the AWS wire protocol."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class MotoEndpoint:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server = ThreadedMotoServer(ip_address=host, port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoEndpoint:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every resource, as a fresh account would have."""
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()


def use_local_credentials(region: str = "us-east-1") -> None:
    """Dummy credentials, so nothing aimed at the local endpoint can sign for a real account."""
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.setdefault("AWS_DEFAULT_REGION", region)


def clients(endpoint: str | None) -> dict[str, Any]:
    kwargs = {"endpoint_url": endpoint} if endpoint else {}
    return {name: boto3.client(name, **kwargs) for name in ("dynamodb", "dynamodbstreams", "sqs", "ssm")}  # type: ignore[call-overload]
