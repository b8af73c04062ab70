"""The worker's tracing, as `outbox-worker run` starts it when OTEL_* asks for traces (README
"Tracing"): the lean recorder (``lean``) with a sink per exporter ("otlp": ``wire``'s encoding
over OTLP/HTTP; "console": the SDK's ``ConsoleSpanExporter`` through ``readable``).

Imported by assemble only when tracing is on. The OpenTelemetry SDK configures, once at start,
what the standard variables ask for (the resource: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES;
the sampler: OTEL_TRACES_SAMPLER[_ARG]) and prints for the console exporter; it records nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

import structlog
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from outbox_worker.integrations.otel.lean import Attempt, Batching, LeanTracing, Sink
from outbox_worker.integrations.otel.readable import SdkSink
from outbox_worker.integrations.otel.stored import Parent
from outbox_worker.integrations.otel.wire import SpanWire
from outbox_worker.version import __version__

log = structlog.get_logger("outbox_worker.tracing")

SCOPE: Final = InstrumentationScope("outbox_worker", __version__)
"""The instrumentation scope of every span the worker exports."""


def start_tracing(
    exporters: Sequence[str], *, server_address: str, environ: Mapping[str, str] | None = None
) -> LeanTracing:
    """The worker's tracing, exporting in the background to ``exporters`` ("otlp": OTLP over
    HTTP, "console": stdout), configured by the OTEL_* variables of ``environ`` (the
    process's); ConfigError (one line) for a batch setting or exporter setting that is wrong."""
    env = os.environ if environ is None else environ
    _log_through_structlog()
    batching = Batching.from_environ(env)
    resource = worker_resource()
    sinks: list[Sink] = []
    for name in exporters:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            console = ConsoleSpanExporter(out=sys.stdout)  # today's stdout, not import time's
            sinks.append(SdkSink(console, resource=resource, scope=SCOPE,
                                 server_address=server_address))  # fmt: skip
        else:
            from outbox_worker.integrations.otel.export import OtlpHttpExport

            export = OtlpHttpExport.from_environ(env)
            sinks.append(OtlpSink(export, resource=resource, server_address=server_address))
    return LeanTracing(sinks, sampling=SdkSampling(TracerProvider().sampler), batching=batching)


def worker_resource() -> Resource:
    """The resource OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES describe, "outbox-worker"
    the service's name when they name none."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "outbox-worker"}))
    return resource


def span_wire(resource: Resource, server_address: str) -> SpanWire:
    """The OTLP encoder of the worker's spans for ``resource`` and the endpoint's host."""
    return SpanWire(
        resource=dict(resource.attributes),
        resource_schema_url=resource.schema_url,
        scope_name=SCOPE.name,
        scope_version=SCOPE.version,
        server_address=server_address,
    )


class Send(Protocol):
    """An OTLP/HTTP trace export (``export.OtlpHttpExport``)."""

    async def send(self, body: bytes) -> bool:
        """POST one serialized ExportTraceServiceRequest; never raise for its failures."""
        ...

    async def close(self) -> None:
        """Close the HTTP session."""
        ...


class OtlpSink:
    """Batches of finished spans, encoded by ``wire``, to an OTLP/HTTP collector."""

    def __init__(self, export: Send, *, resource: Resource, server_address: str) -> None:
        self._export = export
        self._wire = span_wire(resource, server_address)

    async def export(self, spans: Sequence[Attempt]) -> None:
        """Encode ``spans`` and send them (the exporter logs what the collector refused)."""
        await self._export.send(self._wire.encode(spans))

    async def close(self) -> None:
        """Close the exporter's HTTP session."""
        await self._export.close()


class SdkSampling:
    """OTEL_TRACES_SAMPLER's sampler (the SDK's), as the lean recorder asks it.

    With a parent-based sampler whose delegates are OpenTelemetry's defaults (the default
    sampler, and every parentbased_* OTEL_TRACES_SAMPLER) a row's stored sampled flag decides,
    with no call: a message whose producer did not sample its trace costs one string check an
    attempt. Other samplers (always_on, traceidratio, a plugin) are asked at every attempt:
    correct, and slower. A row without a valid context starts a trace its root sampler decides.
    """

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler
        # The SDK keeps the delegates private: read defensively, so an SDK that renames them
        # costs the fast path (every attempt asks the sampler), never the start.
        self.follows_parent = (
            isinstance(sampler, ParentBased)
            and getattr(sampler, "_remote_parent_sampled", None) is ALWAYS_ON
            and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
        )

    def decide(self, trace: str, parent: Parent | None) -> str | bool:
        """Ask the sampler, as the SDK would at the span's start; the tracestate it keeps."""
        trace_id = int(trace, 16)
        context = Context()
        if parent is not None:
            state = TraceState.from_header([parent.tracestate]) if parent.tracestate else None
            remote = SpanContext(trace_id, int(parent.span, 16), True,
                                 TraceFlags(int(parent.sampled)), state)  # fmt: skip
            context = set_span_in_context(NonRecordingSpan(remote), context)
        result = self._sampler.should_sample(context, trace_id, "deliver outbox", SpanKind.CONSUMER)
        if result.decision is not Decision.RECORD_AND_SAMPLE:
            return False
        return (result.trace_state.to_header() if result.trace_state else "") or True


class _SdkWarnings(logging.Handler):
    """OpenTelemetry's own warnings (a collector that is down, a bad OTEL_* value) as the
    worker's JSON log events, not stray text lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        """Log the record as the event tracing.sdk_warned."""
        log.warning("tracing.sdk_warned", logger=record.name, message=record.getMessage())


def _log_through_structlog() -> None:
    sdk = logging.getLogger("opentelemetry")
    if not any(isinstance(h, _SdkWarnings) for h in sdk.handlers):
        sdk.addHandler(_SdkWarnings(logging.WARNING))
        sdk.propagate = False
