"""`python -m trickle_deploy.operate --stage S console`: the operator console of a stage with IAM
authorization, served on 127.0.0.1, its route calls signed with SigV4 from the operator's AWS
credentials (botocore's SigV4Auth, service `execute-api`) and sent on to the stage's API.

A browser cannot sign requests, and a page on another site could make the operator's browser call a
local signing proxy; so the proxy signs only requests that carry its per-run session value (which
only its own page holds: another origin cannot read that page), that name it as their host (no DNS
rebinding) and that come from its own origin when they say where from."""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from chalicelib import console

SESSION_HEADER = "X-Trickle-Session"
MAX_BODY = 1024 * 1024  # the routes take at most 256 KiB (submissions) and 64 KiB (redrive filters)
FORWARDED = ("Content-Type", "Accept")  # of the browser's headers: nothing else goes to the API
_REGION = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
TIMEOUT_S = 30

Credentials = Callable[[], ReadOnlyCredentials]  # fresh ones for each request (they may rotate)


def region_of(api_url: str) -> str | None:
    """The region an API Gateway URL names (`https://id.execute-api.REGION.amazonaws.com/api`)."""
    match = _REGION.search(urlsplit(api_url).hostname or "")
    return match[1] if match else None


def deployed_url(project_dir: Path, stage: str) -> str | None:
    """The REST API URL `chalice deploy` recorded for the stage (.chalice/deployed/<stage>.json)."""
    path = project_dir / ".chalice" / "deployed" / f"{stage}.json"
    try:
        resources = json.loads(path.read_text())["resources"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    urls = [r.get("rest_api_url") for r in resources if isinstance(r, dict) and r.get("rest_api_url")]
    return str(urls[0]) if urls else None


def stack_url(cloudformation: Any, stack: str) -> str | None:
    """The stack's `EndpointURL` output (the template's REST API URL)."""
    (found,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    return outputs.get("EndpointURL")


def sign(
    method: str, url: str, body: bytes, headers: dict[str, str], credentials: ReadOnlyCredentials, region: str
) -> dict[str, str]:
    """The headers to send: `headers` and SigV4's (Authorization, X-Amz-Date, the session token)."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return dict(request.headers.items())


class ConsoleProxy:
    """The console's files and a signing pass-through to `api_url`, on 127.0.0.1 (`port` 0: a free
    one); `credentials` gives the credentials to sign each call with."""

    def __init__(
        self,
        api_url: str,
        credentials: Credentials,
        region: str,
        port: int = 8001,
        session: str | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.session = session or secrets.token_hex(16)
        proxy = self

        class Handle(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # a request line holds nothing secret, but the operator's terminal needs no noise

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                path = urlsplit(self.path).path
                if path == "/console":
                    page = console.page("proxy", proxy.session).encode()
                    return self._send(200, page, console.page_headers())
                if path == "/console/":
                    return self._send(302, b"", console.FROM_SLASH)
                if path.startswith("/console/"):
                    found = console.asset(path.removeprefix("/console/"))
                    if found is None:
                        return self._error(404, "no such console file; the console is at /console")
                    return self._send(200, found[0].encode(), found[1])
                if path == "/":
                    return self._send(302, b"", {"Location": "/console"})
                refused = proxy.refusal(dict(self.headers.items()))
                if refused:
                    return self._error(403, refused)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    return self._error(413, f"the body is {length} bytes; the proxy takes up to {MAX_BODY}")
                body = self.rfile.read(length) if length else b""
                headers = {name: self.headers[name] for name in FORWARDED if self.headers.get(name)}
                status, answer_headers, answer = proxy.forward(self.command, self.path, body, headers)
                self._send(status, answer, answer_headers)

            def _error(self, status: int, message: str) -> None:
                document = json.dumps({"Code": "ConsoleProxy", "Message": message}).encode()
                self._send(status, document, {"Content-Type": "application/json"})

            def _send(self, status: int, body: bytes, headers: dict[str, Any]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, str(value))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._credentials = credentials
        self._region = region
        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handle)
        # stop() waits for the loop's next look at its shutdown flag: every 50 ms, not the default 0.5 s
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="console-proxy",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def refusal(self, headers: dict[str, str]) -> str | None:
        """Why a call to the API is not signed, or None: it must come from the proxy's own page."""
        port = self._server.server_address[1]
        names = {name.lower(): value for name, value in headers.items()}
        if names.get("host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            return "the proxy answers only as 127.0.0.1 or localhost"
        origin = names.get("origin")
        if origin is not None and origin not in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
            return "the proxy signs only its own console's calls"
        if not hmac.compare_digest(names.get(SESSION_HEADER.lower(), ""), self.session):
            return "the proxy signs only its own console's calls (open it at /console)"
        return None

    def forward(
        self, method: str, path_and_query: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """The API's answer (status, content type, body) to the call, signed now."""
        url = self.api_url + path_and_query
        signed = sign(method, url, body, headers, self._credentials(), self._region)
        request = urllib.request.Request(url, data=body if method == "POST" else None, method=method)
        for name, value in signed.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                return answer.status, _kept(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, _kept(exc.headers), exc.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            message = json.dumps({"Code": "ConsoleProxy", "Message": f"the API did not answer: {exc}"})
            return 502, {"Content-Type": "application/json"}, message.encode()

    def start(self) -> ConsoleProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _kept(headers: Any) -> dict[str, str]:
    """Of the API's answer headers, only its content type goes back to the page (no cookies)."""
    return {"Content-Type": headers.get("Content-Type", "application/json")}


def serve(
    api_url: str, credentials: Credentials, region: str, port: int, out: Callable[[str], object] = print
) -> int:
    """Serve until Ctrl-C; 0, or 1 with one line when the port is taken."""
    try:
        proxy = ConsoleProxy(api_url, credentials, region, port).start()
    except OSError as exc:
        out(f"port {port} on 127.0.0.1 is not free ({exc.strerror}): give another with --port")
        return 1
    out(f"Console: {proxy.url}/console (its calls signed for {proxy.api_url} in {region}; Ctrl-C stops it)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0
