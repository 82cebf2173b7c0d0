"""What `GET /messages/{id}` says when the ledger has nothing for an id (chalicelib/operations.py).

Stream items are recorded at their first delivery attempt, not at ingest, so a well-formed id
without a record is often a message still queued: the answer says so instead of "unknown"."""

from __future__ import annotations

import pytest

from chalicelib.operations import missing_message

A_UUID = "0b1f5a57-9d8e-4a56-9a0f-5d6c1e1a7a11"


@pytest.mark.parametrize(
    ("message_id", "wanted", "unwanted"),
    [
        (A_UUID, ["no delivery attempt is recorded for it yet", "GET /status", "LEDGER_TTL"], []),
        (A_UUID.upper(), ["no delivery attempt is recorded"], ["UUIDs"]),
        ("run#orders", ["message ids are UUIDs"], ["attempt"]),
        ("", ["message ids are UUIDs"], ["attempt"]),
        ("x" * 3000, ["message ids are UUIDs"], ["attempt"]),
    ],
)
def test_a_missing_record_is_explained(message_id: str, wanted: list[str], unwanted: list[str]) -> None:
    answer = missing_message(message_id)
    assert answer.startswith(f"no message {message_id}")
    assert all(text in answer for text in wanted)
    assert not any(text in answer for text in unwanted)
    assert "Error:" not in answer  # reads as an answer, not a Python exception
