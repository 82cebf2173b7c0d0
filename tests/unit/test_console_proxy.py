"""`operate console`'s signing proxy (trickle_deploy/console_proxy.py) against a stand-in for an IAM
stage's API on loopback: the console's files, calls signed with SigV4 (checked by signing again with
the secret), and the calls it refuses to sign."""

from __future__ import annotations

import hmac
import http.client
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from trickle_deploy import operate
from trickle_deploy.console_proxy import ConsoleProxy, deployed_url, region_of, stack_url

KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-xyz"
SESSION = "0123abcd"
SIGNATURE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/execute-api/aws4_request,"
    r" SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class StageApi:
    """An IAM stage's API: records each request, answers 200 JSON, 404 under /missing."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        api = self

        class Handle(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                status = 404 if "/missing" in self.path else 200
                answer = json.dumps({"Message": "no such thing"} if status == 404 else {"ok": True}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Set-Cookie", "tracking=1")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def stage_api() -> Iterator[StageApi]:
    api = StageApi()
    yield api
    api.server.shutdown()
    api.server.server_close()


@pytest.fixture
def proxy(stage_api: StageApi) -> Iterator[ConsoleProxy]:
    credentials = ReadOnlyCredentials(KEY, SECRET, TOKEN)
    server = ConsoleProxy(stage_api.url + "/api", lambda: credentials, "eu-west-1", 0, SESSION).start()
    yield server
    server.stop()


def call(
    proxy: ConsoleProxy, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    host, port = proxy.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    sent = {"Host": f"127.0.0.1:{port}", "X-Trickle-Session": SESSION} | {
        name.replace("_", "-"): value for name, value in headers.items()
    }
    connection.request(method, path, body=body, headers={k: v for k, v in sent.items() if v})
    answer = connection.getresponse()
    return answer.status, dict(answer.getheaders()), answer.read()


def signed_correctly(seen: Seen, url: str) -> bool:
    """Sign the request the API received again, with the secret, at its X-Amz-Date."""
    match = SIGNATURE.fullmatch(seen.headers["Authorization"])
    assert match is not None, seen.headers["Authorization"]
    lower = {name.lower(): value for name, value in seen.headers.items()}
    headers = {name: lower[name] for name in match["signed"].split(";")}
    request = AWSRequest(method=seen.method, url=url + seen.path, data=seen.body, headers=headers)
    request.context["timestamp"] = lower["x-amz-date"]
    signer = SigV4Auth(ReadOnlyCredentials(match["key"], SECRET, TOKEN), "execute-api", match["region"])
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return hmac.compare_digest(expected, match["signature"])


def test_the_console_s_files_are_served_naming_the_proxy_and_its_session(proxy: ConsoleProxy) -> None:
    status, headers, page = call(proxy, "GET", "/console", X_Trickle_Session="")

    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<meta name="trickle-auth" content="proxy">' in page
    assert f'<meta name="trickle-session" content="{SESSION}">'.encode() in page
    assert call(proxy, "GET", "/console/console.js?v=1")[0] == 200
    assert call(proxy, "GET", "/console/console.html")[0] == 404
    status, headers, _ = call(proxy, "GET", "/console/")  # its relative links would miss from there
    assert (status, headers["Location"]) == (302, "../console")


def test_a_call_from_the_console_is_signed_for_execute_api_and_answered_as_the_api_answered(
    proxy: ConsoleProxy, stage_api: StageApi
) -> None:
    got = call(proxy, "GET", "/status?x=1", Accept="application/json", Cookie="c=1", Authorization="Bearer t")
    body = b'{"message_ids": ["a"]}'
    posted = call(
        proxy, "POST", "/dead-letters/redrive?destination=orders", body, Content_Type="application/json"
    )
    missing = call(proxy, "GET", "/missing")

    assert (got[0], json.loads(got[2])) == (200, {"ok": True})
    assert posted[0] == 200 and missing == (404, missing[1], b'{"Message": "no such thing"}')
    assert "Set-Cookie" not in got[1]
    first, second, _ = stage_api.seen
    assert (first.method, first.path, second.method, second.path, second.body) == (
        "GET",
        "/api/status?x=1",
        "POST",
        "/api/dead-letters/redrive?destination=orders",
        body,
    )
    for seen in (first, second):
        assert seen.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
        assert "/eu-west-1/execute-api/aws4_request" in seen.headers["Authorization"]
        assert seen.headers["X-Amz-Security-Token"] == TOKEN
        assert signed_correctly(seen, stage_api.url)
        assert not {"Cookie", "X-Trickle-Session"} & set(seen.headers)
    assert second.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"X_Trickle_Session": ""}, "open it at /console"),
        ({"X_Trickle_Session": "guessed"}, "open it at /console"),
        ({"Host": "evil.example:80"}, "only as 127.0.0.1 or localhost"),
        ({"Origin": "https://evil.example"}, "only its own console's calls"),
    ],
)
def test_a_call_not_from_its_own_page_is_refused_unsigned(
    proxy: ConsoleProxy, stage_api: StageApi, headers: dict[str, str], why: str
) -> None:
    status, _, body = call(proxy, "POST", "/dead-letters/redrive", b"{}", **headers)

    assert status == 403 and why in json.loads(body)["Message"]
    assert stage_api.seen == []


def test_the_same_origin_and_localhost_are_its_own(proxy: ConsoleProxy, stage_api: StageApi) -> None:
    port = proxy.url.rsplit(":", 1)[1]
    assert call(proxy, "GET", "/status", Origin=proxy.url)[0] == 200
    assert call(proxy, "GET", "/status", Host=f"localhost:{port}")[0] == 200
    assert len(stage_api.seen) == 2


def test_an_api_that_does_not_answer_is_a_502_saying_so(stage_api: StageApi) -> None:
    credentials = ReadOnlyCredentials(KEY, SECRET, None)
    dead = ConsoleProxy("http://127.0.0.1:9/api", lambda: credentials, "eu-west-1", 0, SESSION).start()
    try:
        status, _, body = call(dead, "GET", "/status")
    finally:
        dead.stop()
    assert status == 502 and "the API did not answer" in json.loads(body)["Message"]


def test_where_the_api_url_and_its_region_come_from(tmp_path: Path) -> None:
    assert region_of("https://abc123.execute-api.eu-west-1.amazonaws.com/api") == "eu-west-1"
    assert region_of("http://127.0.0.1:8000") is None
    deployed = tmp_path / ".chalice" / "deployed"
    deployed.mkdir(parents=True)
    (deployed / "dev.json").write_text(
        json.dumps(
            {"resources": [{"name": "api_handler"}, {"name": "rest_api", "rest_api_url": "https://x/api/"}]}
        )
    )
    assert deployed_url(tmp_path, "dev") == "https://x/api/"
    assert deployed_url(tmp_path, "prod") is None

    class Stacks:
        def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
            return {
                "Stacks": [
                    {"Outputs": [{"OutputKey": "EndpointURL", "OutputValue": f"https://{StackName}/"}]}
                ]
            }

    assert stack_url(Stacks(), "trickle-prod") == "https://trickle-prod/"


def test_the_command_says_what_to_give_when_it_cannot_serve(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for argv, said in (
        (["--stage", "local", "console"], "stage local uses token auth: open <its API URL>/console"),
        (["--stage", "dev", "--region", "eu-west-1", "console"], "no API URL for stage dev: give --url"),
    ):
        with pytest.raises(SystemExit) as exit:
            operate.main(argv)
        assert exit.value.code == 2
        assert said in capsys.readouterr().err
