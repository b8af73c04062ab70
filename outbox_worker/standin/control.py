"""The stand-in's control API: set faults, read what arrived, reset (for tests and benchmarks
that run the stand-in in another process). No auth: the stand-in binds loopback only unless
told otherwise."""

from __future__ import annotations

import json

from aiohttp import web

from outbox_worker.standin.answers import error
from outbox_worker.standin.knobs import Controllable


def control_routes(standin: Controllable) -> list[web.RouteDef]:
    """``POST /_standin/faults``, ``GET /_standin/received`` and ``POST /_standin/reset``."""

    async def set_faults(request: web.Request) -> web.Response:
        try:
            standin.apply(_json_object(await request.read()))
        except (TypeError, ValueError) as exc:
            return error(400, f"faults not set: {exc}", [])
        return web.json_response({"status": 200})

    async def received(request: web.Request) -> web.Response:
        by_status = {str(status): n for status, n in sorted(standin.counts().items())}
        answer: dict[str, object] = {"total": standin.count, "by_status": by_status}
        if request.query.get("bodies") in {"1", "true", "yes"}:
            answer["bodies"] = [body.decode("utf-8", "replace") for body in standin.bodies()]
        return web.json_response(answer)

    async def reset(request: web.Request) -> web.Response:
        standin.reset()
        return web.json_response({"status": 200})

    return [
        web.post("/_standin/faults", set_faults),
        web.get("/_standin/received", received),
        web.post("/_standin/reset", reset),
    ]


def _json_object(body: bytes) -> dict[str, object]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise TypeError(f"the body must be a JSON object, not {value!r}")
    return value
