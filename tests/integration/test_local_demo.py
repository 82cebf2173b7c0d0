"""End to end on one machine: `python -m trickle_local demo` with a faulty stand-in API.

Runs as a subprocess on the suite's emulator (`--emulator`, from TRICKLE_EMULATOR): it starts its own,
whose state must not mix with the test session's. stdout of `demo --json` is the summary line only."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from chalicelib import naming
from tests.fakes import until
from tests.integration.conftest import EMULATOR
from trickle_local.emulators import start_emulator
from trickle_project.aws import clients, use_local_credentials
from trickle_project.stage import PROJECT_DIR


def run(*flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: none of this test session's TRICKLE_* variables (its routes
    file among them) leak into it."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("TRICKLE_")}
    return subprocess.run(
        [sys.executable, "-m", "trickle_local", "demo", "--ephemeral-ports", "--json", *flags],
        cwd=PROJECT_DIR,
        env=clean if env is None else env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def summary_only(stdout: str) -> dict[str, Any]:
    """stdout of `demo --json` is exactly one line, the summary object (no metrics, no progress)."""
    lines = stdout.splitlines()
    assert len(lines) == 1, lines[:3]
    summary: dict[str, Any] = json.loads(lines[0])
    assert {"ok", "delivered", "lost", "destinations"} <= set(summary)
    return summary


def metrics_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def batch(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of a request to orders_bulk's stand-in, as its listing shows the body."""
    records: list[dict[str, Any]] = request["body"]["records"]
    return records


def demo(*flags: str) -> tuple[int, dict[str, Any], str]:
    done = run("--emulator", EMULATOR, *flags)
    return done.returncode, summary_only(done.stdout), done.stderr


@pytest.mark.slow
def test_a_few_hundred_items_under_faults_arrive_once_each_in_order() -> None:
    code, summary, stderr = demo(
        "--items", "300", "--groups", "12", "--drain-every", "0.5",
        "--error-rate", "0.05", "--throttle-rate", "0.03", "--timeout-rate", "0.01", "--latency", "0.002",
        "--timeout", "240",
    )  # fmt: skip

    # 12 customer profiles (crm), 192 orders (orders, orders_bulk) and 96 invoices (orders, crm,
    # billing): chalicelib/routes.toml
    assert summary["inserted"] == 300
    tokens = summary["destinations"]["billing"]["token_requests"]
    bulk_requests = summary["destinations"]["orders_bulk"]["requests"]
    per_request = round(sum(len(batch(r)) for r in summary["received"]["orders_bulk"]) / bulk_requests, 2)
    assert summary["destinations"] == {
        "orders": {"inserted": 288, "delivered": 288, "dead_lettered": 0, "lost": 0, "duplicates": 0,
                   "out_of_order": 0, "requests": summary["destinations"]["orders"]["requests"],
                   "items_per_request": 1.0, "auth_failures": 0, "token_requests": 0},
        "crm": {"inserted": 108, "delivered": 108, "dead_lettered": 0, "lost": 0, "duplicates": 0,
                "out_of_order": 0, "requests": summary["destinations"]["crm"]["requests"],
                "items_per_request": 1.0, "auth_failures": 0, "token_requests": 0},
        "billing": {"inserted": 96, "delivered": 96, "dead_lettered": 0, "lost": 0, "duplicates": 0,
                    "out_of_order": 0, "requests": summary["destinations"]["billing"]["requests"],
                    "items_per_request": 1.0, "auth_failures": 0, "token_requests": tokens},
        "orders_bulk": {"inserted": 192, "delivered": 192, "dead_lettered": 0, "lost": 0, "duplicates": 0,
                        "out_of_order": 0, "requests": bulk_requests, "items_per_request": per_request,
                        "auth_failures": 0, "token_requests": 0},
    }  # fmt: skip
    assert (summary["delivered"], summary["expected_deliveries"]) == (684, 684)
    # orders_bulk: the orders in batches (`{"records": [...]}`, each with its message id), every
    # order applied once, each customer's in order, the request-wide faults notwithstanding
    assert per_request > 1 and bulk_requests < 192
    applied = [
        (record["keys"]["pk"], record["keys"]["sk"], record["id"])
        for request in summary["received"]["orders_bulk"]
        for record, result in zip(batch(request), request["results"], strict=True)
        if result["applied"]
    ]
    orders = [f"ORDER#{i:06d}" for i in range(288) if i % 3 != 2]
    assert sorted(sk for _, sk, _ in applied) == orders and len({i for _, _, i in applied}) == 192
    for customer in {pk for pk, _, _ in applied}:
        sks = [sk for pk, sk, _ in applied if pk == customer]
        assert sks == sorted(sks), customer
    # billing: every invoice PUT to its own path, with a token from the stand-in's endpoint and
    # signed; its tokens (5 s, renewed at half their life) were renewed while 96 invoices went at
    # no more than 20 a second (a burst of 5 per run): over 3 s
    billing = summary["received"]["billing"]
    assert {(r["method"], r["auth_ok"], r["signature_ok"]) for r in billing} == {("PUT", True, True)}
    assert {r["path"] for r in billing if r["applied"]} == {
        f"/v1/invoices/INV-2026%2F{i:06d}" for i in range(2, 288, 3)
    }
    assert tokens >= 2
    assert (summary["lost"], summary["duplicates"], summary["out_of_order"]) == (0, 0, 0)
    assert summary["failed_requests"] > 0  # the faults really happened
    assert code == 0
    assert "delivered=" in stderr  # live progress was shown, and the summary's human lines
    assert any(m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Trickle" for m in metrics_lines(stderr))


@pytest.mark.slow
def test_the_demo_fails_when_the_api_applies_retries_twice() -> None:
    # a seed whose draws time out early and often (a fresh one drew no timeout in a destination's
    # first 36 requests now and then: about 0.85 ** 36, 0.3 % of runs)
    code, summary, _ = demo(
        "--items", "40", "--groups", "4", "--drain-every", "0.5", "--seed", "7",
        "--timeout-rate", "0.15", "--ignore-idempotency", "--timeout", "120",
    )  # fmt: skip

    assert summary["duplicates"] > 0
    assert summary["ok"] is False
    assert code == 1


def test_executions_wait_for_the_relay_and_none_is_left_running() -> None:
    code, summary, _ = demo(
        "--items", "20", "--groups", "3", "--drain-every", "0.5", "--executions", "8",
        "--poison", "execution 5", "--timeout", "180",
    )  # fmt: skip

    # execution 5's item is refused by the stand-in: that execution fails with Trickle.Rejected
    assert summary["executions"] == {"started": 8, "succeeded": 7, "failed": 1, "running": 0}
    assert summary["lost"] == 0 and summary["ok"] is True and code == 0


def test_an_endpoint_given_needs_no_exported_credentials_and_metrics_can_go_to_a_file(tmp_path: Path) -> None:
    """`--endpoint URL` with no AWS variables at all (it used to stop with NoRegionError): test
    credentials and a region are set as for the embedded emulator. `--metrics-file` takes the
    handlers' metrics lines, so neither stdout nor stderr carries them."""
    emulator = start_emulator(EMULATOR, own_process=True)
    metrics = tmp_path / "metrics.jsonl"
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRICKLE_", "BOTO"))}
    bare["HOME"] = str(tmp_path)  # no ~/.aws either
    try:
        done = run(
            "--endpoint", emulator.endpoint_url, "--metrics-file", str(metrics),
            "--items", "30", "--groups", "3", "--drain-every", "0.5", "--timeout", "120",
            env=bare,
        )  # fmt: skip
    finally:
        emulator.stop()

    assert done.returncode == 0, done.stderr[-2000:]
    summary = summary_only(done.stdout)
    assert summary["ok"] is True and summary["delivered"] == summary["expected_deliveries"] > 0
    billing = summary["destinations"]["billing"]  # OAuth2 and signed, with the secrets the run made
    assert billing["delivered"] == billing["inserted"] > 0
    assert (billing["auth_failures"], billing["token_requests"] > 0) == (0, True)
    assert metrics_lines(done.stderr) == []
    written = metrics_lines(metrics.read_text())
    assert written and all(m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Trickle" for m in written)


def test_up_delivers_to_an_api_url_as_given_and_counts_what_it_delivered(tmp_path: Path) -> None:
    """`up --api-url orders=URL --api-key K`: orders go to URL exactly (path and query kept, it used
    to post to /orders) with the key, the progress line counts them from the drain's reports (it
    said delivered=0), `crm`, not named, keeps a running stand-in (its messages used to circle in
    flight), and the metrics lines go to a file whose path is printed, not to the console."""
    received: list[tuple[str, str | None]] = []

    class RealApi(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.path, self.headers.get("x-api-key")))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), RealApi)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v2/items?tenant=7"
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRICKLE_")}
    env["TMPDIR"] = str(tmp_path)  # where `up` writes its metrics file by default
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "trickle_local", "up", "--ephemeral-ports", "--emulator", EMULATOR,
             "--demo-items", "8", "--groups", "2", "--drain-every", "0.5",
             "--api-url", f"orders={url}", "--api-key", "sk-real"],
            cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=sink, text=True,
        )  # fmt: skip
    try:
        # 2 profiles (crm), 4 orders (orders, orders_bulk) and 2 invoices (orders, crm, billing):
        # chalicelib/routes.toml
        until(
            lambda: (
                "orders: queued=0 in_flight=0 delivered=6 dead_lettered=0; crm: queued=0 in_flight=0"
                " delivered=4 dead_lettered=0; billing: queued=0 in_flight=0 delivered=2 dead_lettered=0;"
                " orders_bulk: queued=0 in_flight=0 delivered=4 dead_lettered=0; delivered=16 "
                in stderr.read_text()
            ),
            deadline_s=180,
            every_s=0.5,
        )
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        server.shutdown()
        server.server_close()
    text = stderr.read_text()
    assert received == [("/v2/items?tenant=7", "sk-real")] * 6
    assert f"API orders:   {url}\n" in text
    routes = re.findall(r"Routes: +(http://127\.0\.0\.1:\d+) ", text)
    assert f"Console:      {routes[0]}/console (paste the token above)\n" in text
    received_lines = [line for line in text.splitlines() if line.startswith("Received:")]
    assert [line.rsplit(" lists ", 1)[1] for line in received_lines] == [
        "what the crm API got",
        "what the billing API got",
        "what the orders_bulk API got",
    ]
    assert (
        'Bulk:         the orders_bulk API takes {"records": [{"id": ...}, ...]} (up to 25 a request) and'
        " answers a status per item; bodies up to 1048576 bytes (--bulk-max-bytes)\n"
    ) in text
    metrics = tmp_path / "trickle-local-metrics.jsonl"
    assert f"Metrics:      {metrics} " in text
    assert metrics_lines(text) == []
    assert metrics_lines(metrics.read_text())


SHOP = """
[destinations.shop]
url = "https://shop.example.com/v1/invoices"
backoff_base_s = 1
backoff_cap_s = 2

[[routes]]
name = "invoices"
filter = "item.type == 'invoice'"
destinations = ["shop"]
"""


def test_the_demo_runs_another_routes_file_draining_a_destination_app_py_lacks(tmp_path: Path) -> None:
    """`demo --routes FILE`: the stage's other destinations are gone, `shop` gets its queues, a
    stand-in and a drain of the runtime's own (app.py has no drain_shop), and the audit passes."""
    routes = tmp_path / "shop.toml"
    routes.write_text(SHOP)
    code, summary, stderr = demo(
        "--routes", str(routes), "--items", "20", "--groups", "2", "--drain-every", "0.5", "--timeout", "120"
    )  # fmt: skip

    # 2 customer profiles, then 18 orders and invoices: every third an invoice
    assert summary["destinations"] == {
        "shop": {"inserted": 6, "delivered": 6, "dead_lettered": 0, "lost": 0, "duplicates": 0,
                 "out_of_order": 0, "requests": 6, "items_per_request": 1.0, "auth_failures": 0,
                 "token_requests": 0},
    }  # fmt: skip
    assert {entry["path"] for entry in summary["received"]["shop"]} == {"/v1/invoices"}
    assert code == 0
    assert "app.py has no drain_shop: run here on rate(1 minute)" in stderr


KINDS = """
[destinations.shop]
url = "https://shop.example.com/v1/invoices"
auth = "basic"
method = "PUT"
signing = "standard_webhooks"
secret_headers = ["X-Tenant-Key"]

[destinations.ledger]
url = "https://ledger.example.com/v1"
auth = "oauth2_client_credentials"
token_url = "https://ledger.example.com/oauth/token"

[[routes]]
name = "all"
destinations = ["shop", "ledger"]
"""


def signed(secret: str, message_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers made by the reference package."""
    now = int(time.time())
    signature = Webhook(secret).sign(message_id, datetime.fromtimestamp(now, tz=UTC), body)
    return {"webhook-id": message_id, "webhook-timestamp": str(now), "webhook-signature": signature}


def test_up_stores_the_secrets_another_routes_file_needs_and_its_stand_ins_require_them(
    tmp_path: Path,
) -> None:
    """`up --routes FILE`: every parameter its destinations read is in the emulator's SSM, the one
    given (`--secret-env ledger=VAR`) as given, the others made up; each stand-in requires exactly
    those (Basic credentials, the secret header and a signature for shop; a token from its own
    endpoint, for ledger's client, for ledger), and no secret is printed."""
    routes = tmp_path / "kinds.toml"
    routes.write_text(KINDS)
    given = '{"client_id": "ledger-client", "client_secret": "s3cret-given"}'
    emulator = start_emulator(EMULATOR, own_process=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRICKLE_")}
    env |= {"TMPDIR": str(tmp_path), "LEDGER_CREDENTIALS": given}
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "trickle_local", "up", "--ephemeral-ports",
             "--endpoint", emulator.endpoint_url, "--routes", str(routes),
             "--secret-env", "ledger=LEDGER_CREDENTIALS"],
            cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=sink, text=True,
        )  # fmt: skip
    try:
        text = until(lambda: "ledger: queued=0" in stderr.read_text() and stderr.read_text(), deadline_s=120)
        listed = dict(re.findall(r"Received: +GET (\S+) lists what the (\w+) API got", text))
        urls = {name: url for url, name in listed.items()}
        (token_url,) = re.findall(r"Tokens: +POST (\S+) issues the ledger API's tokens", text)
        use_local_credentials()  # what the emulator takes, as the command sets them for itself
        ssm = clients(emulator.endpoint_url)["ssm"]

        def stored(name: str) -> str:
            return str(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])

        shop = json.loads(stored(naming.key_parameter("local", "shop")))
        signing_secret = stored(naming.signing_parameter("local", "shop"))
        tenant = json.loads(stored(naming.headers_parameter("local", "shop")))
        assert stored(naming.key_parameter("local", "ledger")) == given

        body = '{"n": 1, "name": "Zoë"}'.encode()
        good = signed(signing_secret, "m1", body) | {"X-Tenant-Key": tenant["X-Tenant-Key"]}
        basic = (shop["username"], shop["password"])
        answers = [
            requests.put(f"{urls['shop']}/42", data=body, headers=good, auth=basic, timeout=10),
            requests.put(f"{urls['shop']}/43", data=body, headers=good, timeout=10),
            requests.put(
                f"{urls['shop']}/44", data=body, headers=good | {"X-Tenant-Key": "x"}, auth=basic, timeout=10
            ),
            requests.put(f"{urls['shop']}/45", data=body + b" ", headers=good, auth=basic, timeout=10),
        ]
        token = requests.post(
            token_url,
            data={"grant_type": "client_credentials"},
            auth=("ledger-client", "s3cret-given"),
            timeout=10,
        ).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        ledger = [
            requests.post(f"{urls['ledger']}/entries", data="{}", headers=bearer, timeout=10),
            requests.post(f"{urls['ledger']}/entries", data="{}", auth=basic, timeout=10),
        ]
        shop_listing = requests.get(urls["shop"], timeout=10).json()
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        emulator.stop()

    assert [a.status_code for a in answers] == [200, 401, 401, 401]
    assert [a.status_code for a in ledger] == [200, 401]
    assert [(e["auth_ok"], e["signature_ok"]) for e in shop_listing["requests"]] == [
        (True, True),
        (False, True),
        (False, True),
        (True, False),
    ]
    assert shop_listing["auth_failures"] == 3
    printed = stderr.read_text()
    for secret in ("s3cret-given", shop["password"], signing_secret, tenant["X-Tenant-Key"], token):
        assert secret not in printed
