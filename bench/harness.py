"""The bench's moving parts: an emulator and the stand-in API in processes of their own (and for the
auth section a second stand-in, with an OAuth2 token endpoint, that verifies signatures; for the bulk
section a third, with a bulk endpoint), hooks that count (and optionally slow) every AWS call, CPU
readings from /proc, and the harness-ceiling probe."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import requests

from bench.figures import (
    BATCH_OPERATIONS,
    LatencyModel,
    batch_items,
    busy_share,
    ingest_figures,
    requests_only,
    stat_jiffies,
)
from bench.stream import batches
from chalicelib import naming, wiring
from chalicelib.records import build_messages
from chalicelib.request_shape import with_path
from chalicelib.settings import Destination, load_settings
from trickle_local.emulators import EmulatorName, start_emulator
from trickle_local.endpoint import clients, free_port
from trickle_local.standin_bulk import Bulk
from trickle_local.token_endpoint import TOKEN_PATH
from trickle_project import stage
from trickle_project.resources import provision

ROOT = Path(__file__).resolve().parent.parent
ROUTES_FILE = Path(__file__).with_name("routes.toml")
API_KEY = "bench-key"
UNLIMITED = 10_000  # requests per second: no rate limit within reach of the stand-in
ARCHIVE_BUCKET = "trickle-bench-archive"  # the archive section's (issue 26); the other runs have none


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), to read each process's cost apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every CPU since boot (Linux /proc/stat), to read the whole
    machine's load during a run, other processes' included."""
    try:
        with Path("/proc/stat").open() as stat:
            return stat_jiffies(stat.readline())
    except (OSError, ValueError, IndexError):
        return None


class Calls:
    """Every AWS request the process makes, by operation, the items its DynamoDB batch calls carry
    (they are billed per item, not per call), and the time spent waiting on them. With a latency
    model set, each HTTP round trip to the emulator is drawn out to the model's time for its
    operation, in the caller's thread: the call then takes what it would on AWS (or the emulator's
    time, when that is longer), and the SDK's own CPU comes on top, as it would."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.by_thread: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.seconds = 0.0
        self.modelled_seconds = 0.0
        self.padded_seconds = 0.0
        self.model: LatencyModel | None = None
        self._local = threading.local()
        self._lock = threading.Lock()

    def register(self, events: Any) -> None:
        events.register("before-call.*.*", self._before)
        for operation in BATCH_OPERATIONS:
            events.register(f"provide-client-params.{operation.replace(':', '.')}", self._items)
        events.register("before-send", self._sending)
        events.register("response-received", self._received)
        events.register("after-call.*.*", self._after)

    def _before(self, model: Any, **_: Any) -> None:
        self._local.started = time.perf_counter()
        operation = f"{model.service_model.service_name}:{model.name}"
        threads = threading.current_thread().name.split("_", 1)[0]  # a pool's prefix: "jobs_3" -> "jobs"
        with self._lock:
            self.counts[operation] += 1
            self.by_thread[threads][operation] += 1

    def _items(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        with self._lock:
            self.counts[f"dynamodb:{model.name}/items"] += batch_items(params)

    def _sending(self, event_name: str, **_: Any) -> None:
        """`before-send.<service>.<Operation>`: one HTTP attempt (botocore's retries pay again)."""
        model = self.model
        if model is None:
            self._local.sent = None
            return
        service, operation = event_name.split(".", 2)[1:]
        self._local.sent = (time.perf_counter(), model.milliseconds(service, operation) / 1000)

    def _received(self, **_: Any) -> None:
        """`response-received`: wait out what is left of the attempt's modelled time."""
        sent = getattr(self._local, "sent", None)
        self._local.sent = None
        if sent is None:
            return
        started, modelled = sent
        left = modelled - (time.perf_counter() - started)
        if left > 0:
            time.sleep(left)
        with self._lock:
            self.modelled_seconds += modelled
            self.padded_seconds += max(0.0, left)

    def _after(self, **_: Any) -> None:
        elapsed = time.perf_counter() - getattr(self._local, "started", time.perf_counter())
        with self._lock:
            self.seconds += elapsed

    def take(self) -> Taken:
        """What was counted since the last take, and a fresh start."""
        with self._lock:
            taken = Taken(
                dict(self.counts),
                self.seconds,
                self.modelled_seconds,
                self.padded_seconds,
                {name: dict(counts) for name, counts in self.by_thread.items()},
            )
            self.counts, self.seconds = Counter(), 0.0
            self.by_thread = defaultdict(Counter)
            self.modelled_seconds = self.padded_seconds = 0.0
        return taken


@dataclass(frozen=True)
class Taken:
    counts: dict[str, int]  # by `service:Operation`, plus `dynamodb:<batch op>/items`
    seconds: float  # waiting on AWS, summed over threads
    modelled_seconds: float  # what the latency model says those round trips take
    padded_seconds: float  # what was slept to draw the emulator's round trips out to that
    # the requests (not batch items) by the thread that made them, a pool's threads under its prefix
    by_thread: dict[str, dict[str, int]]


STANDIN = (
    "from trickle_local.standin_api import Faults, StandInApi\n"
    "from trickle_local.standin_bulk import Bulk\n"
    "from trickle_local.token_endpoint import TokenEndpoint\n"
    "StandInApi(Faults(latency_s={latency!r}, api_key={key!r}, signing_secret={signing!r}),"
    " port={port}, tokens={tokens}, bulk={bulk!r}).start()\n"
    "import time\nwhile True: time.sleep(3600)\n"
)


@dataclass(frozen=True)
class OAuth2Signing:
    """What the auth section's stand-in requires: a Bearer token from its own token endpoint, issued
    to this client for `lifetime_s`, and a Standard Webhooks signature with this secret."""

    lifetime_s: int
    client_id: str = "trickle-bench"
    client_secret: str = "bench-client-secret"
    signing_secret: str = "whsec_" + base64.b64encode(b"bench-signing-key-of-32-bytes-ok").decode()

    def token_endpoint(self) -> str:
        """The stand-in's `TokenEndpoint(...)`, as Python source."""
        return f"TokenEndpoint({self.client_id!r}, {self.client_secret!r}, lifetime_s={self.lifetime_s!r})"


def serve_standin(
    latency_s: float, api_key: str | None, oauth2: OAuth2Signing | None = None, bulk: Bulk | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """The stand-in API in a process of its own, so it does not compete with the drain for the GIL:
    requiring `api_key` in x-api-key, or with `oauth2` a token of its endpoint and a signature; with
    `bulk`, taking arrays of items at that endpoint too."""
    port = free_port()
    script = STANDIN.format(
        port=port,
        latency=latency_s,
        key=api_key,
        signing=oauth2.signing_secret if oauth2 else None,
        tokens=oauth2.token_endpoint() if oauth2 else None,
        bulk=bulk,
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            requests.get(url, timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError("the stand-in API did not start")


def harness_ceiling(url: str, api_key: str, workers: int, per_worker: int, pid: int) -> dict[str, Any]:
    """What this machine and the stand-in allow at `workers` concurrent POSTs with nothing else
    running: each worker a keep-alive http.client connection POSTing a message-sized body in a loop
    (no relay, no AWS). The relay's share of its bound cannot exceed this probe's."""
    host, port = url.removeprefix("http://").split(":")
    body = b'{"version":1,"message_id":"' + b"m" * 40 + b'","item":{"n":1}}' + b" " * 300
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        mine: list[float] = []
        try:
            for n in range(per_worker):
                started = time.perf_counter()
                headers = {
                    "x-api-key": api_key,
                    "Content-Type": "application/json",
                    "Idempotency-Key": str(n),
                }
                connection.request("POST", "/ceiling", body=body, headers=headers)
                connection.getresponse().read()
                mine.append(time.perf_counter() - started)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=loop, name=f"ceiling-{i}") for i in range(workers)]
    own, api = time.process_time(), cpu_seconds(pid)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    done = len(latencies)
    api_now = cpu_seconds(pid)
    return {
        "workers": workers,
        "requests": done,
        "errors": len(errors),
        "throughput_msgs_per_s": round(done / seconds, 1) if seconds else 0.0,
        "latency_ms_p50": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "client_cpu_ms_per_request": round((time.process_time() - own) * 1000 / max(1, done), 3),
        "standin_cpu_ms_per_request": (
            round((api_now - api) * 1000 / max(1, done), 3)
            if api is not None and api_now is not None
            else None
        ),
    }


AUTH_FIELDS = ("url", "auth", "token_url", "signing")  # what the auth section sets on the destination


class AuthStandIn:
    """A stand-in API that requires OAuth2 + signing (`OAuth2Signing`), in a process of its own."""

    def __init__(self, latency_s: float, oauth2: OAuth2Signing) -> None:
        self.oauth2 = oauth2
        self._process, self.url = serve_standin(latency_s, None, oauth2)

    @property
    def pid(self) -> int:
        return self._process.pid

    def counts(self) -> tuple[int, int]:
        """Requests its token endpoint answered and requests it refused (401) so far."""
        answer = requests.get(f"{self.url}/items?since={2**62}", timeout=10)
        answer.raise_for_status()
        document = answer.json()
        return int(document["token_requests"]), int(document["auth_failures"])

    def stage_variables(self, destination: str, env: dict[str, str]) -> dict[str, str]:
        """The destination of stage `env`, sending to this stand-in with its OAuth2 and signing."""
        url = naming.destination_variable(destination, "url")
        return {
            url: stage.with_netloc(env[url], self.url),
            naming.destination_variable(destination, "auth"): "oauth2_client_credentials",
            naming.destination_variable(destination, "token_url"): self.url + TOKEN_PATH,
            naming.destination_variable(destination, "signing"): "standard_webhooks",
        }

    def destination(self, name: str, env: dict[str, str]) -> Destination:
        """Destination `name` of stage `env` as it reads with `stage_variables`."""
        return load_settings(env | self.stage_variables(name, env)).destination(name)

    def secrets(self, destination: str, env: dict[str, str]) -> dict[str, str]:
        """Its SSM parameters' values (parameter name -> value) for `provision`."""
        d = self.destination(destination, env)
        client = {"client_id": self.oauth2.client_id, "client_secret": self.oauth2.client_secret}
        return {d.api_key_parameter: json.dumps(client), d.signing_parameter: self.oauth2.signing_secret}

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


# The bulk section's endpoint (issue 25): BULK_PATH under the orders destination's own path, taking
# `{"records": [...]}` and answering `{"results": [{"id", "status"}, ...]}`, one result per item.
BULK_PATH = "/bulk"
BULK_VARIABLES = {"batch_wrapper": "{records: @}", "batch_results": "results[].status"}
BULK_FIELDS = ("path", "batch_max_items", *BULK_VARIABLES)  # what the bulk section sets


def bulk_endpoint(url: str) -> Bulk:
    """The stand-in's bulk endpoint for a destination at `url`: where its batches go."""
    return Bulk(urlsplit(with_path(url, BULK_PATH)).path, array_at=("records",))


def bulk_variables(destination: str, env: Mapping[str, str], standin_url: str, batch: int) -> dict[str, str]:
    """The stage variables that send `destination` of stage `env` to the stand-in at `standin_url`:
    one message per request to its plain path (`batch` 1, the single-item relay), or up to `batch`
    per request to its bulk endpoint."""
    url = naming.destination_variable(destination, "url")
    variables = {url: stage.with_netloc(env[url], standin_url)}
    if batch > 1:
        fields = {"path": BULK_PATH, "batch_max_items": str(batch), **BULK_VARIABLES}
        variables |= {naming.destination_variable(destination, f): v for f, v in fields.items()}
    return variables


class BulkStandIn:
    """A stand-in API with the API key, its plain path and a bulk endpoint for a destination at
    `url`, in a process of its own; it counts the requests it received and the items they carried."""

    def __init__(self, latency_s: float, url: str) -> None:
        self.bulk = bulk_endpoint(url)
        self._process, self.url = serve_standin(latency_s, API_KEY, bulk=self.bulk)
        self._seen = 0

    @property
    def pid(self) -> int:
        return self._process.pid

    def take(self) -> tuple[int, int]:
        """The requests it received since the last take and the items they carried (one for a
        request to its plain path)."""
        answer = requests.get(f"{self.url}/?since={self._seen}", timeout=30)
        answer.raise_for_status()
        document = answer.json()
        self._seen += int(document["received"])
        return int(document["received"]), int(document["items"])

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


class LambdaContext:
    """Lambda's context object as the handlers (and Powertools' Logger) read it; the time left is
    plenty."""

    function_name = "trickle-bench-ingest"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:trickle-bench-ingest"
    memory_limit_in_mb = 128
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/trickle-bench-ingest"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10**9


def bench_env(endpoint: str, apis: Mapping[str, str]) -> dict[str, str]:
    """The local stage pointed at the emulator's `endpoint` and the stand-ins (`apis`, a URL per
    destination), reading the bench's routes file: without the stage's variables of destinations
    that file lacks, which a stage may not set."""
    env = stage.with_routes_file(stage.rebase(stage.stage_env("local"), endpoint, apis), ROUTES_FILE)
    return env | {
        "TRICKLE_LOG_LEVEL": "ERROR",
        "TRICKLE_DRAIN_BUDGET": "100000",
        "TRICKLE_AUTH": "iam",
        "TRICKLE_ARCHIVE_BUCKET": "",
    }


class Bench:
    """One emulator and one stand-in API for a series of runs, each on a fresh account. The relay
    runs in this process (as in a Lambda container); its CPU is this process's, read apart from the
    emulator's and the stand-in's."""

    def __init__(self, emulator: EmulatorName, latency_s: float, calls: Calls) -> None:
        self.calls = calls
        self.latency_s = latency_s
        self.model: LatencyModel | None = None
        self.emulator = start_emulator(emulator, own_process=True)
        try:
            self._api, self.api_url = serve_standin(latency_s, API_KEY)
        except Exception:
            self.emulator.stop()
            raise
        endpoint = self.emulator.endpoint_url
        apis = {"orders": self.api_url + "/items", "crm": self.api_url + "/crm"}
        self.base = bench_env(endpoint, apis)
        self.env: dict[str, str] = {}
        self._app: Any = None
        self._api_pid = self._api.pid  # the stand-in the runs since the last reset send to
        self._auth_standins: list[AuthStandIn] = []
        self._bulk_standins: list[BulkStandIn] = []
        self._cpu_marks: tuple[float, float | None, float | None] = (0.0, None, None)
        self._machine_mark: tuple[int, int] | None = None
        self.archive = False  # the stage of the last reset has an archive bucket

    @property
    def name(self) -> str:
        return self.emulator.name

    @property
    def api_pid(self) -> int:
        return self._api.pid

    def auth_standin(self, oauth2: OAuth2Signing) -> AuthStandIn:
        """A stand-in that requires OAuth2 + signing, stopped with the bench."""
        standin = AuthStandIn(self.latency_s, oauth2)
        self._auth_standins.append(standin)
        return standin

    def bulk_standin(self) -> BulkStandIn:
        """A stand-in with a bulk endpoint under the orders destination's path, stopped with the bench."""
        standin = BulkStandIn(self.latency_s, self.base[naming.destination_variable("orders", "url")])
        self._bulk_standins.append(standin)
        return standin

    def reset(
        self,
        workers: int = 1,
        rate_limit_per_s: int = UNLIMITED,
        auth: AuthStandIn | None = None,
        bulk: BulkStandIn | None = None,
        batch: int = 1,
        archive: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """A fresh account; a rate-limited run gets a burst of 10 so the limit, not the burst, shows.
        With `auth`, the orders destination sends to that stand-in with OAuth2 + signing; with
        `bulk`, to that one, up to `batch` messages per request; without either, to the API-key
        stand-in (the variables of an earlier auth or bulk run are taken back). With `archive`, the
        stage has a bucket and the drain archives what it delivered (`relay` leaves the response
        archive off: its one PUT per message is not the delivered archive's cost). `extra`: more
        stage variables (a replay's or a backfill's high-water mark)."""
        self.emulator.reset()
        env, secrets = dict(self.base), None
        self.archive = archive
        if archive:
            env["TRICKLE_ARCHIVE_BUCKET"] = ARCHIVE_BUCKET
        for field in (*AUTH_FIELDS, *BULK_FIELDS, "backfill_max_queued"):  # load_app sets them in os.environ
            os.environ.pop(naming.destination_variable("orders", field), None)
        if auth is not None:
            secrets = auth.secrets("orders", env)
            env |= auth.stage_variables("orders", env)
        if bulk is not None:
            env |= bulk_variables("orders", env, bulk.url, batch)
        env |= extra or {}
        self._api_pid = auth.pid if auth is not None else bulk.pid if bulk is not None else self._api.pid
        self.env = provision(clients(self.emulator.endpoint_url), env, API_KEY, secrets=secrets) | {
            "TRICKLE_DRAIN_WORKERS": str(workers),
            naming.destination_variable("orders", "rate_limit_per_s"): str(rate_limit_per_s),
            naming.destination_variable("orders", "rate_limit_burst"): str(min(100, rate_limit_per_s // 10)),
        }
        with contextlib.redirect_stdout(io.StringIO()):
            stage.load_app(self.env)  # as Lambda imports app.py: the stage's variables set first
        self._app = sys.modules["app"]
        self.calls.take()

    @property
    def stream_arn(self) -> str:
        return self.env.get("TRICKLE_STREAM_ARN", self.base["TRICKLE_STREAM_ARN"])

    @contextlib.contextmanager
    def _measured(self) -> Iterator[None]:
        """The latency model (if any) applies to what is measured, not to provisioning; Powertools
        prints an EMF line whenever a metric reaches 100 values, even with POWERTOOLS_METRICS_DISABLED
        set (its overflow path skips the check): keep them off the table."""
        self.calls.take()
        self.calls.model = self.model
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            self.calls.model = None

    def ingest(self, records: list[dict[str, Any]], seed: bool = False) -> dict[str, Any]:
        """Records through the ingest handler in Lambda events of 100, or for the seed design the
        same messages queued without the ledger it does not have."""
        events = batches(records)
        context = LambdaContext()
        if seed:  # a warm container's clients, built untimed
            wiring.queues()
        else:
            wiring.ingestor()
        with self._measured():
            started = time.perf_counter()
            for event in events:
                if seed:
                    built = build_messages(event["Records"], wiring.settings())
                    for name, queue in wiring.queues().items():
                        queue.send([m for m in built.messages if m.destination == name])
                else:
                    self._app.ingest(event, context)
            seconds = time.perf_counter() - started
        taken = self.calls.take()
        figures = ingest_figures(len(records), seconds, taken.counts)
        return figures | {
            "invocations": len(events),
            "requests": taken.counts,
            "modelled_aws_seconds": round(taken.modelled_seconds, 3),
            "padded_aws_seconds": round(taken.padded_seconds, 3),
        }

    def relay(self, count: int) -> dict[str, Any]:
        """The relay's drain until `count` are delivered or the queue is empty."""
        delivered = 0
        # the response archive off, with a bucket too: its PUT per message is not the delivered archive's
        with mock.patch.object(wiring, "archive", lambda: None):
            drainer = wiring.drainer("orders")  # a warm container's clients, built untimed
        with self._measured():
            self._mark()
            started = time.perf_counter()
            while delivered < count:
                report = drainer.run(lambda: 10**9)
                delivered += report.delivered
                if report.stopped_by == "empty" and not report.delivered:
                    break
            seconds = time.perf_counter() - started
        return self._result(delivered, seconds)

    def seed(self, count: int) -> dict[str, Any]:
        """The seed design, literally: receive one, read SSM, new connection, POST, delete one."""
        sqs = boto3.client("sqs", endpoint_url=self.emulator.endpoint_url)
        ssm = boto3.client("ssm", endpoint_url=self.emulator.endpoint_url)
        orders = wiring.settings().destination("orders")  # the stage reset() imported the app with
        url, queue, parameter = orders.url, orders.queue_url, orders.api_key_parameter
        delivered = 0
        with self._measured():
            self._mark()
            started = time.perf_counter()
            while delivered < count:
                messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1).get("Messages", [])
                if not messages:
                    break
                key = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
                response = requests.post(
                    url, data=messages[0]["Body"], headers={"x-api-key": key}, timeout=10
                )
                if response.status_code == 200:
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=messages[0]["ReceiptHandle"])
                    delivered += 1
            seconds = time.perf_counter() - started
        return self._result(delivered, seconds)

    def _mark(self) -> None:
        self._cpu_marks = (time.process_time(), cpu_seconds(self.emulator.pid), cpu_seconds(self._api_pid))
        self._machine_mark = machine_jiffies()

    def _result(self, delivered: int, seconds: float) -> dict[str, Any]:
        """Throughput and requests, and the CPU seconds this process (the drain), the emulator and
        the stand-in API spent while it ran, per delivered message; the cores those three kept busy
        (their CPU seconds over the wall's: a run near os.cpu_count() is CPU-bound), and the whole
        machine's busy share, other processes included."""
        taken = self.calls.take()
        own, emulator, api = self._cpu_marks
        own_spent = time.process_time() - own
        emulator_now, api_now = cpu_seconds(self.emulator.pid), cpu_seconds(self._api_pid)
        machine_now = machine_jiffies()
        per = 1000 / max(1, delivered)
        made = requests_only(taken.counts)
        result: dict[str, Any] = {
            "delivered": delivered,
            "seconds": round(seconds, 3),
            "throughput_msgs_per_s": round(delivered / seconds, 2) if seconds else 0.0,
            "requests_by_api": dict(sorted(made.items())),
            "dynamodb_batch_items": {
                op: n for op, n in sorted(taken.counts.items()) if op.endswith("/items")
            },
            "aws_requests_per_message": round(sum(made.values()) / max(1, delivered), 3),
            "aws_wait_seconds": round(taken.seconds, 3),
            "aws_ms_per_call": round(taken.seconds * 1000 / max(1, sum(made.values())), 2),
            "modelled_aws_seconds": round(taken.modelled_seconds, 3),
            "padded_aws_seconds": round(taken.padded_seconds, 3),
            # The relay's AWS calls are made by the run's main thread (the workers only POST), so
            # this is about the share of the run during which the workers could not be fed.
            "aws_wait_share": round(taken.seconds / max(0.001, seconds), 3),
            "drain_cpu_ms_per_message": round(own_spent * per, 2),
        }
        wall = max(0.001, seconds)
        if emulator is not None and emulator_now is not None:
            result["emulator_cpu_ms_per_message"] = round((emulator_now - emulator) * per, 2)
            result["emulator_busy_share"] = round((emulator_now - emulator) / wall, 3)
        if api is not None and api_now is not None:
            result["standin_api_cpu_ms_per_message"] = round((api_now - api) * per, 2)
        if emulator is not None and emulator_now is not None and api is not None and api_now is not None:
            result["cores_busy"] = round((own_spent + emulator_now - emulator + api_now - api) / wall, 3)
        if self._machine_mark is not None and machine_now is not None:
            result["machine_busy_share"] = busy_share(self._machine_mark, machine_now)
        return result

    def stop(self) -> None:
        for standin in self._auth_standins:
            standin.stop()
        for bulk in self._bulk_standins:
            bulk.stop()
        self._api.terminate()
        self._api.wait(timeout=10)
        self.emulator.stop()
