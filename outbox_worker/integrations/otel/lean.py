"""The worker's spans, recorded lean: one slotted record per traced attempt, exported in batches.

Each attempt's span is a child of the span that enqueued the message: the request that registered
the user, its enqueue, every attempt and Ravelin's answers are one trace. A record holds only raw
values (the stored ids as hex, times from ``time.time_ns()``, the settlement's few fields); the
OpenTelemetry SDK's span machinery cost ~29 µs an attempt and its OTLP encoding ~47 µs more
(bench/README.md "Tracing"), against ~70 µs for a whole delivery. Finished records wait in a
bounded buffer that a task on the worker's loop hands, in batches, to the sinks (``wire`` for
OTLP, ``readable`` for the SDK's exporters). Spans carry ids, counts, HTTP status codes,
outcomes and the circuit's reasons; never the payload, the endpoint's answer text, the dedup key
or the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import structlog

from outbox_worker.delivery.tracing import NO_TRACING, AttemptSource, AttemptTrace, ClaimTrace
from outbox_worker.errors import ConfigError
from outbox_worker.integrations.otel.stored import (
    UNSAMPLED,
    Parent,
    stored_parent,
    valid_state,
    well_formed,
)
from outbox_worker.models import Message, Settlement, State

log = structlog.get_logger("outbox_worker.tracing")

# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batching:
    """The batch span processor's standard settings (OTEL_BSP_*), read as the SDK reads them."""

    max_queue: int = 2048  # finished spans waiting; past it new ones are dropped (and counted)
    max_batch: int = 512  # spans an export carries at most
    delay_s: float = 5.0  # between two exports (sooner when a full batch waits)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Batching:
        """OTEL_BSP_MAX_QUEUE_SIZE, _MAX_EXPORT_BATCH_SIZE, _SCHEDULE_DELAY (ms); ConfigError
        (one line) for a value that is not a whole number above 0, or a batch past the queue."""
        queue = _positive(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        batch = _positive(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        delay_ms = _positive(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000)
        if batch > queue:
            raise ConfigError(
                f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE ({batch}) is above OTEL_BSP_MAX_QUEUE_SIZE "
                f"({queue}); set it to {queue} or less"
            )
        return cls(queue, batch, delay_ms / 1000)


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdecimal() or not 0 < int(text) <= 10_000_000:
        shown = text if len(text) <= 20 and text.isprintable() else "a long or unprintable value"
        raise ConfigError(f"{name} is {shown!r}; set it to a whole number from 1 to 10000000")
    return int(text)


class Sampling(Protocol):
    """The sampler OTEL_TRACES_SAMPLER chose, as the recorder asks it."""

    follows_parent: bool
    """A parent-based sampler with OpenTelemetry's default delegates: a row's stored context
    decides alone (sampled flag set: recorded; clear: nothing), with no call per attempt."""

    def decide(self, trace: str, parent: Parent | None) -> str | bool:
        """Whether to record the attempt's span (trace id ``trace``): False, not recorded;
        True, recorded without a tracestate; a string, recorded with that tracestate."""
        ...


class Sink(Protocol):
    """Where batches of finished spans go (OTLP over HTTP, or an SDK span exporter)."""

    async def export(self, spans: Sequence[Attempt]) -> None:
        """Send one batch; never raise for the collector's or the network's failures."""
        ...

    async def close(self) -> None:
        """Release what the sink holds (its HTTP session)."""
        ...


# --- the seam's objects -------------------------------------------------------------------------

_OUTCOMES: Final = {State.ACKNOWLEDGED: "acknowledged", State.DEAD: "dead_lettered"}
_INTERNAL_ERROR: Final = "outbox.internal_error"
_randbits: Final = random.getrandbits  # span ids as the SDK makes them (not for secrecy)


class Claim:
    """One claim, shown on each traced attempt of its messages as the event "outbox.claimed".

    Not a span of its own: a claim serves messages of many traces, most of them perhaps not
    sampled, and a span per claim would cost every claim what an event costs only the traced.
    """

    __slots__ = ("claim_ms", "count", "started_ns", "tracing")

    def __init__(self, tracing: LeanTracing, started_ns: int) -> None:
        self.tracing = tracing
        self.started_ns = started_ns
        self.count = 0
        self.claim_ms = 0.0

    def claimed(self, messages: Sequence[Message]) -> AttemptSource:
        """The claim took ``messages`` (none: the idle worker's poll, which leaves no trace)."""
        if not messages:
            return NO_TRACING
        self.count = len(messages)
        self.claim_ms = round((time.time_ns() - self.started_ns) / 1e6, 3)
        return self

    def event_attributes(self) -> tuple[tuple[str, str | int | float], ...]:
        """The attributes of the claim's event on each attempt."""
        return (
            ("messaging.operation.type", "receive"),
            ("messaging.batch.message_count", self.count),
            ("outbox.claim_ms", self.claim_ms),
        )

    def attempt(self, message: Message) -> AttemptTrace:
        """The attempt's span, a child of the producer's span, when the trace is sampled."""
        tracing = self.tracing
        stored = message.traceparent
        if tracing.follows_parent and stored is not None:
            if stored[-1:] in UNSAMPLED:
                return NO_TRACING  # the producer did not sample this trace (flags bit 0 clear)
            if well_formed(stored):  # sampled: recorded, with no sampler to ask
                state = message.tracestate
                return Attempt(
                    self, message, stored[3:35], stored[36:52], state and valid_state(state)
                )
        parent = stored_parent(message)
        trace = parent.trace if parent is not None else _new_trace()
        decided = tracing.sampling.decide(trace, parent)
        if decided is False:
            return NO_TRACING
        state = None if decided is True else decided
        return Attempt(self, message, trace, None if parent is None else parent.span, state)


def _new_trace() -> str:
    trace = 0
    while not trace:
        trace = _randbits(128)
    return f"{trace:032x}"


Events = list[tuple[str, int, tuple[tuple[str, str | float], ...]]]
"""A span's events after the claim's: (name, time in ns, attributes), in the order they came."""


class Attempt:
    """One traced attempt: its span's raw values, encoded only when exported.

    The span's status is ERROR exactly when ``error_type`` is set (anything but acknowledged).
    """

    __slots__ = (
        "attempt", "claim", "end_ns", "error_type", "events", "message_id", "outcome", "parent",
        "retry_in_s", "span_id", "start_ns", "status", "trace", "tracestate",
    )  # fmt: skip

    end_ns: int  # set by end(), before the span can be exported

    def __init__(
        self, claim: Claim, message: Message, trace: str, parent: str | None, state: str | None
    ) -> None:
        self.claim = claim
        self.trace = trace
        self.parent = parent
        self.tracestate = state
        span_id = _randbits(64)
        while not span_id:
            span_id = _randbits(64)
        self.span_id = span_id
        self.message_id = message.id
        self.attempt = message.attempts + 1  # among those that counted (a paused one does not)
        self.status: int | None = None
        self.retry_in_s: float | None = None
        self.outcome: str | None = None
        self.error_type: str | None = None
        self.events: Events | None = None
        self.start_ns = time.time_ns()

    def settled(self, settlement: Settlement) -> None:
        """Record the outcome; anything but an acknowledgement is an error of this span."""
        self.status = settlement.status
        outcome = _OUTCOMES.get(settlement.state)
        if outcome is None:  # pending again: retried later, or a pause took the blame
            outcome = "retry" if settlement.attempt_spent else "paused"
            if settlement.delay is not None:
                self.retry_in_s = settlement.delay.total_seconds()
        self.outcome = outcome
        if outcome != "acknowledged":
            # The status code, or what kind of failure: never the endpoint's or the error's text.
            self.error_type = self._failure(settlement)

    def _failure(self, settlement: Settlement) -> str:
        if settlement.status is not None:
            return str(settlement.status)
        failed = [pairs[0][1] for name, _, pairs in self.events or () if name == _INTERNAL_ERROR]
        if failed:
            return str(failed[-1])  # the last failure before the row write
        if settlement.state is State.DEAD and not settlement.attempt_spent:
            return "unsendable"  # a row another service wrote, dead-lettered without a send
        return "transport"  # no answer: timeout, refused or dropped connection, TLS

    def failed(self, error_type: str) -> None:
        """Our own failure: its exception type only (its message might quote the payload)."""
        self._event(_INTERNAL_ERROR, (("exception.type", error_type),))

    def handed_back(self) -> None:
        """Released unsent: no attempt spent."""
        self.outcome = "handed_back"

    def circuit_changed(self, reason: str | None, next_probe_in_s: float) -> None:
        """An event on the attempt whose answer paused (or resumed) all delivery."""
        if reason is None:
            self._event("outbox.circuit.closed", ())
        else:
            self._event("outbox.circuit.opened", (
                ("outbox.circuit.reason", reason),
                ("outbox.circuit.next_probe_in_s", round(next_probe_in_s, 3)),
            ))  # fmt: skip

    def paced(self, waited_s: float) -> None:
        """An event when the send is about to start after waiting for the rate limit."""
        self._event("outbox.paced", (("outbox.waited_s", round(waited_s, 3)),))

    def slowed_down(self, pause_s: float) -> None:
        """An event on the attempt whose answer slowed every send down."""
        self._event("outbox.slowed_down", (("outbox.pause_s", round(pause_s, 3)),))

    def _event(self, name: str, pairs: tuple[tuple[str, str | float], ...]) -> None:
        if self.events is None:
            self.events = []
        self.events.append((name, time.time_ns(), pairs))

    def end(self) -> None:
        """The span ends: into the export buffer (or dropped, and counted, when it is full)."""
        self.end_ns = time.time_ns()
        self.claim.tracing.finished(self)


# --- the buffer and its exports -----------------------------------------------------------------


class LeanTracing:
    """The worker's ``Tracing``: records attempts lean and exports them in batches to ``sinks``.

    The export task starts with the first finished span, on the worker's loop; ``close`` sends
    what is left within its bound (a collector that is down costs spans, not the exit).
    """

    def __init__(
        self, sinks: Sequence[Sink], *, sampling: Sampling, batching: Batching = Batching()
    ) -> None:
        self.sampling = sampling
        self.follows_parent = sampling.follows_parent
        self._sinks = tuple(sinks)
        self._batching = batching
        self._max_queue, self._max_batch = batching.max_queue, batching.max_batch
        self._buffer: list[Attempt] = []
        self._dropped = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def claim_started(self) -> ClaimTrace:
        """A claim is about to run: its event's time is now."""
        return Claim(self, time.time_ns())

    def finished(self, span: Attempt) -> None:
        """Buffer a finished span for the next export (dropped past OTEL_BSP_MAX_QUEUE_SIZE)."""
        buffer = self._buffer
        waiting = len(buffer)
        if waiting >= self._max_queue:
            self._dropped += 1
            return
        buffer.append(span)
        if waiting + 1 == self._max_batch:
            self._wake.set()
        if self._task is None and not self._closing:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # ended outside the worker's loop: close() sends it
                return
            self._task = loop.create_task(self._run(), name="tracing-export")

    async def _run(self) -> None:
        delay = self._batching.delay_s
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
                size = self._batching.max_batch  # a full batch is waiting: only full ones go
            except TimeoutError:
                size = 1  # the delay is over: everything goes
            self._wake.clear()
            await self._export(len(self._buffer) // size * size)

    async def _export(self, count: int) -> None:
        """Export the ``count`` oldest buffered spans, in batches (what ends meanwhile waits for
        its own batch: sent at once, it would make a POST of a few spans)."""
        buffer, size = self._buffer, self._batching.max_batch
        while count > 0 and buffer:
            batch = buffer[: min(size, count)]
            del buffer[: len(batch)]
            count -= len(batch)
            for sink in self._sinks:
                try:
                    await sink.export(batch)
                except Exception as exc:  # an SDK exporter's bug costs its spans, not the worker
                    log.error("tracing.export_failed", error=type(exc).__name__)
        if self._dropped:
            log.warning("tracing.spans_dropped", count=self._dropped,
                        note="the export buffer was full (OTEL_BSP_MAX_QUEUE_SIZE)")  # fmt: skip
            self._dropped = 0

    async def close(self, within_s: float) -> None:
        """Export what is buffered and close the sinks, giving up after ``within_s`` seconds."""
        self._closing = True
        self._wake.set()
        task = self._task
        try:
            async with asyncio.timeout(within_s):
                if task is not None:
                    await asyncio.shield(task)
                await self._export(len(self._buffer))  # all that is left
        except TimeoutError:
            log.warning("tracing.flush_abandoned", waited_s=within_s,
                        note="spans still buffered are lost; deliveries are not")  # fmt: skip
        finally:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for sink in self._sinks:
                await sink.close()
