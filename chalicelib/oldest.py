"""The oldest message in a destination's queue, as its drain saw it: `GET /status` shows it without
touching the queue (a receive, even one that hides nothing, adds to the head's receive count, and
the queue's redrive backstop counts those).

Each run notes, in its run note (`left_in_queue`), the oldest messages it knows are still queued
when it ends: those it received and did not delete, and those an earlier run left that it never
received (a retry's backoff can hide a message through many runs). Only the drain deletes from the
queue, so these are exact as of the run's end, for the OLDEST_KEPT oldest; a run that ends with the
queue empty forgets them. A run that stopped before the queue was empty (budget, time, breaker)
did not see every message: the oldest may be older (`complete` false)."""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from typing import Any

NOTE_FIELD = "left_in_queue"
OLDEST_KEPT = 20


def still_waiting(
    carried: Sequence[tuple[str, int]], seen: Mapping[str, int], removed: Container[str], depth: int | None
) -> list[tuple[str, int]]:
    """(copy id, sent at ms) of the OLDEST_KEPT oldest messages known to be in the queue after a run,
    oldest first: those it received (`seen`) and did not delete (`removed`), and those an earlier
    run left (`carried`) that it did not receive; none if the queue is empty (`depth` 0)."""
    if depth == 0:
        return []
    left = {copy: sent for copy, sent in carried if copy not in seen}
    left |= {copy: sent for copy, sent in seen.items() if copy not in removed}
    known = sorted((sent, copy) for copy, sent in left.items() if sent > 0)
    return [(copy, sent) for sent, copy in known[:OLDEST_KEPT]]


def left_in_queue(waiting: list[tuple[str, int]], depth: int | None, complete: bool) -> dict[str, Any]:
    """The run note's record of what the run left (`depth`: the queue's messages after it, if known)."""
    return {"messages": depth, "complete": complete, "oldest": [list(entry) for entry in waiting]}


def carried(note: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """What the last run's note says was left in the queue (nothing for a note without it)."""
    left = (note or {}).get(NOTE_FIELD) or {}
    return [(str(copy), int(sent)) for copy, sent in left.get("oldest", [])]


def oldest_figures(note: Mapping[str, Any] | None, now: float, queued_now: int) -> dict[str, Any]:
    """`/status`'s oldest-message figures from the last run's note: the age now of the oldest message
    it left (None if it left none, or the queue holds none now), when it looked, and whether it saw
    the whole queue (False: an older message may be there that it did not receive)."""
    if note is None or not note.get(NOTE_FIELD):
        return {"oldest_message_age_s": None, "oldest_seen_at": None, "oldest_complete": False}
    oldest = carried(note)
    age = round(max(0.0, now - oldest[0][1] / 1000), 3) if oldest and queued_now else None
    return {
        "oldest_message_age_s": age,
        "oldest_seen_at": note.get("finished_at"),
        "oldest_complete": bool(note[NOTE_FIELD].get("complete")),
    }
