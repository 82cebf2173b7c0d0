"""Demo items and the delivery audit: was every item delivered once, in stream order per group?"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from chalicelib.records import route_record
from chalicelib.settings import Settings
from chalicelib.strict_json import dumps
from trickle_local.standin_api import RecordedRequest
from trickle_local.workflows import ExecutionCounts

ItemKey = tuple[str, str]


def single_table_items(count: int, customers: int) -> list[dict[str, Any]]:
    """A single-table demo: per customer a profile (sk PROFILE) first, then orders and invoices
    round-robin over the customers, each with the `type` the example routes file filters on; an
    invoice has the `invoice_id` billing's path is built from, with a `/` to be percent-encoded."""
    items: list[dict[str, Any]] = [
        {
            "pk": {"S": f"CUSTOMER#{c:03d}"},
            "sk": {"S": "PROFILE"},
            "type": {"S": "customer"},
            "name": {"S": f"Customer {c}"},
            "email": {"S": f"c{c}@example.com"},
        }
        for c in range(customers)
    ]
    for i in range(max(0, count - customers)):
        kind = "invoice" if i % 3 == 2 else "order"
        items.append(
            {
                "pk": {"S": f"CUSTOMER#{i % customers:03d}"},
                "sk": {"S": f"{kind.upper()}#{i:06d}"},
                "type": {"S": kind},
                "total": {"N": f"{i}.{i % 100:02d}"},
                "exact": {"N": "12345678901234567890.123456789"},
                "lines": {"L": [{"M": {"sku": {"S": f"sku-{i % 7}"}, "qty": {"N": str(1 + i % 3)}}}]},
            }
            | ({"invoice_id": {"S": f"INV-2026/{i:06d}"}} if kind == "invoice" else {})
        )
    return items


def insert_record(item: dict[str, Any], sequence: int) -> dict[str, Any]:
    """The stream record an INSERT of `item` makes, as Lambda hands it to the ingest handler."""
    keys = {name: item[name] for name in ("pk", "sk") if name in item}
    return {
        "eventID": f"demo-{sequence}",
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": keys,
            "NewImage": item,
            "SequenceNumber": str(sequence),
            "ApproximateCreationDateTime": 0,
        },
    }


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
    auth_failures: int = 0  # requests the API refused for their credentials or signature
    token_requests: int = 0  # requests its OAuth2 token endpoint answered
    request_items: int = 0  # items the requests carried (one each outside a bulk endpoint)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.out_of_order == 0

    @property
    def items_per_request(self) -> float:
        """How many items a request carried on average: 1 without bulk delivery, 0 without requests."""
        return round(self.request_items / self.requests, 2) if self.requests else 0.0

    def to_json(self, **extra: object) -> str:
        """One JSON object: the counts, `ok`, and `extra` (the local run adds `drain_seconds` and
        `received`, what the stand-in API got, as its `GET` listing has it)."""
        return dumps(dict(sorted({**asdict(self), "ok": self.ok, **extra}.items())))


class UnauditedError(ValueError):
    """A delivered body the audit cannot place: it lacks the item's keys or sequence number."""


def _key_and_sequence(path: str, text: str) -> tuple[ItemKey, int]:
    """The envelope's keys and sequence number (a transformed body carries them at its top)."""
    try:
        body = json.loads(text)
        sequence = body["source"]["sequence_number"] if "source" in body else body["sequence_number"]
        return (str(body["keys"]["pk"]), str(body["keys"]["sk"])), int(sequence)
    except (ValueError, KeyError, TypeError):
        raise UnauditedError(
            f"the demo audits each delivery by the item's keys and sequence number its body carries,"
            f" and a body sent to {path} has none: keep `keys: keys, sequence_number:"
            " source.sequence_number` in its route's transform, or try the routes file with `up`"
        ) from None


def summarize(
    inserted: Iterable[ItemKey],
    requests: list[RecordedRequest],
    dead_lettered: int,
    seconds: float,
    token_requests: int = 0,
) -> Summary:
    """Audit the API's view: items applied, applied more than once, or applied against stream order.

    Order is judged by the stream sequence number each message carries: within a partition key,
    each newly applied item must come later in the stream than every item applied before it (the
    items of a bulk request in the request's order, as the API applies them).
    """
    wanted = set(inserted)
    applied_count: dict[ItemKey, int] = {}
    latest: dict[str, int] = {}
    out_of_order = 0
    for request in requests:
        for item in request.applied_items:
            key, sequence = _key_and_sequence(request.path, item.body)
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
        auth_failures=sum(1 for r in requests if r.refused),
        token_requests=token_requests,
        request_items=sum(r.item_count for r in requests),
    )


@dataclass(frozen=True)
class DemoReport:
    """Every destination's audit, and their totals (`inserted` counts items; each destination's
    `inserted` counts the items routed to it, so the totals' deliveries may exceed the items)."""

    items: int
    destinations: dict[str, Summary]
    seconds: float

    @property
    def total(self) -> Summary:
        parts = list(self.destinations.values())
        return Summary(
            inserted=self.items,
            delivered=sum(p.delivered for p in parts),
            dead_lettered=sum(p.dead_lettered for p in parts),
            lost=sum(p.lost for p in parts),
            duplicates=sum(p.duplicates for p in parts),
            out_of_order=sum(p.out_of_order for p in parts),
            seconds=round(self.seconds, 2),
            requests=sum(p.requests for p in parts),
            failed_requests=sum(p.failed_requests for p in parts),
            auth_failures=sum(p.auth_failures for p in parts),
            token_requests=sum(p.token_requests for p in parts),
            request_items=sum(p.request_items for p in parts),
        )

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.destinations.values())

    def to_json(self, **extra: object) -> str:
        """The totals, `ok`, `expected_deliveries`, per-destination counts, and `extra`."""
        per = {
            name: {
                **{
                    k: v
                    for k, v in asdict(p).items()
                    if k
                    in (
                        "inserted",
                        "delivered",
                        "dead_lettered",
                        "lost",
                        "duplicates",
                        "out_of_order",
                        "requests",
                        "auth_failures",
                        "token_requests",
                    )
                },
                "items_per_request": p.items_per_request,
            }
            for name, p in self.destinations.items()
        }
        expected = sum(p.inserted for p in self.destinations.values())
        total = {k: v for k, v in asdict(self.total).items() if k != "request_items"}
        document = {
            **total,
            "items_per_request": self.total.items_per_request,
            "expected_deliveries": expected,
            "ok": self.ok,
            "destinations": per,
        }
        return dumps(dict(sorted((document | extra).items())))


def summary_line(
    report: DemoReport,
    received: dict[str, list[dict[str, object]]],
    drain_seconds: float,
    executions: ExecutionCounts | None,
) -> str:
    """`demo --json`'s line: the report, `received` as the stand-ins' listings have it (written by
    the strict writer, so a number keeps every digit it was sent with), and the executions' counts
    (`ok` only once none is still running)."""
    extra: dict[str, object] = {"drain_seconds": drain_seconds, "received": received}
    if executions is not None:
        extra |= {"executions": executions.as_dict(), "ok": report.ok and executions.running == 0}
    return report.to_json(**extra)


def expected_by_destination(items: list[dict[str, Any]], settings: Settings) -> dict[str, list[ItemKey]]:
    """Which destinations the routes send each inserted item to (what the audit expects there)."""
    expected: dict[str, list[ItemKey]] = {name: [] for name in settings.destinations}
    for sequence, item in enumerate(items, start=1):
        routed = route_record(insert_record(item, sequence), settings)
        for message in routed.messages:
            expected[message.destination].append((item["pk"]["S"], item["sk"]["S"]))
    return expected
