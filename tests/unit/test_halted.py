"""Whether an operator's retry or skip of a halted message is made, or why not (issue #27,
chalicelib/operations.py `release_refusal`): a table, shared by the routes (404, 409) and
`operate retry|skip`."""

from __future__ import annotations

import pytest

from chalicelib.model import LedgerRecord, Status
from chalicelib.operations import NoLongerHaltedError, NotHaltedError, release_refusal

ID = "0b1f5a57-9d8e-4a56-9a0f-5d6c1e1a7a11"


def record(status: Status, destination: str = "orders") -> LedgerRecord:
    return LedgerRecord(ID, status, destination=destination)


@pytest.mark.parametrize(
    ("found", "asked", "refused", "says"),
    [
        (record(Status.HALTED), "orders", None, ""),
        (record(Status.HALTED), None, None, ""),  # operate: any destination
        (record(Status.HALTED, destination=""), "orders", None, ""),  # written before records named it
        (None, "orders", NotHaltedError, f"no message {ID} of destination orders in the ledger"),
        (None, None, NotHaltedError, f"no message {ID} in the ledger"),
        (record(Status.HALTED, "crm"), "orders", NotHaltedError, "of destination orders"),
        (record(Status.FAILED), "orders", NoLongerHaltedError, "is not halted: its status is failed"),
        (record(Status.SKIP), None, NoLongerHaltedError, "its status is skip"),
        (record(Status.DELIVERED), "orders", NoLongerHaltedError, "its status is delivered"),
        (record(Status.FAILED, "crm"), "orders", NotHaltedError, "of destination orders"),
    ],
)
def test_a_release_is_refused_unless_the_message_is_a_halted_one_of_the_destination(
    found: LedgerRecord | None, asked: str | None, refused: type[Exception] | None, says: str
) -> None:
    answer = release_refusal(ID, found, asked)
    if refused is None:
        assert answer is None
    else:
        assert isinstance(answer, refused)
        assert says in str(answer)
