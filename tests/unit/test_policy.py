"""Pure delivery decisions (chalicelib/policy.py)."""

from __future__ import annotations

import pytest

from chalicelib.api_client import ApiResponse
from chalicelib.policy import HEAD_HOLD_S, Outcome, classify, release_plan


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert classify(ApiResponse(status)) is Outcome.DELIVERED


@pytest.mark.parametrize(
    "status", [100, 199, 300, 301, 304, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504]
)
def test_everything_else_is_retried(status: int) -> None:
    assert classify(ApiResponse(status, retry_after="5")) is Outcome.RETRY


@pytest.mark.parametrize("error", ["timeout", "connection error: ConnectionError"])
def test_no_response_is_retried(error: str) -> None:
    assert classify(ApiResponse(None, error=error)) is Outcome.RETRY


def test_outcome_values_are_stable_log_labels() -> None:
    assert Outcome.DELIVERED.value == "delivered"
    assert Outcome.RETRY.value == "retry"


def test_release_plan_of_nothing() -> None:
    assert release_plan([], 30) == []


def test_release_plan_holds_only_the_head() -> None:
    assert release_plan(["a"], 30) == [("a", 30)]
    assert release_plan(["a", "b", "c"], 30) == [("a", 30), ("b", 0), ("c", 0)]


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
