"""Traces: the producer's context stored at enqueue, and the worker's span tree in memory.

The worker runs in this process (tests/integration/running.py) with its lean tracing, whose spans
go (as SDK spans, each exported as soon as it ends) to the SDK's in-memory exporter; the
producer's span is opened by the test, as the application's request handler would open it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
)
from sqlalchemy import create_engine

import outbox_worker
from outbox_worker.integrations.otel.lean import Batching, LeanTracing
from outbox_worker.integrations.otel.readable import SdkSink
from outbox_worker.integrations.otel.spans import SCOPE, SdkSampling, worker_resource
from outbox_worker.settings.config import CircuitSettings, RetrySettings, sqlalchemy_url
from outbox_worker.standin import StandIn
from tests.cases import update
from tests.e2e.test_canaries import PAYLOAD, canaries_in
from tests.integration.running import running_worker
from tests.waiting import wait_for

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FAST_RETRY = RetrySettings(backoff_base=timedelta(milliseconds=50), backoff_cap=timedelta(1))


@pytest.fixture
def exported() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider whose finished spans land in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def app_tracer(exported: tuple[TracerProvider, InMemorySpanExporter]) -> Tracer:
    """The producer application's tracer."""
    return exported[0].get_tracer("signup-app")


@pytest.fixture
def worker_tracing(exported: tuple[TracerProvider, InMemorySpanExporter]) -> LeanTracing:
    """The worker's tracing on the same in-memory exporter, a span exported as it ends."""
    sink = SdkSink(exported[1], resource=worker_resource(), scope=SCOPE,
                   server_address="127.0.0.1")  # fmt: skip
    return LeanTracing(
        [sink], sampling=SdkSampling(exported[0].sampler), batching=Batching(max_batch=1)
    )


async def stored_context(pg: asyncpg.Connection, message_id: int) -> Any:
    """The row's trace_context as Python data (None when NULL)."""
    text = await pg.fetchval(
        "SELECT trace_context::text FROM outbox.messages WHERE id = $1", message_id
    )
    return None if text is None else json.loads(text)


def traceparent_of(span: Any) -> str:
    """The W3C traceparent header that names ``span``."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def test_enqueue_async_stores_the_current_span(
    pg: asyncpg.Connection, app_tracer: Tracer
) -> None:
    """enqueue_async inside a span stores that span's traceparent; outside any span, NULL."""
    with app_tracer.start_as_current_span("signup") as span:
        async with pg.transaction():
            traced = await outbox_worker.enqueue_async(pg, update("traced"))
    async with pg.transaction():
        plain = await outbox_worker.enqueue_async(pg, update("plain"))
    assert await stored_context(pg, traced) == {"traceparent": traceparent_of(span)}
    assert await stored_context(pg, plain) is None


def test_enqueue_on_sqlalchemy_stores_the_current_span(
    database_url: str, app_tracer: Tracer
) -> None:
    """The synchronous enqueue (SQLAlchemy) stores the span's context, its tracestate too."""
    state = TraceState([("vendor", "opaque-1"), ("other@tenant", "x")])
    parent = SpanContext(0xAB, 0xCD, is_remote=True, trace_flags=TraceFlags(1), trace_state=state)
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    engine = create_engine(sqlalchemy_url(database_url, "psycopg"))
    try:
        with (
            app_tracer.start_as_current_span("signup", context=context) as span,
            engine.begin() as conn,
        ):
            message_id = outbox_worker.enqueue(conn, update("sync"))
    finally:
        engine.dispose()
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT trace_context FROM outbox.messages WHERE id = %s", [message_id]
        ).fetchone()
    assert row == ({"traceparent": traceparent_of(span), "tracestate": state.to_header()},)


SQL_CONTEXTS = [
    # what a producer passes as outbox.enqueue's third argument -> what is stored
    ({"traceparent": TRACEPARENT}, {"traceparent": TRACEPARENT}),
    (
        {"traceparent": TRACEPARENT, "tracestate": "a=1"},
        {"traceparent": TRACEPARENT, "tracestate": "a=1"},
    ),
    (
        {"traceparent": TRACEPARENT, "baggage": "user.email=x@y.example"},
        {"traceparent": TRACEPARENT},
    ),
    ({"traceparent": TRACEPARENT, "tracestate": "a=" + "x" * 600}, {"traceparent": TRACEPARENT}),
    ({"traceparent": TRACEPARENT, "tracestate": 7}, {"traceparent": TRACEPARENT}),
    ({"traceparent": "00-not-a-trace"}, None),
    ({"traceparent": TRACEPARENT.upper()}, None),
    ({"traceparent": "000-af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, None),
    ({"traceparent": TRACEPARENT + "-01"}, None),
    ({"traceparent": 1}, None),
    ({"tracestate": "a=1"}, None),
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
    ([TRACEPARENT], None),
    (None, None),
]


@pytest.mark.parametrize(("given", "stored"), SQL_CONTEXTS)
async def test_sql_enqueue_keeps_only_a_well_formed_trace_context(
    pg: asyncpg.Connection, given: Any, stored: Any
) -> None:
    """outbox.enqueue's trace_context keeps traceparent and a short tracestate; the rest is dropped, never refused."""
    message_id = await pg.fetchval(
        "SELECT outbox.enqueue($1::jsonb, NULL, $2::jsonb)",
        json.dumps(update("sql")),
        None if given is None else json.dumps(given),
    )
    assert await stored_context(pg, message_id) == stored


async def test_two_argument_calls_still_work(pg: asyncpg.Connection) -> None:
    """Callers written before revision 0009 (two arguments) enqueue as before, without a context."""
    first = await pg.fetchval("SELECT outbox.enqueue($1::jsonb, 'k-1')", json.dumps(update("a")))
    second = await pg.fetchval("SELECT outbox.insert_message($1::jsonb)", json.dumps(update("b")))
    assert [await stored_context(pg, i) for i in (first, second)] == [None, None]


def attempt_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """The finished delivery-attempt spans ("deliver outbox"), in the order they ended."""
    return [s for s in exporter.get_finished_spans() if s.name == "deliver outbox"]


async def test_each_attempt_is_a_span_in_the_producers_trace(
    database_url: str,
    standin: StandIn,
    pg: asyncpg.Connection,
    app_tracer: Tracer,
    worker_tracing: LeanTracing,
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A 503 then a 200: two attempt spans, children of the enqueuing span, with status and outcome."""
    exporter = exported[1]
    standin.script_for("flaky", [503])
    with app_tracer.start_as_current_span("signup") as producer:
        async with pg.transaction():
            message_id = await outbox_worker.enqueue_async(pg, update("flaky"))
    async with running_worker(database_url, standin.url, retry=FAST_RETRY, tracing=worker_tracing):
        await wait_for(
            lambda: len([s for s in attempt_spans(exporter)
                         if s.attributes and s.attributes.get("outbox.outcome") == "acknowledged"]),
            message="the acknowledged attempt's span",
        )  # fmt: skip
    attempts = attempt_spans(exporter)
    assert [s.attributes and s.attributes["outbox.outcome"] for s in attempts] == [
        "retry",
        "acknowledged",
    ]
    producer_context = producer.get_span_context()
    for number, span in enumerate(attempts, start=1):
        assert span.context is not None
        assert span.parent is not None
        assert span.context.trace_id == producer_context.trace_id
        assert span.parent.span_id == producer_context.span_id
        assert span.kind is SpanKind.CONSUMER
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "outbox"
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.message.id"] == str(message_id)
        assert span.attributes["outbox.attempt"] == number
    first, second = attempts
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes["http.response.status_code"] == 200
    assert second.status.status_code is StatusCode.UNSET


async def test_the_claim_is_an_event_on_each_attempt(
    database_url: str,
    standin: StandIn,
    pg: asyncpg.Connection,
    app_tracer: Tracer,
    worker_tracing: LeanTracing,
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Each attempt carries its claim (batch size, when) as an event; an untraced message's
    attempt starts a trace of its own."""
    exporter = exported[1]
    with app_tracer.start_as_current_span("signup"):
        async with pg.transaction():
            await outbox_worker.enqueue_async(pg, update("one"))
    async with pg.transaction():
        await outbox_worker.enqueue_async(pg, update("untraced"))
    async with running_worker(database_url, standin.url, tracing=worker_tracing):
        await wait_for(lambda: len(attempt_spans(exporter)) == 2)
    attempts = attempt_spans(exporter)
    for attempt in attempts:
        (claimed,) = [e for e in attempt.events if e.name == "outbox.claimed"]
        assert claimed.attributes is not None
        assert claimed.attributes["messaging.batch.message_count"] in (1, 2)
        assert attempt.start_time is not None
        assert claimed.timestamp <= attempt.start_time
    assert len([a for a in attempts if a.parent is None]) == 1


async def test_unsampled_producer_traces_get_no_worker_spans(
    database_url: str,
    standin: StandIn,
    pg: asyncpg.Connection,
    worker_tracing: LeanTracing,
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A producer that did not sample its trace (flags 00) gets no span from the worker either."""
    unsampled = json.dumps({"traceparent": TRACEPARENT[:-2] + "00"})
    await pg.fetchval(
        "SELECT outbox.enqueue($1::jsonb, NULL, $2::jsonb)", json.dumps(update("u")), unsampled
    )
    async with running_worker(database_url, standin.url, tracing=worker_tracing):
        await wait_for(lambda: pg.fetchval(
            "SELECT count(*) = 1 FROM outbox.messages WHERE state = 'acknowledged'"
        ))  # fmt: skip
    assert exported[1].get_finished_spans() == ()


async def test_circuit_pause_and_resume_are_events_on_attempts(
    database_url: str,
    standin: StandIn,
    pg: asyncpg.Connection,
    worker_tracing: LeanTracing,
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A 401 opens the circuit (an event on that attempt, outcome paused); the probe's 200 closes it."""
    exporter = exported[1]
    standin.script_for("key", [401])
    async with pg.transaction():
        await outbox_worker.enqueue_async(pg, update("key"))
    fast = CircuitSettings(
        probe_initial=timedelta(milliseconds=100), probe_cap=timedelta(milliseconds=400)
    )
    async with running_worker(database_url, standin.url, circuit=fast, tracing=worker_tracing):
        await wait_for(lambda: any(
            e.name == "outbox.circuit.closed" for s in attempt_spans(exporter) for e in s.events
        ), message="the circuit closed")  # fmt: skip
    attempts = attempt_spans(exporter)
    opened = [s for s in attempts if any(e.name == "outbox.circuit.opened" for e in s.events)]
    assert len(opened) == 1
    assert opened[0].attributes is not None
    assert opened[0].attributes["outbox.outcome"] == "paused"
    event = next(e for e in opened[0].events if e.name == "outbox.circuit.opened")
    assert event.attributes is not None
    assert event.attributes["outbox.circuit.reason"] == "configuration"


async def test_spans_carry_no_personal_data(
    database_url: str,
    standin: StandIn,
    pg: asyncpg.Connection,
    app_tracer: Tracer,
    worker_tracing: LeanTracing,
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A canary payload, dead-lettered by a 400: no canary in any span, event or attribute."""
    exporter = exported[1]
    standin.set_default_status(400)
    with app_tracer.start_as_current_span("signup"):
        async with pg.transaction():
            await outbox_worker.enqueue_async(pg, PAYLOAD)
    async with running_worker(database_url, standin.url, tracing=worker_tracing):
        await wait_for(lambda: attempt_spans(exporter))
    worker_spans = [s for s in exporter.get_finished_spans() if s.name != "signup"]
    assert canaries_in("\n".join(s.to_json() for s in worker_spans)) == []
    (attempt,) = attempt_spans(exporter)
    assert attempt.attributes is not None
    assert attempt.attributes["outbox.outcome"] == "dead_lettered"


def test_hostile_stored_contexts_start_a_trace_of_their_own() -> None:
    """A row's trace context that is not W3C's (another service wrote it) is ignored, not trusted."""
    from outbox_worker.integrations.otel.stored import stored_parent
    from outbox_worker.models import LeaseToken, Message, MessageId

    def message(traceparent: str | None, tracestate: str | None = None) -> Message:
        return Message(MessageId(1), b"{}", 0, timedelta(0), LeaseToken(uuid.uuid4()),
                       traceparent=traceparent, tracestate=tracestate)  # fmt: skip

    assert stored_parent(message(TRACEPARENT)) is not None
    for bad in [None, "", "ff" + TRACEPARENT[2:], TRACEPARENT + "-extra",
                "00-" + "0" * 32 + "-b7ad6b7169203331-01", TRACEPARENT.replace("b7ad", "B7AD")]:  # fmt: skip
        assert stored_parent(message(bad)) is None, bad
    kept = stored_parent(message(TRACEPARENT, "vendor=ok"))
    assert kept is not None
    assert kept.tracestate == "vendor=ok"
    assert TraceState.from_header([kept.tracestate]).to_header() == "vendor=ok"
    for bad_state in ["Vendor=x", "a=" + "x" * 600, "a=b,,", "a=\u00e9", "a=b=c", "a=1,a=2"]:
        dropped = stored_parent(message(TRACEPARENT, bad_state))
        assert dropped is not None
        assert dropped.tracestate is None, bad_state


def test_no_opentelemetry_import_without_tracing() -> None:
    """Importing the package and enqueueing without OpenTelemetry imports none of it."""
    code = (
        "import sys, outbox_worker; "
        "assert sys.modules['outbox_worker.enqueue'].trace_context() is None; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


async def test_a_producer_role_enqueues_with_a_trace_context(
    login_as: Any, pg: asyncpg.Connection, app_tracer: Tracer
) -> None:
    """outbox_producer may call the overloads with a trace context, from SQL and from Python."""
    producer = await asyncpg.connect(await login_as("outbox_producer"))
    try:
        async with producer.transaction():
            by_sql = await producer.fetchval(
                "SELECT outbox.enqueue($1::jsonb, NULL, $2::jsonb)",
                json.dumps(update("sql")),
                json.dumps({"traceparent": TRACEPARENT}),
            )
            with app_tracer.start_as_current_span("signup"):
                by_python = await outbox_worker.enqueue_async(producer, update("python"))
    finally:
        await producer.close()
    assert (await stored_context(pg, by_sql)) == {"traceparent": TRACEPARENT}
    assert (await stored_context(pg, by_python)) is not None


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_psycopg_connections_store_the_current_span(
    database_url: str, app_tracer: Tracer, driver: str
) -> None:
    """psycopg 3 and psycopg2 connections store the span's context, as the other drivers do."""
    import psycopg2

    connect = psycopg.connect if driver == "psycopg" else psycopg2.connect
    conn: Any = connect(database_url)
    try:
        with app_tracer.start_as_current_span("signup") as span:
            message_id = outbox_worker.enqueue(conn, update(driver))
        conn.commit()
        cursor = conn.cursor()
        cursor.execute(
            "SELECT trace_context ->> 'traceparent' FROM outbox.messages WHERE id = %s",
            [message_id],
        )
        assert cursor.fetchone() == (traceparent_of(span),)
    finally:
        conn.close()


async def test_console_exporter_prints_the_attempts(capsys: pytest.CaptureFixture[str]) -> None:
    """OTEL_TRACES_EXPORTER=console: the worker's spans, as JSON on stdout, at close at the latest."""
    from outbox_worker.integrations.otel.spans import start_tracing
    from outbox_worker.models import LeaseToken, Message, MessageId, Settlement, State

    tracing = start_tracing(("console",), server_address="api.ravelin.com")
    message = Message(MessageId(7), b"{}", 0, timedelta(0), LeaseToken(uuid.uuid4()),
                      traceparent=TRACEPARENT)  # fmt: skip
    attempt = tracing.claim_started().claimed([message]).attempt(message)
    attempt.settled(Settlement(message.id, message.lease_token, State.ACKNOWLEDGED, True, None,
                               200, None, 0.01))  # fmt: skip
    attempt.end()
    await tracing.close(10)
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "deliver outbox"
    assert printed["context"]["trace_id"] == "0x" + TRACEPARENT.split("-")[1]
    assert printed["attributes"]["outbox.outcome"] == "acknowledged"
    assert printed["resource"]["attributes"]["service.name"] == "outbox-worker"


async def test_a_429_slow_down_and_the_wait_it_causes_are_events(
    database_url: str,
    standin: StandIn,
    pg: asyncpg.Connection,
    worker_tracing: LeanTracing,
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A 429 with Retry-After: 3 marks its attempt (outbox.slowed_down); the next send's attempt
    shows the wait (outbox.paced)."""
    exporter = exported[1]
    standin.set_retry_after("3", statuses=[429])  # long enough to enqueue the second within it
    standin.script_for("first", [429])
    async with pg.transaction():
        await outbox_worker.enqueue_async(pg, update("first"))
    async with running_worker(database_url, standin.url, tracing=worker_tracing):
        await wait_for(lambda: attempt_spans(exporter))
        async with pg.transaction():
            await outbox_worker.enqueue_async(pg, update("second"))
        await wait_for(lambda: len(attempt_spans(exporter)) == 2)
    first, second = attempt_spans(exporter)
    slowed = [e for e in first.events if e.name == "outbox.slowed_down"]
    assert [e.attributes and e.attributes["outbox.pause_s"] for e in slowed] == [3.0]
    paced = [e for e in second.events if e.name == "outbox.paced"]
    assert len(paced) == 1
    assert paced[0].attributes is not None
    assert float(str(paced[0].attributes["outbox.waited_s"])) > 0
