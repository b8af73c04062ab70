"""The fleet's own upkeep: the backlog sample every worker exports, and retention.

Both are single guarded statements, run through the worker's pool (no session state, so they work
through a transaction-pooling PgBouncer too).
"""

from __future__ import annotations

from typing import Final

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

# One batch of retention for one final state, in outbox.purge_expired (SECURITY DEFINER, so the
# worker role needs no DELETE on the table): ($1 state, $2 older_than, $3 limit, $4 lock) ->
# (held, deleted). The function's comment in migrations/versions/sql/0005_retention.sql says how.
PURGE_EXPIRED: Final = """
SELECT held, deleted FROM outbox.purge_expired($1, $2::interval, $3, $4)
"""
