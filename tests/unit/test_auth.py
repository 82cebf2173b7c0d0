"""The token check of the route authorizer (chalicelib/auth.py)."""

from __future__ import annotations

import pytest

from chalicelib.auth import token_matches

SECRET = "op-secret-1"


@pytest.mark.parametrize(
    ("presented", "allowed"),
    [
        (f"Bearer {SECRET}", True),
        (f"bearer {SECRET}", True),  # the scheme is case-insensitive (RFC 7235)
        (f"BEARER   {SECRET} ", True),
        (SECRET, True),
        (f"Bearer {SECRET}x", False),
        (f"Basic {SECRET}", False),
        (f"Bearer{SECRET}", False),
        ("Bearer", False),
        ("", False),
        (None, False),
    ],
)
def test_the_bearer_scheme_in_any_case_or_the_bare_token(presented: str | None, allowed: bool) -> None:
    assert token_matches(presented, lambda: SECRET) is allowed


def test_an_unreadable_or_empty_secret_denies() -> None:
    def unreadable() -> str:
        raise RuntimeError("SSM down")

    assert token_matches(f"Bearer {SECRET}", unreadable) is False
    assert token_matches("Bearer ", lambda: "") is False
