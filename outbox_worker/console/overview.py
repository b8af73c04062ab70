"""The overview's aggregate, loaded at most once per period whatever the number of open tabs.

On a million rows the aggregate costs the database most of a second (bench/console_bench.py);
fifty tabs refreshing every five seconds must not cost fifty times that. So one load serves every
request for its ``ttl_s``; when it is older, the first request starts a reload and every request
meanwhile is served the previous value (up to ``stale_s`` old), so no page waits on the database
unless there is nothing to show yet. A failed load is logged and retried by the next request.

It is loaded in two parts: the pulse (counts by state, the last hour by minute, the workers and
the pause; about 0.1 s on a million rows) every 5 s, the pages' own refresh; the trends (the day
by hour and the top dead-letter reasons, which group every dead letter; about 0.5 s) every
minute, since a bar of an hour or a reason's rank barely moves in one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final, Generic, TypeVar

import asyncpg
import structlog

from outbox_worker.models import Stats
from outbox_worker.store import fleet
from outbox_worker.store import operations as ops
from outbox_worker.store.connection import pooled
from outbox_worker.store.fleet import FleetSummary, WorkerInfo
from outbox_worker.store.throughput import Bucket, Throughput, per_hour, per_minute

log = structlog.get_logger("outbox_worker.console")

PULSE_TTL_S: Final = 5.0
TRENDS_TTL_S: Final = 60.0

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


@dataclass(frozen=True, slots=True)
class Pulse:
    """The part that moves by the second: counts, the last hour by minute, the fleet."""

    stats: Stats  # without the top dead reasons (Trends has them)
    minutes: tuple[Bucket, ...]
    fleet: FleetSummary
    workers: list[WorkerInfo]


@dataclass(frozen=True, slots=True)
class Trends:
    """The part that moves by the hour and costs most to count: the day by hour, top reasons."""

    hours: tuple[Bucket, ...]
    reasons: list[tuple[str, int]]


async def load_pulse(pool: asyncpg.Pool) -> Pulse:
    """Counts (no reasons), the last hour and the fleet, in one connection's visit."""
    async with pooled(pool) as conn:
        return Pulse(
            stats=await ops.stats(conn, top=0),
            minutes=await per_minute(conn),
            fleet=await fleet.fleet_summary(conn),
            workers=await fleet.list_workers(conn),
        )


async def load_trends(pool: asyncpg.Pool) -> Trends:
    """The last day by hour and the top dead-letter reasons."""
    async with pooled(pool) as conn:
        return Trends(
            hours=await per_hour(conn),
            reasons=await ops.top_dead_reasons(conn, ops.TOP_REASONS),
        )


@dataclass(frozen=True, slots=True)
class OverviewSource:
    """The overview from two caches: the pulse every ``PULSE_TTL_S``, trends every minute."""

    pulse: CachedLoad[Pulse]
    trends: CachedLoad[Trends]

    @classmethod
    def of(cls, pool: asyncpg.Pool, clock: Callable[[], float] = time.monotonic) -> OverviewSource:
        """Both caches over ``pool``."""
        return cls(
            CachedLoad(lambda: load_pulse(pool), ttl_s=PULSE_TTL_S, clock=clock),
            CachedLoad(lambda: load_trends(pool), ttl_s=TRENDS_TTL_S, stale_s=600.0, clock=clock),
        )

    @property
    def loads(self) -> int:
        """Loads of either part so far (the bench and tests read it)."""
        return self.pulse.loads + self.trends.loads

    async def get(self) -> Overview:
        """The overview as of the two cached parts."""
        pulse, trends = await self.pulse.get(), await self.trends.get()
        return Overview(
            stats=replace(pulse.stats, top_dead_reasons=trends.reasons),
            throughput=Throughput(minutes=pulse.minutes, hours=trends.hours),
            fleet=pulse.fleet,
            workers=pulse.workers,
        )

    def invalidate(self) -> None:
        """Load the pulse afresh on the next get (after a pause, resume or requeue)."""
        self.pulse.invalidate()
