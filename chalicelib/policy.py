"""Pure delivery decisions: what a response means, how long to wait, how held messages go back."""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from chalicelib.api_client import ApiResponse

M = TypeVar("M")

# A held group's head stays invisible this long when a run ends early, so the rest of its group,
# released at once, is never visible together with it (see README, "Emulator gaps").
HEAD_HOLD_S = 1
MAX_VISIBILITY_S = 43_200


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # 2xx: delete
    SATURATED = "saturated"  # 429, or 503 with Retry-After: the destination, not the message
    RETRY = "retry"  # other 5xx, timeout, connection error: counted attempt, back off
    AUTH = "auth"  # 401/403: the key may have been rotated
    PERMANENT = "permanent"  # other 4xx: the message itself is refused


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    retry_after_s: int | None = None

    @property
    def counted(self) -> bool:
        """Only a message's own failures count against it."""
        return self.outcome in (Outcome.RETRY, Outcome.PERMANENT)


def retry_after_seconds(value: str | None, now: datetime | None = None, default: int = 1) -> int:
    """`Retry-After` as delta-seconds or an HTTP date; never less than a second."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if text.isdigit():
        return max(1, min(MAX_VISIBILITY_S, int(text)))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return max(1, min(MAX_VISIBILITY_S, int(seconds + 0.999)))


def classify(response: ApiResponse, now: datetime | None = None) -> Decision:
    status = response.status
    if status is None:
        return Decision(Outcome.RETRY, response.error or "no response")
    if 200 <= status < 300:
        return Decision(Outcome.DELIVERED, f"HTTP {status}")
    if status == 429 or (status == 503 and response.retry_after is not None):
        return Decision(Outcome.SATURATED, f"HTTP {status}", retry_after_seconds(response.retry_after, now))
    if status in (401, 403):
        return Decision(Outcome.AUTH, f"HTTP {status}")
    if 400 <= status < 500:
        return Decision(Outcome.PERMANENT, f"HTTP {status}: refused by the API")
    return Decision(Outcome.RETRY, f"HTTP {status}")


def backoff_s(
    attempts: int, base_s: int, cap_s: int, draw: Callable[[float, float], float] = random.uniform
) -> int:
    """Delay before the next try after `attempts` failures: capped exponential, equal jitter.

    Half the capped delay is kept so retries never bunch at zero; the other half is random so a
    burst of failures does not retry in lockstep. Always within [1, cap_s].
    """
    ceiling = min(cap_s, base_s << min(30, max(0, attempts - 1)))
    return max(1, min(cap_s, math.ceil(ceiling / 2 + draw(0, ceiling / 2))))


def release_plan(held: Sequence[M], head_delay_s: int) -> list[tuple[M, int]]:
    """Visibility changes for a group's undelivered messages, oldest first.

    The head waits `head_delay_s`; the rest are released at once. On SQS the group stays locked
    while its head is invisible, so order holds; releasing the tail now, rather than letting the
    whole group time out together, also keeps emulators that reorder simultaneous reappearances
    in order.
    """
    if not held:
        return []
    return [(held[0], min(MAX_VISIBILITY_S, head_delay_s)), *((m, 0) for m in held[1:])]
