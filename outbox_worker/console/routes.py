"""The pages that read: overview, dead letters, one message, sign-in and sign-out, /healthz."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog
from aiohttp import web

from outbox_worker.console.filters import PAGE_SIZE, parse_dead_query
from outbox_worker.console.guard import ACCESS, SESSION_COOKIE, SIGN_IN_COOKIE, is_tls, visitor_of
from outbox_worker.console.html import Frame, page
from outbox_worker.console.masking import shown_detail
from outbox_worker.console.pages.audit import audit_page
from outbox_worker.console.pages.dead import dead_page
from outbox_worker.console.pages.detail import detail_page
from outbox_worker.console.pages.overview import overview_page
from outbox_worker.console.pages.signin import signin_page
from outbox_worker.console.state import OVERVIEW, POOL, html_response, signed_in_page
from outbox_worker.store import audit
from outbox_worker.store import operations as ops
from outbox_worker.store.audit import Actor
from outbox_worker.store.connection import pooled

log = structlog.get_logger("outbox_worker.console")
AUDIT_WINDOW: Final = timedelta(days=7)
AUDIT_WINDOWS: Final = {"24h": timedelta(days=1), "7d": AUDIT_WINDOW, "30d": timedelta(days=30),
                        "90d": timedelta(days=90), "400d": timedelta(days=400)}  # fmt: skip
AUDIT_ROWS: Final = 500
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """For the orchestrator's probes: the process serves."""
    return web.Response(text="ok\n")


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    """Counts, charts, reasons; refreshes itself while visible."""
    visitor = visitor_of(request)
    data = await request.app[OVERVIEW].get()
    body = overview_page(data, admin=visitor.operator.is_admin, csrf=visitor.csrf)
    refresh = request.app[ACCESS].settings.refresh_s
    return await signed_in_page(request, "Overview", body, current="/", refresh_s=refresh)


@routes.get("/dead")
async def dead_letters(request: web.Request) -> web.Response:
    """One page of dead letters matching the filters."""
    visitor = visitor_of(request)
    query = parse_dead_query(request.query)
    async with pooled(request.app[POOL]) as conn:
        rows = await ops.page_dead(conn, query.filters, query.after, PAGE_SIZE)
    body = dead_page(
        query, rows, datetime.now(UTC), admin=visitor.operator.is_admin, csrf=visitor.csrf
    )
    status = 400 if query.problems else 200
    return await signed_in_page(request, "Dead letters", body, current="/dead", status=status)


def _message_id(request: web.Request) -> int:
    text = request.match_info["message_id"]
    if not text.isdigit() or len(text) > 18:
        raise web.HTTPNotFound(text="no such message\n")
    return int(text)


async def show_message(request: web.Request, *, reveal: bool) -> web.Response:
    """The detail page, masked unless ``reveal`` (the caller checked the role and audited)."""
    visitor = visitor_of(request)
    message_id = _message_id(request)
    async with pooled(request.app[POOL]) as conn:
        message = await ops.get_message(conn, message_id)
    settings = request.app[ACCESS].settings
    body = detail_page(
        message,
        shown_detail(message, reveal=reveal),
        revealed=reveal,
        admin=visitor.operator.is_admin,
        can_reveal=settings.show_pii and visitor.operator.is_admin,
        csrf=visitor.csrf,
    )
    return await signed_in_page(request, f"Message {message_id}", body, current="/dead")


@routes.get("/messages/{message_id}")
async def message(request: web.Request) -> web.Response:
    """One message, personal data masked."""
    return await show_message(request, reveal=False)


def _signin_form(request: web.Request, problem: str | None, status: int) -> web.Response:
    access = request.app[ACCESS]
    token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)
    body = signin_page(token, problem, sso=bool(access.settings.trusted_proxies))
    response = html_response(page("Sign in", body, Frame()), status)
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=3600,
        path="/signin",
        httponly=True,
        samesite="Strict",
        secure=is_tls(request, access),
    )
    return response


@routes.get("/signin")
async def signin_form(request: web.Request) -> web.Response:
    """The token form (straight to the overview when already signed in)."""
    if request.get("visitor") is not None:
        raise web.HTTPSeeOther("/")
    return _signin_form(request, None, 200)


@routes.post("/signin")
async def signin(request: web.Request) -> web.Response:
    """Check a token (rate limited per address); open a session with an expiring cookie."""
    access = request.app[ACCESS]
    wait = access.limiter.wait_s(request.remote or "?")
    if wait > 0:
        log.warning("console.sign_in_limited", retry_after_s=round(wait))
        response = _signin_form(request, "Too many sign-in attempts; wait a minute.", 429)
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    token = (await request.post()).get("token")
    operator = None
    if isinstance(token, str) and access.book is not None and len(token) < 200:
        operator = await asyncio.to_thread(access.book.verify, token)
    if operator is None:
        log.warning("console.sign_in_refused")
        return _signin_form(request, "That token is not valid.", 401)
    async with pooled(request.app[POOL]) as conn:
        await audit.record(conn, audit.AuditAction.SIGN_IN, Actor.console(operator.name))
    session = access.sessions.open(operator)
    log.info("console.signed_in", user=operator.name, role=str(operator.role))
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        max_age=int(access.settings.session_ttl.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=is_tls(request, access),
    )
    response.del_cookie(SIGN_IN_COOKIE, path="/signin")
    raise response


@routes.post("/signout")
async def signout(request: web.Request) -> web.Response:
    """End the session and forget the cookie."""
    visitor = visitor_of(request)
    request.app[ACCESS].sessions.close(visitor.session_id)
    async with pooled(request.app[POOL]) as conn:
        await audit.record(conn, audit.AuditAction.SIGN_OUT, Actor.console(visitor.operator.name))
    log.info("console.signed_out", user=visitor.operator.name)
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@routes.get("/audit")
async def audit_trail(request: web.Request) -> web.Response:
    """The audit trail of the chosen window (a week unless asked), newest first."""
    chosen = request.query.get("since", "")
    window = AUDIT_WINDOWS.get(chosen, AUDIT_WINDOW)
    async with pooled(request.app[POOL]) as conn:
        entries = await audit.audit_log(conn, since=window, limit=AUDIT_ROWS)
    body = audit_page(entries, chosen if chosen in AUDIT_WINDOWS else "7d")
    return await signed_in_page(request, "Audit trail", body, current="/audit")
