"""What `python -m trickle_prove` counts as proved, per way."""

from __future__ import annotations

import pytest

from trickle_prove.__main__ import WayReport

ONE = {"expected": 1, "delivered": 1, "duplicates": 0}


@pytest.mark.parametrize(
    ("delivered", "calls", "denied", "error", "proved"),
    [
        ({"orders": ONE, "crm": ONE}, 25, [], None, True),
        ({"orders": ONE, "crm": ONE | {"delivered": 0}}, 25, [], None, False),  # one item never arrived
        ({"orders": ONE | {"duplicates": 1}}, 25, [], None, False),  # arrived twice
        ({"orders": ONE, "crm": {"expected": 0, "delivered": 0, "duplicates": 0}}, 25, [], None, False),
        ({"orders": ONE}, 25, ["ingest: sqs:SendMessage on arn:aws:sqs:..."], None, False),  # a role refuses
        ({"orders": ONE}, 0, [], None, False),  # nothing ran: nothing to hold the roles to
        ({}, 0, [], None, False),
        ({"orders": ONE}, 25, [], "removed: functions left after delete-stack", False),
    ],
)
def test_a_way_is_proved_when_every_item_arrived_once_and_every_call_was_allowed(
    delivered: dict[str, dict[str, int]], calls: int, denied: list[str], error: str | None, proved: bool
) -> None:
    report = WayReport("A", "moto", "prod", delivered=delivered, calls=calls, denied=denied, error=error)
    assert report.ok is proved
    assert report.text().startswith(f"Way A on moto, stage prod: {'proved' if proved else 'NOT proved'}")
