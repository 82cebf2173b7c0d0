"""One group's turn in a drain run, as a loop: for each message, oldest first, decide
(`policy.decide`, the only call), carry the action out (`GroupEffects`, every call to the queue, the
ledger, the API and Step Functions), and feed what came of it into the next decision, until an
action ends the message's turn; an action that holds the group ends the group's.

No I/O here and no clock but the run's: with fake ports and a fake clock, a group's whole story runs
in a unit test (tests/unit/test_drain_group.py)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from chalicelib.drain_state import GroupResult, GroupRun, Job
from chalicelib.model import ApiResponse, LedgerRecord, ReceivedMessage, Verdict, verdict
from chalicelib.policy import Action, Decision, Move, Rules, Situation, decide, release_plan


class Came(enum.Enum):
    """What carrying out an action came to, as far as the next decision is concerned."""

    DONE = "done"  # the message's turn is over
    RESTARTED = "restarted"  # a redriven copy has fresh attempts: decided again as if just received
    ANSWERED = "answered"  # the API answered the attempt (the ledger has counted it), or it never left
    LATE = "late"  # no attempt: too close to the end of the messages' visibility
    REFUSED = "refused"  # the dead-letter queue did not take it
    UNANSWERED = "unanswered"  # Step Functions did not take the task's answer


@dataclass(frozen=True)
class Feedback:
    came: Came
    record: LedgerRecord | None  # the message's ledger record as it now stands
    response: ApiResponse | None = None  # the API's answer to this turn's attempt, if one was made
    answer: Decision | None = None  # with ANSWERED: that answer, classified
    request: int = 0  # with ANSWERED: the batch request it came in (0: not a batch)


class GroupEffects(Protocol):
    """Carries actions out (`chalicelib.drain_effects.Effects`)."""

    def token(self, message: ReceivedMessage) -> str: ...

    def carry_out(
        self,
        action: Action,
        rest: Sequence[ReceivedMessage],
        record: LedgerRecord | None,
        response: ApiResponse | None,
        run: GroupRun,
    ) -> Feedback: ...


def deliver_group(
    messages: list[ReceivedMessage], effects: GroupEffects, run: GroupRun, rules: Rules
) -> GroupResult:
    """One group, strictly in order, message by message, until an action holds the group."""
    result = GroupResult()
    for index in range(len(messages)):
        if not take_turn(messages[index:], effects, run, rules, result):
            break
    return result


def deliver_job(job: Job, effects: GroupEffects, run: GroupRun) -> GroupResult:
    """A batching destination's job (issue #25): its groups in turn, each as `deliver_group` delivers
    it, sharing the answers a batch request brought for messages of later turns. A delivery that
    request's write recorded is not written again by the run (unless its task's answer changed it);
    the writes of the requests that only delivered go to the run with the job's result."""
    run = replace(run, job=job)
    result = GroupResult()
    while job.pending:
        done = deliver_group(job.pending.pop(0), effects, run, job.rules)
        result.delete += done.delete
        result.releases += done.releases
        result.delivered += done.delivered
    result.delivered = [r for r in result.delivered if job.written.get(r.message_id) != r]
    result.settlements = job.settling
    return result


def take_turn(
    rest: list[ReceivedMessage], effects: GroupEffects, run: GroupRun, rules: Rules, result: GroupResult
) -> bool:
    """The turn of `rest[0]`: decide, carry out, feed back, until its turn is over; True when the
    group goes on to its next message."""
    message = rest[0]
    token = bool(effects.token(message))
    record, response = run.records.get(message.message_id), None
    situation = arrival(message, record, token, run)
    closed = situation.task_closed
    request = 0  # the batch request that answered this turn's attempt, if one did
    while True:
        action = decide(situation, rules)
        fed = effects.carry_out(action, rest, record, response, run)
        record, response = fed.record, fed.response
        request = fed.request or request
        if action.move in (Move.DELIVERED, Move.SUPERSEDE):
            assert record is not None  # the attempt's delivered record, or the superseded one
            result.delivered.append(record)
        if fed.came is Came.DONE:
            if action.holds:
                result.releases += release_plan(rest, action.hold_s)
            else:
                result.delete.append(message)
            run.state.note(action, message.group_id, request)
            run.state.tally(action.tally)
            return action.group_goes_on
        if fed.came is Came.RESTARTED:
            if record is not None:
                run.records[message.message_id] = record
            situation = arrival(message, record, token, run)
            closed = situation.task_closed
            continue
        if fed.came is Came.ANSWERED and record is not None:
            run.records[message.message_id] = record
        if fed.came is Came.UNANSWERED and action.move is not Move.DELETE:
            # delivered or dead-lettered all the same: counted so
            run.state.note(action, message.group_id, request)
            run.state.tally(action.tally)
        situation = following(fed, token, closed)


def arrival(message: ReceivedMessage, record: LedgerRecord | None, token: bool, run: GroupRun) -> Situation:
    """The situation of a message as it comes up in its group: what the ledger says of it, and where
    the run stands. A message a batch request already carried settles on its answer even if the
    run has stopped since (items of other groups settle on their own results)."""
    state = run.state
    retry_at = record.retry_at if record and record.retry_at else 0.0
    stopped = state.stopped_by if state.should_stop() else ""
    if run.job is not None and message.message_id in run.job.prefetched:
        stopped = ""
    return Situation(
        verdict(record, message.copy_id),
        attempts=record.attempts if record else 0,
        blocked=message.group_id in state.blocked,
        stopped=stopped,
        resume_after_s=state.resume_after_s,
        token=token,
        task_closed=token and bool(record and record.callback),
        last_error=record.last_error if record else "",
        wait_left_s=max(0, int(retry_at - run.clock.time() + 0.999)) if token else 0,
        source=run.fresh.get(message.message_id),
    )


def following(fed: Feedback, token: bool, closed: bool) -> Situation:
    """The situation after an action that did not end the message's turn."""
    if fed.came is Came.ANSWERED:  # no record: a first request that never left
        assert fed.answer is not None
        attempts = fed.record.attempts if fed.record else 0
        return Situation(
            Verdict.DELIVER, answer=fed.answer, attempts=attempts, token=token, task_closed=closed
        )
    if fed.came is Came.LATE:
        return Situation(Verdict.DELIVER, late=True, token=token, task_closed=closed)
    if fed.came is Came.REFUSED:  # never deleted: held, its task kept alive
        return Situation(Verdict.DELIVER, dead_letter_refused=True, token=token, task_closed=closed)
    if fed.came is Came.UNANSWERED:  # kept, token and all, to answer when it comes back
        return Situation(Verdict.DELIVERED, token=True, callback_failed=True)
    raise ValueError(f"no situation follows {fed.came}")
