"""Deliveries and dead letters over time, for the console's charts: one named statement.

Both series come from one statement: per minute over the last hour and per hour over the last
day, counted on the final-state indexes (messages_acknowledged_idx, messages_dead_idx) and
bucketed on the database's clock. Buckets with nothing in them are absent from the rows and
filled with zeros here, so a chart always has 60 and 24 bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

MINUTES: Final = 60
HOURS: Final = 24

# $1: 'minute' or 'hour'; $2: how many buckets. Each row: the bucket's start, the kind of
# event ('delivered' or 'dead') and how many; also the current bucket's start (now_bucket) so
# empty buckets can be filled without the caller's clock.
COUNTS_BY_BUCKET: Final = """
WITH span AS (
    SELECT date_trunc($1, now()) AS now_bucket,
           date_trunc($1, now()) - ($2 - 1) * ('1 ' || $1)::interval AS since
)
SELECT span.now_bucket, counts.bucket, counts.kind, counts.n
FROM span LEFT JOIN LATERAL (
    SELECT date_trunc($1, acknowledged_at) AS bucket, 'delivered' AS kind, count(*) AS n
    FROM outbox.messages
    WHERE state = 'acknowledged' AND acknowledged_at >= span.since
    GROUP BY 1
    UNION ALL
    SELECT date_trunc($1, dead_at), 'dead', count(*)
    FROM outbox.messages
    WHERE state = 'dead' AND dead_at >= span.since
    GROUP BY 1
) counts ON true
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bar of a chart: its start, deliveries and dead letters in it."""

    start: datetime
    delivered: int
    dead: int


@dataclass(frozen=True, slots=True)
class Throughput:
    """The last hour by minute and the last day by hour, oldest bucket first."""

    minutes: tuple[Bucket, ...]
    hours: tuple[Bucket, ...]


async def _series(conn: asyncpg.Connection, unit: str, count: int) -> tuple[Bucket, ...]:
    rows = await conn.fetch(COUNTS_BY_BUCKET, unit, count)
    now_bucket: datetime = rows[0]["now_bucket"]
    step = timedelta(minutes=1) if unit == "minute" else timedelta(hours=1)
    counts: dict[tuple[datetime, str], int] = {
        (r["bucket"], r["kind"]): r["n"] for r in rows if r["bucket"] is not None
    }
    starts = [now_bucket - step * (count - 1 - i) for i in range(count)]
    return tuple(
        Bucket(s, counts.get((s, "delivered"), 0), counts.get((s, "dead"), 0)) for s in starts
    )


async def per_minute(conn: asyncpg.Connection) -> tuple[Bucket, ...]:
    """Deliveries and dead letters per minute over the last hour, oldest first."""
    return await _series(conn, "minute", MINUTES)


async def per_hour(conn: asyncpg.Connection) -> tuple[Bucket, ...]:
    """Deliveries and dead letters per hour over the last day, oldest first."""
    return await _series(conn, "hour", HOURS)
