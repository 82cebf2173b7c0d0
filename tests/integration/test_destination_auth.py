"""Issue #24 end to end: the real drain (wiring's Drainer with its ApiClient and RequestCredentials)
on the emulator, against the stand-in API with its OAuth2 token endpoint (oauthlib's server side)
and its Standard Webhooks check (the reference package), each able to fail.

The suite's app has drains for `orders` and `crm` only, so here `orders` is a billing API: OAuth2
client credentials, every request signed, PUT to a path filled from the body. Time is the test's:
the token endpoint's clock and the drain's credentials' clock are FakeClocks the tests move (never a
sleep). The drains' roles are the policies generated for this routes file, so every read of the
signing secret is checked against IAM as well."""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from chalicelib import policy, wiring
from chalicelib.credentials import RequestCredentials
from chalicelib.settings import Destination, load_settings
from tests.fakes import FakeClock
from tests.integration.conftest import Stack, emf_lines
from trickle_deploy.policies import function_policies
from trickle_local.standin_api import Faults, RecordedRequest, Reply, StandInApi
from trickle_local.token_endpoint import TOKEN_PATH, TokenEndpoint

CLIENT_ID, CLIENT_SECRET = "trickle-billing", "cs-5e0d-never-log-me"
LIFETIME_S, SKEW_S = 300, 60  # the endpoint's tokens; the destination refreshes 60 s before expiry


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


SIGNING, OLD_SIGNING = whsec(b"billing-signing-key-2026-0001"), whsec(b"billing-signing-key-2025-0001")
DLQ = "TRICKLE_DEST_ORDERS_DLQ_URL"

ROUTES = f"""
[destinations.orders]
auth = "oauth2_client_credentials"
scope = "invoices:write"
token_refresh_skew_s = {SKEW_S}
signing = "standard_webhooks"
method = "PUT"
path = "/customers/{{keys.pk}}/invoices/{{item.invoice_id}}"
headers = {{ "X-Source" = "trickle" }}
ordering = "skip"
group_by = "partition_key"

# As in tests/routes.toml: the suite's stage sets crm's variables, so the file keeps it (unused here).
[destinations.crm]
key_header = "Authorization"
key_scheme = "Bearer"

[[routes]]
name = "invoices"
events = ["INSERT"]
destinations = ["orders"]

[[routes]]
name = "customers"
events = ["INSERT"]
filter = "item.type == 'customer'"
destinations = ["crm"]
"""


@dataclass
class Billing:
    stack: Stack
    api: StandInApi
    tokens: TokenEndpoint
    issuer_clock: FakeClock  # the token endpoint's: tokens expire when it moves
    client_clock: FakeClock  # the drain's credentials': a token is due when it moves
    destination: Destination

    @property
    def token_url(self) -> str:
        return self.api.url + TOKEN_PATH

    def store_client(self, secret: str = CLIENT_SECRET) -> None:
        value = json.dumps({"client_id": CLIENT_ID, "client_secret": secret})
        self._store(self.destination.api_key_parameter, value)

    def store_signing(self, value: str) -> None:
        self._store(self.destination.signing_parameter, value)

    def _store(self, name: str, value: str) -> None:
        self.stack.aws["ssm"].put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def invoices(self, groups: int, per_group: int, prefix: str = "c") -> dict[str, list[str]]:
        """Interleaved invoices across customers, ingested; returns the sort keys per customer."""
        self.stack.put_items(
            [
                self.stack.item(f"{prefix}{g}", f"{i:03}", invoice_id={"S": f"INV-{g}-{i:03}"})
                for i in range(per_group)
                for g in range(groups)
            ]
        )
        self.stack.ingest_new()
        return {f"{prefix}{g}": [f"{i:03}" for i in range(per_group)] for g in range(groups)}


@pytest.fixture
def billing_factory(
    stack_factory: Any, api: StandInApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Billing]:
    """`billing_factory(TRICKLE_X="...")`: the stack with `orders` as the billing API, its client
    credentials and signing secret stored, the stand-in requiring its tokens and signature."""
    routes = tmp_path / "billing-routes.toml"
    routes.write_text(ROUTES)
    issuer_clock, client_clock = FakeClock(), FakeClock()
    tokens = TokenEndpoint(
        CLIENT_ID,
        CLIENT_SECRET,
        lifetime_s=LIFETIME_S,
        scopes=frozenset({"invoices:write"}),
        clock=issuer_clock.monotonic,
    )
    # wiring builds the drain's credentials as ever; only their monotonic clock is the test's
    monkeypatch.setattr(
        RequestCredentials,
        "from_destination",
        functools.partial(RequestCredentials.from_destination, clock=client_clock.monotonic),
    )

    def build(**overrides: str) -> Billing:
        stack: Stack = stack_factory(
            TRICKLE_ROUTES_FILE=str(routes),
            TRICKLE_DEST_ORDERS_TOKEN_URL=api.url + TOKEN_PATH,
            **overrides,
        )
        stack.policies = function_policies(stack.env)
        monkeypatch.setattr(api, "tokens", tokens)
        api.faults = Faults(signing_secret=SIGNING)
        billing = Billing(
            stack, api, tokens, issuer_clock, client_clock, load_settings(stack.env).destination("orders")
        )
        billing.store_client()
        billing.store_signing(SIGNING)
        return billing

    return build


def ledger_attempts(stack: Stack) -> dict[str, int]:
    """Every ledger record's attempts, by message id."""
    items = stack.aws["dynamodb"].scan(TableName=stack.env["TRICKLE_LEDGER_TABLE"])["Items"]
    return {item["message_id"]["S"]: int(item["attempts"]["N"]) for item in items}


def attempts(message_id: str) -> int:
    record = wiring.ledger("orders").get(message_id)
    assert record is not None
    return record.attempts


def bearer(request: RecordedRequest) -> str:
    return request.headers["authorization"].removeprefix("Bearer ")


def test_a_token_expiring_in_the_middle_of_a_run_is_refreshed_once_before_it_runs_out(
    billing_factory: Callable[..., Billing], capfd: pytest.CaptureFixture[str]
) -> None:
    billing = billing_factory()
    stack, api = billing.stack, billing.api
    expected = billing.invoices(groups=2, per_group=6)
    seen: list[int] = []
    lock = threading.Lock()

    def fourth_moves_time(body: str, headers: dict[str, str]) -> Reply | None:
        with lock:
            seen.append(1)
            if len(seen) == 4:  # past the refresh point (60 s before expiry), the token still good
                billing.issuer_clock.advance(LIFETIME_S - SKEW_S + 10)
                billing.client_clock.advance(LIFETIME_S - SKEW_S + 10)
        return None

    api.responder = fourth_moves_time

    report = stack.drain()

    assert (report["delivered"], report["stopped_by"]) == (12, "empty")
    assert stack.delivered_by_group() == expected
    assert (api.token_requests, api.auth_failures) == (2, 0)
    used = [bearer(r) for r in api.requests]
    assert len(set(used)) == 2 and used[0] != used[-1]  # the refreshed token took over mid-run
    out, err = capfd.readouterr()
    for secret in (*set(used), CLIENT_SECRET, SIGNING):  # logged at DEBUG, every delivery too
        assert secret not in out + err + json.dumps(report)


def test_16_workers_starting_at_once_make_one_token_request(billing_factory: Callable[..., Billing]) -> None:
    billing = billing_factory(TRICKLE_DRAIN_WORKERS="16")
    billing.tokens.faults.delay_s = 0.5  # the answer is slow: every worker asks for a token meanwhile
    expected = billing.invoices(groups=16, per_group=2)

    report = billing.stack.drain()

    assert report["delivered"] == 32
    assert billing.stack.delivered_by_group() == expected
    assert (billing.api.token_requests, billing.api.auth_failures) == (1, 0)


def test_a_401_with_a_cached_token_refreshes_it_once_then_the_request_goes_again(
    billing_factory: Callable[..., Billing],
) -> None:
    billing = billing_factory(TRICKLE_DRAIN_WORKERS="4")
    stack, api = billing.stack, billing.api
    expected = billing.invoices(groups=4, per_group=2)
    assert stack.drain()["delivered"] == 8
    # The endpoint no longer takes the token (expired on its clock); by the drain's, it is still good.
    billing.issuer_clock.advance(LIFETIME_S + 1)
    expected |= billing.invoices(groups=4, per_group=2, prefix="d")

    report = stack.drain()

    assert (report["delivered"], report["stopped_by"]) == (8, "empty")
    assert stack.delivered_by_group() == expected
    assert api.token_requests == 2  # one refresh, however many workers were refused
    refused = [r for r in api.requests if r.status == 401]
    assert refused and all(r.auth_ok is False for r in refused)
    assert all(attempts(r.idempotency_key) == 1 for r in refused)  # the 2xx only


def test_a_second_401_after_the_refresh_stops_the_run_without_dead_lettering_or_counting(
    billing_factory: Callable[..., Billing],
) -> None:
    billing = billing_factory()
    stack, api = billing.stack, billing.api
    billing.invoices(groups=1, per_group=3)
    api.responder = lambda body, headers: Reply(401, '{"error":"invalid_token"}')  # whatever the token

    report = stack.drain()

    assert (report["stopped_by"], report["stop_reason"]) == ("auth", "HTTP 401")
    assert (report["delivered"], report["dead_lettered"]) == (0, 0)
    first, second = api.requests
    assert first.idempotency_key == second.idempotency_key
    assert bearer(first) != bearer(second) and api.token_requests == 2  # sent again after one refresh
    assert attempts(first.idempotency_key) == 0
    assert stack.queue_depth() == 3
    assert stack.take_messages(DLQ) == []


def test_a_token_endpoint_down_for_a_stretch_leaves_the_messages_queued_until_it_is_back(
    billing_factory: Callable[..., Billing], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run stopped for want of credentials holds its heads 30 s; 1 s here, as the tests' backoff.
    monkeypatch.setattr(policy, "CREDENTIALS_WAIT_S", 1)
    billing = billing_factory()
    stack, api = billing.stack, billing.api
    expected = billing.invoices(groups=3, per_group=3)
    billing.tokens.down_for(120)
    unavailable = f"token endpoint {billing.token_url} is unavailable: HTTP 503 temporarily_unavailable"

    first = stack.drain()
    billing.client_clock.advance(10)  # past the drain's memory of the failure: the next run asks again
    second = stack.drain_until(lambda r: r["received"])[-1]

    for report in (first, second):
        assert (report["stopped_by"], report["stop_reason"]) == ("credentials_unavailable", unavailable)
        assert (report["delivered"], report["dead_lettered"]) == (0, 0)
    assert api.requests == [] and api.token_requests == 2
    assert stack.queue_depth() == 9
    assert set(ledger_attempts(stack).values()) <= {0}

    billing.issuer_clock.advance(120)  # back
    billing.client_clock.advance(10)
    stack.drain_until(lambda _: stack.queue_depth() == 0)

    assert stack.delivered_by_group() == expected
    assert api.token_requests == 3 and api.auth_failures == 0
    assert all(attempts(r.idempotency_key) == 1 for r in api.requests)
    assert stack.take_messages(DLQ) == []


def test_bad_client_credentials_stop_the_run_with_the_reason_and_leave_every_message_queued(
    billing_factory: Callable[..., Billing], capfd: pytest.CaptureFixture[str]
) -> None:
    billing = billing_factory()
    stack, api = billing.stack, billing.api
    wrong = "cs-wrong-2b7f-never-log-me"
    billing.store_client(secret=wrong)
    billing.invoices(groups=2, per_group=2)
    capfd.readouterr()

    report = stack.drain()

    refused = f"token endpoint {billing.token_url} refused the client: HTTP 401 invalid_client"
    assert (report["stopped_by"], report["stop_reason"]) == ("credentials_refused", refused)
    assert (report["delivered"], report["dead_lettered"]) == (0, 0)
    assert api.requests == []  # nothing left without its credentials
    assert [r.status for r in billing.tokens.requests] == [401]  # SSM re-read: the same secret
    assert stack.queue_depth() == 4
    assert stack.take_messages(DLQ) == []
    assert set(ledger_attempts(stack).values()) <= {0}
    out, err = capfd.readouterr()
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    said = {(line["message"], line.get("destination"), line.get("reason")) for line in logged}
    assert ("credentials refused", "orders", refused) in said
    assert "the destination's credentials are refused; stopping the run" in {m for m, _, _ in said}
    (metrics,) = emf_lines(out)
    assert metrics["CredentialsRefused"] in (1.0, [1.0])
    basic = base64.b64encode(f"{CLIENT_ID}:{wrong}".encode()).decode()
    for secret in (wrong, CLIENT_SECRET, basic):
        assert secret not in out + err + json.dumps(report)


def verified(request: RecordedRequest, secret: str) -> bool:
    """Whether the reference package takes the request's signature with `secret`."""
    Webhook(secret).verify(request.body.encode(), request.headers, json_parse=False)
    return True


def test_every_request_is_signed_as_the_reference_package_verifies(
    billing_factory: Callable[..., Billing],
) -> None:
    billing = billing_factory()
    stack, api = billing.stack, billing.api
    big, precise = "12345678901234567890123456789012345678", "3.1415926535897932384626433832795028"
    long_text = "ü" * 102_400  # 200 KiB in UTF-8
    stack.put_items(
        [
            stack.item("c0", "000", invoice_id={"S": "INV-1"}, customer={"S": "Zoë Ångström — 東京 🚀"}),
            stack.item("c0", "001", invoice_id={"S": "INV-2"}, amount={"N": big}, rate={"N": precise}),
            stack.item("c1", "000", invoice_id={"S": "INV-3"}, notes={"S": long_text}),
        ]
    )
    stack.ingest_new()

    report = stack.drain()

    assert report["delivered"] == 3 and api.auth_failures == 0
    bodies = [r.body for r in api.requests]
    assert any("Zoë Ångström — 東京 🚀" in b for b in bodies)
    assert any(f'"amount":{big}' in b and f'"rate":{precise}' in b for b in bodies)  # every digit
    assert any(long_text in b for b in bodies)
    for request in api.requests:
        assert request.signature_ok is True and verified(request, SIGNING)
        assert request.headers["webhook-id"] == request.idempotency_key
        assert (request.method, request.headers["x-source"]) == ("PUT", "trickle")


def test_during_a_signing_secret_rotation_every_request_verifies_with_either_secret(
    billing_factory: Callable[..., Billing],
) -> None:
    billing = billing_factory()
    stack, api = billing.stack, billing.api
    billing.store_signing(f"{OLD_SIGNING} {SIGNING}")
    expected = billing.invoices(groups=2, per_group=2)
    api.faults.signing_secret = SIGNING  # the receiver has the new secret already ...

    assert stack.drain()["delivered"] == 4
    expected |= billing.invoices(groups=2, per_group=2, prefix="d")
    api.faults.signing_secret = OLD_SIGNING  # ... or still the old one
    assert stack.drain()["delivered"] == 4

    assert stack.delivered_by_group() == expected
    assert api.auth_failures == 0
    for request in api.requests:
        assert len(request.headers["webhook-signature"].split()) == 2
        assert verified(request, SIGNING) and verified(request, OLD_SIGNING)


def test_a_put_path_is_filled_from_the_body_each_value_one_encoded_segment(
    billing_factory: Callable[..., Billing],
) -> None:
    billing = billing_factory()
    stack, api = billing.stack, billing.api
    customer = "ACME Corp/Zürich #1"
    stack.put_items(
        [
            stack.item(customer, "000", invoice_id={"S": "2026/06 #7 ü?"}),
            stack.item(customer, "001", invoice_id={"N": "12345678901234567890"}),
            stack.item(customer, "002"),  # no invoice_id
            stack.item(customer, "003", invoice_id={"S": "INV-3"}),
        ]
    )
    stack.ingest_new()

    report = stack.drain()

    assert (report["delivered"], report["dead_lettered"]) == (3, 1)
    base = "/orders/customers/ACME%20Corp%2FZ%C3%BCrich%20%231/invoices/"
    assert [(r.method, r.path) for r in api.requests] == [
        ("PUT", base + "2026%2F06%20%237%20%C3%BC%3F"),
        ("PUT", base + "12345678901234567890"),
        ("PUT", base + "INV-3"),
    ]
    (dead,) = stack.take_messages(DLQ)
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert json.loads(dead["Body"])["keys"] == {"pk": customer, "sk": "002"}
    assert attributes["trickle-reason"] == "path placeholder {item.invoice_id} is missing (or null)"
    assert attributes["trickle-attempts"] == "0"
    dead_id = json.loads(dead["Body"])["message_id"]
    assert attempts(dead_id) == 0 and dead_id not in {r.idempotency_key for r in api.requests}


# A header that tries to override a reserved one is refused at import, naming the destination and
# the header: tests/unit/test_settings.py::test_auth_signing_and_request_shape_errors (the
# `reserved-*` cases, for every reserved name and auth kind, from the routes file and the stage).
