"""The token bucket shared by a run's deliveries (chalicelib/ratelimit.py)."""

from __future__ import annotations

import itertools
import threading

import pytest

from chalicelib.ratelimit import RateLimiter


class FakeClock:
    """Simulated time: `sleep` advances the clock instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()  # threads sleeping at once each move it by their own wait

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the limiter must not sleep for nothing"
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter_on(clock: FakeClock, rate: float, burst: int) -> RateLimiter:
    return RateLimiter(rate, burst, clock=clock, sleep=clock.sleep)


def acquisition_times(clock: FakeClock, limiter: RateLimiter, n: int) -> list[float]:
    """The simulated moment each of `n` back-to-back acquisitions is granted."""
    times: list[float] = []
    for _ in range(n):
        limiter.acquire()
        times.append(clock())
    return times


def test_a_burst_passes_without_waiting() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate=10, burst=5)
    assert [limiter.acquire() for _ in range(5)] == [0.0] * 5
    assert clock.sleeps == []
    assert clock() == 1000.0


def test_after_the_burst_requests_are_spaced_by_one_over_the_rate() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate=4, burst=3)
    times = acquisition_times(clock, limiter, 10)
    assert times[:3] == [1000.0] * 3
    gaps = [b - a for a, b in itertools.pairwise(times[2:])]
    assert gaps == pytest.approx([0.25] * 7)
    assert clock.sleeps == pytest.approx([0.25] * 7)


def test_acquire_returns_the_seconds_waited() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate=2, burst=1)
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.5)
    assert limiter.acquire() == pytest.approx(0.5)


@pytest.mark.parametrize(("rate", "burst", "n"), [(10, 5, 100), (1, 1, 20), (0.5, 3, 13), (250, 40, 1000)])
def test_total_time_is_what_exceeds_the_burst_over_the_rate(rate: float, burst: int, n: int) -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate, burst)
    acquisition_times(clock, limiter, n)
    assert clock() - 1000.0 == pytest.approx((n - burst) / rate)
    assert sum(clock.sleeps) == pytest.approx((n - burst) / rate)


def test_idle_time_refills_the_bucket_but_never_beyond_the_burst() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate=10, burst=3)
    acquisition_times(clock, limiter, 3)  # empty
    clock.advance(3600)  # an hour idle: still only three tokens
    start = clock()
    times = acquisition_times(clock, limiter, 5)
    assert times[:3] == [start] * 3
    assert times[3] - start == pytest.approx(0.1)
    assert times[4] - start == pytest.approx(0.2)


def test_partial_refill_shortens_the_wait() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate=10, burst=1)
    limiter.acquire()
    clock.advance(0.04)  # 0.4 of a token back
    assert limiter.acquire() == pytest.approx(0.06)


def test_requests_slower_than_the_rate_never_wait() -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate=5, burst=1)
    for _ in range(20):
        assert limiter.acquire() == 0.0
        clock.advance(0.2)
    assert clock.sleeps == []


@pytest.mark.parametrize("burst", [0, -4])
def test_burst_is_at_least_one(burst: int) -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate=10, burst=burst)
    assert limiter.burst == 1
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.1)


def test_concurrent_threads_share_one_budget() -> None:
    """Four threads wait on one clock: forty acquisitions at 200/s with a burst of 1 take it at least
    39/200 s on, however the threads interleave (a bucket per thread: at most 36/200)."""
    rate, burst, threads, per_thread = 200.0, 1, 4, 10
    total = threads * per_thread
    clock = FakeClock()
    limiter = limiter_on(clock, rate, burst)
    start = threading.Barrier(threads)
    errors: list[BaseException] = []
    waited: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                w = limiter.acquire()
                with lock:
                    waited.append(w)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in pool)  # nobody deadlocked
    assert not errors
    assert len(waited) == total
    assert clock() - 1000.0 >= (total - burst) / rate - 1e-9
    assert clock() - 1000.0 == pytest.approx(sum(clock.sleeps))


def test_concurrent_threads_each_get_their_own_slot() -> None:
    """With time frozen, N concurrent acquisitions must hand out N distinct slots: `burst` free ones,
    then 1/rate, 2/rate, ... A lost update under contention would hand two threads the same slot."""
    rate, burst, threads, per_thread = 100.0, 3, 8, 25
    frozen = 50.0
    limiter = RateLimiter(rate, burst, clock=lambda: frozen, sleep=lambda _s: None)
    start = threading.Barrier(threads)
    waited: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()
        for _ in range(per_thread):
            w = limiter.acquire()
            with lock:
                waited.append(w)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=10)
    total = threads * per_thread
    assert len(waited) == total
    expected = [0.0] * burst + [k / rate for k in range(1, total - burst + 1)]
    assert sorted(waited) == pytest.approx(expected)
