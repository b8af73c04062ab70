"""The delivery daemon: wake (LISTEN or poll) -> claim -> send -> settle, until told to stop.

One process runs one ``Worker``; run several processes (on any hosts) to scale out. The worker
talks to the database and the endpoint only through the ``Store`` and ``Sender`` ports.

The rhythm:
- the claimer takes whole batches while there is room (``concurrency`` sends plus up to two
  batches ahead), then sleeps until a NOTIFY, the next row's due time, or the poll interval;
- ``concurrency`` senders take claimed messages, pace themselves (rate limit, 429 slow-down),
  POST the stored bytes and turn the answer into a row write with the pure policy;
- the flusher writes those in one statement per flush and hands back claims it must not send.
The circuit breaker decides how much is claimed: one probe until an answer shows the
configuration works, nothing while it is open, full batches once it is closed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import structlog

from outbox_worker import policy
from outbox_worker.circuit import CircuitBreaker, RateGate
from outbox_worker.config import Settings
from outbox_worker.errors import DatabaseUnavailable
from outbox_worker.models import Message, MessageId, Outcome, Settlement, State, Verdict
from outbox_worker.observability import Metrics, status_class
from outbox_worker.ports import Sender, Store

log = structlog.get_logger("outbox_worker.worker")

# A send must be able to finish (HTTP timeout) with this much lease to spare, or it is handed
# back unsent: an answer that lands after the lease ran out could race another worker.
LEASE_SAFETY = timedelta(seconds=2)
DB_RETRY_INITIAL_S = 0.2
DB_RETRY_CAP_S = 15.0


class _Claim(NamedTuple):
    message: Message
    send_by: float  # monotonic time after which the lease is too short to start the send


class Worker:
    """Delivers due outbox rows until ``stop`` is set, then hands back what it did not send."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        sender: Sender,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sender = sender
        self._metrics = metrics or Metrics()
        self._clock, self._now, self._rng = clock, now, rng
        self._circuit = CircuitBreaker(settings.circuit, clock)
        self._gate = RateGate(settings.rate_limit)
        self._queue: asyncio.Queue[_Claim] = asyncio.Queue()
        self._in_flight: dict[MessageId, Message] = {}
        self._writes: list[Settlement] = []
        self._releases: list[Message] = []
        self._wake = asyncio.Event()  # claim again: NOTIFY, room freed, circuit closed
        self._dirty = asyncio.Event()  # something waits to be written
        self._idle = asyncio.Event()  # nothing in flight
        self._idle.set()
        self._stopping = False
        # Claim whole batches (fewer, fuller statements), keeping up to two batches ahead of the
        # senders so they never wait on a claim's round trip.
        self._capacity = settings.concurrency + 2 * settings.batch_size
        self._low_water = settings.batch_size
        self._rate_limited = settings.rate_limit > 0
        self._metrics.in_flight.set_function(lambda: len(self._in_flight))

    @property
    def metrics(self) -> Metrics:
        """This worker's Prometheus metrics."""
        return self._metrics

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then finish in-flight sends within the grace period."""
        log.info("worker.started", **self._settings.describe())
        try:
            async with asyncio.TaskGroup() as tasks:
                background = [tasks.create_task(self._flush_loop(), name="flush")]
                if self._settings.listen:
                    listen = self._store.listen(self._wake.set)
                    background.append(tasks.create_task(listen, name="listen"))
                claimer = tasks.create_task(self._claim_loop(), name="claim")
                senders = [
                    tasks.create_task(self._send_loop(), name=f"send-{i}")
                    for i in range(self._settings.concurrency)
                ]
                await stop.wait()
                log.info("worker.stopping", in_flight=len(self._in_flight))
                await self._stop_claiming(claimer)
                self._release_queued()
                await self._finish_in_flight(senders)
                for task in background:
                    task.cancel()
        finally:
            await _shielded(self._final_flush())
        log.info("worker.stopped")

    # --- claiming ---------------------------------------------------------------------------

    async def _stop_claiming(self, claimer: asyncio.Task[None]) -> None:
        # Not a cancel: a claim already committed in PostgreSQL must reach this process, or its
        # rows would stay leased (unsent) until the lease ran out.
        self._stopping = True
        self._wake.set()
        try:
            async with asyncio.timeout(self._settings.shutdown_grace.total_seconds()):
                await asyncio.shield(claimer)
        except TimeoutError:
            claimer.cancel()
            log.warning("worker.claim_abandoned", note="rows of that claim wait for their lease")

    async def _claim_loop(self) -> None:
        backoff = _Backoff()
        while not self._stopping:
            self._wake.clear()
            limit = self._claim_limit()
            if limit == 0:
                await self._sleep_until_woken(self._idle_wait())
                continue
            if self._stopping:
                return
            try:
                claimed = await self._store.claim(limit, self._settings.lease)
                due_in = None if len(claimed) == limit else await self._store.seconds_until_due()
            except DatabaseUnavailable as exc:
                self._metrics.db_errors.inc()
                await self._sleep_until_woken(backoff.next("claim", exc))
                continue
            backoff.reset()
            self._enqueue_claims(claimed)
            if self._stopping:
                return
            if len(claimed) < limit:
                await self._sleep_until_woken(self._idle_wait(due_in))

    def _claim_limit(self) -> int:
        busy = self._queue.qsize() + len(self._in_flight)
        permits = self._circuit.permits()
        if permits is not None:  # probing or open: one message at a time, only when idle
            return min(permits, 1) if busy == 0 else 0
        room = self._capacity - busy
        return min(room, self._settings.batch_size) if room >= self._low_water else 0

    def _idle_wait(self, due_in: float | None = None) -> float:
        wait = self._settings.poll_interval.total_seconds()
        if self._circuit.permits() == 0 and self._circuit.next_probe_in() > 0:
            return min(wait, self._circuit.next_probe_in())
        if due_in is not None:
            # Rows due now but not claimed are locked by another worker: look again shortly.
            wait = min(wait, max(due_in, 0.05))
        return wait

    async def _sleep_until_woken(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _enqueue_claims(self, claimed: list[Message]) -> None:
        if not claimed:
            return
        self._metrics.claimed.inc(len(claimed))
        room = self._settings.lease - self._settings.http_timeout - LEASE_SAFETY
        send_by = self._clock() + room.total_seconds()
        for message in claimed:
            self._queue.put_nowait(_Claim(message, send_by))

    def _release_queued(self) -> None:
        while not self._queue.empty():
            self._releases.append(self._queue.get_nowait().message)
        self._dirty.set()

    # --- sending ----------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            claim = await self._queue.get()
            message = claim.message
            if not self._in_flight:
                self._idle.clear()
            self._in_flight[message.id] = message
            try:
                await self._deliver(claim)
            finally:
                del self._in_flight[message.id]
                if not self._in_flight:
                    self._idle.set()
                if self._queue.qsize() + len(self._in_flight) <= self._capacity - self._low_water:
                    self._wake.set()

    async def _deliver(self, claim: _Claim) -> None:
        message = claim.message
        permit = self._circuit.acquire()
        if permit is None:  # the circuit opened after this message was claimed
            self._release(message)
            return
        written = False
        try:
            now = self._clock()
            if self._rate_limited or self._gate.delay(now) > 0:
                now = await self._pace()
            if now > claim.send_by:
                self._release(message)
                return
            answer = await self._sender.send(message.body)
            outcome = policy.classify(answer, self._settings.retry)
            self._write(
                policy.settle(
                    message,
                    outcome,
                    latency_s=answer.latency_s,
                    now=self._now(),
                    retry=self._settings.retry,
                    rng=self._rng,
                )
            )
            written = True
            changed = self._circuit.record(permit, outcome.verdict)
            if changed or outcome.verdict is not Verdict.ACKNOWLEDGE or outcome.slow_down:
                self._react(message, outcome, changed)
        finally:
            if not written:  # cancelled mid-send (shutdown) or handed back: no attempt spent
                self._circuit.record_other(permit)
                self._release(message)

    async def _pace(self) -> float:
        # Pacing, not synchronization: wait out the rate limit or a 429 slow-down.
        while (delay := self._gate.delay(self._clock())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)
        now = self._clock()
        self._gate.take(now)
        return now

    def _react(self, message: Message, outcome: Outcome, changed: bool) -> None:
        """Act on an answer beyond its row: the circuit, the global slow-down, loud logs."""
        metrics = self._metrics
        verdict = outcome.verdict
        if verdict is Verdict.PAUSE and changed:
            metrics.circuit_open.set(1)
            self._release_queued()
            log.error(
                "circuit.opened",
                status=outcome.status,
                error=outcome.error,
                next_probe_in_s=round(self._circuit.next_probe_in(), 3),
                hint="the endpoint refused the configuration (key, URL or method); "
                "delivery is paused, no attempts are spent",
            )
        elif verdict is Verdict.ACKNOWLEDGE and changed:
            metrics.circuit_open.set(0)
            self._wake.set()
            log.info("circuit.closed", status=outcome.status)
        elif verdict is Verdict.DEAD_LETTER:
            log.warning(
                "delivery.dead_lettered",
                message_id=message.id,
                status=outcome.status,
                error=outcome.error,
            )
        if outcome.slow_down is not None:
            self._gate.pause_until(self._clock() + outcome.slow_down.total_seconds())
            log.info(
                "delivery.rate_limited",
                message_id=message.id,
                slow_down_s=outcome.slow_down.total_seconds(),
            )

    # --- writing ----------------------------------------------------------------------------

    def _write(self, settlement: Settlement) -> None:
        self._writes.append(settlement)
        self._dirty.set()

    def _release(self, message: Message) -> None:
        self._releases.append(message)
        self._dirty.set()

    async def _flush_loop(self) -> None:
        backoff = _Backoff()
        interval = self._settings.flush_interval.total_seconds()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(interval)  # let a flush gather many outcomes into one UPDATE
            try:
                await self._flush()
            except DatabaseUnavailable as exc:
                self._metrics.db_errors.inc()
                await asyncio.sleep(backoff.next("flush", exc))
            else:
                backoff.reset()

    async def _flush(self) -> None:
        """Write gathered outcomes and releases; on failure they stay queued for the next try."""
        self._dirty.clear()
        writes, self._writes = self._writes, []
        releases, self._releases = self._releases, []
        try:
            if writes:
                applied = await self._store.settle(writes)
                self._count(writes)
                if applied < len(writes):
                    self._metrics.lost_leases.inc(len(writes) - applied)
                    log.warning("settle.skipped", count=len(writes) - applied,
                                reason="lease taken over by another worker")  # fmt: skip
                writes = []
            if releases:
                await self._store.release(releases)
                releases = []
        finally:
            if writes or releases:
                self._writes[:0] = writes
                self._releases[:0] = releases
                self._dirty.set()

    def _count(self, writes: list[Settlement]) -> None:
        """Metrics for written outcomes, counted per flush rather than per send."""
        outcomes: Counter[str] = Counter()
        answers: Counter[str] = Counter()
        latency = self._metrics.latency
        for w in writes:
            outcomes[_settled_label(w)] += 1
            answers[status_class(w.status)] += 1
            latency.observe(w.latency_s)
        for label, n in outcomes.items():
            self._metrics.deliveries.labels(label).inc(n)
        for label, n in answers.items():
            self._metrics.responses.labels(label).inc(n)

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

    async def _final_flush(self) -> None:
        self._release_queued()
        deadline = self._clock() + max(self._settings.shutdown_grace.total_seconds(), 5.0)
        while self._writes or self._releases:
            try:
                await self._flush()
            except DatabaseUnavailable as exc:
                if self._clock() > deadline:
                    log.error(
                        "worker.final_write_failed",
                        error=str(exc),
                        unwritten=len(self._writes),
                        unreleased=len(self._releases),
                        note="their leases run out and another worker takes them",
                    )
                    return
                await asyncio.sleep(0.2)


def _settled_label(w: Settlement) -> str:
    if w.state is State.PENDING:
        return "retry" if w.attempt_spent else "paused"
    return "acknowledged" if w.state is State.ACKNOWLEDGED else "dead"


class _Backoff:
    """Capped exponential waits (with jitter) while the database is unreachable; logs once."""

    def __init__(self) -> None:
        self._delay = 0.0

    def next(self, during: str, exc: Exception) -> float:
        first = self._delay == 0.0
        self._delay = min(DB_RETRY_CAP_S, max(DB_RETRY_INITIAL_S, self._delay * 2))
        wait = self._delay * (0.5 + random.random() / 2)
        (log.warning if first else log.debug)(
            "database.unavailable", during=during, error=str(exc), retry_in_s=round(wait, 2)
        )
        return wait

    def reset(self) -> None:
        if self._delay:
            log.info("database.reconnected")
        self._delay = 0.0


async def _shielded(coro: Coroutine[Any, Any, None]) -> None:
    """Run a final write to completion even if the caller is being cancelled."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
