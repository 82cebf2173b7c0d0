"""The stand-in API over real HTTP: the methods and paths a destination may use, and the
credentials and signature it requires (a 401, counted as an auth failure and never applied, for a
request without them), as its listing shows them."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from trickle_local.standin_api import Faults, Reply, StandInApi
from trickle_local.token_endpoint import TokenEndpoint

SECRET = "whsec_" + base64.b64encode(b"a-signing-secret-of-32-bytes!!!!").decode()


@pytest.fixture
def served() -> Iterator[list[StandInApi]]:
    """Stand-ins started by a test, stopped after it."""
    apis: list[StandInApi] = []
    yield apis
    for api in apis:
        api.stop()


def serve(served: list[StandInApi], faults: Faults, base_path: str = "/") -> StandInApi:
    api = StandInApi(faults, base_path=base_path).start()
    served.append(api)
    return api


def listing(api: StandInApi, path: str) -> dict[str, Any]:
    """What `GET <path>` answers."""
    answer = requests.get(f"{api.url}{path}", timeout=10)
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def test_post_put_and_patch_under_its_base_are_taken_and_listed_with_method_and_path(
    served: list[StandInApi],
) -> None:
    api = serve(served, Faults(), base_path="/v1")
    sent = [
        requests.put(f"{api.url}/v1/invoices/INV%2F7%20A", data='{"n":1}', timeout=10),
        requests.patch(f"{api.url}/v1/invoices/INV-8", data='{"n":2}', timeout=10),
        requests.post(f"{api.url}/v1", data='{"n":3}', timeout=10),
        requests.put(f"{api.url}/v10/invoices/INV-9", data='{"n":4}', timeout=10),  # not under /v1
        requests.post(f"{api.url}/elsewhere", data='{"n":5}', timeout=10),
    ]

    assert [r.status_code for r in sent] == [200, 200, 200, 404, 404]
    invoices = listing(api, "/v1/invoices")
    assert invoices["received"] == 2
    assert [
        (e["method"], e["path"], e["applied"], e["auth_ok"], e["signature_ok"]) for e in invoices["requests"]
    ] == [
        ("PUT", "/v1/invoices/INV%2F7%20A", True, None, None),
        ("PATCH", "/v1/invoices/INV-8", True, None, None),
    ]
    assert listing(api, "/")["received"] == 5
    assert [r.path for r in api.applied()] == ["/v1/invoices/INV%2F7%20A", "/v1/invoices/INV-8", "/v1"]


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_basic_credentials_and_secret_headers_are_required_and_never_listed(served: list[StandInApi]) -> None:
    api = serve(served, Faults(basic=("ann", "pw-1"), secret_headers={"X-Tenant-Key": "tk-1"}))
    good = basic("ann", "pw-1") | {"X-Tenant-Key": "tk-1", "Idempotency-Key": "m1"}
    answers = [
        requests.post(f"{api.url}/crm", data="{}", headers=good, timeout=10),
        requests.post(f"{api.url}/crm", data="{}", headers=good | basic("ann", "pw-2"), timeout=10),
        requests.post(f"{api.url}/crm", data="{}", headers=good | {"X-Tenant-Key": "tk-2"}, timeout=10),
        requests.post(f"{api.url}/crm", data="{}", headers={"X-Tenant-Key": "tk-1"}, timeout=10),
    ]

    assert [a.status_code for a in answers] == [200, 401, 401, 401]
    assert api.auth_failures == 3
    assert [r.auth_ok for r in api.requests] == [True, False, False, False]
    assert len(api.applied()) == 1
    text = requests.get(f"{api.url}/crm", timeout=10).text
    assert "pw-1" not in text and "tk-1" not in text and "ann" not in text
    document = listing(api, "/crm")
    assert document["auth_failures"] == 3
    first = document["requests"][0]
    assert first["headers"]["authorization"] == first["headers"]["x-tenant-key"] == "(redacted)"


def signed(secret: str, message_id: str, body: bytes) -> dict[str, str]:
    now = int(time.time())
    signature = Webhook(secret).sign(message_id, datetime.fromtimestamp(now, tz=UTC), body)
    return {"webhook-id": message_id, "webhook-timestamp": str(now), "webhook-signature": signature}


def test_a_signature_is_required_over_the_exact_bytes_sent(served: list[StandInApi]) -> None:
    api = serve(served, Faults(api_key="k", signing_secret=SECRET))
    body = '{"name":"Zoë 東京","big":12345678901234567890.123456789}'.encode()
    headers = {"x-api-key": "k", "Content-Type": "application/json"}
    answers = [
        requests.put(f"{api.url}/i/1", data=body, headers=headers | signed(SECRET, "m1", body), timeout=10),
        requests.put(
            f"{api.url}/i/2", data=body + b" ", headers=headers | signed(SECRET, "m2", body), timeout=10
        ),
        requests.put(f"{api.url}/i/3", data=body, headers=headers, timeout=10),
        requests.put(f"{api.url}/i/4", data=body, headers=signed(SECRET, "m4", body), timeout=10),  # no key
    ]

    assert [a.status_code for a in answers] == [200, 401, 401, 401]
    assert [(r.auth_ok, r.signature_ok, r.applied) for r in api.requests] == [
        (True, True, True),
        (True, False, False),
        (True, False, False),
        (False, True, False),
    ]
    assert api.auth_failures == 3
    first = listing(api, "/i")["requests"][0]
    assert (first["method"], first["auth_ok"], first["signature_ok"]) == ("PUT", True, True)


def test_the_checks_come_before_a_responder(served: list[StandInApi]) -> None:
    """A test's responder scripts the answers to requests the API accepts; a request without its
    credentials is refused whatever the responder would say."""
    api = serve(served, Faults(api_key="k"))
    api.responder = lambda body, headers: Reply(201, '{"scripted":true}')
    refused = requests.post(f"{api.url}/o", data="{}", timeout=10)
    taken = requests.post(f"{api.url}/o", data="{}", headers={"x-api-key": "k"}, timeout=10)

    assert (refused.status_code, taken.status_code) == (401, 201)
    assert [(r.auth_ok, r.applied) for r in api.requests] == [(False, False), (True, True)]


def test_an_oauth2_token_from_its_own_endpoint_is_required_until_it_expires(served: list[StandInApi]) -> None:
    now = [1000.0]
    tokens = TokenEndpoint("client-1", "secret-1", lifetime_s=5, clock=lambda: now[0])
    api = StandInApi(Faults(), base_path="/v1", tokens=tokens).start()
    served.append(api)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    asked = requests.post(
        f"{api.url}/oauth/token", data="grant_type=client_credentials", headers=form,
        auth=("client-1", "secret-1"), timeout=10,
    )  # fmt: skip
    refused = requests.post(
        f"{api.url}/oauth/token", data="grant_type=client_credentials", headers=form,
        auth=("client-1", "wrong"), timeout=10,
    )  # fmt: skip
    assert (asked.status_code, refused.status_code) == (200, 401)
    token = asked.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}

    fresh = requests.put(f"{api.url}/v1/invoices/1", data="{}", headers=bearer, timeout=10)
    unknown = requests.put(
        f"{api.url}/v1/invoices/2", data="{}", headers={"Authorization": "Bearer x"}, timeout=10
    )
    missing = requests.put(f"{api.url}/v1/invoices/3", data="{}", timeout=10)
    now[0] += 5
    expired = requests.put(f"{api.url}/v1/invoices/4", data="{}", headers=bearer, timeout=10)

    assert [a.status_code for a in (fresh, unknown, missing, expired)] == [200, 401, 401, 401]
    assert [(r.path, r.auth_ok, r.applied) for r in api.requests] == [
        ("/v1/invoices/1", True, True),
        ("/v1/invoices/2", False, False),
        ("/v1/invoices/3", False, False),
        ("/v1/invoices/4", False, False),
    ]
    document = listing(api, "/v1")
    assert (document["token_requests"], document["auth_failures"], document["received"]) == (2, 3, 4)
    assert token not in requests.get(f"{api.url}/v1", timeout=10).text
    assert requests.get(f"{api.url}/oauth/token", timeout=10).status_code == 405
