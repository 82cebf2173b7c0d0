"""The drain's side of Step Functions, for the drain's effects (`chalicelib.drain_effects`): the
task token a message carries, the answer its task gets (success with the API's answer, failure with
the reason), and the heartbeats that keep the tasks of a held group (or a paused destination) waiting."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import health
from chalicelib.drain_log import fields, log
from chalicelib.drain_state import GroupRun, Records, RunState
from chalicelib.model import TASK_TOKEN_ATTRIBUTE, ApiResponse, CallbackResult, LedgerRecord, ReceivedMessage
from chalicelib.policy import Action, Callback
from chalicelib.ports import Archive, Callbacks, DeliveryLedger
from chalicelib.task_answers import BODY_URL_EXPIRES_S, failure_cause, success_output

TASK_GONE = "rejected"  # the ledger's callback state for a task that refused a call
# How many of a destination's newest queued ledger records a paused run looks through for task
# tokens (`Ledger.queued_tasks`): at most 5 BatchGetItem calls of 100 a run.
QUEUED_SCANNED = 500


class Tasks:
    """The tasks waiting for a destination's messages, answered through `callbacks` (None: a stage
    without state machines, whose messages carry no token the drain would read)."""

    def __init__(
        self,
        callbacks: Callbacks | None,
        ledger: DeliveryLedger,
        archive: Archive | None,
        destination: str,
        queue_url: str = "",
    ) -> None:
        """`queue_url`: the destination's queue, where state machines send messages with their token."""
        self._callbacks = callbacks
        self._queue_url = queue_url
        self._ledger = ledger
        self._archive = archive
        self._destination = destination

    def token(self, message: ReceivedMessage) -> str:
        """The task token a message carries, when there is a Step Functions client to answer it."""
        return message.attributes.get(TASK_TOKEN_ATTRIBUTE, "") if self._callbacks is not None else ""

    def answer(
        self,
        action: Action,
        message: ReceivedMessage,
        record: LedgerRecord | None,
        response: ApiResponse | None,
        state: RunState,
    ) -> tuple[CallbackResult | None, str]:
        """Answer the message's waiting task as the action says (success or failure), after the
        action's effect; the result and, for a success, the output sent."""
        token = self.token(message)
        kind = action.callback
        if not token or kind not in (Callback.SUCCESS, Callback.FAILURE):
            return None, ""
        assert self._callbacks is not None  # a token is only read when there are callbacks
        attempts = record.attempts if record else 0
        status_code = response.status if response else (record.last_status_code if record else None)
        if kind is Callback.SUCCESS:
            output = (record.callback_output if record and response is None else "") or self._output(
                message, record, response, status_code
            )
            result = self._callbacks.success(token, output)
        else:
            output = ""
            reason = record.last_error if record and record.last_error else action.reason
            cause = failure_cause(message.message_id, self._destination, reason, status_code, attempts)
            result = self._callbacks.failure(token, action.error, cause)
        state.callback(kind, result, token)
        line = fields(message, self._destination, attempts, f"callback {kind.value}: {result.value}")
        log.log(logging.INFO if result is CallbackResult.SENT else logging.WARNING, "callback", extra=line)
        return result, output

    def _output(
        self,
        message: ReceivedMessage,
        record: LedgerRecord | None,
        response: ApiResponse | None,
        status_code: int | None,
    ) -> str:
        """A waiting task's output: the API's answer, or a link to it in the archive when it is too
        long (the archive holds the answer just stored, not one of an earlier drain)."""
        archive = self._archive if response is not None else None
        return success_output(
            message.message_id,
            self._destination,
            status_code,
            response.body if response else None,
            record.attempts if record else 0,
            record.last_attempt_at if record else None,
            (lambda: archive.url(message.message_id, BODY_URL_EXPIRES_S)) if archive else None,
        )

    def keep_alive(self, action: Action, rest: Sequence[ReceivedMessage], run: GroupRun) -> None:
        """A held group: the tasks still waiting for its messages get a heartbeat, and one that
        refuses it is recorded as gone (never called again); a head held short of its retry time
        is not attempted before then."""
        head = rest[0]
        if action.wait_s:
            self._ledger.hold_until(head.message_id, head.group_id, run.clock.time() + action.wait_s)
        if action.callback is not Callback.HEARTBEAT and self._waiting(head, run.records):
            return  # Step Functions did not take the head's answer: no heartbeats either
        for message in rest:
            token = self._waiting(message, run.records)
            if not token or self._callbacks is None:
                continue
            result = self._callbacks.heartbeat(token)
            run.state.callback(Callback.HEARTBEAT, result, token)
            if result is CallbackResult.REJECTED:
                self._ledger.note_callback(message.message_id, message.group_id, TASK_GONE)

    def keep_waiting(self, carried: Mapping[str, str], state: RunState) -> None:
        """A paused destination's run, without receiving a message: a heartbeat to each task its runs
        left waiting in the queue (`carried`, the run note's), to each the ledger holds for a
        message queued since, and to each a running execution's history shows waiting on a message
        it sent straight to the queue (`health.paused_heartbeats`). One that refuses it is gone
        (`state.gone` drops it from the note; the ledger records it, `callback: rejected`; its
        history shows it ended) and never called again."""
        if self._callbacks is None:
            return
        try:
            queued = self._ledger.queued_tasks(QUEUED_SCANNED)
        except (ClientError, BotoCoreError) as exc:  # the note's still get theirs
            log.warning(
                "queued tasks not read: only those of the run note get a heartbeat",
                extra={"destination": self._destination, "error": str(exc)},
            )
            queued = []
        sent = self._callbacks.sent_tokens(self._queue_url) if self._queue_url else []
        for task in health.paused_heartbeats(carried, queued, sent):
            result = self._callbacks.heartbeat(task.token)
            state.callback(Callback.HEARTBEAT, result, task.token)
            if result is CallbackResult.REJECTED and task.message_id:
                self._ledger.note_callback(task.message_id, task.group_id, TASK_GONE)

    def _waiting(self, message: ReceivedMessage, records: Records) -> str:
        """The token of the task waiting for a message: none once the ledger shows it answered or gone."""
        record = records.get(message.message_id)
        return "" if record and record.callback else self.token(message)


def answered_state(action: Action, result: CallbackResult) -> str:
    """What the ledger keeps about an answer Step Functions took or refused."""
    if result is CallbackResult.REJECTED:
        return TASK_GONE
    return "success" if action.callback is Callback.SUCCESS else "failure"
