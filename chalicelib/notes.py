"""The notes table: small documents beside the delivery, in a table of their own (one per stage,
`TRICKLE_NOTES_TABLE`), so the ledger holds only message records.

Each note's key leads with its kind: `run#<destination>` (the last drain run), `lease#<destination>`
(the drain's run lease, `chalicelib.run_lease`) and `redrive#<job id>` (a redrive job). IAM scopes by
that leading key (`dynamodb:LeadingKeys`): each drain reaches only its own run note and lease, the
routes only run notes (read) and redrive jobs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

NOTE_KEY = "note_id"


def run_note_key(destination: str) -> str:
    return f"run#{destination}"


def redrive_note_key(job_id: str) -> str:
    return f"redrive#{job_id}"


def lease_key(destination: str) -> str:
    return f"lease#{destination}"


def notes_table_definition() -> dict[str, Any]:
    """The notes table's key, as both CreateTable and CloudFormation take it."""
    return {
        "KeySchema": [{"AttributeName": NOTE_KEY, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": NOTE_KEY, "AttributeType": "S"}],
    }


class Notes:
    """JSON documents by key, each expiring through the table's TTL (`expires_at`) after `ttl_s`."""

    def __init__(self, client: Any, table: str, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._ttl_s = ttl_s
        self._clock = clock

    def save(self, key: str, document: dict[str, Any]) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                NOTE_KEY: {"S": key},
                "doc": {"S": json.dumps(document, default=str)},
                "expires_at": {"N": str(int(self._clock()) + self._ttl_s)},
            },
        )

    def load(self, key: str) -> dict[str, Any] | None:
        item = self._client.get_item(
            TableName=self._table, Key={NOTE_KEY: {"S": key}}, ConsistentRead=True
        ).get("Item")
        return dict(json.loads(item["doc"]["S"])) if item and "doc" in item else None
