"""Step Functions callbacks: a message sent with a task token (`sqs:sendMessage.waitForTaskToken`,
or `POST /messages` with `task_token`) has a task waiting for it. The drain answers that task once:
`SendTaskSuccess` with the API's answer, `SendTaskFailure` when the message is dead-lettered, and
`SendTaskHeartbeat` while it is retried or held.

The token travels on the destination's queue (`trickle-task-token`); a submission's is also kept in
its ledger record until its task is answered or gone, so a paused drain can heartbeat it before any
run has received it (`Ledger.queued_tasks`), and a message a state machine sent straight to the
queue has it in its execution's history (`sent_tokens`, `open_sent_tokens`). Dead letters never
carry it, since their task has been answered (or is answered from the source copy) by the time they exist.
What the answers say, the task's output and its failure's cause, is `chalicelib.task_answers`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.model import TASK_TOKEN_ATTRIBUTE, CallbackResult

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 2048  # SendTask*'s taskToken limit
# The task is gone (timed out, finished, never existed): answering again can never succeed.
REJECTED_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
# A paused drain's look for the tasks a state machine sent straight to its queue (`sent_tokens`): the
# stage's RUNNING executions, newest first, at most this many histories read a run, each only its
# newest events (a task waiting for its token adds no event, so its TaskScheduled is among them).
EXECUTIONS_READ = 50
HISTORY_EVENTS = 100
SENT_TASK = ("sqs", "sendMessage.waitForTaskToken")
# The events that end a task: its TaskScheduled (found back through `previousEventId`) no longer waits.
TASK_ENDS = frozenset({"TaskSucceeded", "TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed"})


class StepFunctionsCallbacks:
    """`SendTask*` over a boto3 `stepfunctions` client, one call per answer: the client's own
    retries (botocore's standard mode, `chalicelib.wiring`) take care of throttling and 5xx. An
    answer that still fails is kept and sent again when the message comes back, so a slow Step
    Functions never makes the drain post to the API again."""

    def __init__(self, client: Any, state_machines: Sequence[str] = ()) -> None:
        """`client`: Any, as no stubs for stepfunctions are installed (requirements-dev.txt);
        `state_machines`: the ARNs of the stage's (`state_machine_arns`), whose executions
        `sent_tokens` reads."""
        self._client = client
        self._state_machines = tuple(state_machines)

    def success(self, token: str, output: str) -> CallbackResult:
        return self._call("SendTaskSuccess", self._client.send_task_success, taskToken=token, output=output)

    def failure(self, token: str, error: str, cause: str) -> CallbackResult:
        send = self._client.send_task_failure
        return self._call("SendTaskFailure", send, taskToken=token, error=error[:256], cause=cause)

    def heartbeat(self, token: str) -> CallbackResult:
        return self._call("SendTaskHeartbeat", self._client.send_task_heartbeat, taskToken=token)

    def sent_tokens(self, queue_url: str) -> list[str]:
        """The tokens of the tasks still waiting on a message their state machine sent straight to
        this queue (`open_sent_tokens`), from the histories of the stage's RUNNING executions (at
        most `EXECUTIONS_READ`), without receiving a message. An execution or state machine AWS
        will not read is skipped (logged, never with a token)."""
        tokens: list[str] = []
        left = EXECUTIONS_READ
        for machine in self._state_machines:
            if left <= 0:
                break
            try:
                listed = self._client.list_executions(
                    stateMachineArn=machine, statusFilter="RUNNING", maxResults=left
                )
            except (ClientError, BotoCoreError) as exc:
                log.warning(
                    "running executions not listed", extra={"state_machine": machine, "error": _code(exc)}
                )
                continue
            for execution in listed.get("executions", [])[:left]:
                left -= 1
                try:
                    history = self._client.get_execution_history(
                        executionArn=execution["executionArn"], reverseOrder=True, maxResults=HISTORY_EVENTS
                    )
                except (ClientError, BotoCoreError) as exc:  # e.g. it ended since it was listed
                    log.info(
                        "execution history not read", extra={"state_machine": machine, "error": _code(exc)}
                    )
                    continue
                tokens.extend(open_sent_tokens(history.get("events", []), queue_url))
        return list(dict.fromkeys(tokens))

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


def _code(exc: Exception) -> str:
    return (
        str(exc.response.get("Error", {}).get("Code", ""))
        if isinstance(exc, ClientError)
        else type(exc).__name__
    )


def state_machine_arns(stream_arn: str, names: Iterable[str]) -> tuple[str, ...]:
    """The stage's state machines' ARNs: in its table's partition, region and account, as the
    drains' roles name them (`trickle_deploy.policies`)."""
    _, partition, _, region, account, _ = stream_arn.split(":", 5)
    return tuple(f"arn:{partition}:states:{region}:{account}:stateMachine:{name}" for name in names)


def open_sent_tokens(events: Iterable[Mapping[str, Any]], queue_url: str) -> list[str]:
    """The tokens an execution's history shows waiting on a message sent to this queue: its
    `sqs:sendMessage.waitForTaskToken` TaskScheduled events whose parameters name the queue (by
    account and name, whatever host its URL has) with a token in `trickle-task-token`, and that no
    TaskSucceeded, TaskFailed or TaskTimedOut has ended since (traced back through
    `previousEventId`, so tasks of parallel branches are told apart). In any order of events."""
    by_id = {event.get("id"): event for event in events}
    ended: set[Any] = set()
    for event in by_id.values():
        if event.get("type") not in TASK_ENDS:
            continue
        step: Mapping[str, Any] | None = event
        for _ in range(len(by_id)):  # a malformed history cannot loop
            if step is None or step.get("type") == "TaskScheduled":
                break
            step = by_id.get(step.get("previousEventId"))
        if step is not None and step.get("type") == "TaskScheduled":
            ended.add(step.get("id"))
    tokens = []
    for key, event in sorted(by_id.items(), key=lambda pair: pair[0] if isinstance(pair[0], int) else 0):
        details = event.get("taskScheduledEventDetails") or {}
        if event.get("type") != "TaskScheduled" or key in ended:
            continue
        if (details.get("resourceType"), details.get("resource")) == SENT_TASK:
            tokens.append(_sent_token(details.get("parameters"), queue_url))
    return [token for token in dict.fromkeys(tokens) if token]


def _sent_token(parameters: Any, queue_url: str) -> str:
    """The token a task's parameters send to this queue, or "" (another queue, none, unreadable)."""
    try:
        sent = json.loads(parameters) if isinstance(parameters, str) else None
    except ValueError:  # a history truncates parameters over its limit
        return ""
    if not isinstance(sent, dict) or not queue_url or _queue(sent.get("QueueUrl")) != _queue(queue_url):
        return ""
    attributes = sent.get("MessageAttributes")
    attribute = attributes.get(TASK_TOKEN_ATTRIBUTE) if isinstance(attributes, dict) else None
    token = attribute.get("StringValue") if isinstance(attribute, dict) else None
    return token if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_CHARS else ""


def _queue(url: Any) -> str:
    """A queue URL's account and name: the same queue whichever endpoint host names it."""
    return urlsplit(url).path.strip("/") if isinstance(url, str) else ""
