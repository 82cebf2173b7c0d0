"""A destination's running totals (delivered, failed attempts, dead-lettered): since the first run
that counted any, and over the last hour and day. Each drain run adds its own counts in one write
(`Notes.tally` on `totals#<destination>`): the since-start counters, and the counters of the clock
hour it ended in (`h<epoch hour>_<counter>`); the same write removes the buckets of the day before
the last one, so the note keeps about 48 buckets at most. `/status` reads the note and sums the
buckets in a window (`figures`).

The hour and day are estimated from hour buckets: the current hour's bucket counts whole, the
oldest bucket reaching into the window in proportion to its part inside it. No I/O here."""

from __future__ import annotations

import re
from collections.abc import Mapping

COUNTERS = ("delivered", "failed_attempts", "dead_lettered")
HOUR_S = 3600
DAY_HOURS = 24
# Each write removes the buckets of these hours back (the day before the last one): a run an hour
# at least keeps the note to two days of buckets; `stale` finds any left by a longer pause.
REMOVED_HOURS = range(DAY_HOURS + 1, 2 * DAY_HOURS + 1)
_BUCKET = re.compile(r"h(\d+)_(" + "|".join(COUNTERS) + ")")


def bucket(hour: int, counter: str) -> str:
    return f"h{hour}_{counter}"


def hour_of(epoch: float) -> int:
    return int(epoch // HOUR_S)


def additions(counts: Mapping[str, int], now: float) -> dict[str, int]:
    """What a run ending at `now` adds: each counter since start and in its hour's bucket (zeros left
    out; nothing at all for a run that counted nothing, which then writes nothing)."""
    hour = hour_of(now)
    added = {name: counts.get(name, 0) for name in COUNTERS if counts.get(name, 0)}
    return added | {bucket(hour, name): value for name, value in added.items()}


def removals(now: float) -> list[str]:
    """The buckets a write at `now` removes: those of the day before the last one."""
    hour = hour_of(now)
    return [bucket(hour - back, name) for back in REMOVED_HOURS for name in COUNTERS]


def stale(numbers: Mapping[str, float], now: float) -> list[str]:
    """Buckets older than `removals` reaches (the drain did not write for more than a day)."""
    oldest_kept = hour_of(now) - REMOVED_HOURS.stop + 1
    return sorted(name for name in numbers if (m := _BUCKET.fullmatch(name)) and int(m[1]) < oldest_kept)


def figures(numbers: Mapping[str, float] | None, since: float | None, now: float) -> dict[str, object]:
    """`/status`'s totals from the note's numbers: since start (and since when), last hour, last day."""
    numbers = numbers or {}
    return {
        "since": since,
        "since_start": {name: int(numbers.get(name, 0)) for name in COUNTERS},
        "last_hour": _window(numbers, now, 1),
        "last_day": _window(numbers, now, DAY_HOURS),
    }


def _window(numbers: Mapping[str, float], now: float, hours: int) -> dict[str, int]:
    """The counts of the last `hours` hours: the buckets of the current hour and the `hours - 1`
    before it whole, and the one before those in proportion to its part inside the window."""
    current = hour_of(now)
    inside_oldest = 1 - (now - current * HOUR_S) / HOUR_S  # the oldest bucket's share of the window
    result = {}
    for name in COUNTERS:
        whole = sum(numbers.get(bucket(current - back, name), 0) for back in range(hours))
        part = numbers.get(bucket(current - hours, name), 0) * inside_oldest
        result[name] = round(whole + part)
    return result
