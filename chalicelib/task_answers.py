"""What a Step Functions task waiting for a message is told: the output of its success (the API's
answer) and the cause of its failure (why the message died). Pure: the drain builds the answers
(`chalicelib.drain_tasks`), the `SendTask*` adapter (`chalicelib.callbacks`) sends them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalicelib import strict_json
from chalicelib.model import iso_utc

MAX_OUTPUT_BYTES = 262_144  # Step Functions' limit on a task's output (UTF-8)
MAX_CAUSE_CHARS = 32_768
# How long a task output's `body_url` (a presigned GET of the archived answer) works: long enough
# for the workflow's next steps, short for a bearer link; signed with the drain's temporary
# credentials, it stops working earlier if they expire first.
BODY_URL_EXPIRES_S = 3600


def success_output(
    message_id: str,
    destination: str,
    status_code: int | None,
    body: str | None,
    attempts: int,
    delivered_at: float | None,
    body_url: Callable[[], str] | None = None,
) -> str:
    """The task's output: the API's answer, its body parsed when it is JSON (text otherwise). An
    answer over Step Functions' 256 KB goes as `body_url`, a presigned URL of the full answer in
    the response archive (`body_url` given: it is there), with `body` null and `body_truncated`
    set; without an archive the body is cut to fit, with `body_truncated` set. `body` None: not
    known any more (an earlier drain delivered it and could not answer), said by `body_unavailable`."""
    parsed: Any = body
    if body:
        try:
            parsed = strict_json.loads(body.encode())
        except (strict_json.JsonInputError, UnicodeError):
            parsed = body
    document: dict[str, Any] = {
        "message_id": message_id,
        "destination": destination,
        "status_code": status_code,
        "body": parsed,
        "attempts": attempts,
        "delivered_at": iso_utc(delivered_at) if delivered_at is not None else None,
        "body_truncated": False,
    }
    if body is None:
        document["body_unavailable"] = True
    text = json.dumps(document, ensure_ascii=False)
    if len(text.encode()) <= MAX_OUTPUT_BYTES:
        return text
    document["body_truncated"] = True
    if body_url is not None:
        return json.dumps(document | {"body": None, "body_url": body_url()}, ensure_ascii=False)
    text_body = body or ""

    def cut(keep: int) -> str:
        return json.dumps(document | {"body": text_body[:keep]}, ensure_ascii=False)

    low, high = 0, len(text_body)  # the longest prefix that fits (escaping makes sizes non-linear)
    while low < high:
        middle = (low + high + 1) // 2
        if len(cut(middle).encode()) <= MAX_OUTPUT_BYTES:
            low = middle
        else:
            high = middle - 1
    return cut(low)


def failure_cause(
    message_id: str, destination: str, reason: str, status_code: int | None, attempts: int
) -> str:
    """Why the task fails: the reason and the last status code, never the key or the payload (the
    API's response excerpt stays in the dead letter, where only operators read it)."""
    cause = {
        "message_id": message_id,
        "destination": destination,
        "reason": reason[:2000],
        "status_code": status_code,
        "attempts": attempts,
    }
    return json.dumps(cause, ensure_ascii=False)[:MAX_CAUSE_CHARS]
