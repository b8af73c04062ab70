"""The lean span recorder (integrations/otel/lean.py): which attempts it records, its bounded
buffer and batches, its bounded close, and the OTEL_BSP_* settings it reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from outbox_worker.delivery.tracing import NO_TRACING, AttemptTrace
from outbox_worker.errors import ConfigError
from outbox_worker.integrations.otel.lean import Attempt, Batching, LeanTracing
from outbox_worker.integrations.otel.spans import OtlpSink, SdkSampling
from outbox_worker.models import LeaseToken, Message, MessageId, Settlement, State
from tests.unit.test_worker import Log
from tests.waiting import wait_for

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = SAMPLED[:-2] + "00"


class Kept:
    """A sink that keeps each batch; ``hold`` makes exports wait until it is set."""

    def __init__(self) -> None:
        self.batches: list[list[Attempt]] = []
        self.hold: asyncio.Event | None = None
        self.closed = False

    async def export(self, spans: Sequence[Attempt]) -> None:
        """Keep the batch (after ``hold``, if any)."""
        if self.hold is not None:
            await self.hold.wait()
        self.batches.append(list(spans))

    async def close(self) -> None:
        """Remember being closed."""
        self.closed = True


def message(traceparent: str | None, number: int = 1, tracestate: str | None = None) -> Message:
    """A claimed message with this stored trace context."""
    return Message(MessageId(number), b"{}", 0, timedelta(0), LeaseToken(uuid.uuid4()),
                   traceparent=traceparent, tracestate=tracestate)  # fmt: skip


def tracing(sink: Kept, sampler: Sampler | None = None, **batching: float) -> LeanTracing:
    """A recorder exporting to ``sink``."""
    sampling = SdkSampling(ParentBased(ALWAYS_ON) if sampler is None else sampler)
    return LeanTracing([sink], sampling=sampling, batching=Batching(**batching))  # type: ignore[arg-type]


def traced(recorder: LeanTracing, *messages: Message) -> list[AttemptTrace]:
    """Each message's attempt, settled acknowledged and ended."""
    source = recorder.claim_started().claimed(list(messages))
    spans = []
    for m in messages:
        span = source.attempt(m)
        span.settled(
            Settlement(m.id, m.lease_token, State.ACKNOWLEDGED, True, None, 200, None, 0.0)
        )
        span.end()
        spans.append(span)
    return spans


@pytest.mark.parametrize(
    ("sampler", "stored", "recorded"),
    [
        (ParentBased(ALWAYS_ON), SAMPLED, True),
        (ParentBased(ALWAYS_ON), UNSAMPLED, False),
        (ParentBased(ALWAYS_ON), None, True),  # a root: the root sampler decides
        (ParentBased(ALWAYS_OFF), None, False),
        (ParentBased(ALWAYS_OFF), SAMPLED, True),
        (ALWAYS_ON, UNSAMPLED, True),  # not parent-based: asked at each attempt
        (ALWAYS_OFF, SAMPLED, False),
        (TraceIdRatioBased(1.0), UNSAMPLED, True),
    ],
)
async def test_the_sampler_decides_which_attempts_are_recorded(
    sampler: Sampler, stored: str | None, recorded: bool
) -> None:
    """The producer's flag decides under the parent-based defaults; other samplers are asked."""
    (span,) = traced(tracing(Kept(), sampler), message(stored))
    assert (span is not NO_TRACING) == recorded


def test_only_default_parent_based_samplers_take_the_fast_path() -> None:
    """A parent-based sampler with other delegates is asked, like any other sampler."""
    assert SdkSampling(ParentBased(TraceIdRatioBased(0.5))).follows_parent
    assert not SdkSampling(
        ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)
    ).follows_parent
    assert not SdkSampling(ALWAYS_ON).follows_parent


async def test_a_span_keeps_the_producers_ids_and_tracestate() -> None:
    """Child of the stored span, in its trace, with its (valid) tracestate; a root gets its own."""
    sink = Kept()
    recorder = tracing(sink, max_batch=2)
    child, root = traced(recorder, message(SAMPLED, 1, "v=1"), message(None, 2))
    assert isinstance(child, Attempt)
    assert isinstance(root, Attempt)
    assert (child.trace, child.parent, child.tracestate) == (SAMPLED[3:35], SAMPLED[36:52], "v=1")
    assert root.parent is None
    assert root.trace != child.trace
    assert child.start_ns <= child.end_ns
    await recorder.close(5)
    assert sink.batches == [[child, root]]
    assert sink.closed


async def test_full_batches_go_at_once_and_the_rest_at_the_delay() -> None:
    """A full batch wakes the export task; what is left waits for OTEL_BSP_SCHEDULE_DELAY."""
    sink = Kept()
    recorder = tracing(sink, max_batch=2, delay_s=0.05)
    traced(recorder, *(message(SAMPLED, n) for n in range(3)))
    await wait_for(lambda: [len(b) for b in sink.batches] == [2, 1])
    await recorder.close(5)


async def test_spans_that_end_during_an_export_wait_for_their_own_batch() -> None:
    """What ends while a batch is being sent is not sent right after it in a POST of its own."""
    sink = Kept()
    sink.hold = asyncio.Event()
    recorder = tracing(sink, max_batch=4, delay_s=60)
    traced(recorder, *(message(SAMPLED, n) for n in range(4)))
    await wait_for(lambda: recorder._buffer == [])  # the full batch is on its way
    traced(recorder, *(message(SAMPLED, n) for n in range(4, 6)))
    sink.hold.set()
    await wait_for(lambda: sink.batches)
    assert [len(b) for b in sink.batches] == [4]
    await recorder.close(5)
    assert [len(b) for b in sink.batches] == [4, 2]


async def test_a_full_buffer_drops_spans_and_says_so_once(logs: Log) -> None:
    """Past OTEL_BSP_MAX_QUEUE_SIZE spans are dropped, counted in one event per export."""
    sink = Kept()
    recorder = tracing(sink, max_queue=2, max_batch=2, delay_s=60)
    sink.hold = asyncio.Event()
    traced(recorder, *(message(SAMPLED, n) for n in range(5)))
    sink.hold.set()
    await recorder.close(5)
    assert [len(b) for b in sink.batches] == [2]
    dropped = [e for e in logs if e["event"] == "tracing.spans_dropped"]
    assert [e["count"] for e in dropped] == [3]


async def test_close_gives_up_on_a_sink_that_hangs(logs: Log) -> None:
    """A collector that never answers costs the buffered spans, not more than the bound."""
    sink = Kept()
    sink.hold = asyncio.Event()  # never set
    recorder = tracing(sink, max_batch=1)
    traced(recorder, message(SAMPLED))
    async with asyncio.timeout(5):
        await recorder.close(0.1)
    assert "tracing.flush_abandoned" in [e["event"] for e in logs]
    assert sink.closed


async def test_the_otlp_sink_sends_the_encoded_batch() -> None:
    """OtlpSink POSTs (through the exporter) one ExportTraceServiceRequest per batch."""

    class Export:
        def __init__(self) -> None:
            self.bodies: list[bytes] = []
            self.closed = False

        async def send(self, body: bytes) -> bool:
            self.bodies.append(body)
            return True

        async def close(self) -> None:
            self.closed = True

    export = Export()
    sink = OtlpSink(export, resource=Resource({"service.name": "s"}), server_address="h")
    recorder = LeanTracing([sink], sampling=SdkSampling(ParentBased(ALWAYS_ON)))
    traced(recorder, message(SAMPLED), message(SAMPLED, 2))
    await recorder.close(5)
    (body,) = export.bodies
    (scope_spans,) = ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans
    assert [s.name for s in scope_spans.spans] == ["deliver outbox"] * 2
    assert export.closed


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Batching(2048, 512, 5.0)),
        (
            {
                "OTEL_BSP_MAX_QUEUE_SIZE": "100",
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "10",
                "OTEL_BSP_SCHEDULE_DELAY": "250",
            },
            Batching(100, 10, 0.25),
        ),
        ({"OTEL_BSP_SCHEDULE_DELAY": " "}, Batching()),
    ],
)
def test_batch_settings_come_from_otel_bsp(environ: dict[str, str], expected: Batching) -> None:
    """The SDK's batch processor variables, with its defaults."""
    assert Batching.from_environ(environ) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE is '0'"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "5s"}, "OTEL_BSP_SCHEDULE_DELAY is '5s'"),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "-1"}, "whole number"),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"}, "above OTEL_BSP_MAX_QUEUE_SIZE"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "x" * 100}, "a long or unprintable value"),
    ],
)
def test_bad_batch_settings_fail_at_start(environ: dict[str, str], message: str) -> None:
    """A batch setting that is not a whole number above 0 is one configuration error line."""
    with pytest.raises(ConfigError, match=message):
        Batching.from_environ(environ)


def test_start_tracing_builds_a_sink_per_exporter() -> None:
    """ "otlp" and "console" named together: both sinks, fed by the one recorder."""
    from outbox_worker.integrations.otel.readable import SdkSink
    from outbox_worker.integrations.otel.spans import start_tracing

    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    tracing = start_tracing(("otlp", "console"), server_address="h", environ=environ)
    assert [type(s) for s in tracing._sinks] == [OtlpSink, SdkSink]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    ],
)
def test_start_tracing_refuses_bad_settings_at_once(environ: dict[str, str], message: str) -> None:
    """A bad batch or exporter setting stops the start with one configuration error line."""
    from outbox_worker.integrations.otel.spans import start_tracing

    with pytest.raises(ConfigError, match=message):
        start_tracing(("otlp",), server_address="h", environ=environ)


def test_spans_ended_outside_a_loop_wait_for_close() -> None:
    """No running loop (a synchronous caller): the span is kept, and close() sends it."""
    sink = Kept()
    recorder = tracing(sink)
    traced(recorder, message(SAMPLED))
    asyncio.run(recorder.close(5))
    assert [len(b) for b in sink.batches] == [1]
