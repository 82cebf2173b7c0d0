"""Every route over real HTTP (chalice local on loopback, the token authorizer in front) against the
inputs of issue 16 and a generated, seeded set of hostile ones: each is refused with a 4xx whose
message says what to fix and shows no internals, and a refused request queues and changes nothing.

`pytest -s` prints the probe table (route, input, status, message)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.integration.conftest import API_KEY, OPERATOR_TOKEN, Servers, Stack
from trickle_local.routes import RouteServer
from trickle_project.stage import load_config

INTERNALS = (
    "Traceback",
    'File "',
    "Error:",  # Python's "XError: ..." lines
    "UnicodeEncodeError",
    "RecursionError",
    "binascii",
    "ValidationException",
    "botocore",
    "chalicelib",
    API_KEY,
    OPERATOR_TOKEN,
)
A_UUID = "0b1f5a57-9d8e-4a56-9a0f-5d6c1e1a7a11"


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    label: str
    body: bytes | None = None
    wanted: str = ""  # a phrase the refusal must contain (what to fix)
    content_type: str = "application/json"


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def issue_probes() -> list[Probe]:
    """The inputs the issue names."""
    post, redrive = "/messages", "/dead-letters/redrive?destination=orders"
    return [
        Probe("POST", post, 'item.x "\\ud800"', b'{"item":{"x":"\\ud800"}}', "lone UTF-16 surrogate"),
        Probe("POST", post, "[[[…]]] 100,000 deep", deep(100_000), "nested more than 32 levels"),
        Probe("POST", post, "item.x NaN", b'{"item":{"x":NaN}}', "item.x is NaN"),
        Probe("POST", post, "item.x Infinity", b'{"item":{"x":Infinity}}', "item.x is Infinity"),
        Probe("POST", post, "item.x 1e400", b'{"item":{"x":1e400}}', "item.x is beyond the range"),
        Probe("POST", post, "duplicate key", b'{"item":{"x":1,"x":2}}', 'the key "x" appears twice'),
        Probe("GET", "/dead-letters?destination=orders&next=abc", "next=abc", wanted="next is not a cursor"),
        Probe(
            "GET", "/dead-letters?destination=orders&next=eHl6", "next=eHl6", wanted="next is not a cursor"
        ),
        Probe(
            "GET",
            "/dead-letters?destination=orders&next=%25%25%25",
            "next=%25%25%25",
            wanted="next is not a cursor",
        ),
        Probe(
            "POST",
            redrive,
            "10 MB groups list",
            json.dumps({"groups": ["g"] * 2_500_000}).encode(),
            "the limit is 65536",
        ),
        Probe(
            "POST",
            redrive,
            'message_ids ["not-a-uuid","../../etc"]',
            b'{"message_ids":["not-a-uuid","../../etc"]}',
            "is not a message id",
        ),
    ]


def fixed_probes() -> list[Probe]:
    """Wrong types, unknown fields, oversize bodies, odd ids, malformed cursors and queries."""
    post, redrive = "/messages", "/dead-letters/redrive?destination=orders"
    probes = [
        Probe("POST", post, "empty body", b"", "must be a JSON object"),
        Probe("POST", post, "not JSON", b"{item:", "not valid JSON"),
        Probe("POST", post, "invalid UTF-8", b'{"item":{"x":"\xff"}}', "not UTF-8"),
        Probe("POST", post, "UTF-16 body", '{"item":{"x":1}}'.encode("utf-16"), "not UTF-8"),
        Probe("POST", post, "array body", b"[1]", "must be a JSON object"),
        Probe("POST", post, "item null", b'{"item":null}', "'item' must be a non-empty JSON object"),
        Probe("POST", post, "item string", b'{"item":"x"}', "'item' must be a non-empty JSON object"),
        Probe("POST", post, "item empty", b'{"item":{}}', "'item' must be a non-empty JSON object"),
        Probe("POST", post, "unknown field", b'{"item":{"a":1},"colour":1}', "unknown field(s): colour"),
        Probe("POST", post, "group number", b'{"item":{"a":1},"group":5}', "'group' must be"),
        Probe(
            "POST", post, "group 200 chars", b'{"item":{"a":1},"group":"' + b"g" * 200 + b'"}', "'group' must"
        ),
        Probe("POST", post, "key list", b'{"item":{"a":1},"idempotency_key":[]}', "'idempotency_key' must"),
        Probe(
            "POST", post, "300 KB body", b'{"item":{"a":"' + b"x" * 300_000 + b'"}}', "the limit is 262144"
        ),
        Probe("POST", post, "-Infinity in a list", b'{"item":{"a":[1,-Infinity]}}', "item.a[1] is -Infinity"),
        Probe("POST", post, "huge integer", b'{"item":{"a":' + b"9" * 400 + b"}}", "beyond the range"),
        Probe("POST", post, "5000-digit integer", b'{"item":{"a":' + b"9" * 5000 + b"}}", "item.a is beyond"),
        Probe("POST", post, "surrogate key", b'{"item":{"\\udc00":1}}', "lone UTF-16 surrogate"),
        Probe("POST", post, "surrogate group", b'{"item":{"a":1},"group":"\\ud800"}', "group holds a lone"),
        Probe("POST", post, "text/plain", b'{"item":{"a":1}}', "", content_type="text/plain"),
        Probe(
            "GET",
            "/dead-letters?destination=orders&limit=0",
            "limit=0",
            wanted="limit must be a whole number",
        ),
        Probe(
            "GET",
            "/dead-letters?destination=orders&limit=-3",
            "limit=-3",
            wanted="limit must be a whole number",
        ),
        Probe(
            "GET",
            "/dead-letters?destination=orders&limit=51",
            "limit=51",
            wanted="limit must be a whole number",
        ),
        Probe(
            "GET",
            "/dead-letters?destination=orders&limit=1e3",
            "limit=1e3",
            wanted="limit must be a whole number",
        ),
        Probe(
            "GET",
            "/dead-letters?destination=orders&limit=" + "9" * 5000,
            "limit=9…(5000)",
            wanted="limit must be",
        ),
        Probe(
            "GET",
            "/dead-letters?destination=orders&next=" + "A" * 20_000,
            "next=A…(20000)",
            wanted="next is not a cursor",
        ),
        Probe(
            "GET",
            "/dead-letters?destination=orders&next=%ED%A0%80",
            "next=%ED%A0%80",
            wanted="next is not a cursor",
        ),
        Probe(
            "GET", "/dead-letters?destination=orders&next=", "next= (empty)", wanted="next is not a cursor"
        ),
        Probe("GET", "/dead-letters?destination=other", "destination=other", wanted="destination must be"),
        Probe("GET", "/dead-letters?colour=red", "unknown parameter", wanted="unknown parameter(s)"),
        Probe("POST", redrive, "not JSON", b"{groups", "not valid JSON"),
        Probe("POST", redrive, "deep", deep(30_000), "nested more than 32 levels"),
        Probe("POST", redrive, "unknown field", b'{"everything":true}', "may hold only 'groups'"),
        Probe("POST", redrive, "groups string", b'{"groups":"a"}', "'groups' must be a list"),
        Probe("POST", redrive, "groups empty", b'{"groups":[]}', "'groups' must be a list"),
        Probe("POST", redrive, "group with a space", b'{"groups":["a b"]}', "is not a message group id"),
        Probe("POST", redrive, "501 ids", json.dumps({"message_ids": [A_UUID] * 501}).encode(), "1 to 500"),
        Probe(
            "POST", redrive, "uppercase UUID", json.dumps({"message_ids": [A_UUID.upper()]}).encode(), "UUID"
        ),
        Probe("POST", redrive, "duplicate key", b'{"groups":["a"],"groups":["b"]}', "appears twice"),
    ]
    for odd in (  # (a literal ".." is resolved by the HTTP client before it is sent)
        "%2e%2e%2f%2e%2e",
        "%00",
        "%F0%9F%98%80",
        "%ED%A0%80",
        "x" * 3000,
        "run%23default",
        "redrive%23" + A_UUID,
        A_UUID,
    ):
        probes.append(Probe("GET", f"/messages/{odd}", f"/messages/{odd[:24]}", wanted="no message"))
        probes.append(
            Probe(
                "GET",
                f"/dead-letters/redrive/{odd}?destination=orders",
                f"redrive/{odd[:24]}",
                wanted="no redrive",
            )
        )
    return probes


HOSTILE_VALUES = [
    '"\\ud800"',
    '"\\udfff\\ud800"',
    "NaN",
    "-Infinity",
    "1e999",
    "-1e309",
    "1" + "0" * 320,
    "[" * 40 + "]" * 40,
    '{"a":1,"a":1}',
]


def generated_probes(seed: int = 16, count: int = 60) -> list[Probe]:
    """Hostile values planted at random paths of otherwise valid bodies, for both JSON routes."""
    chance = random.Random(seed)
    probes = []
    for n in range(count):
        value = chance.choice(HOSTILE_VALUES)
        wrapped = value
        for _ in range(chance.randint(0, 6)):
            key = chance.choice(["a", "b c", "é", "0", ""])
            wrapped = chance.choice(
                [f'{{"{key}":{wrapped}}}', f"[1,{wrapped}]", f'{{"ok":2,"{key}":{wrapped}}}']
            )
        if n % 3 == 2:
            body = f'{{"groups":[{wrapped}]}}'
            probes.append(
                Probe("POST", "/dead-letters/redrive?destination=orders", f"generated #{n}", body.encode())
            )
        else:
            body = f'{{"item":{{"v":{wrapped}}},"group":"g{n}"}}'
            probes.append(Probe("POST", "/messages", f"generated #{n}", body.encode()))
    return probes


@pytest.fixture
def routes(servers: Servers, stack: Stack) -> Iterator[str]:
    server = RouteServer(servers.app, load_config(), "local").start()
    yield server.url
    server.stop()


def send(url: str, probe: Probe, token: str = f"Bearer {OPERATOR_TOKEN}") -> requests.Response:
    headers = {"Authorization": token}
    if probe.body is not None:
        headers["Content-Type"] = probe.content_type
    return requests.request(probe.method, url + probe.path, data=probe.body, headers=headers, timeout=60)


def state(stack: Stack) -> dict[str, Any]:
    """Everything a refused request could have changed."""
    ledger = stack.aws["dynamodb"].scan(TableName=stack.env["TRICKLE_LEDGER_TABLE"])["Items"]
    notes = stack.aws["dynamodb"].scan(TableName=stack.env["TRICKLE_NOTES_TABLE"])["Items"]
    return {
        "queue": stack.queue_depth(),
        "dead_letters": stack.queue_depth("TRICKLE_DEST_ORDERS_DLQ_URL"),
        "ledger": sorted(json.dumps(item, sort_keys=True) for item in ledger),
        "notes": sorted(json.dumps(item, sort_keys=True) for item in notes),
        "api_requests": len(stack.api.requests),
    }


def test_every_route_refuses_hostile_input_with_a_clear_4xx_and_changes_nothing(
    routes: str, stack: Stack
) -> None:
    stack.api.faults.poison = frozenset({'"poison":true'})
    requests.post(
        f"{routes}/messages",
        data=b'{"item":{"poison":true},"group":"p","destination":"orders"}',
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"},
        timeout=30,
    )
    stack.drain()  # one dead letter, so the dead-letter routes have something to guard
    before = state(stack)
    assert before["dead_letters"] == 1

    probes = issue_probes() + fixed_probes() + generated_probes()
    rows: list[tuple[str, str, int, str]] = []
    failures: list[str] = []
    for probe in probes:
        response = send(routes, probe)
        text = response.text
        try:
            message = str(json.loads(text).get("Message", ""))
        except ValueError:
            message = ""
        rows.append((f"{probe.method} {probe.path[:40]}", probe.label, response.status_code, message[:110]))
        if not 400 <= response.status_code < 500:
            failures.append(f"{probe.label}: {response.status_code}")
        elif probe.content_type == "application/json" and not message:
            failures.append(f"{probe.label}: no message")
        elif probe.wanted and probe.wanted not in message:
            failures.append(f"{probe.label}: {message!r} lacks {probe.wanted!r}")
        leaked = [word for word in INTERNALS if word in text]
        if leaked:
            failures.append(f"{probe.label}: shows {leaked}")

    print(f"\n{'route':<48} {'input':<40} status  message")
    for route, label, status, message in rows:
        print(f"{route:<48} {label[:40]:<40} {status:<7} {message}")
    assert failures == [], "\n".join(failures)
    assert state(stack) == before, "a refused request queued or changed something"
    assert len(probes) >= 100


def test_the_bearer_scheme_is_case_insensitive_over_http(routes: str) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        answer = requests.get(
            f"{routes}/status", headers={"Authorization": f"{scheme} {OPERATOR_TOKEN}"}, timeout=30
        )
        assert answer.status_code == 200, scheme
    wrong = requests.get(f"{routes}/status", headers={"Authorization": f"Basic {OPERATOR_TOKEN}"}, timeout=30)
    assert wrong.status_code == 403


def test_routes_that_take_no_input_ignore_hostile_queries_and_headers(routes: str, stack: Stack) -> None:
    """/health and /status read nothing from the request: odd queries and headers change nothing."""
    before = state(stack)
    odd_headers = {"X-Odd": "\x7f" * 100, "Accept": "*/*;q=NaN", "X-Trickle": "\u00e9" * 50}
    for path in ("/health", "/status"):
        for query in (
            "",
            "?next=%ED%A0%80",
            "?limit=-1&limit=1e400",
            "?" + "a=b&" * 500,
            "?x=" + "%25" * 3000,
        ):
            answer = requests.get(
                f"{routes}{path}{query}",
                headers={"Authorization": f"bearer {OPERATOR_TOKEN}"} | odd_headers,
                timeout=30,
            )
            assert answer.status_code == 200, (path, query[:40])
            assert not [word for word in INTERNALS if word in answer.text]
    assert state(stack) == before
