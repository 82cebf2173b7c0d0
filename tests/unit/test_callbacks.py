"""Step Functions callbacks: `decide`'s rows for messages with a task token, every drain branch that
answers a task (against the in-memory fakes), the boto3 adapter's refusals (botocore's
Stubber) and botocore's retries under it (a stand-in Step Functions on loopback), and the output and
cause the task receives."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib import wiring
from chalicelib.callbacks import EXECUTIONS_READ, StepFunctionsCallbacks, open_sent_tokens, state_machine_arns
from chalicelib.drain import Drainer
from chalicelib.drain_state import DrainReport
from chalicelib.model import TASK_TOKEN_ATTRIBUTE, ApiResponse, CallbackResult, LedgerRecord, Status, Verdict
from chalicelib.policy import (
    Action,
    Backoff,
    Callback,
    Decision,
    Move,
    Outcome,
    Rules,
    Situation,
    Tally,
    decide,
)
from chalicelib.settings import SettingsError
from chalicelib.submissions import SubmissionError, parse_submission
from chalicelib.task_answers import MAX_OUTPUT_BYTES, failure_cause, success_output
from tests.fakes import (
    FakeArchive,
    FakeCallbacks,
    FakeDeadLetters,
    FakeFifo,
    FakeLedger,
    FakeMetrics,
    FakeNotes,
    ScriptedApi,
    message,
)
from tests.unit.conftest import MakeSettings


def fixed_draw(low: float, high: float) -> float:
    return high


RULES = Rules("skip", 3, Backoff(10, 100, fixed_draw), wait_s=30, halt_s=900, heartbeat_s=5)
STRICT = replace(RULES, ordering="strict")
D = Verdict.DELIVER
OK = Decision(Outcome.DELIVERED, "HTTP 200")
E503 = Decision(Outcome.RETRY, "HTTP 503")
E400 = Decision(Outcome.PERMANENT, "HTTP 400: refused by the API")
HB = Callback.HEARTBEAT

TOKEN_TABLE: list[tuple[str, Situation, Rules, Action]] = [
    ("fresh: attempt, nothing to tell", Situation(D, token=True), RULES, Action(Move.ATTEMPT)),
    (
        "2xx: success",
        Situation(D, answer=OK, attempts=1, token=True),
        RULES,
        Action(Move.DELIVERED, "HTTP 200", tally=Tally.DELIVERED, success=True, callback=Callback.SUCCESS),
    ),
    (
        "4xx poison: Trickle.Rejected",
        Situation(D, answer=E400, attempts=1, token=True),
        RULES,
        Action(
            Move.DEAD_LETTER,
            "HTTP 400: refused by the API",
            tally=Tally.DEAD_LETTERED,
            callback=Callback.FAILURE,
            error="Trickle.Rejected",
        ),
    ),
    (
        "out of attempts: Trickle.OutOfAttempts",
        Situation(D, answer=E503, attempts=3, token=True),
        RULES,
        Action(
            Move.DEAD_LETTER,
            "gave up after 3 attempts; last: HTTP 503",
            tally=Tally.DEAD_LETTERED,
            failure=True,
            callback=Callback.FAILURE,
            error="Trickle.OutOfAttempts",
        ),
    ),
    (
        "operator skip: Trickle.Skipped",
        Situation(Verdict.SKIP, token=True),
        RULES,
        Action(
            Move.DEAD_LETTER,
            "skipped by an operator",
            tally=Tally.DEAD_LETTERED,
            callback=Callback.FAILURE,
            error="Trickle.Skipped",
        ),
    ),
    (
        "5xx with a backoff past the heartbeat: held short, the retry time recorded",
        Situation(D, answer=E503, attempts=1, token=True),
        RULES,
        Action(
            Move.RELEASE,
            "HTTP 503",
            hold_s=5,
            block=True,
            tally=Tally.RETRIED,
            failure=True,
            callback=HB,
            wait_s=10,
        ),
    ),
    (
        "5xx within the heartbeat: held as usual, with a heartbeat",
        Situation(D, answer=E503, attempts=1, token=True),
        replace(RULES, heartbeat_s=60),
        Action(
            Move.RELEASE, "HTTP 503", hold_s=10, block=True, tally=Tally.RETRIED, failure=True, callback=HB
        ),
    ),
    (
        "back before its retry time: no attempt, heartbeat, held again",
        Situation(D, token=True, wait_left_s=8),
        RULES,
        Action(Move.RELEASE, "waiting for its retry", hold_s=5, block=True, callback=HB),
    ),
    (
        "back before its retry time, within a heartbeat",
        Situation(D, token=True, wait_left_s=3),
        RULES,
        Action(Move.RELEASE, "waiting for its retry", hold_s=3, block=True, callback=HB),
    ),
    (
        "strict poison: halted, back every heartbeat, no retry time",
        Situation(D, answer=E400, attempts=1, token=True),
        STRICT,
        Action(
            Move.HALT,
            "HTTP 400: refused by the API",
            hold_s=5,
            block=True,
            tally=Tally.HALTED,
            callback=HB,
        ),
    ),
    (
        "halted: heartbeats until an operator acts",
        Situation(Verdict.HALTED, token=True),
        STRICT,
        Action(Move.RELEASE, "halted", hold_s=5, block=True, callback=HB),
    ),
    (
        "already delivered, task not answered yet: answer it, no request",
        Situation(Verdict.DELIVERED, token=True),
        RULES,
        Action(
            Move.DELETE,
            "already delivered; answering its task",
            tally=Tally.ALREADY_DELIVERED,
            callback=Callback.SUCCESS,
        ),
    ),
    (
        "already delivered and answered: delete only",
        Situation(Verdict.DELIVERED, token=True, task_closed=True),
        RULES,
        Action(Move.DELETE, "already delivered", tally=Tally.ALREADY_DELIVERED),
    ),
    (
        "already dead, task not answered yet: its error from the ledger's reason",
        Situation(Verdict.DEAD, token=True, last_error="gave up after 3 attempts; x"),
        RULES,
        Action(
            Move.DELETE,
            "already dead; answering its task",
            callback=Callback.FAILURE,
            error="Trickle.OutOfAttempts",
        ),
    ),
    (
        "Step Functions did not take the answer: kept, no heartbeat",
        Situation(Verdict.DELIVERED, token=True, callback_failed=True),
        RULES,
        Action(Move.RELEASE, "Step Functions did not take the answer", hold_s=30, block=True),
    ),
    (
        "already dead and answered: delete only",
        Situation(Verdict.DEAD, token=True, task_closed=True, last_error="HTTP 400"),
        RULES,
        Action(Move.DELETE, "already dead"),
    ),
    (
        "task gone (a heartbeat refused), 5xx: the usual backoff, no heartbeat, nothing recorded",
        Situation(D, answer=E503, attempts=1, token=True, task_closed=True),
        RULES,
        Action(Move.RELEASE, "HTTP 503", hold_s=10, block=True, tally=Tally.RETRIED, failure=True),
    ),
    (
        "task gone, 2xx: delivered, no answer",
        Situation(D, answer=OK, attempts=2, token=True, task_closed=True),
        RULES,
        Action(Move.DELIVERED, "HTTP 200", tally=Tally.DELIVERED, success=True),
    ),
    (
        "task gone, poison: dead-lettered, no answer",
        Situation(D, answer=E400, attempts=1, token=True, task_closed=True),
        RULES,
        Action(Move.DEAD_LETTER, "HTTP 400: refused by the API", tally=Tally.DEAD_LETTERED),
    ),
    (
        "task gone, strict halt: halted for the operator, no heartbeats",
        Situation(Verdict.HALTED, token=True, task_closed=True),
        STRICT,
        Action(Move.RELEASE, "halted", hold_s=900, block=True),
    ),
    (
        "delivered and answered, held by a stopped run: no heartbeat to a closed task",
        Situation(Verdict.DELIVERED, token=True, task_closed=True, stopped="time"),
        RULES,
        Action(Move.RELEASE, "run stopped: time", hold_s=1),
    ),
    (
        "no token: nothing changes",
        Situation(D, answer=E503, attempts=1),
        RULES,
        Action(Move.RELEASE, "HTTP 503", hold_s=10, block=True, tally=Tally.RETRIED, failure=True),
    ),
]


@pytest.mark.parametrize(
    ("situation", "rules", "action"), [r[1:] for r in TOKEN_TABLE], ids=[r[0] for r in TOKEN_TABLE]
)
def test_decide_for_a_waiting_task(situation: Situation, rules: Rules, action: Action) -> None:
    assert decide(situation, rules) == action


# --- the drain against fakes ---------------------------------------------------------------------

FAST = {
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "10000",
    "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": "100",
    "TRICKLE_DRAIN_WORKERS": "1",
}


class Rig:
    def __init__(
        self,
        make_settings: MakeSettings,
        api: ScriptedApi,
        callbacks: FakeCallbacks,
        archive: FakeArchive | None = None,
        **env: str,
    ) -> None:
        self.archive = archive
        self.queue = FakeFifo(hold_delays=True)
        self.ledger = FakeLedger()
        self.dead_letters = FakeDeadLetters()
        self.callbacks = callbacks
        self.api = api
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
            self.archive,
            callbacks=self.callbacks,
            metrics=FakeMetrics,
        )
        return drainer.run(lambda: 10**9)

    def holds(self, message_id: str) -> list[int]:
        return [seconds for mid, seconds in self.queue.visibility_changes if mid == message_id]


def answers(**by_body: int) -> ScriptedApi:
    def script(body: str, nth: int) -> ApiResponse:
        status = by_body.get(body.replace(":", "_"), 200)
        text = '{"id": 7, "ok": true}' if status == 200 else f"secret echo of {body}"
        return ApiResponse(status, body=text, body_excerpt=text)

    return ScriptedApi(script)


def test_2xx_answers_the_task_once_with_the_apis_answer(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(), FakeCallbacks())
    rig.queue.put(message("g0", 0, token="t0"), message("g0", 1))

    report = rig.run()

    ((kind, token, details),) = rig.callbacks.calls
    output = json.loads(details["output"])
    assert (kind, token, report.callbacks, report.delivered) == ("success", "t0", 1, 2)
    assert output["body"] == {"id": 7, "ok": True} and output["status_code"] == 200
    assert (output["message_id"], output["destination"], output["attempts"]) == ("g0-0", "orders", 1)
    assert output["delivered_at"].endswith("Z") and output["body_truncated"] is False
    assert rig.ledger.records["g0-0"].callback == "success"
    assert rig.queue.deleted == ["g0-0", "g0-1"]


@pytest.mark.parametrize(
    ("env", "status", "error"),
    [
        ({}, 400, "Trickle.Rejected"),
        ({"TRICKLE_DEST_ORDERS_MAX_ATTEMPTS": "1"}, 503, "Trickle.OutOfAttempts"),
    ],
)
def test_a_dead_letter_fails_the_task_with_its_cause_but_not_the_payload(
    make_settings: MakeSettings, env: dict[str, str], status: int, error: str
) -> None:
    rig = Rig(make_settings, answers(g0_0=status), FakeCallbacks(), **env)
    rig.queue.put(message("g0", 0, token="t0"))

    report = rig.run()

    ((kind, _, details),) = rig.callbacks.calls
    cause = json.loads(details["cause"])
    assert (kind, details["error"], report.dead_lettered) == ("failure", error, 1)
    assert cause["status_code"] == status and str(status) in cause["reason"]
    assert "g0:0" not in details["cause"] and "secret echo" not in details["cause"]
    assert rig.ledger.records["g0-0"].callback == "failure"
    assert rig.queue.deleted == ["g0-0"] and len(rig.dead_letters.sent) == 1
    assert "trickle-task-token" not in rig.dead_letters.sent[0].attributes


def test_an_operator_skip_fails_the_task_as_skipped(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(), FakeCallbacks())
    rig.queue.put(message("g0", 0, token="t0"))
    rig.ledger.records["g0-0"] = LedgerRecord("g0-0", Status.SKIP, 1, "g0", last_status_code=400)

    rig.run()

    assert rig.api.requests == []
    assert [(k, d["error"]) for k, _, d in rig.callbacks.calls] == [("failure", "Trickle.Skipped")]


def test_backoff_longer_than_the_heartbeat_keeps_the_task_alive_until_the_retry(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: ApiResponse(503 if (body, nth) == ("g0:0", 0) else 200, body="done")),
        FakeCallbacks(),
        TRICKLE_DEST_ORDERS_HEARTBEAT_S="2",
        TRICKLE_DEST_ORDERS_BACKOFF_BASE_S="30",
    )
    rig.queue.put(message("g0", 0, token="t0"), message("g0", 1, token="t1"))

    first = rig.run()
    retry_at = rig.ledger.records["g0-0"].retry_at
    rig.queue.tick()
    second = rig.run()  # back before its retry time: heartbeat, no request
    rig.ledger.records["g0-0"] = replace(rig.ledger.records["g0-0"], retry_at=time.time() - 1)
    rig.queue.tick()
    third = rig.run()

    assert retry_at is not None and retry_at > time.time() + 10  # backoff 30 with equal jitter
    assert rig.holds("g0-0")[:2] == [2, 2] and (first.retried, second.retried) == (1, 0)
    assert len(rig.api.requests) == 3 and rig.api.bodies()[:2] == ["g0:0", "g0:0"]
    assert rig.callbacks.kinds("t0") == ["heartbeat", "heartbeat", "success"]
    assert rig.callbacks.kinds("t1") == ["heartbeat", "heartbeat", "success"]  # the tail, held too
    assert (first.heartbeats, second.heartbeats, third.callbacks) == (2, 2, 2)
    assert rig.queue.deleted == ["g0-0", "g0-1"]


def test_a_strict_halt_heartbeats_on_every_look_until_an_operator_acts(make_settings: MakeSettings) -> None:
    rig = Rig(
        make_settings,
        answers(g0_0=400),
        FakeCallbacks(),
        TRICKLE_DEST_ORDERS_ORDERING="strict",
        TRICKLE_DEST_ORDERS_HEARTBEAT_S="3",
    )
    rig.queue.put(message("g0", 0, token="t0"))

    for _ in range(3):
        rig.run()
        rig.queue.tick()

    assert rig.ledger.status("g0-0") is Status.HALTED and len(rig.api.requests) == 1
    assert rig.holds("g0-0") == [3, 3, 3] and rig.callbacks.kinds("t0") == ["heartbeat"] * 3
    assert rig.ledger.records["g0-0"].retry_at is None  # an operator's retry is not delayed


def test_a_message_received_again_after_its_answer_is_never_answered_twice(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(make_settings, answers(), FakeCallbacks())
    rig.queue.put(message("g0", 0, token="t0"))
    rig.run()
    rig.queue.put(message("g0", 0, copy="c-again", token="t0"))  # redelivered, or the drain died

    report = rig.run()

    assert (report.already_delivered, report.callbacks) == (1, 0)
    assert rig.callbacks.kinds("t0") == ["success"] and len(rig.api.requests) == 1


BIG = json.dumps({"rows": ["x" * 1000] * 300})  # over 256 KB


@pytest.mark.parametrize("archived", [True, False])
def test_an_answer_over_the_output_limit_goes_as_a_url_or_is_cut(
    make_settings: MakeSettings, archived: bool
) -> None:
    archive = FakeArchive() if archived else None
    rig = Rig(
        make_settings, ScriptedApi(lambda body, nth: ApiResponse(200, body=BIG)), FakeCallbacks(), archive
    )
    rig.queue.put(message("g0", 0, token="t0"))

    rig.run()

    ((_, _, details),) = rig.callbacks.calls
    output = json.loads(details["output"])
    assert len(details["output"].encode()) <= MAX_OUTPUT_BYTES and output["body_truncated"] is True
    if archive is not None:
        assert archive.stored["g0-0"] == (200, BIG) and output["body"] is None
        assert output["body_url"] == "https://archive.invalid/responses/g0-0.json?expires=3600"
        assert len(details["output"]) < 1000
    else:
        assert "body_url" not in output and BIG.startswith(output["body"]) and len(output["body"]) > 200_000


def test_an_answer_within_the_limit_has_no_url(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(), FakeCallbacks(), FakeArchive())
    rig.queue.put(message("g0", 0, token="t0"))

    rig.run()

    output = json.loads(rig.callbacks.calls[0][2]["output"])
    assert output["body"] == {"id": 7, "ok": True} and "body_url" not in output


def test_a_drain_that_died_after_the_ledger_write_answers_on_the_next_receive(
    make_settings: MakeSettings,
) -> None:
    rig = Rig(make_settings, answers(), FakeCallbacks())
    rig.queue.put(message("g0", 0, token="t0"))
    rig.ledger.records["g0-0"] = LedgerRecord(
        "g0-0", Status.DELIVERED, 1, "g0", last_status_code=201, last_attempt_at=1.0
    )

    rig.run()

    ((_, _, details),) = rig.callbacks.calls
    output = json.loads(details["output"])
    assert rig.api.requests == [] and output["status_code"] == 201 and output["body_unavailable"] is True
    assert rig.ledger.records["g0-0"].callback == "success" and rig.queue.deleted == ["g0-0"]


def test_step_functions_unavailable_keeps_the_message_and_answers_later_without_a_second_post(
    make_settings: MakeSettings,
) -> None:
    down = {"on": True}
    callbacks = FakeCallbacks(
        lambda kind, token, nth: CallbackResult.FAILED if down["on"] else CallbackResult.SENT
    )
    rig = Rig(make_settings, answers(), callbacks)
    rig.queue.put(message("g0", 0, token="t0"), message("g0", 1))

    first = rig.run()
    kept = rig.ledger.records["g0-0"]
    down["on"] = False
    rig.queue.tick()
    second = rig.run()

    # The run that posted it reports it delivered (the API has it), its answer owed, the group kept.
    assert (first.delivered, first.callbacks_failed, first.released) == (1, 1, 2)
    assert first.blocked_groups == ["g0"]
    assert (second.already_delivered, second.delivered, second.callbacks) == (1, 1, 1)
    assert rig.queue.deleted[0] == "g0-0"
    assert kept.status is Status.DELIVERED and json.loads(kept.callback_output)["body"] == {
        "id": 7,
        "ok": True,
    }
    assert rig.holds("g0-0") == [rig.settings.destination("orders").backoff_base_s]
    assert len(rig.api.requests) == 2 and rig.api.bodies() == ["g0:0", "g0:1"]  # g0:0 posted once
    assert [d["output"] for k, _, d in callbacks.calls] == [kept.callback_output] * 2
    assert rig.ledger.records["g0-0"].callback == "success"


def test_a_dead_letter_whose_failure_was_not_taken_is_answered_from_the_source_copy(
    make_settings: MakeSettings,
) -> None:
    down = {"on": True}
    callbacks = FakeCallbacks(
        lambda kind, token, nth: CallbackResult.FAILED if down["on"] else CallbackResult.SENT
    )
    rig = Rig(make_settings, answers(g0_0=400), callbacks)
    rig.queue.put(message("g0", 0, token="t0"))

    first = rig.run()
    down["on"] = False
    rig.queue.tick()
    second = rig.run()

    assert (first.dead_lettered, first.callbacks_failed, first.released) == (1, 1, 1)
    assert (second.dead_lettered, second.callbacks) == (0, 1)
    assert len(rig.dead_letters.sent) == 1 and len(rig.api.requests) == 1
    assert [(k, d["error"]) for k, _, d in callbacks.calls] == [("failure", "Trickle.Rejected")] * 2
    assert rig.ledger.records["g0-0"].callback == "failure" and rig.queue.deleted == ["g0-0"]


def test_a_task_that_timed_out_is_counted_and_the_message_still_deleted(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(), FakeCallbacks(lambda kind, token, nth: CallbackResult.REJECTED))
    rig.queue.put(message("g0", 0, token="t0"))

    report = rig.run()

    assert (report.callbacks_rejected, report.callbacks, report.delivered) == (1, 0, 1)
    assert rig.queue.deleted == ["g0-0"] and rig.ledger.records["g0-0"].callback == "rejected"


def test_a_task_that_refuses_a_heartbeat_is_recorded_gone_and_never_called_again(
    make_settings: MakeSettings,
) -> None:
    callbacks = FakeCallbacks(
        lambda kind, token, nth: CallbackResult.REJECTED if token == "t0" else CallbackResult.SENT
    )
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: ApiResponse(503 if (body, nth) == ("g0:0", 0) else 200, body="done")),
        callbacks,
        TRICKLE_DEST_ORDERS_HEARTBEAT_S="2",
        TRICKLE_DEST_ORDERS_BACKOFF_BASE_S="30",
    )
    rig.queue.put(message("g0", 0, token="t0"), message("g0", 1, token="t1"))

    first = rig.run()  # 503: held short for its heartbeat, which t0's task refuses
    gone = rig.ledger.records["g0-0"]
    rig.queue.tick()
    second = rig.run()  # back before its retry time: held for the rest of it, no heartbeat to t0
    rig.ledger.records["g0-0"] = replace(rig.ledger.records["g0-0"], retry_at=time.time() - 1)
    rig.queue.tick()
    third = rig.run()

    assert (first.callbacks_rejected, first.heartbeats, gone.callback) == (1, 1, "rejected")
    assert (second.callbacks_rejected, second.heartbeats) == (0, 1)
    assert rig.holds("g0-0")[0] == 2 and rig.holds("g0-0")[1] > 10  # the rest of a 15-30 s wait
    assert rig.callbacks.kinds("t0") == ["heartbeat"]  # no second heartbeat, no answer
    assert rig.callbacks.kinds("t1") == ["heartbeat", "heartbeat", "success"]
    assert (third.delivered, third.callbacks, rig.ledger.records["g0-0"].callback) == (2, 1, "rejected")
    assert rig.queue.deleted == ["g0-0", "g0-1"] and rig.api.bodies() == ["g0:0", "g0:0", "g0:1"]


def test_a_refused_heartbeat_for_a_message_never_seen_before_is_recorded(make_settings: MakeSettings) -> None:
    """A message a state machine sent has no ledger record until it is attempted: the tail of a
    held group whose task refuses its heartbeat gets one, so its task is not called again."""
    callbacks = FakeCallbacks(
        lambda kind, token, nth: CallbackResult.REJECTED if token == "t1" else CallbackResult.SENT
    )
    rig = Rig(
        make_settings,
        ScriptedApi(lambda body, nth: ApiResponse(503 if (body, nth) == ("g0:0", 0) else 200, body="done")),
        callbacks,
    )
    rig.queue.put(message("g0", 0, token="t0"), message("g0", 1, token="t1"))

    rig.run()
    tail = rig.ledger.records["g0-1"]
    rig.queue.tick()
    rig.run()

    assert (tail.status, tail.callback, tail.group_id) == (Status.QUEUED, "rejected", "g0")
    assert callbacks.kinds("t1") == ["heartbeat"] and callbacks.kinds("t0") == ["heartbeat", "success"]
    assert rig.queue.deleted == ["g0-0", "g0-1"]


def test_messages_without_a_token_make_no_callbacks(make_settings: MakeSettings) -> None:
    rig = Rig(make_settings, answers(g0_0=400, g1_0=503), FakeCallbacks())
    rig.queue.put(message("g0", 0), message("g1", 0), message("g2", 0))

    rig.run()

    assert rig.callbacks.calls == []


# --- the boto3 adapter -----------------------------------------------------------------------------


def sfn() -> tuple[Any, Stubber]:
    client = boto3.client(
        "stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client, Stubber(client)


def test_adapter_sends_each_kind() -> None:
    client, stub = sfn()
    stub.add_response("send_task_success", {}, {"taskToken": "t", "output": "{}"})
    stub.add_response("send_task_failure", {}, {"taskToken": "t", "error": "Trickle.Rejected", "cause": "c"})
    stub.add_response("send_task_heartbeat", {}, {"taskToken": "t"})
    callbacks = StepFunctionsCallbacks(client)
    with stub:
        results = [
            callbacks.success("t", "{}"),
            callbacks.failure("t", "Trickle.Rejected", "c"),
            callbacks.heartbeat("t"),
        ]
    assert results == [CallbackResult.SENT] * 3
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_adapter_a_gone_task_is_rejected_without_retry(code: str) -> None:
    client, stub = sfn()
    stub.add_client_error("send_task_success", code, http_status_code=400)
    with stub:
        assert StepFunctionsCallbacks(client).success("t", "{}") is CallbackResult.REJECTED
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("ServiceUnavailable", 503), ("AccessDeniedException", 400)],
)
def test_adapter_calls_once_and_an_answer_not_taken_is_failed(code: str, status: int) -> None:
    """Throttling and 5xx reach the adapter only once botocore's own retries are spent (the Stubber
    answers before them); a refusal is not retried at all. Either way: failed, answered later."""
    client, stub = sfn()
    stub.add_client_error("send_task_heartbeat", code, http_status_code=status)
    stub.add_response("send_task_heartbeat", {}, {"taskToken": "t"})
    with stub:
        assert StepFunctionsCallbacks(client).heartbeat("t") is CallbackResult.FAILED
        assert StepFunctionsCallbacks(client).heartbeat("t") is CallbackResult.SENT  # the next call's


class StepFunctionsStandIn(http.server.BaseHTTPRequestHandler):
    """Answers every SendTask* with the next of `answers` (status, error code), the last repeated."""

    answers: list[tuple[int, str]] = []
    requests = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        status, code = cls.answers[min(cls.requests, len(cls.answers) - 1)]
        cls.requests += 1
        body = json.dumps({"__type": code, "message": code} if code else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def step_functions(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[StepFunctionsStandIn]]:
    """A stand-in Step Functions on loopback, reached through the client the drain's wiring builds."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StepFunctionsStandIn)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    StepFunctionsStandIn.requests = 0
    try:
        yield StepFunctionsStandIn
    finally:
        wiring.reset()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("answers", "result", "requests"),
    [
        pytest.param(
            [(500, "InternalServerError"), (503, "ServiceUnavailable"), (200, "")], "SENT", 3, id="5xx"
        ),
        pytest.param([(400, "ThrottlingException"), (200, "")], "SENT", 2, id="throttled"),
        pytest.param([(500, "InternalServerError")], "FAILED", 4, id="5xx-throughout"),
        pytest.param([(400, "TaskTimedOut")], "REJECTED", 1, id="task-gone"),
        pytest.param([(400, "AccessDeniedException")], "FAILED", 1, id="refused"),
    ],
)
def test_botocore_retries_and_nothing_on_top(
    step_functions: type[StepFunctionsStandIn], answers: list[tuple[int, str]], result: str, requests: int
) -> None:
    """The wiring's client retries throttling and 5xx (standard mode: three retries, four attempts
    in all); the adapter adds no loop of its own (it used to: four rounds of those, sixteen requests
    for one answer)."""
    step_functions.answers = answers
    callbacks = StepFunctionsCallbacks(wiring.client("stepfunctions"))

    assert callbacks.success("t", "{}") is CallbackResult[result]
    assert step_functions.requests == requests


# --- what the task receives ------------------------------------------------------------------------


def test_output_keeps_text_bodies_as_text() -> None:
    output = json.loads(success_output("m", "orders", 200, "plain text", 2, 0.0))
    assert output["body"] == "plain text" and output["delivered_at"] == "1970-01-01T00:00:00.000Z"


def test_output_is_cut_to_the_step_functions_limit_with_a_flag() -> None:
    body = json.dumps({"blob": "é\n" * 200_000})

    text = success_output("m", "orders", 200, body, 1, 0.0)

    output = json.loads(text)
    assert len(text.encode()) <= MAX_OUTPUT_BYTES and output["body_truncated"] is True
    assert (
        isinstance(output["body"], str) and body.startswith(output["body"]) and len(output["body"]) > 100_000
    )


def test_output_over_the_limit_with_an_archive_names_the_archived_answer() -> None:
    body = json.dumps({"blob": "é" * 200_000})

    output = json.loads(success_output("m", "orders", 200, body, 1, 0.0, lambda: "https://signed"))

    assert (output["body"], output["body_url"], output["body_truncated"]) == (None, "https://signed", True)
    assert output["status_code"] == 200 and output["message_id"] == "m"


def test_cause_is_json_with_reason_and_status_only() -> None:
    cause = json.loads(failure_cause("m", "orders", "HTTP 400: refused by the API", 400, 1))
    assert cause == {
        "message_id": "m",
        "destination": "orders",
        "reason": "HTTP 400: refused by the API",
        "status_code": 400,
        "attempts": 1,
    }


# --- POST /messages with a task token ---------------------------------------------------------------


def test_a_submission_carries_its_task_token_on_the_queue_only(make_settings: MakeSettings) -> None:
    settings = make_settings(TRICKLE_CALLBACK_STATE_MACHINES="wait-for-orders")
    body = {"item": {"id": 1}, "destination": "orders", "task_token": "AAAA+token/=="}

    submission = parse_submission(json.dumps(body), settings)

    assert submission.message.attributes[TASK_TOKEN_ATTRIBUTE] == "AAAA+token/=="
    assert "AAAA" not in submission.message.body


@pytest.mark.parametrize(
    ("env", "token", "error"),
    [
        ({}, "t", "answers no Step Functions tasks"),
        ({"TRICKLE_CALLBACK_STATE_MACHINES": "w"}, "", "must be a Step Functions task token"),
        ({"TRICKLE_CALLBACK_STATE_MACHINES": "w"}, "x" * 2049, "must be a Step Functions task token"),
        ({"TRICKLE_CALLBACK_STATE_MACHINES": "w"}, "tab\there", "must be a Step Functions task token"),
        ({"TRICKLE_CALLBACK_STATE_MACHINES": "w"}, 7, "must be a Step Functions task token"),
    ],
)
def test_a_bad_task_token_or_a_stage_without_state_machines_is_refused(
    make_settings: MakeSettings, env: dict[str, str], token: object, error: str
) -> None:
    body = {"item": {"id": 1}, "destination": "orders", "task_token": token}
    with pytest.raises(SubmissionError, match=error):
        parse_submission(json.dumps(body), make_settings(**env))


def test_state_machines_are_named_not_given_as_arns(make_settings: MakeSettings) -> None:
    with pytest.raises(SettingsError, match="TRICKLE_CALLBACK_STATE_MACHINES: 'arn:aws:states"):
        make_settings(TRICKLE_CALLBACK_STATE_MACHINES="ok-one, arn:aws:states:us-east-1:1:stateMachine:x")
    assert make_settings(TRICKLE_CALLBACK_STATE_MACHINES="a, b_2").callback_state_machines == ("a", "b_2")


QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/trickle-orders.fifo"


def scheduled(
    at: int, token: str, queue: str = QUEUE, resource: str = "sendMessage.waitForTaskToken"
) -> dict[str, Any]:
    parameters = {
        "QueueUrl": queue,
        "MessageBody": {},
        "MessageAttributes": {TASK_TOKEN_ATTRIBUTE: {"DataType": "String", "StringValue": token}},
    }
    details = {
        "resourceType": "sqs",
        "resource": resource,
        "region": "us-east-1",
        "parameters": json.dumps(parameters),
    }
    return {
        "id": at,
        "previousEventId": at - 1,
        "type": "TaskScheduled",
        "taskScheduledEventDetails": details,
    }


def then(at: int, kind: str, after: int | None = None) -> dict[str, Any]:
    return {"id": at, "previousEventId": at - 1 if after is None else after, "type": kind}


OPEN_SENT: list[tuple[str, list[dict[str, Any]], list[str]]] = [
    ("waiting", [scheduled(3, "t1"), then(4, "TaskStarted"), then(5, "TaskSubmitted")], ["t1"]),
    ("newest first, as read", [then(5, "TaskSubmitted"), then(4, "TaskStarted"), scheduled(3, "t1")], ["t1"]),
    (
        "succeeded",
        [scheduled(3, "t1"), then(4, "TaskStarted"), then(5, "TaskSubmitted"), then(6, "TaskSucceeded")],
        [],
    ),
    ("failed", [scheduled(3, "t1"), then(4, "TaskFailed")], []),
    (
        "timed out on its heartbeat",
        [scheduled(3, "t1"), then(4, "TaskSubmitted"), then(5, "TaskTimedOut")],
        [],
    ),
    ("another queue", [scheduled(3, "t1", QUEUE.replace("orders", "crm"))], []),
    (
        "the queue by another host",
        [scheduled(3, "t1", "http://127.0.0.1:5000/123456789012/trickle-orders.fifo")],
        ["t1"],
    ),
    ("not a send with a token", [scheduled(3, "t1", resource="sendMessage")], []),
    ("no token", [scheduled(3, "")], []),
    (
        "a retried task: the first timed out, the second waits",
        [scheduled(3, "t1"), then(4, "TaskTimedOut"), scheduled(5, "t2")],
        ["t2"],
    ),
    (
        "parallel branches: one ended",
        [scheduled(3, "t1"), scheduled(4, "t2"), then(5, "TaskSucceeded", after=4)],
        ["t1"],
    ),
    (
        "unreadable parameters",
        [
            {
                "id": 3,
                "previousEventId": 2,
                "type": "TaskScheduled",
                "taskScheduledEventDetails": {
                    "resourceType": "sqs",
                    "resource": "sendMessage.waitForTaskToken",
                    "parameters": "{trunc",
                },
            }
        ],
        [],
    ),
]


@pytest.mark.parametrize(("events", "tokens"), [r[1:] for r in OPEN_SENT], ids=[r[0] for r in OPEN_SENT])
def test_open_sent_tokens(events: list[dict[str, Any]], tokens: list[str]) -> None:
    assert open_sent_tokens(events, QUEUE) == tokens


def test_state_machine_arns_are_in_the_tables_account_and_region() -> None:
    stream = "arn:aws-cn:dynamodb:cn-north-1:111122223333:table/items/stream/2026-01-01T00:00:00.000"
    assert state_machine_arns(stream, ["wait"]) == (
        "arn:aws-cn:states:cn-north-1:111122223333:stateMachine:wait",
    )


def test_adapter_reads_the_running_executions_histories_and_skips_what_it_cannot_read() -> None:
    client, stub = sfn()
    machines = [
        "arn:aws:states:us-east-1:123456789012:stateMachine:a",
        "arn:aws:states:us-east-1:123456789012:stateMachine:b",
    ]
    ended = "arn:aws:states:us-east-1:123456789012:execution:a:ended"
    waiting = "arn:aws:states:us-east-1:123456789012:execution:a:waiting"
    started = {"stateMachineArn": machines[0], "status": "RUNNING", "startDate": 0}
    stub.add_response(
        "list_executions",
        {
            "executions": [
                {"executionArn": ended, **started, "name": "ended"},
                {"executionArn": waiting, **started, "name": "waiting"},
            ]
        },
        {"stateMachineArn": machines[0], "statusFilter": "RUNNING", "maxResults": EXECUTIONS_READ},
    )
    stub.add_client_error("get_execution_history", "ExecutionDoesNotExist")
    events = [{**event, "timestamp": 0} for event in [then(4, "TaskSubmitted"), scheduled(3, "t1")]]
    stub.add_response(
        "get_execution_history",
        {"events": events},
        {"executionArn": waiting, "reverseOrder": True, "maxResults": 100},
    )
    stub.add_client_error("list_executions", "AccessDeniedException")
    with stub:
        assert StepFunctionsCallbacks(client, machines).sent_tokens(QUEUE) == ["t1"]
    stub.assert_no_pending_responses()
