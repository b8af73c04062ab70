"""GET the worker's HTTP endpoints (/healthz, /readyz, /metrics) as an orchestrator or scraper does."""

from __future__ import annotations

import aiohttp


async def get(url: str) -> tuple[int, str]:
    """GET ``url``: status and body, or (0, error) while nothing listens yet."""
    # A worker process opens its port some time after it starts: refusal is a state to wait past.
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()
    except aiohttp.ClientConnectionError as exc:
        return 0, type(exc).__name__


async def status_is(url: str, status: int) -> bool:
    """True when GET ``url`` answers ``status``."""
    return (await get(url))[0] == status
