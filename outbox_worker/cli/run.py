"""`outbox-worker run`: the delivery worker daemon, wired from settings and run until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import click
import structlog

from outbox_worker import assemble
from outbox_worker import migrate as migrations
from outbox_worker.cli import database_option
from outbox_worker.delivery import health
from outbox_worker.delivery.liveness import ClaimProgress
from outbox_worker.delivery.writer import Backoff
from outbox_worker.errors import (
    DatabaseUnavailable,
    LoginRefused,
    OutboxError,
    SchemaNotReady,
    StatementRejected,
)
from outbox_worker.observability import Metrics, configure_logging
from outbox_worker.settings.config import Settings
from outbox_worker.settings.environment import read_settings
from outbox_worker.store.connection import (
    connected,
    ensure_schema_ready,
    ensure_writable,
    translate_errors,
)
from outbox_worker.store.delivery import PostgresStore

log = structlog.get_logger("outbox_worker.cli")
T = TypeVar("T")


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on uvloop where it is installed, plain asyncio elsewhere; its result."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


_RUN_FLAGS: list[tuple[str, str]] = [
    ("--endpoint-url", "URL of Ravelin's registration endpoint [env: OUTBOX_ENDPOINT_URL]"),
    ("--api-key-file", "file holding the secret API key [env: OUTBOX_API_KEY_FILE]"),
    ("--concurrency", "sends in flight at once in this process [env: OUTBOX_CONCURRENCY]"),
    ("--batch-size", "rows claimed per statement [env: OUTBOX_BATCH_SIZE]"),
    ("--http-timeout", "time allowed for one POST, e.g. 10s [env: OUTBOX_HTTP_TIMEOUT]"),
    ("--lease", "how long a claim lasts; > HTTP timeout + 5s [env: OUTBOX_LEASE]"),
    ("--poll-interval", "look for work at least this often [env: OUTBOX_POLL_INTERVAL]"),
    ("--shutdown-grace", "time to finish sends on SIGTERM [env: OUTBOX_SHUTDOWN_GRACE]"),
    ("--max-attempts", "attempts before dead-lettering [env: OUTBOX_MAX_ATTEMPTS]"),
    ("--max-age", "age before dead-lettering, e.g. 24h [env: OUTBOX_MAX_AGE]"),
    ("--backoff-base", "first retry delay ceiling [env: OUTBOX_BACKOFF_BASE]"),
    ("--backoff-cap", "longest retry delay [env: OUTBOX_BACKOFF_CAP]"),
    ("--rate-limit", "max sends per second, all workers together [env: OUTBOX_RATE_LIMIT]"),
    ("--metrics-port", "serve /metrics, /healthz, /readyz here [env: OUTBOX_METRICS_PORT]"),
]


def _run_options(func: Callable[..., None]) -> Callable[..., None]:
    for flag, help_text in reversed(_RUN_FLAGS):
        func = click.option(flag, default=None, help=help_text)(func)
    return func


@click.command("run")
@database_option
@_run_options
@click.option(
    "--poll-only",
    is_flag=True,
    default=None,
    help="Never LISTEN (for poolers that cannot) [env: OUTBOX_POLL_ONLY].",
)
@click.option(
    "--retry-on-429",
    is_flag=True,
    default=None,
    help="Resend on 429 instead of acknowledging [env: OUTBOX_RETRY_ON_429].",
)
@click.option(
    "--allow-insecure-http",
    is_flag=True,
    default=None,
    help="Allow plain http:// to a non-loopback host [env: OUTBOX_ALLOW_INSECURE_HTTP].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-json/--log-console",
    default=None,
    help="Log format (default: JSON unless stderr is a terminal).",
)
def run_command(log_level: str, log_json: bool | None, **flags: Any) -> None:
    """Run the delivery worker until SIGTERM/SIGINT (run several for scale).

    The API key comes from OUTBOX_API_KEY or OUTBOX_API_KEY_FILE, never from a flag, so it
    stays out of process listings and shell history.

    \b
    Example:
      export OUTBOX_DATABASE_URL=postgresql://app@db/app
      export OUTBOX_API_KEY_FILE=/run/secrets/ravelin_key
      outbox-worker run --concurrency 32
    """
    overrides = {key: value for key, value in flags.items() if value is not None}
    settings = read_settings(None, overrides)
    configure_logging(level=log_level, json=log_json)
    try:
        run_async(lambda: serve_worker(settings))
    except OutboxError:
        raise
    except Exception as exc:
        # A bug, not a message's fault: one structured line (the exception's text may quote
        # data, so only its type), the traceback at debug level, exit 1.
        log.error("worker.crashed", error=type(exc).__name__)
        log.debug("worker.crashed", exc_info=True)
        raise SystemExit(1) from None


async def serve_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Build the store, sender and worker from settings and run until stopped."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    built = assemble.parts(settings)
    # Up before the database: a worker waiting for it is alive (/healthz) but not ready (/readyz).
    async with _serving_health(settings, built.metrics, built.progress):
        timeout_s = settings.database_timeout.total_seconds()
        if not await _open_when_ready(built.store, settings.database_url, stop, timeout_s):
            return  # stopped before the database came up
        async with assemble.worker_on(built) as worker:
            await worker.run(stop)


@contextlib.asynccontextmanager
async def _serving_health(
    settings: Settings, metrics: Metrics, progress: ClaimProgress
) -> AsyncIterator[None]:
    """Serve /healthz, /readyz and /metrics on OUTBOX_METRICS_PORT (if set) for the block."""
    if not settings.metrics_port:
        yield
        return
    app = health.health_app(
        progress,
        metrics.registry,
        lambda: schema_problem(settings.database_url, settings.database_timeout.total_seconds()),
        liveness_timeout_s=settings.liveness_timeout.total_seconds(),
    )
    async with health.serving(app, settings.metrics_port):
        yield


async def schema_problem(url: str, timeout_s: float | None = None) -> str | None:
    """None when the database answers, takes writes and has a schema this version runs on (at
    its head, or newer and declaring it compatible), else why not (for /readyz)."""
    try:
        async with connected(
            url, application_name="outbox-worker-readyz", timeout_s=timeout_s
        ) as conn:
            with translate_errors(url):
                # Quiet: the worker said so at start, and /readyz is asked every few seconds.
                await ensure_schema_ready(conn, migrations.SCHEMA_HEAD, announce=False)
            await ensure_writable(conn, url)  # a standby or a demoted primary: not ready
    except (DatabaseUnavailable, SchemaNotReady, StatementRejected) as exc:
        return str(exc)
    return None


async def _open_when_ready(
    store: PostgresStore, url: str, stop: asyncio.Event, timeout_s: float
) -> bool:
    """Wait for the database (a worker started during an outage waits, it does not exit), check
    the schema, open the store; False if stopped first. A refused login or a missing database or
    schema is a configuration error (exit 2), not an outage."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            async with connected(url, timeout_s=timeout_s) as conn:
                with translate_errors(url):  # a statement past its deadline: unavailable
                    await ensure_schema_ready(conn, migrations.SCHEMA_HEAD)
                await ensure_writable(conn, url)  # a standby: one line, then wait for a primary
            await store.open()
        except LoginRefused:
            raise
        except DatabaseUnavailable as exc:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next("start", exc))
            continue
        backoff.reset()
        return True
    return False


def register(group: click.Group) -> None:
    """Add `run` to the CLI group."""
    group.add_command(run_command)
