"""SSM parameter cache (chalicelib/secrets.py)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib.secrets import SecretCache, SecretError

NAME = "/trickle/test/api-key"
SECRET = "sk-live-7d2f9b1c-do-not-log"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSsm:
    """get_parameter returning the values (or raising the exceptions) queued in `script`."""

    def __init__(self, *script: str | Exception) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []

    def get_parameter(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return {"Parameter": {"Name": kwargs["Name"], "Type": "SecureString", "Value": step, "Version": 1}}


def cache(ssm: FakeSsm, clock: FakeClock, max_age_s: float = 300) -> SecretCache:
    return SecretCache(ssm, NAME, max_age_s, clock=clock)


def test_one_read_serves_many_gets() -> None:
    ssm, clock = FakeSsm(SECRET), FakeClock()
    secrets = cache(ssm, clock)
    assert ssm.calls == []  # nothing is read until asked
    for step in range(50):
        clock.now = 1000.0 + step
        assert secrets.get() == SECRET
    assert ssm.calls == [{"Name": NAME, "WithDecryption": True}]


def test_refreshes_once_max_age_has_passed() -> None:
    ssm, clock = FakeSsm("old", "new"), FakeClock(1000.0)
    secrets = cache(ssm, clock, max_age_s=300)
    assert secrets.get() == "old"
    clock.now = 1299.999
    assert secrets.get() == "old"
    assert len(ssm.calls) == 1
    clock.now = 1300.0
    assert secrets.get() == "new"
    assert len(ssm.calls) == 2
    clock.now = 1599.0
    assert secrets.get() == "new"
    assert len(ssm.calls) == 2


def test_zero_max_age_reads_every_time() -> None:
    ssm, clock = FakeSsm("a", "b", "c"), FakeClock()
    secrets = cache(ssm, clock, max_age_s=0)
    assert [secrets.get(), secrets.get(), secrets.get()] == ["a", "b", "c"]
    assert len(ssm.calls) == 3
    assert all(call == {"Name": NAME, "WithDecryption": True} for call in ssm.calls)


def test_refresh_forces_a_read_and_restarts_the_age() -> None:
    ssm, clock = FakeSsm("old", "rotated"), FakeClock(0.0)
    secrets = cache(ssm, clock, max_age_s=100)
    assert secrets.get() == "old"
    clock.now = 90.0
    assert secrets.refresh() == "rotated"
    clock.now = 150.0  # 150 s after the first read, 60 s after the refresh
    assert secrets.get() == "rotated"
    assert len(ssm.calls) == 2


def test_name_is_public() -> None:
    assert cache(FakeSsm(SECRET), FakeClock()).name == NAME


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "ParameterNotFound", "Message": f"was {SECRET}"}}, "GetParameter"),
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": SECRET}}, "GetParameter"),
        EndpointConnectionError(endpoint_url=f"https://ssm.example/{SECRET}"),
        RuntimeError(SECRET),
    ],
)
def test_error_names_the_parameter_never_the_secret(error: Exception) -> None:
    secrets = cache(FakeSsm(error), FakeClock())
    with pytest.raises(SecretError) as caught:
        secrets.get()
    message = str(caught.value)
    assert NAME in message
    assert SECRET not in message
    assert SECRET[:8] not in message
    assert type(error).__name__ in message


def test_failed_refresh_after_a_good_read_does_not_leak_the_cached_value() -> None:
    ssm, clock = FakeSsm(SECRET, RuntimeError("ssm down")), FakeClock(0.0)
    secrets = cache(ssm, clock, max_age_s=10)
    assert secrets.get() == SECRET
    clock.now = 10.0
    with pytest.raises(SecretError) as caught:
        secrets.get()
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_first_read_failure_is_retried_on_next_get() -> None:
    ssm, clock = FakeSsm(RuntimeError("throttled"), SECRET), FakeClock()
    secrets = cache(ssm, clock)
    with pytest.raises(SecretError):
        secrets.get()
    assert secrets.get() == SECRET
    assert len(ssm.calls) == 2


def test_secret_error_is_a_runtime_error() -> None:
    assert issubclass(SecretError, RuntimeError)


def test_parallel_first_reads_share_one_ssm_call() -> None:
    import threading
    import time as real_time

    class SlowSsm:
        def __init__(self) -> None:
            self.calls = 0

        def get_parameter(self, **_: object) -> dict[str, dict[str, str]]:
            self.calls += 1
            real_time.sleep(0.05)
            return {"Parameter": {"Value": "k"}}

    ssm = SlowSsm()
    cache = SecretCache(ssm, "/p", max_age_s=300)
    threads = [threading.Thread(target=cache.get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ssm.calls == 1
