"""The stand-in server: ``StandIn`` answers ``POST /v2/registration`` on a loopback port and
records every request; faults are set through its methods or its control API."""

from __future__ import annotations

import asyncio
import copy
import random
import socket
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

from aiohttp import web

from outbox_worker.errors import ConfigError
from outbox_worker.settings.config import is_loopback
from outbox_worker.standin.answers import (
    INJECTED_MESSAGE,
    PATH,
    BodyVariant,
    checked_answer,
    error,
    message_key,
    method_not_allowed,
    min_latency,
    not_found,
    parse_body,
)
from outbox_worker.standin.control import control_routes
from outbox_worker.standin.faults import (
    Faults,
    Latency,
    apply_faults,
    as_latency,
    as_seconds,
    steps,
)
from outbox_worker.standin.steps import DROP, Reply, Step, reply

DEFAULT_API_KEY: Final = "sk_test_standin"
MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024


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
            raise ConfigError(
                f"stand-in host {host!r} is not loopback; pass allow_remote=True (--allow-remote)"
            )
        self.host, self.port = host, port
        self._rng = random.Random(seed)  # latency draws
        self.received: list[Received] = []
        self._by_status: Counter[int] = Counter()
        self._in_progress = 0
        # The latency it was started with: reset() goes back to it (benchmarks reset per round).
        self._base_latency = as_latency(latency)
        self._faults = Faults(latency=self._base_latency)
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
        app.router.add_route("*", PATH, method_not_allowed)
        app.add_routes(control_routes(self))
        app.router.add_route("*", "/{tail:.*}", not_found)
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
        self._faults.script = steps(statuses)

    def script_for(self, key: str, statuses: Iterable[Step]) -> None:
        """Answer the next requests for the message ``key`` with these steps, in order."""
        self._faults.scripts[key] = steps(statuses)

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
        self._faults.latency = as_latency(seconds)
        if seed is not None:
            self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the latency draws from ``seed``."""
        self._rng.seed(seed)

    def set_slow_seconds(self, seconds: float) -> None:
        """How long a ``slow`` step waits before answering 200."""
        self._faults.slow_seconds = as_seconds("slow_seconds", seconds)

    def set_body(self, variant: BodyVariant | str) -> None:
        """Choose the body of a 200."""
        self._faults.body = BodyVariant(variant)

    def reset(self) -> None:
        """Clear scripts, faults and records; the API key and the starting latency stay."""
        self._faults = Faults(latency=self._base_latency)
        self.received.clear()
        self._by_status.clear()

    def apply(self, faults: Mapping[str, object]) -> None:
        """Set faults from a control-API object (keys in the package docstring); all or nothing."""
        saved = copy.deepcopy(self._faults), self._auth
        try:
            apply_faults(self, faults)
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
        delay = max(self._latency(), min_latency(request))
        if delay > 0:
            await asyncio.sleep(delay)  # simulated server latency
        update = parse_body(body)
        key = message_key(update)
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
            checked = checked_answer(request, update, self._auth, self._faults.body)
            if checked.status != 200 or step.body is None:
                return checked  # a failed check answers instead of the step
        if step.body is None:
            response = error(step.status, INJECTED_MESSAGE.get(step.status))
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
