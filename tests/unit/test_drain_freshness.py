"""Freshness at delivery (issue #26): a backfilled message is read back against its item before it
is sent, one consistent read per round; an item changed or deleted since is never sent, its message
settled (ledger: superseded, with the reason; no attempt), deleted, counted; a failed read leaves
the message queued and unsent. Against the fakes of every port."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.drain import Drainer
from chalicelib.drain_state import DrainReport
from chalicelib.freshness import SOURCE_KEY_ATTRIBUTE
from chalicelib.model import ROUTE_ATTRIBUTE, ApiResponse, LedgerRecord, ReceivedMessage, Status
from tests.fakes import (
    FakeArchive,
    FakeDeadLetters,
    FakeFifo,
    FakeLedger,
    FakeMetrics,
    FakeNotes,
    FakeSourceItems,
    ScriptedApi,
    backfilled,
    message,
)
from tests.unit.conftest import MakeSettings

FAST = {
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "10000",
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": "100",
    "TRICKLE_DRAIN_WORKERS": "1",
}
CHANGED = "superseded: item changed since backfill"
DELETED = "deleted since backfill"


def item(pk: str, sk: str = "", **attributes: str) -> dict[str, Any]:
    keys = {"pk": {"S": pk}} | ({"sk": {"S": sk}} if sk else {})
    return keys | {name: {"S": value} for name, value in attributes.items()}


class Rig:
    """A drainer on fakes, its source table holding `items`; `run()` is one scheduled drain."""

    def __init__(self, make_settings: MakeSettings, *items: dict[str, Any], **env: str) -> None:
        self.queue = FakeFifo(hold_delays=True)
        self.ledger = FakeLedger()
        self.dead_letters = FakeDeadLetters()
        self.api = ScriptedApi()
        self.source = FakeSourceItems(*items)
        self.metrics = FakeMetrics()
        self.settings = make_settings(**(FAST | env))

    def run(self) -> DrainReport:
        drainer = Drainer(
            self.queue,
            self.dead_letters,
            self.ledger,
            self.api,
            self.settings.destination("orders"),
            self.settings,
            FakeNotes(),
            FakeArchive(),
            metrics=lambda: self.metrics,
            clock=time,
            source=self.source,
        )
        return drainer.run(lambda: 10**9)


A, B, C = item("a", "1", name="Ada"), item("b", "1", name="Bo"), item("c", name="Cy")


def test_changed_and_deleted_items_are_settled_unsent_and_the_rest_delivered(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(make_settings, A, B, C)
    rig.queue.put(
        backfilled("g0", 0, A),  # unchanged: sent
        backfilled("g0", 1, B),  # changed below: not sent
        message("g0", 2),  # live: sent, never read back
        backfilled("g0", 3, C),  # deleted below: not sent
        backfilled("g1", 0, A),  # the same item for another group: read once
    )
    rig.source.put(item("b", "1", name="Bob"))
    rig.source.delete(C)

    with caplog.at_level(logging.INFO, logger="chalicelib.drain"):
        report = rig.run()

    assert rig.api.bodies() == ["g0:0", "g0:2", "g1:0"]
    report_figures = (report.delivered, report.superseded, report.dead_lettered, report.stopped_by)
    assert report_figures == (3, 2, 0, "empty")
    assert sorted(rig.queue.deleted) == ["g0-0", "g0-1", "g0-2", "g0-3", "g1-0"]
    assert len(rig.source.reads) == 1 and len(rig.source.reads[0]) == 3  # one read, each key once
    changed, deleted = rig.ledger.records["g0-1"], rig.ledger.records["g0-3"]
    assert (changed.status, changed.last_error, changed.attempts) == (Status.SUPERSEDED, CHANGED, 0)
    assert (deleted.status, deleted.last_error, deleted.attempts) == (Status.SUPERSEDED, DELETED, 0)
    assert changed.last_attempt_at is None and rig.ledger.settles == []  # no attempt, no write of its own
    assert rig.ledger.writes == [5]  # written with the round's deliveries, before the deletes
    assert rig.metrics.named("Superseded") == [2]
    lines = {
        r.message_id: (r.group_id, r.destination, r.outcome)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "message not sent"
    }
    assert lines == {"g0-1": ("g0", "orders", CHANGED), "g0-3": ("g0", "orders", DELETED)}


def test_a_failed_read_leaves_backfilled_messages_queued_unsent_and_uncounted(
    make_settings: MakeSettings,
) -> None:
    """The read fails: the backfilled group waits (nothing sent, attempted, dead-lettered or written),
    other groups go on; the next run reads again and delivers."""
    rig = Rig(make_settings, A)
    rig.queue.put(backfilled("g0", 0, A), message("g0", 1), message("g1", 0))
    rig.source.unread = "BatchGetItem on items failed: throttled"

    first = rig.run()

    assert rig.api.bodies() == ["g1:0"]
    assert (first.delivered, first.superseded, first.dead_lettered, first.retried) == (1, 0, 0, 0)
    assert rig.queue.visibility_changes == [("g0-1", 0), ("g0-0", 30)]  # the head after the wait
    assert "g0-0" not in rig.ledger.records and rig.dead_letters.sent == []
    assert rig.metrics.named("SourceUnread") == [1]

    rig.source.unread = ""
    rig.queue.tick()
    second = rig.run()

    assert rig.api.bodies() == ["g1:0", "g0:0", "g0:1"]
    assert second.delivered == 2 and rig.ledger.records["g0-0"].attempts == 1


def test_live_messages_and_settled_copies_cost_no_read(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, A)
    rig.queue.put(message("g0", 0), backfilled("g1", 0, A), backfilled("g2", 0, A))
    rig.ledger.records["g1-0"] = LedgerRecord("g1-0", Status.DELIVERED, 1, "g1")
    rig.ledger.records["g2-0"] = LedgerRecord("g2-0", Status.SUPERSEDED, 0, "g2", last_error=CHANGED)

    report = rig.run()

    assert rig.source.reads == [] and rig.api.bodies() == ["g0:0"]
    assert (report.delivered, report.already_delivered, report.superseded) == (1, 1, 0)
    assert sorted(rig.queue.deleted) == ["g0-0", "g1-0", "g2-0"]


def test_a_claim_that_cannot_be_checked_is_dead_lettered_never_sent_unchecked(
    make_settings: MakeSettings,
) -> None:
    broken = replace(backfilled("g0", 0, A), attributes={SOURCE_KEY_ATTRIBUTE: '{"pk": {"S": "a"}}'})
    rig = Rig(make_settings, A)
    rig.queue.put(broken, message("g0", 1))

    report = rig.run()

    assert rig.api.bodies() == ["g0:1"] and rig.source.reads == []
    assert report.dead_lettered == 1
    assert rig.ledger.records["g0-0"].last_error.startswith("trickle-fingerprint is missing")


def routed(received: ReceivedMessage, route: str) -> ReceivedMessage:
    return replace(received, attributes={**received.attributes, ROUTE_ATTRIBUTE: route})


def test_through_a_route_of_inserts_only_a_changed_item_is_sent_as_scanned_a_deleted_one_never(
    make_settings: MakeSettings,
) -> None:
    """The suite's `orders` takes INSERT records only (route `everything`): no change of an item
    ever reaches it, so superseding it would lose the item."""
    rig = Rig(make_settings, A, B, C)
    rig.queue.put(
        routed(backfilled("g0", 0, A), "everything"),  # changed below: sent as scanned all the same
        routed(backfilled("g1", 0, C), "everything"),  # deleted below: not sent
        routed(backfilled("g2", 0, B), "no-longer-a-route"),  # changed, route unknown: superseded
    )
    rig.source.put(item("a", "1", name="Ann"))
    rig.source.put(item("b", "1", name="Bob"))
    rig.source.delete(C)

    report = rig.run()

    assert rig.api.bodies() == ["g0:0"]
    assert (report.delivered, report.superseded) == (1, 2)
    assert (
        rig.ledger.records["g1-0"].last_error == DELETED and rig.ledger.records["g2-0"].last_error == CHANGED
    )


def batched(group: str, index: int, image: dict[str, Any]) -> ReceivedMessage:
    return replace(backfilled(group, index, image), body=json.dumps({"m": f"{group}-{index}"}))


def test_a_batch_leaves_a_superseded_item_out_and_carries_the_rest_of_its_group(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(make_settings, A, B, C, TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="10")
    rig.api = ScriptedApi(lambda body, nth: ApiResponse(200))
    rig.queue.put(batched("g0", 0, A), batched("g0", 1, B), batched("g0", 2, C), batched("g1", 0, B))
    rig.source.delete(B)

    report = rig.run()

    assert [[json.loads(b)["m"] for b in bodies] for _, bodies in rig.api.batches] == [["g0-0", "g0-2"]]
    assert (report.delivered, report.superseded) == (2, 2)
    assert {rig.ledger.status(m) for m in ("g0-1", "g1-0")} == {Status.SUPERSEDED}
    assert sorted(rig.queue.deleted) == ["g0-0", "g0-1", "g0-2", "g1-0"]
