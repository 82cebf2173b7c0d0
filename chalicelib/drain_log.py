"""The drain's log lines: one logger, named as it always was (operators query by it), and the
fields every line about a message carries."""

from __future__ import annotations

import logging

from chalicelib.freshness import API_ID_ATTRIBUTE
from chalicelib.model import ApiResponse, ReceivedMessage
from chalicelib.policy import Outcome

log = logging.getLogger("chalicelib.drain")


def fields(message: ReceivedMessage, destination: str, attempt: int, outcome: str) -> dict[str, object]:
    """A message's line; one the API knows by another id (a replay with the same keys) names that
    too, so the API's logs can be searched for it."""
    line: dict[str, object] = {
        "message_id": message.message_id,
        "group_id": message.group_id,
        "destination": destination,
        "attempt": attempt,
        "receive_count": message.receive_count,
        "outcome": outcome,
    }
    if message.attributes.get(API_ID_ATTRIBUTE):
        line["api_id"] = message.attributes[API_ID_ATTRIBUTE]
    return line


def step(
    message: ReceivedMessage, destination: str, attempt: int, outcome: str, response: ApiResponse | None
) -> None:
    """One line per step, but a plain delivery only at DEBUG: at INFO that line cost about 0.3 ms
    of the drain's CPU per message (docs/benchmarks.md, "Where the drain's time goes"), and the ledger and
    the Delivered metric already say it."""
    level = logging.DEBUG if outcome == Outcome.DELIVERED.value else logging.INFO
    if not log.isEnabledFor(level):
        return
    line = fields(message, destination, attempt, outcome)
    if response is not None:
        line |= {"status": response.status, "error": response.error, "elapsed_ms": response.elapsed_ms}
    log.log(level, "delivery", extra=line)
