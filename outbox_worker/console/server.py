"""Build the console's aiohttp application and serve it until stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Final

import asyncpg
import structlog
from aiohttp import web

from outbox_worker.console import actions, fleet_actions, routes
from outbox_worker.console.guard import ACCESS, Access, add_headers, check_host, identify
from outbox_worker.console.overview import OverviewSource
from outbox_worker.console.sessions import Sessions, SignInLimiter, SsoSightings
from outbox_worker.console.settings import ConsoleSettings
from outbox_worker.console.state import DATABASE_URL, OVERVIEW, POOL
from outbox_worker.console.tokens import TokenBook
from outbox_worker.errors import DatabaseUnavailable, MessageNotFound, OutboxError
from outbox_worker.migrate import SCHEMA_HEAD
from outbox_worker.store import audit
from outbox_worker.store.audit import Actor
from outbox_worker.store.connection import (
    ensure_schema_ready,
    operator_pool,
    pooled,
    translate_errors,
)

log = structlog.get_logger("outbox_worker.console")

STATIC: Final = resources.files("outbox_worker.console") / "static"


@web.middleware
async def translate(
    request: web.Request, handler: Callable[[web.Request], object]
) -> web.StreamResponse:
    """Database errors become a short page (503 or 404), never a traceback."""
    url = request.app[DATABASE_URL]
    try:
        with translate_errors(url):
            response = await handler(request)  # type: ignore[misc]
            assert isinstance(response, web.StreamResponse)
            return response
    except MessageNotFound:
        raise web.HTTPNotFound(text="no such message\n") from None
    except DatabaseUnavailable as exc:
        log.warning("console.database_unreachable", error=type(exc).__name__)
        raise web.HTTPServiceUnavailable(text="the database is unavailable; try again\n") from None
    except OutboxError as exc:
        log.warning("console.statement_failed", error=type(exc).__name__)
        raise web.HTTPInternalServerError(text="the database refused the request\n") from None


@web.middleware
async def audit_sso_sign_in(
    request: web.Request, handler: Callable[[web.Request], object]
) -> web.StreamResponse:
    """An SSO user's first request (and the first after a session's lifetime) is audited as a
    sign-in, in the audit trail like a token sign-in; the request goes on either way."""
    visitor = request.get("visitor")
    sightings = request.app[ACCESS].sso_seen
    if (
        visitor is not None
        and visitor.operator.via == "sso"
        and sightings.signing_in(visitor.operator.name)
    ):
        async with pooled(request.app[POOL]) as conn:
            actor = Actor.console(visitor.operator.name)
            await audit.record(conn, audit.AuditAction.SIGN_IN, actor)
        log.info("console.signed_in", user=visitor.operator.name, via="sso")
    response = await handler(request)  # type: ignore[misc]
    assert isinstance(response, web.StreamResponse)
    return response


def make_app(
    settings: ConsoleSettings,
    book: TokenBook | None,
    pool: asyncpg.Pool,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The console application over ``pool``, signing in with ``book`` and/or SSO."""
    app = web.Application(
        middlewares=[check_host, identify, translate, audit_sso_sign_in], client_max_size=256_000
    )
    app[ACCESS] = Access(
        settings=settings,
        book=book,
        sessions=Sessions(settings.session_ttl.total_seconds(), clock),
        limiter=SignInLimiter(clock),
        sso_seen=SsoSightings(settings.session_ttl.total_seconds(), clock),
    )
    app[POOL] = pool
    app[DATABASE_URL] = settings.database_url
    app[OVERVIEW] = OverviewSource.of(pool, clock)
    app.add_routes(routes.routes)
    app.add_routes(actions.routes)
    app.add_routes(fleet_actions.routes)
    app.router.add_static("/static", str(STATIC))
    app.on_response_prepare.append(add_headers)
    return app


@asynccontextmanager
async def console_running(
    settings: ConsoleSettings, book: TokenBook | None
) -> AsyncIterator[tuple[web.Application, int]]:
    """The console listening (its schema checked first); yields the app and the bound port."""
    async with operator_pool(
        settings.database_url, application_name="outbox-worker console"
    ) as pool:
        async with pooled(pool) as conn:
            with translate_errors(settings.database_url):
                await ensure_schema_ready(conn, SCHEMA_HEAD)
        app = make_app(settings, book, pool)
        await app[OVERVIEW].get()  # loaded before the first visitor, who then never waits
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port)
            await site.start()
            port = _bound_port(site, settings.port)
            log.info("console.started", host=settings.host, port=port)
            yield app, port
        finally:
            await runner.cleanup()


def _bound_port(site: web.TCPSite, asked: int) -> int:
    server = site._server  # aiohttp keeps the asyncio server here; port 0 asks for any
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else asked


async def serve_forever(
    settings: ConsoleSettings, book: TokenBook | None, announce: Callable[[int], None]
) -> None:
    """Serve until cancelled (Ctrl-C or SIGTERM), calling ``announce`` with the port once up."""
    async with console_running(settings, book) as (_app, port):
        announce(port)
        await asyncio.Event().wait()
