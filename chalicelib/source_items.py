"""The source table as a drain reads backfilled items back before sending them (issue #26): one
consistent BatchGetItem per 100 keys, the keys a round's messages name (`freshness.claim`), and the
fingerprint of each item found. Consistent, so a change or delete the stream has already carried is
seen; whole items, because the fingerprint is of the whole item."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.batch_retry import retry_unprocessed
from chalicelib.freshness import fingerprint, key_attributes, key_text
from chalicelib.model import SourceUnread

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import KeysAndAttributesTypeDef

BATCH_GET = 100  # DynamoDB's limit on the keys of one BatchGetItem
# A round's groups wait for this read: a few quick tries (0.35 s of backoff at most), then what is
# left waits for a later run (`freshness.Freshness.UNREAD`), not the round.
_TRIES = 4


class SourceTable:
    def __init__(
        self, client: DynamoDBClient, table: str, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = client
        self.table = table
        self._sleep = sleep

    def fingerprints(self, keys: Collection[str]) -> dict[str, str] | SourceUnread:
        """`chalicelib.ports.SourceItems`: keys as `freshness.key_text` gives them, each read once. A
        failed call (after botocore's retries) or keys still unprocessed after ours come back as
        `SourceUnread` (the messages wait for a later read), as the API client's failures come back as an
        answer, never as an exception that would end the run."""
        found: dict[str, str] = {}
        wanted = sorted(set(keys))
        names = {name for text in wanted for name in key_attributes(text)}

        def get(batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
            request: dict[str, KeysAndAttributesTypeDef] = {
                self.table: {"Keys": list(batch), "ConsistentRead": True}
            }
            response = self._client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self.table, []):
                found[key_text({n: v for n, v in item.items() if n in names})] = fingerprint(item)
            left = (response.get("UnprocessedKeys") or {}).get(self.table)
            return list(left.get("Keys", [])) if left else []

        for start in range(0, len(wanted), BATCH_GET):
            batch = [key_attributes(text) for text in wanted[start : start + BATCH_GET]]
            try:
                left = retry_unprocessed(get, batch, _TRIES, self._sleep)
            except (ClientError, BotoCoreError) as exc:
                return SourceUnread(f"BatchGetItem on {self.table} failed: {exc}")
            if left:
                return SourceUnread(f"DynamoDB left {len(left)} reads of {self.table} unprocessed")
        return found
