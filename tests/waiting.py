"""Wait on a condition with a deadline: the only way tests here synchronize.

``wait_for`` polls any condition; the row counts below are the conditions most tests wait on
(``await wait_for(lambda: all_acknowledged(pg, 30))``) and assert afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


async def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


def wait_for_sync(
    condition: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Blocking twin of wait_for for synchronous tests."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


# A connection, or a URL to connect afresh on every check (for a server the test restarts).
Database = asyncpg.Connection | str


async def count_by_state(db: Database) -> dict[str, int]:
    """How many rows are in each state (states with no rows are left out)."""
    sql = "SELECT state, count(*) AS n FROM outbox.messages GROUP BY state"
    if isinstance(db, str):
        conn = await asyncpg.connect(db)
        try:
            rows = await conn.fetch(sql)
        finally:
            await conn.close()
    else:
        rows = await db.fetch(sql)
    return {r["state"]: r["n"] for r in rows}


async def states_are(db: Database, expected: Mapping[str, int]) -> bool:
    """True when the counts by state are exactly ``expected`` (no other state has rows)."""
    return await count_by_state(db) == dict(expected)


async def in_state(db: Database, state: str, count: int) -> bool:
    """True when exactly ``count`` rows are in ``state`` (other states may hold any)."""
    return (await count_by_state(db)).get(state, 0) == count


async def at_least_in_state(db: Database, state: str, count: int) -> bool:
    """True once ``count`` or more rows are in ``state``."""
    return (await count_by_state(db)).get(state, 0) >= count


async def all_acknowledged(db: Database, total: int) -> bool:
    """True once ``total`` rows are acknowledged."""
    return await in_state(db, "acknowledged", total)


async def count_leased(pg: asyncpg.Connection) -> int:
    """How many rows carry a lease token (claimed by some worker right now)."""
    value: int = await pg.fetchval(
        "SELECT count(*) FROM outbox.messages WHERE lease_token IS NOT NULL"
    )
    return value


async def leased_at_least(pg: asyncpg.Connection, count: int) -> bool:
    """True once ``count`` or more rows are claimed under a lease."""
    return await count_leased(pg) >= count
