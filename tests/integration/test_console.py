"""The operator console served by the app's routes (chalice local, token authorization) on the
emulator, driven in headless Chromium: the overview, dead letters paged and redriven until they are
delivered, a message looked up, hostile item keys shown as text. Screenshots: tests/browser.py."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.chrome.webdriver import WebDriver

from chalicelib import wiring
from tests.browser import alerted, enter_token, found, screenshot, values, wait
from tests.fakes import until
from tests.integration.conftest import EMULATOR, OPERATOR_TOKEN, Servers, Stack
from tests.integration.test_halted import halted_stack
from trickle_deploy.policies import function_policies
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
    slash = requests.get(f"{routes}/console/", timeout=10)  # its files named relative to /console
    assert (slash.status_code, slash.url, slash.history[0].status_code) == (200, f"{routes}/console", 302)
    assert '<meta name="trickle-auth" content="token">' in slash.text
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

    assert found(browser, "main img, main script") == []
    assert alerted(browser) is None


TWENTY = ["orders", "crm", *(f"d{n:02}" for n in range(2, 20))]


def twenty_destinations(api_url: str) -> str:
    """A routes file of 20 destinations, every insert to each: the suite's orders and crm (at their
    stand-ins, as the suite's variables say) and 18 more at the orders stand-in."""
    blocks = [
        '[destinations.orders]\ngroup_by = "partition_key"\n',
        '[destinations.crm]\nkey_header = "Authorization"\nkey_scheme = "Bearer"\n',
        *(f'[destinations.{name}]\nurl = "{api_url}/{name}"\n' for name in TWENTY[2:]),
    ]
    listed = ", ".join(f'"{name}"' for name in TWENTY)
    return "\n".join(
        [*blocks, f'[[routes]]\nname = "everything"\nevents = ["INSERT"]\ndestinations = [{listed}]\n']
    )


def test_status_reads_every_note_in_one_call_whatever_the_number_of_destinations(
    stack_factory: Any, tmp_path: Path
) -> None:
    """What a page view of the overview costs in AWS calls: one BatchGetItem for every
    destination's run, totals and pause notes, the unrouted count and the running jobs' list, and
    the two queues' depths per destination (SQS has no batch for them), asked at once; no receive."""
    routes_file = tmp_path / "twenty.toml"
    routes_file.write_text(twenty_destinations("http://127.0.0.1:9"))
    stack: Stack = stack_factory(TRICKLE_ROUTES_FILE=str(routes_file))
    stack.policies = function_policies(stack.env)
    stack.put_items([stack.item("g", f"{i:03}") for i in range(2)])
    stack.ingest_new()
    assert stack.drain("orders")["delivered"] == 2
    wiring.operations().pause("d05", "operator", "maintenance")  # app.py's routes know the suite's two

    stack.http("GET", "/status")  # the authorizer's first run, its token read
    took_s = []
    for _ in range(5):
        first = len(stack.recorder.calls)
        started = time.perf_counter()
        answer = stack.http("GET", "/status")
        took_s.append(time.perf_counter() - started)
    made = Counter(c.operation for c in stack.recorder.calls[first:] if c.function == "api_handler")
    print(
        f"\n/status with 20 destinations on {EMULATOR} (test client): median"
        f" {statistics.median(took_s) * 1000:.0f} ms of {[round(s * 1000) for s in took_s]};"
        f" AWS calls {dict(made)}"
    )

    assert answer.status_code == 200, answer.body
    shown = json.loads(answer.body)["destinations"]
    assert list(shown) == TWENTY
    assert shown["orders"]["totals"]["since_start"]["delivered"] == 2
    assert shown["orders"]["last_run"]["delivered"] == 2 and shown["crm"]["last_run"] is None
    assert shown["d05"]["paused"]["reason"] == "maintenance"
    assert [name for name, d in shown.items() if d["paused"]] == ["d05"]
    assert {d["queue"]["queued"] for name, d in shown.items() if name != "orders"} == {2}
    assert made == {"BatchGetItem": 1, "GetQueueAttributes": 2 * len(TWENTY)}


@pytest.mark.browser
@pytest.mark.slow
def test_the_overview_of_20_destinations_loads_from_one_status_call(
    browser: WebDriver, servers: Servers, stack_factory: Any, tmp_path: Path
) -> None:
    """The figure for the closing note: a stage of 20 destinations with messages queued, delivered
    and dead-lettered, its overview timed from navigation to 20 rows, and the requests it made."""
    routes_file = tmp_path / "twenty.toml"
    routes_file.write_text(twenty_destinations(servers.api.url))
    stack: Stack = stack_factory(TRICKLE_ROUTES_FILE=str(routes_file))
    stack.policies = function_policies(stack.env)
    stack.api.faults.poison = frozenset({'"poison":true'})
    stack.put_items(
        [stack.item(f"g{g}", f"{i:03}") for i in range(3) for g in range(2)]
        + [stack.item("bad", "000", poison={"BOOL": True})]
    )
    stack.ingest_new()
    assert list(json.loads(stack.http("GET", "/status").body)["destinations"]) == TWENTY
    for name in TWENTY[::2]:  # half of them drained: delivered, one dead letter each, a last run
        wiring.drainer(name).run(lambda: 60_000)

    server = RouteServer(servers.app, load_config(), "local").start()
    try:
        status_s = []
        for _ in range(5):
            started = time.perf_counter()
            answer = requests.get(
                f"{server.url}/status", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30
            )
            status_s.append(time.perf_counter() - started)
            assert answer.status_code == 200
        browser.get(f"{server.url}/console")
        enter_token(browser, OPERATOR_TOKEN)
        wait(browser, lambda: len(found(browser, "#overview tbody tr")) == 20)
        views = []
        for _ in range(3):
            started = time.perf_counter()
            browser.get(f"{server.url}/console")
            wait(browser, lambda: len(found(browser, "#overview tbody tr")) == 20)
            views.append(time.perf_counter() - started)
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => [e.name, e.transferSize])"
        )
    finally:
        server.stop()

    assert values(browser, 'tr[data-destination="d02"] [data-figure="dead_letters"]') == ["1"]
    assert values(browser, 'tr[data-destination="d03"] [data-figure="queued"]') == ["7"]
    over_network = [name.split("?")[0].rsplit("/", 1)[1] for name, size in fetched if size]
    assert over_network == ["status"]  # the script and the sheet from the browser's cache
    print(
        f"\n/status with 20 destinations over chalice local on {EMULATOR}: median"
        f" {statistics.median(status_s) * 1000:.0f} ms; overview view (navigation to 20 rows): median"
        f" {statistics.median(views) * 1000:.0f} ms of {[round(v * 1000) for v in views]};"
        f" requests a view: page + {len(fetched)} ({[n.split('?')[0].rsplit('/', 1)[1] for n, _ in fetched]})"
    )


@pytest.mark.browser
@pytest.mark.slow
def test_pause_and_resume_a_destination_from_the_overview(
    browser: WebDriver, routes: str, stack: Stack, tmp_path: Path
) -> None:
    stack.put_items([stack.item("p", f"{i:03}") for i in range(3)])
    stack.ingest_new()
    stack.drain()
    browser.get(f"{routes}/console")
    enter_token(browser, OPERATOR_TOKEN)
    orders = 'tr[data-destination="orders"]'
    wait(browser, lambda: values(browser, f'{orders} [data-figure="delivered"]') == ["3 / 3\n3 since start"])
    assert values(browser, f'{orders} [data-figure="health"]') == ["circuit closed\n0 halted groups"]
    assert values(browser, f'{orders} [data-figure="next_run"]')[0].endswith("rate(1 minute)")

    found(browser, f"{orders} button.pause")[0].click()
    found(browser, "#confirm-reason")[0].send_keys("<b>API maintenance</b> until 14:00")
    found(browser, "#confirm-yes")[0].click()
    wait(browser, lambda: found(browser, f"{orders} button.resume"))
    health = values(browser, f'{orders} [data-figure="health"]')[0]
    assert health.startswith("paused\nby operator, ") and "<b>API maintenance</b> until 14:00" in health

    # Paused: what arrives waits, counted; the overview shows it on its next load.
    stack.put_items([stack.item("p", f"{i:03}") for i in range(3, 5)])
    stack.ingest_new()
    assert wiring.drainer("orders").run(lambda: 60_000).stopped_by == "paused"
    browser.refresh()
    wait(browser, lambda: values(browser, f'{orders} [data-figure="queued"]') == ["2"])
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1280
    screenshot(browser, "paused", tmp_path)

    found(browser, f"{orders} button.resume")[0].click()
    found(browser, "#confirm-yes")[0].click()
    wait(browser, lambda: found(browser, f"{orders} button.pause"))
    assert wiring.drainer("orders").run(lambda: 60_000).delivered == 2
    browser.refresh()
    wait(browser, lambda: values(browser, f'{orders} [data-figure="delivered"]') == ["5 / 5\n5 since start"])
    assert len(stack.api.applied()) == 5
    assert alerted(browser) is None


@pytest.mark.browser
@pytest.mark.slow
def test_a_halted_group_is_released_from_the_console_and_delivered_in_order(
    browser: WebDriver, servers: Servers, stack_factory: Any, tmp_path: Path
) -> None:
    stack, halted_id = halted_stack(stack_factory)  # strict ordering; g0 halted behind its second item
    server = RouteServer(servers.app, load_config(), "local").start()
    try:
        browser.get(f"{server.url}/console")
        enter_token(browser, OPERATOR_TOKEN)
        halted = 'tr[data-destination="orders"] [data-figure="halted_groups"] a'
        wait(browser, lambda: values(browser, halted) == ["1 halted group"])
        found(browser, halted)[0].click()
        wait(browser, lambda: values(browser, "#halted tbody tr", "data-message-id") == [halted_id])
        assert values(browser, "#halted td.group") == [group("g0")]
        assert values(browser, "#halted td.reason") == ["HTTP 400: refused by the API"]
        screenshot(browser, "halted", tmp_path)

        found(browser, "#halted button.retry")[0].click()
        found(browser, "#confirm-yes")[0].click()
        wait(browser, lambda: values(browser, "#released") == [f"{halted_id}: failed."])
        wait(browser, lambda: found(browser, "#no-halted"))
    finally:
        server.stop()

    until(lambda: wiring.drainer("orders").run(lambda: 60_000) and len(stack.delivered_by_group()["g0"]) == 3)
    assert stack.delivered_by_group()["g0"] == ["000", "001", "002"]
    assert alerted(browser) is None


@pytest.mark.browser
@pytest.mark.slow
def test_a_message_is_found_by_its_item_s_key_with_its_attempts(
    browser: WebDriver, routes: str, stack: Stack, tmp_path: Path
) -> None:
    stack.api.faults.error_rate = 1.0  # the first attempt of each is a 503
    stack.put_items([stack.item("CUSTOMER#9", "ORDER#1"), stack.item("CUSTOMER#9", "ORDER#2")])
    stack.ingest_new()
    stack.drain()
    stack.api.faults.error_rate = 0.0
    stack.drain_until(lambda _: len(stack.api.applied()) == 2)

    browser.get(f"{routes}/console#/messages")
    enter_token(browser, OPERATOR_TOKEN)
    wait(browser, lambda: found(browser, "#by-item"))
    found(browser, "#item-key")[0].send_keys("CUSTOMER#9")
    found(browser, "#item-sort-key")[0].send_keys("ORDER#1")
    found(browser, "#by-item button")[0].click()
    wait(browser, lambda: values(browser, "#messages td.status") == ["delivered"])
    assert values(browser, "#messages td.group") == ["CUSTOMER#9 / ORDER#1"]
    screenshot(browser, "search", tmp_path)

    found(browser, "#messages td.id a")[0].click()
    wait(browser, lambda: len(found(browser, "#timeline tbody tr")) == 2)
    assert [code for code in values(browser, "#timeline td.num") if not code.endswith(" ms")] == [
        "503",
        "200",
    ]
    assert values(browser, 'dd[data-field="item"]') == ["CUSTOMER#9 / ORDER#1"]
    screenshot(browser, "message", tmp_path)
