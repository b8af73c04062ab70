"""The console application's shared state (keys on the aiohttp app) and the page frame."""

from __future__ import annotations

from typing import Final

import asyncpg
from aiohttp import web

from outbox_worker.console.guard import ACCESS, visitor_of
from outbox_worker.console.html import Frame, Html, page
from outbox_worker.console.overview import OverviewSource
from outbox_worker.console.pages.fleet import pause_banner

POOL: Final = web.AppKey("pool", asyncpg.Pool)
OVERVIEW: Final = web.AppKey("overview", OverviewSource)
DATABASE_URL: Final = web.AppKey("database_url", str)


def html_response(body: Html, status: int = 200) -> web.Response:
    """An HTML answer (the security headers are added to every answer by guard.add_headers)."""
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


async def frame_for(request: web.Request, current: str) -> Frame:
    """The frame of a signed-in page: who, the pause banner, and a waiting notice."""
    visitor = visitor_of(request)
    notice = request.app[ACCESS].notices.take(visitor.csrf)
    overview = await request.app[OVERVIEW].get()  # cached: the banner costs no query
    return Frame(
        user=visitor.operator.name,
        role=str(visitor.operator.role),
        csrf=visitor.csrf,
        current=current,
        banner=pause_banner(overview.fleet.pause),
        notice=notice,
    )


async def signed_in_page(
    request: web.Request,
    title: str,
    body: Html,
    *,
    current: str = "",
    status: int = 200,
    refresh_s: float | None = None,
) -> web.Response:
    """A whole page for a signed-in visitor."""
    frame = await frame_for(request, current)
    return html_response(page(title, body, frame, refresh_s=refresh_s), status)
