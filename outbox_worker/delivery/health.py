"""The worker's HTTP face on OUTBOX_METRICS_PORT: /healthz, /readyz and /metrics.

Served by aiohttp on the worker's own event loop, not a thread: if the loop is wedged, nothing
answers, and the orchestrator's liveness probe fails as it should.

- ``/healthz`` (liveness): 200 unless work is due and the claim loop is more than
  OUTBOX_LIVENESS_TIMEOUT past the time it said it would report again (liveness.py); 503 then,
  so the orchestrator restarts the process.
- ``/readyz`` (readiness): 200 when the database answers and the outbox schema is at this
  version's head; 503 with the reason otherwise.
- ``/metrics``: the worker's Prometheus registry in the text exposition format.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from outbox_worker.delivery.liveness import ClaimProgress
from outbox_worker.errors import ConfigError

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else one line saying why not (never a secret)."""

HEALTHZ: Final = "/healthz"
READYZ: Final = "/readyz"
METRICS: Final = "/metrics"
PATHS: Final = (HEALTHZ, READYZ, METRICS)
# A readiness check that does not finish in this time is an answer in itself: not ready.
READY_TIMEOUT_S: Final = 5.0


def health_app(
    progress: ClaimProgress,
    registry: CollectorRegistry,
    ready: ReadinessCheck,
    *,
    liveness_timeout_s: float,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> web.Application:
    """The aiohttp application answering the three paths."""

    async def healthz(_request: web.Request) -> web.Response:
        if progress.stalled(liveness_timeout_s):
            late = round(progress.late_by(), 1)
            return web.Response(status=503, text=f"claim loop stalled: {late}s late, work due\n")
        return web.Response(text="ok\n")

    async def readyz(_request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(ready_timeout_s):
                problem = await ready()
        except TimeoutError:
            problem = f"readiness check took over {ready_timeout_s:g}s"
        if problem is not None:
            return web.Response(status=503, text=f"not ready: {problem}\n")
        return web.Response(text="ready\n")

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get(HEALTHZ, healthz)
    app.router.add_get(READYZ, readyz)
    app.router.add_get(METRICS, metrics)
    return app


@asynccontextmanager
async def serving(app: web.Application, port: int, host: str = "0.0.0.0") -> AsyncIterator[int]:  # noqa: S104 (scraped and probed from outside)
    """Serve ``app`` on ``port`` (0 picks a free one) for the block; yields the bound port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:  # in use, or not ours to bind: the setting is at fault
            problem = f"OUTBOX_METRICS_PORT {port} cannot be served: {exc.strerror}"
            raise ConfigError(problem) from exc
        bound: int = runner.addresses[0][1]
        yield bound
    finally:
        await runner.cleanup()
