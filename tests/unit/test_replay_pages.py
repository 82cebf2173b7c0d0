"""A replay read page by page (chalicelib/replay_pages.py) over a fake archive: the pages' messages
in the archive's order, positions a fresh worker resumes from with nothing missed or repeated,
and the S3 calls an invocation makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.delivered_archive import Delivered
from chalicelib.replay_pages import Page, ReplayPages, preview, start
from chalicelib.replay_plan import Replay, Window, replayed_id, shown
from chalicelib.routing import Expression
from tests.fakes import FakeArchiveReader

REPLAY_ID = "0b6f8a52-3c1e-4f7a-9d2b-5e8c1a7f3b90"
T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))


def archive(*sizes: int, before: int = 0, after: int = 0) -> FakeArchiveReader:
    """Objects `o0`, `o1`, ... of `sizes` records each, one a second from T0, alternating two groups
    (`n` counts them from 0 over the whole archive); `before`/`after` records outside the window."""
    objects: dict[str, list[Delivered]] = {}
    n = 0
    for number, size in enumerate(sizes):
        records = []
        for _ in range(size):
            when = T0 + timedelta(seconds=n)
            records.append(Delivered(f"m{n}", f"g{n % 2}", when, f'{{"n": {n}}}'))
            n += 1
        objects[f"o{number}"] = records
    early = [Delivered(f"e{i}", "g0", T0 - timedelta(seconds=i + 1), "{}") for i in range(before)]
    late = [Delivered(f"l{i}", "g0", WINDOW.until + timedelta(seconds=i), "{}") for i in range(after)]
    objects["o0"] = early + objects.get("o0", [])
    objects[f"o{len(sizes) - 1}"] = objects.get(f"o{len(sizes) - 1}", []) + late
    return FakeArchiveReader(objects)


def replay(filter: str | None = None, group: str | None = None, dry_run: bool = False) -> Replay:
    return Replay("orders", WINDOW, Expression.compile(filter) if filter else None, group, dry_run=dry_run)


def bodies(pages: list[Page]) -> list[str]:
    return [m.body for page in pages for m in page.messages]


def every_page(pages: ReplayPages) -> list[Page]:
    found, position = [], start()
    while True:
        page = pages.next(position)
        found.append(page)
        position = page.position
        if page.finished:
            return found


def n_bodies(*ns: int) -> list[str]:
    return [f'{{"n": {n}}}' for n in ns]


@pytest.mark.parametrize(
    ("sizes", "page", "per_page"),
    [
        ((5, 3, 4), 5, [5, 5, 2]),  # pages across objects' ends
        ((5, 3, 4), 100, [12]),
        ((4, 4), 4, [4, 4, 0]),  # a page that ends with an object: the next finds the end
        ((0, 2), 5, [2]),  # an empty object is passed over
    ],
)
def test_pages_give_every_record_of_the_window_once_in_archive_order(
    sizes: tuple[int, ...], page: int, per_page: list[int]
) -> None:
    reader = archive(*sizes, before=2, after=2)

    pages = every_page(ReplayPages(reader, replay(), REPLAY_ID, page_messages=page))

    assert [len(p.messages) for p in pages] == per_page
    assert bodies(pages) == n_bodies(*range(sum(sizes)))
    assert [m.message_id for p in pages for m in p.messages] == [
        replayed_id(REPLAY_ID, f"m{n}") for n in range(sum(sizes))
    ]
    assert pages[-1].finished and not any(p.finished for p in pages[:-1])
    assert sum(p.counts["read"] for p in pages) == sum(sizes)  # the window's records only
    assert sum(p.counts["objects"] for p in pages) == len(sizes)
    # one listing for the invocation, one read per object
    assert (reader.listings, reader.reads) == ([""], [f"o{i}" for i in range(len(sizes))])


def test_a_worker_resuming_from_any_checkpoint_queues_the_rest_exactly() -> None:
    whole = bodies(every_page(ReplayPages(archive(5, 3, 4), replay(), REPLAY_ID, page_messages=5)))
    first = ReplayPages(archive(5, 3, 4), replay(), REPLAY_ID, page_messages=5)
    position = start()
    done: list[str] = []
    while True:
        page = first.next(position)
        done += [m.body for m in page.messages]
        if page.finished:
            break
        position = page.position
        reader = archive(5, 3, 4)  # a new invocation: nothing kept but the checkpoint
        rest = bodies(every_page_from(ReplayPages(reader, replay(), REPLAY_ID, page_messages=5), position))
        assert done + rest == whole
        if position["key"] is not None:  # resumed within an object: it is read again, listed after
            assert reader.reads[0] == position["key"] and reader.listings[0] == position["key"]
        else:
            assert reader.listings[0] == position["after"]


def every_page_from(pages: ReplayPages, position: dict[str, object]) -> list[Page]:
    found = []
    while True:
        page = pages.next(position)
        found.append(page)
        position = page.position
        if page.finished:
            return found


def test_a_page_asked_from_another_position_lists_again_from_there() -> None:
    reader = archive(5, 3, 4)
    pages = ReplayPages(reader, replay(), REPLAY_ID, page_messages=5)
    pages.next(start())
    again = pages.next(start())  # e.g. a checkpoint write lost: the page is worked again

    assert [m.body for m in again.messages] == n_bodies(0, 1, 2, 3, 4)
    assert reader.listings == ["", ""]


@pytest.mark.parametrize(
    ("filter", "group", "expected"),
    [
        ("body.n > `6`", None, [7, 8, 9, 10, 11]),
        (None, "g1", [1, 3, 5, 7, 9, 11]),
        ("body.n < `6`", "g0", [0, 2, 4]),
    ],
)
def test_a_page_holds_what_the_replay_selects_in_order(
    filter: str | None, group: str | None, expected: list[int]
) -> None:
    pages = every_page(ReplayPages(archive(5, 3, 4), replay(filter, group), REPLAY_ID, page_messages=4))

    assert bodies(pages) == n_bodies(*expected)
    assert sum(p.counts["selected"] for p in pages) == len(expected)
    assert sum(p.counts["read"] for p in pages) == 12


def test_a_dry_run_counts_what_it_would_queue_and_builds_no_message() -> None:
    reader = archive(5, 3, 4)

    pages = every_page(ReplayPages(reader, replay("body.n > `2`", dry_run=True), REPLAY_ID, page_records=5))

    assert [p.messages for p in pages] == [[], [], []]
    assert [p.counts["read"] for p in pages] == [5, 5, 2]
    assert sum(p.counts["selected"] for p in pages) == 9


def test_a_preview_counts_the_whole_window_and_queues_nothing() -> None:
    reader = archive(5, 3, 4, before=2, after=2)

    counted = preview(reader, replay("body.n > `2`"))

    assert counted == {"read": 12, "selected": 9, "objects": 3, "filter_errors": 0}
    assert (reader.listings, reader.reads) == ([""], ["o0", "o1", "o2"])


FAILS_ON_G0 = "group == 'g1' || abs(id) > `0`"  # g1's records are taken; on g0's, abs() of a text fails


def test_records_the_filter_fails_on_are_left_out_counted_and_the_first_error_kept() -> None:
    pages = every_page(ReplayPages(archive(5, 3, 4), replay(FAILS_ON_G0), REPLAY_ID, page_messages=4))

    assert bodies(pages) == n_bodies(1, 3, 5, 7, 9, 11)
    assert sum(p.counts["filter_errors"] for p in pages) == 6
    assert pages[0].counts["filter_error"].startswith("JMESPathTypeError: In function abs()")


def test_a_preview_counts_the_records_the_filter_fails_on_and_the_job_warns_of_them() -> None:
    counted = preview(archive(5, 3, 4), replay(FAILS_ON_G0))

    assert {name: counted[name] for name in ("read", "selected", "filter_errors")} == {
        "read": 12,
        "selected": 6,
        "filter_errors": 6,
    }
    warned = shown({"id": REPLAY_ID, "state": "done", "counts": counted})["warnings"]
    assert warned == [
        f"the filter failed on 6 of 12 archived deliveries read, left out (first: {counted['filter_error']}):"
        " check its functions' argument types"
    ]
    assert "warnings" not in shown(
        {"id": REPLAY_ID, "state": "done", "counts": {"read": 12, "filter_errors": 0}}
    )
