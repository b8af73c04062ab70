"""A local stand-in for Ravelin's ``POST /v2/registration``, for tests, ``demo`` and benchmarks.

A real aiohttp server on a loopback port. ``POST /v2/registration`` answers in this order:

1. Wait ``latency`` seconds (fixed, or drawn uniformly from ``[low, high]`` by a seeded
   generator), or the request's ``Ravelin-Min-Latency: <ms>`` as Ravelin's sandbox does,
   whichever is longer.
2. Take the injected step: the message's own script first, then the global script, then
   ``default_status``. A step is an HTTP status or a named fault (the table in
   ``outbox_worker.standin.steps``): ``drop`` (or 0) closes the connection without an answer;
   ``nul200``, ``huge200`` and ``slow`` (200 after ``slow_seconds``) are 200s with a hostile body
   or delay; ``surrogate400`` and ``huge400`` are 400s with a hostile body; ``absurd429`` and
   ``absurd503`` carry a Retry-After in the year 99999999999; ``redirect307`` and
   ``redirect302`` send ``Location: https://elsewhere.invalid/v2/registration``. Another status
   but 200 is answered with a Ravelin-shaped error body; 200 and the 200-class steps go on to
   the checks below (a failed check answers instead of the step).
3. A ``score`` query parameter: 400, updates never ask for a recommendation.
4. ``Authorization`` other than exactly ``token <api_key>``: 401.
5. ``Content-Type`` other than ``application/json``: 400. Ravelin documents 406 only for
   ``Accept``; a body of the wrong type is the message's fault, so 400, which dead-letters it.
6. Not a JSON object with an integer ``timestamp`` and a ``registration`` object with a boolean
   ``success``: 400 with ``validationErrors``.
7. Otherwise 200 with the step's own body, else the configured body variant.

A message's key (for per-message scripts) is ``customer.customerId``, else
``supplier.supplierId``, else ``registration.username``, as a string. Error bodies carry
``status``, ``message`` and ``traceId``, plus ``validationErrors`` on 400. Every request is
recorded as a ``Received`` with its key, the step that answered it and the status it was
answered (0 when dropped), once answered.

A full outage (connection refused) is ``stop()`` then ``start()``: the port stays the same
(``SO_REUSEADDR``), and scripts, faults and records survive the restart.

Control API, no auth (the server binds loopback only unless ``allow_remote=True``):

``POST /_standin/faults``, a JSON object; only the given keys change, all or nothing:
    ``api_key``         str, the key ``Authorization`` must carry
    ``default_status``  a step (int or name), the answer once the scripts are used up (200: healthy)
    ``script``          [step, ...], replaces the global script
    ``scripts``         {message key: [step, ...]}, sets those messages' scripts
    ``retry_after``     {"<status>": str or null}, the ``Retry-After`` sent with that status
                        (a step's own Retry-After wins)
    ``latency``         float, seconds added to every request, or [low, high]: drawn uniformly
    ``seed``            int, reseeds the generator of latency draws
    ``slow_seconds``    float, how long a ``slow`` step waits before answering (default 5)
    ``body``            "normal" | "empty" | "null" | "extra", the body of a 200
``GET /_standin/received[?bodies=1]``: ``{"total": n, "by_status": {"200": n, ...}}``, plus
    ``"bodies"`` (the request bodies as text, in arrival order) with ``bodies=1``.
``POST /_standin/reset``: clears scripts, faults and records; the API key stays.
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
from typing import Final, Self, TypeAlias, TypeVar, cast

from aiohttp import web

from outbox_worker.config import is_loopback
from outbox_worker.errors import ConfigError
from outbox_worker.standin.steps import DEFAULT_SLOW_SECONDS, DROP, Reply, Step, StepName, reply

__all__ = [
    "BAD_KEY_MESSAGE",
    "DEFAULT_API_KEY",
    "DROP",
    "PATH",
    "BodyVariant",
    "Latency",
    "Received",
    "StandIn",
    "Step",
    "StepName",
    "main",
    "serve",
]

PATH: Final = "/v2/registration"
DEFAULT_API_KEY: Final = "sk_test_standin"
MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024
Latency: TypeAlias = float | tuple[float, float]
"""Seconds added to every answer: fixed, or (low, high) drawn uniformly."""
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
    """One request as it arrived (``at`` is time.monotonic) and the status answered.

    ``step`` names the script step that answered ("200", "503", "drop", "nul200", "slow", ...),
    ``key`` is the message key (None when the body has none) and ``answered_at`` the monotonic
    time the answer was ready (for ``slow``, after its delay).
    """

    body: bytes
    headers: dict[str, str]
    at: float
    status: int
    step: str = ""
    key: str | None = None
    answered_at: float = 0.0


_HEALTHY: Final = reply(200)


@dataclass(slots=True)
class _Faults:
    default_status: Reply = _HEALTHY
    script: deque[Reply] = field(default_factory=deque)
    scripts: dict[str, deque[Reply]] = field(default_factory=dict)
    retry_after: dict[int, str] = field(default_factory=dict)
    latency: Latency = 0.0
    slow_seconds: float = DEFAULT_SLOW_SECONDS
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
        seed: int | None = None,
        latency: Latency = 0.0,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ConfigError(f"stand-in host {host!r} is not loopback; pass allow_remote=True")
        self.host, self.port = host, port
        self._rng = random.Random(seed)  # latency draws
        self.received: list[Received] = []
        self._by_status: Counter[int] = Counter()
        self._in_progress = 0
        # The latency it was started with: reset() goes back to it (benchmarks reset per round).
        self._base_latency = _latency(latency)
        self._faults = _Faults(latency=self._base_latency)
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
        """Bind the port (``port=0`` picks a free one) and start answering.

        After ``stop()`` it binds the same port again: a restart after an outage.
        """
        if self._runner is not None:
            raise RuntimeError(f"the stand-in already listens on {self.url}")
        # aiohttp refuses bodies over 1 MiB by itself (413, unrecorded); the stand-in must see,
        # record and answer whatever a worker sends, oversized rows included.
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
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

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._runner is not None

    async def stop(self) -> None:
        """Close the port and every open connection (requests in progress get 1 s to finish)."""
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
        """Answer with step ``status`` once the scripts are used up (200: healthy)."""
        self._faults.default_status = reply(status)

    def set_script(self, statuses: Iterable[Step]) -> None:
        """Answer the next requests with these steps, one each, in order."""
        self._faults.script = _steps(statuses)

    def script_for(self, key: str, statuses: Iterable[Step]) -> None:
        """Answer the next requests for the message ``key`` with these steps, in order."""
        self._faults.scripts[key] = _steps(statuses)

    def set_retry_after(self, value: str | None, *, statuses: Iterable[int] = (429, 503)) -> None:
        """Send ``Retry-After: value`` with these statuses (None: stop sending it)."""
        for status in statuses:
            if value is None:
                self._faults.retry_after.pop(status, None)
            else:
                self._faults.retry_after[reply(status).status] = value

    def set_latency(self, seconds: Latency, *, seed: int | None = None) -> None:
        """Delay every answer by ``seconds``, or by a uniform draw from ``(low, high)``.

        The draws come from a generator seeded by ``seed`` (given here or to the constructor),
        so a run with the same seed and the same request order draws the same latencies.
        """
        self._faults.latency = _latency(seconds)
        if seed is not None:
            self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the latency draws from ``seed``."""
        self._rng.seed(seed)

    def set_slow_seconds(self, seconds: float) -> None:
        """How long a ``slow`` step waits before answering 200."""
        self._faults.slow_seconds = _seconds("slow_seconds", seconds)

    def set_body(self, variant: BodyVariant | str) -> None:
        """Choose the body of a 200."""
        self._faults.body = BodyVariant(variant)

    def reset(self) -> None:
        """Clear scripts, faults and records; the API key and the starting latency stay."""
        self._faults = _Faults(latency=self._base_latency)
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
        delay = max(self._latency(), _min_latency(request))
        if delay > 0:
            await asyncio.sleep(delay)  # simulated server latency
        update = _parse(body)
        key = _message_key(update)
        step = self._injected_step(key)
        if step.slow:
            await asyncio.sleep(self._faults.slow_seconds)  # a fault: longer than the timeout
        headers = dict(request.headers)
        if step.status == DROP:
            self._record(Received(body, headers, at, DROP, step.name, key, time.monotonic()))
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # aiohttp cannot write it to the closed transport, and moves on
        response = self._respond(request, update, step)
        retry_after = self._faults.retry_after.get(response.status)
        if retry_after is not None and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = retry_after
        status = response.status
        self._record(Received(body, headers, at, status, step.name, key, time.monotonic()))
        return response

    def _respond(self, request: web.Request, update: object, step: Reply) -> web.Response:
        if step.checked:
            checked = self._answer_update(request, update)
            if checked.status != 200 or step.body is None:
                return checked  # a failed check answers instead of the step
        if step.body is None:
            response = _error(step.status, _INJECTED_MESSAGE.get(step.status))
        else:
            response = web.Response(
                status=step.status, text=step.body, content_type="application/json"
            )
        for name, value in step.headers:
            response.headers[name] = value
        return response

    def _latency(self) -> float:
        latency = self._faults.latency
        if isinstance(latency, tuple):
            return self._rng.uniform(*latency)
        return latency

    def _record(self, received: Received) -> None:
        self.received.append(received)
        self._by_status[received.status] += 1

    def _injected_step(self, key: str | None) -> Reply:
        faults = self._faults
        if faults.scripts:
            own = faults.scripts.get(key or "")
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
        standin.script_for(str(key), _step_list(steps))


def _require(kind: type[_T] | tuple[type[_T], ...], name: str, value: object) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name} has the wrong type: {value!r}")
    return value


_SETTERS: Final[dict[str, Callable[[StandIn, object], None]]] = {
    "api_key": lambda s, v: s.set_api_key(_require(str, "api_key", v)),
    "default_status": lambda s, v: s.set_default_status(_as_step(v)),
    "script": lambda s, v: s.set_script(_step_list(_require(list, "script", v))),
    "scripts": _set_scripts,
    "retry_after": _set_retry_after,
    "latency": lambda s, v: s.set_latency(_latency_value(v)),
    "seed": lambda s, v: s.reseed(_require(int, "seed", v)),
    "slow_seconds": lambda s, v: s.set_slow_seconds(_require((int, float), "slow_seconds", v)),
    "body": lambda s, v: s.set_body(_require(str, "body", v)),
}


def _as_step(value: object) -> Step:
    reply(value)  # refuses anything that is not a step
    return cast(Step, value)


def _step_list(values: object) -> list[Step]:
    """A script from the control API, each step checked."""
    return [_as_step(value) for value in _iterable(values)]


def _steps(values: object) -> deque[Reply]:
    return deque(reply(value) for value in _iterable(values))


def _iterable(values: object) -> Iterable[object]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"a script is a list of steps, not {values!r}")
    return values


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _latency(value: object) -> Latency:
    """A fixed latency, or a (low, high) range with 0 <= low <= high; ValueError otherwise."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"a latency range is [low, high], not {value!r}")
        low, high = (_seconds("latency", part) for part in value)
        if low > high:
            raise ValueError(f"latency range [{low}, {high}] has low > high")
        return (low, high)
    return _seconds("latency", value)


def parse_latency(text: str) -> Latency:
    """``"0.05"`` (fixed) or ``"0.03-0.12"`` (a uniform range) as a Latency, else ValueError."""
    low, dash, high = text.partition("-")
    try:
        return _latency((float(low), float(high)) if dash else float(low))
    except ValueError:
        raise ValueError(f"--latency takes seconds or LOW-HIGH, not {text!r}") from None


def _latency_value(value: object) -> Latency:
    if isinstance(value, list):
        return _latency(value)
    return _latency(_require((int, float), "latency", value))


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
    latency: Latency = 0.0,
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
        default="0",
        help="answer delay in seconds: fixed (0.05) or a range (0.03-0.12)",
    )
    args = parser.parse_args(argv)
    try:
        serve(
            args.host,
            args.port,
            args.api_key,
            ready_file=args.ready_file,
            allow_remote=args.allow_remote,
            latency=parse_latency(args.latency),
        )
    except (ConfigError, OSError, ValueError) as exc:
        print(f"standin: {exc}", file=sys.stderr)
        raise SystemExit(1 if isinstance(exc, OSError) else 2) from None


if __name__ == "__main__":
    main()
