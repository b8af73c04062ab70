"""The HTTP edge against real sockets: how every kind of endpoint answer or failure becomes an Answer.

Each test points the production HttpSender at a tiny aiohttp app (or a raw asyncio server, for
broken connections) on 127.0.0.1, so what is asserted is what the answer policy receives.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from outbox_worker.delivery.sender import MAX_BODY, USER_AGENT, http_sender
from outbox_worker.models import Answer
from outbox_worker.settings.config import Secret
from tests.cases import KEY

BODY = b'{"timestamp":1764000000000,"registration":{"success":true}}'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Endpoint:
    """A one-route aiohttp app on a loopback port; records every request's path and body."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[tuple[str, bytes]] = []
        self._handler = handler
        self.url = ""

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, await request.read()))
        return await self._handler(request)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Endpoint]:
        """Serve on 127.0.0.1 (port 0) for the block; every path goes to the handler."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v2/registration"
        try:
            yield self
        finally:
            await runner.cleanup()


async def send(url: str, body: bytes = BODY, *, timeout_s: float = 5.0) -> Answer:
    """POST ``body`` to ``url`` once with the production sender and session settings."""
    async with http_sender(url, Secret(KEY), concurrency=2, timeout_s=timeout_s) as sender:
        return await sender.send(body)


async def answer_from(handler: Handler, *, timeout_s: float = 5.0) -> tuple[Answer, Endpoint]:
    """The sender's Answer when ``handler`` answers, and the endpoint (for what it received)."""
    endpoint = Endpoint(handler)
    async with endpoint.serving():
        answer = await send(endpoint.url, timeout_s=timeout_s)
    return answer, endpoint


@asynccontextmanager
async def raw_server(
    on_request: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A bare TCP server that reads one request head, then lets ``on_request`` misbehave."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await on_request(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v2/registration"
    finally:
        server.close()
        await server.wait_closed()


# --- answers that arrive ----------------------------------------------------------------------


async def test_the_stored_bytes_go_out_unchanged_with_token_auth() -> None:
    """One POST of the exact bytes, with `token <key>`, JSON content type and our User-Agent."""
    seen: dict[str, str] = {}

    async def ok(request: web.Request) -> web.Response:
        seen.update(request.headers)
        return web.json_response({"status": 200, "timestamp": 1})

    answer, endpoint = await answer_from(ok)
    assert endpoint.requests == [("/v2/registration", BODY)]
    assert seen["Authorization"] == f"token {KEY}"
    assert seen["Content-Type"] == "application/json; charset=utf-8"
    assert seen["User-Agent"] == USER_AGENT
    assert (answer.status, answer.error, answer.redirect_host) == (200, None, None)
    assert answer.body == b'{"status": 200, "timestamp": 1}'
    assert answer.latency_s > 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed(status: int) -> None:
    """A 3xx comes back as itself with the Location's host; the Location is never requested."""
    endpoint: Endpoint

    async def redirect(request: web.Request) -> web.Response:
        if request.path != "/v2/registration":
            return web.json_response({"status": 200, "timestamp": 1})
        location = endpoint.url.replace("/v2/registration", "/moved")
        return web.Response(status=status, headers={"Location": location})

    endpoint = Endpoint(redirect)
    async with endpoint.serving():
        answer = await send(endpoint.url)
    assert answer.status == status
    assert answer.redirect_host == "127.0.0.1"
    assert [path for path, _ in endpoint.requests] == ["/v2/registration"]


@pytest.mark.parametrize(
    ("location", "host"),
    [
        ("/v3/registration", "a relative Location"),
        ("https://elsewhere.invalid/v2/registration?key=secret", "elsewhere.invalid"),
        ("http://[::1", "an unparseable Location"),
    ],
    ids=["relative", "other-origin", "unparseable"],
)
async def test_a_redirect_keeps_only_the_location_host(location: str, host: str) -> None:
    """Only the Location's host is kept for the log line, never its path or query."""

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": location})

    answer, _ = await answer_from(redirect)
    assert (answer.status, answer.redirect_host) == (307, host)


async def test_a_3xx_without_location_has_no_redirect_host() -> None:
    """A 3xx without a Location is still a 3xx; there is simply no host to name."""

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302)

    answer, _ = await answer_from(redirect)
    assert (answer.status, answer.redirect_host) == (302, None)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("7", timedelta(seconds=7)),
        ("0", timedelta(0)),
        ("soon", None),
        ("", None),
        ("Mon, 01 Jan 99999999999 00:00:00 GMT", None),
    ],
    ids=["seconds", "zero", "garbage", "empty", "absurd-date"],
)
async def test_retry_after_in_seconds_or_unusable(
    retry_after: str, expected: timedelta | None
) -> None:
    """Retry-After delta-seconds become a delay; values that cannot be read become None."""

    async def limited(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": retry_after})

    answer, _ = await answer_from(limited)
    assert (answer.status, answer.retry_after) == (429, expected)


async def test_no_retry_after_header_means_no_delay() -> None:
    """An answer without Retry-After carries none."""

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503)

    answer, _ = await answer_from(unavailable)
    assert (answer.status, answer.retry_after) == (503, None)


async def test_a_retry_after_date_counts_from_the_answers_own_date() -> None:
    """An HTTP-date Retry-After is measured against the answer's Date, not the sender's clock."""
    # Years in the past on our clock: only the endpoint's own Date makes it a 90 s delay.
    said_at = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
    headers = {
        "Date": format_datetime(said_at, usegmt=True),
        "Retry-After": format_datetime(said_at + timedelta(seconds=90), usegmt=True),
    }

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, headers=headers)

    answer, _ = await answer_from(unavailable)
    assert (answer.status, answer.retry_after) == (503, timedelta(seconds=90))


async def test_a_retry_after_date_without_a_usable_date_counts_from_now() -> None:
    """With an unreadable Date header the sender's clock is the reference."""
    later = datetime.now(UTC) + timedelta(hours=1)
    headers = {"Date": "not a date", "Retry-After": format_datetime(later, usegmt=True)}

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, headers=headers)

    answer, _ = await answer_from(unavailable)
    assert answer.retry_after is not None
    assert timedelta(minutes=58) < answer.retry_after <= timedelta(hours=1)


async def test_a_huge_body_is_read_only_up_to_the_cap() -> None:
    """A 3 MiB error body yields its first MAX_BODY bytes; the rest is never kept."""
    huge = b'{"message":"' + b"x" * (3 * 1024 * 1024) + b'"}'

    async def flood(request: web.Request) -> web.Response:
        return web.Response(status=400, body=huge, content_type="application/json")

    answer, _ = await answer_from(flood)
    assert answer.status == 400
    assert answer.body == huge[:MAX_BODY]


async def test_a_body_sent_in_pieces_is_read_whole() -> None:
    """An error body under the cap that arrives in several writes is kept complete."""
    pieces = [b'{"message":"bad", ', b'"traceId":"t-1", ', b'"validationErrors":["x"]}']

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=400)
        response.content_type = "application/json"
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            # The shape of the answer, not a wait for a condition: a slow network hands the
            # client each piece on its own, which a single read would cut short.
            await asyncio.sleep(0.05)
        await response.write_eof()
        return response

    answer, _ = await answer_from(trickle)
    assert (answer.status, answer.body) == (400, b"".join(pieces))


async def test_a_non_utf8_body_comes_back_as_the_bytes_sent() -> None:
    """Bytes that are not UTF-8 are passed on unchanged; decoding is the policy's business."""
    garbage = b'\xff\xfe{"message": "caf\xe9"}\x80'

    async def latin(request: web.Request) -> web.Response:
        return web.Response(status=400, body=garbage, content_type="application/json")

    answer, _ = await answer_from(latin)
    assert (answer.status, answer.body, answer.error) == (400, garbage, None)


async def test_a_body_still_arriving_at_the_timeout_keeps_the_status() -> None:
    """A 200 whose body stalls past the timeout is still the endpoint's 200, with what arrived."""
    released = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b'{"status":200,')
        await released.wait()
        return response

    endpoint = Endpoint(stall)
    async with endpoint.serving():
        answer = await send(endpoint.url, timeout_s=0.3)
        released.set()  # so the server's shutdown need not wait out the handler
    assert (answer.status, answer.body, answer.error) == (200, b'{"status":200,', None)


# --- no answer at all -------------------------------------------------------------------------


async def test_no_answer_within_the_timeout_is_a_timeout() -> None:
    """An endpoint that never answers yields status None and a timeout reason after the timeout."""
    released = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response(status=200)

    endpoint = Endpoint(hang)
    async with endpoint.serving():
        answer = await send(endpoint.url, timeout_s=0.3)
        released.set()  # so the server's shutdown need not wait out the handler
    assert (answer.status, answer.error) == (None, "timeout: no answer in time")
    assert 0.3 <= answer.latency_s < 5
    assert len(endpoint.requests) == 1


async def test_a_refused_connection_names_the_address() -> None:
    """Nothing listening: status None and "cannot connect to host:port" with the reason."""
    # A bound socket that never listens keeps the port ours while refusing connections.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        port = blocker.getsockname()[1]
        answer = await send(f"http://127.0.0.1:{port}/v2/registration")
    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith(f"cannot connect to 127.0.0.1:{port}: ")


async def _close_without_answer(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _reset_without_answer(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _half_an_answer(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 500\r\n\r\n" + b'{"message":"par')
    await writer.drain()


async def _close_mid_body(writer: asyncio.StreamWriter) -> None:
    await _half_an_answer(writer)
    writer.close()


async def _reset_mid_body(writer: asyncio.StreamWriter) -> None:
    await _half_an_answer(writer)
    await _reset_without_answer(writer)


@pytest.mark.parametrize(
    ("misbehave", "reason"),
    [
        (_close_without_answer, "connection dropped before an answer"),
        (_reset_without_answer, "connection failed: "),
    ],
    ids=["closed", "reset"],
)
async def test_a_connection_lost_before_the_answer_is_a_transport_failure(
    misbehave: Callable[[asyncio.StreamWriter], Awaitable[None]], reason: str
) -> None:
    """A connection closed or reset before any status line yields status None and why."""
    async with raw_server(misbehave) as url:
        answer = await send(url)
    assert answer.status is None
    assert answer.error is not None
    assert answer.error.startswith(reason), answer.error
    assert len(answer.error) <= 300


@pytest.mark.parametrize("misbehave", [_close_mid_body, _reset_mid_body], ids=["closed", "reset"])
async def test_a_connection_lost_mid_body_keeps_the_status_and_what_arrived(
    misbehave: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> None:
    """Once the status line is in, the endpoint has decided: a body cut short keeps its start."""
    async with raw_server(misbehave) as url:
        answer = await send(url)
    assert (answer.status, answer.body, answer.error) == (400, b'{"message":"par', None)
