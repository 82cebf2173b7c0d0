"""The console in headless Chromium against a fake operator API (`tests.browser.FakeOperatorApi`):
what it draws from the routes' answers, what it sends, and that hostile data stays text. The same
pages against the real routes on the emulator: tests/integration/test_console.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.credentials import ReadOnlyCredentials
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.browser import HOSTILE, WIDE, Answer, FakeOperatorApi, alerted, enter_token, found, values, wait
from trickle_deploy.console_proxy import ConsoleProxy

pytestmark = pytest.mark.browser

TOKEN = "op-browser-token"
NOW = time.time()


def destination(n: int, now: float) -> dict[str, Any]:
    """A destination's `/status` figures, with those of the health routes (totals, next run, ...)."""
    return {
        "queue": {
            "queued": 1000 + n,
            "in_flight": n,
            "oldest_message_age_s": 60.0 * n,
            "oldest_seen_at": now - 5,
            "oldest_complete": n % 2 == 0,
        },
        "dead_letters": {"queued": n, "in_flight": 0},
        "last_run": {
            "received": 10,
            "delivered": 9,
            "retried": 1,
            "stopped_by": "empty",
            "started_at": now - 6,
            "finished_at": now - 5,
        },
        "totals": {
            "since_start": {"delivered": 3000 + n, "failed_attempts": 40, "dead_lettered": n},
            "last_hour": {"delivered": 12, "failed_attempts": 1, "dead_lettered": 0},
            "last_day": {"delivered": 240, "failed_attempts": 9, "dead_lettered": 2},
            "since": now - 86400 * 3,
        },
        "schedule": "rate(1 minute)",
        "next_run": now + 54,
        "circuit": {"state": "open", "since": now - 600} if n == 1 else {"state": "closed", "since": None},
        "paused": None,
        "halted_groups": 2 if n == 1 else 0,
    }


def status(names: list[str]) -> dict[str, Any]:
    return {
        "unrouted": {"handling": "count", "count": 3, "since": NOW - 3600, "last_batch": None},
        "destinations": {name: destination(n, time.time()) for n, name in enumerate(names)},
        "jobs": [
            {
                "id": "j-1",
                "kind": "backfill",
                "state": "running",
                "destinations": names[:2],
                "parts": 4,
                "parts_done": 1,
                "counts": {"scanned": 1200, names[0]: {"queued": 1100}} if names else {},
                "created_at": time.time() - 600,
            }
        ],
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

    row = 'tr[data-destination="dest07"] td'
    assert values(browser, row)[:4] == ["1,007", "7", "≥ 7 min", "7"]
    assert values(browser, 'tr[data-destination="dest02"] [data-figure="oldest"]') == ["2 min"]
    assert values(browser, f'{row}[data-figure="delivered"]') == ["12 / 240\n3,007 since start"]
    assert values(browser, f'{row}[data-figure="dead_lettered"]') == ["0 / 2\n7 since start"]
    assert values(browser, f'{row}[data-figure="health"]') == ["circuit closed\n0 halted groups"]
    assert re.fullmatch(r"in \d+ s\nrate\(1 minute\)", values(browser, f'{row}[data-figure="next_run"]')[0])
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280  # every column
    assert (
        "9 delivered of 10 received · 1 retried · stopped by empty"
        in values(browser, f'{row}[data-figure="last_run"]')[0]
    )
    crm_like = values(browser, 'tr[data-destination="dest01"] [data-figure="health"]')[0]
    assert crm_like.startswith("circuit open since ") and crm_like.endswith("2 halted groups")
    assert "Stream records no route took: 3" in found(browser, "#unrouted")[0].text
    assert values(browser, "#jobs tbody td") == [
        "j-1",
        "backfill",
        "dest00, dest01",
        "1 of 4",
        "scanned 1,200 · dest00: queued 1,100",
        "10 min ago",
    ]
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
    hostile_status["destinations"][img] |= {
        "paused": {"by": script, "reason": WIDE, "at": NOW},
        "circuit": {"state": img, "since": script},
        "schedule": img,
    }
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
    assert browser.execute_script("return document.documentElement.scrollHeight") < 2000
    health = values(browser, '#overview tr:nth-child(2) [data-figure="health"]')[0]
    assert f"by {script}, " in health and WIDE in health and f"circuit {img} since {script}" in health
    assert values(browser, '#overview tr:nth-child(2) [data-figure="next_run"]')[0].endswith(img)

    # The img destination's dead letters: its name goes into the URL's hash encoded, back out as text.
    found(browser, "#overview tbody tr a.destination")[1].click()
    wait(browser, lambda: len(found(browser, "#dead-letters tbody tr")) == 3)
    assert found(browser, "#destination")[0].text == img
    reasons = [cell.text for cell in found(browser, "#dead-letters td.reason")]
    assert reasons[0] == script and reasons[2] == img
    assert len(reasons[1]) == len(WIDE)  # the whole string, as text
    assert found(browser, "#dead-letters td.group")[0].text == img + "1"

    # A 100 KB string keeps the page usable: nothing wider than the window nor much taller (it scrolls
    # in its cell), the controls still work.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280
    assert browser.execute_script("return document.documentElement.scrollHeight") < 2000
    found(browser, "#filter")[0].send_keys("</script>")
    wait(browser, lambda: len(found(browser, "#dead-letters tbody tr")) == 1)

    browser.get(browser.current_url.split("#")[0] + f"#/messages/{record['message_id']}")
    wait(browser, lambda: found(browser, 'dd[data-field="last_error"]'))
    assert len(found(browser, 'dd[data-field="last_error"]')[0].text) == len(WIDE)
    assert browser.execute_script("return document.documentElement.scrollHeight") < 2000
    assert found(browser, 'dd[data-field="callback"]')[0].text == script
    assert found(browser, 'dd[data-field="group_id"]')[0].text == img

    assert found(browser, "main img, main script") == []
    assert alerted(browser) is None


def test_the_token_travels_only_in_the_authorization_header_and_a_refusal_asks_again(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    def answer(method: str, path: str, body: bytes) -> Answer | None:
        return (200, status(["orders"])) if path == "/status" else None

    api = FakeOperatorApi(answer, TOKEN).start()
    served.append(api)
    browser.get(f"{api.url}/console")
    wait(browser, lambda: found(browser, "#token-form"))
    assert "null" not in found(browser, "main")[0].text  # no message yet: nothing in its place
    asked = len(api.requests())  # the page's first /status, without a token, got it the token form
    enter_token(browser, TOKEN)
    wait(browser, lambda: found(browser, "#overview tbody tr"))

    calls = [seen for seen in api.requests()[asked:] if seen.path == "/status"]
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

    wait(browser, lambda: "Redrive done: 2 moved back" in " ".join(values(browser, "#job")))
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


def test_pause_and_resume_ask_first_then_show_who_paused_and_why(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    figures = status(["orders", "crm"])
    asked: list[tuple[str, Any]] = []

    def answer(method: str, path: str, body: bytes) -> Answer | None:
        if path == "/status":
            return 200, figures
        found = re.fullmatch(r"/destinations/(\w+)/(pause|resume)", path)
        if method == "POST" and found:
            asked.append((path, json.loads(body)))
            paused = {"by": "operator", "reason": json.loads(body).get("reason", ""), "at": time.time()}
            figures["destinations"][found[1]]["paused"] = paused if found[2] == "pause" else None
            return 200, {"destination": found[1], "paused": figures["destinations"][found[1]]["paused"]}
        return None

    open_console(browser, served, answer)
    orders = 'tr[data-destination="orders"]'
    wait(browser, lambda: found(browser, f"{orders} button.pause"))
    found(browser, f"{orders} button.pause")[0].click()
    assert "Pause orders? From its next drain run it receives nothing" in found(browser, "#confirm")[0].text
    found(browser, "#confirm-no")[0].click()
    found(browser, f"{orders} button.pause")[0].click()
    found(browser, "#confirm-reason")[0].send_keys("the API's maintenance window")
    found(browser, "#confirm-yes")[0].click()

    wait(browser, lambda: found(browser, f"{orders} button.resume"))
    health = values(browser, f'{orders} [data-figure="health"]')[0]
    assert health.startswith("paused\nby operator, ") and health.count("the API's maintenance window") == 1
    assert values(browser, 'tr[data-destination="crm"] [data-figure="paused"]') == []
    found(browser, f"{orders} button.resume")[0].click()
    assert "Resume orders?" in found(browser, "#confirm")[0].text and found(browser, "#confirm-reason") == []
    found(browser, "#confirm-yes")[0].click()
    wait(browser, lambda: found(browser, f"{orders} button.pause"))

    assert asked == [
        ("/destinations/orders/pause", {"reason": "the API's maintenance window"}),
        ("/destinations/orders/resume", {}),
    ]


def halted_group(n: int, reason: str = "HTTP 400: refused by the API") -> dict[str, Any]:
    message_id = f"00000000-0000-4000-9000-{n:012d}"
    base = f"/halted/{message_id}"
    return {
        "group_id": f"strict{n}",
        "message_id": message_id,
        "reason": reason,
        "attempts": 5,
        "since": "2025-01-02T03:04:05.678Z",
        "last_status_code": 400,
        "last_attempt_at": NOW - 30,
        "retry_url": f"{base}/retry?destination=orders",
        "skip_url": f"{base}/skip?destination=orders",
        "status_url": f"/messages/{message_id}",
    }


def test_halted_groups_are_listed_from_the_overview_and_retried_or_skipped_after_a_confirmation(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    figures = status(["orders"])
    groups = [halted_group(1, reason=HOSTILE[1]), halted_group(2)]
    figures["destinations"]["orders"]["halted_groups"] = 2
    released: list[str] = []

    def answer(method: str, path: str, body: bytes) -> Answer | None:
        route = urlsplit(path).path
        if route == "/status":
            return 200, figures
        if route == "/halted" and method == "GET":
            return 200, {"destination": "orders", "halted": groups, "next": None}
        done = re.fullmatch(r"/halted/([\w-]+)/(retry|skip)", route)
        if method == "POST" and done:
            released.append(path)
            if done[1] == groups[-1]["message_id"]:  # released by someone else meanwhile
                return 409, {"Code": "ConflictError", "Message": f"message {done[1]} is not halted: skip"}
            groups[:] = [g for g in groups if g["message_id"] != done[1]]
            status = "failed" if done[2] == "retry" else "skip"
            return 200, {"message_id": done[1], "destination": "orders", "status": status}
        return None

    open_console(browser, served, answer)
    wait(browser, lambda: found(browser, '[data-figure="halted_groups"] a'))
    found(browser, '[data-figure="halted_groups"] a')[0].click()
    wait(browser, lambda: len(found(browser, "#halted tbody tr")) == 2)
    assert values(browser, "#halted td.reason") == [HOSTILE[1], "HTTP 400: refused by the API"]

    found(browser, "#halted button.retry")[0].click()
    assert "Its attempts start over" in found(browser, "#confirm")[0].text
    found(browser, "#confirm-yes")[0].click()
    wait(browser, lambda: len(found(browser, "#halted tbody tr")) == 1)
    assert values(browser, "#released") == [f"{halted_group(1)['message_id']}: failed."]

    found(browser, "#halted button.skip")[0].click()
    assert "It is dead-lettered with its reason" in found(browser, "#confirm")[0].text
    found(browser, "#confirm-yes")[0].click()
    wait(browser, lambda: "HTTP 409: message" in " ".join(values(browser, "#said .error")))

    one, two = (g["message_id"] for g in (halted_group(1), halted_group(2)))
    assert released == [f"/halted/{one}/retry?destination=orders", f"/halted/{two}/skip?destination=orders"]
    assert alerted(browser) is None


def searched(n: int, destination: str, key: str = "CUSTOMER#9") -> dict[str, Any]:
    message_id = f"00000000-0000-4000-a000-{n:012d}"
    return {
        "message_id": message_id,
        "destination": destination,
        "status": "delivered",
        "attempts": 2,
        "group_id": f'trickle-local-items#"{key}"',
        "item": {"key": key, "sort_key": "ORDER#1"},
        "last_status_code": 200,
        "last_error": "",
        "first_attempt_at": NOW - 120,
        "last_attempt_at": NOW - 60,
        "updated_at": NOW - 60,
        "dead_at": None,
        "callback": None,
        "timeline": [
            {"at": "2026-12-04T10:00:00.000Z", "status_code": 503, "duration_ms": 1250, "reason": "HTTP 503"},
            {"at": "2026-12-04T10:00:02.000Z", "status_code": 200, "duration_ms": 80, "reason": "HTTP 200"},
        ],
        "response_url": "https://bucket.s3.amazonaws.com/responses/x?X-Amz-Signature=abc",
        "status_url": f"/messages/{message_id}",
    }


def test_messages_are_found_by_item_key_or_by_status_and_time_and_show_their_attempts(
    browser: WebDriver, served: list[FakeOperatorApi]
) -> None:
    asked: list[dict[str, str]] = []
    hostile = searched(3, "orders", key=HOSTILE[0]) | {
        "timeline": [{"at": None, "status_code": None, "duration_ms": 30000, "reason": HOSTILE[1]}]
    }
    pages = {None: ([searched(1, "orders"), searched(2, "orders_bulk")], "c2"), "c2": ([hostile], None)}

    def answer(method: str, path: str, body: bytes) -> Answer | None:
        parts = urlsplit(path)
        if parts.path == "/status":
            return 200, status(["orders", "orders_bulk"])
        if parts.path == "/messages":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            asked.append(query)
            if query.get("since") == "yesterday":
                return 400, {
                    "Code": "BadRequestError",
                    "Message": "since must be an ISO 8601 time with its zone",
                }
            page, more = pages[query.get("next")]
            return 200, {"messages": page, "next": more}
        if parts.path.startswith("/messages/"):
            return 200, next(
                m for m in (searched(1, "orders"), hostile) if m["message_id"] == parts.path[10:]
            )
        return None

    open_console(browser, served, answer, "#/messages")
    wait(browser, lambda: found(browser, "#by-item"))
    found(browser, "#item-key")[0].send_keys("CUSTOMER#9")
    found(browser, "#item-sort-key")[0].send_keys("ORDER#1")
    found(browser, "#by-item button")[0].click()
    wait(browser, lambda: len(found(browser, "#messages tbody tr")) == 2)
    assert values(browser, "#messages tbody tr td:nth-child(2)") == ["orders", "orders_bulk"]
    assert values(browser, "#messages td.group") == ["CUSTOMER#9 / ORDER#1"] * 2
    found(browser, "#next")[0].click()
    wait(browser, lambda: values(browser, "#messages td.group") == [f"{HOSTILE[0]} / ORDER#1"])
    assert asked[:2] == [
        {"key": "CUSTOMER#9", "sort_key": "ORDER#1"},
        {"key": "CUSTOMER#9", "sort_key": "ORDER#1", "next": "c2"},
    ]

    Select(found(browser, "#status")[0]).select_by_value("dead")
    found(browser, "#since")[0].send_keys("yesterday")
    found(browser, "#by-status button")[0].click()
    wait(browser, lambda: "since must be an ISO 8601 time" in " ".join(values(browser, "#results .error")))
    assert asked[-1] == {"destination": "orders", "status": "dead", "since": "yesterday"}

    found(browser, "#since")[0].clear()
    found(browser, "#since")[0].send_keys("2026-12-04T10:00:00Z")
    found(browser, "#by-status button")[0].click()
    wait(browser, lambda: len(found(browser, "#messages tbody tr")) == 2)
    assert asked[-1] == {"destination": "orders", "status": "dead", "since": "2026-12-04T10:00:00Z"}

    found(browser, "#messages td.id a")[0].click()
    wait(browser, lambda: found(browser, "#timeline tbody tr"))
    assert [when.split(" (")[0] for when in values(browser, "#timeline td.when")] == [
        "2026-12-04 10:00:00Z",
        "2026-12-04 10:00:02Z",
    ]
    assert values(browser, "#timeline td.num") == ["503", "1,250 ms", "200", "80 ms"]
    assert values(browser, "#timeline td.reason") == ["HTTP 503", "HTTP 200"]
    assert values(browser, 'dd[data-field="item"]') == ["CUSTOMER#9 / ORDER#1"]
    assert values(browser, 'dd[data-field="destination"]') == ["orders"]
    assert (
        found(browser, 'dd[data-field="response_url"] a')[0]
        .get_attribute("href")
        .startswith("https://bucket.")
    )

    browser.get(browser.current_url.split("#")[0] + f"#/messages/{hostile['message_id']}")
    wait(browser, lambda: values(browser, "#timeline td.reason") == [HOSTILE[1]])
    assert values(browser, "#timeline tbody tr td:nth-child(2)") == ["no answer"]
    assert found(browser, "main img, main script") == [] and alerted(browser) is None
