"""A destination's OAuth2 credentials (chalicelib/credentials.py) against a real token endpoint over
HTTP on 127.0.0.1: oauthlib's server side (trickle_local/token_endpoint.py) judges the token request
and the client authentication. The clock of both is the test's: tokens expire when it moves them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from chalicelib.api_client import connect
from chalicelib.credentials import OAuth2, RequestCredentials
from chalicelib.model import Authorization, CredentialsFailure
from tests.fakes import FakeClock, FakeSecret
from trickle_local.token_endpoint import TokenEndpoint, TokenServer

CLIENT_ID, CLIENT_SECRET = "trickle-billing", "cs-4d8a-never-log-me"
LIFETIME_S = 300


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint(clock: FakeClock) -> Iterator[TokenServer]:
    issuer = TokenEndpoint(CLIENT_ID, CLIENT_SECRET, lifetime_s=LIFETIME_S, clock=clock.monotonic)
    with TokenServer(issuer) as server:
        yield server


def client(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
    return json.dumps({"client_id": client_id, "client_secret": secret})


def credentials(
    server: TokenServer,
    clock: FakeClock,
    secret: FakeSecret | None = None,
    client_auth: str = "basic",
    read_timeout_s: float = 10.0,
    skew_s: float = 60,
) -> RequestCredentials:
    return RequestCredentials(
        "billing",
        "oauth2_client_credentials",
        secret or FakeSecret(client()),
        oauth2=OAuth2(
            server.url,
            scope="invoices:write",
            audience="https://billing.example",
            client_auth=client_auth,
            refresh_skew_s=skew_s,
            connect_timeout_s=5,
            read_timeout_s=read_timeout_s,
        ),
        token_endpoint=connect(server.url, 16),
        clock=clock.monotonic,
    )


def bearer(got: Authorization | CredentialsFailure) -> str:
    assert isinstance(got, Authorization), got
    return got.headers["Authorization"].removeprefix("Bearer ")


def test_a_token_expiring_in_the_middle_of_use_is_refreshed_once(
    endpoint: TokenServer, clock: FakeClock
) -> None:
    issuer, creds = endpoint.endpoint, credentials(endpoint, clock, skew_s=60)
    first = bearer(creds.current())
    for _ in range(20):
        clock.advance(12)  # 240 s: the last use is due for a refresh, 60 s before expiry
        used = bearer(creds.current())
    assert used != first
    assert (issuer.token_requests, issuer.tokens_issued) == (2, 2)
    assert issuer.valid(first) and issuer.valid(used)
    clock.advance(LIFETIME_S - 240)
    assert not issuer.valid(first) and issuer.valid(used)
    assert bearer(creds.current()) == used
    assert issuer.requests[0].scope == "invoices:write"
    assert issuer.requests[0].audience == "https://billing.example"


def test_sixteen_workers_starting_at_once_make_exactly_one_token_request(
    endpoint: TokenServer, clock: FakeClock
) -> None:
    creds = credentials(endpoint, clock)
    start = threading.Barrier(16)
    tokens: list[str] = []

    def worker() -> None:
        start.wait(timeout=30)
        tokens.append(bearer(creds.current()))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(tokens) == 16 and len(set(tokens)) == 1
    assert endpoint.endpoint.token_requests == 1
    assert endpoint.endpoint.authorized({"Authorization": f"Bearer {tokens[0]}"})


def test_a_401_with_a_still_valid_cached_token_makes_one_new_token_request(
    endpoint: TokenServer, clock: FakeClock
) -> None:
    creds = credentials(endpoint, clock)
    refused = creds.current()
    assert isinstance(refused, Authorization)
    renewals = [creds.renew(refused.generation, reread_secrets=False) for _ in range(16)]
    renewed = creds.current()
    assert renewals == [True] * 16
    assert bearer(renewed) != bearer(refused)
    assert renewed.generation == refused.generation + 1  # type: ignore[union-attr]
    assert endpoint.endpoint.token_requests == 2


def test_the_token_endpoint_down_for_a_stretch_is_retryable_then_recovers(
    endpoint: TokenServer, clock: FakeClock
) -> None:
    issuer, creds = endpoint.endpoint, credentials(endpoint, clock)
    issuer.down_for(30)
    down = creds.current()
    assert down == CredentialsFailure(
        True, f"token endpoint {endpoint.url} is unavailable: HTTP 503 temporarily_unavailable"
    )
    assert [creds.current() for _ in range(15)] == [down] * 15  # remembered: asked once
    clock.advance(10)
    assert creds.current() == down  # asked again, still down
    assert issuer.token_requests == 2
    clock.advance(21)
    assert issuer.valid(bearer(creds.current()))
    assert issuer.token_requests == 3


def test_a_slow_token_endpoint_times_out_retryable(endpoint: TokenServer, clock: FakeClock) -> None:
    endpoint.endpoint.faults.delay_s = 30
    got = credentials(endpoint, clock, read_timeout_s=0.2).current()
    assert got == CredentialsFailure(True, f"token endpoint {endpoint.url} is unreachable: timeout")


@pytest.mark.parametrize(
    ("rotated", "requests"), [(client(secret="wrong"), 1), (client(secret="also-wrong"), 2)]
)
def test_bad_client_credentials_are_refused_after_one_ssm_reread(
    endpoint: TokenServer, clock: FakeClock, rotated: str, requests: int
) -> None:
    secret = FakeSecret(client(secret="wrong"), rotated)
    got = credentials(endpoint, clock, secret=secret).current()
    assert got == CredentialsFailure(
        False, f"token endpoint {endpoint.url} refused the client: HTTP 401 invalid_client"
    )
    assert secret.refreshes == 1
    assert endpoint.endpoint.token_requests == requests  # asked again only with a secret that changed
    assert CLIENT_SECRET not in got.reason and "wrong" not in got.reason


def test_a_client_secret_rotated_in_ssm_is_found_by_the_reread(
    endpoint: TokenServer, clock: FakeClock
) -> None:
    secret = FakeSecret(client(secret="old"), client())
    assert endpoint.endpoint.valid(bearer(credentials(endpoint, clock, secret=secret).current()))
    assert [r.status for r in endpoint.endpoint.requests] == [401, 200]


def test_the_endpoint_refusing_every_client_is_refused(endpoint: TokenServer, clock: FakeClock) -> None:
    endpoint.endpoint.faults.refuse = True
    got = credentials(endpoint, clock).current()
    assert isinstance(got, CredentialsFailure) and not got.retryable


@pytest.mark.parametrize("client_auth", ["basic", "body"])
@pytest.mark.parametrize(
    ("client_id", "secret"),
    [(CLIENT_ID, CLIENT_SECRET), ("tenant:billing 1", "p%ss+w rd:ünï"), ("ïd+%", "s e:c%2B")],
)
def test_oauthlib_accepts_our_client_authentication(
    clock: FakeClock, client_auth: str, client_id: str, secret: str
) -> None:
    """RFC 6749 2.3.1: Basic with the id and secret form-urlencoded first, so ':' '%' '+' ' ' and
    non-ASCII characters reach the server as they are; or both in the form body."""
    issuer = TokenEndpoint(client_id, secret, clock=clock.monotonic)
    with TokenServer(issuer) as server:
        secret_parameter = FakeSecret(client(client_id, secret))
        got = credentials(server, clock, secret=secret_parameter, client_auth=client_auth).current()
        assert issuer.valid(bearer(got))
    assert [(r.client_auth, r.client_id, r.status) for r in issuer.requests] == [
        (client_auth, client_id, 200)
    ]
