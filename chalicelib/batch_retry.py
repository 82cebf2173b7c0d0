"""The one retry of what a batch call left undone.

botocore retries a call that failed as a whole (throttling, 5xx, connection errors: the clients'
standard retry mode in `wiring`), so Trickle never retries those again on top. What botocore does
not retry are the entries a call that succeeded reports as failed (`SendMessageBatch`'s `Failed`)
or left unprocessed (`BatchGetItem`'s `UnprocessedKeys`, `BatchWriteItem`'s `UnprocessedItems`):
they are retried here, with capped full-jitter backoff, and what is still left is the caller's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

BASE_S = 0.05
CAP_S = 2.0


def full_jitter(attempt: int, base_s: float = BASE_S, cap_s: float = CAP_S) -> float:
    """Delay before retry number `attempt + 1`: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap_s, base_s * 2**attempt))


def retry_unprocessed(
    call: Callable[[Sequence[T]], Sequence[T]],
    items: Sequence[T],
    tries: int,
    sleep: Callable[[float], None],
    delay: Callable[[int], float] = full_jitter,
) -> Sequence[T]:
    """`call(items)` returns the items it left undone; they are tried again, `tries` calls in all.
    Returns what is still undone (empty when everything went through)."""
    pending = items
    for attempt in range(tries):
        pending = call(pending)
        if not pending or attempt == tries - 1:
            break
        sleep(delay(attempt))
    return pending
