"""The HTTP edge: POST stored bytes to the registration endpoint over one keep-alive session.

aiohttp and asyncio errors become ours here, in ``_failure_reason``, and nowhere else. A transport
failure comes back as an ``Answer`` with ``status=None`` so the policy sees every result the
same way.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aiohttp
import yarl
from multidict import CIMultiDict

from outbox_worker.delivery.answers import parse_http_date, parse_retry_after
from outbox_worker.models import Answer
from outbox_worker.settings.config import Secret
from outbox_worker.version import __version__

USER_AGENT = f"outbox-worker/{__version__} (+registration updates)"
# Enough of an error body to keep Ravelin's message, traceId and validationErrors.
MAX_BODY = 64 * 1024


class HttpSender:
    """Sends one message body at a time; many may be in flight on the shared session.

    Made by ``http_sender``, whose session carries the request headers: a session's own headers
    are copied into each request in one step, where headers given per request are merged one by
    one (about 1.5% of a delivery's instructions).
    """

    def __init__(self, session: aiohttp.ClientSession, endpoint_url: str) -> None:
        self._session = session
        self._url = endpoint_url

    async def send(self, body: bytes) -> Answer:
        """POST ``body`` unchanged; return the answer, or a status-less Answer on failure."""
        started = time.monotonic()
        try:
            # Never follow a redirect: a 307/308 would re-POST the body, personal data included,
            # to another origin, and a 301/302/303 would turn the update into a lost GET.
            async with self._session.post(self._url, data=body, allow_redirects=False) as resp:
                content = await _read_capped(resp.content)
                status = resp.status
                # The policy reads no header of a 2xx: the common answer skips their lookups.
                headers = resp.headers if status >= 300 else None
        except _FAILURES as exc:
            return Answer(status=None, latency_s=_since(started), error=_failure_reason(exc))
        if headers is None:
            return Answer(status, _since(started), content)
        return Answer(
            status=status,
            latency_s=_since(started),
            body=content,
            retry_after=_retry_after(headers.get("Retry-After"), headers.get("Date")),
            redirect_host=_location_host(headers.get("Location")) if 300 <= status < 400 else None,
        )


async def _read_capped(stream: aiohttp.StreamReader) -> bytes:
    """The body up to MAX_BODY bytes, however many pieces it arrives in; the rest is never read.

    Once the status line and headers are in, the endpoint has decided: a body cut short (the
    connection dropped, or the timeout struck, mid-body) keeps what arrived rather than turning
    the answer into a transport failure that would resend an update the endpoint already took.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        first = await stream.read(MAX_BODY)
        if stream.at_eof():  # the usual small answer, whole in one piece: no second read
            return first
        chunks.append(first)
        size = len(first)
        while size < MAX_BODY and (chunk := await stream.read(MAX_BODY - size)):
            chunks.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientPayloadError, TimeoutError):
        pass
    return b"".join(chunks)


def _retry_after(value: str | None, date: str | None) -> timedelta | None:
    """A Retry-After as a delay; an HTTP-date counts from the answer's own Date (its clock)."""
    if not value:
        return None
    return parse_retry_after(value, parse_http_date(date) or datetime.now(UTC))


def _location_host(location: str | None) -> str | None:
    """The host a redirect points at, for the log line; the rest of the URL is not kept."""
    if not location:
        return None
    try:
        host = yarl.URL(location).host
    except (ValueError, TypeError):
        return "an unparseable Location"
    return _printable(host)[:100] if host else "a relative Location"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


# What a POST can fail with short of an HTTP answer; anything else is a bug and propagates.
_FAILURES = (TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError)


def _failure_reason(exc: Exception) -> str:
    """One line saying why an aiohttp/asyncio failure left the POST without an answer."""
    if isinstance(exc, TimeoutError):
        return "timeout: no answer in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection dropped before an answer"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate rejected: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.strerror or exc.os_error}"
    return f"connection failed: {type(exc).__name__}: {exc}"[:300]


def _since(started: float) -> float:
    return time.monotonic() - started


def request_headers(api_key: Secret) -> CIMultiDict[str]:
    """The headers every POST carries (the key among them: never log them)."""
    return CIMultiDict(
        {
            "Authorization": f"token {api_key.reveal()}",
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            # Uncompressed answers (they are tiny). Said in a header of our own rather than with
            # skip_auto_headers, which costs aiohttp about 5 µs a request.
            "Accept-Encoding": "identity",
        }
    )


@asynccontextmanager
async def http_sender(
    endpoint_url: str, api_key: Secret, *, concurrency: int, timeout_s: float
) -> AsyncIterator[HttpSender]:
    """A sender on one keep-alive session for the process; TLS verification stays on."""
    # One endpoint host: ``limit`` alone bounds its connections, and a per-host limit as well
    # would only add bookkeeping to every request.
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60, ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers=request_headers(api_key),
        raise_for_status=False,
        auto_decompress=True,
    ) as session:
        yield HttpSender(session, endpoint_url)


# A body Ravelin refuses for its shape: an accepted key answers 400, a wrong key 401/403 first.
PROBE_BODY = b"{}"


async def probe(endpoint_url: str, api_key: Secret, *, timeout_s: float = 10.0) -> Answer:
    """Check reachability and key acceptance without sending a registration (used by `check`)."""
    async with http_sender(endpoint_url, api_key, concurrency=1, timeout_s=timeout_s) as sender:
        return await sender.send(PROBE_BODY)
