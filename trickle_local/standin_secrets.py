"""The secrets of a destination a stand-in answers for: what its SSM parameters
(`trickle_project.secret_parameters.needed`) hold in a local run, each the one given (`--secret-env`,
`--signing-secret-env`, `--headers-env`) or else made up fresh for the run, and what its stand-in
then requires of every request, read from those same values."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from chalicelib import secret_values
from chalicelib.settings import OAUTH2
from trickle_project.secret_parameters import HEADERS, SIGNING, SecretParameter

Random = Callable[[int], bytes]  # n random bytes (secrets.token_bytes; a test gives fixed ones)


def _text(random: Random, n: int) -> str:
    return base64.urlsafe_b64encode(random(n)).decode().rstrip("=")


def made_up(parameter: SecretParameter, api_key: str, random: Random = secrets.token_bytes) -> str:
    """A value of the shape `parameter` holds (its `problem` finds none in it); API keys are the
    run's one `api_key` (`--api-key`, or a random one), as before there were other kinds."""
    if parameter.kind == SIGNING:
        return "whsec_" + base64.b64encode(random(32)).decode()
    if parameter.kind == HEADERS:
        return json.dumps({name: f"local-{_text(random, 12)}" for name in parameter.header_names})
    if parameter.shape == "basic":
        return json.dumps({"username": f"trickle-{parameter.destination}", "password": _text(random, 16)})
    if parameter.shape == OAUTH2:
        return json.dumps(
            {"client_id": f"trickle-{parameter.destination}", "client_secret": _text(random, 24)}
        )
    return api_key


@dataclass(frozen=True)
class Expected:
    """What a stand-in requires: the fields of `trickle_local.standin_api.Faults` of that name,
    and `client`, the OAuth2 client (id, secret) its token endpoint knows."""

    api_key: str | None = None
    basic: tuple[str, str] | None = None
    client: tuple[str, str] | None = None
    secret_headers: dict[str, str] | None = None
    signing_secret: str | None = None  # the first of the secrets: every request is signed with each


def expected(parameters: Sequence[SecretParameter], values: Mapping[str, str]) -> Expected:
    """Read from the value of each parameter (by name; values already checked, or made up here) as
    the drain reads it (`chalicelib.secret_values`): an API key without the white space around it,
    header values by their routes-file names."""
    wanted = Expected()
    for parameter in parameters:
        value = values[parameter.name]
        if parameter.kind == SIGNING:
            wanted = replace(wanted, signing_secret=value.split()[0])
        elif parameter.kind == HEADERS:
            wanted = replace(
                wanted, secret_headers=secret_values.secret_headers(value, parameter.header_names)
            )
        elif parameter.shape == "basic":
            wanted = replace(wanted, basic=secret_values.basic(value))
        elif parameter.shape == OAUTH2:
            wanted = replace(wanted, client=secret_values.oauth2_client(value))
        else:
            wanted = replace(wanted, api_key=secret_values.api_key(value))
    return wanted
