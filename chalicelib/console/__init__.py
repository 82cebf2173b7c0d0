"""The operator console's static files (`GET /console`): one page, one script, one style sheet, no
build step. They hold no data and need no credentials; every call the script makes carries the
operator's (a token stage's bearer token, or the signatures of `operate console`'s local proxy).

The page names how its calls are authorized in a meta tag (`token`, `iam` or, from the proxy,
`proxy` with the proxy's per-run session value), and loads the script and sheet under a hash of
their content, so a browser may keep them for good and never runs a script with a stale page."""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

HERE = Path(__file__).parent
PAGE = "console.html"
# What each asset is served as; nothing else under /console/ is served.
ASSETS = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
AUTH_MODES = ("token", "iam", "proxy")
Headers = dict[str, str | list[str]]  # as chalice.Response takes them
# Where /console/ sends the browser: the page names its files relative to /console (they work under
# any stage prefix, /api/console), which from /console/ would resolve to /console/console/...
FROM_SLASH: Headers = {"Location": "../console"}
_SESSION = re.compile(r"[A-Za-z0-9]{0,128}")

# The page runs only its own script and talks only to its own origin: even a bug that put API data
# into markup could not run it (the script inserts data as text; this is the second fence).
SECURITY_HEADERS: Headers = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:;"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@functools.cache
def _read(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def _version(name: str) -> str:
    return hashlib.sha256(_read(name).encode()).hexdigest()[:12]


def page(auth: str, session: str = "") -> str:
    """The console's HTML for a stage authorized by `auth` (`session`: the proxy's per-run value)."""
    if auth not in AUTH_MODES:
        raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}")
    if not _SESSION.fullmatch(session):
        raise ValueError("session must be ASCII letters and digits")
    return (
        _read(PAGE)
        .replace("{{auth}}", auth)
        .replace("{{session}}", session)
        .replace("{{js}}", _version("console.js"))
        .replace("{{css}}", _version("console.css"))
    )


def page_headers() -> Headers:
    """Revalidated on every load: the page names the current script and sheet."""
    headers: Headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"}
    return headers | SECURITY_HEADERS


def asset(name: str) -> tuple[str, Headers] | None:
    """An asset's text and headers, or None for a name that is not one. Requested under its content
    hash (`?v=`), so it may be kept for a year."""
    if name not in ASSETS:
        return None
    headers: Headers = {"Content-Type": ASSETS[name], "Cache-Control": "public, max-age=31536000, immutable"}
    return _read(name), headers | SECURITY_HEADERS
