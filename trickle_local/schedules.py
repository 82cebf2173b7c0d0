"""EventBridge schedule expressions, evaluated as AWS does: `rate(...)` and six-field AWS cron with
`?`, `L`, `W`, `LW`, `#` and the year field. croniter evaluates the five classic fields; this module
translates AWS's dialect into croniter's and applies what croniter lacks (the year, `LW`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from croniter import croniter

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}
_DAY_NAMES = {
    name.upper(): i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)
}
_SEARCH_LIMIT = 10_000


class ScheduleError(ValueError):
    """An expression EventBridge would refuse."""


class Schedule(Protocol):
    @property
    def expression(self) -> str: ...

    def next_after(self, moment: datetime) -> datetime | None: ...


@dataclass(frozen=True)
class RateSchedule:
    expression: str
    period: timedelta
    anchor: datetime

    def next_after(self, moment: datetime) -> datetime:
        """Rates tick every period from when the rule was created (here: the runtime's start)."""
        elapsed = (moment - self.anchor) // self.period
        return self.anchor + (elapsed + 1) * self.period


def _dow_to_croniter(field: str) -> str:
    """AWS numbers days 1-7 from Sunday; croniter 0-6. `6L` (last Friday) is croniter's `L5`."""

    def number(token: str) -> str:
        value = _DAY_NAMES.get(token.upper())
        if value is None:
            if not token.isdigit() or not 1 <= int(token) <= 7:
                raise ScheduleError(f"day of week {token!r} is not 1-7 or SUN-SAT")
            value = int(token)
        return str(value - 1)

    parts = []
    for part in field.split(","):
        if part in ("*", "?"):
            parts.append("*")
        elif part.endswith("L") and len(part) > 1:
            parts.append("L" + number(part[:-1]))
        elif "#" in part:
            day, nth = part.split("#", 1)
            parts.append(f"{number(day)}#{nth}")
        else:
            step = ""
            if "/" in part:
                part, step = part.split("/", 1)
                step = "/" + step
            bounds = part.split("-")
            parts.append("-".join(number(b) for b in bounds) + step)
    return ",".join(parts)


def _years(field: str) -> set[int] | None:
    if field in ("*", "?"):
        return None
    years: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, raw_step = part.split("/", 1)
            step = int(raw_step)
        if part == "*":
            low, high = 1970, 2199
        elif "-" in part:
            low, high = (int(p) for p in part.split("-", 1))
        else:
            low = int(part)
            high = low if step == 1 else 2199
        years.update(range(low, high + 1, step))
    return years


def _last_weekday(year: int, month: int) -> int:
    day = calendar.monthrange(year, month)[1]
    while calendar.weekday(year, month, day) >= 5:
        day -= 1
    return day


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    classic: str
    years: frozenset[int] | None
    last_weekday: bool

    @classmethod
    def parse(cls, expression: str, body: str) -> CronSchedule:
        fields = body.split()
        if len(fields) != 6:
            raise ScheduleError(f"{expression!r}: AWS cron needs 6 fields (min hour dom month dow year)")
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise ScheduleError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")
        last_weekday = dom.upper() == "LW"
        classic = " ".join(
            [minute, hour, "*" if dom == "?" or last_weekday else dom, month, _dow_to_croniter(dow)]
        )
        if not croniter.is_valid(classic):
            raise ScheduleError(f"{expression!r}: not a valid cron expression")
        try:
            years = _years(year)
        except ValueError as exc:
            raise ScheduleError(f"{expression!r}: bad year field {year!r}") from exc
        return cls(expression, classic, frozenset(years) if years is not None else None, last_weekday)

    def _fits(self, moment: datetime) -> bool:
        if self.years is not None and moment.year not in self.years:
            return False
        return not self.last_weekday or moment.day == _last_weekday(moment.year, moment.month)

    def next_after(self, moment: datetime) -> datetime | None:
        """The next firing time, or None if the expression never fires again (a past year)."""
        if self.years is not None and max(self.years) < moment.year:
            return None
        times = croniter(self.classic, moment.astimezone(UTC))
        for _ in range(_SEARCH_LIMIT):
            candidate: datetime = times.get_next(datetime)
            if self.years is not None and candidate.year not in self.years:
                later = [y for y in self.years if y > candidate.year]
                if not later:
                    return None
                times = croniter(self.classic, datetime(min(later), 1, 1, tzinfo=UTC) - timedelta(minutes=1))
                continue
            if self._fits(candidate):
                return candidate
        return None


def parse(expression: str, anchor: datetime) -> Schedule:
    """`rate(5 minutes)` or `cron(0 12 ? * MON-FRI *)`, as Chalice renders its Rate and Cron."""
    text = expression.strip()
    rate = _RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2).rstrip("s")
        if value < 1 or (value == 1) != (unit == rate.group(2)):
            raise ScheduleError(f"{expression!r}: use a singular unit for 1 and a plural one otherwise")
        return RateSchedule(text, timedelta(seconds=value * _UNIT_S[unit]), anchor)
    if text.startswith("cron(") and text.endswith(")"):
        return CronSchedule.parse(text, text[5:-1])
    raise ScheduleError(f"{expression!r} is neither rate(...) nor cron(...)")
