"""The state machine that waits for Trickle: its task sends an item to a destination's queue with its
task token and waits for the API's answer. The merge template deploys it as its example, and the local
demo runs it (`demo --executions N`, trickle_local.workflows)."""

from __future__ import annotations

from typing import Any

from chalicelib.model import TASK_TOKEN_ATTRIBUTE


def wait_definition(queue_url: str, heartbeat_s: int = 300, timeout_s: int = 3600) -> dict[str, Any]:
    """The task docs/step-functions.md shows: the item as the body, its group from the input, one
    deduplication id per execution, the token in `trickle-task-token`."""
    return {
        "Comment": "Sends an item through a Trickle destination and waits for the API's answer",
        "StartAt": "Deliver",
        "States": {
            "Deliver": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "HeartbeatSeconds": heartbeat_s,
                "TimeoutSeconds": timeout_s,
                "Parameters": {
                    "QueueUrl": queue_url,
                    "MessageBody.$": "$.item",
                    "MessageGroupId.$": "$.group",
                    "MessageDeduplicationId.$": "States.Hash($$.Execution.Id, 'SHA-256')",
                    "MessageAttributes": {
                        TASK_TOKEN_ATTRIBUTE: {"DataType": "String", "StringValue.$": "$$.Task.Token"}
                    },
                },
                "End": True,
            }
        },
    }
