"""Every name Trickle derives from a destination's name (and a stage's), formed here and nowhere else.

A destination is declared once: its entry in the routes file, and its drain with its schedule in
app.py. Its drain function, its stage variables, queues, key parameter, policy files, and the
CloudFormation ids, outputs and alarms of its stack all follow from its name by these functions, so
the app, the local runtime, the deploy tools and the bench cannot disagree on one
(tests/unit/test_naming.py checks that no other module forms them). Imports nothing of ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DESTINATION_VARIABLE_PREFIX = "TRICKLE_DEST_"
_DRAIN_PREFIX = "drain_"


# --- the app and its stages ----------------------------------------------------------------------


def drain_function(destination: str) -> str:
    """Its scheduled drain in app.py: the function's name, its role's and its policy file's."""
    return _DRAIN_PREFIX + destination


def is_drain_function(function: str) -> bool:
    return function.startswith(_DRAIN_PREFIX)


def destination_variable(destination: str, field: str) -> str:
    """The stage variable setting one of its fields: (orders, queue_url) -> TRICKLE_DEST_ORDERS_QUEUE_URL."""
    return f"{DESTINATION_VARIABLE_PREFIX}{destination.upper()}_{field.upper()}"


def variable_destination(variable: str, field: str) -> str | None:
    """The destination a stage variable sets `field` of (lowercase), or None if it sets no such field."""
    prefix, suffix = DESTINATION_VARIABLE_PREFIX, f"_{field.upper()}"
    if (
        len(variable) > len(prefix) + len(suffix)
        and variable.startswith(prefix)
        and variable.endswith(suffix)
    ):
        return variable[len(prefix) : -len(suffix)].lower()
    return None


def variable_owner(variable: str, destinations: Iterable[str]) -> str | None:
    """The destination among `destinations` a TRICKLE_DEST_<NAME>_<FIELD> variable belongs to: the
    longest name it starts with, so TRICKLE_DEST_ORDERS_BULK_URL is orders_bulk's, not a field
    `bulk_url` of orders. None: none of them."""
    owners = [d for d in destinations if variable.startswith(destination_variable(d, ""))]
    return max(owners, key=len, default=None)


def key_parameter(stage: str, destination: str) -> str:
    """The SSM SecureString holding its API key, unless the stage or the routes file names another."""
    return f"/trickle/{stage}/{destination}-api-key"


def key_variable(destination: str) -> str:
    """The shell variable a printed put-parameter command reads its API key from."""
    return f"{destination.upper()}_API_KEY"


def signing_parameter(stage: str, destination: str) -> str:
    """The SSM SecureString holding its request-signing secret(s) (`signing = "standard_webhooks"`)."""
    return f"/trickle/{stage}/{destination}-signing-secret"


def signing_variable(destination: str) -> str:
    """The shell variable a printed put-parameter command reads its signing secret from."""
    return f"{destination.upper()}_SIGNING_SECRET"


def headers_parameter(stage: str, destination: str) -> str:
    """The SSM SecureString holding its secret headers' values, as one JSON object (`secret_headers`)."""
    return f"/trickle/{stage}/{destination}-headers"


def headers_variable(destination: str) -> str:
    """The shell variable a printed put-parameter command reads its secret headers' JSON from."""
    return f"{destination.upper()}_HEADERS"


def stack_name(app: str, stage: str) -> str:
    """Chalice's prefix for a stage's functions, and the default name of a template stage's stack."""
    return f"{app}-{stage}"


def deployed_function(app: str, stage: str, function: str) -> str:
    """The Lambda function Chalice deploys a function of app.py as."""
    return f"{stack_name(app, stage)}-{function}"


def queue_name(prefix: str, destination: str) -> str:
    """Its FIFO queue: `prefix` is `stack_name` for a bootstrapped stage (trickle-dev-orders.fifo),
    the stack's own name for a template stage."""
    return f"{prefix}-{destination}.fifo"


def dead_letter_queue_name(prefix: str, destination: str) -> str:
    return f"{prefix}-{destination}-dead-letters.fifo"


JOBS_FUNCTION = "jobs"  # app.py's function working backfill and replay tasks, triggered by the queue below


def jobs_queue_name(prefix: str) -> str:
    """The standard queue of job tasks (a backfill's or a replay's segments) that triggers the `jobs`
    function; `prefix` as for `queue_name`. Standard, not FIFO: tasks need no order, and only a
    standard queue takes DelaySeconds per message (a paced task comes back later). No `.fifo`, so no
    destination's queue can take its name."""
    return f"{prefix}-jobs"


def jobs_dead_letter_queue_name(jobs_queue: str) -> str:
    """Where a task goes that failed (or timed out) in every one of its receives: beside the tasks
    queue, named after it, whatever name the stage gives that one."""
    return f"{jobs_queue}-dead-letters"


def policy_file(stage: str, function: str) -> str:
    """The IAM policy file `python -m trickle_deploy.policies` writes for a function of a stage."""
    return f"policy-{stage}-{function}.json"


def policy_file_function(stage: str, file_name: str) -> str | None:
    """The function a policy file of `stage` is for, or None if it is not one of that stage's: a
    function's name has no hyphen, so `policy-dev-emulator-ingest.json` belongs to stage
    `dev-emulator`, not to `dev`."""
    prefix = f"policy-{stage}-"
    function = file_name.removeprefix(prefix).removesuffix(".json")
    return (
        function
        if file_name.startswith(prefix) and file_name.endswith(".json") and function.isidentifier()
        else None
    )


# --- its notes (chalicelib.notes), keyed by kind so IAM scopes each function to its own ---------


def run_note_key(destination: str) -> str:
    """The note of its drain's last run (the run's report, read by `GET /status`)."""
    return f"run#{destination}"


def lease_key(destination: str) -> str:
    """Its drain's run lease (`chalicelib.run_lease`)."""
    return f"lease#{destination}"


def open_redrives_key(destination: str) -> str:
    """The note listing its open redrive jobs, which its drain advances (`chalicelib.redrive_jobs`)."""
    return f"redrive#{destination}"


def redrive_job_key(destination: str, job_id: str) -> str:
    """One of its redrive jobs (`job_id` "*": all of them, as an IAM condition matches them)."""
    return f"redrive#{destination}#{job_id}"


def totals_key(destination: str) -> str:
    """Its running totals, added to by each drain run in one write (`chalicelib.totals`)."""
    return f"totals#{destination}"


def pause_key(destination: str) -> str:
    """Why and by whom it is paused; no note: not paused (`chalicelib.health`)."""
    return f"pause#{destination}"


def job_key(job_id: str) -> str:
    """A backfill or replay job (`chalicelib.jobs`): what it does, and its state (`job_id` "*": every
    job and every part of one, as an IAM condition matches them)."""
    return f"job#{job_id}"


def job_part_key(job_id: str, part: int) -> str:
    """One part of a job (a Scan segment, a slice of an archive): its checkpoint and counts."""
    return f"job#{job_id}#{part}"


def active_jobs_key() -> str:
    """The note whose member set holds the ids of the jobs still running (`GET /status` lists them)."""
    return "jobs#active"


# --- its delivered archive (chalicelib.delivered_archive), prefixed so IAM scopes each drain ------


DELIVERED_PREFIX = "delivered/"


def delivered_prefix(destination: str) -> str:
    """Where its drain archives what it delivered (its role may put objects under this alone)."""
    return f"{DELIVERED_PREFIX}{destination}/"


# --- a template stage's stack (trickle_deploy.template) -------------------------------------------


def logical_id(name: str) -> str:
    """Chalice's CloudFormation name for a function or a destination: drain_orders -> DrainOrders."""
    return "".join(part.capitalize() for part in re.split("[^A-Za-z0-9]+", name))


def role_id(function: str) -> str:
    """The role Chalice gives a function (one role per function: `autogen_policy` is off)."""
    return f"{logical_id(function)}Role"


def queue_id(destination: str) -> str:
    return f"{logical_id(destination)}Queue"


def dead_letter_queue_id(destination: str) -> str:
    return f"{logical_id(destination)}DeadLetterQueue"


def decrypt_key_policy_id(destination: str) -> str:
    """Its drain's right to decrypt its API key."""
    return f"{logical_id(drain_function(destination))}DecryptApiKey"


def answer_example_policy_id(destination: str) -> str:
    """Its drain's right to answer the example state machine's tasks."""
    return f"{logical_id(drain_function(destination))}AnswerExample"


def example_condition(destination: str) -> str:
    """True when the example state machine sends through this destination."""
    return f"ExampleThrough{logical_id(destination)}"


def dead_letters_alarm_id(destination: str) -> str:
    return f"{logical_id(destination)}DeadLettersAlarm"


def oldest_message_alarm_id(destination: str) -> str:
    return f"{logical_id(destination)}OldestMessageAlarm"


def drain_errors_alarm_id(destination: str) -> str:
    return f"{logical_id(drain_function(destination))}ErrorsAlarm"


def credentials_refused_alarm_id(destination: str) -> str:
    """The alarm on a destination whose credentials its API or token endpoint refuses."""
    return f"{logical_id(destination)}CredentialsRefusedAlarm"


def circuit_open_alarm_id(destination: str) -> str:
    """The alarm on a destination whose circuit has stayed open too long."""
    return f"{logical_id(destination)}CircuitOpenAlarm"


def key_parameter_arn_output(destination: str) -> str:
    return f"{logical_id(destination)}ApiKeyParameterArn"


def put_key_command_output(destination: str) -> str:
    """The stack output holding the command that stores its API key."""
    return f"{logical_id(destination)}PutApiKeyCommand"


def signing_parameter_arn_output(destination: str) -> str:
    return f"{logical_id(destination)}SigningSecretParameterArn"


def put_signing_secret_command_output(destination: str) -> str:
    """The stack output holding the command that stores its signing secret."""
    return f"{logical_id(destination)}PutSigningSecretCommand"


def headers_parameter_arn_output(destination: str) -> str:
    return f"{logical_id(destination)}SecretHeadersParameterArn"


def put_headers_command_output(destination: str) -> str:
    """The stack output holding the command that stores its secret headers' values."""
    return f"{logical_id(destination)}PutSecretHeadersCommand"


def queue_url_output(destination: str) -> str:
    return f"{logical_id(destination)}QueueUrl"


def dead_letter_queue_url_output(destination: str) -> str:
    return f"{logical_id(destination)}DeadLetterQueueUrl"


def key_alias(stack: str) -> str:
    """The KMS alias of a template stage's key for its SecureStrings (`${AWS::StackName}` in the template)."""
    return f"alias/{stack}-api-key"
