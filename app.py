"""Trickle: DynamoDB stream -> SQS FIFO -> scheduled, rate-kept delivery to a third-party API."""

from typing import Any

from chalice import Chalice, Rate
from chalice.app import CloudWatchEvent, DynamoDBEvent

from chalicelib import wiring
from chalicelib.logs import configure_logging

settings = wiring.settings()
configure_logging(settings.log_level)
app = Chalice(app_name="trickle")


@app.on_dynamodb_record(
    stream_arn=settings.stream_arn,
    batch_size=settings.ingest_batch_size,
    maximum_batching_window_in_seconds=settings.ingest_batch_window_s,
    name="ingest",
)
def ingest(event: DynamoDBEvent) -> dict[str, Any]:
    return wiring.ingestor().handle(event.to_dict()["Records"]).as_dict()


@app.schedule(Rate(1, unit=Rate.MINUTES), name="drain")
def drain(event: CloudWatchEvent) -> dict[str, Any]:
    context: Any = event.context
    return wiring.drainer().run(context.get_remaining_time_in_millis).as_dict()
