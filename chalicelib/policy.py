"""Pure delivery decisions: what a response means, how long to wait, what happens to a message and
its group next (`decide`), and how held messages go back. No I/O, no clock, no randomness of its
own: the time and the backoff's jitter are given, and the drain applies the actions."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from chalicelib.freshness import Check, Freshness
from chalicelib.model import ApiResponse, UnsentKind, Verdict

M = TypeVar("M")

# A held group's head stays invisible this long when a run ends early, so the rest of its group,
# released at once, is never visible together with it (see docs/emulators.md, "Emulator gaps").
HEAD_HOLD_S = 1
MAX_VISIBILITY_S = 43_200


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # 2xx: delete
    SATURATED = "saturated"  # 429, or 503 with Retry-After: the destination, not the message
    RETRY = "retry"  # other 5xx, timeout, connection error: counted attempt, back off
    AUTH = "auth"  # 401/403: the key may have been rotated
    PERMANENT = "permanent"  # other 4xx: the message itself is refused
    UNSENDABLE = "unsendable"  # never sent: the message cannot be sent as its destination says
    CREDENTIALS_UNAVAILABLE = "credentials_unavailable"  # never sent: token endpoint or SSM down
    CREDENTIALS_REFUSED = "credentials_refused"  # never sent: the destination's credentials are refused
    GONE = "gone"  # 410: the API asks that nothing more be sent; the destination is paused


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    retry_after_s: int | None = None

    @property
    def counted(self) -> bool:
        """Only a message's own failures of a request that left count against it."""
        return self.outcome in (Outcome.RETRY, Outcome.PERMANENT)

    @property
    def sent(self) -> bool:
        """The request left: the answer is the API's (or the network's), worth a ledger write."""
        return self.outcome not in _UNSENT


_UNSENT = (Outcome.UNSENDABLE, Outcome.CREDENTIALS_UNAVAILABLE, Outcome.CREDENTIALS_REFUSED)
_UNSENT_OUTCOMES = {
    UnsentKind.REFUSED: Outcome.UNSENDABLE,
    UnsentKind.CREDENTIALS_UNAVAILABLE: Outcome.CREDENTIALS_UNAVAILABLE,
    UnsentKind.CREDENTIALS_REFUSED: Outcome.CREDENTIALS_REFUSED,
}
# A run stopped because its credentials could not be had waits this long before the next run's try
# (the token endpoint or SSM may be back by then; the schedule brings the next run anyway).
CREDENTIALS_WAIT_S = 30


def retry_after_seconds(value: str | None, now: datetime, default: int = 1) -> int:
    """`Retry-After` as delta-seconds or an HTTP date; never less than a second."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if text.isdigit():
        return max(1, min(MAX_VISIBILITY_S, int(text)))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - now).total_seconds()
    return max(1, min(MAX_VISIBILITY_S, int(seconds + 0.999)))


def classify(response: ApiResponse, now: datetime) -> Decision:
    """What the API's answer means; `now` dates a `Retry-After` given as an HTTP date. A request that
    never left (`unsent`) is not the API's answer: the reason is why it did not leave."""
    if response.unsent is not None:
        return Decision(_UNSENT_OUTCOMES[response.unsent.kind], response.unsent.reason)
    status = response.status
    if status is None:
        return Decision(Outcome.RETRY, response.error or "no response")
    if 200 <= status < 300:
        return Decision(Outcome.DELIVERED, f"HTTP {status}")
    if status == 429 or (status == 503 and response.retry_after is not None):
        return Decision(Outcome.SATURATED, f"HTTP {status}", retry_after_seconds(response.retry_after, now))
    if status in (401, 403):
        return Decision(Outcome.AUTH, f"HTTP {status}")
    if status == 410:  # Standard Webhooks: a sender stops on 410
        return Decision(Outcome.GONE, "HTTP 410 Gone: the API asks that nothing more be sent")
    if 400 <= status < 500:
        return Decision(Outcome.PERMANENT, f"HTTP {status}: refused by the API")
    # `error` with a status: a bulk answer that listed the item as failed (`bulk.failed`)
    return Decision(Outcome.RETRY, f"HTTP {status}: {response.error}" if response.error else f"HTTP {status}")


def backoff_s(attempts: int, base_s: int, cap_s: int, draw: Callable[[float, float], float]) -> int:
    """Delay before the next try after `attempts` failures: capped exponential, equal jitter (`draw`
    is uniform in [a, b], `random.uniform` in a drain).

    Half the capped delay is kept so retries never bunch at zero; the other half is random so a
    burst of failures does not retry in lockstep. Always within [1, cap_s].
    """
    ceiling = min(cap_s, base_s << min(30, max(0, attempts - 1)))
    return max(1, min(cap_s, math.ceil(ceiling / 2 + draw(0, ceiling / 2))))


def release_plan(held: Sequence[M], head_delay_s: int) -> list[tuple[M, int]]:
    """Visibility changes for a group's undelivered messages, oldest first.

    The head waits `head_delay_s`; the rest are released at once. On SQS the group stays locked
    while its head is invisible, so order holds; releasing the tail now, rather than letting the
    whole group time out together, also keeps emulators that reorder simultaneous reappearances
    in order.
    """
    if not held:
        return []
    return [(held[0], min(MAX_VISIBILITY_S, head_delay_s)), *((m, 0) for m in held[1:])]


@dataclass(frozen=True)
class Backoff:
    """A destination's retry delays as an object (sqs-workers style), with the jitter it draws."""

    base_s: int
    cap_s: int
    draw: Callable[[float, float], float]

    def delay_s(self, attempts: int) -> int:
        return backoff_s(attempts, self.base_s, self.cap_s, self.draw)


@dataclass(frozen=True)
class Rules:
    """What a destination's settings say about failures."""

    ordering: str  # "skip": dead-letter poison and go on; "strict": halt the group for an operator
    max_attempts: int
    backoff: Backoff
    wait_s: int  # a group held behind a failure elsewhere in the run waits this long
    halt_s: int  # a halted group looks again after this long
    heartbeat_s: int = 0  # a message with a task token is never held longer (0: no limit)


class Move(enum.Enum):
    ATTEMPT = "attempt"  # call the API now
    DELIVERED = "delivered"  # the API took it: record, archive, delete; the group goes on
    DELETE = "delete"  # a copy needing nothing more (already delivered or dead): delete it
    RESTART = "restart"  # a redriven copy: fresh attempts in the ledger, then decide again
    DEAD_LETTER = "dead_letter"  # to the dead-letter queue with its reason, then delete
    HALT = "halt"  # strict ordering: mark it halted; the group waits for an operator
    RELEASE = "release"  # the group waits: its head goes back after `hold_s`, the rest at once
    SUPERSEDE = "supersede"  # a backfilled item changed or gone since: settled unsent, deleted


class Callback(enum.Enum):
    """What a waiting Step Functions task is told about its message (`SendTask*`)."""

    SUCCESS = "success"  # delivered: the API's answer is the task's output
    FAILURE = "failure"  # dead-lettered: the task fails with `error` and the reason
    HEARTBEAT = "heartbeat"  # retried or held: the task is kept alive


SKIPPED_REASON = "skipped by an operator"
DELETED_REASON = "deleted since backfill"
CHANGED_REASON = "superseded: item changed since backfill"
HALTED = "halted"  # the reason a halted group's head is released again
GAVE_UP = "gave up after"


def callback_error(reason: str) -> str:
    """The task's error name for a dead-lettered message, from the reason `decide` gave it (also
    read back from the ledger when an earlier drain could not answer)."""
    if reason.startswith(GAVE_UP):
        return "Trickle.OutOfAttempts"
    if reason == SKIPPED_REASON:
        return "Trickle.Skipped"
    return "Trickle.Rejected"


class Tally(enum.Enum):
    """The run report's counters an action adds to."""

    DELIVERED = "delivered"
    ALREADY_DELIVERED = "already_delivered"
    RETRIED = "retried"
    SATURATED = "saturated"
    DEAD_LETTERED = "dead_lettered"
    HALTED = "halted"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Action:
    move: Move
    reason: str = ""
    hold_s: int = 0  # RELEASE and HALT: how long the group's head stays invisible
    block: bool = False  # nothing more of the group is attempted in this run
    stop: str = ""  # the whole run stops, and why
    resume_after_s: int = HEAD_HOLD_S  # with `stop`: how long the rest of the run's groups wait
    tally: Tally | None = None
    failure: bool = False  # a retryable failure: counts toward the circuit breaker
    success: bool = False  # resets the breaker's streak
    callback: Callback | None = None  # what the message's waiting task is told, if it has one
    error: str = ""  # with Callback.FAILURE: the task's error name
    wait_s: int = 0  # the head may not be attempted before this many seconds (its hold was cut short)

    @property
    def holds(self) -> bool:
        return self.move in (Move.HALT, Move.RELEASE)

    @property
    def group_goes_on(self) -> bool:
        return self.move in (Move.DELIVERED, Move.DELETE, Move.DEAD_LETTER, Move.SUPERSEDE)


@dataclass(frozen=True)
class Situation:
    """Everything `decide` looks at for the message at the head of a group's remaining messages."""

    verdict: Verdict
    answer: Decision | None = None  # the API's classified answer to the attempt just made
    attempts: int = 0  # the message's counted attempts in the ledger, the one just made included
    blocked: bool = False  # a failure earlier in the run holds this group
    stopped: str = ""  # the run has stopped, and why
    resume_after_s: int = HEAD_HOLD_S
    late: bool = False  # too close to the end of its visibility for another attempt
    dead_letter_refused: bool = False  # SQS did not take it on the dead-letter queue
    token: bool = False  # the message carries a Step Functions task token
    # ... but the ledger says its task needs nothing more: answered, or it refused a call (timed
    # out, unknown token), so no answer and no heartbeat is sent to it again
    task_closed: bool = False
    callback_failed: bool = False  # Step Functions did not take the answer just made (throttled, 5xx)
    last_error: str = ""  # the ledger's reason (a dead message's, for its task's error name)
    wait_left_s: int = 0  # seconds before the ledger lets this message be attempted again
    source: Check | None = None  # a backfilled message: its item read again this round (`freshness`)


def decide(situation: Situation, rules: Rules) -> Action:
    """The one place that says what happens next; the drain only carries it out. A message with a
    task token also gets what its task is told, and is never held past `rules.heartbeat_s`; once
    its task is answered or has refused a call, it is handled as if it carried none."""
    action = _decide(situation, rules)
    return _for_task(action, situation, rules) if situation.token and not situation.task_closed else action


def _for_task(action: Action, s: Situation, rules: Rules) -> Action:
    if action.move is Move.DELIVERED:
        return replace(action, callback=Callback.SUCCESS)
    if action.move is Move.DEAD_LETTER:
        return replace(action, callback=Callback.FAILURE, error=callback_error(action.reason))
    if action.move is Move.DELETE:  # a copy of a finished message whose task was not answered
        if s.verdict is Verdict.DELIVERED:
            return replace(action, reason="already delivered; answering its task", callback=Callback.SUCCESS)
        if s.verdict is Verdict.DEAD:
            reason, error = "already dead; answering its task", callback_error(s.last_error)
            return replace(action, reason=reason, callback=Callback.FAILURE, error=error)
    if action.holds and not s.callback_failed:
        held = replace(action, callback=Callback.HEARTBEAT)
        if rules.heartbeat_s and held.hold_s > rules.heartbeat_s:  # back in time for the next heartbeat
            # A retry time is recorded once (a halted message waits for an operator, not a time).
            recorded = s.wait_left_s or s.verdict is not Verdict.DELIVER or held.move is Move.HALT
            wait = 0 if recorded else held.hold_s
            return replace(held, hold_s=rules.heartbeat_s, wait_s=wait)
        return held
    return action


def _decide(s: Situation, rules: Rules) -> Action:
    stale = _STALE.get(s.source.result) if s.source and s.verdict is Verdict.DELIVER else None
    if stale:  # never sent, so neither a hold nor a stop of its group or run keeps it
        return Action(Move.SUPERSEDE, stale, tally=Tally.SUPERSEDED)
    if s.callback_failed:  # kept, token and all, so its task can be answered when it comes back
        return Action(Move.RELEASE, "Step Functions did not take the answer", hold_s=rules.wait_s, block=True)
    if s.dead_letter_refused:  # never delete what the dead-letter queue did not take
        return Action(Move.RELEASE, "dead-letter queue refused it", hold_s=rules.wait_s, block=True)
    if s.blocked:
        return Action(Move.RELEASE, "group held by an earlier failure", hold_s=rules.wait_s)
    if s.stopped:
        return Action(Move.RELEASE, f"run stopped: {s.stopped}", hold_s=s.resume_after_s)
    if s.verdict is Verdict.REDRIVEN:
        return Action(Move.RESTART, "redriven")
    if s.verdict is Verdict.DELIVERED:
        return Action(Move.DELETE, "already delivered", tally=Tally.ALREADY_DELIVERED)
    if s.verdict is Verdict.DEAD:
        return Action(Move.DELETE, "already dead")
    if s.verdict is Verdict.SUPERSEDED:
        return Action(Move.DELETE, "already superseded")
    if s.verdict is Verdict.SKIP:  # the operator's choice holds in strict mode too
        return Action(Move.DEAD_LETTER, SKIPPED_REASON, tally=Tally.DEAD_LETTERED)
    if s.verdict is Verdict.HALTED:
        return Action(Move.RELEASE, HALTED, hold_s=rules.halt_s, block=True)
    if s.source and s.source.result is Freshness.UNREAD:  # not an attempt: nothing is counted
        return Action(Move.RELEASE, f"item not read back: {s.source.detail}", hold_s=rules.wait_s, block=True)
    if s.source and s.source.result is Freshness.INVALID:
        return _poison(s.source.detail, rules, failure=False)
    if s.answer is None:
        if s.wait_left_s > 0:
            return Action(Move.RELEASE, "waiting for its retry", hold_s=s.wait_left_s, block=True)
        if s.late:
            return Action(Move.RELEASE, "visibility running out: released", hold_s=HEAD_HOLD_S)
        return Action(Move.ATTEMPT)
    return _after_answer(s.answer, s.attempts, rules)


_STALE = {Freshness.GONE: DELETED_REASON, Freshness.CHANGED: CHANGED_REASON}


def _after_answer(answer: Decision, attempts: int, rules: Rules) -> Action:
    outcome = answer.outcome
    if outcome is Outcome.DELIVERED:
        return Action(Move.DELIVERED, answer.reason, tally=Tally.DELIVERED, success=True)
    if outcome in (Outcome.PERMANENT, Outcome.UNSENDABLE):
        return _poison(answer.reason, rules, failure=False)
    if outcome in (Outcome.CREDENTIALS_UNAVAILABLE, Outcome.CREDENTIALS_REFUSED):
        # Not the message's doing, and no request of this run can leave without them: every
        # message stays queued, unattempted, and the run stops with the reason.
        stop = outcome.value
        return Action(
            Move.RELEASE,
            answer.reason,
            hold_s=CREDENTIALS_WAIT_S,
            block=True,
            stop=stop,
            resume_after_s=CREDENTIALS_WAIT_S,
        )
    if outcome is Outcome.RETRY and attempts >= rules.max_attempts:
        return _poison(f"{GAVE_UP} {attempts} attempts; last: {answer.reason}", rules, failure=True)
    if outcome is Outcome.SATURATED:
        wait = answer.retry_after_s or HEAD_HOLD_S
        return Action(
            Move.RELEASE,
            answer.reason,
            hold_s=wait,
            block=True,
            stop="saturated",
            resume_after_s=wait,
            tally=Tally.SATURATED,
        )
    if outcome is Outcome.AUTH:
        return Action(Move.RELEASE, answer.reason, hold_s=HEAD_HOLD_S, block=True, stop="auth")
    if outcome is Outcome.GONE:  # not the message's doing: it waits, unattempted, for a resume
        return Action(Move.RELEASE, answer.reason, hold_s=HEAD_HOLD_S, block=True, stop=outcome.value)
    return Action(
        Move.RELEASE,
        answer.reason,
        hold_s=rules.backoff.delay_s(attempts),
        block=True,
        tally=Tally.RETRIED,
        failure=True,
    )


def _poison(reason: str, rules: Rules, failure: bool) -> Action:
    if rules.ordering == "strict":
        return Action(Move.HALT, reason, hold_s=rules.halt_s, block=True, tally=Tally.HALTED, failure=failure)
    return Action(Move.DEAD_LETTER, reason, tally=Tally.DEAD_LETTERED, failure=failure)
