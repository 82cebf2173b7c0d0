"""Pure delivery decisions (chalicelib/policy.py)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from chalicelib.model import ApiResponse, Unsent, UnsentKind, Verdict
from chalicelib.policy import (
    HEAD_HOLD_S,
    MAX_VISIBILITY_S,
    Backoff,
    Decision,
    Move,
    Outcome,
    Rules,
    Situation,
    backoff_s,
    classify,
    decide,
    release_plan,
    retry_after_seconds,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

Draw = Callable[[float, float], float]


def lowest(a: float, b: float) -> float:
    return a


def highest(a: float, b: float) -> float:
    return b


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


# --- classify -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    decision = classify(ApiResponse(status), now=NOW)
    assert decision.outcome is Outcome.DELIVERED
    assert decision.retry_after_s is None
    assert str(status) in decision.reason


def test_429_with_retry_after_in_seconds_is_saturated() -> None:
    decision = classify(ApiResponse(429, retry_after="7"), now=NOW)
    assert decision.outcome is Outcome.SATURATED
    assert decision.retry_after_s == 7
    assert "429" in decision.reason


def test_429_with_retry_after_as_http_date_is_saturated() -> None:
    decision = classify(ApiResponse(429, retry_after=http_date(NOW + timedelta(seconds=90))), now=NOW)
    assert decision.outcome is Outcome.SATURATED
    assert decision.retry_after_s == 90


def test_429_without_retry_after_defaults_to_one_second() -> None:
    decision = classify(ApiResponse(429), now=NOW)
    assert decision.outcome is Outcome.SATURATED
    assert decision.retry_after_s == 1


def test_503_with_retry_after_is_saturated() -> None:
    decision = classify(ApiResponse(503, retry_after="30"), now=NOW)
    assert decision.outcome is Outcome.SATURATED
    assert decision.retry_after_s == 30


def test_503_with_retry_after_as_http_date_is_saturated() -> None:
    decision = classify(ApiResponse(503, retry_after=http_date(NOW + timedelta(minutes=2))), now=NOW)
    assert decision.outcome is Outcome.SATURATED
    assert decision.retry_after_s == 120


def test_503_without_retry_after_is_retried() -> None:
    decision = classify(ApiResponse(503), now=NOW)
    assert decision.outcome is Outcome.RETRY
    assert decision.retry_after_s is None


@pytest.mark.parametrize("status", [500, 501, 502, 504, 507, 599])
def test_other_5xx_are_retried_even_with_retry_after(status: int) -> None:
    decision = classify(ApiResponse(status, retry_after="5"), now=NOW)
    assert decision.outcome is Outcome.RETRY
    assert decision.retry_after_s is None
    assert str(status) in decision.reason


@pytest.mark.parametrize("error", ["timeout", "connection error: ConnectionError"])
def test_no_response_is_retried_with_the_error_as_reason(error: str) -> None:
    decision = classify(ApiResponse(None, error=error), now=NOW)
    assert decision.outcome is Outcome.RETRY
    assert decision.reason == error


def test_no_response_without_an_error_still_has_a_reason() -> None:
    decision = classify(ApiResponse(None), now=NOW)
    assert decision.outcome is Outcome.RETRY
    assert decision.reason


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth(status: int) -> None:
    decision = classify(ApiResponse(status, retry_after="5"), now=NOW)
    assert decision.outcome is Outcome.AUTH
    assert str(status) in decision.reason


def test_410_is_gone_the_api_asks_that_nothing_more_be_sent() -> None:
    """Standard Webhooks: a sender stops on 410; the drain pauses the destination (issue #27)."""
    decision = classify(ApiResponse(410, retry_after="5"), now=NOW)
    assert (decision.outcome, decision.counted, decision.sent) == (Outcome.GONE, False, True)
    assert "410 Gone" in decision.reason


@pytest.mark.parametrize("status", [400, 404, 405, 409, 413, 422, 499])
def test_other_4xx_are_permanent(status: int) -> None:
    decision = classify(ApiResponse(status), now=NOW)
    assert decision.outcome is Outcome.PERMANENT
    assert str(status) in decision.reason


def test_4xx_with_retry_after_is_still_permanent() -> None:
    assert classify(ApiResponse(400, retry_after="5"), now=NOW).outcome is Outcome.PERMANENT


@pytest.mark.parametrize(
    ("outcome", "counted"),
    [
        (Outcome.DELIVERED, False),
        (Outcome.SATURATED, False),
        (Outcome.RETRY, True),
        (Outcome.AUTH, False),
        (Outcome.PERMANENT, True),
        (Outcome.UNSENDABLE, False),
        (Outcome.CREDENTIALS_UNAVAILABLE, False),
        (Outcome.CREDENTIALS_REFUSED, False),
    ],
)
def test_only_the_messages_own_failures_are_counted(outcome: Outcome, counted: bool) -> None:
    assert Decision(outcome, "why").counted is counted


@pytest.mark.parametrize(
    ("response", "counted"),
    [
        (ApiResponse(200), False),
        (ApiResponse(429), False),
        (ApiResponse(503, retry_after="3"), False),
        (ApiResponse(503), True),
        (ApiResponse(None, error="timeout"), True),
        (ApiResponse(401), False),
        (ApiResponse(403), False),
        (ApiResponse(422), True),
    ],
)
def test_counted_follows_classification(response: ApiResponse, counted: bool) -> None:
    assert classify(response, now=NOW).counted is counted


def test_outcome_values_are_stable_log_labels() -> None:
    assert {o.value for o in Outcome} == {
        "delivered",
        "saturated",
        "retry",
        "auth",
        "permanent",
        "unsendable",
        "credentials_unavailable",
        "credentials_refused",
        "gone",
    }


# --- retry_after_seconds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1),
        ("120", 120),
        (" 45 ", 45),
        ("0", 1),  # never less than a second
    ],
)
def test_retry_after_delta_seconds(value: str, expected: int) -> None:
    assert retry_after_seconds(value, NOW) == expected


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5", "Mon, 99 Foo 2026 00:00:00 GMT"])
def test_retry_after_missing_or_malformed_uses_the_default(value: str | None) -> None:
    assert retry_after_seconds(value, NOW) == 1
    assert retry_after_seconds(value, NOW, default=17) == 17


def test_retry_after_http_date_is_relative_to_now() -> None:
    assert retry_after_seconds("Thu, 01 Jan 2026 12:05:00 GMT", NOW) == 300


def test_retry_after_http_date_rounds_partial_seconds_up() -> None:
    now = NOW - timedelta(milliseconds=500)
    assert retry_after_seconds(http_date(NOW + timedelta(seconds=10)), now) == 11


def test_retry_after_http_date_in_the_past_is_one_second() -> None:
    assert retry_after_seconds(http_date(NOW - timedelta(hours=1)), NOW) == 1
    assert retry_after_seconds(http_date(NOW), NOW) == 1


def test_retry_after_http_date_is_capped_at_the_maximum_visibility() -> None:
    assert retry_after_seconds(http_date(NOW + timedelta(days=3)), NOW) == MAX_VISIBILITY_S


def test_retry_after_http_date_without_zone_is_taken_as_utc() -> None:
    assert retry_after_seconds("Thu, 01 Jan 2026 12:01:00 -0000", NOW) == 60


# --- backoff_s ------------------------------------------------------------------------------------

BACKOFF_CASES = [
    (30, 900),  # the stage defaults
    (1, 60),
    (5, 43_200),
    (7, 100),
    (1, 1),
    (60, 45),  # cap below the base
    (3, 1000),
]


def ceiling_of(attempts: int, base_s: int, cap_s: int) -> int:
    return min(cap_s, base_s * int(2 ** max(0, attempts - 1)))


@pytest.mark.parametrize(("base_s", "cap_s"), BACKOFF_CASES)
@pytest.mark.parametrize("draw", [lowest, highest], ids=["lowest", "highest"])
def test_backoff_stays_within_half_the_ceiling_and_the_ceiling(base_s: int, cap_s: int, draw: Draw) -> None:
    for attempts in range(1, 41):
        ceiling = ceiling_of(attempts, base_s, cap_s)
        delay = backoff_s(attempts, base_s, cap_s, draw)
        assert max(1, ceiling / 2) <= delay <= ceiling, (attempts, ceiling, delay)
        assert 1 <= delay <= cap_s


@pytest.mark.parametrize(("base_s", "cap_s"), BACKOFF_CASES)
def test_backoff_with_random_draws_stays_in_bounds(base_s: int, cap_s: int) -> None:
    rng = random.Random(1234)
    for attempts in range(1, 41):
        ceiling = ceiling_of(attempts, base_s, cap_s)
        for _ in range(20):
            delay = backoff_s(attempts, base_s, cap_s, rng.uniform)
            assert max(1, ceiling / 2) <= delay <= ceiling
            assert isinstance(delay, int)


def test_backoff_extremes_for_the_defaults() -> None:
    assert [backoff_s(n, 30, 900, lowest) for n in range(1, 8)] == [15, 30, 60, 120, 240, 450, 450]
    assert [backoff_s(n, 30, 900, highest) for n in range(1, 8)] == [30, 60, 120, 240, 480, 900, 900]


@pytest.mark.parametrize("draw", [lowest, highest], ids=["lowest", "highest"])
def test_backoff_grows_with_attempts_until_the_cap(draw: Draw) -> None:
    delays = [backoff_s(n, 10, 700, draw) for n in range(1, 30)]
    assert delays == sorted(delays)
    rising = delays[: delays.index(max(delays)) + 1]
    assert all(a < b for a, b in itertools.pairwise(rising))
    assert len(rising) >= 6  # 10, 20, 40, 80, 160, 320, then the 700 cap
    assert all(d == delays[-1] for d in delays[len(rising) :])


def test_backoff_huge_attempt_counts_do_not_overflow_the_cap() -> None:
    assert backoff_s(10_000, 30, 900, highest) == 900
    assert backoff_s(10_000, 30, 900, lowest) == 450


@pytest.mark.parametrize("attempts", [0, -3])
def test_backoff_before_any_failure_uses_the_base(attempts: int) -> None:
    assert backoff_s(attempts, 30, 900, highest) == 30
    assert backoff_s(attempts, 30, 900, lowest) == 15


def test_backoff_draws_from_the_upper_half_only() -> None:
    seen: list[tuple[float, float]] = []

    def spy(a: float, b: float) -> float:
        seen.append((a, b))
        return a

    backoff_s(3, 30, 900, spy)
    assert seen == [(0, 60.0)]


# --- release_plan ---------------------------------------------------------------------------------


def test_release_plan_of_nothing() -> None:
    assert release_plan([], 30) == []


def test_release_plan_holds_only_the_head() -> None:
    assert release_plan(["a"], 30) == [("a", 30)]
    assert release_plan(["a", "b", "c"], 30) == [("a", 30), ("b", 0), ("c", 0)]


def test_release_plan_caps_the_head_at_the_maximum_visibility() -> None:
    assert MAX_VISIBILITY_S == 43_200
    assert release_plan(["a", "b"], 100_000) == [("a", 43_200), ("b", 0)]
    assert release_plan(["a"], 43_200) == [("a", 43_200)]
    assert release_plan(["a"], 43_199) == [("a", 43_199)]


def test_release_plan_keeps_order_and_objects() -> None:
    held = [object() for _ in range(5)]
    plan = release_plan(held, HEAD_HOLD_S)
    assert [m for m, _ in plan] == held
    assert all(planned is original for (planned, _), original in zip(plan, held, strict=True))
    assert [d for _, d in plan] == [HEAD_HOLD_S, 0, 0, 0, 0]


def test_release_plan_accepts_tuples() -> None:
    assert release_plan(("x", "y"), 0) == [("x", 0), ("y", 0)]


def test_head_hold_is_short_but_positive() -> None:
    assert 0 < HEAD_HOLD_S <= 5


@pytest.mark.parametrize(("base_s", "cap_s", "half"), [(5, 100, 2.5), (45, 45, 22.5), (9, 9, 4.5)])
def test_backoff_keeps_at_least_half_of_an_odd_ceiling(base_s: int, cap_s: int, half: float) -> None:
    # round() rounds half to even, so 2.5 -> 2 and 22.5 -> 22 would drop below half the ceiling.
    assert backoff_s(1, base_s, cap_s, lowest) >= half


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [
        (UnsentKind.REFUSED, Outcome.UNSENDABLE),
        (UnsentKind.CREDENTIALS_UNAVAILABLE, Outcome.CREDENTIALS_UNAVAILABLE),
        (UnsentKind.CREDENTIALS_REFUSED, Outcome.CREDENTIALS_REFUSED),
    ],
)
def test_a_request_that_never_left_is_classified_by_why_not_as_an_attempt(
    kind: UnsentKind, outcome: Outcome
) -> None:
    """Issue 24: no credentials or an unfillable path is never mistaken for the API's answer (a
    status-less response is otherwise a retried, counted connection failure)."""
    decision = classify(ApiResponse(None, error="why", unsent=Unsent(kind, "why")), now=NOW)
    assert (decision.outcome, decision.reason, decision.counted, decision.sent) == (
        outcome,
        "why",
        False,
        False,
    )


@pytest.mark.parametrize("ordering", ["skip", "strict"])
@pytest.mark.parametrize("outcome", [Outcome.CREDENTIALS_UNAVAILABLE, Outcome.CREDENTIALS_REFUSED])
def test_without_credentials_the_message_waits_and_the_run_stops_with_the_reason(
    outcome: Outcome, ordering: str
) -> None:
    rules = Rules(ordering, 5, Backoff(30, 900, lambda a, b: a), wait_s=7, halt_s=60)
    action = decide(
        Situation(Verdict.DELIVER, answer=Decision(outcome, "token endpoint down"), attempts=2), rules
    )
    assert (action.move, action.stop, action.reason, action.block) == (
        Move.RELEASE,
        outcome.value,
        "token endpoint down",
        True,
    )
    assert (action.tally, action.failure) == (None, False)


@pytest.mark.parametrize(("ordering", "move"), [("skip", Move.DEAD_LETTER), ("strict", Move.HALT)])
def test_a_message_its_destination_cannot_address_is_poison_without_tripping_the_breaker(
    ordering: str, move: Move
) -> None:
    rules = Rules(ordering, 5, Backoff(30, 900, lambda a, b: a), wait_s=7, halt_s=60)
    reason = "path placeholder {keys.pk} is missing"
    action = decide(Situation(Verdict.DELIVER, answer=Decision(Outcome.UNSENDABLE, reason)), rules)
    assert (action.move, action.reason, action.failure) == (move, reason, False)
