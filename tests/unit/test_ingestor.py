"""The stream handler's work (`chalicelib.ingest.Ingestor`) on fakes: what a batch reports, and what
the ledger may say, when a queue refuses a send; what becomes of the records no route takes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.ingest import IngestError, Ingestor
from chalicelib.model import REASON_ATTRIBUTE, Status
from chalicelib.records import message_id_for
from chalicelib.settings import Settings
from tests.fakes import FakeDeadLetters, FakeLedger, FakeNotes
from tests.unit.conftest import MakeSettings

MakeRecord = Callable[..., dict[str, Any]]
DESTINATIONS = ("orders", "crm")


class Relay:
    """An Ingestor on fakes: each destination's queue, dead-letter queue and ledger."""

    def __init__(self, settings: Settings) -> None:
        self.queues = {name: FakeDeadLetters() for name in DESTINATIONS}
        self.dead_letters = {name: FakeDeadLetters() for name in DESTINATIONS}
        self.ledgers = {name: FakeLedger() for name in DESTINATIONS}
        self.notes = FakeNotes()
        self.ingestor = Ingestor(self.queues, self.dead_letters, self.ledgers, settings, self.notes)

    def dead(self) -> dict[str, set[str]]:
        """The message ids each destination's ledger lists as dead."""
        return {
            name: {i for i, r in ledger.records.items() if r.status is Status.DEAD}
            for name, ledger in self.ledgers.items()
        }


def rejected_batch(make_record: MakeRecord) -> list[dict[str, Any]]:
    """A good record, an oversize one (rejected for `orders`) and an undecodable one (rejected for
    both destinations, whose routes take INSERTs), then another good one."""
    return [
        make_record(event_id="e1", sequence="101"),
        make_record(
            event_id="e2",
            sequence="102",
            new_image={"pk": {"S": "user-1"}, "sk": {"N": "2"}, "big": {"S": "x" * 3000}},
        ),
        make_record(
            event_id="e3",
            sequence="103",
            new_image={"pk": {"S": "user-1"}, "sk": {"N": "3"}, "n": {"N": "not-a-number"}},
        ),
        make_record(event_id="e4", sequence="104"),
    ]


def ids(destination: str, *event_ids: str) -> set[str]:
    return {message_id_for("items", e, destination) for e in event_ids}


def test_the_rejected_records_are_dead_lettered_and_listed(
    make_settings: MakeSettings, make_record: MakeRecord
) -> None:
    relay = Relay(make_settings(TRICKLE_MAX_MESSAGE_BYTES="2048"))

    report = relay.ingestor.handle(rejected_batch(make_record))

    assert (report.records, report.enqueued, report.dead_lettered) == (4, 2, 3)
    assert {m.message_id for m in relay.dead_letters["orders"].sent} == ids("orders", "e2", "e3")
    assert {m.message_id for m in relay.dead_letters["crm"].sent} == ids("crm", "e3")
    assert relay.dead() == {"orders": ids("orders", "e2", "e3"), "crm": ids("crm", "e3")}


@pytest.mark.parametrize("refusing", ["orders", "crm"])
def test_a_dead_letter_queue_that_refuses_fails_the_batch_and_lists_nothing_dead(
    make_settings: MakeSettings, make_record: MakeRecord, refusing: str
) -> None:
    """Lambda retries the whole batch: nothing may be listed as dead that is in no dead-letter queue."""
    relay = Relay(make_settings(TRICKLE_MAX_MESSAGE_BYTES="2048"))
    relay.dead_letters[refusing].refuse = True

    with pytest.raises(IngestError) as caught:
        relay.ingestor.handle(rejected_batch(make_record))

    refused = ids("orders", "e2", "e3") if refusing == "orders" else ids("crm", "e3")
    assert {f.message.message_id for f in caught.value.failures} == refused
    assert relay.dead() == {"orders": set(), "crm": set()}


@pytest.mark.parametrize(
    ("refusing", "failed", "dead"),
    [
        # the oversize and the undecodable record are in no dead-letter queue: retried from 102 on
        ("orders", ["102", "103"], {"orders": set(), "crm": ids("crm", "e3")}),
        # crm's copy of the undecodable record is not: retried from 103 (orders' copies were sent)
        ("crm", ["103"], {"orders": ids("orders", "e2", "e3"), "crm": set()}),
    ],
)
def test_with_partial_batch_responses_the_refused_records_are_reported_and_not_listed_dead(
    make_settings: MakeSettings,
    make_record: MakeRecord,
    refusing: str,
    failed: list[str],
    dead: dict[str, set[str]],
) -> None:
    relay = Relay(make_settings(TRICKLE_MAX_MESSAGE_BYTES="2048", TRICKLE_PARTIAL_BATCH_RESPONSE="true"))
    relay.dead_letters[refusing].refuse = True

    report = relay.ingestor.handle(rejected_batch(make_record))

    assert report.failed_sequence_numbers == failed
    assert report.as_dict()["batchItemFailures"] == [{"itemIdentifier": s} for s in failed]
    assert relay.dead() == dead
    assert report.dead_lettered == sum(len(d) for d in dead.values())


def mixed_batch(make_record: MakeRecord) -> list[dict[str, Any]]:
    """Two INSERTs (the suite's routes take every one) and three changes no route takes."""
    return [
        make_record(event_id="e1", sequence="201"),
        make_record(event_id="e2", sequence="202", event_name="MODIFY"),
        make_record(event_id="e3", sequence="203"),
        make_record(event_id="e4", sequence="204", event_name="REMOVE"),
        make_record(event_id="e5", sequence="205", event_name="MODIFY"),
    ]


def test_unrouted_records_are_counted_in_one_write_per_batch(
    make_settings: MakeSettings, make_record: MakeRecord, capsys: pytest.CaptureFixture[str]
) -> None:
    relay = Relay(make_settings())

    report = relay.ingestor.handle(mixed_batch(make_record))

    # the metrics the template's unrouted-share alarm divides (trickle_deploy/template.py)
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Trickle"
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["table", "service"]]
    assert (emf["table"], emf["service"]) == ("items", "trickle")
    assert (emf["IngestRecords"], emf["IngestUnrouted"]) == ([5.0], [3.0])

    assert (report.records, report.enqueued, report.unrouted, report.dead_lettered) == (5, 2, 3, 0)
    ((key, counts, batch),) = relay.notes.added
    assert (key, counts) == ("ingest#unrouted", {"unrouted": 3})
    assert batch == {"at": pytest.approx(time.time(), abs=60), "records": 5, "unrouted": 3}
    assert all(not q.sent for q in relay.dead_letters.values())
    assert relay.dead() == {"orders": set(), "crm": set()}


def test_a_batch_without_unrouted_records_writes_no_count(
    make_settings: MakeSettings, make_record: MakeRecord
) -> None:
    relay = Relay(make_settings())
    relay.ingestor.handle([make_record(event_id="e1", sequence="201")])
    assert relay.notes.added == []


def test_a_batch_that_fails_counts_nothing_its_retry_will_count(
    make_settings: MakeSettings, make_record: MakeRecord
) -> None:
    relay = Relay(make_settings())
    relay.queues["orders"].refuse = True
    with pytest.raises(IngestError):
        relay.ingestor.handle(mixed_batch(make_record))
    assert relay.notes.added == []


def test_a_count_that_cannot_be_saved_does_not_fail_the_batch(
    make_settings: MakeSettings, make_record: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    relay = Relay(make_settings())
    relay.notes.refuse = ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, "UpdateItem")

    report = relay.ingestor.handle(mixed_batch(make_record))

    assert (report.enqueued, report.unrouted) == (2, 3)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == ["unrouted count not saved"]


@pytest.mark.parametrize("target", DESTINATIONS)
def test_with_dead_letter_the_unrouted_records_reach_that_destinations_dead_letters(
    make_settings: MakeSettings, make_record: MakeRecord, target: str
) -> None:
    relay = Relay(make_settings(TRICKLE_UNROUTED=f"dead_letter:{target}"))

    report = relay.ingestor.handle(mixed_batch(make_record))

    assert (report.records, report.enqueued, report.unrouted, report.dead_lettered) == (5, 2, 3, 3)
    unrouted = ids(target, "e2", "e4", "e5")
    sent = relay.dead_letters[target].sent
    assert {m.message_id for m in sent} == unrouted
    assert {m.attributes[REASON_ATTRIBUTE] for m in sent} == {
        "no route takes this MODIFY record",
        "no route takes this REMOVE record",
    }
    assert relay.dead() == {name: unrouted if name == target else set() for name in DESTINATIONS}
    assert all(relay.ledgers[target].records[i].rejected_at_ingest for i in unrouted)  # not redrivable
    assert [counts for _, counts, _ in relay.notes.added] == [{"unrouted": 3}]
