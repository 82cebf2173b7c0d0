"""The notes table: small documents beside the delivery, in a table of their own (one per stage,
`TRICKLE_NOTES_TABLE`), so the ledger holds only message records.

Each note's key leads with its kind: `run#<destination>` (the last drain run), `lease#<destination>`
(the drain's run lease, `chalicelib.run_lease`), `redrive#<destination>` (its open redrive jobs) and
`redrive#<destination>#<job id>` (a redrive job, `chalicelib.redrive_jobs`), `totals#<destination>`
(its running totals, `chalicelib.totals`), `pause#<destination>` (why it is paused, when it is),
`job#<id>`, `job#<id>#<part>` and `jobs#active` (backfill and replay jobs, `chalicelib.jobs`), all
formed in `chalicelib.naming`, and `ingest#unrouted` (the count of stream records no route took).
IAM scopes by that leading key (`dynamodb:LeadingKeys`): each drain reaches only its own run note,
lease, redrive jobs, totals and pause, ingest only its count, the routes only run notes, totals and
the count (read), redrive jobs and pauses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib.batch_retry import retry_unprocessed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

NOTE_KEY = "note_id"
MEMBERS = "members"  # the string set of a note `add_member` keeps
VERSION = "version"  # the number of times `replace` wrote a note, kept beside its document
BATCH_GET_KEYS = 100  # BatchGetItem's limit


UNROUTED_NOTE_KEY = "ingest#unrouted"


def notes_table_definition() -> dict[str, Any]:
    """The notes table's key, as both CreateTable and CloudFormation take it."""
    return {
        "KeySchema": [{"AttributeName": NOTE_KEY, "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": NOTE_KEY, "AttributeType": "S"}],
    }


class Notes:
    """JSON documents by key, each expiring through the table's TTL (`expires_at`) after `ttl_s`."""

    def __init__(
        self, client: DynamoDBClient, table: str, ttl_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table
        self._ttl_s = ttl_s
        self._clock = clock

    def save(self, key: str, document: dict[str, Any], expires: bool = True) -> None:
        """`expires` False: kept until removed (a pause must not lift itself)."""
        item = {NOTE_KEY: {"S": key}, "doc": {"S": json.dumps(document, default=str)}}
        if expires:
            item["expires_at"] = {"N": str(int(self._clock()) + self._ttl_s)}
        self._client.put_item(TableName=self._table, Item=item)

    def remove(self, key: str) -> None:
        self._client.delete_item(TableName=self._table, Key={NOTE_KEY: {"S": key}})

    def tally(self, key: str, counts: Mapping[str, int], remove: Sequence[str]) -> dict[str, float]:
        """Add `counts` to a note's number attributes and remove the attributes `remove`, in one
        write that never expires (`since`: when the first count was added); its numbers after it."""
        names = {**{f"#c{i}": name for i, name in enumerate(counts)}}
        names |= {f"#r{i}": name for i, name in enumerate(remove)}
        expression = "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counts)))
        expression += " SET since = if_not_exists(since, :now)"
        if remove:
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        item = self._client.update_item(
            TableName=self._table,
            Key={NOTE_KEY: {"S": key}},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                **{f":c{i}": {"N": str(value)} for i, value in enumerate(counts.values())},
                ":now": {"N": str(self._clock())},
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
        return _numbers(item)

    def forget(self, key: str, names: Sequence[str]) -> None:
        """Remove a note's attributes `names` (old counters `tally` left)."""
        self._client.update_item(
            TableName=self._table,
            Key={NOTE_KEY: {"S": key}},
            UpdateExpression="REMOVE " + ", ".join(f"#r{i}" for i in range(len(names))),
            ExpressionAttributeNames={f"#r{i}": name for i, name in enumerate(names)},
        )

    def numbers(self, key: str) -> dict[str, float] | None:
        """A note's number attributes (`tally`'s counters and `since`), or None if there is none."""
        return numbers_of(self._item(key))

    def load(self, key: str) -> dict[str, Any] | None:
        return document_of(self._item(key))

    def _item(self, key: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._client.get_item(
            TableName=self._table, Key={NOTE_KEY: {"S": key}}, ConsistentRead=True
        ).get("Item")
        return item

    def replace(self, key: str, document: dict[str, Any], version: int) -> bool:
        """Write `document` as version `version + 1` of the note, if the note is still at version
        `version` (0: it does not exist yet); False if another writer got there first. Two workers
        holding the same version (a task delivered twice) cannot both write: the one that loses knows
        it is stale. The document is stored with its `version`, which `load` gives back."""
        # `version = :v` is false for a note that does not exist: version 0 asks for exactly that
        condition = f"attribute_not_exists({NOTE_KEY})" if version == 0 else "#v = :v"
        values: Any = (
            {
                "ExpressionAttributeNames": {"#v": VERSION},
                "ExpressionAttributeValues": {":v": {"N": str(version)}},
            }
            if version
            else {}
        )
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    NOTE_KEY: {"S": key},
                    "doc": {"S": json.dumps(document | {VERSION: version + 1}, default=str)},
                    VERSION: {"N": str(version + 1)},
                    "expires_at": {"N": str(int(self._clock()) + self._ttl_s)},
                },
                ConditionExpression=condition,
                **values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def load_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The documents of the notes among `keys` that exist, by key (`items_many`)."""
        documents = {key: document_of(item) for key, item in self.items_many(keys).items()}
        return {key: document for key, document in documents.items() if document is not None}

    def items_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored items of the notes among `keys` that exist, by key, for `document_of`,
        `numbers_of`, `counts_of` and `members_of`: consistent reads, 100 keys a call; keys
        DynamoDB leaves unprocessed are asked again (`batch_retry`), and any still left after that
        are an error, not a note missing."""
        found: dict[str, dict[str, Any]] = {}

        def get(batch: Sequence[str]) -> list[str]:
            response: Any = self._client.batch_get_item(
                RequestItems={
                    self._table: {"Keys": [{NOTE_KEY: {"S": k}} for k in batch], "ConsistentRead": True}
                }
            )
            for item in response.get("Responses", {}).get(self._table, []):
                found[item[NOTE_KEY]["S"]] = item
            left = response.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
            return [k[NOTE_KEY]["S"] for k in left]

        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BATCH_GET_KEYS):
            left = retry_unprocessed(get, unique[start : start + BATCH_GET_KEYS], 5, time.sleep)
            if left:
                raise RuntimeError(f"{len(left)} note(s) unread after 5 tries (throttled): {left[0]}, ...")
        return found

    def add(self, key: str, counts: Mapping[str, int], document: dict[str, Any]) -> None:
        """Add `counts` to a note's counters and keep `document` beside them, in one write: handlers
        running at once (ingest runs one per stream shard) lose no count, as a read and a put would.
        `since` says when the first count was added (the note expires `ttl_s` after the last)."""
        now = self._clock()
        self._client.update_item(
            TableName=self._table,
            Key={NOTE_KEY: {"S": key}},
            UpdateExpression="ADD "
            + ", ".join(f"#c{i} :c{i}" for i in range(len(counts)))
            + " SET doc = :doc, since = if_not_exists(since, :now), expires_at = :expires",
            ExpressionAttributeNames={f"#c{i}": name for i, name in enumerate(counts)},
            ExpressionAttributeValues={
                **{f":c{i}": {"N": str(value)} for i, value in enumerate(counts.values())},
                ":doc": {"S": json.dumps(document, default=str)},
                ":now": {"N": str(now)},
                ":expires": {"N": str(int(now) + self._ttl_s)},
            },
        )

    def counts(self, key: str, names: tuple[str, ...]) -> dict[str, Any] | None:
        """A note `add` keeps: its counters `names`, `since`, and its document as `last`."""
        return counts_of(self._item(key), names)

    def members(self, key: str) -> set[str]:
        """The strings `add_member` put in a note and `remove_member` did not take out."""
        return members_of(self._item(key))

    def add_member(self, key: str, member: str) -> None:
        """Put `member` in a note's set, in one write: a writer at the same time loses nothing, as
        a read and a put would (the note expires `ttl_s` after the last change)."""
        self._change_members("ADD", key, member)

    def remove_member(self, key: str, member: str) -> None:
        self._change_members("DELETE", key, member)

    def _change_members(self, action: str, key: str, member: str) -> None:
        self._client.update_item(
            TableName=self._table,
            Key={NOTE_KEY: {"S": key}},
            UpdateExpression=f"{action} #members :member SET expires_at = :expires",
            ExpressionAttributeNames={"#members": MEMBERS},  # a reserved word
            ExpressionAttributeValues={
                ":member": {"SS": [member]},
                ":expires": {"N": str(int(self._clock()) + self._ttl_s)},
            },
        )


def _numbers(item: Mapping[str, Any]) -> dict[str, float]:
    return {name: float(value["N"]) for name, value in item.items() if "N" in value and name != "expires_at"}


# A stored note (`Notes.items_many`; None: there is none) read as each kind of note is written.
def document_of(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What `save` or `replace` wrote."""
    return dict(json.loads(item["doc"]["S"])) if item and "doc" in item else None


def numbers_of(item: Mapping[str, Any] | None) -> dict[str, float] | None:
    """`tally`'s counters and `since`."""
    return _numbers(item) if item else None


def counts_of(item: Mapping[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any] | None:
    """`add`'s counters `names`, `since`, and its document as `last`."""
    if not item:
        return None
    return {
        **{name: int(item[name]["N"]) if name in item else 0 for name in names},
        "since": float(item["since"]["N"]) if "since" in item else None,
        "last": json.loads(item["doc"]["S"]) if "doc" in item else None,
    }


def members_of(item: Mapping[str, Any] | None) -> set[str]:
    """`add_member`'s set."""
    return set(item[MEMBERS]["SS"]) if item and MEMBERS in item else set()
