"""The SSM SecureStrings a destination's drain reads, and what each must hold.

One list, so the bootstrap (what it stores, and the commands it prints for what it was not given),
the IAM policies and the template (what each drain may read and decrypt), the stack's outputs and
the deploy guide cannot disagree on it. The checks say what is wrong with a value without ever
repeating any of it: it is a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chalicelib import naming, secret_values
from chalicelib.secret_values import SecretValueError, json_shape
from chalicelib.settings import OAUTH2, Destination

# The kinds of secret a destination may have, each in a parameter of its own.
CREDENTIALS = "credentials"  # the API key, or the JSON of the Basic or OAuth2 credentials
SIGNING = "signing"  # its whsec_ signing secret(s)
HEADERS = "headers"  # the JSON of its secret headers' values

API_KEY = "api_key"  # the auth kind whose credentials are a bare key
# The JSON fields of the credentials, by auth kind.
CREDENTIAL_FIELDS = {"basic": secret_values.BASIC_FIELDS, OAUTH2: secret_values.CLIENT_FIELDS}


@dataclass(frozen=True)
class SecretParameter:
    """One SecureString of a destination: its SSM name, and the shell variable a printed
    put-parameter command reads its value from (no command ever carries a secret)."""

    destination: str
    kind: str  # CREDENTIALS, SIGNING or HEADERS
    name: str
    variable: str
    # What its value is checked as: an auth kind ("api_key", "basic", OAUTH2) for the credentials,
    # else the kind itself.
    shape: str
    header_names: tuple[str, ...] = ()  # HEADERS: the destination's secret_headers

    @property
    def what(self) -> str:
        """What the value is, in words."""
        if self.shape in CREDENTIAL_FIELDS:
            return "the Basic credentials" if self.shape == "basic" else "the OAuth2 client credentials"
        return {SIGNING: "the signing secret", HEADERS: "the secret headers' values"}.get(
            self.kind, "the API key"
        )

    @property
    def form(self) -> str:
        """How the value is written ("" for a bare key)."""
        if self.kind == SIGNING:
            return "whsec_<base64> (two, space-separated, during a rotation)"
        fields = CREDENTIAL_FIELDS.get(self.shape, self.header_names)
        return f"JSON {json_shape(fields)}" if fields else ""

    @property
    def holds(self) -> str:
        """What its variable must hold, for the comment beside a printed command."""
        return f"{self.what} of {self.destination}" + (f", {self.form}" if self.form else "")

    def problem(self, value: str) -> str | None:
        """What is wrong with `value` for this parameter, as the drain that reads it would find it
        (`chalicelib.secret_values`), never quoting any of it; None if it will do."""
        try:
            if self.kind == SIGNING:
                secret_values.signing_keys(value)
            elif self.kind == HEADERS:
                secret_values.secret_headers(value, self.header_names)
            elif self.shape == "basic":
                secret_values.basic(value)
            elif self.shape == OAUTH2:
                secret_values.oauth2_client(value)
            else:
                secret_values.api_key(value)
        except SecretValueError as error:
            return str(error)
        return None


def needed(destination: Destination) -> tuple[SecretParameter, ...]:
    """The SecureStrings its drain reads: its credentials (unless auth = none), its signing secret
    (if it signs), its secret headers' values (if it has any)."""
    name = destination.name
    parameters = []
    if destination.auth != "none":
        parameters.append(
            SecretParameter(
                name,
                CREDENTIALS,
                destination.api_key_parameter,
                naming.key_variable(name),
                destination.auth,
            )
        )
    if destination.signing:
        parameters.append(
            SecretParameter(
                name, SIGNING, destination.signing_parameter, naming.signing_variable(name), SIGNING
            )
        )
    if destination.secret_headers:
        parameters.append(
            SecretParameter(
                name,
                HEADERS,
                destination.headers_parameter,
                naming.headers_variable(name),
                HEADERS,
                destination.secret_headers,
            )
        )
    return tuple(parameters)


# The option that hands the bootstrap (and the local runtime) one kind of secret, per destination
# (DESTINATION=VARIABLE).
SECRET_OPTIONS = {CREDENTIALS: "--secret-env", SIGNING: "--signing-secret-env", HEADERS: "--headers-env"}
# Why a destination takes no secret of a kind.
NOT_READ = {
    CREDENTIALS: 'has auth = "none": it reads no credentials',
    SIGNING: "signs nothing (no signing in the routes file)",
    HEADERS: "has no secret_headers",
}
ORDINALS = ("1st", "2nd", "3rd")


def _ordinal(n: int) -> str:
    return ORDINALS[n - 1] if n <= len(ORDINALS) else f"{n}th"


def secrets_from_env(
    stage: str,
    destinations: Sequence[Destination],
    given: Mapping[str, Sequence[str]],
    api_key_env: str | None,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """Parameter name -> value, for each `DESTINATION=VARIABLE` given per kind of secret
    (`SECRET_OPTIONS`); `--api-key-env VAR` stands for `--secret-env D=VAR` when the stage has one
    destination D only. ValueError with every problem, a line each, none quoting a value (what
    follows `=` may be a value typed by mistake, so only a variable's name is ever repeated)."""
    by_name = {d.name: d for d in destinations}
    entries = {kind: list(given.get(kind, ())) for kind in SECRET_OPTIONS}
    problems: list[str] = []
    if api_key_env is not None:
        if len(destinations) == 1:
            entries[CREDENTIALS].insert(0, f"{destinations[0].name}={api_key_env}")
        else:
            per_destination = " ".join(f"--secret-env {d.name}=VAR" for d in destinations)
            problems.append(
                f"--api-key-env gives every destination the same key, and stage {stage} has"
                f" {len(destinations)} ({', '.join(by_name)}): give each its own, {per_destination}"
            )
    values: dict[str, str] = {}
    for kind, option in SECRET_OPTIONS.items():
        seen: set[str] = set()
        for n, entry in enumerate(entries[kind], start=1):
            name, _, variable = entry.partition("=")
            if not name or not variable.isidentifier():
                problems.append(
                    f"{option} (the {_ordinal(n)}) is not DESTINATION=VARIABLE: after the = comes the name"
                    " of an environment variable that holds the value, never the value itself"
                )
                continue
            where = f"{option} {name}={variable}"
            if name not in by_name:
                problems.append(
                    f"{where}: stage {stage} has no destination {name!r} (it has: {', '.join(by_name)})"
                )
                continue
            wanted = {p.kind: p for p in needed(by_name[name])}
            if name in seen:
                problems.append(f"{option} names destination {name} twice")
                continue
            seen.add(name)
            if kind not in wanted:
                problems.append(f"{where}: destination {name} {NOT_READ[kind]}")
                continue
            value = environ.get(variable)
            if not value:
                state = "empty" if value == "" else "not set"
                problems.append(f"{where}: environment variable {variable} is {state}")
                continue
            problem = wanted[kind].problem(value)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
            values[wanted[kind].name] = value
    if problems:
        raise ValueError("\n".join(problems))
    return values
