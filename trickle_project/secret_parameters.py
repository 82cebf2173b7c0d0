"""The SSM SecureStrings a destination's drain reads, and what each must hold.

One list, so the bootstrap (what it stores, and the commands it prints for what it was not given),
the IAM policies and the template (what each drain may read and decrypt), the stack's outputs and
the deploy guide cannot disagree on it. The checks say what is wrong with a value without ever
repeating it: it is a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib import naming
from chalicelib.settings import Destination

CREDENTIALS = "credentials"


@dataclass(frozen=True)
class SecretParameter:
    """One SecureString of a destination: its SSM name, and the shell variable a printed
    put-parameter command reads its value from (no command ever carries a secret)."""

    destination: str
    kind: str  # CREDENTIALS
    name: str
    variable: str
    holds: str  # what the value is, in words

    def problem(self, value: str) -> str | None:
        """What is wrong with `value` for this parameter, never quoting it; None if it will do."""
        what = f"{self.holds} of destination {self.destination}"
        if not value.strip():
            return f"{what} is empty"
        if value != value.strip() or "\n" in value or "\r" in value:
            return f"{what} has whitespace around it or a line break in it"
        return None


def needed(destination: Destination) -> tuple[SecretParameter, ...]:
    """The SecureStrings its drain reads."""
    name = destination.name
    return (
        SecretParameter(
            name, CREDENTIALS, destination.api_key_parameter, naming.key_variable(name), "the API key"
        ),
    )
