"""Lambda-shaped DynamoDB stream records for the bench: the event format AWS documents for the
DynamoDB event source (NEW_AND_OLD_IMAGES), over a single-table design like the one in
chalicelib/routes.toml: customers' profiles, orders, invoices and carts sharing a partition key."""

from __future__ import annotations

from typing import Any, Literal, get_args

STREAM_VIEW = "NEW_AND_OLD_IMAGES"
CREATED = 1_764_643_200.0  # 2025-12-02T00:00:00Z: fixed, so runs build identical messages
# Every 20 records of the mixed stream: 12 new orders, 3 orders changing status, 2 invoices (routed
# to both APIs), 1 profile change (to the CRM), 2 cart changes no route takes.
MIX = ("order",) * 12 + ("order_update",) * 3 + ("invoice",) * 2 + ("profile",) + ("cart",) * 2


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float | str) -> dict[str, str]:
    return {"N": str(value)}


def customer(i: int, customers: int) -> str:
    return f"CUSTOMER#c{i % customers:04d}"


def order_image(i: int, pk: str, status: str = "placed") -> dict[str, Any]:
    lines = [
        {"M": {"sku": _s(f"SKU-{(i * 7 + k) % 997:04d}"), "qty": _n(1 + k), "price": _n(f"{9.9 + k:.2f}")}}
        for k in range(2)
    ]
    return {
        "pk": _s(pk),
        "sk": _s(f"ORDER#{i:07d}"),
        "type": _s("order"),
        "status": _s(status),
        "total": _n(f"{29.70 + i % 50:.2f}"),
        "currency": _s("EUR"),
        "lines": {"L": lines},
        "shipping": {"M": {"city": _s("Lyon"), "country": _s("FR"), "express": {"BOOL": i % 3 == 0}}},
        "created_at": _s("2025-12-02T00:00:00Z"),
    }


def _record(i: int, event: str, keys: dict[str, Any], new: Any, old: Any, stream_arn: str) -> dict[str, Any]:
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": CREATED + i,
        "Keys": keys,
        "SequenceNumber": str(10**20 + i),
        "SizeBytes": 420,
        "StreamViewType": STREAM_VIEW,
    }
    if new is not None:
        ddb["NewImage"] = new
    if old is not None:
        ddb["OldImage"] = old
    return {
        "eventID": f"ev-{i:07d}",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    }


def insert_record(i: int, image: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """The stream record of item `image`'s insert, event number `i`."""
    return _record(i, "INSERT", {"pk": image["pk"], "sk": image["sk"]}, image, None, stream_arn)


# How the bench writes a backlog's orders to the stream (issue 25's bulk section): `interleaved`, one
# customer after another (each run of `groups` orders holds one of each), or `grouped`, each
# customer's orders one after another. A FIFO queue keeps the send order; ministack's and moto's
# receive give visible messages in that order (skipping the groups already in flight), so
# interleaved gives up to ten groups a receive and grouped up to ten of one group; AWS documents
# that it returns as many of one group as it can whatever the order (docs/benchmarks.md).
WriteOrder = Literal["interleaved", "grouped"]
WRITE_ORDERS: tuple[WriteOrder, ...] = get_args(WriteOrder)


def group_of(position: int, count: int, groups: int, order: WriteOrder = "interleaved") -> int:
    """The customer (0 to `groups` - 1) of the order at `position` of `count` in the stream: grouped,
    in contiguous runs of about `count / groups` (as even as the division allows)."""
    if order == "grouped":
        return position * groups // count
    return position % groups


def order_records(
    count: int, groups: int, stream_arn: str, order: WriteOrder = "interleaved"
) -> list[dict[str, Any]]:
    """New orders only, spread over `groups` customers in the write `order`: every one is a message
    to the orders API."""
    return [
        insert_record(i, order_image(i, customer(group_of(i, count, groups, order), groups)), stream_arn)
        for i in range(count)
    ]


def mixed_records(count: int, customers: int, stream_arn: str) -> list[dict[str, Any]]:
    """A table's stream as it comes: several item types and events, some of them no route takes."""
    out = []
    for i in range(count):
        pk = customer(i, customers)
        kind = MIX[i % len(MIX)]
        if kind in ("order", "order_update"):
            image = order_image(i, pk, "placed" if kind == "order" else "shipped")
            old = order_image(i, pk) if kind == "order_update" else None
            event = "INSERT" if kind == "order" else "MODIFY"
        elif kind == "invoice":
            image = {
                "pk": _s(pk),
                "sk": _s(f"INVOICE#{i:07d}"),
                "type": _s("invoice"),
                "amount": _n(f"{49.90 + i % 20:.2f}"),
                "due": _s("2026-01-01"),
            }
            old, event = None, "INSERT"
        elif kind == "profile":
            image = {
                "pk": _s(pk),
                "sk": _s("PROFILE"),
                "type": _s("customer"),
                "name": _s(f"Customer {i % customers}"),
                "email": _s(f"c{i % customers}@example.com"),
            }
            old = image | {"email": _s(f"old{i % customers}@example.com")}
            event = "MODIFY"
        else:
            image = {"pk": _s(pk), "sk": _s("CART"), "type": _s("cart"), "items": {"L": [_s("SKU-0001")]}}
            old, event = {"pk": _s(pk), "sk": _s("CART"), "type": _s("cart"), "items": {"L": []}}, "MODIFY"
        keys = {"pk": image["pk"], "sk": image["sk"]}
        out.append(_record(i, event, keys, image, old, stream_arn))
    return out


def batches(records: list[dict[str, Any]], size: int = 100) -> list[dict[str, Any]]:
    """Lambda events of `size` records each, as the event source mapping hands them over."""
    return [{"Records": records[start : start + size]} for start in range(0, len(records), size)]
