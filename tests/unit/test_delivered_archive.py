"""The delivered archive (issue #26): its keys and windows as tables, the writer's objects (per hour,
early past its bound, encrypted, a failed put counted and never raised, thread-safe), the reader
(only the window's hours, paged, corrupt objects skipped with their reason), and the drain's hook:
what a run delivered, exactly as sent, one object per run."""

from __future__ import annotations

import gzip
import json
import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib.delivered_archive import (
    DeliveredArchive,
    DeliveredReader,
    Skipped,
    UnreadableError,
    hour_prefix,
    line,
    object_key,
    parse,
    window_hours,
)
from chalicelib.drain import Drainer
from chalicelib.drain_state import DrainReport
from chalicelib.freshness import API_ID_ATTRIBUTE
from chalicelib.model import ApiResponse, ReceivedMessage
from tests.fakes import (
    FakeClock,
    FakeDeadLetters,
    FakeFifo,
    FakeLedger,
    FakeMetrics,
    FakeNotes,
    FakeS3,
    ScriptedApi,
    message,
)
from tests.unit.conftest import MakeSettings

BUCKET = "archive"
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC).timestamp()  # 10:00 UTC


def at(hh_mm_ss: str, day: int = 1) -> datetime:
    hour, minute, second = (int(part) for part in hh_mm_ss.split(":"))
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


def lines_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in gzip.decompress(data).splitlines()]


# --- keys and windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "hour", "started_at", "run_id", "part", "key"),
    [
        (
            "orders",
            at("10:00:00"),
            T0 + 59.5,
            "3f2a9c1d7e6b",
            1,
            "delivered/orders/2026/01/01/10/20260101T100059.500Z-3f2a9c1d7e6b-000001.jsonl.gz",
        ),
        (  # a run that started at 10:59 and delivered at 11:00 files that hour's under 11
            "orders_bulk",
            at("11:00:00"),
            T0 + 3599.001,
            "r",
            12,
            "delivered/orders_bulk/2026/01/01/11/20260101T105959.001Z-r-000012.jsonl.gz",
        ),
    ],
)
def test_an_object_s_key_says_destination_hour_run_start_run_and_part(
    destination: str, hour: datetime, started_at: float, run_id: str, part: int, key: str
) -> None:
    assert object_key(destination, hour, started_at, run_id, part) == key


@pytest.mark.parametrize(
    ("since", "until", "hours"),
    [
        (at("10:15:00"), at("10:45:00"), ["10"]),
        (at("10:15:00"), at("12:00:00"), ["10", "11"]),  # until is not in the window
        (at("10:00:00"), at("12:00:01"), ["10", "11", "12"]),
        (at("10:15:00"), at("10:15:00"), []),
        (at("11:00:00"), at("10:00:00"), []),
        (at("23:30:00"), at("00:30:00", day=2), ["23", "00"]),
    ],
)
def test_a_window_lists_the_hours_it_touches_and_no_other(
    since: datetime, until: datetime, hours: list[str]
) -> None:
    assert [f"{h:%H}" for h in window_hours(since, until)] == hours


def test_a_window_in_another_zone_is_the_same_utc_window_and_a_naive_one_is_refused() -> None:
    paris = timezone_hours(1)
    assert window_hours(datetime(2026, 1, 1, 11, 30, tzinfo=paris), at("11:00:00")) == [at("10:00:00")]
    with pytest.raises(ValueError, match="no time zone"):
        window_hours(datetime(2026, 1, 1, 10), at("11:00:00"))


def timezone_hours(hours: int) -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=hours))


def test_a_line_keeps_the_body_s_text_as_is() -> None:
    body = '{"name":"Zoë","n":1.10,"note":"line\\nbreak"}'
    record = json.loads(line("m-1", "g", T0 + 0.25, body))
    assert record == {"id": "m-1", "group": "g", "delivered_at": "2026-01-01T10:00:00.250Z", "body": body}


@pytest.mark.parametrize(
    ("api_id", "kept"),
    [("", None), ("m-1", None), ("original-7", "original-7")],  # only when it is another id
)
def test_a_line_keeps_the_id_the_api_knew_only_when_it_is_not_the_message_s(
    api_id: str, kept: str | None
) -> None:
    record = json.loads(line("m-1", "g", T0, "{}", api_id))
    assert record.get("api_id") == kept
    assert set(record) == {"id", "group", "delivered_at", "body"} | ({"api_id"} if kept else set())
    (read,) = parse(gzip.compress(line("m-1", "g", T0, "{}", api_id)))
    assert read.api_id == (kept or "")


# --- the writer ------------------------------------------------------------------------------------


def open_run(s3: FakeS3, metrics: FakeMetrics, flush_bytes: int = 1 << 20, started_at: float = T0) -> Any:
    archive = DeliveredArchive(s3, BUCKET, flush_bytes=flush_bytes, run_id=lambda: "run1")
    return archive.open("orders", started_at, metrics)


def test_a_run_puts_one_encrypted_object_at_its_end_with_every_line_in_order() -> None:
    s3, metrics = FakeS3(), FakeMetrics()
    run = open_run(s3, metrics)
    for n in range(5):
        run.add(f"m-{n}", f"g{n % 2}", T0 + n, f'{{"n":{n}}}')
    assert s3.calls == []  # nothing put before the run's end

    run.close()

    ((operation, params),) = s3.calls
    key = "delivered/orders/2026/01/01/10/20260101T100000.000Z-run1-000001.jsonl.gz"
    assert (operation, params["Key"], params["ServerSideEncryption"]) == ("PutObject", key, "AES256")
    assert [(r["id"], r["group"], r["body"]) for r in lines_of(s3.objects[key])] == [
        (f"m-{n}", f"g{n % 2}", f'{{"n":{n}}}') for n in range(5)
    ]
    assert (metrics.named("Archived"), metrics.named("ArchiveFailed")) == ([5], [])


def test_a_run_that_delivered_nothing_puts_nothing() -> None:
    s3, metrics = FakeS3(), FakeMetrics()
    open_run(s3, metrics).close()
    assert s3.calls == [] and metrics.values == []


def test_deliveries_either_side_of_an_hour_go_under_their_own_hour() -> None:
    s3 = FakeS3()
    run = open_run(s3, FakeMetrics(), started_at=T0 + 3590)
    run.add("a", "g", T0 + 3599.9, "{}")
    run.add("b", "g", T0 + 3600.0, "{}")
    run.close()

    assert {key: [r["id"] for r in lines_of(data)] for key, data in s3.objects.items()} == {
        "delivered/orders/2026/01/01/10/20260101T105950.000Z-run1-000001.jsonl.gz": ["a"],
        "delivered/orders/2026/01/01/11/20260101T105950.000Z-run1-000002.jsonl.gz": ["b"],
    }


def test_past_its_bound_a_run_puts_early_and_its_objects_keep_the_order_in_key_order() -> None:
    s3 = FakeS3()
    one = len(line("m-00", "g", T0, "x" * 100))
    run = open_run(s3, FakeMetrics(), flush_bytes=3 * one)
    for n in range(7):
        run.add(f"m-{n:02}", "g", T0 + n, "x" * 100)
        assert len(s3.objects) == (n + 1) // 3  # a put each time 3 lines are held, not before
    run.close()

    assert [len(lines_of(s3.objects[k])) for k in sorted(s3.objects)] == [3, 3, 1]
    ids = [r["id"] for k in sorted(s3.objects) for r in lines_of(s3.objects[k])]
    assert ids == [f"m-{n:02}" for n in range(7)]


def test_a_failed_put_is_logged_and_counted_never_raised_and_never_with_a_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3, metrics = FakeS3(), FakeMetrics()
    s3.refuse = ClientError(
        {"Error": {"Code": "SlowDown", "Message": "Reduce your request rate."}}, "PutObject"
    )
    run = open_run(s3, metrics, flush_bytes=len(line("m-0", "g", T0, "secret-body")) * 2)
    run.add("m-0", "g", T0, "secret-body")
    run.add("m-1", "g", T0, "secret-body")  # an early put, which fails
    s3.refuse = EndpointConnectionError(endpoint_url="https://s3.invalid")
    run.add("m-2", "g", T0, "secret-body")

    with caplog.at_level(logging.ERROR):
        run.close()

    assert s3.objects == {}
    assert (metrics.named("Archived"), metrics.named("ArchiveFailed")) == ([], [3])
    failures = [
        r for r in caplog.records if r.getMessage() == "delivered messages not archived: the put failed"
    ]
    assert [(r.destination, r.run, r.count) for r in failures] == [
        ("orders", "run1", 2),
        ("orders", "run1", 1),
    ]  # type: ignore[attr-defined]
    assert "SlowDown" in failures[0].error  # type: ignore[attr-defined]
    assert all("secret-body" not in json.dumps(vars(r), default=str) for r in caplog.records)


def test_workers_adding_at_once_lose_nothing_and_repeat_nothing() -> None:
    s3 = FakeS3()
    run = open_run(s3, FakeMetrics(), flush_bytes=2000)
    workers, each = 8, 250
    start = threading.Barrier(workers)

    def deliver(worker: int) -> None:
        start.wait()
        for n in range(each):
            run.add(f"w{worker}-{n:03}", f"g{worker}", T0 + n, "{}")

    threads = [threading.Thread(target=deliver, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.close()

    ids = [r["id"] for k in sorted(s3.objects) for r in lines_of(s3.objects[k])]
    assert len(s3.objects) > 1 and len(ids) == len(set(ids)) == workers * each
    for worker in range(workers):  # each group (one worker's) in its delivered order
        assert [i for i in ids if i.startswith(f"w{worker}-")] == [f"w{worker}-{n:03}" for n in range(each)]


# --- the reader ------------------------------------------------------------------------------------


def archived(s3: FakeS3, hour: datetime, name: str, *records: tuple[str, datetime]) -> str:
    """An object of a run under `hour` holding (id, delivered at) records, as the writer writes it."""
    key = f"{hour_prefix('orders', hour)}{name}.jsonl.gz"
    data = b"".join(line(i, "g", moment.timestamp(), f'{{"id":"{i}"}}') for i, moment in records)
    s3.objects[key] = gzip.compress(data)
    return key


def ids(records: Any) -> list[str]:
    return [r.message_id for r in records]


def test_a_window_reads_only_its_hours_and_its_records_from_since_until_before_until() -> None:
    s3 = FakeS3()
    archived(s3, at("09:00:00"), "r0", ("early", at("09:59:59")))
    archived(s3, at("10:00:00"), "r1", ("a", at("10:10:00")), ("b", at("10:20:00")), ("c", at("10:30:00")))
    archived(s3, at("10:00:00"), "r2", ("d", at("10:40:00")))
    archived(s3, at("11:00:00"), "r3", ("e", at("11:00:00")), ("late", at("11:05:00")))
    archived(s3, at("12:00:00"), "r4", ("later", at("12:00:00")))
    s3.objects["delivered/orders_bulk/2026/01/01/10/other.jsonl.gz"] = b"another destination's"
    reader = DeliveredReader(s3, BUCKET)

    assert ids(reader.records("orders", at("10:20:00"), at("11:05:00"))) == ["b", "c", "d", "e"]
    assert s3.listed_prefixes() == ["delivered/orders/2026/01/01/10/", "delivered/orders/2026/01/01/11/"]
    assert reader.skipped == [] and reader.requests == 2 + 3  # two lists, three objects read


def test_listing_follows_the_pages() -> None:
    s3 = FakeS3(page_size=2)
    for n in range(5):
        archived(s3, at("10:00:00"), f"r{n}", (f"m{n}", at(f"10:0{n}:00")))
    reader = DeliveredReader(s3, BUCKET)

    assert ids(reader.records("orders", at("10:00:00"), at("11:00:00"))) == ["m0", "m1", "m2", "m3", "m4"]
    assert len(s3.listed_prefixes()) == 3


def test_keys_after_a_checkpoint_skip_the_hours_and_objects_before_it() -> None:
    s3 = FakeS3(page_size=2)
    first = archived(s3, at("10:00:00"), "r1", ("a", at("10:10:00")))
    second = archived(s3, at("10:00:00"), "r2", ("b", at("10:20:00")))
    third = archived(s3, at("11:00:00"), "r3", ("c", at("11:20:00")))
    reader = DeliveredReader(s3, BUCKET)
    window = (at("10:00:00"), at("12:00:00"))

    assert list(reader.keys("orders", *window, after=first)) == [second, third]
    assert list(reader.keys("orders", *window, after=third)) == []
    assert s3.listed_prefixes()[-1:] == ["delivered/orders/2026/01/01/11/"]  # hour 10 not listed again


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            gzip.compress(b'{"id":"x","group":"g","delivered_at":"2026-01-01T10:00:00.000Z","body":"{}"}\n')[
                :-9
            ],
            "not a whole gzip stream (EOFError)",
        ),
        (b'{"id": "not gzip"}', "not a whole gzip stream (BadGzipFile)"),
        (gzip.compress(b"{not json\n"), "line 1 is not an archived delivery"),
        (
            gzip.compress(b'{"id":"x","group":"g","delivered_at":"2026-01-01T10:00:00.000Z"}\n'),
            "line 1 is not an archived delivery",
        ),
        (gzip.compress(b'["x","g","2026-01-01T10:00:00.000Z","{}"]\n'), "line 1 is not an archived delivery"),
        (
            gzip.compress(b'{"id":"x","group":"g","delivered_at":"2026-01-01T10:00:00","body":"{}"}\n'),
            "line 1 is not an archived delivery",
        ),
        (
            gzip.compress(b'{"id":"x","group":"g","delivered_at":"yesterday","body":"{}"}\n'),
            "line 1 is not an archived delivery",
        ),
        (
            gzip.compress(b'{"id":1,"group":"g","delivered_at":"2026-01-01T10:00:00.000Z","body":"{}"}\n'),
            "line 1 is not an archived delivery",
        ),
        (gzip.compress(b"\xff\xfe\n"), "line 1 is not an archived delivery"),
    ],
)
def test_an_unreadable_object_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableError) as raised:
        parse(data)
    assert str(raised.value) == reason


def test_a_corrupt_or_vanished_object_is_skipped_with_its_reason_and_the_rest_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3 = FakeS3()
    archived(s3, at("10:00:00"), "r1", ("a", at("10:10:00")))
    truncated = archived(s3, at("10:00:00"), "r2", ("b", at("10:20:00")))
    s3.objects[truncated] = s3.objects[truncated][:-5]
    garbage = f"{hour_prefix('orders', at('10:00:00'))}r3.jsonl.gz"
    s3.objects[garbage] = b"\x00" * 40
    archived(s3, at("11:00:00"), "r4", ("c", at("11:10:00")))
    reader = DeliveredReader(s3, BUCKET)
    keys = list(reader.keys("orders", at("10:00:00"), at("12:00:00")))
    del s3.objects[keys[-1]]  # expired between the listing and the read

    with caplog.at_level(logging.WARNING):
        found = [r for key in keys for r in reader.read(key, at("10:00:00"), at("12:00:00"))]

    assert ids(found) == ["a"]
    assert reader.skipped == [
        Skipped(truncated, "not a whole gzip stream (EOFError)"),
        Skipped(garbage, "not a whole gzip stream (BadGzipFile)"),
        Skipped(keys[-1], "gone since it was listed (expired?)"),
    ]
    assert [r.getMessage() for r in caplog.records].count("archived object skipped") == 3


def test_a_read_s3_refuses_is_raised_not_skipped() -> None:
    class Throttled(FakeS3):
        def get_object(self, **params: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "GetObject")

    with pytest.raises(ClientError):
        DeliveredReader(Throttled(), BUCKET).read("k", at("10:00:00"), at("11:00:00"))


def test_what_the_writer_writes_the_reader_reads_back() -> None:
    s3 = FakeS3()
    run = open_run(s3, FakeMetrics(), started_at=T0 + 3000)
    bodies = ['{"n":1}', '{"name":"Zoë"}', '"just a string"', "{}"]
    for n, body in enumerate(bodies):
        run.add(f"m{n}", "g", T0 + 3598 + n, body)  # two in hour 10, two in 11
    run.close()

    read = list(DeliveredReader(s3, BUCKET).records("orders", at("09:00:00"), at("13:00:00")))
    assert [(r.message_id, r.body) for r in read] == [(f"m{n}", b) for n, b in enumerate(bodies)]
    assert [r.delivered_at for r in read] == [at("10:59:58"), at("10:59:59"), at("11:00:00"), at("11:00:01")]


# --- the drain's hook ------------------------------------------------------------------------------

FAST = {"TRICKLE_DEST_ORDERS_RATE_LIMIT_PER_S": "10000", "TRICKLE_DEST_ORDERS_RATE_LIMIT_BURST": "100"}


def drain(
    make_settings: MakeSettings,
    api: ScriptedApi,
    messages: list[ReceivedMessage],
    s3: FakeS3,
    enrich: Any = None,
    **env: str,
) -> DrainReport:
    settings = make_settings(**(FAST | {"TRICKLE_DRAIN_WORKERS": "3"} | env))
    queue = FakeFifo(hold_delays=True)
    queue.put(*messages)
    drainer = Drainer(
        queue,
        FakeDeadLetters(),
        FakeLedger(),
        api,
        settings.destination("orders"),
        settings,
        FakeNotes(),
        enrich=enrich,
        metrics=FakeMetrics,
        clock=FakeClock(T0),
        delivered=DeliveredArchive(s3, BUCKET, run_id=lambda: "run1"),
    )
    return drainer.run(lambda: 10**9)


def only_object(s3: FakeS3) -> list[dict[str, Any]]:
    (data,) = s3.objects.values()
    return lines_of(data)


def answering(**by_body: int) -> ScriptedApi:
    return ScriptedApi(lambda body, nth: ApiResponse(by_body.get(body.replace(":", "_"), 200)))


def test_a_run_archives_what_it_delivered_as_sent_and_not_what_failed(make_settings: MakeSettings) -> None:
    s3 = FakeS3()
    messages = [message("g0", 0), message("g0", 1), message("g1", 0), message("g2", 0), message("g2", 1)]
    report = drain(
        make_settings, answering(g1_0=400, g2_0=503), messages, s3, TRICKLE_DEST_ORDERS_ORDERING="skip"
    )

    assert (report.delivered, report.dead_lettered, report.retried) == (2, 1, 1)
    (key,) = s3.objects
    assert key == "delivered/orders/2026/01/01/10/20260101T100000.000Z-run1-000001.jsonl.gz"
    lines = only_object(s3)
    assert sorted((r["id"], r["group"], r["body"]) for r in lines) == [
        ("g0-0", "g0", "g0:0"),
        ("g0-1", "g0", "g0:1"),
    ]
    assert {r["delivered_at"] for r in lines} == {"2026-01-01T10:00:00.000Z"}


def test_an_enriched_body_is_archived_as_the_api_got_it(make_settings: MakeSettings) -> None:
    s3 = FakeS3()
    api = answering()
    drain(make_settings, api, [message("g0", 0), message("g1", 0)], s3, enrich=lambda route, body: f"{body}+")

    assert sorted(r["body"] for r in only_object(s3)) == sorted(api.bodies()) == ["g0:0+", "g1:0+"]


def test_each_item_of_a_batch_is_archived_with_its_own_body(make_settings: MakeSettings) -> None:
    s3 = FakeS3()
    messages = [
        replace(message(f"g{g}", i), body=json.dumps({"m": f"g{g}-{i}"})) for i in range(3) for g in range(2)
    ]
    api = ScriptedApi(lambda body, nth: ApiResponse(500 if '"g1-1"' in body else 200))

    report = drain(make_settings, api, messages, s3, TRICKLE_DEST_ORDERS_BATCH_MAX_ITEMS="10")

    assert report.delivered == 4 and len(api.batches) == 1  # g1-1 failed; g1-2 waits behind it
    sent = {json.loads(body)["m"]: body for _, bodies in api.batches for body in bodies}
    assert {r["id"]: r["body"] for r in only_object(s3)} == {
        m: body for m, body in sent.items() if m in ("g0-0", "g0-1", "g0-2", "g1-0")
    }


def test_a_run_whose_archive_put_fails_still_delivers_and_ends_as_it_would(
    make_settings: MakeSettings,
) -> None:
    s3 = FakeS3()
    s3.refuse = ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "PutObject")
    report = drain(make_settings, answering(), [message("g0", 0)], s3)
    assert (report.delivered, report.stopped_by, s3.objects) == (1, "empty", {})


def test_a_run_that_dies_still_archives_what_it_delivered(make_settings: MakeSettings) -> None:
    """An AWS error ends the run: the groups it delivered are finished and archived before it raises."""

    class Failing(FakeFifo):
        def receive(self, max_messages: int, visibility_timeout_s: int) -> list[ReceivedMessage]:
            if self.receives:
                raise EndpointConnectionError(endpoint_url="https://sqs.invalid")
            return super().receive(max_messages, visibility_timeout_s)

    settings = make_settings(**(FAST | {"TRICKLE_DRAIN_WORKERS": "1"}))
    queue = Failing()
    queue.put(*[message(f"g{g}", 0) for g in range(3)])
    s3 = FakeS3()
    drainer = Drainer(
        queue,
        FakeDeadLetters(),
        FakeLedger(),
        answering(),
        settings.destination("orders"),
        settings,
        metrics=FakeMetrics,
        clock=FakeClock(T0),
        delivered=DeliveredArchive(s3, BUCKET),
        draw=lambda a, b: a,
    )
    with pytest.raises(EndpointConnectionError):
        drainer.run(lambda: 10**9)
    assert sorted(r["id"] for r in only_object(s3)) == ["g0-0", "g1-0", "g2-0"]


def test_a_message_the_api_knows_by_another_id_is_archived_with_it(make_settings: MakeSettings) -> None:
    """Replaying it again with the same keys must reach the API under that id, not the replay's."""
    s3 = FakeS3()
    replayed = replace(message("g0", 0), attributes={API_ID_ATTRIBUTE: "original-7"})
    drain(make_settings, answering(), [replayed, message("g1", 0)], s3)

    assert sorted((r["id"], r.get("api_id")) for r in only_object(s3)) == [
        ("g0-0", "original-7"),
        ("g1-0", None),
    ]
