"""`policy.decide` as a table: every (verdict, answer, attempts, rules) the drain can meet, and the
action it must take. The drain only carries actions out, so this table is its behaviour."""

from __future__ import annotations

import pytest

from chalicelib.freshness import Check, Freshness
from chalicelib.model import Verdict
from chalicelib.policy import (
    HEAD_HOLD_S,
    Action,
    Backoff,
    Decision,
    Move,
    Outcome,
    Rules,
    Situation,
    Tally,
    decide,
)


def fixed_draw(low: float, high: float) -> float:
    return high  # the top of the jitter range: delays are exactly the capped exponential


SKIP = Rules(ordering="skip", max_attempts=3, backoff=Backoff(10, 100, fixed_draw), wait_s=30, halt_s=900)
STRICT = Rules(ordering="strict", max_attempts=3, backoff=Backoff(10, 100, fixed_draw), wait_s=30, halt_s=900)

OK = Decision(Outcome.DELIVERED, "HTTP 200")
E503 = Decision(Outcome.RETRY, "HTTP 503")
E400 = Decision(Outcome.PERMANENT, "HTTP 400: refused by the API")
E429 = Decision(Outcome.SATURATED, "HTTP 429", retry_after_s=7)
E429_NO_HINT = Decision(Outcome.SATURATED, "HTTP 429", retry_after_s=None)
E401 = Decision(Outcome.AUTH, "HTTP 401")
E410 = Decision(Outcome.GONE, "HTTP 410 Gone")

D = Verdict.DELIVER
GONE, CHANGED, CURRENT = Check(Freshness.GONE), Check(Freshness.CHANGED), Check(Freshness.CURRENT)
UNREAD = Check(Freshness.UNREAD, "BatchGetItem failed")
INVALID = Check(Freshness.INVALID, "trickle-fingerprint is missing or empty")
DELETED_SINCE = Action(Move.SUPERSEDE, "deleted since backfill", tally=Tally.SUPERSEDED)
CHANGED_SINCE = Action(Move.SUPERSEDE, "superseded: item changed since backfill", tally=Tally.SUPERSEDED)
TABLE: list[tuple[str, Situation, Rules, Action]] = [
    # before an attempt: the ledger's verdict
    ("fresh message", Situation(D), SKIP, Action(Move.ATTEMPT)),
    (
        "already delivered",
        Situation(Verdict.DELIVERED),
        SKIP,
        Action(Move.DELETE, "already delivered", tally=Tally.ALREADY_DELIVERED),
    ),
    ("stale copy of a dead one", Situation(Verdict.DEAD), SKIP, Action(Move.DELETE, "already dead")),
    ("redriven copy", Situation(Verdict.REDRIVEN), SKIP, Action(Move.RESTART, "redriven")),
    (
        "operator skip, skip mode",
        Situation(Verdict.SKIP),
        SKIP,
        Action(Move.DEAD_LETTER, "skipped by an operator", tally=Tally.DEAD_LETTERED),
    ),
    (
        "operator skip, strict mode",
        Situation(Verdict.SKIP),
        STRICT,
        Action(Move.DEAD_LETTER, "skipped by an operator", tally=Tally.DEAD_LETTERED),
    ),
    (
        "halted, waiting for an operator",
        Situation(Verdict.HALTED),
        STRICT,
        Action(Move.RELEASE, "halted", hold_s=900, block=True),
    ),
    # gates that hold a message whatever the ledger says
    (
        "group held earlier in the run",
        Situation(D, blocked=True),
        SKIP,
        Action(Move.RELEASE, "group held by an earlier failure", hold_s=30),
    ),
    (
        "blocked wins over delivered",
        Situation(Verdict.DELIVERED, blocked=True),
        SKIP,
        Action(Move.RELEASE, "group held by an earlier failure", hold_s=30),
    ),
    (
        "run stopped by a 429",
        Situation(D, stopped="saturated", resume_after_s=12),
        SKIP,
        Action(Move.RELEASE, "run stopped: saturated", hold_s=12),
    ),
    (
        "visibility running out",
        Situation(D, late=True),
        SKIP,
        Action(Move.RELEASE, "visibility running out: released", hold_s=HEAD_HOLD_S),
    ),
    (
        "dead-letter queue refused",
        Situation(D, dead_letter_refused=True),
        SKIP,
        Action(Move.RELEASE, "dead-letter queue refused it", hold_s=30, block=True),
    ),
    # a backfilled message, its item read back this round (issue #26)
    ("backfilled, item unchanged", Situation(D, source=CURRENT), SKIP, Action(Move.ATTEMPT)),
    ("backfilled, item deleted since", Situation(D, source=GONE), SKIP, DELETED_SINCE),
    ("backfilled, item changed since", Situation(D, source=CHANGED), SKIP, CHANGED_SINCE),
    ("stale, strict mode: never halts", Situation(D, source=CHANGED), STRICT, CHANGED_SINCE),
    (
        "stale in a held group: settled all the same",
        Situation(D, source=GONE, blocked=True),
        SKIP,
        DELETED_SINCE,
    ),
    (
        "stale in a stopped run: settled all the same",
        Situation(D, source=CHANGED, stopped="saturated"),
        SKIP,
        CHANGED_SINCE,
    ),
    (
        "stale but already delivered: the ledger's word",
        Situation(Verdict.DELIVERED, source=CHANGED),
        SKIP,
        Action(Move.DELETE, "already delivered", tally=Tally.ALREADY_DELIVERED),
    ),
    (
        "settled superseded earlier",
        Situation(Verdict.SUPERSEDED),
        SKIP,
        Action(Move.DELETE, "already superseded"),
    ),
    (
        "item not read back: waits, its group behind it, nothing counted",
        Situation(D, source=UNREAD),
        SKIP,
        Action(Move.RELEASE, "item not read back: BatchGetItem failed", hold_s=30, block=True),
    ),
    (
        "unreadable claim, skip mode: dead-lettered, never sent unchecked",
        Situation(D, source=INVALID),
        SKIP,
        Action(Move.DEAD_LETTER, "trickle-fingerprint is missing or empty", tally=Tally.DEAD_LETTERED),
    ),
    (
        "unreadable claim, strict mode",
        Situation(D, source=INVALID),
        STRICT,
        Action(
            Move.HALT, "trickle-fingerprint is missing or empty", hold_s=900, block=True, tally=Tally.HALTED
        ),
    ),
    # after an attempt: the answer
    (
        "2xx",
        Situation(D, answer=OK, attempts=1),
        SKIP,
        Action(Move.DELIVERED, "HTTP 200", tally=Tally.DELIVERED, success=True),
    ),
    (
        "5xx, first attempt: backoff base",
        Situation(D, answer=E503, attempts=1),
        SKIP,
        Action(Move.RELEASE, "HTTP 503", hold_s=10, block=True, tally=Tally.RETRIED, failure=True),
    ),
    (
        "5xx, second attempt: backoff doubles",
        Situation(D, answer=E503, attempts=2),
        SKIP,
        Action(Move.RELEASE, "HTTP 503", hold_s=20, block=True, tally=Tally.RETRIED, failure=True),
    ),
    (
        "5xx, out of attempts, skip mode",
        Situation(D, answer=E503, attempts=3),
        SKIP,
        Action(
            Move.DEAD_LETTER,
            "gave up after 3 attempts; last: HTTP 503",
            tally=Tally.DEAD_LETTERED,
            failure=True,
        ),
    ),
    (
        "5xx, out of attempts, strict mode",
        Situation(D, answer=E503, attempts=3),
        STRICT,
        Action(
            Move.HALT,
            "gave up after 3 attempts; last: HTTP 503",
            hold_s=900,
            block=True,
            tally=Tally.HALTED,
            failure=True,
        ),
    ),
    (
        "4xx poison, skip mode",
        Situation(D, answer=E400, attempts=1),
        SKIP,
        Action(Move.DEAD_LETTER, "HTTP 400: refused by the API", tally=Tally.DEAD_LETTERED),
    ),
    (
        "4xx poison, strict mode",
        Situation(D, answer=E400, attempts=1),
        STRICT,
        Action(Move.HALT, "HTTP 400: refused by the API", hold_s=900, block=True, tally=Tally.HALTED),
    ),
    (
        "429 with Retry-After: the run stops for that long",
        Situation(D, answer=E429, attempts=0),
        SKIP,
        Action(
            Move.RELEASE,
            "HTTP 429",
            hold_s=7,
            block=True,
            stop="saturated",
            resume_after_s=7,
            tally=Tally.SATURATED,
        ),
    ),
    (
        "429 without a hint",
        Situation(D, answer=E429_NO_HINT, attempts=0),
        SKIP,
        Action(
            Move.RELEASE,
            "HTTP 429",
            hold_s=HEAD_HOLD_S,
            block=True,
            stop="saturated",
            resume_after_s=HEAD_HOLD_S,
            tally=Tally.SATURATED,
        ),
    ),
    (
        "401 after the key was re-read",
        Situation(D, answer=E401, attempts=0),
        SKIP,
        Action(Move.RELEASE, "HTTP 401", hold_s=HEAD_HOLD_S, block=True, stop="auth"),
    ),
    (
        "410 Gone: the run stops, the message waits unattempted (its destination is paused)",
        Situation(D, answer=E410, attempts=0),
        SKIP,
        Action(Move.RELEASE, "HTTP 410 Gone", hold_s=HEAD_HOLD_S, block=True, stop="gone"),
    ),
    (
        "410 Gone in strict mode: never a halt, however many attempts",
        Situation(D, answer=E410, attempts=99),
        STRICT,
        Action(Move.RELEASE, "HTTP 410 Gone", hold_s=HEAD_HOLD_S, block=True, stop="gone"),
    ),
    (
        "saturation is never poison, however many attempts",
        Situation(D, answer=E429, attempts=99),
        SKIP,
        Action(
            Move.RELEASE,
            "HTTP 429",
            hold_s=7,
            block=True,
            stop="saturated",
            resume_after_s=7,
            tally=Tally.SATURATED,
        ),
    ),
]


@pytest.mark.parametrize(
    ("situation", "rules", "action"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE]
)
def test_decide(situation: Situation, rules: Rules, action: Action) -> None:
    assert decide(situation, rules) == action


def test_backoff_grows_until_the_cap() -> None:
    holds = [decide(Situation(D, answer=E503, attempts=n), SKIP).hold_s for n in (1, 2, 3)]
    many = Rules("skip", 100, Backoff(10, 100, fixed_draw), 30, 900)
    longer = [decide(Situation(D, answer=E503, attempts=n), many).hold_s for n in range(1, 8)]

    assert holds[:2] == [10, 20]
    assert longer == [10, 20, 40, 80, 100, 100, 100]


@pytest.mark.parametrize("move", list(Move))
def test_only_finished_messages_let_the_group_go_on(move: Move) -> None:
    finished = (Move.DELIVERED, Move.DELETE, Move.DEAD_LETTER, Move.SUPERSEDE)
    assert Action(move).group_goes_on is (move in finished)
