"""Routes: which stream records go to which destinations, and in what shape. Pure, no I/O.

A route takes some stream events, keeps the records its JMESPath `filter` accepts, and builds each
destination's body with its `transform` (or the default envelope). JMESPath comes with botocore,
so the Lambda package grows by nothing. Expressions are compiled once, when settings are loaded;
one that does not compile stops the import with an error naming the route.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult


class RouteError(ValueError):
    """A filter, transform or group expression failed on one record (the record is dead-lettered)."""


@dataclass(frozen=True)
class Expression:
    """A compiled JMESPath expression that remembers its text (for error messages)."""

    text: str
    compiled: ParsedResult

    @classmethod
    def compile(cls, text: str) -> Expression:
        """Raises ValueError with JMESPath's own explanation."""
        try:
            return cls(text, jmespath.compile(text))
        except JMESPathError as exc:
            raise ValueError(f"{text!r} is not a JMESPath expression: {exc}".replace("\n", " ")) from exc

    def search(self, view: Mapping[str, Any]) -> Any:
        return self.compiled.search(view)


MAX_REQUESTED_FILTER_CHARS = 2000  # a filter an operator sends with a backfill or a replay


def unknown_fields(body: Mapping[str, Any], fields: Sequence[str], what: str) -> list[str]:
    """The problem of a backfill's or replay's request naming fields it does not take (at most five
    names, each cut short: they come from the caller), or none."""
    unknown = sorted(set(body) - set(fields))
    if not unknown:
        return []
    shown = ", ".join(json.dumps(name)[:40] for name in unknown[:5])
    return [f"unknown field(s) {shown}; a {what} takes {', '.join(fields)}"]


def requested_filter(value: object, problems: list[str]) -> Expression | None:
    """The `filter` of a backfill's or a replay's request, compiled; None when none was given, or
    when it is wrong (the problem is added to `problems`, so a request names all of its at once)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REQUESTED_FILTER_CHARS:
        problems.append(
            f"filter must be a JMESPath expression of at most {MAX_REQUESTED_FILTER_CHARS} characters"
        )
        return None
    try:
        return Expression.compile(value)
    except ValueError as exc:
        problems.append(f"filter {exc}")
        return None


@dataclass(frozen=True)
class Route:
    name: str
    events: frozenset[str]
    destinations: tuple[str, ...]
    filter: Expression | None = None
    transform: Expression | None = None
    enrich: str | None = None

    def accepts(self, view: Mapping[str, Any]) -> bool:
        """Whether the record (`{event_name, keys, item, old_item}`) goes this way. A filter must
        answer true or false: anything else is a mistake in the filter, not a "no"."""
        if view["event_name"] not in self.events:
            return False
        if self.filter is None:
            return True
        try:
            answer = self.filter.search(view)
        except JMESPathError as exc:
            raise RouteError(f"route {self.name!r}: filter {self.filter.text!r} failed: {exc}") from exc
        if not isinstance(answer, bool):
            raise RouteError(
                f"route {self.name!r}: filter {self.filter.text!r} gave"
                f" {type(answer).__name__}, not true/false"
            )
        return answer

    def body(self, view: Mapping[str, Any], envelope: Mapping[str, Any]) -> Any:
        """The transform's projection of the record, or the default envelope."""
        if self.transform is None:
            return envelope
        try:
            built = self.transform.search(view)
        except JMESPathError as exc:
            raise RouteError(f"route {self.name!r}: transform {self.transform.text!r} failed: {exc}") from exc
        if built is None:
            raise RouteError(f"route {self.name!r}: transform {self.transform.text!r} gave null")
        return built


def record_view(
    event_name: str, keys: Mapping[str, Any], item: Any, old_item: Any, envelope: Mapping[str, Any]
) -> dict[str, Any]:
    """What filters and transforms see: the event, the keys, both images and the envelope's
    `source`; transforms also see the destination's `message_id` (so they can carry it)."""
    return {
        "event_name": event_name,
        "keys": keys,
        "item": item,
        "old_item": old_item,
        "source": envelope.get("source"),
        "message_id": envelope.get("message_id"),
    }
