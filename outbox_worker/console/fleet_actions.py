"""Pause and resume the whole fleet from the console (admins only), through fleet's operations.

As every action: the first request shows what it would stop (or start) and asks to confirm; the
second changes it, audited in the same transaction, and drops the cached overview so the banner
shows at once.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from outbox_worker.console.actions import actor_of, confirmed, done, plural
from outbox_worker.console.guard import require_admin
from outbox_worker.console.pages.confirm import confirm_page
from outbox_worker.console.state import OVERVIEW, POOL, signed_in_page
from outbox_worker.errors import InvalidRequest
from outbox_worker.models import WorkerState
from outbox_worker.store import fleet
from outbox_worker.store import operations as ops
from outbox_worker.store.connection import pooled

log = structlog.get_logger("outbox_worker.console")
routes = web.RouteTableDef()

# Workers that would notice a pause: registered and not known to be gone or stopped.
_RUNNING = frozenset(set(WorkerState) - {WorkerState.GONE, WorkerState.STOPPED})


@routes.post("/fleet/pause")
async def pause(request: web.Request) -> web.Response:
    """Pause every worker's sends (with a reason), after a confirmation naming who it stops."""
    visitor = require_admin(request)
    form = await request.post()
    reason = form.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise web.HTTPBadRequest(text="give a reason for the pause\n")
    async with pooled(request.app[POOL]) as conn:
        if confirmed(form):
            try:
                await fleet.pause(conn, reason, actor_of(visitor))
            except InvalidRequest as exc:
                raise web.HTTPBadRequest(text=f"{exc}\n") from None
            request.app[OVERVIEW].invalidate()
            log.info("console.paused", user=visitor.operator.name)
            raise done(request, visitor.csrf, "Delivery paused for the whole fleet.", "/")
        summary = await fleet.fleet_summary(conn)
        pending = (await ops.stats(conn)).pending
    running = sum(n for state, n in summary.workers.items() if state in _RUNNING)
    body = confirm_page(
        question=f"Pause delivery on {plural(running, 'worker')}?",
        details=f"{pending:,} pending messages wait until someone resumes; sends in flight "
        "finish, enqueue goes on, and workers that start later stay paused too.",
        action="/fleet/pause",
        fields={"reason": reason},
        button="Pause delivery",
        back="/",
        csrf=visitor.csrf,
    )
    return await signed_in_page(request, "Pause delivery", body, current="/")


@routes.post("/fleet/resume")
async def resume(request: web.Request) -> web.Response:
    """Resume every worker's sends, after a confirmation saying how many messages wait."""
    visitor = require_admin(request)
    form = await request.post()
    async with pooled(request.app[POOL]) as conn:
        if confirmed(form):
            await fleet.resume(conn, actor_of(visitor))
            request.app[OVERVIEW].invalidate()
            log.info("console.resumed", user=visitor.operator.name)
            raise done(request, visitor.csrf, "Delivery resumed.", "/")
        pending = (await ops.stats(conn)).pending
    body = confirm_page(
        question=f"Resume delivery of {plural(pending)}?",
        details="Every worker starts sending again within a second.",
        action="/fleet/resume",
        fields={},
        button="Resume delivery",
        back="/",
        csrf=visitor.csrf,
    )
    return await signed_in_page(request, "Resume delivery", body, current="/")
