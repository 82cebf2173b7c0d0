"""When a drain runs next, for `/status`, from its schedule in app.py and its last run, with the
standard library only (the Lambda package stays without croniter; the local runtime's scheduler,
`trickle_local.schedules`, uses croniter and checks this module's answers in the tests).

`rate(N unit)`: EventBridge ticks every period from when the rule was made, which the API cannot
see; the last run's start stands for a tick (off by the run's cold start, a second or so). AWS cron
(six fields, UTC): numbers, names, `*`, `?`, ranges, lists and steps; an expression with `L`, `W`
or `#` gets no answer (None), nor does one that does not fire in the next five years."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

from chalicelib.naming import drain_function

_RATE = re.compile(r"rate\((\d+) (minute|hour|day)s?\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}  # AWS: 1: Sunday
# (low, high, names) per field: minutes, hours, day of month, month, day of week, year
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (1, 7, _DAYS),
    (1970, 2199, {}),
)
_SEARCH_DAYS = 5 * 366


def drain_schedules(event_sources: Iterable[object], destinations: Iterable[str]) -> dict[str, str]:
    """Each destination's drain schedule as app.py declares it (`app.event_sources`: a scheduled
    source has `schedule_expression`, a text or Chalice's Rate/Cron), for the destinations that have
    one: `/status`'s next run and a backfill's default high-water mark."""
    declared = {
        getattr(source, "name", ""): source.schedule_expression
        for source in event_sources
        if hasattr(source, "schedule_expression")
    }
    return destination_schedules(
        {
            name: expression if isinstance(expression, str) else expression.to_string()
            for name, expression in declared.items()
        },
        destinations,
    )


def destination_schedules(declared: Mapping[str, str], destinations: Iterable[str]) -> dict[str, str]:
    """Each destination's drain schedule, of the scheduled functions' `declared` (name: expression)."""
    return {name: declared[drain_function(name)] for name in destinations if drain_function(name) in declared}


def next_run(expression: str, last_started_at: float | None, now: float) -> float | None:
    """The next run after `now` (epoch seconds), or None when it cannot be told."""
    rate = _RATE.fullmatch(expression.strip())
    if rate:
        if last_started_at is None:
            return None
        period = int(rate[1]) * _UNIT_S[rate[2]]
        ticks = max(0, int((now - last_started_at) // period)) + 1
        return last_started_at + ticks * period
    text = expression.strip()
    if not (text.startswith("cron(") and text.endswith(")")):
        return None
    fields = text[5:-1].split()
    if len(fields) != 6:
        return None
    try:
        sets = [_expand(field, *limits) for field, limits in zip(fields, _FIELDS, strict=True)]
    except ValueError:
        return None
    return _next_cron(sets, now)


def period_s(expression: str, now: float) -> float | None:
    """The time between two runs: a rate's period; for a cron, the gap between its next two runs
    after `now`; None when it cannot be told."""
    rate = _RATE.fullmatch(expression.strip())
    if rate:
        return float(int(rate[1]) * _UNIT_S[rate[2]])
    first = next_run(expression, None, now)
    second = next_run(expression, None, first) if first is not None else None
    return None if first is None or second is None else second - first


def _expand(field: str, low: int, high: int, names: dict[str, int]) -> set[int] | None:
    """The values a cron field allows; None for any (`*`, `?`); ValueError for what is not handled."""
    if field in ("*", "?"):
        return None
    values: set[int] = set()
    for part in field.upper().split(","):
        part, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if part == "*":
            first, last = low, high
        else:
            first_text, _, last_text = part.partition("-")
            first = names.get(first_text) or int(first_text)
            last = (names.get(last_text) or int(last_text)) if last_text else (high if step_text else first)
        if not low <= first <= last <= high or step < 1:
            raise ValueError(field)
        values.update(range(first, last + 1, step))
    return values


def _next_cron(sets: list[set[int] | None], now: float) -> float | None:
    minutes, hours, days, months, weekdays, years = sets
    start = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    for offset in range(_SEARCH_DAYS):
        day: date = start.date() + timedelta(days=offset)
        aws_weekday = day.isoweekday() % 7 + 1
        if (
            (years is not None and day.year not in years)
            or (months is not None and day.month not in months)
            or (days is not None and day.day not in days)
            or (weekdays is not None and aws_weekday not in weekdays)
        ):
            continue
        for hour in sorted(hours) if hours is not None else range(24):
            for minute in sorted(minutes) if minutes is not None else range(60):
                moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                if moment >= start:
                    return moment.timestamp()
    return None
