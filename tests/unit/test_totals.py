"""A destination's running totals (issue #27) as tables: what one drain run's write adds and
removes, and the figures `/status` reads back from the note, hour and day estimated from buckets."""

from __future__ import annotations

import pytest

from chalicelib.totals import HOUR_S, additions, bucket, figures, removals, stale

H = 490_000  # an epoch hour
AT = H * HOUR_S + 900  # a quarter past it


@pytest.mark.parametrize(
    ("counts", "added"),
    [
        ({}, {}),
        ({"delivered": 0, "failed_attempts": 0, "dead_lettered": 0}, {}),
        (
            {"delivered": 3, "failed_attempts": 0, "dead_lettered": 1},
            {"delivered": 3, "dead_lettered": 1, f"h{H}_delivered": 3, f"h{H}_dead_lettered": 1},
        ),
        ({"failed_attempts": 2}, {"failed_attempts": 2, f"h{H}_failed_attempts": 2}),
    ],
    ids=["nothing", "zeros: no write", "delivered and dead", "failures only"],
)
def test_a_run_adds_its_counts_since_start_and_to_its_hour(
    counts: dict[str, int], added: dict[str, int]
) -> None:
    assert additions(counts, AT) == added


def test_each_write_removes_the_day_before_the_last_one() -> None:
    removed = removals(AT)
    assert len(removed) == 24 * 3
    assert bucket(H - 25, "delivered") in removed and bucket(H - 48, "dead_lettered") in removed
    assert not {bucket(H - back, name) for back in range(25) for name in ("delivered",)} & set(removed)


@pytest.mark.parametrize(
    ("names", "left"),
    [
        ([bucket(H, "delivered"), bucket(H - 48, "delivered")], []),
        ([bucket(H - 49, "delivered"), "delivered", "since"], [bucket(H - 49, "delivered")]),
        (
            [bucket(H - 400, "failed_attempts"), bucket(H - 3, "failed_attempts")],
            [bucket(H - 400, "failed_attempts")],
        ),
        (["h12_unknown"], []),
    ],
    ids=["within reach", "older than a write removes", "a long pause", "not a bucket"],
)
def test_stale_buckets_are_those_older_than_a_write_removes(names: list[str], left: list[str]) -> None:
    assert stale(dict.fromkeys(names, 1), AT) == left


def test_figures_sum_the_hour_and_the_day_from_buckets() -> None:
    numbers = {
        "delivered": 500,
        "failed_attempts": 7,
        "dead_lettered": 2,
        bucket(H, "delivered"): 10,  # this hour: whole
        bucket(H - 1, "delivered"): 40,  # the hour before: 3/4 of it is in the last hour
        bucket(H - 23, "delivered"): 100,  # in the day
        bucket(H - 24, "delivered"): 8,  # 3/4 of it in the day
        bucket(H - 25, "delivered"): 1000,  # outside
        bucket(H - 1, "failed_attempts"): 4,
        bucket(H - 2, "dead_lettered"): 2,
    }
    assert figures(numbers, 1.5, AT) == {
        "since": 1.5,
        "since_start": {"delivered": 500, "failed_attempts": 7, "dead_lettered": 2},
        "last_hour": {"delivered": 10 + 30, "failed_attempts": 3, "dead_lettered": 0},
        "last_day": {"delivered": 10 + 40 + 100 + 6, "failed_attempts": 4, "dead_lettered": 2},
    }


def test_no_note_yet_is_all_zeros() -> None:
    zeros = {"delivered": 0, "failed_attempts": 0, "dead_lettered": 0}
    assert figures(None, None, AT) == {
        "since": None,
        "since_start": zeros,
        "last_hour": zeros,
        "last_day": zeros,
    }
