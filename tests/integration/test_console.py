"""The operator console served by the app's routes (chalice local, token authorization) on the
emulator, driven in headless Chromium: the overview, dead letters paged and redriven until they are
delivered, a message looked up, hostile item keys shown as text. Screenshots: tests/browser.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium.webdriver.chrome.webdriver import WebDriver

from chalicelib import wiring
from tests.browser import alerted, enter_token, found, screenshot, values, wait
from tests.integration.conftest import OPERATOR_TOKEN, Servers, Stack
from trickle_local.routes import RouteServer
from trickle_project.stage import load_config

SCRIPT_KEY = "<script>alert(1)</script>"
IMG_KEY = '"><img/src=x/onerror=alert(1)>'  # no spaces: a readable group id, not a hash


@pytest.fixture
def routes(servers: Servers, stack: Stack) -> Iterator[str]:
    server = RouteServer(servers.app, load_config(), "local").start()
    yield server.url
    server.stop()


def test_the_console_s_files_are_served_without_credentials_and_nothing_else_is(routes: str) -> None:
    page = requests.get(f"{routes}/console", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    assert '<meta name="trickle-auth" content="token">' in page.text  # the local stage's TRICKLE_AUTH
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        asset = requests.get(f"{routes}/console/{name}?v=1", timeout=10)
        assert asset.status_code == 200 and asset.headers["Content-Type"].startswith(kind)
    missing = requests.get(f"{routes}/console/app.py", timeout=10)
    assert missing.status_code == 404 and "the console is at /console" in missing.text
    assert requests.get(f"{routes}/status", timeout=10).status_code == 401  # the data is not open


def group(key: str) -> str:
    """The group id of an item with this partition key (the table's name and the key as JSON)."""
    return f"trickle-local-items#{json.dumps(key)}"


def dead_letter_count(destination: str = "orders") -> int:
    return sum(wiring.dead_letters(destination).counts())


@pytest.mark.browser
@pytest.mark.slow
def test_overview_dead_letters_redrive_to_delivery_and_lookup_in_a_browser(
    browser: WebDriver, routes: str, stack: Stack, tmp_path: Path
) -> None:
    stack.api.faults.poison = frozenset({'"poison":true'})
    stack.put_items(
        [
            stack.item(pk, f"{i:03}", poison={"BOOL": True})
            for i in range(4)
            for pk in (SCRIPT_KEY, IMG_KEY, "plain")
        ]
        + [stack.item("fine", f"{i:03}") for i in range(3)]
    )
    stack.ingest_new()
    stack.drain_until(lambda _: dead_letter_count() == 12)
    assert len(stack.api.applied()) == 3

    browser.get(f"{routes}/console")
    enter_token(browser, OPERATOR_TOKEN)
    orders_dead = '#overview tr[data-destination="orders"] [data-figure="dead_letters"]'
    wait(browser, lambda: values(browser, orders_dead) == ["12"])
    assert values(browser, "#overview tbody th") == ["orders", "crm"]
    screenshot(browser, "overview", tmp_path)

    # Dead letters, 10 a page: the second page has the last 2; the item keys are text in the group ids.
    found(browser, '#overview tr[data-destination="orders"] a.destination')[0].click()
    wait(browser, lambda: len(found(browser, "#dead-letters tbody tr")) == 10)
    assert {group(SCRIPT_KEY), group(IMG_KEY)} <= set(values(browser, "#dead-letters td.group"))
    screenshot(browser, "dead-letters", tmp_path)
    first_page = values(browser, "#dead-letters tbody tr", "data-message-id")
    found(browser, "#next")[0].click()
    wait(browser, lambda: len(found(browser, "#dead-letters tbody tr")) == 2)
    assert not set(values(browser, "#dead-letters tbody tr", "data-message-id")) & set(first_page)
    found(browser, "#previous")[0].click()
    wait(browser, lambda: values(browser, "#dead-letters tbody tr", "data-message-id") == first_page)

    # Redrive three of them, confirmed; with the API fixed, the drain carries the job and delivers.
    for row in range(3):
        found(browser, '#dead-letters input[type="checkbox"]')[row].click()
    found(browser, "#redrive-selected")[0].click()
    assert "Redrive 3 dead letters of orders?" in found(browser, "#confirm")[0].text
    found(browser, "#confirm-yes")[0].click()
    wait(browser, lambda: "Redrive running" in " ".join(values(browser, "#job")))
    stack.api.faults.poison = frozenset()

    def delivered() -> bool:
        wiring.drainer("orders").run(lambda: 60_000)  # not through the recorder: the page polls meanwhile
        return values(browser, "#redriven-messages td.status") == ["delivered"] * 3

    wait(browser, delivered, deadline_s=90)
    assert "Redrive done: 3 moved back" in found(browser, "#job")[0].text
    assert dead_letter_count() == 9 and len(stack.api.applied()) == 6
    screenshot(browser, "redrive", tmp_path)

    # A message by id: its ledger fields; a hostile key is text there too.
    hostile = next(
        message_id
        for message_id, group in zip(
            values(browser, "#dead-letters tbody tr", "data-message-id"),
            values(browser, "#dead-letters td.group"),
            strict=True,
        )
        if SCRIPT_KEY in group
    )
    found(browser, "nav a[data-nav=messages]")[0].click()
    found(browser, "#message-id")[0].send_keys(hostile)
    found(browser, "#lookup button")[0].click()
    wait(browser, lambda: values(browser, 'dd[data-field="status"]') == ["dead"])
    assert values(browser, 'dd[data-field="group_id"]') == [group(SCRIPT_KEY)]
    assert values(browser, 'dd[data-field="last_error"]') == ["HTTP 400: refused by the API"]
    screenshot(browser, "message", tmp_path)

    assert found(browser, "main img, main script") == []
    assert alerted(browser) is None
