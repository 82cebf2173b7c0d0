"""The stand-in API over real HTTP: the methods and paths a destination may use, and the
credentials and signature it requires (a 401, counted as an auth failure and never applied, for a
request without them), as its listing shows them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.fakes import until
from trickle_local.standin_api import Faults, Reply, StandInApi
from trickle_local.standin_bulk import Bulk
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


def post(api: StandInApi, path: str, body: object, **kwargs: Any) -> requests.Response:
    return requests.post(
        f"{api.url}{path}", data=json.dumps(body, separators=(",", ":")), timeout=10, **kwargs
    )


def records(*ids: str, marker: str = "") -> dict[str, Any]:
    return {"records": [{"id": i, "sk": f"{marker}{i}"} for i in ids]}


def test_a_bulk_endpoint_answers_each_item_applies_an_id_once_and_refuses_poison_items_alone(
    served: list[StandInApi],
) -> None:
    api = StandInApi(
        Faults(api_key="k", poison=frozenset({'"sk":"m3"'})),
        base_path="/v1",
        bulk=Bulk("/v1/bulk", array_at=("records",)),
    ).start()
    served.append(api)
    key = {"x-api-key": "k"}

    first = post(api, "/v1/bulk", records("m1", "m2", "m3", "m4"), headers=key)
    again = post(api, "/v1/bulk", records("m2", "m4", "m5"), headers=key)  # m2, m4 applied already
    bare = post(api, "/v1/bulk", [{"id": "m6"}], headers=key)  # not wrapped as this API wants
    refused = post(api, "/v1/bulk", records("m7", "m8"))  # no key
    single = post(api, "/v1/items", {"id": "m9", "sk": "m3"}, headers=key)  # poison, the whole request

    assert first.status_code == 207
    assert first.json() == {
        "results": [
            {"id": "m1", "status": 200},
            {"id": "m2", "status": 200},
            {"id": "m3", "status": 400, "error": "poison item rejected"},
            {"id": "m4", "status": 200},
        ]
    }
    assert again.status_code == 200
    assert again.json()["results"] == [
        {"id": "m2", "status": 200, "replayed": True},
        {"id": "m4", "status": 200, "replayed": True},
        {"id": "m5", "status": 200},
    ]
    assert bare.status_code == 400 and '{"records": [{"id": ...}, ...]}' in bare.json()["error"]
    assert (refused.status_code, single.status_code) == (401, 400)
    assert [i.id for i in api.applied_items()] == ["m1", "m2", "m4", "m5"]
    assert api.items == 4 + 3 + 0 + 2 + 1

    document = listing(api, "/v1/bulk")
    assert (document["received"], document["items"]) == (4, 9)
    assert [(e["items"], e["status"], e["applied"]) for e in document["requests"]] == [
        (4, 207, True),
        (3, 200, True),
        (0, 400, False),
        (2, 401, False),
    ]
    assert document["requests"][1]["results"] == [
        {"id": "m2", "status": 200, "applied": False},
        {"id": "m4", "status": 200, "applied": False},
        {"id": "m5", "status": 200, "applied": True},
    ]
    assert document["requests"][0]["body"] == records("m1", "m2", "m3", "m4")
    assert "results" not in listing(api, "/v1/items")["requests"][0]


def test_item_errors_fail_items_alone_and_request_faults_fail_the_whole_request(
    served: list[StandInApi],
) -> None:
    api = serve(served, Faults(item_error_rate=0.5, seed=3), base_path="/")
    api.bulk = Bulk("/bulk")
    ids = [f"m{n:02d}" for n in range(40)]

    mixed = post(api, "/bulk", [{"id": i} for i in ids])

    statuses = [r["status"] for r in mixed.json()["results"]]
    assert mixed.status_code == 207 and set(statuses) == {200, 503}  # some of each, drawn per item
    assert [i.id for i in api.applied_items()] == [i for i, s in zip(ids, statuses, strict=True) if s == 200]
    failed = [i for i, s in zip(ids, statuses, strict=True) if s == 503]

    api.faults.item_error_rate, api.faults.throttle_rate = 0.0, 1.0
    throttled = post(api, "/bulk", [{"id": i} for i in failed])
    api.faults.throttle_rate, api.faults.error_rate = 0.0, 1.0
    unavailable = post(api, "/bulk", [{"id": i} for i in failed])
    api.faults.error_rate, api.faults.timeout_rate, api.faults.timeout_s = 0.0, 1.0, 1.0
    with pytest.raises(requests.ReadTimeout):  # applied, then answered too late
        requests.post(f"{api.url}/bulk", data=json.dumps([{"id": i} for i in failed]), timeout=0.3)
    until(lambda: len(api.requests) == 4)  # the late request has been taken
    api.faults.timeout_rate = 0.0
    retried = post(api, "/bulk", [{"id": i} for i in failed])

    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "1")
    assert unavailable.status_code == 503
    assert [r.items is not None and {i.status for i in r.items} for r in api.requests[1:3]] == [{429}, {503}]
    assert retried.status_code == 200
    assert all(r.get("replayed") for r in retried.json()["results"])  # the late request applied them
    assert sorted(i.id or "" for i in api.applied_items()) == ids  # each once


def test_without_an_item_error_rate_a_requests_faults_follow_the_seed_whatever_its_items(
    served: list[StandInApi],
) -> None:
    """Request n of a run gets the seed's nth draw, however many items the requests before it
    carried (they drew nothing per item), so a test's fixed seed gives the same faults at the bulk
    endpoint as at a single-item one."""
    faults = {"error_rate": 0.3, "throttle_rate": 0.2, "seed": 11}
    bulk, single = serve(served, Faults(**faults)), serve(served, Faults(**faults))
    bulk.bulk = Bulk("/bulk")

    batched = [post(bulk, "/bulk", [{"id": f"m{n}-{i}"} for i in range(n % 7 + 1)]) for n in range(20)]
    alone = [post(single, "/items", {"id": f"m{n}"}) for n in range(20)]

    assert [a.status_code for a in batched] == [a.status_code for a in alone]
    assert {a.status_code for a in alone} == {200, 429, 503}


def test_a_bulk_endpoint_refuses_a_body_over_its_limit_and_can_apply_items_again(
    served: list[StandInApi],
) -> None:
    api = serve(served, Faults(honour_idempotency=False))
    api.bulk = Bulk("/bulk", max_bytes=100)
    small = [{"id": "m1"}, {"id": "m2"}]

    too_big = post(api, "/bulk", [{"id": f"m{n}"} for n in range(10)])
    twice = [post(api, "/bulk", small), post(api, "/bulk", small)]

    assert too_big.status_code == 413 and "over this endpoint's 100" in too_big.json()["error"]
    assert [a.status_code for a in twice] == [200, 200]
    assert [i.id for i in api.applied_items()] == ["m1", "m2", "m1", "m2"]  # ids not honoured


def test_a_responders_answer_applies_the_items_when_it_is_a_2xx(served: list[StandInApi]) -> None:
    """A test scripts odd answers (the wrong number of results, say); a 2xx still applied the items
    it had not applied before, so a retry of them is not applied again."""
    api = serve(served, Faults())
    api.bulk = Bulk("/bulk")
    api.responder = lambda body, headers: Reply(200, '{"results":[]}') if '"m1"' in body else None

    scripted = post(api, "/bulk", [{"id": "m1"}, {"id": "m2"}])
    retried = post(api, "/bulk", [{"id": "m2"}, {"id": "m3"}])

    assert scripted.json() == {"results": []}
    assert retried.json()["results"] == [
        {"id": "m2", "status": 200, "replayed": True},
        {"id": "m3", "status": 200},
    ]
    assert [i.id for i in api.applied_items()] == ["m1", "m2", "m3"]
