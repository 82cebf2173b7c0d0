"""Pure delivery decisions: what a response means and how held messages go back to the queue."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TypeVar

from chalicelib.api_client import ApiResponse

M = TypeVar("M")

# A held group's head stays invisible this long when a run ends early, so the rest of its group,
# released at once, is never visible together with it (see README, "Emulator gaps").
HEAD_HOLD_S = 1


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"


def classify(response: ApiResponse) -> Outcome:
    return Outcome.DELIVERED if response.ok else Outcome.RETRY


def release_plan(held: Sequence[M], head_delay_s: int) -> list[tuple[M, int]]:
    """Visibility changes for a group's undelivered messages, oldest first.

    The head waits `head_delay_s`; the rest are released at once. On SQS the group stays locked
    while its head is invisible, so order holds; releasing the tail now, rather than letting the
    whole group time out together, also keeps emulators that reorder simultaneous reappearances
    in order.
    """
    if not held:
        return []
    return [(held[0], head_delay_s), *((m, 0) for m in held[1:])]
