"""The secrets of a destination a stand-in answers for: what its SSM parameters
(`trickle_project.secret_parameters.needed`) hold in a local run (or the deploy proof), each the one
given (`--secret-env`, `--signing-secret-env`, `--headers-env`) or else made up fresh for the run;
and its stand-in, which requires of every request what those same values say."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlparse

from chalicelib import naming, secret_values
from chalicelib.settings import OAUTH2, Destination
from trickle_local.standin_api import Faults, StandInApi
from trickle_local.standin_bulk import MAX_BODY_BYTES, endpoint_for
from trickle_local.token_endpoint import TOKEN_PATH, TokenEndpoint
from trickle_project import stage
from trickle_project.secret_parameters import HEADERS, SIGNING, SecretParameter, needed

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


def parameter_values(destination: Destination, given: Mapping[str, str], api_key: str) -> dict[str, str]:
    """Parameter name -> value, for every parameter its drain reads: `given`'s, else made up."""
    return {p.name: given.get(p.name) or made_up(p, api_key) for p in needed(destination)}


def requiring(faults: Faults, destination: Destination, wanted: Expected) -> Faults:
    """`faults`, with what its destination sends (`wanted`: what its secrets hold) required."""
    return replace(
        faults,
        api_key=wanted.api_key,
        api_key_header=destination.api_key_header,
        api_key_scheme=destination.api_key_scheme,
        basic=wanted.basic,
        secret_headers=wanted.secret_headers,
        signing_secret=wanted.signing_secret,
    )


def stand_in_for(
    destination: Destination,
    faults: Faults,
    client: tuple[str, str] | None,
    token_lifetime_s: int,
    port: int = 0,
    bulk_max_bytes: int = MAX_BODY_BYTES,
) -> StandInApi:
    """A stand-in (not started) at the destination's URL path, with `faults`; with an OAuth2
    `client` (id, secret), its own token endpoint at its `token_url`'s path, whose unexpired tokens
    it then requires; for a batched destination, a bulk endpoint taking its batches up to
    `bulk_max_bytes` (`standin_bulk.endpoint_for`, which raises `UnservedBatchError` beyond)."""
    tokens = None
    if client is not None:
        path = urlparse(destination.token_url).path or TOKEN_PATH
        tokens = TokenEndpoint(*client, lifetime_s=token_lifetime_s, path=path)
    return StandInApi(
        faults,
        port=port,
        base_path=urlparse(destination.url).path,
        tokens=tokens,
        bulk=endpoint_for(destination, bulk_max_bytes),
    )


def pointed_at(destination: Destination, api: StandInApi) -> dict[str, str]:
    """The stage variables that send the destination to its stand-in: its URL, and its token URL
    if the stand-in issues the tokens (each with the stand-in's host, the path kept)."""
    variables = {
        stage.destination_url_variable(destination.name): stage.with_netloc(destination.url, api.url)
    }
    if api.tokens is not None:
        variables[naming.destination_variable(destination.name, "token_url")] = stage.with_netloc(
            destination.token_url, api.url
        )
    return variables
