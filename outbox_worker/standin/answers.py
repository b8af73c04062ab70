"""What the stand-in answers, in Ravelin's shapes: the body-shape checks and the error bodies.

Pure functions of a request's parts, no state: the server (``server.py``) decides which answer
a request gets, this module writes it.
"""

from __future__ import annotations

import json
import time
import uuid
from enum import StrEnum
from http import HTTPStatus
from typing import Final

from aiohttp import web

PATH: Final = "/v2/registration"
BAD_KEY_MESSAGE: Final = (
    "Invalid Request: API Key Incorrect. Please check your credentials and try again"
)
# What ``parse_body`` returns for a body that is not JSON text: no update shape matches it.
_NOT_JSON: Final = object()
# Where a message's key is, in order of preference.
_KEY_FIELDS: Final = (
    ("customer", "customerId"),
    ("supplier", "supplierId"),
    ("registration", "username"),
)
# Injected answers read like Ravelin's, so demo summaries and dead lists say something useful.
INJECTED_MESSAGE: Final = {
    400: "Invalid Request: registration rejected (injected by the stand-in)",
    401: BAD_KEY_MESSAGE,
    403: BAD_KEY_MESSAGE,
    413: "Request Entity Too Large",
    422: "Unprocessable Entity: registration rejected (injected by the stand-in)",
}
_INJECTED_400: Final = [{"field": "registration", "message": "rejected by a stand-in script"}]


class BodyVariant(StrEnum):
    """The body of a 200; Ravelin has been seen to send each of them."""

    NORMAL = "normal"  # {"status":200,"timestamp":<ms>}
    EMPTY = "empty"  # no body at all
    NULL = "null"  # the JSON literal null (the Ruby gem works around it)
    EXTRA = "extra"  # the normal body plus "unknownField", as Ravelin's sandbox injects


def parse_body(body: bytes) -> object:
    """The request body as JSON, or a sentinel no update shape matches."""
    try:
        return json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return _NOT_JSON


def message_key(update: object) -> str | None:
    """customer.customerId, else supplier.supplierId, else registration.username, as text."""
    if not isinstance(update, dict):
        return None
    for part, name in _KEY_FIELDS:
        inner = update.get(part)
        value = inner.get(name) if isinstance(inner, dict) else None
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return None


def checked_answer(
    request: web.Request, update: object, auth: str, body: BodyVariant
) -> web.Response:
    """Ravelin's answer to ``update`` after its checks: query, key, content type, shape."""
    if "score" in request.query:
        return error(400, "score is not expected on updates", [_problem("score", "remove")])
    if request.headers.get("Authorization") != auth:
        return error(401, BAD_KEY_MESSAGE)
    if request.content_type != "application/json":
        ctype = _problem("Content-Type", "must be application/json")
        return error(400, "Content-Type must be application/json", [ctype])
    problems = shape_problems(update)
    if problems:
        return error(400, "Invalid registration update: " + problems[0]["message"], problems)
    if body is BodyVariant.EMPTY:
        return web.Response()
    if body is BodyVariant.NULL:
        return web.Response(body=b"null", content_type="application/json")
    answer: dict[str, object] = {"status": 200, "timestamp": time.time_ns() // 1_000_000}
    if body is BodyVariant.EXTRA:
        answer["unknownField"] = "x"
    return web.json_response(answer)


def shape_problems(update: object) -> list[dict[str, str]]:
    """What Ravelin's validation would name: a JSON object with an integer ``timestamp`` and a
    ``registration`` object with a boolean ``success``; empty when the shape is right."""
    if not isinstance(update, dict):
        return [_problem("", "the body must be a JSON object")]
    problems = []
    timestamp = update.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        problems.append(_problem("timestamp", "timestamp must be an integer (milliseconds)"))
    registration = update.get("registration")
    if not isinstance(registration, dict):
        problems.append(_problem("registration", "registration must be an object"))
    elif not isinstance(registration.get("success"), bool):
        problems.append(_problem("registration.success", "registration.success must be a boolean"))
    return problems


def _problem(field_name: str, message: str) -> dict[str, str]:
    return {"field": field_name, "message": message}


def error(
    status: int, message: str | None = None, validation: list[dict[str, str]] | None = None
) -> web.Response:
    """A Ravelin-shaped error: status, message, traceId, and validationErrors on a 400."""
    answer: dict[str, object] = {
        "status": status,
        "message": message or (BAD_KEY_MESSAGE if status == 401 else _phrase(status)),
        "traceId": str(uuid.uuid4()),
    }
    if status == 400:
        answer["validationErrors"] = _INJECTED_400 if validation is None else validation
    return web.json_response(answer, status=status)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def min_latency(request: web.Request) -> float:
    """Seconds asked for by ``Ravelin-Min-Latency: <ms>`` (as Ravelin's sandbox honours), or 0."""
    header = request.headers.get("Ravelin-Min-Latency")
    return int(header) / 1000 if header is not None and header.isdigit() else 0.0


async def method_not_allowed(request: web.Request) -> web.Response:
    """405 for anything but POST on the registration path."""
    response = error(405, f"Method Not Allowed: {PATH} takes POST")
    response.headers["Allow"] = "POST"
    return response


async def not_found(request: web.Request) -> web.Response:
    """404 for any other path."""
    return error(404, f"Not Found: {request.path}")
