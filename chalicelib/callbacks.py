"""Step Functions callbacks: a message sent with a task token (`sqs:sendMessage.waitForTaskToken`,
or `POST /messages` with `task_token`) has a task waiting for it. The drain answers that task once:
`SendTaskSuccess` with the API's answer, `SendTaskFailure` when the message is dead-lettered, and
`SendTaskHeartbeat` while it is retried or held.

The token travels only on the destination's queue (`trickle-task-token`); dead letters never carry
it, since their task has been answered (or is answered from the source copy) by the time they exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import strict_json
from chalicelib.model import CallbackResult, iso_utc

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 2048  # SendTask*'s taskToken limit
MAX_OUTPUT_BYTES = 262_144  # Step Functions' limit on a task's output (UTF-8)
MAX_CAUSE_CHARS = 32_768
# How long a task output's `body_url` (a presigned GET of the archived answer) works: long enough
# for the workflow's next steps, short for a bearer link; signed with the drain's temporary
# credentials, it stops working earlier if they expire first.
BODY_URL_EXPIRES_S = 3600
# The task is gone (timed out, finished, never existed): answering again can never succeed.
REJECTED_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})


class StepFunctionsCallbacks:
    """`SendTask*` over a boto3 `stepfunctions` client, one call per answer: the client's own
    retries (botocore's standard mode, `chalicelib.wiring`) take care of throttling and 5xx. An
    answer that still fails is kept and sent again when the message comes back, so a slow Step
    Functions never makes the drain post to the API again."""

    def __init__(self, client: Any) -> None:
        """`client`: Any, as no stubs for stepfunctions are installed (requirements-dev.txt)."""
        self._client = client

    def success(self, token: str, output: str) -> CallbackResult:
        return self._call("SendTaskSuccess", self._client.send_task_success, taskToken=token, output=output)

    def failure(self, token: str, error: str, cause: str) -> CallbackResult:
        send = self._client.send_task_failure
        return self._call("SendTaskFailure", send, taskToken=token, error=error[:256], cause=cause)

    def heartbeat(self, token: str) -> CallbackResult:
        return self._call("SendTaskHeartbeat", self._client.send_task_heartbeat, taskToken=token)

    def _call(self, action: str, send: Callable[..., Any], **request: str) -> CallbackResult:
        try:
            send(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in REJECTED_CODES:
                log.warning("task no longer waits", extra={"action": action, "error": code})
                return CallbackResult.REJECTED
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status >= 500 or "Throttl" in code or code == "TooManyRequestsException":
                log.error("callback failed after retries", extra={"action": action, "error": code})
            else:
                log.error("callback refused", extra={"action": action, "error": code})
            return CallbackResult.FAILED
        except BotoCoreError as exc:
            log.error("callback failed after retries", extra={"action": action, "error": type(exc).__name__})
            return CallbackResult.FAILED
        return CallbackResult.SENT


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
