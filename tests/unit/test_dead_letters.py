"""Dead-letter entries and redrive copies (chalicelib/dead_letter_entries.py, pure), and the redrive
(chalicelib/dead_letters.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from chalicelib.dead_letter_entries import (
    ATTEMPTS_ATTRIBUTE,
    EXCERPT_ATTRIBUTE,
    FIRST_ATTEMPT_ATTRIBUTE,
    LAST_ATTEMPT_ATTRIBUTE,
    REDRIVES_ATTRIBUTE,
    REJECTED_AT_ATTRIBUTE,
    RELAY_ATTRIBUTES,
    STATUS_ATTRIBUTE,
    dead_letter,
    redrive_copy,
)
from chalicelib.dead_letters import RedriveFilter, Redriver, RedriveReport
from chalicelib.freshness import API_ID_ATTRIBUTE
from chalicelib.model import (
    DESTINATION_ATTRIBUTE,
    MESSAGE_ID_ATTRIBUTE,
    REASON_ATTRIBUTE,
    LedgerRecord,
    OutboundMessage,
    ReceivedMessage,
    Status,
)
from tests.fakes import FakeFifo, message

SQS_MAX_ATTRIBUTES = 10
MESSAGE_ID = "6f1c2b1e-0d57-5b8a-9d53-3a4c5e6f7a8b"
BODY = '{"version": 1, "message_id": "6f1c2b1e", "item": {"name": "widget"}}'
FIRST = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z
LAST = 1_767_229_200.0  # 2026-01-01T01:00:00.000Z
# Characters SQS accepts in a message body or a String attribute value.
SQS_TEXT = re.compile("^[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")

RELAY: dict[str, str] = {
    MESSAGE_ID_ATTRIBUTE: MESSAGE_ID,
    DESTINATION_ATTRIBUTE: "crm",
    "trickle-route": "everything",
}


def received(
    attributes: Mapping[str, str] | None = None,
    copy_id: str = "sqs-copy-1",
    group_id: str = "items#user-1",
    message_id: str = MESSAGE_ID,
    body: str = BODY,
) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=message_id,
        group_id=group_id,
        receipt_handle=f"rh-{copy_id}",
        body=body,
        receive_count=1,
        attributes=dict(RELAY if attributes is None else attributes),
        copy_id=copy_id,
    )


def as_received(message: OutboundMessage, copy_id: str) -> ReceivedMessage:
    """What a consumer of the queue `message` was sent to receives back."""
    return received(
        attributes=message.attributes,
        copy_id=copy_id,
        group_id=message.group_id,
        message_id=message.message_id,
        body=message.body,
    )


def failed_record(**overrides: object) -> LedgerRecord:
    fields: dict[str, object] = {
        "message_id": MESSAGE_ID,
        "status": Status.FAILED,
        "attempts": 5,
        "group_id": "items#user-1",
        "last_status_code": 503,
        "last_error": "HTTP 503",
        "first_attempt_at": FIRST,
        "last_attempt_at": LAST,
        "updated_at": LAST,
    }
    fields.update(overrides)
    return LedgerRecord(**fields)  # type: ignore[arg-type]


# --- dead_letter ----------------------------------------------------------------------------------


def test_dead_letter_keeps_the_message_and_says_why() -> None:
    message = received()
    entry = dead_letter(
        message, "gave up after 5 attempts; last: HTTP 503", "Service Unavailable", failed_record()
    )
    assert entry.message_id == MESSAGE_ID
    assert entry.group_id == "items#user-1"
    assert entry.body == BODY
    assert entry.dedup_id == "dead-sqs-copy-1"
    assert entry.sequence_number == ""
    assert dict(entry.attributes) == {
        **RELAY,
        REASON_ATTRIBUTE: "gave up after 5 attempts; last: HTTP 503",
        ATTEMPTS_ATTRIBUTE: "5",
        REDRIVES_ATTRIBUTE: "0",
        STATUS_ATTRIBUTE: "503",
        EXCERPT_ATTRIBUTE: "Service Unavailable",
        FIRST_ATTEMPT_ATTRIBUTE: "2026-01-01T00:00:00.250Z",
        LAST_ATTEMPT_ATTRIBUTE: "2026-01-01T01:00:00.000Z",
    }


def test_dead_letter_uses_at_most_ten_attributes() -> None:
    crowded = {
        **RELAY,
        REDRIVES_ATTRIBUTE: "2",
        REASON_ATTRIBUTE: "an older reason",
        STATUS_ATTRIBUTE: "500",
        "unrelated-1": "x",
        "unrelated-2": "y",
        "unrelated-3": "z",
    }
    entry = dead_letter(received(crowded), "HTTP 422: refused", "bad field", failed_record())
    assert len(entry.attributes) == SQS_MAX_ATTRIBUTES
    assert "unrelated-1" not in entry.attributes
    assert entry.attributes[REASON_ATTRIBUTE] == "HTTP 422: refused"
    assert entry.attributes[STATUS_ATTRIBUTE] == "503"  # from the ledger, not the old copy
    assert entry.attributes[REDRIVES_ATTRIBUTE] == "2"


def test_dead_letter_truncates_reason_and_excerpt() -> None:
    entry = dead_letter(received(), "r" * 5000, "e" * 5000, failed_record())
    assert entry.attributes[REASON_ATTRIBUTE] == "r" * 1024
    assert entry.attributes[EXCERPT_ATTRIBUTE] == "e" * 256


def test_dead_letter_without_a_ledger_record() -> None:
    entry = dead_letter(received(), "skipped by an operator", "", None)
    assert dict(entry.attributes) == {
        **RELAY,
        REASON_ATTRIBUTE: "skipped by an operator",
        ATTEMPTS_ATTRIBUTE: "0",
        REDRIVES_ATTRIBUTE: "0",
    }


def test_dead_letter_leaves_out_what_is_unknown() -> None:
    record = failed_record(last_status_code=None, first_attempt_at=None, last_attempt_at=None, attempts=2)
    entry = dead_letter(received(), "gave up after 2 attempts; last: timeout", "", record)
    for absent in (STATUS_ATTRIBUTE, EXCERPT_ATTRIBUTE, FIRST_ATTEMPT_ATTRIBUTE, LAST_ATTEMPT_ATTRIBUTE):
        assert absent not in entry.attributes
    assert entry.attributes[ATTEMPTS_ATTRIBUTE] == "2"


def test_dead_letter_never_sends_an_empty_reason() -> None:
    assert dead_letter(received(), "", "", None).attributes[REASON_ATTRIBUTE] == "unknown"


def test_dead_letter_attribute_values_are_never_empty() -> None:
    entry = dead_letter(
        received({**RELAY, "trickle-route": ""}), "", "", failed_record(last_status_code=None)
    )
    assert "trickle-route" not in entry.attributes
    assert all(value for value in entry.attributes.values())


def test_dead_letter_relays_only_the_relay_attributes_present() -> None:
    entry = dead_letter(received({MESSAGE_ID_ATTRIBUTE: MESSAGE_ID}), "why", "", None)
    assert entry.attributes[MESSAGE_ID_ATTRIBUTE] == MESSAGE_ID
    assert DESTINATION_ATTRIBUTE not in entry.attributes


def test_dead_letter_is_deduplicated_per_sqs_copy() -> None:
    first = dead_letter(received(copy_id="copy-a"), "why", "", None)
    again = dead_letter(received(copy_id="copy-a"), "another try", "", None)
    redriven = dead_letter(received(copy_id="copy-b"), "why", "", None)
    assert first.dedup_id == again.dedup_id == "dead-copy-a"
    assert redriven.dedup_id == "dead-copy-b"


def test_dead_letter_attribute_values_are_text_sqs_accepts() -> None:
    """A response excerpt is whatever the API sent; SQS refuses control characters in attribute
    values (InvalidParameterValue), and a dead letter that cannot be sent is never dead-lettered."""
    excerpt = "\x1b[31merror\x1b[0m\x00\x0c\x7f page"
    entry = dead_letter(received(), "HTTP 400: refused by the API", excerpt, failed_record())
    for name, value in entry.attributes.items():
        assert SQS_TEXT.match(value), (name, value)
    assert "error" in entry.attributes[EXCERPT_ATTRIBUTE]


def test_dead_letter_does_not_change_the_received_message() -> None:
    message = received()
    dead_letter(message, "why", "excerpt", failed_record())
    assert dict(message.attributes) == RELAY


# --- redrive_copy ---------------------------------------------------------------------------------


def test_redrive_copy_drops_the_failure_and_counts_the_redrive() -> None:
    dead = as_received(dead_letter(received(), "HTTP 422", "bad field", failed_record()), "dlq-copy-1")
    copy = redrive_copy(dead)
    assert copy.message_id == MESSAGE_ID
    assert copy.group_id == "items#user-1"
    assert copy.body == BODY
    assert copy.sequence_number == ""
    assert dict(copy.attributes) == {**RELAY, REDRIVES_ATTRIBUTE: "1"}
    assert copy.dedup_id == f"{MESSAGE_ID}-r1"


@pytest.mark.parametrize(("before", "after"), [(None, "1"), ("0", "1"), ("1", "2"), ("9", "10"), ("", "1")])
def test_redrive_copy_increments_the_generation(before: str | None, after: str) -> None:
    attributes = dict(RELAY) if before is None else {**RELAY, REDRIVES_ATTRIBUTE: before}
    copy = redrive_copy(received(attributes))
    assert copy.attributes[REDRIVES_ATTRIBUTE] == after
    assert copy.dedup_id == f"{MESSAGE_ID}-r{after}"


def test_redrive_copy_drops_every_non_relay_attribute() -> None:
    noisy = {
        **RELAY,
        REASON_ATTRIBUTE: "x",
        STATUS_ATTRIBUTE: "500",
        EXCERPT_ATTRIBUTE: "y",
        ATTEMPTS_ATTRIBUTE: "5",
        FIRST_ATTEMPT_ATTRIBUTE: "t1",
        LAST_ATTEMPT_ATTRIBUTE: "t2",
        "something-else": "z",
    }
    copy = redrive_copy(received(noisy))
    assert set(copy.attributes) == {*RELAY, REDRIVES_ATTRIBUTE}
    assert set(RELAY) < set(RELAY_ATTRIBUTES)


@pytest.mark.parametrize(
    ("attributes", "first_attempt"),
    [
        (RELAY, "2026-01-01T00:00:00.250Z"),
        # The API's id, kept so the redriven copy reaches the API as the message it knows, in place
        # of the first attempt's time (the ledger's record keeps it): ten attributes at most.
        ({**RELAY, API_ID_ATTRIBUTE: "original-7"}, None),
    ],
)
def test_a_message_the_api_knows_by_another_id_keeps_it_through_its_dead_letter_and_redrive(
    attributes: dict[str, str], first_attempt: str | None
) -> None:
    crowded = {**attributes, REDRIVES_ATTRIBUTE: "1", "unrelated": "x"}
    entry = dead_letter(received(crowded), "HTTP 422: refused", "bad field", failed_record())
    assert len(entry.attributes) <= SQS_MAX_ATTRIBUTES
    assert entry.attributes.get(API_ID_ATTRIBUTE) == attributes.get(API_ID_ATTRIBUTE)
    assert entry.attributes.get(FIRST_ATTEMPT_ATTRIBUTE) == first_attempt
    assert entry.attributes[LAST_ATTEMPT_ATTRIBUTE] == "2026-01-01T01:00:00.000Z"
    copy = redrive_copy(received(entry.attributes))
    assert dict(copy.attributes) == {**attributes, REDRIVES_ATTRIBUTE: "2"}


def test_redrive_copy_dedup_ids_stay_within_the_sqs_limit() -> None:
    copy = redrive_copy(received({**RELAY, REDRIVES_ATTRIBUTE: "999"}))
    assert len(copy.dedup_id) <= 128
    assert re.fullmatch(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]+", copy.dedup_id)


def test_die_redrive_die_redrive_keeps_counting() -> None:
    original = received(copy_id="src-1")
    dlq_1 = as_received(dead_letter(original, "HTTP 500", "", failed_record()), "dlq-1")
    back_1 = as_received(redrive_copy(dlq_1), "src-2")
    dlq_2 = as_received(dead_letter(back_1, "HTTP 500", "", failed_record(attempts=3)), "dlq-2")
    assert dlq_2.attributes[REDRIVES_ATTRIBUTE] == "1"
    assert dlq_2.attributes[ATTEMPTS_ATTRIBUTE] == "3"
    back_2 = redrive_copy(dlq_2)
    assert back_2.attributes[REDRIVES_ATTRIBUTE] == "2"
    assert back_2.dedup_id == f"{MESSAGE_ID}-r2"
    assert back_2.body == original.body
    assert back_2.group_id == original.group_id
    assert {dead_letter(original, "", "", None).dedup_id, dead_letter(back_1, "", "", None).dedup_id} == {
        "dead-src-1",
        "dead-src-2",
    }


def test_rejected_at_ingest_is_not_a_failure_attribute_kept_on_redrive() -> None:
    stub = received({**RELAY, REJECTED_AT_ATTRIBUTE: "ingest"})
    assert REJECTED_AT_ATTRIBUTE not in redrive_copy(stub).attributes


# --- Redriver: the ordered copy -----------------------------------------------------------------


def test_a_refused_copy_holds_the_rest_of_its_group_and_no_other() -> None:
    """Once a letter's copy cannot be queued, the later letters of its group stay behind it (they
    would overtake it); other groups move on. The next redrive moves the group in order."""
    dead_letters, source = FakeFifo(), FakeFifo()
    dead_letters.put(*[message(group, i) for i in range(4) for group in ("a", "b")])  # a0 b0 a1 b1 ...
    source.refuse = {"a-1"}
    redriver = Redriver(None, dead_letters, source)  # type: ignore[arg-type]

    refused = redriver.redrive(use_move_task=False)

    assert (refused.moved, refused.failed) == (5, 1)
    assert [m.message_id for m in source.waiting] == ["a-0", "b-0", "b-1", "b-2", "b-3"]
    assert [m.message_id for m in dead_letters.waiting] == ["a-1", "a-2", "a-3"]  # released, in order
    assert not dead_letters.in_flight

    source.refuse = set()
    again = redriver.redrive(use_move_task=False)

    assert (again.moved, again.failed, dead_letters.depth()) == (3, 0, 0)
    assert [m.message_id for m in source.waiting if m.group_id == "a"] == ["a-0", "a-1", "a-2", "a-3"]


# --- RedriveFilter --------------------------------------------------------------------------------


def test_an_empty_filter_wants_everything() -> None:
    wanted = RedriveFilter()
    assert wanted.everything
    assert wanted.wants(received(group_id="a", message_id="1"))
    assert wanted.wants(received(group_id="b", message_id="2"))


def test_filter_by_group() -> None:
    wanted = RedriveFilter(groups={"a", "c"})
    assert not wanted.everything
    assert wanted.wants(received(group_id="a"))
    assert wanted.wants(received(group_id="c"))
    assert not wanted.wants(received(group_id="b"))


def test_filter_by_message_id() -> None:
    wanted = RedriveFilter(message_ids=["m1"])
    assert not wanted.everything
    assert wanted.wants(received(message_id="m1", group_id="any"))
    assert not wanted.wants(received(message_id="m2", group_id="any"))


def test_filter_by_group_and_message_id_needs_both() -> None:
    wanted = RedriveFilter(groups={"a"}, message_ids={"m1"})
    assert wanted.wants(received(group_id="a", message_id="m1"))
    assert not wanted.wants(received(group_id="a", message_id="m2"))
    assert not wanted.wants(received(group_id="b", message_id="m1"))


def test_empty_containers_want_nothing() -> None:
    assert not RedriveFilter(groups=set()).wants(received())
    assert not RedriveFilter(message_ids=()).wants(received())
    assert not RedriveFilter(groups=set()).everything


def test_redrive_report_as_dict() -> None:
    report = RedriveReport(moved=3, failed=1, groups=["a"])
    assert report.as_dict() == {
        "method": "copy",
        "moved": 3,
        "skipped_not_redrivable": 0,
        "skipped_by_filter": 0,
        "failed": 1,
        "interrupted": False,
        "groups": ["a"],
    }


# --- RedriveFilter.from_request ------------------------------------------------------------------


def test_a_redrive_request_names_groups_or_message_ids() -> None:
    wanted, description = RedriveFilter.from_request(
        f'{{"groups": ["submit#a", "items#\\"b\\"", "submit#a"], "message_ids": ["{MESSAGE_ID}"]}}'
    )
    assert wanted.wants(received(group_id="submit#a", message_id=MESSAGE_ID))
    assert description == {"groups": ['items#"b"', "submit#a"], "message_ids": [MESSAGE_ID]}
    assert RedriveFilter.from_request(b"")[0].everything
    assert RedriveFilter.from_request(b"{}")[0].everything


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"message_ids": ["not-a-uuid", "../../etc"]}',
            "'message_ids'[0] (\"not-a-uuid\") is not a message id",
        ),
        (MESSAGE_ID.upper().join([b'{"message_ids": ["'.decode(), '"]}']).encode(), "is not a message id"),
        (b'{"groups": ["a b"]}', "'groups'[0] (\"a b\") is not a message group id"),
        (b'{"groups": ["' + b"g" * 129 + b'"]}', "is not a message group id (1-128 printable ASCII"),
        (b'{"groups": ["\\ud800"]}', "'groups'[0] (\"\\ud800\") is not a message group id"),
        (b'{"groups": [7]}', "'groups'[0] (int) is not a message group id"),
        (b'{"groups": "a"}', "'groups' must be a list of 1 to 500 strings"),
        (b'{"groups": []}', "'groups' must be a list of 1 to 500 strings"),
        (b'{"groups": [' + b",".join([b'"g"'] * 501) + b"]}", "'groups' must be a list of 1 to 500"),
        (b'{"groups": ["' + b"g" * 70_000 + b'"]}', "the body is 70016 bytes; the limit is 65536"),
        (b'{"groups": ["a"], "groups": ["b"]}', 'the key "groups" appears twice'),
        (b'{"group": ["a"]}', "the body may hold only 'groups' and 'message_ids'"),
        (b"[]", "the body may hold only 'groups' and 'message_ids'"),
        (b"{nope", "the body is not valid JSON"),
        (b"[" * 50_000, "the body is nested more than 32 levels deep"),
    ],
)
def test_a_bad_redrive_request_says_what_to_fix(body: bytes, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        RedriveFilter.from_request(body)
    assert message in str(refused.value)
