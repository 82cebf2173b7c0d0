"""Every branch of the drain against the in-memory fakes of its ports: what reaches the API, what is
deleted, what goes back and for how long, what the ledger and the dead-letter queue hold after."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from chalicelib import bulk
from chalicelib.drain import Drainer
from chalicelib.drain_log import fields
from chalicelib.drain_state import DrainReport
from chalicelib.freshness import API_ID_ATTRIBUTE
from chalicelib.ledger import LedgerUnavailableError
from chalicelib.model import (
    REASON_ATTRIBUTE,
    ApiResponse,
    EnrichmentFailure,
    LedgerRecord,
    ReceivedMessage,
    Status,
    Unsent,
    UnsentKind,
)
from chalicelib.ports import Enrich, Redrive
from tests.fakes import (
    FakeArchive,
    FakeCallbacks,
    FakeClock,
    FakeDeadLetters,
    FakeFifo,
    FakeLedger,
    FakeMetrics,
    FakeNotes,
    ScriptedApi,
    message,
)
from tests.unit.conftest import MakeSettings

FAST = {"TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "10000", "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": "100"}


class Rig:
    """A drainer wired to fakes; `run()` is one scheduled drain."""

    def __init__(self, make_settings: MakeSettings, api: ScriptedApi, *messages: Any, **env: str) -> None:
        self.queue = FakeFifo(hold_delays=True)
        self.queue.put(*messages)
        self.ledger = FakeLedger()
        self.dead_letters = FakeDeadLetters()
        self.notes = FakeNotes()
        self.archive = FakeArchive()
        self.api = api
        self.enrich: Enrich | None = None
        self.callbacks: FakeCallbacks | None = None
        self.clock: FakeClock | None = None
        self.redrive: Redrive | None = None
        self.settings = make_settings(**(FAST | {"TRICKLE_DRAIN_WORKERS": "1"} | env))

    def run(self) -> DrainReport:
        drainer = Drainer(
            self.queue,
            self.dead_letters,
            self.ledger,
            self.api,
            self.settings.destination("orders"),
            self.settings,
            self.notes,
            self.archive,
            self.enrich,
            self.callbacks,
            metrics=FakeMetrics,
            clock=self.clock or time,
            redrive=self.redrive,
        )
        return drainer.run(lambda: 10**9)

    def holds(self, message_id: str) -> list[int]:
        return [seconds for mid, seconds in self.queue.visibility_changes if mid == message_id]


def answers(**by_body: int | ApiResponse) -> ScriptedApi:
    """An API answering the given bodies with the given status (or response), and 200 otherwise."""

    def script(body: str, nth: int) -> ApiResponse:
        answer = by_body.get(body.replace(":", "_"), 200)
        if isinstance(answer, ApiResponse):
            return answer
        return ApiResponse(answer, body=f"answer {answer}", body_excerpt=f"answer {answer}")

    return ScriptedApi(script)


def test_a_clean_run_delivers_archives_and_deletes_everything(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(), message("g0", 0), message("g0", 1), message("g1", 0))

    report = rig.run()

    assert (report.delivered, report.stopped_by) == (3, "empty")
    assert rig.api.bodies() == ["g0:0", "g0:1", "g1:0"]
    assert sorted(rig.queue.deleted) == ["g0-0", "g0-1", "g1-0"]
    assert {rig.ledger.status(i) for i in rig.queue.deleted} == {Status.DELIVERED}
    assert rig.archive.stored["g0-0"] == (200, "answer 200")
    assert rig.notes.saved["run#orders"]["delivered"] == 3
    assert [key for _, _, key in rig.api.requests] == ["g0-0", "g0-1", "g1-0"]


def sent_at(received: ReceivedMessage, seconds: float) -> ReceivedMessage:
    return replace(received, sent_at_ms=int(seconds * 1000))


def test_the_run_note_keeps_the_oldest_message_left_across_runs_that_never_see_it(
    make_settings: MakeSettings,
) -> None:
    """`GET /status` reads the oldest message's age from the run note: a message a retry's backoff
    hides through whole runs is still the oldest there, until a run deletes it."""
    rig = Rig(
        make_settings,
        answers(g0_0=503),
        sent_at(message("g0", 0), 100),
        sent_at(message("g1", 0), 200),
        sent_at(message("g1", 1), 300),
    )

    assert rig.run().stopped_by == "empty"
    left = rig.notes.saved["run#orders"]["left_in_queue"]
    assert left == {"messages": 1, "complete": True, "oldest": [["c-g0-0", 100_000]]}

    assert rig.run().received == 0  # held back by its backoff: this run never sees it
    assert rig.notes.saved["run#orders"]["left_in_queue"]["oldest"] == [["c-g0-0", 100_000]]

    rig.queue.tick()
    rig.api = answers()
    rig.run()
    assert rig.notes.saved["run#orders"]["left_in_queue"] == {"messages": 0, "complete": True, "oldest": []}


def test_a_run_carries_the_open_redrives_on_first_and_delivers_what_they_moved_back(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(make_settings, answers(), message("g0", 0))
    slices: list[bool] = []

    def redrive(stop: Callable[[], bool]) -> int:
        slices.append(stop())
        rig.queue.put(message("dead", 0))  # the copy a redrive sends back
        return 1

    rig.redrive = redrive

    report = rig.run()

    assert slices == [False]
    assert (report.redriven, report.delivered) == (1, 2)
    assert "dead:0" in rig.api.bodies()
    assert rig.notes.saved["run#orders"]["redriven"] == 1


def test_poison_is_dead_lettered_with_its_reason_and_its_group_goes_on(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(g0_0=400), message("g0", 0), message("g0", 1))

    report = rig.run()

    assert (report.dead_lettered, report.delivered) == (1, 1)
    (dead,) = rig.dead_letters.sent
    assert dead.message_id == "g0-0" and dead.attributes[REASON_ATTRIBUTE] == "HTTP 400: refused by the API"
    assert dead.attributes["trickle-response-excerpt"] == "answer 400"
    assert rig.ledger.status("g0-0") is Status.DEAD
    assert rig.ledger.records["g0-0"].dead_copy == "c-g0-0"
    assert rig.queue.deleted == ["g0-0", "g0-1"]


def test_strict_poison_halts_the_group_without_trying_the_rest(make_settings: MakeSettings) -> None:
    rig = Rig(
        make_settings,
        answers(g0_0=400),
        message("g0", 0),
        message("g0", 1),
        message("g1", 0),
        TRICKLE_DEST_ORDERS_ORDERING="strict",
    )

    report = rig.run()

    assert (report.halted, report.dead_lettered, report.delivered) == (1, 0, 1)
    assert rig.api.bodies() == ["g0:0", "g1:0"]
    assert rig.ledger.status("g0-0") is Status.HALTED
    assert rig.holds("g0-0") == [rig.settings.destination("orders").backoff_cap_s] and rig.holds("g0-1") == [
        0
    ]
    assert rig.dead_letters.sent == [] and rig.queue.holds("g0-0") and rig.queue.holds("g0-1")
    assert report.blocked_groups == ["g0"]


def test_a_halted_group_is_not_attempted_until_an_operator_acts(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(), message("g0", 0))
    rig.ledger.records["g0-0"] = LedgerRecord("g0-0", Status.HALTED, 1, "g0")

    report = rig.run()

    assert rig.api.requests == [] and report.blocked_groups == ["g0"]
    assert rig.holds("g0-0") == [rig.settings.destination("orders").backoff_cap_s]


def test_an_operator_skip_dead_letters_without_a_request(make_settings: MakeSettings) -> None:
    rig = Rig(
        make_settings, answers(), message("g0", 0), message("g0", 1), TRICKLE_DEST_ORDERS_ORDERING="strict"
    )
    rig.ledger.records["g0-0"] = LedgerRecord("g0-0", Status.SKIP, 2, "g0")

    report = rig.run()

    assert rig.api.bodies() == ["g0:1"]
    assert [m.message_id for m in rig.dead_letters.sent] == ["g0-0"]
    assert rig.dead_letters.sent[0].attributes[REASON_ATTRIBUTE] == "skipped by an operator"
    assert (report.dead_lettered, report.delivered) == (1, 1)


def test_a_refused_dead_letter_keeps_the_message_and_holds_its_group(make_settings: MakeSettings) -> None:
    """Issue 18 (1): if the dead-letter queue does not take a poison message, deleting it would lose it."""
    rig = Rig(make_settings, answers(g0_0=400), message("g0", 0), message("g0", 1))
    rig.dead_letters.refuse = True

    report = rig.run()

    assert rig.queue.deleted == []
    assert rig.queue.holds("g0-0") and rig.queue.holds("g0-1")
    assert rig.ledger.status("g0-0") is Status.FAILED
    assert rig.api.bodies() == ["g0:0"]  # the rest of the group waits behind it
    assert (
        rig.holds("g0-0") == [rig.settings.destination("orders").backoff_base_s] and report.dead_lettered == 0
    )

    rig.dead_letters.refuse = False
    rig.queue.tick()
    rig.run()

    assert rig.ledger.status("g0-0") is Status.DEAD and rig.queue.deleted == ["g0-0", "g0-1"]


def test_retry_after_holds_the_throttled_group_and_stops_the_run(make_settings: MakeSettings) -> None:
    """Issue 18 (3): a 429 with Retry-After: 3 keeps the group's head away for 3 s, not 1 s."""
    throttled = ApiResponse(429, retry_after="3")
    rig = Rig(make_settings, answers(g0_0=throttled), message("g0", 0), message("g0", 1), message("g1", 0))

    report = rig.run()

    assert (report.stopped_by, report.saturated) == ("saturated", 1)
    assert rig.holds("g0-0") == [3] and rig.holds("g0-1") == [0]
    assert rig.holds("g1-0") == [3]  # the run stopped: other groups wait as long
    assert rig.ledger.records["g0-0"].attempts == 0  # the destination's state, not the message's fault


def test_backoff_grows_with_each_failure_until_the_cap(make_settings: MakeSettings) -> None:
    """Issue 18 (4): a head failing run after run is held longer each time, up to the cap."""
    rig = Rig(
        make_settings,
        answers(g0_0=503),
        message("g0", 0),
        TRICKLE_DEST_ORDERS_BACKOFF_BASE_S="2",
        TRICKLE_DEST_ORDERS_BACKOFF_CAP_S="16",
        TRICKLE_DEST_ORDERS_MAX_ATTEMPTS="100",
    )

    for _ in range(6):
        rig.run()
        rig.queue.tick()

    holds = rig.holds("g0-0")
    ceilings = [2, 4, 8, 16, 16, 16]
    assert all(c / 2 <= h <= c for h, c in zip(holds, ceilings, strict=True)), holds
    assert rig.ledger.records["g0-0"].attempts == 6


def test_attempts_are_counted_by_the_ledger_not_by_receives(make_settings: MakeSettings) -> None:
    """Issue 18 (5): a message received many times behind a failing head has not been attempted."""
    received_often = replace(message("g0", 1), receive_count=12)
    rig = Rig(make_settings, answers(g0_1=503), received_often, TRICKLE_DEST_ORDERS_MAX_ATTEMPTS="3")

    report = rig.run()

    assert (report.retried, report.dead_lettered) == (1, 0)
    assert rig.dead_letters.sent == [] and rig.ledger.records["g0-1"].attempts == 1


def test_out_of_attempts_is_dead_lettered_with_the_count(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(g0_0=503), message("g0", 0), TRICKLE_DEST_ORDERS_MAX_ATTEMPTS="2")

    first = rig.run()
    rig.queue.tick()
    second = rig.run()

    assert (first.retried, second.dead_lettered) == (1, 1)
    assert rig.dead_letters.sent[0].attributes[REASON_ATTRIBUTE] == "gave up after 2 attempts; last: HTTP 503"
    assert rig.ledger.status("g0-0") is Status.DEAD


def test_an_enrichment_that_fails_is_answered_like_the_api_would_without_calling_it(
    make_settings: MakeSettings,
) -> None:
    """The enrichment answers why it cannot enrich (`EnrichmentFailure`, a value of the model, not an
    exception of the enrichers): retryable is held like a 5xx, the rest is poison like a 4xx."""
    failures = {
        "g0:0": EnrichmentFailure("customer lookup failed: Throttled", retryable=True),
        "g1:0": EnrichmentFailure("customer enrichment needs the envelope's keys.pk", retryable=False),
    }
    rig = Rig(make_settings, answers(), message("g0", 0), message("g1", 0), message("g2", 0))
    rig.enrich = lambda route, body: failures.get(body, f"{body} enriched")

    report = rig.run()

    assert (report.retried, report.dead_lettered, report.delivered) == (1, 1, 1)
    assert rig.api.bodies() == ["g2:0 enriched"]
    assert rig.ledger.records["g0-0"].last_error == "enrichment failed: customer lookup failed: Throttled"
    assert rig.holds("g0-0")[0] >= 1
    (dead,) = rig.dead_letters.sent
    assert dead.attributes[REASON_ATTRIBUTE] == (
        "enrichment failed: customer enrichment needs the envelope's keys.pk"
    )


def test_consecutive_failures_trip_the_breaker(make_settings: MakeSettings) -> None:
    rig = Rig(
        make_settings,
        answers(g0_0=503, g1_0=503, g2_0=503),
        message("g0", 0),
        message("g1", 0),
        message("g2", 0),
        TRICKLE_BREAKER_FAILURES="2",
    )

    report = rig.run()

    assert report.stopped_by == "breaker"
    assert rig.api.bodies() == ["g0:0", "g1:0"]


def test_a_success_resets_the_breakers_streak(make_settings: MakeSettings) -> None:
    """Issue 18 (6): failures alternating with successes never trip a breaker of two."""
    failing = {f"g{g}_0": 503 for g in range(0, 8, 2)}
    rig = Rig(
        make_settings,
        answers(**failing),
        *(message(f"g{g}", 0) for g in range(8)),
        TRICKLE_BREAKER_FAILURES="2",
    )

    report = rig.run()

    assert report.stopped_by == "empty"
    assert (report.retried, report.delivered) == (4, 4)


def test_a_refused_key_is_read_again_once_per_run_across_workers(make_settings: MakeSettings) -> None:
    """Issue 18 (7): two workers meeting 401s at once make one SSM re-read between them; the run stops."""
    both_refused = threading.Barrier(2)

    def script(body: str, nth: int) -> ApiResponse:
        if nth == 0:  # both first requests are answered together, so both workers see a 401
            both_refused.wait(timeout=10)
        return ApiResponse(401)

    rig = Rig(
        make_settings, ScriptedApi(script), message("g0", 0), message("g1", 0), TRICKLE_DRAIN_WORKERS="2"
    )

    report = rig.run()

    bodies = rig.api.bodies()
    assert len(bodies) == 3 and set(bodies) == {"g0:0", "g1:0"}  # one of them tried again with the new key
    assert rig.api.refreshes == 1
    assert report.stopped_by == "auth"
    assert rig.ledger.records["g0-0"].attempts == 0 and rig.ledger.records["g1-0"].attempts == 0
    assert rig.queue.deleted == []


def test_a_rotated_key_is_picked_up_and_the_message_delivered(make_settings: MakeSettings) -> None:
    def script(body: str, nth: int) -> ApiResponse:
        return ApiResponse(401 if nth == 0 else 200)

    rig = Rig(make_settings, ScriptedApi(script), message("g0", 0))

    report = rig.run()

    assert (report.delivered, rig.api.refreshes, report.stopped_by) == (1, 1, "empty")


def test_an_already_delivered_copy_is_deleted_without_a_request(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(), message("g0", 0))
    rig.ledger.records["g0-0"] = LedgerRecord("g0-0", Status.DELIVERED, 1, "g0")

    report = rig.run()

    assert rig.api.requests == [] and rig.queue.deleted == ["g0-0"]
    assert report.already_delivered == 1


def test_a_redriven_copy_starts_over_and_a_stale_dead_copy_is_dropped(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(), message("g0", 0, copy="new"), message("g1", 0, copy="old"))
    rig.ledger.records["g0-0"] = LedgerRecord("g0-0", Status.DEAD, 5, "g0", dead_copy="old")
    rig.ledger.records["g1-0"] = LedgerRecord("g1-0", Status.DEAD, 5, "g1", dead_copy="old")

    report = rig.run()

    assert rig.api.bodies() == ["g0:0"]
    assert rig.ledger.records["g0-0"].attempts == 1 and rig.ledger.status("g0-0") is Status.DELIVERED
    assert rig.ledger.status("g1-0") is Status.DEAD and sorted(rig.queue.deleted) == ["g0-0", "g1-0"]
    assert report.delivered == 1


@pytest.mark.parametrize("status", [None, 500, 502, 503])
def test_a_retryable_failure_holds_its_group_behind_the_head(
    make_settings: MakeSettings, status: int | None
) -> None:
    answer = ApiResponse(status, error="timeout" if status is None else None)
    rig = Rig(make_settings, answers(g0_0=answer), message("g0", 0), message("g0", 1), message("g1", 0))

    report = rig.run()

    assert rig.api.bodies() == ["g0:0", "g1:0"]
    assert rig.holds("g0-1") == [0] and rig.holds("g0-0")[0] >= 1
    assert report.blocked_groups == ["g0"] and report.retried == 1
    assert rig.ledger.records["g0-0"].attempts == 1


@pytest.mark.parametrize(
    ("kind", "stopped_by"),
    [
        (UnsentKind.CREDENTIALS_UNAVAILABLE, "credentials_unavailable"),
        (UnsentKind.CREDENTIALS_REFUSED, "credentials_refused"),
    ],
)
def test_without_credentials_every_message_stays_queued_unattempted_and_the_run_says_why(
    make_settings: MakeSettings, kind: UnsentKind, stopped_by: str
) -> None:
    """Issue 24: a token endpoint that is down (or refuses the client) sends nothing, counts no
    attempt, dead-letters nothing, and stops the run with the reason in its report."""
    reason = "token endpoint https://auth.example.com/token answered HTTP 503"
    unsent = ApiResponse(None, error=reason, unsent=Unsent(kind, reason))
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: unsent),
        message("g0", 0),
        message("g0", 1),
        message("g1", 0),
    )
    rig.ledger.records["g1-0"] = LedgerRecord("g1-0", Status.FAILED, 2, "g1")

    report = rig.run()

    assert (report.stopped_by, report.stop_reason) == (stopped_by, reason)
    assert (report.delivered, report.retried, report.dead_lettered, report.halted) == (0, 0, 0, 0)
    assert rig.queue.deleted == [] and rig.dead_letters.sent == []
    assert "g0-0" not in rig.ledger.records and rig.ledger.records["g1-0"].attempts == 2
    assert rig.api.refreshes == 0


def test_a_message_whose_path_cannot_be_filled_is_dead_lettered_with_the_reason_and_no_attempt(
    make_settings: MakeSettings,
) -> None:
    reason = "path placeholder {keys.pk} is missing"
    refused = ApiResponse(None, error=reason, unsent=Unsent(UnsentKind.REFUSED, reason))
    rig = Rig(make_settings, answers(g0_0=refused), message("g0", 0), message("g0", 1))

    report = rig.run()

    assert (report.dead_lettered, report.delivered, report.stopped_by) == (1, 1, "empty")
    (dead,) = rig.dead_letters.sent
    assert dead.attributes[REASON_ATTRIBUTE] == reason
    assert rig.ledger.records["g0-0"].status is Status.DEAD and rig.ledger.records["g0-0"].attempts == 0


# --- bulk delivery (issue #25) -----------------------------------------------------------------------

BULK = {"TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "10"}
BULK50 = {"TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS": "50"}


def item(group: str, index: int, token: str = "") -> ReceivedMessage:
    """The `index`th message of `group` with a JSON object for a body, as a batch takes it."""
    return replace(message(group, index, token=token), body=json.dumps({"m": f"{group}-{index}"}))


def items(groups: int, per_group: int) -> list[ReceivedMessage]:
    """Interleaved across groups, as a queue hands them out."""
    return [item(f"g{g}", i) for i in range(per_group) for g in range(groups)]


def grouped(groups: int, per_group: int) -> list[ReceivedMessage]:
    """Each group's messages one after another: a receive gives ten of one or two groups."""
    return [item(f"g{g}", i) for g in range(groups) for i in range(per_group)]


def per_item(**by_id: int | ApiResponse) -> ScriptedApi:
    """An API answering each item (named by its message id, `g0_1` for g0-1) with the given status
    or response, and 200 otherwise."""

    def script(body: str, nth: int) -> ApiResponse:
        answer = by_id.get(json.loads(body)["m"].replace("-", "_"), 200)
        return (
            answer
            if isinstance(answer, ApiResponse)
            else ApiResponse(answer, body_excerpt=f"answer {answer}")
        )

    return ScriptedApi(script)


def request_ids(api: ScriptedApi) -> list[list[str]]:
    """The message ids of each batch request, in order."""
    return [[json.loads(body)["m"] for body in bodies] for _, bodies in api.batches]


def test_one_message_per_request_is_todays_drain(make_settings: MakeSettings) -> None:
    """batch_max_items = 1 (the default): no batch request, no transaction, deliveries written by
    the round as ever."""
    rig = Rig(make_settings, per_item(), *items(2, 2))
    report = rig.run()
    assert report.delivered == 4 and rig.api.batches == [] and len(rig.api.requests) == 4
    assert rig.ledger.transactions == [] and rig.ledger.writes == [4]


def test_a_batch_carries_every_group_of_a_job_in_order_and_settles_it_in_one_write(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(make_settings, per_item(), *items(3, 3), **BULK)

    report = rig.run()

    assert (report.delivered, report.stopped_by) == (9, "empty")
    assert request_ids(rig.api) == [["g0-0", "g0-1", "g0-2", "g1-0", "g1-1", "g1-2", "g2-0", "g2-1", "g2-2"]]
    ((key, _),) = rig.api.batches
    assert key == bulk.batch_key(request_ids(rig.api)[0])
    assert [len(t) for t in rig.ledger.transactions] == [9] and rig.ledger.writes == []  # not written twice
    assert {rig.ledger.status(m) for m in rig.queue.deleted} == {Status.DELIVERED} and len(
        rig.queue.deleted
    ) == 9
    assert all(rig.ledger.records[m].attempts == 1 for m in rig.queue.deleted)
    assert rig.archive.stored["g2-2"] == (200, "")


def test_the_requests_of_a_round_that_only_delivered_are_written_together_before_their_deletes(
    make_settings: MakeSettings,
) -> None:
    """Three requests (two groups of two, two, one) in one round: one transaction of ten when the
    round finishes, not one per request (the AWS requests of the single-item relay, which writes a
    round's deliveries together); each message deleted only once the ledger says delivered."""
    rig = Rig(make_settings, per_item(), *items(5, 2), TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="4")
    deleted_when: list[Status | None] = []
    delete = rig.queue.delete

    def delete_after_the_ledger(messages: Any) -> list[ReceivedMessage]:
        deleted_when.extend(rig.ledger.status(m.message_id) for m in messages)
        return delete(messages)

    rig.queue.delete = delete_after_the_ledger  # type: ignore[method-assign]

    report = rig.run()

    assert report.delivered == 10 and [len(ids) for ids in request_ids(rig.api)] == [4, 4, 2]
    assert [len(t) for t in rig.ledger.transactions] == [10] and rig.ledger.writes == []
    assert deleted_when == [Status.DELIVERED] * 10
    assert all(rig.ledger.records[m].attempts == 1 for m in rig.queue.deleted)


def test_a_request_with_a_failure_is_written_at_once_and_the_clean_ones_with_the_round(
    make_settings: MakeSettings,
) -> None:
    """The request of g0 and g1 holds a 503: its write goes at once, before anything else is done
    for its items (a failure's release, or a dead record, must follow it); the clean requests of
    g2 to g4 share one when the round finishes."""
    rig = Rig(make_settings, per_item(g0_1=503), *items(5, 2), TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="4")

    report = rig.run()

    assert (report.delivered, report.retried) == (9, 1)
    first, together = rig.ledger.transactions
    assert first == [
        ("g0-0", Status.DELIVERED, True),
        ("g0-1", Status.FAILED, True),
        ("g1-0", Status.DELIVERED, True),
        ("g1-1", Status.DELIVERED, True),
    ]
    assert sorted(m for m, _, _ in together) == [f"g{g}-{i}" for g in (2, 3, 4) for i in range(2)]
    assert rig.ledger.records["g0-1"].attempts == 1


@pytest.mark.parametrize(
    "first_answer",
    [pytest.param(200, id="the-rounds-write"), pytest.param(503, id="a-failed-requests-write")],
)
def test_a_ledger_write_dynamodb_did_not_take_ends_the_run_and_loses_or_counts_nothing_twice(
    make_settings: MakeSettings, first_answer: int
) -> None:
    """The request's transaction refused (a 500 after botocore's retries, as moto answers to
    concurrent transactions): the run ends before any delete, nothing written. The messages come
    back when their visibility runs out; the next run sends the same batch (its key the same: an
    API that honours it applies nothing twice) and counts one attempt each."""
    rig = Rig(
        make_settings,
        ScriptedApi(
            lambda body, nth: ApiResponse(
                first_answer if body == json.dumps({"m": "g0-1"}) and nth == 0 else 200
            )
        ),
        *items(2, 3),
        **BULK,
    )
    rig.ledger.unavailable = 1

    with pytest.raises(LedgerUnavailableError, match="did not take a transaction"):
        rig.run()

    assert rig.queue.deleted == [] and rig.ledger.records == {} and rig.ledger.transactions == []
    assert rig.queue.visibility_changes == []  # left in flight: back when their visibility runs out
    rig.queue.lapse()

    report = rig.run()

    assert report.delivered == 6 and sorted(rig.queue.deleted) == sorted(
        m for m, _, _ in rig.ledger.transactions[0]
    )
    assert len(rig.api.batches) == 2 and rig.api.batches[0] == rig.api.batches[1]
    assert {m: r.attempts for m, r in rig.ledger.records.items()} == dict.fromkeys(rig.queue.deleted, 1)


def calls_by_thread(rig: Rig) -> list[tuple[str, str, int]]:
    """Records (call, thread name, size) for each transaction and each delete, in order."""
    calls: list[tuple[str, str, int]] = []
    settle_many, delete = rig.ledger.settle_many, rig.queue.delete

    def settling(settlements: Any) -> None:
        settle_many(settlements)
        calls.append(("transaction", threading.current_thread().name, len(settlements)))

    def deleting(messages: Any) -> list[ReceivedMessage]:
        assert {rig.ledger.status(m.message_id) for m in messages} <= {Status.DELIVERED}
        calls.append(("delete", threading.current_thread().name, len(messages)))
        return delete(messages)

    rig.ledger.settle_many = settling  # type: ignore[method-assign]
    rig.queue.delete = deleting  # type: ignore[method-assign]
    return calls


def test_a_job_that_settles_a_transactions_worth_writes_it_and_deletes_on_its_worker(
    make_settings: MakeSettings,
) -> None:
    """Batch 50, two workers: the job of 25 (five groups of five) writes its transaction and deletes
    its messages on its own worker, the ledger first; the run's thread only counts them."""
    rig = Rig(make_settings, per_item(), *grouped(5, 5), **BULK50, TRICKLE_DRAIN_WORKERS="2")
    calls = calls_by_thread(rig)

    report = rig.run()

    assert (report.delivered, report.delete_failures, report.stopped_by) == (25, 0, "empty")
    worker = calls[0][1]
    assert worker.startswith("deliver")
    assert calls == [("transaction", worker, 25), ("delete", worker, 25)]
    assert sorted(rig.queue.deleted) == sorted(f"g{g}-{i}" for g in range(5) for i in range(5))
    assert rig.ledger.writes == []


def test_with_one_worker_the_run_thread_finishes_every_job(make_settings: MakeSettings) -> None:
    """The run's thread finishing a job overlaps the only worker's next request."""
    rig = Rig(make_settings, per_item(), *grouped(5, 5), **BULK50)
    calls = calls_by_thread(rig)

    report = rig.run()

    assert report.delivered == 25
    assert calls == [("transaction", "MainThread", 25), ("delete", "MainThread", 25)]


def test_jobs_that_settle_fewer_share_the_run_threads_transaction(make_settings: MakeSettings) -> None:
    """Batch 10: two jobs of ten, written by the run's thread with the round's others (several
    requests to a transaction when they finish together: as few as the single-item relay's writes)."""
    rig = Rig(make_settings, per_item(), *grouped(4, 5), **BULK, TRICKLE_DRAIN_WORKERS="2")
    calls = calls_by_thread(rig)

    report = rig.run()

    assert report.delivered == 20 and len(rig.api.batches) == 2
    assert {thread for _, thread, _ in calls} == {"MainThread"}
    assert sum(n for call, _, n in calls if call == "transaction") == 20


def test_a_workers_transaction_dynamodb_did_not_take_ends_the_run_and_loses_nothing(
    make_settings: MakeSettings,
) -> None:
    """The job's own transaction refused on its worker: nothing of it written or deleted, the run
    raises; the messages come back and the next run sends the same batch and settles it."""
    rig = Rig(make_settings, per_item(), *grouped(5, 5), **BULK50, TRICKLE_DRAIN_WORKERS="2")
    rig.ledger.unavailable = 1

    with pytest.raises(LedgerUnavailableError, match="did not take a transaction"):
        rig.run()

    assert rig.queue.deleted == [] and rig.ledger.records == {} and rig.ledger.transactions == []
    rig.queue.lapse()

    report = rig.run()

    assert report.delivered == 25 and len(rig.queue.deleted) == 25
    assert len(rig.api.batches) == 2 and rig.api.batches[0] == rig.api.batches[1]
    assert {m: r.attempts for m, r in rig.ledger.records.items()} == dict.fromkeys(rig.queue.deleted, 1)


def test_a_run_that_dies_while_a_job_finishes_on_its_worker_still_finishes_it(
    make_settings: MakeSettings,
) -> None:
    """The run's next receive fails while its job of 25 is delivered: the run raises once the job
    has written its transaction and deleted its messages on its worker (`_salvage`), nothing lost."""
    rig = Rig(make_settings, per_item(), *grouped(5, 5), **BULK50, TRICKLE_DRAIN_WORKERS="2")
    receive = rig.queue.receive

    def failing(max_messages: int, visibility_timeout_s: int) -> list[ReceivedMessage]:
        if len(rig.queue.receives) >= 3:  # the first round took three: 10, 10 and the last 5
            raise EndpointConnectionError(endpoint_url="https://sqs.invalid")
        return receive(max_messages, visibility_timeout_s)

    rig.queue.receive = failing  # type: ignore[method-assign]

    with pytest.raises(EndpointConnectionError):
        rig.run()

    assert sorted(rig.queue.deleted) == sorted(f"g{g}-{i}" for g in range(5) for i in range(5))
    assert {rig.ledger.status(m) for m in rig.queue.deleted} == {Status.DELIVERED}
    assert [len(t) for t in rig.ledger.transactions] == [25]


def test_one_rate_limit_token_per_request(make_settings: MakeSettings) -> None:
    """At one request a second (burst 1), three requests wait two seconds, whatever they carry."""
    rig = Rig(
        make_settings,
        per_item(),
        *items(5, 5),
        **BULK,
        TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S="1",
        TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST="1",
    )
    rig.clock = FakeClock()
    started = rig.clock.now

    report = rig.run()

    assert report.delivered == 25
    assert [len(ids) for ids in request_ids(rig.api)] == [10, 10, 5]
    assert rig.clock.now - started == pytest.approx(2.0)


def test_a_group_larger_than_a_request_goes_in_order_over_several(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, per_item(), *items(1, 12), TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="5")
    rig.run()
    assert request_ids(rig.api) == [[f"g0-{i}" for i in range(n, min(n + 5, 12))] for n in (0, 5, 10)]


def test_skip_poison_in_a_batch_is_dead_lettered_and_its_group_goes_on(make_settings: MakeSettings) -> None:
    """g0-1 refused (400) among g0's four: the request's write settles g0-0 and g0-1; g0-2 and g0-3
    stand on their own answers once g0-1 is dead-lettered, written with the round."""
    rig = Rig(make_settings, per_item(g0_1=400), *items(1, 4), **BULK)

    report = rig.run()

    assert (report.delivered, report.dead_lettered) == (3, 1)
    assert len(rig.api.batches) == 1
    assert rig.ledger.transactions == [[("g0-0", Status.DELIVERED, True), ("g0-1", Status.FAILED, True)]]
    assert rig.ledger.writes == [2]
    assert [m.message_id for m in rig.dead_letters.sent] == ["g0-1"]
    assert rig.ledger.status("g0-1") is Status.DEAD and rig.ledger.records["g0-1"].attempts == 1
    assert sorted(rig.queue.deleted) == ["g0-0", "g0-1", "g0-2", "g0-3"]


def test_each_batched_item_s_timeline_has_its_own_answer_as_a_single_request_s_would(
    make_settings: MakeSettings,
) -> None:
    """Issue #27: the request's write (g0-0 delivered, g0-1 refused) and the round's (g0-2, g0-3,
    on their own answers, at their turns) each keep the item's attempt: its status and reason."""
    rig = Rig(make_settings, per_item(g0_1=400), *items(1, 4), **BULK)

    rig.run()

    timelines = {m: rig.ledger.records[m].timeline for m in ("g0-0", "g0-1", "g0-2", "g0-3")}
    assert {m: [(a.status_code, a.reason) for a in t] for m, t in timelines.items()} == {
        "g0-0": [(200, "HTTP 200")],
        "g0-1": [(400, "HTTP 400: refused by the API")],
        "g0-2": [(200, "HTTP 200")],
        "g0-3": [(200, "HTTP 200")],
    }
    assert timelines["g0-0"][0].at == timelines["g0-1"][0].at  # the request's write, the request's time


def test_strict_poison_in_a_batch_halts_and_its_later_items_go_back_unsettled(
    make_settings: MakeSettings,
) -> None:
    """The API answered 200 for g0-2 and g0-3, but they come after the halted g0-1: released behind
    it, no attempt counted, not delivered (sent again later with the same item id). g1 delivered."""
    rig = Rig(make_settings, per_item(g0_1=400), *items(2, 4), **BULK, TRICKLE_DEST_ORDERS_ORDERING="strict")

    report = rig.run()

    assert (report.delivered, report.halted) == (5, 1)
    assert len(rig.api.batches) == 1
    assert rig.ledger.status("g0-1") is Status.HALTED
    assert "g0-2" not in rig.ledger.records and "g0-3" not in rig.ledger.records
    assert rig.holds("g0-1") == [rig.settings.destination("orders").backoff_cap_s]
    assert rig.holds("g0-2") == [0] and rig.holds("g0-3") == [0]
    assert sorted(rig.queue.deleted) == ["g0-0", "g1-0", "g1-1", "g1-2", "g1-3"]


def test_a_503_for_one_groups_second_item_holds_that_group_and_the_others_are_delivered(
    make_settings: MakeSettings,
) -> None:
    once = ApiResponse(503)
    rig = Rig(
        make_settings,
        ScriptedApi(
            lambda body, nth: once if body == json.dumps({"m": "g1-1"}) and nth == 0 else ApiResponse(200)
        ),
        *items(3, 3),
        **BULK,
    )

    report = rig.run()

    assert (report.delivered, report.retried, report.blocked_groups) == (7, 1, ["g1"])
    assert len(rig.api.batches) == 1
    (written,) = rig.ledger.transactions
    assert ("g1-1", Status.FAILED, True) in written and len(written) == 8  # g1-2 behind it: not written
    assert rig.ledger.records["g1-1"].attempts == 1 and "g1-2" not in rig.ledger.records
    assert rig.holds("g1-1")[0] >= 1 and rig.holds("g1-2") == [0]
    assert sorted(rig.queue.deleted) == ["g0-0", "g0-1", "g0-2", "g1-0", "g2-0", "g2-1", "g2-2"]

    rig.queue.tick()
    again = rig.run()  # the next run sends g1-1 and g1-2 again: a new batch, another key

    assert again.delivered == 2 and request_ids(rig.api)[1] == ["g1-1", "g1-2"]
    assert rig.api.batches[1][0] != rig.api.batches[0][0]
    assert rig.ledger.records["g1-1"].attempts == 2 and rig.ledger.records["g1-2"].attempts == 1


def test_a_request_that_failed_as_a_whole_counts_one_attempt_per_group_and_never_a_delivery(
    make_settings: MakeSettings,
) -> None:
    unmapped = ApiResponse(None, error="the answer could not be mapped to the items: the answer is not JSON")
    rig = Rig(make_settings, ScriptedApi(lambda body, nth: unmapped), *items(2, 3), **BULK)

    report = rig.run()

    assert (report.delivered, report.retried) == (0, 2)
    (written,) = rig.ledger.transactions
    assert written == [("g0-0", Status.FAILED, True), ("g1-0", Status.FAILED, True)]
    assert rig.queue.deleted == []
    assert rig.ledger.records["g0-0"].last_error == unmapped.error


def test_items_of_other_groups_settle_on_their_own_answers_after_a_429_stops_the_run(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(make_settings, per_item(g0_0=ApiResponse(429, retry_after="5")), *items(3, 2), **BULK)

    report = rig.run()

    assert (report.stopped_by, report.saturated, report.delivered) == ("saturated", 1, 4)
    assert sorted(rig.queue.deleted) == ["g1-0", "g1-1", "g2-0", "g2-1"]
    assert rig.holds("g0-0") == [5] and rig.holds("g0-1") == [0]


def test_a_body_that_is_no_object_is_dead_lettered_without_a_request_and_cuts_its_group(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(
        make_settings,
        per_item(),
        item("g0", 0),
        replace(item("g0", 1), body="[1, 2]"),
        item("g0", 2),
        item("g1", 0),
        **BULK,
    )

    report = rig.run()

    assert (report.delivered, report.dead_lettered) == (3, 1)
    assert request_ids(rig.api) == [["g0-0", "g1-0"], ["g0-2"]]  # g0-2 waited for g0-1 to be settled
    (dead,) = rig.dead_letters.sent
    assert dead.attributes[REASON_ATTRIBUTE] == bulk.NOT_AN_OBJECT
    assert rig.ledger.records["g0-1"].attempts == 0


def test_a_message_too_large_for_any_request_is_dead_lettered_with_the_reason(
    make_settings: MakeSettings,
) -> None:
    large = replace(item("g0", 1), body=json.dumps({"m": "g0-1", "pad": "x" * 1100}))
    rig = Rig(
        make_settings,
        per_item(),
        item("g0", 0),
        large,
        item("g1", 0),
        **BULK,
        TRICKLE_MAX_MESSAGE_BYTES="1024",
        TRICKLE_DEST_ORDERS_BATCH_MAX_BYTES="1024",
    )

    report = rig.run()

    assert (report.delivered, report.dead_lettered) == (2, 1)
    assert (
        rig.dead_letters.sent[0]
        .attributes[REASON_ATTRIBUTE]
        .startswith("the message is 1133 bytes as a batched")
    )


def test_a_batch_is_cut_by_its_byte_limit_without_splitting_a_group(make_settings: MakeSettings) -> None:
    """Items of about 400 bytes, 1024 allowed: g0's two fill a request; g1-0 would not fit after
    them, so neither goes g1-1 (small enough), which must not overtake it; g2's small one does."""
    pad = "x" * 380
    big = {
        m: replace(item(m[:2], int(m[3])), body=json.dumps({"m": m, "pad": pad}))
        for m in ("g0-0", "g0-1", "g1-0")
    }
    rig = Rig(
        make_settings,
        per_item(),
        big["g0-0"],
        big["g1-0"],
        item("g2", 0),
        big["g0-1"],
        item("g1", 1),
        **BULK,
        TRICKLE_MAX_MESSAGE_BYTES="1024",
        TRICKLE_DEST_ORDERS_BATCH_MAX_BYTES="1024",
    )

    report = rig.run()

    assert report.delivered == 5
    assert request_ids(rig.api) == [["g0-0", "g0-1", "g2-0"], ["g1-0", "g1-1"]]


def test_a_second_copy_in_the_round_is_one_item_and_then_deleted(make_settings: MakeSettings) -> None:
    copy = replace(item("g0", 0), copy_id="c-again", receipt_handle="rh-again")
    rig = Rig(make_settings, per_item(), item("g0", 0), copy, item("g0", 1), **BULK)

    report = rig.run()

    assert (report.delivered, report.already_delivered) == (2, 1)
    assert request_ids(rig.api) == [["g0-0"], ["g0-1"]]


def test_an_enrichment_that_fails_cuts_its_group_from_the_batch(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, per_item(), *items(2, 2), **BULK)
    failing = json.dumps({"m": "g1-0"})
    rig.enrich = lambda route, body: (
        EnrichmentFailure("lookup throttled", retryable=True) if body == failing else body
    )

    report = rig.run()

    assert (report.delivered, report.retried) == (2, 1)
    assert request_ids(rig.api) == [["g0-0", "g0-1"]]
    assert rig.ledger.records["g1-0"].last_error == "enrichment failed: lookup throttled"
    assert rig.ledger.records["g1-0"].attempts == 1 and "g1-1" not in rig.ledger.records


def test_a_batch_refused_as_a_whole_is_sent_again_with_renewed_credentials(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: ApiResponse(401 if nth == 0 else 200)),
        *items(2, 2),
        **BULK,
    )

    report = rig.run()

    assert (report.delivered, rig.api.refreshes) == (4, 1)
    assert len(rig.api.batches) == 2 and rig.api.batches[0] == rig.api.batches[1]  # the same key


def test_a_delivered_items_task_is_answered_and_its_record_written_again(make_settings: MakeSettings) -> None:
    callbacks = FakeCallbacks()
    rig = Rig(make_settings, per_item(), item("g0", 0, token="t0"), item("g0", 1), **BULK)
    rig.callbacks = callbacks

    report = rig.run()

    assert report.delivered == 2 and callbacks.kinds("t0") == ["success"]
    assert rig.ledger.writes == [1] and rig.ledger.records["g0-0"].callback == "success"


def test_a_failed_batch_request_counts_once_toward_the_breaker_however_many_groups_it_held(
    make_settings: MakeSettings,
) -> None:
    """Six groups' items in one request answered 503: one failed request, not six. With the breaker
    at 5 the run goes on to its next request (here answered 503 too: two failures, no trip)."""
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: ApiResponse(503, body_excerpt="down")),
        *items(12, 1),
        TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="6",
        TRICKLE_BREAKER_FAILURES="5",
    )

    report = rig.run()

    assert [len(ids) for ids in request_ids(rig.api)] == [6, 6]
    assert (report.retried, report.stopped_by) == (12, "empty")


def test_the_breaker_still_trips_on_that_many_failed_batch_requests(make_settings: MakeSettings) -> None:
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: ApiResponse(503, body_excerpt="down")),
        *items(4, 1),
        TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="2",
        TRICKLE_BREAKER_FAILURES="2",
    )

    report = rig.run()

    assert report.stopped_by == "breaker"
    assert len(rig.api.batches) == 2


# --- the id the API sees (issue #26: a replay with the same keys) --------------------------------


def known_as(received: ReceivedMessage, api_id: str | None) -> ReceivedMessage:
    """`received` carrying `api_id` as the id the API knows it by (None: no such attribute)."""
    return received if api_id is None else replace(received, attributes={API_ID_ATTRIBUTE: api_id})


@pytest.mark.parametrize(
    ("api_id", "key"),
    [
        (None, "g0-0"),  # a live message: its own id
        ("original-0", "original-0"),  # a replay with the same keys: the original's
        ("", "g0-0"),  # an empty attribute names nothing
    ],
)
def test_a_message_is_sent_under_the_id_the_api_knows_and_settled_under_its_own(
    make_settings: MakeSettings, api_id: str | None, key: str
) -> None:
    rig = Rig(make_settings, answers(), known_as(message("g0", 0), api_id))

    report = rig.run()

    assert report.delivered == 1
    assert [sent for _, _, sent in rig.api.requests] == [key]
    assert set(rig.ledger.records) == {"g0-0"} and rig.ledger.status("g0-0") is Status.DELIVERED
    assert rig.queue.deleted == ["g0-0"]


@pytest.mark.parametrize(("api_id", "logged"), [(None, None), ("original-0", "original-0"), ("", None)])
def test_a_messages_log_lines_name_the_id_the_api_knows_when_it_is_another(
    api_id: str | None, logged: str | None
) -> None:
    line = fields(known_as(message("g0", 0), api_id), "orders", 1, "delivered")
    assert (line["message_id"], line.get("api_id")) == ("g0-0", logged)


def batch_item_ids(api: ScriptedApi) -> list[list[str]]:
    """The item id (`batch_id_field`) of each item of each batch request, in order."""
    ids = iter(sent for _, _, sent in api.requests)
    return [[next(ids) for _ in bodies] for _, bodies in api.batches]


@pytest.mark.parametrize(
    ("api_ids", "requests"),
    [
        ([None, None, None], [["g0-0", "g0-1", "g1-0"]]),
        (["o-a", None, "o-c"], [["o-a", "g0-1", "o-c"]]),
        # One id twice (the same original replayed twice with the same keys): a request carries an id
        # once, so the second waits for its group's next turn and goes in a request of its own.
        (["o-a", "o-a", None], [["o-a", "g1-0"], ["o-a"]]),
    ],
)
def test_a_batch_carries_the_ids_the_api_knows_in_its_items_and_its_key(
    make_settings: MakeSettings, api_ids: list[str | None], requests: list[list[str]]
) -> None:
    queued = [item("g0", 0), item("g0", 1), item("g1", 0)]
    rig = Rig(make_settings, per_item(), *map(known_as, queued, api_ids), **BULK)

    report = rig.run()

    assert report.delivered == 3
    assert batch_item_ids(rig.api) == requests
    assert [key for key, _ in rig.api.batches] == [bulk.batch_key(ids) for ids in requests]
    assert set(rig.ledger.records) == {"g0-0", "g0-1", "g1-0"}
    assert {rig.ledger.status(m) for m in rig.ledger.records} == {Status.DELIVERED}
