"""OTLP/HTTP export of spans already encoded: one POST of an ``ExportTraceServiceRequest``.

Configured by the standard OTEL_EXPORTER_OTLP_* variables (otlp_settings reads them). Retries as
the Python SDK's exporter does: 429, 502, 503, 504 and connection failures, exponential backoff
with jitter or the collector's Retry-After, all inside the timeout. Never raises for a failed
export; logs it once per streak of failures, without headers, body or answer. Imports nothing of
OpenTelemetry.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import structlog

from outbox_worker.integrations.otel.otlp_settings import ExportSettings, read_export_settings

log = structlog.get_logger("outbox_worker.tracing")

_MAX_ATTEMPTS: Final = 6  # the SDK's _MAX_RETRIES: POSTs after backoff, not counting reconnects
_JITTER: Final = 0.2
_RETRYABLE: Final = frozenset({429, 502, 503, 504})
# The SDK drops a request past 64 MiB before compression (the OTLP spec's request-size limit).
_MAX_REQUEST_BYTES: Final = 64 * 1024 * 1024
# An answer body we read to keep the connection alive; a longer one costs the connection instead.
_ANSWER_READ_LIMIT: Final = 64 * 1024
# A collector down for hours says so once, then once every this many seconds.
_REPEAT_FAILURE_LOG_S: Final = 300.0


def backoff_s(
    attempt: int, uniform: Callable[[float, float], float], first_s: float = 1.0
) -> float:
    """The SDK's wait after attempt ``attempt`` (0-based): first_s * 2**attempt, +-20% jitter."""
    return first_s * 2.0**attempt * uniform(1 - _JITTER, 1 + _JITTER)


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After value asks for (delay or HTTP date, RFC 9110), None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:  # "-0000": the date is UTC, as RFC 9110 has it
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp() - now
    return max(seconds, 0.0) if math.isfinite(seconds) else None


@dataclass(frozen=True, slots=True)
class _Outcome:
    """One POST's result: a status, or the type of the failure that left it without one."""

    status: int | None = None
    error_type: str | None = None
    retryable: bool = False
    wait_s: float | None = None  # the collector's Retry-After


# What a POST can fail with short of an HTTP answer; a timeout, a refused or dropped connection,
# TLS (OSError covers ssl.SSLError) are retried as the SDK retries its connection errors.
_CONNECTION_FAILURES: Final = (aiohttp.ClientConnectionError, TimeoutError, OSError)


class OtlpHttpExport:
    """POSTs encoded span batches to an OTLP/HTTP collector; never raises for its failures."""

    def __init__(
        self,
        settings: ExportSettings,
        *,
        first_backoff_s: float = 1.0,
        uniform: Callable[[float, float], float] = random.uniform,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._first_backoff_s = first_backoff_s  # the SDK's 1 s; tests shorten it
        self._uniform = uniform
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._failed_exports = 0  # in the current streak of failures
        self._last_failure_log = -math.inf
        host = urlsplit(settings.endpoint)
        self._collector = f"{host.hostname}:{host.port or (443 if host.scheme == 'https' else 80)}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> OtlpHttpExport:
        """An exporter set up by OTEL_EXPORTER_OTLP_*; ConfigError (one line) on a bad value."""
        return cls(read_export_settings(environ))

    async def send(self, body: bytes) -> bool:
        """POST the serialized ExportTraceServiceRequest; True when the collector took it."""
        if self._closed:
            return False
        if len(body) > _MAX_REQUEST_BYTES:
            self._failed(_Outcome(error_type="request_too_large"))
            return False
        data = gzip.compress(body, compresslevel=6, mtime=0) if self.settings.gzip else body
        outcome = await self._post_with_retries(data)
        if outcome.status is not None and 200 <= outcome.status < 300:
            self._recovered()
            return True
        self._failed(outcome)
        return False

    async def close(self) -> None:
        """Close the HTTP session; later sends return False. Safe to call more than once."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _post_with_retries(self, data: bytes) -> _Outcome:
        deadline = self._clock() + self.settings.timeout_s
        outcome = _Outcome(error_type="closed")
        for attempt in range(_MAX_ATTEMPTS):
            if self._closed:  # closed while waiting: a new session now would never be closed
                return _Outcome(error_type="closed")
            outcome = await self._post(data, deadline)
            # A failed connection is tried again at once, once: it is usually a pooled connection
            # the collector had closed (the SDK's _submit does the same).
            if outcome.error_type is not None and outcome.retryable and not self._closed:
                outcome = await self._post(data, deadline)
            if not outcome.retryable:
                return outcome
            wait = outcome.wait_s
            if wait is None:
                wait = backoff_s(attempt, self._uniform, self._first_backoff_s)
            if attempt + 1 == _MAX_ATTEMPTS or wait > deadline - self._clock():
                return outcome  # the SDK gives up rather than wait past its deadline
            await asyncio.sleep(wait)
        return outcome

    async def _post(self, data: bytes, deadline: float) -> _Outcome:
        remaining = deadline - self._clock()
        if remaining <= 0:
            return _Outcome(error_type="TimeoutError")
        try:
            async with self._open().post(
                self.settings.endpoint,
                data=data,
                timeout=aiohttp.ClientTimeout(total=remaining),
                allow_redirects=False,  # a redirect would carry the headers (a key) elsewhere
            ) as answer:
                if (
                    answer.content_length is not None
                    and answer.content_length <= _ANSWER_READ_LIMIT
                ):
                    await answer.read()  # so the connection is kept; the text is not looked at
                status = answer.status
                retryable = status in _RETRYABLE
                wait = retry_after_s(answer.headers.get("Retry-After"), time.time())
                return _Outcome(status, None, retryable, wait if retryable else None)
        except _CONNECTION_FAILURES as exc:
            return _Outcome(error_type=type(exc).__name__, retryable=True)
        except aiohttp.ClientError as exc:  # a malformed answer: the SDK does not retry those
            return _Outcome(error_type=type(exc).__name__)

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, so on the loop that sends.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.settings.ssl or True, limit=4),
                headers=self.settings.headers,
                auto_decompress=False,
                raise_for_status=False,
            )
        return self._session

    def _failed(self, outcome: _Outcome) -> None:
        self._failed_exports += 1
        now = self._clock()
        if self._failed_exports == 1 or now - self._last_failure_log >= _REPEAT_FAILURE_LOG_S:
            self._last_failure_log = now
            log.warning(
                "tracing.export_failed",
                collector=self._collector,
                status=outcome.status,
                error_type=outcome.error_type,
                failed_exports=self._failed_exports,
            )

    def _recovered(self) -> None:
        if self._failed_exports:
            log.info(
                "tracing.export_recovered",
                collector=self._collector,
                failed_exports=self._failed_exports,
            )
        self._failed_exports = 0
        self._last_failure_log = -math.inf
