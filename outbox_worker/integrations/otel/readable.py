"""The worker's finished spans as the OpenTelemetry SDK's ``ReadableSpan``s, for its exporters.

OTEL_TRACES_EXPORTER=console (``ConsoleSpanExporter``) and the tests (``InMemorySpanExporter``)
take SDK spans; ``wire`` encodes the same records for OTLP without them, and the SDK's own OTLP
encoding of these spans is its test oracle. Off the hot path: records are converted a batch at a
time, when they are exported.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from outbox_worker.integrations.otel.lean import Attempt

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def readable_spans(
    spans: Sequence[Attempt],
    *,
    resource: Resource,
    scope: InstrumentationScope,
    server_address: str,
) -> list[ReadableSpan]:
    """``spans`` as SDK spans: the content ``wire`` encodes, attribute for attribute, in order."""
    return [_readable(s, resource, scope, server_address) for s in spans]


def _readable(
    span: Attempt, resource: Resource, scope: InstrumentationScope, server_address: str
) -> ReadableSpan:
    trace_id = int(span.trace, 16)
    state = TraceState.from_header([span.tracestate]) if span.tracestate else TraceState()
    attributes: dict[str, Any] = {
        "messaging.message.id": str(span.message_id),
        "outbox.attempt": span.attempt,
        "messaging.system": "outbox",
        "messaging.destination.name": "outbox.messages",
        "messaging.operation.type": "process",
        "messaging.operation.name": "deliver",
        "server.address": server_address,
    }
    if span.status is not None:
        attributes["http.response.status_code"] = span.status
    if span.retry_in_s is not None:
        attributes["outbox.retry_in_s"] = span.retry_in_s
    if span.outcome is not None:
        attributes["outbox.outcome"] = span.outcome
    if span.error_type is not None:
        attributes["error.type"] = span.error_type
    claim = span.claim
    events = [Event("outbox.claimed", dict(claim.event_attributes()), claim.started_ns)]
    events += [Event(name, dict(pairs), at_ns) for name, at_ns, pairs in span.events or ()]
    parent = None
    if span.parent is not None:  # the parent's own flags are not kept: no exporter shows them
        parent = SpanContext(trace_id, int(span.parent, 16), True, _SAMPLED, state)
    return ReadableSpan(
        "deliver outbox",
        context=SpanContext(trace_id, span.span_id, False, _SAMPLED, state),
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=events,
        kind=SpanKind.CONSUMER,
        status=Status(StatusCode.ERROR if span.error_type is not None else StatusCode.UNSET),
        start_time=span.start_ns,
        end_time=span.end_ns,
        instrumentation_scope=scope,
    )


class SdkSink:
    """Batches of finished spans to one of the SDK's span exporters, as ``ReadableSpan``s.

    An exporter blocks (the console writes, the SDK's own exporters might retry over the
    network), so each batch goes out in a daemon thread: the worker's loop never waits on it,
    and its exit never waits past ``close``'s bound.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        resource: Resource,
        scope: InstrumentationScope,
        server_address: str,
    ) -> None:
        self._exporter = exporter
        self._resource = resource
        self._scope = scope
        self._server_address = server_address

    async def export(self, spans: Sequence[Attempt]) -> None:
        """Convert ``spans`` and hand them to the exporter, waiting for it in a thread."""
        readable = readable_spans(
            spans, resource=self._resource, scope=self._scope, server_address=self._server_address
        )
        await _in_daemon_thread(lambda: self._exporter.export(readable))

    async def close(self) -> None:
        """Shut the exporter down."""
        await _in_daemon_thread(self._exporter.shutdown)


async def _in_daemon_thread(work: Callable[[], object]) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: Exception | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: Exception | None = None
        try:
            work()
        except Exception as exc:  # handed to the awaiting task, which logs it
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="tracing-export", daemon=True).start()
    await done
