"""A local stand-in for Ravelin's ``POST /v2/registration``, for tests, ``demo`` and benchmarks.

A real aiohttp server on a loopback port. ``POST /v2/registration`` answers in this order:

1. Wait ``latency`` seconds (a fixed delay, or one drawn uniformly from a ``[low, high]`` range
   per request, as a remote API answers), or the request's ``Ravelin-Min-Latency: <ms>``, as
   Ravelin's sandbox does, whichever is longer.
2. Take the injected status: the message's own script first, then the global script, then
   ``default_status``. ``drop`` (or 0) closes the connection without an answer; another status
   but 200 is answered with a Ravelin-shaped error body; 200 goes on to the checks below.
3. A ``score`` query parameter: 400, updates never ask for a recommendation.
4. ``Authorization`` other than exactly ``token <api_key>``: 401.
5. ``Content-Type`` other than ``application/json``: 400. Ravelin documents 406 only for
   ``Accept``; a body of the wrong type is the message's fault, so 400, which dead-letters it.
6. Not a JSON object with an integer ``timestamp`` and a ``registration`` object with a boolean
   ``success``: 400 with ``validationErrors``.
7. Otherwise 200 with the configured body variant.

A message's key (for per-message scripts) is ``customer.customerId``, else
``supplier.supplierId``, else ``registration.username``, as a string. Error bodies carry
``status``, ``message`` and ``traceId``, plus ``validationErrors`` on 400. Every request is
recorded as a ``Received`` with the status it was answered (0 when dropped).

Control API, no auth (the server binds loopback only unless ``allow_remote=True``):

``POST /_standin/faults``, a JSON object; only the given keys change, all or nothing:
    ``api_key``         str, the key ``Authorization`` must carry
    ``default_status``  int or "drop", the answer once the scripts are used up (200: healthy)
    ``script``          [int or "drop", ...], replaces the global script
    ``scripts``         {message key: [int or "drop", ...]}, sets those messages' scripts
    ``retry_after``     {"<status>": str or null}, the ``Retry-After`` sent with that status
    ``latency``         float, or [low, high]: seconds added to every request (uniform in range)
    ``body``            "normal" | "empty" | "null" | "extra", the body of a 200
``GET /_standin/received[?bodies=1]``: ``{"total": n, "by_status": {"200": n, ...}}``, plus
    ``"bodies"`` (the request bodies as text, in arrival order) with ``bodies=1``.
``POST /_standin/reset``: clears scripts, faults and records; the API key and the latency the
    stand-in was started with stay.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import signal
import socket
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self, TypeAlias, TypeVar

from aiohttp import web

from outbox_worker.config import is_loopback
from outbox_worker.errors import ConfigError

PATH: Final = "/v2/registration"
DEFAULT_API_KEY: Final = "sk_test_standin"
DROP: Final = 0
"""Script status that closes the connection without answering."""

Step: TypeAlias = int | Literal["drop"]
BAD_KEY_MESSAGE: Final = (
    "Invalid Request: API Key Incorrect. Please check your credentials and try again"
)
_NOT_JSON: Final = object()
# Where a message's key is, in order of preference.
_KEY_FIELDS: Final = (
    ("customer", "customerId"),
    ("supplier", "supplierId"),
    ("registration", "username"),
)
_T = TypeVar("_T")
# Injected answers read like Ravelin's, so demo summaries and dead lists say something useful.
_INJECTED_MESSAGE: Final = {
    400: "Invalid Request: registration rejected (injected by the stand-in)",
    401: BAD_KEY_MESSAGE,
    403: "Invalid Request: API Key Incorrect. Please check your credentials and try again",
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


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived (``at`` is time.monotonic) and the status answered."""

    body: bytes
    headers: dict[str, str]
    at: float
    status: int


@dataclass(slots=True)
class _Faults:
    default_status: int = 200
    script: deque[int] = field(default_factory=deque)
    scripts: dict[str, deque[int]] = field(default_factory=dict)
    retry_after: dict[int, str] = field(default_factory=dict)
    latency: tuple[float, float] = (0.0, 0.0)  # low, high: each answer waits uniform(low, high)
    body: BodyVariant = BodyVariant.NORMAL


class StandIn:
    """Ravelin's registration endpoint on a loopback port, with faults settable at run time."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        latency: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ConfigError(f"stand-in host {host!r} is not loopback; pass allow_remote=True")
        self.host, self.port = host, port
        self.received: list[Received] = []
        self._by_status: Counter[int] = Counter()
        self._in_progress = 0
        self._faults = _Faults()
        self.set_latency(*latency)
        self._start_latency = self._faults.latency  # what reset() goes back to
        self._auth = f"token {api_key}"
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the port (``port=0`` picks a free one) and start answering."""
        app = web.Application()
        app.router.add_post(PATH, self._receive_update)
        app.router.add_route("*", PATH, _method_not_allowed)
        app.router.add_post("/_standin/faults", self._control_faults)
        app.router.add_get("/_standin/received", self._control_received)
        app.router.add_post("/_standin/reset", self._control_reset)
        app.router.add_route("*", "/{tail:.*}", _not_found)
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        # No access log: one line per request would dominate a 4,000 req/s benchmark.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        """Close the port and every open connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """``http://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The registration endpoint's URL."""
        return self.base_url + PATH

    @property
    def count(self) -> int:
        """How many registration requests arrived."""
        return len(self.received)

    @property
    def in_progress(self) -> int:
        """Requests received and not answered yet (in flight from the sender's side)."""
        return self._in_progress

    def bodies(self, status: int | None = None) -> list[bytes]:
        """The request bodies in arrival order, optionally only those answered ``status``."""
        return [r.body for r in self.received if status is None or r.status == status]

    def counts(self) -> dict[int, int]:
        """How many requests were answered with each status (0: dropped)."""
        return dict(self._by_status)

    def set_api_key(self, api_key: str) -> None:
        """Accept ``Authorization: token <api_key>`` from now on."""
        self._auth = f"token {api_key}"

    def set_default_status(self, status: Step) -> None:
        """Answer ``status`` once the scripts are used up (200: healthy)."""
        self._faults.default_status = _step(status)

    def set_script(self, statuses: Iterable[Step]) -> None:
        """Answer the next requests with these statuses, one each, in order."""
        self._faults.script = _steps(statuses)

    def script_for(self, key: str, statuses: Iterable[Step]) -> None:
        """Answer the next requests for the message ``key`` with these statuses, in order."""
        self._faults.scripts[key] = _steps(statuses)

    def set_retry_after(self, value: str | None, *, statuses: Iterable[int] = (429, 503)) -> None:
        """Send ``Retry-After: value`` with these statuses (None: stop sending it)."""
        for status in statuses:
            if value is None:
                self._faults.retry_after.pop(status, None)
            else:
                self._faults.retry_after[_step(status)] = value

    def set_latency(self, seconds: float, high: float | None = None) -> None:
        """Delay every answer by ``seconds``, or by a uniform draw in [``seconds``, ``high``]."""
        for value in (seconds, seconds if high is None else high):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"latency must be a number of seconds >= 0, not {value!r}")
        low = float(seconds)
        top = low if high is None else float(high)
        if top < low:
            raise ValueError(f"latency range [{low}, {top}] must not end below its start")
        self._faults.latency = (low, top)

    def set_body(self, variant: BodyVariant | str) -> None:
        """Choose the body of a 200."""
        self._faults.body = BodyVariant(variant)

    def reset(self) -> None:
        """Clear scripts, faults and records; the API key and the start-up latency stay."""
        self._faults = _Faults(latency=self._start_latency)
        self.received.clear()
        self._by_status.clear()

    def apply(self, faults: Mapping[str, object]) -> None:
        """Set faults from a control-API object (keys in the module docstring); all or nothing."""
        unknown = sorted(set(faults) - _SETTERS.keys())
        if unknown:
            raise ValueError(f"unknown fault keys {unknown}; known: {sorted(_SETTERS)}")
        saved = copy.deepcopy(self._faults), self._auth
        try:
            for name, value in faults.items():
                _SETTERS[name](self, value)
        except (TypeError, ValueError):
            self._faults, self._auth = saved
            raise

    async def _receive_update(self, request: web.Request) -> web.StreamResponse:
        self._in_progress += 1
        try:
            return await self._answer(request)
        finally:
            self._in_progress -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        body = await request.read()
        low, high = self._faults.latency
        delay = max(low if high == low else random.uniform(low, high), _min_latency(request))
        if delay > 0:
            await asyncio.sleep(delay)  # simulated server latency
        update = _parse(body)
        status = self._injected_status(update)
        if status == DROP:
            self._record(Received(body, dict(request.headers), at, DROP))
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # aiohttp cannot write it to the closed transport, and moves on
        response = (
            self._answer_update(request, update)
            if status == 200
            else _error(status, _INJECTED_MESSAGE.get(status))
        )
        retry_after = self._faults.retry_after.get(response.status)
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        self._record(Received(body, dict(request.headers), at, response.status))
        return response

    def _record(self, received: Received) -> None:
        self.received.append(received)
        self._by_status[received.status] += 1

    def _injected_status(self, update: object) -> int:
        faults = self._faults
        if faults.scripts:
            own = faults.scripts.get(_message_key(update) or "")
            if own:
                return own.popleft()
        if faults.script:
            return faults.script.popleft()
        return faults.default_status

    def _answer_update(self, request: web.Request, update: object) -> web.Response:
        if "score" in request.query:
            return _error(400, "score is not expected on updates", [_problem("score", "remove")])
        if request.headers.get("Authorization") != self._auth:
            return _error(401, BAD_KEY_MESSAGE)
        if request.content_type != "application/json":
            ctype = _problem("Content-Type", "must be application/json")
            return _error(400, "Content-Type must be application/json", [ctype])
        problems = _shape_problems(update)
        if problems:
            return _error(400, "Invalid registration update: " + problems[0]["message"], problems)
        if self._faults.body is BodyVariant.EMPTY:
            return web.Response()
        if self._faults.body is BodyVariant.NULL:
            return web.Response(body=b"null", content_type="application/json")
        answer: dict[str, object] = {"status": 200, "timestamp": time.time_ns() // 1_000_000}
        if self._faults.body is BodyVariant.EXTRA:
            answer["unknownField"] = "x"
        return web.json_response(answer)

    async def _control_faults(self, request: web.Request) -> web.Response:
        try:
            self.apply(_json_object(await request.read()))
        except (TypeError, ValueError) as exc:
            return _error(400, f"faults not set: {exc}", [])
        return web.json_response({"status": 200})

    async def _control_received(self, request: web.Request) -> web.Response:
        by_status = {str(status): n for status, n in sorted(self._by_status.items())}
        answer: dict[str, object] = {"total": self.count, "by_status": by_status}
        if request.query.get("bodies") in {"1", "true", "yes"}:
            answer["bodies"] = [r.body.decode("utf-8", "replace") for r in self.received]
        return web.json_response(answer)

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"status": 200})


def _json_object(body: bytes) -> dict[str, object]:
    value = json.loads(body)
    if not isinstance(value, dict):
        raise TypeError(f"the body must be a JSON object, not {value!r}")
    return value


def _set_retry_after(standin: StandIn, value: object) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"retry_after must map statuses to header values, not {value!r}")
    for status, header in value.items():
        if header is not None and not isinstance(header, str):
            raise TypeError(f"retry_after values must be strings or null, not {header!r}")
        standin.set_retry_after(header, statuses=[int(status)])


def _set_scripts(standin: StandIn, value: object) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"scripts must map message keys to status lists, not {value!r}")
    for key, steps in value.items():
        standin.script_for(str(key), _steps(steps))


def _require(kind: type[_T] | tuple[type[_T], ...], name: str, value: object) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name} has the wrong type: {value!r}")
    return value


_SETTERS: Final[dict[str, Callable[[StandIn, object], None]]] = {
    "api_key": lambda s, v: s.set_api_key(_require(str, "api_key", v)),
    "default_status": lambda s, v: s.set_default_status(_step(v)),
    "script": lambda s, v: s.set_script(_steps(_require(list, "script", v))),
    "scripts": _set_scripts,
    "retry_after": _set_retry_after,
    "latency": lambda s, v: _set_latency(s, v),
    "body": lambda s, v: s.set_body(_require(str, "body", v)),
}


def _set_latency(standin: StandIn, value: object) -> None:
    if isinstance(value, list) and len(value) == 2:
        standin.set_latency(*value)
    else:
        standin.set_latency(_require((int, float), "latency", value))


def _step(value: object) -> int:
    if value == "drop" or value == DROP:
        return DROP
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        raise ValueError(f'a scripted status is an HTTP status or "drop", not {value!r}')
    return value


def _steps(values: object) -> deque[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"a script is a list of statuses, not {values!r}")
    return deque(_step(value) for value in values)


def _parse(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return _NOT_JSON


def _message_key(update: object) -> str | None:
    if not isinstance(update, dict):
        return None
    for part, name in _KEY_FIELDS:
        inner = update.get(part)
        value = inner.get(name) if isinstance(inner, dict) else None
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return None


def _shape_problems(update: object) -> list[dict[str, str]]:
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


def _error(
    status: int, message: str | None = None, validation: list[dict[str, str]] | None = None
) -> web.Response:
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


def _min_latency(request: web.Request) -> float:
    header = request.headers.get("Ravelin-Min-Latency")
    return int(header) / 1000 if header is not None and header.isdigit() else 0.0


async def _method_not_allowed(request: web.Request) -> web.Response:
    response = _error(405, f"Method Not Allowed: {PATH} takes POST")
    response.headers["Allow"] = "POST"
    return response


async def _not_found(request: web.Request) -> web.Response:
    return _error(404, f"Not Found: {request.path}")


def serve(
    host: str,
    port: int,
    api_key: str,
    *,
    ready_file: str | None = None,
    allow_remote: bool = False,
    latency: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Run a stand-in until SIGTERM or SIGINT; print its URL (and write ready_file) when ready."""
    standin = StandIn(api_key, host=host, port=port, allow_remote=allow_remote, latency=latency)
    running = _serve(standin, ready_file)
    try:
        import uvloop
    except ImportError:  # not built for this platform: plain asyncio is fine
        asyncio.run(running)
    else:
        uvloop.run(running)


async def _serve(standin: StandIn, ready_file: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with standin:
        _announce(standin.url, ready_file)
        await stop.wait()


def _announce(url: str, ready_file: str | None) -> None:
    if ready_file is not None:
        # Write then rename, so whoever watches the file never reads half a URL.
        partial = Path(ready_file + ".partial")
        partial.write_text(url + "\n")
        partial.replace(ready_file)
    print(f"standin listening on {url}", flush=True)


def _latency_range(text: str) -> tuple[float, float]:
    """``--latency``: "0.05" (fixed) or "0.03-0.12" (uniform in the range), in seconds."""
    low, _, high = text.partition("-")
    try:
        bounds = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not seconds or LOW-HIGH seconds: {text!r}") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"need 0 <= LOW <= HIGH: {text!r}")
    return bounds


def main(argv: list[str] | None = None) -> None:
    """``python -m outbox_worker.standin``: run a stand-in in this process."""
    parser = argparse.ArgumentParser(prog="python -m outbox_worker.standin", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--ready-file", help="write the URL here once listening")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host")
    parser.add_argument(
        "--latency",
        type=_latency_range,
        default=(0.0, 0.0),
        metavar="S|LOW-HIGH",
        help="seconds each answer waits: fixed (0.05) or uniform in a range (0.03-0.12)",
    )
    args = parser.parse_args(argv)
    try:
        serve(
            args.host,
            args.port,
            args.api_key,
            ready_file=args.ready_file,
            allow_remote=args.allow_remote,
            latency=args.latency,
        )
    except (ConfigError, OSError) as exc:
        print(f"standin: {exc}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None


if __name__ == "__main__":
    main()
