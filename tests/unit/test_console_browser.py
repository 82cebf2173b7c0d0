"""The console in headless Chromium against a fake operator API (`tests.browser.FakeOperatorApi`):
what it draws from the routes' answers, what it sends, and that hostile data stays text. The same
pages against the real routes on the emulator: tests/integration/test_console.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.credentials import ReadOnlyCredentials
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.browser import HOSTILE, WIDE, Answer, FakeOperatorApi, alerted, enter_token, found, values, wait
from trickle_deploy.console_proxy import ConsoleProxy

pytestmark = pytest.mark.browser

TOKEN = "op-browser-token"
NOW = time.time()


def destination(n: int) -> dict[str, Any]:
    return {
        "queue": {
            "queued": 1000 + n,
            "in_flight": n,
            "oldest_message_age_s": 60.0 * n,
            "oldest_seen_at": NOW - 5,
            "oldest_complete": n % 2 == 0,
        },
        "dead_letters": {"queued": n, "in_flight": 0},
        "last_run": {
            "received": 10,
            "delivered": 9,
            "retried": 1,
            "stopped_by": "empty",
            "finished_at": NOW - 5,
        },
    }


def status(names: list[str]) -> dict[str, Any]:
    return {
        "unrouted": {"handling": "count", "count": 3, "since": NOW - 3600, "last_batch": None},
        "destinations": {name: destination(n) for n, name in enumerate(names)},
    }


def dead_letter(n: int, reason: str = "HTTP 400: refused by the API", group: str = "g") -> dict[str, Any]:
    message_id = f"00000000-0000-4000-8000-{n:012d}"
    return {
        "message_id": message_id,
        "group_id": f"{group}{n % 3}",
        "reason": reason,
        "dead_at": "2025-01-02T03:04:05.678Z",
        "attempts": 1,
        "last_status_code": 400,
        "first_attempt_at": NOW - 60,
        "last_attempt_at": NOW - 60,
        "redrivable": True,
        "status_url": f"/messages/{message_id}",
    }


@pytest.fixture
def served() -> Iterator[list[FakeOperatorApi]]:
    started: list[FakeOperatorApi] = []
    yield started
    for api in started:
        api.stop()


def open_console(
    browser: WebDriver, served: list[FakeOperatorApi], answer: Any, hash: str = ""
) -> FakeOperatorApi:
    api = FakeOperatorApi(answer, TOKEN).start()
    served.append(api)
    browser.get(f"{api.url}/console{hash}")
    enter_token(browser, TOKEN)
    return api


def test_the_overview_of_20_destinations_is_one_status_call_and_shows_every_figure(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    names = [f"dest{n:02}" for n in range(20)]

    def answer(method: str, path: str, body: bytes) -> Answer | None:
        return (200, status(names)) if (method, path) == ("GET", "/status") else None

    api = open_console(browser, served, answer)
    wait(browser, lambda: len(found(browser, "#overview tbody tr")) == 20)

    # A second view (the token kept in the tab's session storage), timed from navigation to 20 rows.
    first_view = len(api.requests())
    started = time.perf_counter()
    browser.get(f"{api.url}/console")
    wait(browser, lambda: len(found(browser, "#overview tbody tr")) == 20)
    seconds = time.perf_counter() - started
    again = [seen.path.split("?")[0] for seen in api.requests()[first_view:]]

    row = found(browser, 'tr[data-destination="dest07"] td')
    assert [cell.text for cell in row[:4]] == ["1,007", "7", "≥ 7 min", "7"]
    assert found(browser, 'tr[data-destination="dest02"] [data-figure="oldest"]')[0].text == "2 min"
    assert "9 delivered of 10 received · 1 retried · stopped by empty" in row[4].text
    assert "Stream records no route took: 3" in found(browser, "#unrouted")[0].text
    assert again == ["/console", "/status"]  # the script and the sheet come from the browser's cache
    assert seconds < 10, seconds  # measured: docs/console.md
    print(f"\noverview of 20 destinations: {seconds * 1000:.0f} ms, requests: {again}")


def test_hostile_data_is_shown_as_text_and_runs_nothing(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    script, img = HOSTILE
    hostile_status = status([script, img])
    hostile_status["destinations"][script]["last_run"]["stopped_by"] = img
    hostile_status["unrouted"]["handling"] = script
    letters = [
        dead_letter(1, reason=script, group=img),
        dead_letter(2, reason=WIDE),
        dead_letter(3, reason=img),
    ]
    record = dead_letter(2) | {"status": "dead", "last_error": WIDE, "callback": script, "group_id": img}

    def answer(method: str, path: str, body: bytes) -> Answer | None:
        route = urlsplit(path).path
        if route == "/status":
            return 200, hostile_status
        if route == "/dead-letters":
            return 200, {"destination": img, "dead_letters": letters, "next": None}
        if route.startswith("/messages/"):
            return 200, record | {"message_id": record["message_id"]}
        return None

    open_console(browser, served, answer)
    wait(browser, lambda: len(found(browser, "#overview tbody tr")) == 2)
    rows = found(browser, "#overview tbody tr")
    assert [r.find_element("css selector", "th").text for r in rows] == [script, img]
    assert img in rows[0].text and script in found(browser, "#unrouted")[0].text

    # The img destination's dead letters: its name goes into the URL's hash encoded, back out as text.
    found(browser, "#overview tbody tr a.destination")[1].click()
    wait(browser, lambda: len(found(browser, "#dead-letters tbody tr")) == 3)
    assert found(browser, "#destination")[0].text == img
    reasons = [cell.text for cell in found(browser, "#dead-letters td.reason")]
    assert reasons[0] == script and reasons[2] == img
    assert len(reasons[1]) == len(WIDE)  # the whole string, as text
    assert found(browser, "#dead-letters td.group")[0].text == img + "1"

    # A 100 KB string keeps the page usable: nothing wider than the window, the controls still work.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280
    found(browser, "#filter")[0].send_keys("</script>")
    wait(browser, lambda: len(found(browser, "#dead-letters tbody tr")) == 1)

    browser.get(browser.current_url.split("#")[0] + f"#/messages/{record['message_id']}")
    wait(browser, lambda: found(browser, 'dd[data-field="last_error"]'))
    assert len(found(browser, 'dd[data-field="last_error"]')[0].text) == len(WIDE)
    assert found(browser, 'dd[data-field="callback"]')[0].text == script
    assert found(browser, 'dd[data-field="group_id"]')[0].text == img

    assert found(browser, "main img, main script") == []
    assert alerted(browser) is None


def test_the_token_travels_only_in_the_authorization_header_and_a_refusal_asks_again(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    def answer(method: str, path: str, body: bytes) -> Answer | None:
        return (200, status(["orders"])) if path == "/status" else None

    api = open_console(browser, served, answer)
    wait(browser, lambda: found(browser, "#overview tbody tr"))

    calls = [seen for seen in api.requests() if seen.path == "/status"]
    assert calls and all(seen.headers["Authorization"] == f"Bearer {TOKEN}" for seen in calls)
    assert all(TOKEN not in seen.path and "Cookie" not in seen.headers for seen in api.requests())
    assert TOKEN not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('trickle-operator-token')") == TOKEN
    assert browser.execute_script("return localStorage.length + document.cookie.length") == 0

    api.token = "rotated"  # the API now refuses it: the console forgets it and asks again
    browser.refresh()
    wait(browser, lambda: found(browser, "#token-form"))
    assert "refused the token (HTTP 403)" in found(browser, "main .error")[0].text
    assert browser.execute_script("return sessionStorage.getItem('trickle-operator-token')") is None


def test_dead_letters_page_by_cursor_and_a_confirmed_redrive_is_followed_to_delivery(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    letters = [dead_letter(n) for n in range(23)]
    redrives: list[dict[str, Any]] = []
    progress_calls: list[str] = []

    def answer(method: str, path: str, body: bytes) -> Answer | None:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/dead-letters" and method == "GET":
            start = int(query.get("next", "0"))
            limit = int(query["limit"])
            more = start + limit < len(letters)
            page = letters[start : start + limit]
            return 200, {
                "destination": "orders",
                "dead_letters": page,
                "next": str(start + limit) if more else None,
            }
        if parts.path == "/dead-letters/redrive" and method == "POST":
            redrives.append(json.loads(body))
            job = {"id": "j1", "state": "running", "moved": 0, "steps": 0, "failed": 0}
            return 202, job | {"progress_url": "/dead-letters/redrive/j1?destination=orders"}
        if parts.path == "/dead-letters/redrive/j1":
            progress_calls.append(path)
            done = len(progress_calls) >= 2
            return 200, {
                "id": "j1",
                "state": "done" if done else "running",
                "moved": 2 if done else 0,
                "steps": 1,
            }
        if parts.path.startswith("/messages/"):
            return 200, {"message_id": parts.path.rsplit("/", 1)[1], "status": "delivered"}
        return None

    open_console(browser, served, answer, "#/dead-letters/orders")
    wait(browser, lambda: len(found(browser, "#dead-letters tbody tr")) == 10)

    def ids() -> list[str]:
        return values(browser, "#dead-letters tbody tr", "data-message-id")

    assert ids()[0] == letters[0]["message_id"]
    found(browser, "#next")[0].click()
    wait(browser, lambda: ids()[0] == letters[10]["message_id"])
    found(browser, "#next")[0].click()
    wait(browser, lambda: ids() == [d["message_id"] for d in letters[20:]])
    assert not found(browser, "#next")[0].is_enabled()
    found(browser, "#previous")[0].click()
    wait(browser, lambda: ids()[0] == letters[10]["message_id"])

    boxes = found(browser, '#dead-letters input[type="checkbox"]')
    boxes[0].click()
    boxes = found(browser, '#dead-letters input[type="checkbox"]')  # the table is drawn again
    boxes[3].click()
    found(browser, "#redrive-selected")[0].click()
    assert "Redrive 2 dead letters of orders?" in found(browser, "#confirm")[0].text
    found(browser, "#confirm-no")[0].click()
    assert redrives == []  # cancelled: nothing asked
    found(browser, "#redrive-selected")[0].click()
    found(browser, "#confirm-yes")[0].click()

    wait(browser, lambda: "Redrive done: 2 moved back" in found(browser, "#job")[0].text)
    wait(browser, lambda: values(browser, "#redriven-messages td.status") == ["delivered"] * 2)
    assert redrives == [{"message_ids": sorted([letters[10]["message_id"], letters[13]["message_id"]])}]
    assert alerted(browser) is None


def test_a_stage_with_iam_authorization_says_how_to_reach_the_console(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    api = FakeOperatorApi(lambda method, path, body: None, TOKEN, auth="iam").start()
    served.append(api)
    browser.get(f"{api.url}/console")
    wait(browser, lambda: "operate --stage STAGE console" in browser.page_source)
    asked = sorted(seen.path.split("?")[0] for seen in api.requests())
    assert asked == ["/console", "/console/console.css", "/console/console.js"]  # and no data


def test_through_operate_console_s_proxy_the_calls_are_signed_and_no_token_is_asked(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    def answer(method: str, path: str, body: bytes) -> Answer | None:
        return (200, status(["orders", "crm"])) if path == "/status" else None

    api = FakeOperatorApi(answer, token=None).start()  # wants SigV4
    served.append(api)
    credentials = ReadOnlyCredentials("AKIDEXAMPLE", "secret", None)
    proxy = ConsoleProxy(api.url, lambda: credentials, "eu-west-1", 0).start()
    try:
        browser.get(f"{proxy.url}/console")
        wait(browser, lambda: values(browser, "#overview tbody th") == ["orders", "crm"])
        assert "Signed by the local proxy (IAM)" in found(browser, "#who")[0].text
    finally:
        proxy.stop()
    (call,) = [seen for seen in api.requests() if seen.path == "/status"]
    assert call.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert found(browser, "#token-form") == []
