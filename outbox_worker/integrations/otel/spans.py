"""The worker's spans (the ``otel`` extra): one per delivery attempt, in the producer's trace, with
its claim and the circuit's changes as events; and the tracer provider `outbox-worker run` starts
when OTEL_* asks for traces (README "Tracing").

Imported by assemble only when tracing is on; the SDK and the exporter by ``start_tracing`` alone.
Each attempt's span is a child of the span that enqueued the message: the request that
registered the user, its enqueue, every attempt and Ravelin's answers are one trace. Spans carry
ids, counts, HTTP status codes, outcomes and the circuit's reasons; never the payload, the
endpoint's answer text, the dedup key or the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from outbox_worker.delivery.tracing import NO_TRACING, AttemptSource, AttemptTrace, ClaimTrace
from outbox_worker.models import Message, Settlement, State

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = structlog.get_logger("outbox_worker.tracing")

# --- the worker: the stored context, parsed as hostile text -------------------------------------

_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# W3C Trace Context's list-member grammar (as opentelemetry-api checks it), so the API never
# rejects a value here, and never logs one.
_KEY: Final = r"(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
_VALUE: Final = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_TRACESTATE: Final = re.compile(f"{_KEY}={_VALUE}(?:,{_KEY}={_VALUE}){{0,31}}")
_MAX_TRACESTATE: Final = 512


def producer_context(message: Message) -> SpanContext | None:
    """The span that enqueued ``message``, or None when the row has no valid trace context."""
    match = _TRACEPARENT.fullmatch(message.traceparent or "")
    if match is None or match[1] == "ff":
        return None
    trace_id, span_id = int(match[2], 16), int(match[3], 16)
    if not trace_id or not span_id:
        return None
    state = message.tracestate
    if state is not None and (len(state) > _MAX_TRACESTATE or not _TRACESTATE.fullmatch(state)):
        state = None
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(int(match[4], 16) & TraceFlags.SAMPLED),
        trace_state=None if state is None else TraceState.from_header([state]),
    )


# --- the worker's spans -------------------------------------------------------------------------

# OpenTelemetry's messaging conventions (1.26 and later, where messaging.operation became
# messaging.operation.type): the outbox table is the queue, a claim "receives" a batch, each
# delivery attempt "processes" one message. Every attribute costs the worker CPU twice (recorded,
# then encoded for export: README "Tracing" has the figures), so spans carry only these.
_SYSTEM: Final = {"messaging.system": "outbox", "messaging.destination.name": "outbox.messages"}
_OUTCOMES: Final = {State.ACKNOWLEDGED: "acknowledged", State.DEAD: "dead_lettered"}
# The last hex digit of trace flags whose "sampled" bit (0x01) is clear.
_UNSAMPLED: Final = frozenset("02468ace")


class OtelTracing:
    """The worker's ``Tracing`` on an OpenTelemetry tracer.

    With ``follow_unsampled`` false (the parent-based samplers: OpenTelemetry's default, and
    every parentbased_* OTEL_TRACES_SAMPLER) a message whose producer chose not to sample its
    trace costs one string check per attempt: the SDK would only make a span that records nothing.
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        *,
        server_address: str,
        provider: TracerProvider | None = None,
        follow_unsampled: bool = False,
    ) -> None:
        self._tracer = tracer
        self._server_address = server_address
        self._provider = provider
        self._follow_unsampled = follow_unsampled

    def claim_started(self) -> ClaimTrace:
        """A claim is about to run: its span starts now, if it takes any rows."""
        return _Claim(self, time.time_ns())

    async def close(self, within_s: float) -> None:
        """Export what is buffered and shut the provider down, waiting at most ``within_s``.

        The shutdown blocks on HTTP (the exporter retries a collector that is down for up to
        OTEL_EXPORTER_OTLP_TIMEOUT), so it runs in a daemon thread: past the bound the worker
        exits without it, and only spans are lost.
        """
        provider = self._provider
        if provider is None:
            return
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def shut_down() -> None:
            try:
                provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits
                    loop.call_soon_threadsafe(done.set)

        threading.Thread(target=shut_down, name="tracing-shutdown", daemon=True).start()
        try:
            async with asyncio.timeout(within_s):
                await done.wait()
        except TimeoutError:
            log.warning("tracing.flush_abandoned", waited_s=within_s,
                        note="spans still buffered are lost; deliveries are not")  # fmt: skip


class _Claim:
    """One claim: remembered, and shown on each traced attempt of its messages as an event.

    Not a span of its own: a claim serves messages of many traces, most of them perhaps not
    sampled, and a span per claim would cost every claim what an event costs only the traced.
    """

    __slots__ = ("_claimed", "_started_ns", "_tracing")

    def __init__(self, tracing: OtelTracing, started_ns: int) -> None:
        self._tracing = tracing
        self._started_ns = started_ns
        self._claimed: dict[str, Any] = {}

    def claimed(self, messages: Sequence[Message]) -> AttemptSource:
        """The claim took ``messages`` (none: the idle worker's poll, which leaves no trace)."""
        if not messages:
            return NO_TRACING
        self._claimed = {
            "messaging.operation.type": "receive",
            "messaging.batch.message_count": len(messages),
            "outbox.claim_ms": round((time.time_ns() - self._started_ns) / 1e6, 3),
        }
        return self

    def attempt(self, message: Message) -> AttemptTrace:
        """The attempt's span, a child of the producer's span, with the claim as an event."""
        tracing = self._tracing
        stored = message.traceparent
        if stored is not None and stored[-1:] in _UNSAMPLED and not tracing._follow_unsampled:
            return NO_TRACING  # the producer did not sample this trace (flags with bit 0 clear)
        parent = producer_context(message)
        span = tracing._tracer.start_span(
            "deliver outbox",
            context=Context()
            if parent is None
            else trace.set_span_in_context(NonRecordingSpan(parent), Context()),
            kind=SpanKind.CONSUMER,
            attributes={
                **_SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "deliver",
                "messaging.message.id": str(message.id),
                # The attempt's number among those that counted (a paused one does not).
                "outbox.attempt": message.attempts + 1,
                "server.address": tracing._server_address,
            },
        )
        span.add_event("outbox.claimed", self._claimed, timestamp=self._started_ns)
        return _Attempt(span)


class _Attempt:
    __slots__ = ("_error_type", "_span")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._error_type: str | None = None

    def settled(self, settlement: Settlement) -> None:
        """Record the outcome; anything but an acknowledgement is an error of this span."""
        attributes: dict[str, Any] = {}
        if settlement.status is not None:
            attributes["http.response.status_code"] = settlement.status
        outcome = _OUTCOMES.get(settlement.state)
        if outcome is None:  # pending again: retried later, or a pause took the blame
            outcome = "retry" if settlement.attempt_spent else "paused"
            if settlement.delay is not None:
                attributes["outbox.retry_in_s"] = settlement.delay.total_seconds()
        attributes["outbox.outcome"] = outcome
        if outcome != "acknowledged":
            # The status code, or what kind of failure: never the endpoint's or the error's text.
            attributes["error.type"] = self._failure(settlement)
            self._span.set_status(Status(StatusCode.ERROR))
        self._span.set_attributes(attributes)

    def _failure(self, settlement: Settlement) -> str:
        if settlement.status is not None:
            return str(settlement.status)
        if self._error_type is not None:
            return self._error_type
        if settlement.state is State.DEAD and not settlement.attempt_spent:
            return "unsendable"  # a row another service wrote, dead-lettered without a send
        return "transport"  # no answer: timeout, refused or dropped connection, TLS

    def failed(self, error_type: str) -> None:
        """Our own failure: its exception type only (its message might quote the payload)."""
        self._error_type = error_type
        self._span.add_event("outbox.internal_error", {"exception.type": error_type})

    def handed_back(self) -> None:
        """Released unsent: no attempt spent."""
        self._span.set_attribute("outbox.outcome", "handed_back")

    def circuit_changed(self, reason: str | None, next_probe_in_s: float) -> None:
        """An event on the attempt whose answer paused (or resumed) all delivery."""
        if reason is None:
            self._span.add_event("outbox.circuit.closed")
        else:
            self._span.add_event(
                "outbox.circuit.opened",
                {
                    "outbox.circuit.reason": reason,
                    "outbox.circuit.next_probe_in_s": round(next_probe_in_s, 3),
                },
            )

    def paced(self, waited_s: float) -> None:
        """An event when the send is about to start after waiting for the rate limit."""
        self._span.add_event("outbox.paced", {"outbox.waited_s": round(waited_s, 3)})

    def slowed_down(self, pause_s: float) -> None:
        """An event on the attempt whose answer slowed every send down."""
        self._span.add_event("outbox.slowed_down", {"outbox.pause_s": round(pause_s, 3)})

    def end(self) -> None:
        """End the span (the batch processor exports it in the background)."""
        self._span.end()


# --- start-up -----------------------------------------------------------------------------------


def start_tracing(exporters: Sequence[str], *, server_address: str) -> OtelTracing:
    """A tracer provider of the worker's own, exporting in the background to ``exporters``
    ("otlp": OTLP over HTTP, "console": stdout); the SDK reads the rest of OTEL_* itself
    (endpoint, headers, sampler, service name, batch sizes)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased

    _log_through_structlog()
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "outbox-worker"}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        exporter: SpanExporter
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter(out=sys.stdout)  # today's stdout, not import time's
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracing(
        provider.get_tracer("outbox_worker"),
        server_address=server_address,
        provider=provider,
        # OTEL_TRACES_SAMPLER's parent-based samplers never record under an unsampled remote
        # parent; the others (always_on, traceidratio) decide for themselves.
        follow_unsampled=not isinstance(provider.sampler, ParentBased),
    )


class _SdkWarnings(logging.Handler):
    """OpenTelemetry's own warnings (a collector that is down, spans dropped) as the worker's
    JSON log events, not stray text lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        """Log the record as the event tracing.sdk_warned."""
        log.warning("tracing.sdk_warned", logger=record.name, message=record.getMessage())


def _log_through_structlog() -> None:
    sdk = logging.getLogger("opentelemetry")
    if not any(isinstance(h, _SdkWarnings) for h in sdk.handlers):
        sdk.addHandler(_SdkWarnings(logging.WARNING))
        sdk.propagate = False
