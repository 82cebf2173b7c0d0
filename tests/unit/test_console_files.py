"""The console's static files (chalicelib/console): what the page names, what is served, and that the
script never turns data into markup."""

from __future__ import annotations

import hashlib
import re

import pytest

from chalicelib import console


def test_the_page_names_its_authorization_and_its_files_by_content_hash() -> None:
    page = console.page("proxy", session="abc123")

    assert '<meta name="trickle-auth" content="proxy">' in page
    assert '<meta name="trickle-session" content="abc123">' in page
    for name in ("console.js", "console.css"):
        digest = hashlib.sha256((console.HERE / name).read_bytes()).hexdigest()[:12]
        assert f'"console/{name}?v={digest}"' in page
    assert "{{" not in page
    assert '<meta name="trickle-session" content="">' in console.page("token")


@pytest.mark.parametrize(
    ("auth", "session"),
    [
        ("none", ""),
        ("TOKEN", ""),
        ("proxy", 'a"><script>'),
        ("proxy", "a b"),
        ("proxy", "é"),
        ("proxy", "a" * 129),
    ],
)
def test_the_page_takes_only_known_modes_and_a_plain_session_value(auth: str, session: str) -> None:
    with pytest.raises(ValueError):
        console.page(auth, session)


@pytest.mark.parametrize(
    "name", ["console.html", "__init__.py", "../app.py", "console.js/", "", "CONSOLE.JS"]
)
def test_only_the_script_and_the_sheet_are_served_as_assets(name: str) -> None:
    assert console.asset(name) is None


def test_assets_are_kept_for_good_and_every_file_forbids_other_scripts() -> None:
    script = console.asset("console.js")
    sheet = console.asset("console.css")
    assert script is not None and sheet is not None
    assert script[1]["Content-Type"] == "text/javascript; charset=utf-8"
    assert sheet[1]["Content-Type"] == "text/css; charset=utf-8"
    assert "immutable" in script[1]["Cache-Control"]
    page_headers = console.page_headers()
    assert page_headers["Cache-Control"] == "no-cache"
    for headers in (script[1], sheet[1], page_headers):
        policy = headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self';" in policy
        assert "unsafe" not in policy and "frame-ancestors 'none'" in policy
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_script_never_parses_data_as_markup_nor_stores_the_token_beyond_the_tab() -> None:
    source = (console.HERE / "console.js").read_text()
    code = re.sub(r"//.*", "", source)  # comments may name what is avoided

    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(", "srcdoc")
    for sink in sinks:
        assert sink not in code, sink
    assert "localStorage" not in code and "document.cookie" not in code
    assert code.count("sessionStorage.setItem(") == 1  # the token, from the form


def test_a_missing_browser_fails_the_browser_tests_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not a skip: a CI machine without chromium must not pass the browser tests by leaving them out."""
    from tests.browser import start_browser

    monkeypatch.setenv("CHROMIUM", "no-such-chromium")
    with pytest.raises(pytest.fail.Exception, match=r"\(apt-get install -y chromium chromium-driver\)"):
        start_browser()
