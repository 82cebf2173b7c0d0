"""The shape of a destination's request beyond its body: the path rendered from the body, and the
headers a routes file may add. Pure: the settings check both at import, the API client renders the
path at send time.

A path template (`path = "/customers/{keys.pk}"`) is compiled once, when settings are loaded; each
`{...}` is a JMESPath expression over the body as sent, and its value becomes ONE path segment
(percent-encoded, so a '/', '?' or '#' in a value cannot change where the request goes). A value
that is missing, null, not a string or number, empty, "." or ".." is refused with a reason naming
the placeholder: the message is not sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote, urlsplit, urlunsplit

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

from chalicelib import signing

AUTHORIZATION = "authorization"
# Headers Trickle sets itself (lowercase): a routes file may not set them, whatever the destination.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding", "idempotency-key", *signing.HEADERS}
)


def reserved_headers(auth: str, key_header: str) -> frozenset[str]:
    """Every header (lowercase) a destination's routes-file headers may not name: Trickle's own and
    the auth header of its auth kind (`key_header` for api_key, Authorization for basic and oauth2)."""
    if auth == "none":
        return RESERVED_HEADERS
    return RESERVED_HEADERS | {key_header.lower() if auth == "api_key" else AUTHORIZATION}


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 7230 3.2.6, fullmatch
_VALUE = re.compile(r"[\t\x20-\x7e]*")  # printable ASCII, space and tab; fullmatch


def header_name_problem(name: str) -> str | None:
    """What makes `name` no HTTP header name (an RFC 7230 token), or None."""
    if _TOKEN.fullmatch(name):
        return None
    return "is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"


def header_value_problem(value: str) -> str | None:
    """What makes `value` unfit for a header, or None. Says nothing of the value itself, which may
    be a secret."""
    if not _VALUE.fullmatch(value):
        return "holds a line break, another control character or a character beyond printable ASCII"
    if value != value.strip(" \t"):
        return "starts or ends with white space"
    return None


def header_problems(
    fixed: Mapping[str, str], secret: Collection[str], reserved: Collection[str]
) -> list[str]:
    """Everything wrong with a destination's fixed headers (name -> value) and secret header names,
    each problem naming its header. Names compare case-insensitively, as HTTP compares them."""
    problems: list[str] = []
    seen: dict[str, str] = {}  # lowercase name -> where it was given
    given = [*((n, v, "headers") for n, v in fixed.items()), *((n, None, "secret_headers") for n in secret)]
    for name, value, where in given:
        header = f"{where}: header {name!r}"
        if problem := header_name_problem(name):
            problems.append(f"{header} {problem}")
        elif name.lower() in reserved:
            problems.append(f"{header} is set by Trickle itself and may not be given")
        elif name.lower() in seen:
            again = "twice" if seen[name.lower()] == where else "in both headers and secret_headers"
            problems.append(f"{header} is given {again} (names are case-insensitive)")
        if value is not None and (problem := header_value_problem(value)):
            problems.append(f"{header}: its value {problem}")
        seen.setdefault(name.lower(), where)
    return problems


@dataclass(frozen=True)
class Refusal:
    """Why a message cannot be sent as its destination says (its path cannot be rendered)."""

    reason: str


@dataclass(frozen=True)
class _Placeholder:
    text: str
    compiled: ParsedResult

    def segment(self, document: object) -> str | Refusal:
        """The value as one percent-encoded path segment, or why it cannot be one."""
        name = f"path placeholder {{{self.text}}}"
        try:
            value = self.compiled.search(document)
        except JMESPathError as exc:
            return Refusal(f"{name} failed: {exc}".replace("\n", " "))
        if value is None:
            return Refusal(f"{name} is missing (or null)")
        if isinstance(value, str):
            if value in ("", ".", ".."):
                return Refusal(f"{name} is {value!r}, which is no path segment")
            try:
                return quote(value, safe="")
            except UnicodeEncodeError:
                return Refusal(f"{name} holds a lone surrogate, which UTF-8 cannot carry")
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return Refusal(f"{name} is not a string or number ({_json_type(value)})")
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            return Refusal(f"{name} is not a finite number")
        return quote(repr(value) if isinstance(value, float) else str(value), safe="")


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    return "array" if isinstance(value, list) else type(value).__name__


_LITERAL = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")  # RFC 3986 pchar and /


@dataclass(frozen=True)
class PathTemplate:
    """A destination's `path`: literal text and `{JMESPath}` placeholders, compiled once."""

    text: str
    parts: tuple[str | _Placeholder, ...]

    @classmethod
    def compile(cls, text: str) -> PathTemplate:
        """Raises ValueError saying what is wrong (an unclosed brace, a bad expression, a character
        a URL path cannot carry as it is)."""
        if not text.startswith("/"):
            raise ValueError(f"path {text!r} must start with /")
        parts: list[str | _Placeholder] = []
        for literal, expression in re.findall(r"([^{}]*)(?:\{([^{}]*)\})?", text):
            if not _LITERAL.fullmatch(literal):
                bad = next(c for i, c in enumerate(literal) if not _LITERAL.fullmatch(literal[: i + 1]))
                raise ValueError(
                    f"path {text!r} holds {bad!r}, which a URL path cannot carry as it is"
                    " (percent-encode it, e.g. %20 for a space)"
                )
            if literal:
                parts.append(literal)
            if expression:
                try:
                    parts.append(_Placeholder(expression, jmespath.compile(expression)))
                except JMESPathError as exc:
                    raise ValueError(
                        f"path placeholder {{{expression}}} is not a JMESPath expression: {exc}".replace(
                            "\n", " "
                        )
                    ) from exc
        if "".join(p if isinstance(p, str) else f"{{{p.text}}}" for p in parts) != text:
            raise ValueError(f"path {text!r} has an empty placeholder or an unmatched brace")
        return cls(text, tuple(parts))

    @property
    def placeholders(self) -> bool:
        """Whether the path depends on the body (a fixed path is the same for every request)."""
        return any(not isinstance(part, str) for part in self.parts)

    def render(self, document: object) -> str | Refusal:
        """The path for one body (`document`: the body as sent, parsed so that numbers stay as
        written, as `strict_json.loads` does), or the first placeholder's refusal."""
        rendered: list[str] = []
        for part in self.parts:
            segment = part if isinstance(part, str) else part.segment(document)
            if isinstance(segment, Refusal):
                return segment
            rendered.append(segment)
        return "".join(rendered)


def with_path(url: str, path: str) -> str:
    """The destination's URL with a rendered path appended to its own path (its query kept):
    (`https://api.example.com/v1`, `/invoices/7`) -> `https://api.example.com/v1/invoices/7`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))
