"""Token authorization for callers outside AWS: the token lives in SSM, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable


def token_matches(presented: str | None, expected: Callable[[], str]) -> bool:
    """`Authorization: Bearer <token>` or the bare token; any failure to read the secret denies."""
    if not presented:
        return False
    token = presented.removeprefix("Bearer ").strip()
    try:
        secret = expected()
    except Exception:  # an unreadable secret must deny, never open the door or leak why
        return False
    return bool(secret) and hmac.compare_digest(token.encode(), secret.encode())
