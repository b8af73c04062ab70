"""The overview's aggregate, loaded at most once per ``ttl_s`` whatever the number of open tabs.

Counting a million rows by state and bucketing a day of deliveries costs the database most of a
second (bench/console_bench.py); fifty tabs refreshing every five seconds must not cost fifty
times that. So one
load serves every request for ``ttl_s``; when it is older, the first request starts a reload and
every request meanwhile is served the previous value (up to ``stale_s`` old), so no page waits
on the database unless there is nothing to show yet. A failed load is logged and retried by the
next request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg
import structlog

from outbox_worker.models import Stats
from outbox_worker.store import fleet
from outbox_worker.store import operations as ops
from outbox_worker.store.connection import pooled
from outbox_worker.store.fleet import FleetSummary, WorkerInfo
from outbox_worker.store.throughput import Throughput, throughput

log = structlog.get_logger("outbox_worker.console")

T = TypeVar("T")


@dataclass
class CachedLoad(Generic[T]):
    """A value loaded by ``load``, reused for ``ttl_s``, reloaded by one task at a time."""

    load: Callable[[], Awaitable[T]]
    ttl_s: float = 5.0
    stale_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    loads: int = 0  # how many loads ran (the bench and tests read it)
    _value: T | None = None
    _at: float = 0.0
    _loading: asyncio.Task[T] | None = None

    async def get(self) -> T:
        """The current value: cached, stale while a reload runs, or freshly loaded."""
        now = self.clock()
        if self._value is not None and now - self._at < self.ttl_s:
            return self._value
        if self._loading is None:
            self._loading = asyncio.create_task(self._reload(), name="console-overview-load")
            self._loading.add_done_callback(_retrieve)
        if self._value is not None and now - self._at < self.stale_s:
            return self._value
        return await asyncio.shield(self._loading)

    def invalidate(self) -> None:
        """Load afresh on the next get (after an action changed what the value shows)."""
        self._at = float("-inf")
        self._value = None

    async def _reload(self) -> T:
        try:
            value = await self.load()
        except Exception as exc:
            # Logged here for the reloads nobody awaits (served stale); a page that awaits this
            # one sees the error itself.
            log.warning("console.overview_load_failed", error=type(exc).__name__)
            raise
        finally:
            self._loading = None
            self.loads += 1
        self._value, self._at = value, self.clock()
        return value


def _retrieve(task: asyncio.Task[T]) -> None:
    """Mark a finished load's error as seen (it was logged; a waiting page raises it)."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class Overview:
    """What the overview page shows, loaded together (and the pause every page's banner shows)."""

    stats: Stats
    throughput: Throughput
    fleet: FleetSummary
    workers: list[WorkerInfo]


async def load_overview(pool: asyncpg.Pool) -> Overview:
    """Counts, charts and the fleet, read in one connection's visit."""
    async with pooled(pool) as conn:
        return Overview(
            stats=await ops.stats(conn),
            throughput=await throughput(conn),
            fleet=await fleet.fleet_summary(conn),
            workers=await fleet.list_workers(conn),
        )
