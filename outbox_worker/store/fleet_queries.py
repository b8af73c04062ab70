"""Fleet control's statements: the workers registry, the pause and the audit log.

Each statement is named, described on the line above it and written out whole, as in
operator_queries.py; an optional filter is a parameter that may be NULL.
"""

from __future__ import annotations

from typing import Final

# --- the workers registry ---------------------------------------------------------------------

# `workers`: every registered worker, oldest first; a row not refreshed for $1 shows as gone
# (unless it said it stopped). Columns named after fleet.WorkerInfo's fields.
LIST_WORKERS: Final = """
SELECT id, host, pid, version, started_at, seen_at,
       CASE WHEN state <> 'stopped' AND seen_at < now() - $1::interval THEN 'gone'
            ELSE state END AS state,
       paused_by, listening, sends_last_minute, in_flight,
       extract(epoch FROM now() - seen_at)::float8 AS seen_ago_s
FROM outbox.workers
ORDER BY started_at, id
"""

# `stats`: how many workers are in each state (gone as LIST_WORKERS decides it).
WORKER_COUNTS: Final = """
SELECT CASE WHEN state <> 'stopped' AND seen_at < now() - $1::interval THEN 'gone'
            ELSE state END AS state,
       count(*) AS n
FROM outbox.workers GROUP BY 1
"""

# A worker's heartbeat: register or refresh its row ($1 its id) and read the fleet's pause ($10)
# in one round trip. The INSERT runs whether or not the SELECT reads it (PostgreSQL runs every
# data-modifying WITH once). started_at is the database's now() when the row was first made.
HEARTBEAT: Final = """
WITH beat AS (
    INSERT INTO outbox.workers AS w
        (id, host, pid, version, state, paused_by, listening, sends_last_minute, in_flight)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (id) DO UPDATE
    SET seen_at = now(), state = EXCLUDED.state, paused_by = EXCLUDED.paused_by,
        listening = EXCLUDED.listening, sends_last_minute = EXCLUDED.sends_last_minute,
        in_flight = EXCLUDED.in_flight
    RETURNING 1
)
SELECT coalesce(p.paused, false) AS paused, p.reason, p.paused_at, p.changed_at, p.db_role,
       p.via, p.actor
FROM (SELECT count(*) FROM beat) AS written
LEFT JOIN outbox.pause AS p ON p.name = $10
"""

# Forget workers not seen for $1 (far longer than they show as gone).
FORGET_WORKERS: Final = "DELETE FROM outbox.workers WHERE seen_at < now() - $1::interval"

# --- the pause --------------------------------------------------------------------------------

# The pause $1 as it stands; no row means never paused. Columns named after fleet.PauseState's.
PAUSE_STATE: Final = """
SELECT paused, reason, paused_at, changed_at, db_role, via, actor
FROM outbox.pause WHERE name = $1
"""

# Whether pause $1 is on, its row locked until the transaction ends (pause and resume take it
# first, so two operators' changes queue up and each audit row says what really changed).
LOCK_PAUSE: Final = "SELECT paused FROM outbox.pause WHERE name = $1 FOR UPDATE"

# Pause $1 with reason $2, by $3 (via) / $4 (actor). Pausing again updates the reason and who,
# but the pause keeps its start (paused_at): the alert on an old pause counts from it.
PAUSE: Final = """
INSERT INTO outbox.pause AS p (name, paused, reason, paused_at, changed_at, db_role, via, actor)
VALUES ($1, true, $2, now(), now(), session_user, $3, $4)
ON CONFLICT (name) DO UPDATE
SET paused = true, reason = EXCLUDED.reason,
    paused_at = CASE WHEN p.paused THEN p.paused_at ELSE now() END,
    changed_at = now(), db_role = session_user, via = EXCLUDED.via, actor = EXCLUDED.actor
RETURNING paused, reason, paused_at, changed_at, db_role, via, actor
"""

# Resume $1, by $2 (via) / $3 (actor): the row then says who resumed and when.
RESUME: Final = """
INSERT INTO outbox.pause AS p (name, paused, changed_at, db_role, via, actor)
VALUES ($1, false, now(), session_user, $2, $3)
ON CONFLICT (name) DO UPDATE
SET paused = false, reason = NULL, paused_at = NULL, changed_at = now(),
    db_role = session_user, via = EXCLUDED.via, actor = EXCLUDED.actor
RETURNING paused, reason, paused_at, changed_at, db_role, via, actor
"""

# Tell every listening worker that the pause changed; delivered at commit, like every NOTIFY.
NOTIFY_FLEET: Final = "SELECT pg_notify($1, $2)"

# --- the audit log ----------------------------------------------------------------------------

# One audit row: operation $1, action $2, via $3, actor $4, details $5 (a JSON object), $6 rows.
# The table's trigger stamps it with now() and session_user, whatever a client sends.
INSERT_AUDIT: Final = """
INSERT INTO outbox.audit_log (operation, action, via, actor, details, row_count)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
RETURNING id, at, db_role
"""

# `audit`: operations within $1 of now (NULL: all), newest first, at most $2 (NULL: all): one
# line per operation, its rows (one per transaction) summed; details as a JSON array in row order.
AUDIT_LOG: Final = """
SELECT operation, min(at) AS at, max(at) AS last_at, min(action) AS action,
       min(db_role) AS db_role, min(via) AS via, min(actor) AS actor,
       jsonb_agg(details ORDER BY id)::text AS details,
       sum(row_count)::bigint AS row_count, count(*) AS transactions
FROM outbox.audit_log
WHERE ($1::interval IS NULL OR at >= now() - $1::interval)
GROUP BY operation
ORDER BY min(id) DESC LIMIT $2
"""

# The fleet's audit retention: one batch of at most $2 rows older than $1, under lock $3;
# (held, deleted) as for messages.
PURGE_EXPIRED_AUDIT: Final = "SELECT held, deleted FROM outbox.purge_expired_audit($1, $2, $3)"
