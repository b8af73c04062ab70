"""A Worker in the test's own event loop, built as `outbox-worker run` builds it (assemble.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from outbox_worker.assemble import opened_worker
from outbox_worker.delivery.tracing import Tracing
from outbox_worker.delivery.worker import Worker
from outbox_worker.settings.config import Secret, Settings
from tests.cases import KEY


@asynccontextmanager
async def running_worker(
    database_url: str, endpoint_url: str, *, tracing: Tracing | None = None, **changes: Any
) -> AsyncIterator[Worker]:
    """Run a Worker against ``database_url`` and ``endpoint_url`` for the block, then stop it.

    Short timings (poll 200 ms, HTTP timeout 2 s, lease 10 s, grace 2 s); ``changes`` override
    any setting; ``tracing`` replaces the tracer OTEL_* would choose. Leaving the block stops the worker and fails the test if it does not stop.
    """
    settings = Settings(
        database_url=database_url,
        api_key=Secret(KEY),
        endpoint_url=endpoint_url,
        poll_interval=timedelta(milliseconds=200),
        http_timeout=timedelta(seconds=2),
        lease=timedelta(seconds=10),
        shutdown_grace=timedelta(seconds=2),
    ).with_changes(**changes)
    stop = asyncio.Event()
    async with opened_worker(settings, tracing=tracing) as worker:
        task = asyncio.create_task(worker.run(stop), name="worker-under-test")
        try:
            yield worker
            assert not task.done(), "the worker stopped before it was told to"
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
