"""The demo's statements: a throwaway database, and read-only tallies of outbox.messages.

Everything the demo reports is read from the table, so its summary is what an operator's
dashboard would show for the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from outbox_worker.store.operator_queries import DEAD_REASONS

# Counts by state, and the attempts spent. Every attempt beyond a message's last one was a retry,
# so retries = attempts - settled (a pending row's attempts all led to a retry).
TALLY = """
SELECT count(*) AS total,
       count(*) FILTER (WHERE state = 'acknowledged') AS acknowledged,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       count(*) FILTER (WHERE state = 'pending') AS pending,
       coalesce(sum(attempts), 0) AS attempts
FROM outbox.messages
"""

# Enqueue-to-acknowledged latency: created_at is the enqueuing transaction's start.
LATENCY = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
       max(ms) AS max
FROM (
    SELECT extract(epoch FROM acknowledged_at - created_at) * 1000 AS ms
    FROM outbox.messages WHERE state = 'acknowledged'
) AS delivered
"""


@dataclass(frozen=True, slots=True)
class Tally:
    """How many rows are in each state, and how many attempts they took."""

    total: int
    acknowledged: int
    dead: int
    pending: int
    attempts: int

    @property
    def retries(self) -> int:
        """Attempts that failed and were scheduled again."""
        return self.attempts - self.acknowledged - self.dead


@dataclass(frozen=True, slots=True)
class Latency:
    """Enqueue-to-acknowledged latency in milliseconds (None with nothing acknowledged)."""

    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


async def tally(conn: asyncpg.Connection) -> Tally:
    """Counts by state and attempts spent, in one statement."""
    row = await conn.fetchrow(TALLY)
    assert row is not None
    return Tally(**{key: int(row[key]) for key in row.keys()})  # noqa: SIM118 (a Record)


async def dead_reasons(conn: asyncpg.Connection) -> list[tuple[str, int]]:
    """Dead letters grouped by reason (traceIds cut out), most frequent first."""
    return [(r["reason"], r["n"]) for r in await conn.fetch(DEAD_REASONS, None)]


async def latency(conn: asyncpg.Connection) -> Latency:
    """Percentiles of acknowledged_at - created_at over acknowledged rows."""
    row = await conn.fetchrow(LATENCY)
    assert row is not None
    return Latency(*(None if row[k] is None else float(row[k]) for k in ("p50", "p99", "max")))


# The statements for the demo's throwaway database, quoted by format('%I'): never an f-string.
CREATE_DATABASE = "SELECT format('CREATE DATABASE %I', $1::text)"
DROP_DATABASE = "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', $1::text)"


async def create_database(conn: asyncpg.Connection, name: str) -> None:
    """CREATE DATABASE ``name``, quoted by the server (an identifier cannot be a parameter)."""
    await conn.execute(await conn.fetchval(CREATE_DATABASE, name))


async def drop_database(conn: asyncpg.Connection, name: str) -> None:
    """DROP DATABASE ``name``, ending any session still connected to it."""
    await conn.execute(await conn.fetchval(DROP_DATABASE, name))


async def first_dead_id(conn: asyncpg.Connection) -> int | None:
    """The oldest dead letter's id (for `dead show` in the demo's hints), or None."""
    value: int | None = await conn.fetchval(
        "SELECT min(id) FROM outbox.messages WHERE state = 'dead'"
    )
    return value
