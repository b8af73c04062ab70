"""Tracing end to end: a worker process exports over OTLP/HTTP to a local collector.

The producer (this test) enqueues inside a span of its own; the stand-in answers that message's
first POST with a 503 and its second with a 200; the collector must see both attempts, in the
producer's trace, as children of the producer's span.
"""

from __future__ import annotations

import asyncpg
from opentelemetry.sdk.trace import TracerProvider

import outbox_worker
from outbox_worker.standin import StandIn
from tests.cases import update
from tests.otlp import ExportedSpan, OtlpReceiver
from tests.processes import StartWorker, free_port
from tests.waiting import wait_for

# Export each finished span within 100 ms instead of the SDK's 5 s.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "outbox-e2e"}


async def test_retried_message_is_traced_in_the_producers_trace(
    start_worker: StartWorker, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """The collector sees a 503 attempt then an acknowledged 200, both under the producer's span."""
    standin.script_for("traced", [503])
    provider = TracerProvider()
    with provider.get_tracer("signup-app").start_as_current_span("signup") as producer:
        async with pg.transaction():
            message_id = await outbox_worker.enqueue_async(pg, update("traced"))
    trace_id = f"{producer.get_span_context().trace_id:032x}"
    span_id = f"{producer.get_span_context().span_id:016x}"

    def attempts() -> list[ExportedSpan]:
        return [s for s in collector.spans() if s.name == "deliver outbox"]

    async with OtlpReceiver() as collector:
        await start_worker({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, **FAST_EXPORT})
        await wait_for(
            lambda: any(s.attributes.get("outbox.outcome") == "acknowledged" for s in attempts()),
            message="the acknowledged attempt exported",
        )
    outcomes = [
        (s.attributes["outbox.attempt"], s.attributes["http.response.status_code"],
         s.attributes["outbox.outcome"], s.status_code)
        for s in attempts()
    ]  # fmt: skip
    assert outcomes == [(1, 503, "retry", 2), (2, 200, "acknowledged", 0)]
    for span in attempts():
        assert (span.trace_id, span.parent_span_id) == (trace_id, span_id)
        assert span.attributes["messaging.message.id"] == str(message_id)
        assert span.service == "outbox-e2e"
        assert "outbox.claimed" in span.events


async def test_a_collector_that_is_down_costs_spans_not_the_exit(
    start_worker: StartWorker, pg: asyncpg.Connection
) -> None:
    """With no collector listening, delivery goes on and SIGTERM still exits 0: the export still
    retrying (for OTEL_EXPORTER_OTLP_TIMEOUT, 10 s) is abandoned after the grace, and says so in
    a JSON log event like the rest."""
    with TracerProvider().get_tracer("signup-app").start_as_current_span("signup"):
        async with pg.transaction():
            await outbox_worker.enqueue_async(pg, update("nobody-listens"))
    worker = await start_worker(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", **FAST_EXPORT}
    )
    await wait_for(
        lambda: pg.fetchval("SELECT state = 'acknowledged' FROM outbox.messages"),
        message="delivered while the collector is down",
    )
    assert await worker.terminate() == 0
    assert "tracing.flush_abandoned" in worker.event_names()
    assert len(worker.events) == len(worker.lines)  # every line a JSON event
