"""SSM keys through Powertools' SSMProvider (chalicelib/secrets.py): our client, decryption, max age,
the forced re-read after a 401/403, one read between threads, errors without the secret."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib.secrets import SecretCache, SecretError
from tests.fakes import FakeSsm, environment_outside_the_suite
from trickle_project import stage
from trickle_project.stage import packaging_env

NAME = "/trickle/test/api-key"
SECRET = "sk-live-7d2f9b1c-do-not-log"
READ = {"Name": NAME, "WithDecryption": True}


def cache(ssm: FakeSsm, max_age_s: int = 300) -> SecretCache:
    return SecretCache(SSMProvider(boto3_client=ssm), NAME, max_age_s)  # type: ignore[arg-type]


def test_one_decrypted_read_serves_many_gets() -> None:
    ssm = FakeSsm(SECRET)
    secrets = cache(ssm)
    assert ssm.calls == []  # nothing is read until asked
    assert [secrets.get() for _ in range(50)] == [SECRET] * 50
    assert ssm.calls == [READ]


def test_reads_again_once_max_age_has_passed() -> None:
    ssm = FakeSsm("old", "new")
    secrets = cache(ssm, max_age_s=1)
    first_read = time.monotonic()
    assert secrets.get() == "old"
    deadline = first_read + 30
    while secrets.get() == "old":
        assert time.monotonic() < deadline, "the value never expired"
        time.sleep(0.02)
    assert time.monotonic() - first_read >= 1.0  # not before its max age
    assert ssm.calls == [READ, READ]  # the gets in between were served from the cache


def test_zero_max_age_reads_every_time() -> None:
    ssm = FakeSsm("a", "b", "c")
    secrets = cache(ssm, max_age_s=0)
    assert [secrets.get(), secrets.get(), secrets.get()] == ["a", "b", "c"]
    assert ssm.calls == [READ, READ, READ]


def test_refresh_reads_now_and_the_next_gets_keep_the_new_value() -> None:
    ssm = FakeSsm("old", "rotated", "later")
    secrets = cache(ssm, max_age_s=300)
    assert secrets.get() == "old"
    assert secrets.refresh() == "rotated"
    assert [secrets.get(), secrets.get()] == ["rotated", "rotated"]
    assert ssm.calls == [READ, READ]


def test_keys_sharing_a_provider_are_cached_apart() -> None:
    ssm = FakeSsm("orders-key", "crm-key")
    provider = SSMProvider(boto3_client=ssm)  # type: ignore[arg-type]
    orders, crm = SecretCache(provider, "/orders", 300), SecretCache(provider, "/crm", 300)
    assert [orders.get(), crm.get(), orders.get(), crm.get()] == ["orders-key", "crm-key"] * 2
    assert [call["Name"] for call in ssm.calls] == ["/orders", "/crm"]


def test_name_is_public() -> None:
    assert cache(FakeSsm(SECRET)).name == NAME


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
    secrets = cache(FakeSsm(error))
    with pytest.raises(SecretError) as caught:
        secrets.get()
    message = str(caught.value)
    assert NAME in message
    assert SECRET not in message + repr(caught.value)
    assert SECRET[:8] not in message
    assert type(error).__name__ in message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            ClientError({"Error": {"Code": "ParameterNotFound", "Message": SECRET}}, "GetParameter"),
            "ParameterNotFound",
        ),
        (ClientError({"Error": {"Code": "ThrottlingException"}}, "GetParameter"), "ThrottlingException"),
        (EndpointConnectionError(endpoint_url="https://ssm.example"), "EndpointConnectionError"),
        (RuntimeError(SECRET), "RuntimeError"),
    ],
)
def test_error_carries_the_aws_code_or_the_type_so_a_missing_parameter_is_told_from_an_outage(
    error: Exception, code: str
) -> None:
    with pytest.raises(SecretError) as caught:
        cache(FakeSsm(error)).get()
    assert caught.value.code == code
    assert code in str(caught.value)


def test_failed_refresh_after_a_good_read_does_not_leak_the_cached_value() -> None:
    ssm = FakeSsm(SECRET, RuntimeError("ssm down"))
    secrets = cache(ssm, max_age_s=300)
    assert secrets.get() == SECRET
    with pytest.raises(SecretError) as caught:
        secrets.refresh()
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_first_read_failure_is_retried_on_next_get() -> None:
    ssm = FakeSsm(RuntimeError("throttled"), SECRET)
    secrets = cache(ssm)
    with pytest.raises(SecretError):
        secrets.get()
    assert secrets.get() == SECRET
    assert len(ssm.calls) == 2


def test_secret_error_is_a_runtime_error() -> None:
    assert issubclass(SecretError, RuntimeError)


def test_parallel_first_reads_share_one_ssm_call() -> None:
    """The provider alone would let each thread that finds the cache cold call SSM."""
    ssm = FakeSsm("k", delay_s=0.05)
    secrets = cache(ssm)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(secrets.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == ["k"] * 8
    assert len(ssm.calls) == 1


def test_importing_the_app_leaves_the_parameters_package_to_the_functions_that_read_a_key() -> None:
    """Its `__init__` imports every Powertools provider: the ingest and the routes read no key."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, app; from chalicelib import wiring; "
        "print(sorted(m for m in sys.modules if m.startswith('aws_lambda_powertools.utilities.param'))); "
        "wiring.parameters(); "
        "print('aws_lambda_powertools.utilities.parameters.ssm' in sys.modules)"
    )
    env = {
        **environment_outside_the_suite(),
        **packaging_env(stage.stage_env("prod")),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == ["[]", "True"]
