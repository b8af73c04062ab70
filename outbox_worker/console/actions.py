"""The pages that act on messages (admins only): requeue, purge, reveal (fleet_actions: pause).

Each action is asked for twice: the first request shows the exact number of rows it would
change and a confirm button; only the second (``confirmed=yes``) changes anything, through the
same store operations as the CLI commands, and leaves a notice for the next page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web

from outbox_worker.console.filters import FILTER_FIELDS, parse_dead_query, parse_ids
from outbox_worker.console.guard import ACCESS, Visitor, require_admin
from outbox_worker.console.pages.confirm import confirm_page
from outbox_worker.console.routes import show_message
from outbox_worker.console.state import POOL, signed_in_page
from outbox_worker.errors import ConfigError
from outbox_worker.models import State
from outbox_worker.settings.parsing import parse_duration
from outbox_worker.store import audit
from outbox_worker.store import operations as ops
from outbox_worker.store.audit import Actor
from outbox_worker.store.connection import pooled

log = structlog.get_logger("outbox_worker.console")
routes = web.RouteTableDef()


def actor_of(visitor: Visitor) -> Actor:
    """Who acts, for the audit trail: the signed-in user, through the console."""
    return Actor.console(visitor.operator.name)


def confirmed(form: Mapping[str, Any]) -> bool:
    """Whether this is the second, confirming request of an action."""
    return form.get("confirmed") == "yes"


def done(request: web.Request, csrf: str, text: str, to: str) -> web.HTTPSeeOther:
    """Redirect (to raise) to ``to``, where ``text`` shows once as a notice."""
    request.app[ACCESS].notices.leave(csrf, text)
    return web.HTTPSeeOther(to)


def plural(count: int, noun: str = "message") -> str:
    """'1 message', '2,000 messages'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


@routes.post("/dead/requeue")
async def requeue_selected(request: web.Request) -> web.Response:
    """Requeue the ticked dead letters, after confirming how many are still dead."""
    visitor = require_admin(request)
    form = await request.post()
    try:
        ids = parse_ids([v for v in form.getall("id", []) if isinstance(v, str)])
    except ValueError:
        raise web.HTTPBadRequest(text="not message ids\n") from None
    if not ids:
        raise done(request, visitor.csrf, "Nothing was selected.", "/dead")
    async with pooled(request.app[POOL]) as conn:
        if confirmed(form):
            result = await ops.requeue_ids(conn, ids, actor=actor_of(visitor))
            log.info("console.requeued", user=visitor.operator.name, count=result.requeued)
            raise done(request, visitor.csrf, f"Requeued {plural(result.requeued)}.", "/dead")
        states = await ops.message_states(conn, ids)
    dead = [i for i in ids if states[i] is State.DEAD]
    body = confirm_page(
        question=f"Requeue {plural(len(dead))}?",
        details=f"Selected: {', '.join(map(str, ids))}. "
        f"{len(ids) - len(dead)} of them are no longer dead and stay as they are.",
        action="/dead/requeue",
        fields=[("id", str(i)) for i in dead],
        button=f"Requeue {plural(len(dead))}",
        back="/dead",
        csrf=visitor.csrf,
        nothing=not dead,
    )
    return await signed_in_page(request, "Requeue selected", body, current="/dead")


@routes.get("/dead/requeue-matching")
async def requeue_matching_form(request: web.Request) -> web.Response:
    """How many dead letters match the filters, and the button that requeues them all."""
    visitor = require_admin(request)
    query = parse_dead_query(request.query)
    if query.problems:
        raise web.HTTPBadRequest(text="; ".join(query.problems) + "\n")
    async with pooled(request.app[POOL]) as conn:
        count = await ops.count_dead(conn, query.filters)
    body = confirm_page(
        question=f"Requeue {plural(count)}?" if count else "No dead letter matches these filters.",
        details=f"Every dead letter matching: {query.described}. They go back to pending with "
        "their attempts reset, and running workers send them at once.",
        action="/dead/requeue-matching",
        fields={name: query.text[name] for name in FILTER_FIELDS if query.text[name]},
        button=f"Requeue {plural(count)}",
        back="/dead" + query.link(),
        csrf=visitor.csrf,
        nothing=count == 0,
    )
    return await signed_in_page(request, "Requeue matching", body, current="/dead")


@routes.post("/dead/requeue-matching")
async def requeue_matching(request: web.Request) -> web.Response:
    """Requeue every dead letter matching the confirmed filters."""
    visitor = require_admin(request)
    form = await request.post()
    query = parse_dead_query({k: v for k, v in form.items() if isinstance(v, str)})
    if query.problems or not confirmed(form):
        raise web.HTTPBadRequest(text="confirm the requeue from its page\n")
    async with pooled(request.app[POOL]) as conn:
        moved = await ops.requeue_dead(conn, query.filters, actor=actor_of(visitor))
    log.info("console.requeued", user=visitor.operator.name, count=moved, filters=query.described)
    raise done(request, visitor.csrf, f"Requeued {plural(moved)}.", "/dead" + query.link())


def _purge_args(values: dict[str, str]) -> tuple[timedelta, bool]:
    try:
        older = parse_duration(values.get("older_than", ""), name="Older than")
    except ConfigError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    return older, values.get("include_dead") == "1"


@routes.get("/purge")
async def purge_form(request: web.Request) -> web.Response:
    """How many finished rows a purge would delete, and the button that deletes them."""
    visitor = require_admin(request)
    older, include_dead = _purge_args(dict(request.query))
    async with pooled(request.app[POOL]) as conn:
        counts = await ops.count_purgeable(conn, older, include_dead=include_dead)
    total = counts.total
    fields = {"older_than": request.query.get("older_than", "")}
    if include_dead:
        fields["include_dead"] = "1"
    dead_part = f" and {counts.dead:,} dead letters" if include_dead else ""
    body = confirm_page(
        question=f"Delete {plural(total)}?" if total else "Nothing is that old.",
        details=f"{counts.acknowledged:,} acknowledged{dead_part}, finished more than "
        f"{fields['older_than']} ago. This cannot be undone.",
        action="/purge",
        fields=fields,
        button=f"Delete {plural(total)}",
        back="/",
        csrf=visitor.csrf,
        nothing=total == 0,
    )
    return await signed_in_page(request, "Purge", body, current="/")


@routes.post("/purge")
async def purge(request: web.Request) -> web.Response:
    """Delete what the confirmed purge counted (rows finished since then too, if as old)."""
    visitor = require_admin(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    older, include_dead = _purge_args(form)
    if not confirmed(form):
        raise web.HTTPBadRequest(text="confirm the purge from its page\n")
    async with pooled(request.app[POOL]) as conn:
        counts = await ops.purge(conn, older, include_dead=include_dead, actor=actor_of(visitor))
    total = counts.total
    log.info("console.purged", user=visitor.operator.name, count=total)
    raise done(request, visitor.csrf, f"Deleted {plural(total)}.", "/")


@routes.post("/messages/{message_id}/reveal")
async def reveal(request: web.Request) -> web.Response:
    """One message unmasked, for an admin of a console started with --show-pii; audited."""
    visitor = require_admin(request)
    if not request.app[ACCESS].settings.show_pii:
        raise web.HTTPForbidden(text="start the console with --show-pii to allow this\n")
    message_id = request.match_info["message_id"]
    if not message_id.isdigit() or len(message_id) > 18:
        raise web.HTTPNotFound(text="no such message\n")
    async with pooled(request.app[POOL]) as conn:
        await ops.get_message(conn, int(message_id))  # 404 before auditing a message that is not
        await audit.record(
            conn,
            audit.AuditAction.REVEAL,
            actor_of(visitor),
            details={"message_id": int(message_id)},
            row_count=1,
        )
    log.info("console.revealed", user=visitor.operator.name, message_id=int(message_id))
    return await show_message(request, reveal=True)
