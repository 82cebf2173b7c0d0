"""Step Functions executions that wait for Trickle (`demo --executions N`): a state machine whose
task sends an item to a destination's queue with its task token and waits for the answer."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from trickle_project.workflows import wait_definition

WORKFLOW_FIELD = "workflow"  # marks a workflow's item, so the stream audit leaves it out


@dataclass(frozen=True)
class ExecutionCounts:
    started: int
    succeeded: int
    failed: int  # failed, timed out or aborted
    running: int

    def as_dict(self) -> dict[str, int]:
        return {
            "started": self.started,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "running": self.running,
        }


class Workflows:
    def __init__(self, sfn: Any, name: str, queue_url: str, account: str = "123456789012") -> None:
        self._sfn = sfn
        self.arn = str(
            sfn.create_state_machine(
                name=name,
                definition=json.dumps(wait_definition(queue_url)),
                roleArn=f"arn:aws:iam::{account}:role/{name}",
            )["stateMachineArn"]
        )
        self.executions: list[str] = []

    def start(self, count: int, groups: int) -> None:
        for i in range(count):
            item = {WORKFLOW_FIELD: i, "note": f"execution {i}"}
            request = {"item": item, "group": f"workflow-{i % max(1, groups)}"}
            name = f"demo-{i}-{uuid.uuid4().hex[:12]}"  # moto names every unnamed execution "None"
            run = self._sfn.start_execution(stateMachineArn=self.arn, name=name, input=json.dumps(request))
            self.executions.append(str(run["executionArn"]))

    def counts(self) -> ExecutionCounts:
        status = Counter(self._sfn.describe_execution(executionArn=arn)["status"] for arn in self.executions)
        return ExecutionCounts(
            started=len(self.executions),
            succeeded=status["SUCCEEDED"],
            failed=status["FAILED"] + status["TIMED_OUT"] + status["ABORTED"],
            running=status["RUNNING"],
        )


def is_workflow_body(body: str) -> bool:
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and WORKFLOW_FIELD in parsed
