"""Demo items and the delivery audit: was every item delivered once, in stream order per group?"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from chalicelib.records import dumps
from trickle_local.standin_api import RecordedRequest

ItemKey = tuple[str, str]


def demo_items(count: int, groups: int, prefix: str = "demo") -> list[dict[str, Any]]:
    """Items round-robin over `groups` partition keys, with every DynamoDB type in them."""
    return [
        {
            "pk": {"S": f"{prefix}-{i % groups:03d}"},
            "sk": {"S": f"{i:06d}"},
            "amount": {"N": f"{i}.{i % 100:02d}"},
            "exact": {"N": "12345678901234567890.123456789"},
            "tags": {"SS": ["relay", f"g{i % groups}"]},
            "blob": {"B": i.to_bytes(4, "big")},
            "detail": {"M": {"seq": {"N": str(i)}, "flags": {"L": [{"BOOL": i % 2 == 0}, {"NULL": True}]}}},
        }
        for i in range(count)
    ]


@dataclass(frozen=True)
class Summary:
    inserted: int
    delivered: int
    dead_lettered: int
    lost: int
    duplicates: int
    out_of_order: int
    seconds: float
    requests: int
    failed_requests: int

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.out_of_order == 0

    def to_json(self, **extra: object) -> str:
        """One JSON object: the counts, `ok`, and `extra` (the local run adds `drain_seconds` and
        `received`, what the stand-in API got, as its `GET` listing has it)."""
        return dumps(dict(sorted({**asdict(self), "ok": self.ok, **extra}.items())))


def _key_and_sequence(request: RecordedRequest) -> tuple[ItemKey, int]:
    body = json.loads(request.body)
    return (str(body["keys"]["pk"]), str(body["keys"]["sk"])), int(body["source"]["sequence_number"])


def summarize(
    inserted: Iterable[ItemKey], requests: list[RecordedRequest], dead_lettered: int, seconds: float
) -> Summary:
    """Audit the API's view: items applied, applied more than once, or applied against stream order.

    Order is judged by the stream sequence number each message carries: within a partition key,
    each newly applied item must come later in the stream than every item applied before it.
    """
    wanted = set(inserted)
    applied_count: dict[ItemKey, int] = {}
    latest: dict[str, int] = {}
    out_of_order = 0
    for request in requests:
        if not request.applied:
            continue
        key, sequence = _key_and_sequence(request)
        applied_count[key] = applied_count.get(key, 0) + 1
        if applied_count[key] > 1:
            continue
        if sequence < latest.get(key[0], -1):
            out_of_order += 1
        latest[key[0]] = max(sequence, latest.get(key[0], -1))
    delivered = len(wanted & set(applied_count))
    return Summary(
        inserted=len(wanted),
        delivered=delivered,
        dead_lettered=dead_lettered,
        lost=max(0, len(wanted) - delivered - dead_lettered),
        duplicates=sum(n - 1 for n in applied_count.values()),
        out_of_order=out_of_order,
        seconds=round(seconds, 2),
        requests=len(requests),
        failed_requests=sum(1 for r in requests if not 200 <= r.status < 300),
    )
