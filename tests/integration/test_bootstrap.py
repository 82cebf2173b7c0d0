"""The bootstrap: creates a stage's resources through boto3, safe to re-run; teardown removes them."""

from __future__ import annotations

from trickle_deploy.bootstrap import provision, teardown
from trickle_deploy.policies import function_policies
from trickle_local import stage
from trickle_local.endpoint import MotoEndpoint, clients


def test_bootstrap_is_idempotent_and_teardown_removes_what_it_made(endpoint: MotoEndpoint) -> None:
    endpoint.reset()
    aws = clients(endpoint.url)
    env = stage.rebase(stage.stage_env("dev"), endpoint.url, None)

    first = provision(aws, env, "secret-1")
    second = provision(aws, env, None)  # re-run without a key keeps the stored one

    assert first == second
    assert first["TRICKLE_QUEUE_URL"].endswith("/trickle-dev-outbox.fifo")
    assert first["TRICKLE_STREAM_ARN"].startswith(
        "arn:aws:dynamodb:us-east-1:123456789012:table/trickle-dev-items/stream/"
    )
    parameter = aws["ssm"].get_parameter(Name="/trickle/dev/api-key", WithDecryption=True)["Parameter"]
    assert parameter["Type"] == "SecureString"
    assert parameter["Value"] == "secret-1"
    key = aws["kms"].describe_key(KeyId="alias/trickle-dev-api-key")["KeyMetadata"]
    assert key["Arn"] == first["TRICKLE_API_KEY_KMS_KEY_ARN"]
    ttl = aws["dynamodb"].describe_time_to_live(TableName="trickle-dev-ledger")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    attributes = aws["sqs"].get_queue_attributes(QueueUrl=first["TRICKLE_QUEUE_URL"], AttributeNames=["All"])
    assert attributes["Attributes"]["VisibilityTimeout"] == env["TRICKLE_VISIBILITY_TIMEOUT_SECONDS"]
    assert '"maxReceiveCount": 1000' in attributes["Attributes"]["RedrivePolicy"]
    failure_queue = aws["sqs"].get_queue_attributes(
        QueueUrl=first["TRICKLE_INGEST_FAILURE_QUEUE_URL"], AttributeNames=["All"]
    )["Attributes"]
    assert "FifoQueue" not in failure_queue

    drain = function_policies(first)["drain"]
    (decrypt,) = [s for s in drain["Statement"] if s["Sid"] == "DecryptApiKeyThroughSsm"]
    assert decrypt["Resource"] == [key["Arn"]]

    removed = teardown(aws, env, source_table=False)

    assert len(removed) == 7  # three queues, the ledger, the parameter, the bucket, the key
    assert aws["sqs"].list_queues().get("QueueUrls", []) == []
    assert [t for t in aws["dynamodb"].list_tables()["TableNames"] if t.startswith("trickle-dev")] == [
        "trickle-dev-items"
    ]
    assert teardown(aws, env, source_table=True) == ["table trickle-dev-items"]
