"""The oldest message a queue holds, as its drain saw it (`chalicelib.oldest`): what a run keeps of
what it left, and what `/status` makes of it."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.oldest import OLDEST_KEPT, left_in_queue, oldest_figures, still_waiting

A, B, C = ("a", 1_000), ("b", 2_000), ("c", 3_000)


@pytest.mark.parametrize(
    ("carried", "seen", "removed", "depth", "waiting"),
    [
        # a run that delivered everything it received, the queue empty after it
        ([], {"a": 1_000, "b": 2_000}, {"a", "b"}, 0, []),
        # it left what it did not delete (a retry released, a delete that failed)
        ([], {"a": 1_000, "b": 2_000}, {"b"}, 1, [A]),
        # oldest first, whatever order they were received in
        ([], {"c": 3_000, "a": 1_000, "b": 2_000}, set(), 3, [A, B, C]),
        # an earlier run left `a`, held back by its backoff all this run long: still there
        ([A], {"b": 2_000}, {"b"}, 1, [A]),
        # ... until a run receives and deletes it
        ([A], {"a": 1_000}, {"a"}, 5, []),
        # or receives it and leaves it again
        ([A], {"a": 1_000, "b": 2_000}, {"b"}, 1, [A]),
        # the queue is empty after the run: nothing an earlier run left can be there
        ([A, B], {}, set(), 0, []),
        # the depth unknown (GetQueueAttributes failed): what is known is kept
        ([A], {}, set(), None, [A]),
        # a message without a sent time (an emulator's gap) is no figure
        ([], {"z": 0, "b": 2_000}, set(), 2, [B]),
    ],
)
def test_a_run_keeps_the_oldest_messages_it_knows_are_left(
    carried: list[tuple[str, int]],
    seen: dict[str, int],
    removed: set[str],
    depth: int | None,
    waiting: list[tuple[str, int]],
) -> None:
    assert still_waiting(carried, seen, removed, depth) == waiting


def test_it_keeps_only_the_oldest_few() -> None:
    seen = {f"m{n:03}": 10_000 - n for n in range(100)}
    waiting = still_waiting([], seen, set(), 100)
    assert len(waiting) == OLDEST_KEPT
    assert waiting[0] == ("m099", 9_901) and waiting[-1][1] == 9_901 + OLDEST_KEPT - 1


NOW = 1_767_225_600.0


def note(oldest: list[tuple[str, int]], complete: bool = True) -> dict[str, Any]:
    return {"delivered": 1, "finished_at": NOW - 30, "left_in_queue": left_in_queue(oldest, 3, complete)}


@pytest.mark.parametrize(
    ("run_note", "queued_now", "figures"),
    [
        # no run yet (or a note from before runs kept it): nothing known
        (None, 3, (None, None, False)),
        ({"delivered": 1, "finished_at": NOW - 30}, 3, (None, None, False)),
        # the age now of the oldest it left, from its sent time; when it looked
        (note([("a", int((NOW - 100) * 1000)), B]), 3, (100.0, NOW - 30, True)),
        # a run that stopped before the queue was empty may have missed older ones
        (note([("a", int((NOW - 100) * 1000))], complete=False), 3, (100.0, NOW - 30, False)),
        # it left none: no oldest, as of when it looked
        (note([]), 3, (None, NOW - 30, True)),
        # the queue holds nothing now: nothing it left is there
        (note([("a", int((NOW - 100) * 1000))]), 0, (None, NOW - 30, True)),
    ],
)
def test_status_shows_the_age_now_of_the_oldest_the_last_run_left(
    run_note: dict[str, Any] | None, queued_now: int, figures: tuple[Any, ...]
) -> None:
    shown = oldest_figures(run_note, NOW, queued_now)
    assert (shown["oldest_message_age_s"], shown["oldest_seen_at"], shown["oldest_complete"]) == figures
