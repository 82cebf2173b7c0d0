"""Step Functions callbacks: a message sent with a task token (`sqs:sendMessage.waitForTaskToken`,
or `POST /messages` with `task_token`) has a task waiting for it. The drain answers that task once:
`SendTaskSuccess` with the API's answer, `SendTaskFailure` when the message is dead-lettered, and
`SendTaskHeartbeat` while it is retried or held.

The token travels on the destination's queue (`trickle-task-token`); a submission's is also kept in
its ledger record until its task is answered or gone, so a paused drain can heartbeat it before any
run has received it (`Ledger.queued_tasks`). Dead letters never carry it, since their task has been
answered (or is answered from the source copy) by the time they exist.
What the answers say, the task's output and its failure's cause, is `chalicelib.task_answers`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.model import CallbackResult

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 2048  # SendTask*'s taskToken limit
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
