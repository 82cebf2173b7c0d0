"""Token authorization for callers outside AWS: the token lives in SSM, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable


def token_matches(presented: str | None, expected: Callable[[], str]) -> bool:
    """`Authorization: Bearer <token>` (the scheme in any case, RFC 7235) or the bare token; any
    failure to read the secret denies."""
    if not presented:
        return False
    scheme, _, rest = presented.strip().partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else presented.strip()
    try:
        secret = expected()
    except Exception:  # an unreadable secret must deny, never open the door or leak why
        return False
    return bool(secret) and hmac.compare_digest(token.encode(), secret.encode())
