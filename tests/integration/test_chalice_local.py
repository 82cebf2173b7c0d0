"""The routes served by chalice local on loopback, reached with real HTTP requests, with the token
authorizer running as API Gateway would run it, against the local runtime's moto endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tests.integration.conftest import OPERATOR_TOKEN, Servers, Stack
from trickle_local.routes import RouteServer
from trickle_project.stage import load_config


@pytest.fixture
def routes(servers: Servers, stack: Stack) -> Iterator[str]:
    server = RouteServer(servers.app, load_config(), "local").start()
    yield server.url
    server.stop()


def auth(token: str = OPERATOR_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_is_open_and_everything_else_needs_the_token(routes: str) -> None:
    assert requests.get(f"{routes}/health", timeout=10).status_code == 200
    for method, path in (("GET", "/status"), ("POST", "/messages"), ("GET", "/dead-letters")):
        missing = requests.request(method, routes + path, timeout=10)
        wrong = requests.request(method, routes + path, headers=auth("not-the-token"), timeout=10)
        assert missing.status_code == 401, path
        assert wrong.status_code == 403, path
        assert OPERATOR_TOKEN not in missing.text + wrong.text
        assert "Traceback" not in missing.text + wrong.text


@pytest.mark.smoke
def test_submit_over_http_is_delivered_and_visible_with_a_working_presigned_url(
    routes: str, stack: Stack
) -> None:
    answer = requests.post(
        f"{routes}/messages",
        data=b'{"item": {"sku": "A-1", "qty": 3}, "destination": "orders"}',
        headers=auth() | {"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 202
    status_url = routes + answer.json()["status_url"]

    stack.drain()

    record = requests.get(status_url, headers=auth(), timeout=10).json()
    assert record["status"] == "delivered"
    archived = requests.get(record["response_url"], timeout=10)
    assert archived.status_code == 200
    assert json.loads(archived.text)["status"] == 200


def test_bad_input_over_http_is_a_400_without_internals(routes: str) -> None:
    response = requests.post(
        f"{routes}/messages",
        data=b'{"item": 1}',
        headers=auth() | {"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert "'item' must be a non-empty JSON object" in response.text
    assert "Traceback" not in response.text
