"""The delivery daemon: wake (LISTEN or poll) -> claim -> send -> settle, until told to stop.

One process runs one ``Worker``; run several processes (on any hosts) to scale out. The worker
talks to the database and the endpoint only through the ``Store`` and ``Sender`` ports.

The rhythm:
- the claimer takes whole batches while there is room (``concurrency`` sends plus up to two
  batches ahead, and at most ``max_claimed_bytes`` of bodies), then sleeps until a NOTIFY, the
  next row's due time, or the next poll: soon while claims find rows, backing off to the poll
  interval when they do not (``rhythm.py``: enqueues notify at most once per 10 ms);
- ``concurrency`` senders take claimed messages and hand each to the dispatcher
  (``dispatch.py``), which paces it (rate limit, 429 slow-down), POSTs the stored bytes and
  turns the answer into a row write with the pure policy;
- the writer (``writer.py``) writes those in one statement per flush and hands back claims that
  must not be sent.
The circuit breaker decides how much is claimed: one probe until an answer shows the endpoint and
the configuration work, nothing while it is open, full batches once it is closed. The fleet watch
(``fleet_watch.py``) keeps this worker's row in the registry and reads the fleet's pause: while an
operator has paused delivery (or before the pause has been read at all) nothing is claimed, and
what was claimed but not yet sent is handed back, no attempt spent.

One message can only fail itself: whatever its answer or its row does while it is handled is
confined to it (an attempt spent with a safe error text), and no task of the worker ends before
``stop`` is set.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import structlog

from outbox_worker.delivery import upkeep
from outbox_worker.delivery.circuit import CircuitBreaker, PauseReason
from outbox_worker.delivery.dispatch import Claim, Dispatcher
from outbox_worker.delivery.fleet_watch import FleetWatch, Status
from outbox_worker.delivery.liveness import ClaimProgress
from outbox_worker.delivery.pacing import FleetPacer
from outbox_worker.delivery.rhythm import PollRhythm
from outbox_worker.delivery.tracing import NO_TRACING, AttemptSource, Tracing
from outbox_worker.delivery.writer import Backoff, OutcomeWriter
from outbox_worker.errors import DatabaseUnavailable, StatementRejected
from outbox_worker.models import Message, MessageId, PausedBy, WorkerState
from outbox_worker.observability import Metrics
from outbox_worker.payload.limits import MAX_PAYLOAD_BYTES
from outbox_worker.ports import Hints, Sender, Store
from outbox_worker.settings.config import WorkerSettings

log = structlog.get_logger("outbox_worker.worker")

# A send must be able to finish (HTTP timeout) with this much lease to spare, or it is handed
# back unsent: an answer that lands after the lease ran out could race another worker.
LEASE_SAFETY = timedelta(seconds=2)


class Worker:
    """Delivers due outbox rows until ``stop`` is set, then hands back what it did not send."""

    def __init__(
        self,
        settings: WorkerSettings,
        store: Store,
        sender: Sender,
        *,
        metrics: Metrics | None = None,
        progress: ClaimProgress | None = None,
        tracing: Tracing = NO_TRACING,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics or Metrics()
        self._clock, self._rng = clock, rng
        self._tracing = tracing
        self._circuit = CircuitBreaker(settings.circuit, clock)
        self._writer = OutcomeWriter(
            store,
            self._metrics,
            flush_interval_s=settings.flush_interval.total_seconds(),
            clock=clock,
        )
        self._wake = asyncio.Event()  # claim again: NOTIFY, room freed, circuit closed
        self._dispatcher = Dispatcher(
            settings,
            sender,
            self._writer,
            self._circuit,
            self._metrics,
            fleet=FleetPacer(store, settings.rate_limit, clock) if settings.rate_limit else None,
            clock=clock,
            rng=rng,
            circuit_opened=self._release_queued,
            circuit_closed=self._wake.set,
        )
        self._queue: asyncio.Queue[Claim] = asyncio.Queue()
        self._in_flight: dict[MessageId, Message] = {}
        self._held_bytes = 0  # bodies claimed and not yet finished (queued or in flight)
        self._idle = asyncio.Event()  # nothing in flight
        self._idle.set()
        self._stopping = False
        # Claim whole batches (fewer, fuller statements), keeping up to two batches ahead of the
        # senders so they never wait on a claim's round trip.
        self._capacity = settings.concurrency + 2 * settings.batch_size
        self._low_water = settings.batch_size
        self._metrics.in_flight.set_function(lambda: len(self._in_flight))
        # What /healthz reads: the claim loop's promises and whether work is due.
        self.progress = progress or ClaimProgress(clock)
        self._metrics.claim_loop_late.set_function(self.progress.late_by)
        self._watch = FleetWatch(
            store,
            self._metrics,
            status=self._status,
            paused_changed=self._fleet_paused,
            poll_interval_s=settings.poll_interval.total_seconds(),
            clock=clock,
        )

    @property
    def metrics(self) -> Metrics:
        """This worker's Prometheus metrics."""
        return self._metrics

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then finish in-flight sends within the grace period."""
        settings = self._settings
        log.info("worker.started", **settings.describe())
        for warning in self._settings.warnings():
            log.warning("config.risky", warning=warning)
        try:
            async with asyncio.TaskGroup() as tasks:
                background = [
                    tasks.create_task(self._writer.run(), name="flush"),
                    tasks.create_task(
                        upkeep.sample_backlog(settings, self._store, self._metrics, self.progress),
                        name="backlog",
                    ),
                    tasks.create_task(
                        upkeep.retain(settings, self._store, self._metrics, self._rng),
                        name="retention",
                    ),
                    tasks.create_task(self._watch.run(), name="registry"),
                ]
                if self._settings.listen:
                    hints = Hints(self._wake.set, self._watch.hint, self._watch.listening)
                    background.append(tasks.create_task(self._store.listen(hints), name="listen"))
                claimer = tasks.create_task(self._claim_loop(), name="claim")
                senders = [
                    tasks.create_task(self._send_loop(), name=f"send-{i}")
                    for i in range(self._settings.concurrency)
                ]
                await stop.wait()
                log.info("worker.stopping", in_flight=len(self._in_flight))
                await self._stop_claiming(claimer)
                self._watch.hint()  # the registry shows it stopping
                self._release_queued()
                await self._finish_in_flight(senders)
                for task in background:
                    task.cancel()
        finally:
            self._release_queued()
            await _shielded(self._writer.final_flush(self._settings.shutdown_grace.total_seconds()))
            await _shielded(self._watch.final_beat())
        log.info("worker.stopped")

    # --- claiming ---------------------------------------------------------------------------

    async def _stop_claiming(self, claimer: asyncio.Task[None]) -> None:
        # Not a cancel: a claim already committed in PostgreSQL must reach this process, or its
        # rows would stay leased (unsent) until the lease ran out.
        self._stopping = True
        self._dispatcher.stop()
        self._wake.set()
        try:
            async with asyncio.timeout(self._settings.shutdown_grace.total_seconds()):
                await asyncio.shield(claimer)
        except TimeoutError:
            claimer.cancel()
            log.warning("worker.claim_abandoned", note="rows of that claim wait for their lease")

    async def _claim_loop(self) -> None:
        backoff = Backoff()
        rhythm = PollRhythm(self._settings.poll_interval)
        while not self._stopping:
            self.progress.progressed(next_within=0)
            self._wake.clear()
            limit = self._claim_limit()
            if limit == 0:
                await self._sleep_until_woken(self._idle_wait())
                continue
            try:
                claimed, due_in = await self._claim(limit)
            except (DatabaseUnavailable, StatementRejected) as exc:
                self._metrics.db_errors.inc()
                await self._sleep_until_woken(backoff.next("claim", exc))
                continue
            except Exception as exc:  # no bug may end the claimer for good
                log.error("worker.unexpected_error", during="claim", error=type(exc).__name__)
                await self._sleep_until_woken(backoff.next("claim", exc))
                continue
            backoff.reset()
            self._writer.database_answered()
            if self._stopping:
                return
            if len(claimed) < limit:
                await self._sleep_until_woken(
                    self._idle_wait(due_in, rhythm.after_claim(len(claimed)))
                )

    async def _claim(self, limit: int) -> tuple[list[Message], float | None]:
        """Claim up to ``limit`` rows and queue them; also when the next row falls due."""
        # The lease starts when PostgreSQL runs the claim, so its deadline counts from before
        # the statement: a slow claim must not eat the margin kept for the send.
        started = self._clock()
        room = self._settings.max_claimed_bytes - self._held_bytes
        trace = self._tracing.claim_started()
        claimed = await self._store.claim(limit, self._settings.lease, room)
        self._enqueue_claims(claimed, started, trace.claimed(claimed))
        due_in = None if len(claimed) == limit else await self._store.seconds_until_due()
        return claimed, due_in

    def _claim_limit(self) -> int:
        if self._watch.holding:
            return 0  # paused fleet-wide, or the pause not read yet: the watch wakes us
        if self._settings.max_claimed_bytes - self._held_bytes < MAX_PAYLOAD_BYTES:
            return 0  # the next row might not fit: wait until sends finish
        busy = self._queue.qsize() + len(self._in_flight)
        permits = self._circuit.permits()
        if permits is not None:  # probing or open: one message at a time, only when idle
            return min(permits, 1) if busy == 0 else 0
        room = self._capacity - busy
        return min(room, self._settings.batch_size) if room >= self._low_water else 0

    def _idle_wait(self, due_in: float | None = None, poll_in: float | None = None) -> float:
        wait = self._settings.poll_interval.total_seconds() if poll_in is None else poll_in
        if self._circuit.permits() == 0 and self._circuit.next_probe_in() > 0:
            return min(wait, self._circuit.next_probe_in())
        if due_in is not None:
            # Rows due now but not claimed are locked by another worker: look again shortly.
            wait = min(wait, max(due_in, 0.05))
        return wait

    async def _sleep_until_woken(self, seconds: float) -> None:
        self.progress.progressed(next_within=seconds)
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _enqueue_claims(
        self, claimed: list[Message], started: float, traces: AttemptSource
    ) -> None:
        if not claimed:
            return
        self._metrics.claimed.inc(len(claimed))
        room = self._settings.lease - self._settings.http_timeout - LEASE_SAFETY
        send_by = started + room.total_seconds()
        for message in claimed:
            self._held_bytes += len(message.body)
            self._queue.put_nowait(Claim(message, started, send_by, traces))

    def _release_queued(self) -> None:
        while not self._queue.empty():
            message = self._queue.get_nowait().message
            self._held_bytes -= len(message.body)
            self._writer.release(message)

    # --- the fleet -----------------------------------------------------------------------------

    def _status(self) -> Status:
        """What the registry shows of this worker."""
        state, paused_by = WorkerState.DELIVERING, None
        reason = self._circuit.reason
        if self._stopping:
            state = WorkerState.STOPPING
        elif self._watch.paused:
            state, paused_by = WorkerState.PAUSED, PausedBy.OPERATOR
        elif reason is not None and reason is not PauseReason.STARTING:
            state, paused_by = WorkerState.PAUSED, PausedBy(reason.value)
        elif self._watch.pause is None:
            state = WorkerState.STARTING
        return Status(state, paused_by, len(self._in_flight), self._dispatcher.sends)

    def _fleet_paused(self, paused: bool) -> None:
        """The fleet's pause changed (or was read for the first time)."""
        self._dispatcher.hold(paused)
        if paused:
            self._release_queued()
        self._wake.set()

    # --- sending ----------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            claim = await self._queue.get()
            message = claim.message
            if not self._in_flight:
                self._idle.clear()
            self._in_flight[message.id] = message
            try:
                await self._dispatcher.deliver(claim)
            finally:
                del self._in_flight[message.id]
                self._held_bytes -= len(message.body)
                if not self._in_flight:
                    self._idle.set()
                if self._queue.qsize() + len(self._in_flight) <= self._capacity - self._low_water:
                    self._wake.set()

    async def _finish_in_flight(self, senders: list[asyncio.Task[None]]) -> None:
        grace = self._settings.shutdown_grace.total_seconds()
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            log.warning("worker.grace_expired", abandoned=len(self._in_flight))
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run a final write to completion even if the caller is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
