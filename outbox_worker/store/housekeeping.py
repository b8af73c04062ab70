"""The fleet's own upkeep: the backlog sample every worker exports, and retention.

Both are single guarded statements, run through the worker's pool (no session state, so they work
through a transaction-pooling PgBouncer too).
"""

from __future__ import annotations

from typing import Final

from outbox_worker.models import State

# One pass over the pending partial index (messages_claim_idx) and one over the dead one
# (messages_dead_idx); no table-wide count. Claimed rows count as not yet due: claiming moves
# available_at to the end of the lease. The age is the database's clock, as `stats` shows it.
BACKLOG: Final = """
SELECT
  count(*) FILTER (WHERE available_at <= now()) AS due,
  count(*) FILTER (WHERE available_at > now()) AS not_due,
  coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_pending_s,
  (SELECT count(*) FROM outbox.messages WHERE state = 'dead') AS dead
FROM outbox.messages WHERE state = 'pending'
"""

# The fleet's retention lock, taken per batch with pg_try_advisory_xact_lock: held only for the
# batch's own transaction (so it works through PgBouncer in transaction mode and is never left
# behind by a killed worker), and never waited for: a worker that does not get it skips its pass,
# because another one is already at it. The number is 'outbox' in ASCII, unlikely to clash.
RETENTION_LOCK: Final = 0x6F7574626F78

# One batch of retention: oldest first along the state's partial index, rows another transaction
# holds are skipped (SKIP LOCKED), and the DELETE repeats the condition, so a row requeued since
# the SELECT is kept. `lock` is evaluated once, before any row is read (an InitPlan).
_PURGE_EXPIRED = """
WITH lock AS (SELECT pg_try_advisory_xact_lock($3) AS held),
gone AS (
    DELETE FROM outbox.messages WHERE id IN (
        SELECT id FROM outbox.messages
        WHERE {clause} AND (SELECT held FROM lock)
        ORDER BY {column} LIMIT $2 FOR UPDATE SKIP LOCKED
    ) AND {clause}
    RETURNING 1
)
SELECT (SELECT held FROM lock) AS held, (SELECT count(*) FROM gone) AS deleted
"""

PURGE_EXPIRED: Final = {
    State.ACKNOWLEDGED: _PURGE_EXPIRED.format(
        clause="state = 'acknowledged' AND acknowledged_at < now() - $1::interval",
        column="acknowledged_at",
    ),
    State.DEAD: _PURGE_EXPIRED.format(
        clause="state = 'dead' AND dead_at < now() - $1::interval", column="dead_at"
    ),
}
"""One named statement per state: ($1 older_than, $2 limit, $3 lock) -> (held, deleted)."""
