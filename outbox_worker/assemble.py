"""The composition root of delivery: settings -> store, sender -> Worker, built in one place.

`outbox-worker run`, `outbox-worker demo` and the tests all build their worker here, so they
cannot drift apart (a store without the LISTEN URL, a session without the HTTP timeout). Only
`run` adds what a daemon needs around it: signals, health endpoints, waiting for the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from outbox_worker.delivery.liveness import ClaimProgress
from outbox_worker.delivery.sender import http_sender
from outbox_worker.delivery.tracing import NO_TRACING, Tracing
from outbox_worker.delivery.worker import Worker
from outbox_worker.errors import ConfigError
from outbox_worker.observability import Metrics
from outbox_worker.settings.config import Settings
from outbox_worker.store.delivery import PostgresStore


@dataclass(frozen=True, slots=True)
class Parts:
    """What a worker is built from, made before anything connects (health can report on them)."""

    settings: Settings
    store: PostgresStore  # not open yet: the caller decides how to wait for the database
    metrics: Metrics
    progress: ClaimProgress
    tracing: Tracing = NO_TRACING  # closed (buffered spans exported) when the worker is done


def parts(settings: Settings, *, tracing: Tracing | None = None) -> Parts:
    """The store (not yet open), metrics, claim progress and tracer for ``settings`` (or the
    ``tracing`` given); ConfigError at once when OTEL_* asks for traces and OpenTelemetry is not
    installed."""
    store = PostgresStore(
        settings.database_url,
        history_cap=settings.history_cap,
        timeout_s=settings.database_timeout.total_seconds(),
        listen_url=settings.listen_database_url,
    )
    chosen = tracing_for(settings) if tracing is None else tracing
    return Parts(settings, store, Metrics(), ClaimProgress(), chosen)


@asynccontextmanager
async def worker_on(built: Parts) -> AsyncIterator[Worker]:
    """The worker on ``built.store`` (already open) and an HTTP session for the block; the
    session and the store are closed after it."""
    settings = built.settings
    try:
        timeout_s = settings.http_timeout.total_seconds()
        async with http_sender(
            settings.endpoint_url,
            settings.api_key,
            concurrency=settings.concurrency,
            timeout_s=timeout_s,
        ) as sender:
            yield Worker(
                settings.worker,
                built.store,
                sender,
                metrics=built.metrics,
                progress=built.progress,
                tracing=built.tracing,
            )
    finally:
        await built.store.close()
        await built.tracing.close(settings.shutdown_grace.total_seconds())


def tracing_for(settings: Settings) -> Tracing:
    """The worker's tracer, chosen once: OpenTelemetry when OTEL_* asks for traces (the SDK
    imported only then), else the no-op."""
    if not settings.traces:
        return NO_TRACING
    try:
        from outbox_worker.integrations.otel.spans import start_tracing
    except ImportError:
        raise ConfigError(
            "OTEL_* asks for traces but OpenTelemetry is not installed: "
            "pip install 'outbox-worker[otel]', or unset OTEL_EXPORTER_OTLP_ENDPOINT "
            "and OTEL_TRACES_EXPORTER"
        ) from None
    host = urlsplit(settings.endpoint_url).hostname or ""
    return start_tracing(settings.traces, server_address=host)


@asynccontextmanager
async def opened_worker(
    settings: Settings, *, tracing: Tracing | None = None
) -> AsyncIterator[Worker]:
    """Build the worker from ``settings`` with its store opened now (no waiting for the
    database: for the demo and tests, whose database is known to be up)."""
    built = parts(settings, tracing=tracing)
    await built.store.open()
    async with worker_on(built) as worker:
        yield worker
