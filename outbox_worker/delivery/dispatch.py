"""One claimed message's delivery: pace, POST, classify, write the row, react to the answer.

The worker's senders each call ``Dispatcher.deliver`` for the claims they take off the queue.
The dispatcher holds what every send shares: the circuit breaker (how much may be sent), the 429
slow-down and the fleet's rate limit (when), and the writer that the row writes go to. It talks
to the endpoint only through the ``Sender`` port; the pure policy decides what an answer means.

One message can only fail itself: whatever its answer or its row does while it is handled is
confined to it (an attempt spent with a safe error text).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import NamedTuple

import structlog

from outbox_worker.delivery import policy
from outbox_worker.delivery.circuit import CircuitBreaker, PauseReason, Permit, RateGate
from outbox_worker.delivery.pacing import FleetPacer, stopped_within
from outbox_worker.delivery.tracing import NO_TRACING, AttemptSource, AttemptTrace
from outbox_worker.delivery.writer import OutcomeWriter
from outbox_worker.models import Answer, Message, Outcome, Settlement, Verdict
from outbox_worker.observability import Metrics
from outbox_worker.ports import Sender
from outbox_worker.settings.config import WorkerSettings

log = structlog.get_logger("outbox_worker.worker")


class Claim(NamedTuple):
    """A claimed message on its way to a sender, with the times its lease allows."""

    message: Message
    claimed_at: float  # monotonic time just before the claim statement started
    send_by: float  # monotonic time after which the lease is too short to start the send
    traces: AttemptSource = NO_TRACING  # where this attempt's span starts (the claim's tracer)


class Dispatcher:
    """Delivers claimed messages one call at a time; many calls may run side by side."""

    def __init__(
        self,
        settings: WorkerSettings,
        sender: Sender,
        writer: OutcomeWriter,
        circuit: CircuitBreaker,
        metrics: Metrics,
        *,
        fleet: FleetPacer | None,
        clock: Callable[[], float],
        rng: Callable[[], float],
        circuit_opened: Callable[[], None],
        circuit_closed: Callable[[], None],
    ) -> None:
        self._retry = settings.retry
        self._sender = sender
        self._writer = writer
        self._circuit = circuit
        self._metrics = metrics
        self._fleet = fleet
        self._clock, self._rng = clock, rng
        self._circuit_opened, self._circuit_closed = circuit_opened, circuit_closed
        self._gate = RateGate()  # the 429 slow-down; the rate limit is the fleet's (pacing.py)
        # Set by stop() for good, or by hold(True) until hold(False): no send may start. It wakes
        # sends being paced, which are then handed back unsent.
        self._halt = asyncio.Event()
        self._stopped = False
        self.sends = 0  # sends started (POSTs begun) since the worker started

    def stop(self) -> None:
        """Start no more sends: a claim taken from now on is handed back unsent."""
        self._stopped = True
        self._halt.set()

    def hold(self, held: bool) -> None:
        """Start no send while ``held`` (the fleet is paused): claims are handed back unsent."""
        if held:
            self._halt.set()
        elif not self._stopped:
            self._halt.clear()

    async def deliver(self, claim: Claim) -> None:
        """Send one claimed message and hand its row write (or its release) to the writer."""
        trace = claim.traces.attempt(claim.message)
        try:
            await self._deliver(claim, trace)
        finally:
            trace.end()

    async def _deliver(self, claim: Claim, trace: AttemptTrace) -> None:
        message = claim.message
        if message.unsendable is not None:
            self._write(policy.unsendable(message), trace)
            log.warning("delivery.dead_lettered", message_id=message.id, error=message.unsendable)
            return
        permit = self._circuit.acquire()
        if permit is None:  # the circuit opened after this message was claimed
            self._release(message, trace)
            return
        written = False
        started = self._clock()
        try:
            now = started
            if self._fleet is not None or self._gate.delay(now) > 0:
                now = await self._pace()
                trace.paced(now - started)
            if now > claim.send_by or self._halt.is_set() or self._writer.database_down:
                # The lease is too short now, or stop or a fleet pause came (a claim that landed
                # after it, a slow-down that ended after it), or the database cannot take the
                # outcome (a failover, a partition: its answer would wait unwritten while the
                # lease runs out, and another worker would send it again): handed back unsent
                # (finally).
                return
            self.sends += 1
            answer = await self._sender.send(message.body)
            settlement, outcome, changed = self._judge(claim, permit, answer)
            self._write(settlement, trace)
            written = True
            if outcome is not None:
                self._react(message, outcome, changed, trace)
        except Exception as exc:  # one message can only fail itself
            log.error("delivery.failed", message_id=message.id, error=type(exc).__name__,
                      note="an attempt is spent; the message is retried later")  # fmt: skip
            trace.failed(type(exc).__name__)
            if not written:
                written = True
                self._circuit.record_other(permit)
                self._write(
                    policy.internal_failure(
                        message,
                        exc,
                        age=self._age(claim),
                        latency_s=self._clock() - started,
                        retry=self._retry,
                        rng=self._rng,
                    ),
                    trace,
                )
        finally:
            if not written:  # cancelled mid-send (shutdown) or handed back: no attempt spent
                self._circuit.record_other(permit)
                self._release(message, trace)

    def _write(self, settlement: Settlement, trace: AttemptTrace) -> None:
        self._writer.write(settlement)
        trace.settled(settlement)

    def _release(self, message: Message, trace: AttemptTrace) -> None:
        self._writer.release(message)
        trace.handed_back()

    def _judge(
        self, claim: Claim, permit: Permit, answer: Answer
    ) -> tuple[Settlement, Outcome | None, bool]:
        """The row write for an answer, the outcome to react to (None: nothing beyond the row),
        and whether the answer opened or closed the circuit."""
        message = claim.message
        plain = policy.plain_acknowledgement(message, answer)
        if plain is not None:  # the common answer: no Outcome to build unless the circuit closed
            changed = self._circuit.record_success(permit)
            return plain, Outcome(Verdict.ACKNOWLEDGE, plain.status) if changed else None, changed
        outcome = policy.classify(answer, self._retry, message.body)
        recorded = self._circuit.record(permit, outcome.verdict, transient=outcome.transient)
        settlement = policy.settlement(
            message,
            outcome,
            latency_s=answer.latency_s,
            age=self._age(claim),
            retry=self._retry,
            rng=self._rng,
            spend=recorded.spend,
        )
        if recorded.changed or outcome.verdict is not Verdict.ACKNOWLEDGE or outcome.slow_down:
            return settlement, outcome, recorded.changed
        return settlement, None, False

    def _age(self, claim: Claim) -> timedelta:
        """The message's age now: the database's age at the claim plus time elapsed since."""
        return claim.message.age + timedelta(seconds=self._clock() - claim.claimed_at)

    async def _pace(self) -> float:
        # Pacing, not synchronization: wait out a 429 slow-down, then for a slot of the fleet's
        # rate limit; a slow-down that began meanwhile is waited out too. Stop (or a pause) ends
        # the wait: the send is then handed back unsent at once, not at the end of the grace.
        while not self._halt.is_set():
            while (delay := self._gate.delay(self._clock())) > 0:
                if await stopped_within(self._halt, delay):
                    break
            if self._halt.is_set():
                break
            if self._fleet is not None and not await self._fleet.acquire(self._halt):
                break
            if self._gate.delay(now := self._clock()) == 0:
                return now
        return self._clock()

    def _react(
        self, message: Message, outcome: Outcome, changed: bool, trace: AttemptTrace
    ) -> None:
        """Act on an answer beyond its row: the circuit, the global slow-down, loud logs."""
        if changed:
            self._circuit_changed(outcome)
            reason = self._circuit.reason
            trace.circuit_changed(
                None if reason is None else reason.value, self._circuit.next_probe_in()
            )
        elif outcome.verdict is Verdict.DEAD_LETTER:
            log.warning(
                "delivery.dead_lettered",
                message_id=message.id,
                status=outcome.status,
                error=outcome.error,
            )
        if outcome.slow_down is not None:
            self._gate.pause_until(self._clock() + outcome.slow_down.total_seconds())
            trace.slowed_down(outcome.slow_down.total_seconds())
            log.info(
                "delivery.rate_limited",
                message_id=message.id,
                slow_down_s=outcome.slow_down.total_seconds(),
            )

    def _circuit_changed(self, outcome: Outcome) -> None:
        reason = self._circuit.reason
        if reason is None:
            self._metrics.circuit_open.set(0)
            self._circuit_closed()
            log.info("circuit.closed", status=outcome.status)
            return
        self._metrics.circuit_open.set(1)
        self._circuit_opened()
        log.error(
            "circuit.opened",
            reason=reason.value,
            status=outcome.status,
            error=outcome.error,
            next_probe_in_s=round(self._circuit.next_probe_in(), 3),
            hint=_PAUSE_HINTS[reason],
        )


_PAUSE_HINTS = {
    PauseReason.STARTING: "probing the endpoint",
    PauseReason.CONFIGURATION: "the endpoint refused the configuration (key, URL or method) or "
    "redirected; delivery is paused, no attempts are spent",
    PauseReason.OUTAGE: "the endpoint failed many sends in a row and answered nothing else; "
    "delivery is paused and probed, no attempts are spent",
}
