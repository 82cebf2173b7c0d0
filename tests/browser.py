"""Headless Chromium for the console's browser tests (`@pytest.mark.browser`), and a fake operator API
that serves the console's own files beside canned answers.

The browser is Debian's `chromium` driven through its `chromium-driver` by Selenium; `./dev setup`
and `./dev test` install both through apt when missing. A test that needs them and finds them
missing fails with the install command: a CI machine without a browser must not pass by skipping."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from chalicelib import console
from tests.fakes import until
from trickle_project.stage import PROJECT_DIR

INSTALL = (
    "the browser tests need Debian's chromium and chromium-driver: ./dev setup installs them"
    " (apt-get install -y chromium chromium-driver), or leave these tests out with -m 'not browser'"
)
# Overrides window.alert/confirm/prompt before any script of any page runs: a hostile string that
# got to run script would set this flag (the console itself never calls them).
ALERT_HOOK = """
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = function () { document.documentElement.setAttribute("data-alerted", name); };
}
"""
SCREENSHOTS = PROJECT_DIR / "docs" / "console"
HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
WIDE = "W" * 100_000  # a 100 KB string


def binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) as Debian's packages install them (or as CHROMIUM and CHROMEDRIVER
    name them, as for ./dev), or None."""
    browser = shutil.which(os.environ.get("CHROMIUM", "chromium"))
    driver = shutil.which(os.environ.get("CHROMEDRIVER", "chromedriver"))
    return (browser, driver) if browser and driver else None


def start_browser() -> WebDriver:
    found = binaries()
    if found is None:
        pytest.fail(INSTALL, pytrace=False)
    browser, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ALERT_HOOK})
    return driver


def wait(driver: WebDriver, condition: Callable[[], Any], deadline_s: float = 30.0) -> Any:
    """`condition()` once truthy (polled every 20 ms), else fail naming what the page shows."""
    try:
        return until(condition, deadline_s, every_s=0.02)
    except AssertionError:
        raise AssertionError(
            f"not true within {deadline_s} s; the page shows: {main_text(driver)[:600]!r}"
        ) from None


def main_text(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.getElementById('main')?.innerText || ''"))


def found(driver: WebDriver, css: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, css)


def values(driver: WebDriver, css: str, attribute: str | None = None) -> list[str]:
    """The text (or an attribute) of every element `css` matches, read in one go: a page drawn again
    between two reads leaves no stale element behind."""
    script = (
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(e => arguments[1] ? e.getAttribute(arguments[1]) : e.innerText)"
    )
    return [str(v) for v in driver.execute_script(script, css, attribute)]


def alerted(driver: WebDriver) -> str | None:
    value = driver.execute_script("return document.documentElement.getAttribute('data-alerted')")
    return str(value) if value else None


def enter_token(driver: WebDriver, token: str) -> None:
    box = wait(driver, lambda: found(driver, "#token"))[0]
    box.send_keys(token)
    found(driver, "#token-form button")[0].click()


def screenshot(driver: WebDriver, name: str, elsewhere: Path) -> Path:
    """Into docs/console/ when CONSOLE_SCREENSHOTS=1 (the README's pictures), else `elsewhere`:
    a test run leaves the committed pictures alone."""
    where = SCREENSHOTS if os.environ.get("CONSOLE_SCREENSHOTS") == "1" else elsewhere
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}.png"
    height, chrome = driver.execute_script(  # the page's height, and what the window adds to it
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    driver.set_window_size(1280, max(500, min(int(height) + int(chrome) + 8, 1600)))
    try:
        assert driver.save_screenshot(str(path)), path
    finally:
        driver.set_window_size(1280, 860)
    return path


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # with its query
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, Any]  # status, JSON document
Handler = Callable[[str, str, bytes], Answer | None]  # (method, path with query, body)


class FakeOperatorApi:
    """The console's files as the app serves them (`auth`: how the page says its calls are
    authorized) and `answer(method, path, body)` for the routes, behind the bearer token `token`
    (401 without it, 403 with another), or a SigV4 signature when `token` is None. Records every
    request. Listens on 127.0.0.1 only."""

    def __init__(self, answer: Handler, token: str | None = "op-browser-token", auth: str = "token") -> None:
        self.answer = answer
        self.auth = auth
        self.token = token
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        fake = self

        class Handle(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                path = urlsplit(self.path).path
                if path == "/console":
                    return self._send(200, console.page(fake.auth).encode(), console.page_headers())
                if path.startswith("/console/"):
                    asset = console.asset(path.removeprefix("/console/"))
                    if asset is None:
                        return self._send(404, b"{}", {"Content-Type": "application/json"})
                    return self._send(200, asset[0].encode(), asset[1])
                given = self.headers.get("Authorization")
                if given is None:
                    return self._json(401, {"message": "Unauthorized"})
                wanted = f"Bearer {fake.token}" if fake.token else "AWS4-HMAC-SHA256 Credential="
                if not given.startswith(wanted) or (fake.token and given != wanted):
                    return self._json(403, {"Message": "User is not authorized to access this resource"})
                reply = fake.answer(self.command, self.path, body)
                if reply is None:
                    return self._json(404, {"Code": "NotFoundError", "Message": f"no route {path}"})
                self._json(*reply)

            def _json(self, status: int, document: Any) -> None:
                self._send(status, json.dumps(document).encode(), {"Content-Type": "application/json"})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-operator-api",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeOperatorApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)
