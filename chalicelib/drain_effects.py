"""The drain's effects: every call it makes to its ports (the queue, the dead-letter queue, the
ledger, the API and its key, the archive, Step Functions, the run notes), with the log lines and
metrics that go with them. What to do is decided elsewhere (`policy.decide`, in the loop of
`chalicelib.drain_group`); this module only carries it out and says what came of it."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import bulk, freshness, health, item_keys, oldest, totals
from chalicelib.bulk import Shape
from chalicelib.dead_letter_entries import dead_letter
from chalicelib.drain_group import Came, Feedback, arrival
from chalicelib.drain_log import fields, log, step
from chalicelib.drain_state import DrainReport, GroupResult, GroupRun, Job, Prefetched, Records, RunState
from chalicelib.drain_tasks import Tasks, answered_state
from chalicelib.freshness import Check, Claim, Freshness, api_id
from chalicelib.model import (
    ROUTE_ATTRIBUTE,
    ApiResponse,
    BatchItem,
    CallbackResult,
    EnrichmentFailure,
    LedgerRecord,
    ReceivedMessage,
    Settlement,
    SourceUnread,
    Status,
    Unsent,
    UnsentKind,
    Verdict,
    attempt,
    delivered,
    logged,
    settled,
    verdict,
)
from chalicelib.naming import pause_key, run_note_key, totals_key
from chalicelib.policy import Action, Decision, Move, Outcome, classify, decide
from chalicelib.ports import (
    Api,
    Archive,
    Callbacks,
    DeadLetterQueue,
    DeliveryArchive,
    DeliveryLedger,
    Enrich,
    RunNotes,
    SourceItems,
    SourceQueue,
)

# A backfilled message is read back only while its ledger says it may still be sent.
_UNSETTLED = (Verdict.DELIVER, Verdict.REDRIVEN)


class Effects:
    """A destination's ports, and what the drain does with them."""

    def __init__(
        self,
        queue: SourceQueue,
        dead_letters: DeadLetterQueue,
        ledger: DeliveryLedger,
        api: Api,
        destination: str,
        notes: RunNotes | None = None,
        archive: Archive | None = None,
        enrich: Enrich | None = None,
        callbacks: Callbacks | None = None,
        delivered: DeliveryArchive | None = None,
        source: SourceItems | None = None,
        partition_key: str | None = None,
        queue_url: str = "",
    ) -> None:
        """`source`: the table backfilled items are read back from (None: none is, so a backfilled
        message is never sent, for want of a check); `partition_key`: the table's
        (`TRICKLE_PARTITION_KEY`), which tells a backfilled message's item key apart; `queue_url`:
        the queue's, which state machines name when they send to it (heartbeats while paused)."""
        self._queue = queue
        self._dead_letters = dead_letters
        self._ledger = ledger
        self._api = api
        self._destination = destination
        self._notes = notes
        self._archive = archive
        self._enrich = enrich
        self._tasks = Tasks(callbacks, ledger, archive, destination, queue_url)
        self._source = source
        self._partition_key = partition_key
        self._requests = itertools.count(1)  # batch requests, told apart for the breaker
        self._delivery_archive = delivered
        # message id -> its enriched body as last sent, for the delivery archive (a run's, emptied at
        # its end); each message's worker writes its own key
        self._enriched: dict[str, str] = {}

    # --- the run: receive, read, finish, report -------------------------------------------------

    def open_archive(self, state: RunState, started_at: float) -> None:
        """The run's delivery archive, when the stage keeps one (`TRICKLE_ARCHIVE_BUCKET`)."""
        if self._delivery_archive is not None:
            state.delivery_log = self._delivery_archive.open(self._destination, started_at, state.metrics)

    def close_archive(self, state: RunState) -> None:
        """Store what the run delivered (a failed put is logged and counted, never raised)."""
        if state.delivery_log is not None:
            state.delivery_log.close()
        self._enriched.clear()

    def receive(self, max_messages: int, visibility_timeout_s: int) -> list[ReceivedMessage]:
        return self._queue.receive(max_messages, visibility_timeout_s)

    def read(self, message_ids: Collection[str]) -> Records:
        return self._ledger.read(message_ids)

    def check(
        self,
        batch: Sequence[ReceivedMessage],
        records: Records,
        state: RunState,
        inserts_only: Collection[str],
    ) -> dict[str, Check]:
        """The round's backfilled messages against their items now (issue #26): one consistent read
        of the keys they name, each key once. Live messages, and those the ledger has settled, cost
        none; when the read fails, they all wait (`Freshness.UNREAD`), unsent and uncounted.
        `inserts_only`: the routes to this destination that take no MODIFY record (`freshness.judge`)."""
        checks: dict[str, Check] = {}
        claims: dict[str, Claim] = {}
        for message in batch:
            claim = freshness.claim(message.attributes)
            if claim is None or verdict(records.get(message.message_id), message.copy_id) not in _UNSETTLED:
                continue
            if isinstance(claim, str):
                checks[message.message_id] = Check(Freshness.INVALID, claim)
            else:
                claims[message.message_id] = claim
        if not claims:
            return checks
        keys = {c.key for c in claims.values()}
        current = self._source.fingerprints(keys) if self._source else SourceUnread("no source table to read")
        found, unread = ({}, current.reason) if isinstance(current, SourceUnread) else (current, "")
        if unread:
            state.metrics.count("SourceUnread", len(claims))
            log.warning(
                "backfilled items not read back: their messages wait",
                extra={"destination": self._destination, "messages": len(claims), "error": unread},
            )
        for message in batch:
            c = claims.get(message.message_id)
            if c is not None:
                follow = message.attributes.get(ROUTE_ATTRIBUTE) not in inserts_only
                result = freshness.judge(c.fingerprint, found.get(c.key), not unread, follow)
                checks[message.message_id] = Check(result, unread)
        return checks

    def finish(self, results: list[GroupResult], state: RunState) -> None:
        """On the run's thread: finishes the results their workers did not (`finish_own`), all
        together, then counts every result's releases and deletes in the run's state."""
        kept = self._finish([r for r in results if r.kept is None])
        kept |= {copy_id for r in results if r.kept is not None for copy_id in r.kept}
        state.released += sum(len(r.releases) for r in results)
        state.delete_failures += len(kept)
        state.removed.update(m.copy_id for r in results for m in r.delete if m.copy_id not in kept)

    def finish_own(self, result: GroupResult) -> None:
        """On a batched job's worker, once its groups are done (`drain_state.finishes_on_worker`):
        the job finished as the run's thread would (`_finish`); that thread counts it when it takes
        the result (`finish`)."""
        result.kept = frozenset(self._finish([result]))

    def _finish(self, results: list[GroupResult]) -> set[str]:
        """Releases, then the finished groups' deliveries (and messages superseded since their
        backfill) into the ledger, then deletes: a message is deleted only once the ledger says
        delivered, so if the run dies before the deletes, the ledger turns the return of a delivered
        message into a delete without a second delivery. Batch requests' writes go first, several
        requests to a transaction (issue #25): a record written whole after them (its task's answer
        changed it) is the last word. Returns the copy ids of the messages not deleted."""
        if not results:
            return set()
        self._queue.change_visibility([change for r in results for change in r.releases])
        for transaction in bulk.transactions(s for r in results for s in r.settlements):
            self._ledger.settle_many(transaction)
        self._ledger.write([record for r in results for record in r.delivered])
        return {m.copy_id for m in self._queue.delete([m for r in results for m in r.delete])}

    def pause(self) -> dict[str, Any] | None:
        """The destination's pause note (`chalicelib.health.pause_note`), or None: not paused."""
        return self._notes.load(pause_key(self._destination)) if self._notes is not None else None

    def keep_waiting(self, state: RunState) -> None:
        """A paused run: heartbeats to the tasks the last runs left waiting, read from its run note,
        and to those of messages queued with a token since, read from the ledger."""
        if self._notes is not None:
            self._tasks.keep_waiting(
                health.carried_tasks(self._notes.load(run_note_key(self._destination))), state
            )

    def report(self, state: RunState, report: DrainReport, started_at: float, finished_at: float) -> None:
        """The run's metrics (with the backlog it leaves and its circuit), its note (with the oldest
        messages it knows are left in the queue, `chalicelib.oldest`, the circuit, the halted groups
        and the waiting tasks, `chalicelib.health`), its running totals (`chalicelib.totals`), a pause
        when the API answered 410, its last log line."""
        metrics = state.metrics
        metrics.count("Delivered", report.delivered)
        metrics.count("AlreadyDelivered", report.already_delivered)
        metrics.count("Retried", report.retried)
        metrics.count("DeadLettered", report.dead_lettered)
        metrics.count("RateLimited", report.saturated)
        metrics.count("Halted", report.halted)
        metrics.count("Superseded", report.superseded)
        metrics.count("Callbacks", report.callbacks)
        metrics.count("Heartbeats", report.heartbeats)
        metrics.count("CallbackRejected", report.callbacks_rejected)
        metrics.count("CallbackFailed", report.callbacks_failed)
        # Once per run that had to stop for them, whatever its workers saw: the alarm's figure.
        metrics.count("CredentialsRefused", int(report.stopped_by == Outcome.CREDENTIALS_REFUSED.value))
        metrics.count(
            "CredentialsUnavailable", int(report.stopped_by == Outcome.CREDENTIALS_UNAVAILABLE.value)
        )
        depth: int | None = None
        try:
            depth = self._queue.depth()
            metrics.count("Backlog", depth)
        except (ClientError, BotoCoreError) as exc:
            log.warning("backlog unknown", extra={"error": str(exc)})
        if self._notes is None:
            metrics.flush()
            log.info(
                "drain run finished", extra={"destination": self._destination, "report": report.as_dict()}
            )
            return
        key = run_note_key(self._destination)
        previous = self._notes.load(key)
        was = (previous or {}).get(health.CIRCUIT_FIELD)
        attempted = report.delivered + report.failed_attempts > 0
        circuit = health.next_circuit(was, report.stopped_by, attempted, finished_at)
        if report.stopped_by != health.PAUSED:  # a paused destination's open circuit waits for the operator
            metrics.seconds("CircuitOpenSeconds", health.open_for_s(circuit, finished_at))
        gone = report.stopped_by == Outcome.GONE.value
        for change in health.changes(was, circuit, gone):
            metrics.count(change)
            reason = report.stop_reason or report.stopped_by or "requests delivered again"
            log.warning(
                "destination health changed",
                extra={"destination": self._destination, "change": change, "reason": reason},
            )
        metrics.flush()
        if gone:
            pause = health.pause_note(health.PAUSED_BY_API, report.stop_reason, finished_at)
            self._notes.save(pause_key(self._destination), pause, expires=False)
        waiting = oldest.still_waiting(oldest.carried(previous), state.seen, state.removed, depth)
        left = oldest.left_in_queue(waiting, depth, complete=report.stopped_by == "empty")
        tasks = health.waiting_tasks(
            health.carried_tasks(previous), state.tokens, state.removed, state.gone, depth
        )
        halted = health.halted_groups(health.carried_halted(previous), state.halted, state.moved, depth)
        note = report.as_dict() | {
            "started_at": started_at,
            "finished_at": finished_at,
            oldest.NOTE_FIELD: left,
            health.CIRCUIT_FIELD: circuit,
            health.HALTED_FIELD: halted,
            health.TASKS_FIELD: tasks,
        }
        self._notes.save(key, note)
        self._add_totals(report, finished_at)
        self._finished(report)

    def _finished(self, report: DrainReport) -> None:
        log.info("drain run finished", extra={"destination": self._destination, "report": report.as_dict()})

    def _add_totals(self, report: DrainReport, now: float) -> None:
        """The run's counts into the running totals: one write (a second only to clear the buckets
        a drain that did not write for more than a day left)."""
        assert self._notes is not None
        counts = {
            "delivered": report.delivered,
            "failed_attempts": report.failed_attempts,
            "dead_lettered": report.dead_lettered,
        }
        added = totals.additions(counts, now)
        if not added:
            return
        key = totals_key(self._destination)
        stale = totals.stale(self._notes.tally(key, added, totals.removals(now)), now)
        if stale:
            self._notes.forget(key, stale)

    # --- a group's messages ---------------------------------------------------------------------

    def token(self, message: ReceivedMessage) -> str:
        return self._tasks.token(message)

    def carry_out(
        self,
        action: Action,
        rest: Sequence[ReceivedMessage],
        record: LedgerRecord | None,
        response: ApiResponse | None,
        run: GroupRun,
    ) -> Feedback:
        """Everything `action` does for `rest[0]` (`record` and `response`: its ledger record and this
        turn's answer so far), and what came of it."""
        message, move = rest[0], action.move
        if move is Move.SUPERSEDE:
            return Feedback(Came.DONE, self._superseded(action, message, record, run))
        if move is Move.RESTART:
            return Feedback(Came.RESTARTED, self._ledger.restart(message.message_id))
        if move is Move.ATTEMPT:
            return self._attempt(rest, record, run)
        attempts = record.attempts if record else 0
        answered: CallbackResult | None = None
        if move is Move.DEAD_LETTER:
            excerpt = response.body_excerpt if response else ""
            if self._dead_letters.send([dead_letter(message, action.reason, excerpt, record)]):
                return Feedback(Came.REFUSED, record, response)
            record, answered = self._dead(action, message, record, run)
        elif move is Move.HALT:
            self._halt(action, message, attempts, run.clock.time())
        elif move is Move.DELIVERED:
            assert record is not None and response is not None  # an attempt was made and recorded
            record, answered = self._delivered(action, message, record, response, run)
        elif move is Move.DELETE or response is None:  # nothing logged yet for this step
            step(message, self._destination, attempts, action.reason, None)
            if move is Move.DELETE:
                answered = self._tasks.answer(action, message, record, None, run.state)[0]
        if answered is CallbackResult.FAILED:
            return Feedback(Came.UNANSWERED, record)
        if answered is not None and move is not Move.DELIVERED:
            self._ledger.note_callback(message.message_id, message.group_id, answered_state(action, answered))
        if action.holds:
            self._tasks.keep_alive(action, rest, run)
        if action.stop in _STOP_MESSAGES:
            log.error(
                _STOP_MESSAGES[action.stop], extra=fields(message, self._destination, attempts, action.reason)
            )
        return Feedback(Came.DONE, record, response)

    def _attempt(
        self, rest: Sequence[ReceivedMessage], record: LedgerRecord | None, run: GroupRun
    ) -> Feedback:
        """Wait for the rate limit, send once (on 401/403 renew the credentials and send again), and
        write a failure to the ledger (a delivery is written with the round's). A request that never
        left (no credentials, a path the message cannot fill) is no attempt: the ledger is not told.
        Batching, an answer a batch request already brought is taken instead (no request), or the
        request is a batch (`_batch`)."""
        message, job = rest[0], run.job
        ready = job.prefetched.pop(message.message_id, None) if job is not None else None
        if ready is not None:
            return self._answered(
                message, record, ready.response, ready.answer, run, ready.record, ready.request
            )
        run.limiter.acquire()
        if run.clock.monotonic() > run.deadline:
            return Feedback(Came.LATE, record)
        if job is not None:
            return self._batch(rest, record, run, job)
        attempts = record.attempts if record else 0
        response, answer = self._call(message, attempts, run)
        return self._answered(message, record, response, answer, run)

    def _answered(
        self,
        message: ReceivedMessage,
        record: LedgerRecord | None,
        response: ApiResponse,
        answer: Decision,
        run: GroupRun,
        written: LedgerRecord | None = None,
        request: int = 0,
    ) -> Feedback:
        """The answer to `message`'s attempt, logged; a failure written to the ledger (unless a batch
        request's write did: `written`), a delivery computed to be written with the round's."""
        attempts = record.attempts if record else 0
        if not answer.sent:
            step(message, self._destination, attempts, answer.outcome.value, response)
            return Feedback(Came.ANSWERED, record, response, answer, request)
        step(message, self._destination, attempts + 1, answer.outcome.value, response)
        if answer.outcome is not Outcome.DELIVERED:
            run.state.failed_attempt()
        now = run.clock.time()
        made = attempt(now, response.status, response.elapsed_ms, answer.reason)
        if written is not None:
            done = written
        elif answer.outcome is Outcome.DELIVERED:
            item = self._item_index(message, now)
            done = delivered(record, message.message_id, message.group_id, response.status, now, made, item)
        else:
            failure = Settlement(
                message.message_id,
                message.group_id,
                Status.FAILED,
                response.status,
                answer.reason,
                counted=answer.counted,
                timeline=logged(record, made),
            )
            done = self._ledger.settle(self._filed(failure, message, now))
        return Feedback(Came.ANSWERED, done, response, answer, request)

    def _call(self, message: ReceivedMessage, attempts: int, run: GroupRun) -> tuple[ApiResponse, Decision]:
        """Enrich the body if its route says so, send it, and on 401/403 renew the credentials (a
        cached token is dropped if it is still the one refused; SSM is re-read once per run) and send
        once more. A failed enrichment is answered like the API would have: retryable or refused."""
        body = self._body(message)
        if not isinstance(body, str):
            return body
        key = api_id(message.message_id, message.attributes)
        response = self._api.send(body, key)
        answer = classify(response, _utc(run.clock.time()))
        if answer.outcome is Outcome.AUTH and self._api.renew(response, run.state.claim_key_refresh()):
            step(message, self._destination, attempts + 1, "auth-retry", response)
            response = self._api.send(body, key)
            answer = classify(response, _utc(run.clock.time()))
        if answer.sent:
            run.state.metrics.milliseconds("ApiLatency", response.elapsed_ms)
        return response, answer

    def _body(self, message: ReceivedMessage) -> str | tuple[ApiResponse, Decision]:
        """The body to send, enriched if its route says so; or, when the enrichment fails, the answer
        the API would have given: retryable or refused."""
        if self._enrich is None:
            return message.body
        enriched = self._enrich(message.attributes.get(ROUTE_ATTRIBUTE, ""), message.body)
        if isinstance(enriched, EnrichmentFailure):
            outcome = Outcome.RETRY if enriched.retryable else Outcome.PERMANENT
            reason = enriched.reason
            return ApiResponse(None, error=reason), Decision(outcome, f"enrichment failed: {reason}")
        if self._delivery_archive is not None:
            self._enriched[message.message_id] = enriched
        return enriched

    # --- batches (issue #25) ---------------------------------------------------------------------

    def _batch(
        self, rest: Sequence[ReceivedMessage], record: LedgerRecord | None, run: GroupRun, job: Job
    ) -> Feedback:
        """One request for `rest[0]` and what else of the job can go with it now: the plain candidates
        that follow it in its group, then those of the groups still pending, each group's in order,
        up to the destination's limits. Every item's answer is classified; the request's deliveries
        and failures are written in one transaction (`bulk.written`): at once if one failed, else
        with the round's deliveries (`finish`); and the answers wait for their messages' turns. A
        message that cannot be an item is answered at once, without a request, as the API would
        refuse it."""
        message, shape = rest[0], job.shape
        room = shape.max_bytes - bulk.overhead(shape.wrapper) + 1  # the first item has no comma
        items: list[tuple[ReceivedMessage, BatchItem, int]] = []  # (message, its item, bytes with comma)
        seen: set[str] = set()
        cut: set[str] = set()
        for candidate in [message, *self._plain(rest[1:], run, job), *self._pending(run, job)]:
            if len(items) >= shape.max_items:
                break
            if candidate.group_id in cut:
                continue
            key = api_id(candidate.message_id, candidate.attributes)
            # A second copy in the round (its turn finds it delivered), or another message the API
            # knows by the same id (a replay with the same keys): a request carries an id once.
            if candidate.message_id in seen or key in seen:
                cut.add(candidate.group_id)
                continue
            seen |= {candidate.message_id, key}
            prepared = self._item(candidate, key, shape, room)
            if isinstance(prepared, Prefetched):
                if candidate is message:
                    return self._answered(message, record, prepared.response, prepared.answer, run)
                job.prefetched[candidate.message_id] = prepared
                cut.add(candidate.group_id)
                continue
            items.append((candidate, *prepared))
        taken = bulk.fill(items, shape.max_items, room, lambda i: i[2], lambda i: i[0].group_id)
        sent = [i for _, i, _ in taken]
        if shape.wrapper is not None:  # a wrapper may add more than its text around an empty list
            while len(sent) > 1 and len(_body_of(bulk.build(sent, shape.wrapper)).encode()) > shape.max_bytes:
                sent.pop()
        members = [m for m, _, _ in taken[: len(sent)]]
        attempts = record.attempts if record else 0
        responses, answers = self._send_batch(sent, message, attempts, run)
        now = run.clock.time()
        answered = {m.message_id: (m, r, a) for m, r, a in zip(members, responses, answers, strict=True)}
        written = bulk.written([(m.message_id, m.group_id, r, a) for m, r, a in answered.values()], now)
        settlements = [self._attempted(s, *answered[s.message_id], run, now) for s in written]
        if all(s.status is Status.DELIVERED for s in settlements):
            job.settling.append(settlements)  # written with the round's deliveries, before their deletes
        else:  # before any later write of its failures (dead, halted) or their release
            self._ledger.settle_many(settlements)
        records = {s.message_id: settled(run.records.get(s.message_id), s, now) for s in settlements}
        job.written |= {
            s.message_id: records[s.message_id] for s in settlements if s.status is Status.DELIVERED
        }
        request = next(self._requests)
        for member, response, answer in zip(members[1:], responses[1:], answers[1:], strict=True):
            job.prefetched[member.message_id] = Prefetched(
                response, answer, records.get(member.message_id), request
            )
        first = records.get(message.message_id)
        return self._answered(message, record, responses[0], answers[0], run, first, request)

    def _attempted(
        self,
        settlement: Settlement,
        message: ReceivedMessage,
        response: ApiResponse,
        answer: Decision,
        run: GroupRun,
        now: float,
    ) -> Settlement:
        """A batch item's settlement with its attempt in its timeline, and its item, as a single
        request's failure is written."""
        made = attempt(now, response.status, response.elapsed_ms, answer.reason)
        return self._filed(
            replace(settlement, timeline=logged(run.records.get(message.message_id), made)), message, now
        )

    def _plain(self, messages: Sequence[ReceivedMessage], run: GroupRun, job: Job) -> list[ReceivedMessage]:
        """The leading messages of a group that would be attempted on arrival as things stand (no
        answer in hand, and `decide` says ATTEMPT): up to the first that would not."""
        plain: list[ReceivedMessage] = []
        for candidate in messages:
            if candidate.message_id in job.prefetched:
                break
            record = run.records.get(candidate.message_id)
            situation = arrival(candidate, record, bool(self.token(candidate)), run)
            move = decide(situation, job.rules).move
            if move is Move.SUPERSEDE:  # left out: its own turn settles it, unsent
                continue
            if move is not Move.ATTEMPT:
                break
            plain.append(candidate)
        return plain

    def _pending(self, run: GroupRun, job: Job) -> list[ReceivedMessage]:
        return [m for group in job.pending for m in self._plain(group, run, job)]

    def _item(
        self, message: ReceivedMessage, key: str, shape: Shape, room: int
    ) -> tuple[BatchItem, int] | Prefetched:
        """The item a batch carries for `message` (its item id `key`, the id the API sees) and its
        size in the request (with its comma), or the answer it gets without a request: its
        enrichment failed, or it cannot be an item."""
        body = self._body(message)
        if not isinstance(body, str):
            return Prefetched(*body, None)
        try:
            prepared = bulk.item(key, body, shape.id_field)
        except bulk.ItemRefusedError as exc:
            return _refused(str(exc))
        size = len(prepared.text.encode()) + 1
        if size > room:
            return _refused(
                f"the message is {size - 1} bytes as a batched item, more than a request of at most"
                f" batch_max_bytes={shape.max_bytes} can carry"
            )
        return prepared, size

    def _send_batch(
        self, items: list[BatchItem], message: ReceivedMessage, attempts: int, run: GroupRun
    ) -> tuple[list[ApiResponse], list[Decision]]:
        """Send the batch and classify each item's answer; refused as a whole with 401/403, renew the
        credentials and send it once more, as a single request."""
        responses = self._api.send_batch(items)
        answers = [classify(r, _utc(run.clock.time())) for r in responses]
        if all(a.outcome is Outcome.AUTH for a in answers) and self._api.renew(
            responses[0], run.state.claim_key_refresh()
        ):
            step(message, self._destination, attempts + 1, "auth-retry", responses[0])
            responses = self._api.send_batch(items)
            answers = [classify(r, _utc(run.clock.time())) for r in responses]
        if any(a.sent for a in answers):
            run.state.metrics.milliseconds("ApiLatency", max(r.elapsed_ms for r in responses))
        return responses, answers

    def _dead(
        self, action: Action, message: ReceivedMessage, record: LedgerRecord | None, run: GroupRun
    ) -> tuple[LedgerRecord, CallbackResult | None]:
        """A dead letter the queue took: the ledger's dead record, then the task's failure."""
        attempts = record.attempts if record else 0
        death = Settlement(
            message.message_id,
            message.group_id,
            Status.DEAD,
            None,
            action.reason,
            counted=False,
            dead_copy=message.copy_id,
        )
        dead = self._ledger.settle(self._filed(death, message, run.clock.time()))
        log.error("message dead-lettered", extra=fields(message, self._destination, attempts, action.reason))
        return dead, self._tasks.answer(action, message, dead, None, run.state)[0]

    def _superseded(
        self, action: Action, message: ReceivedMessage, record: LedgerRecord | None, run: GroupRun
    ) -> LedgerRecord:
        """A backfilled message whose item changed or went: never sent, its record (status
        superseded, the reason, no attempt) written with the round's deliveries, before its delete."""
        settlement = Settlement(
            message.message_id, message.group_id, Status.SUPERSEDED, None, action.reason, counted=False
        )
        attempts = record.attempts if record else 0
        log.info("message not sent", extra=fields(message, self._destination, attempts, action.reason))
        now = run.clock.time()
        return settled(record, self._filed(settlement, message, now), now)

    def _halt(self, action: Action, message: ReceivedMessage, attempts: int, now: float) -> None:
        """Strict ordering: the message waits, and its group behind it, for an operator."""
        halt = Settlement(
            message.message_id, message.group_id, Status.HALTED, None, action.reason, counted=False
        )
        self._ledger.settle(self._filed(halt, message, now))
        log.error(
            "group halted by a poison message",
            extra=fields(message, self._destination, attempts, action.reason),
        )

    def _item_index(self, message: ReceivedMessage, now: float) -> tuple[str, str]:
        """The index keys of the item `message` was built from (`chalicelib.item_keys`), as of `now`."""
        key = item_keys.from_attributes(message.attributes, self._partition_key)
        return item_keys.index_values(key, now, message.message_id)

    def _filed(self, settlement: Settlement, message: ReceivedMessage, now: float) -> Settlement:
        """`settlement` with its message's item, which the ledger files the record under if it has
        not yet."""
        item_key, item_sort = self._item_index(message, now)
        return replace(settlement, item_key=item_key, item_sort=item_sort)

    def _delivered(
        self,
        action: Action,
        message: ReceivedMessage,
        record: LedgerRecord,
        response: ApiResponse,
        run: GroupRun,
    ) -> tuple[LedgerRecord, CallbackResult | None]:
        """The API took it: archive its answer and what it was sent, count its age, answer its task;
        the record to write says what the task was told (or keeps the output while it is still owed)."""
        if self._archive is not None:
            self._archive.store(message.message_id, response.status, response.body)
        if run.state.delivery_log is not None:  # at the attempt's time, as the ledger has it
            at = record.last_attempt_at if record.last_attempt_at is not None else run.clock.time()
            body = self._enriched.pop(message.message_id, message.body)
            key = api_id(message.message_id, message.attributes)
            run.state.delivery_log.add(message.message_id, message.group_id, at, body, key)
        if message.sent_at_ms:
            age = max(0.0, run.clock.time() - message.sent_at_ms / 1000)
            run.state.metrics.seconds("DeliveredAge", age)
        answered, output = self._tasks.answer(action, message, record, response, run.state)
        if answered is CallbackResult.FAILED:  # the ledger keeps the output until it is taken
            return replace(record, callback_output=output), answered
        if answered is not None:
            return replace(record, callback=answered_state(action, answered)), answered
        return record, answered


_STOP_MESSAGES = {
    "auth": "the API refused the credentials even after renewing them this run; stopping the run",
    Outcome.CREDENTIALS_REFUSED.value: "the destination's credentials are refused; stopping the run",
    Outcome.CREDENTIALS_UNAVAILABLE.value: "no credentials for the destination now; stopping the run",
    Outcome.GONE.value: "the API answered 410 Gone; stopping the run and pausing the destination",
}


def _refused(reason: str) -> Prefetched:
    """The answer to a message that cannot be sent as its destination says (never an attempt)."""
    return Prefetched(
        ApiResponse(None, error=reason, unsent=Unsent(UnsentKind.REFUSED, reason)),
        Decision(Outcome.UNSENDABLE, reason),
        None,
    )


def _body_of(built: bulk.Built | bulk.Failure) -> str:
    """A request's body; none when its wrapper fails (the request then refuses its items)."""
    return built.body if isinstance(built, bulk.Built) else ""


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
